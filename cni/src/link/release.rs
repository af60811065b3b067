//! Freeing the pod end's name when DEL returns.
//!
//! Deleting a veth makes the kernel wait for RCU grace periods (15–20 ms), and so does
//! moving one to another namespace, so DEL leaves the deletion of the pair to the
//! enforcer, in the background. But a runtime may ADD another sandbox into the same
//! netns right after DEL, with the same `CNI_IFNAME`: the old pod end must not hold
//! that name any more. [`release_pod_end`] takes it down, removes its addresses and
//! renames it `zwdel<index>` (a fraction of a millisecond), so the pod is off the
//! network and the name is free before DEL returns; the pair goes with its host end.

use std::path::Path;

use nix::errno::Errno;
use rtnetlink::{Handle, LinkUnspec};
use tracing::debug;

use super::HOST_MAC;
use super::error::{LinkError, is_errno};
use super::netlink::{
    find_link, link_addresses, link_mac, peer_index, with_handle, with_handle_in,
};

/// The prefix of a released pod end's name (`zwdel` + its interface index).
pub const RELEASED_PREFIX: &str = "zwdel";

/// Frees `ifname` in `netns` when it is the pod end of the pair whose host end (ours:
/// our MAC) has one of `host_names`; whether it did. Any other interface of that
/// name, and a pair already gone, are left alone.
pub fn release_pod_end(
    netns: &Path,
    ifname: &str,
    host_names: &[String],
) -> Result<bool, LinkError> {
    let names = host_names.to_vec();
    let host_end = with_handle(|handle| async move {
        for name in &names {
            if let Some(link) = find_link(&handle, name).await?
                && link_mac(&link) == HOST_MAC
            {
                return Ok(Some((link.header.index, peer_index(&link))));
            }
        }
        Ok(None)
    })?;
    let Some((host_index, Some(pod_index))) = host_end else {
        return Ok(false);
    };
    let ifname = ifname.to_owned();
    with_handle_in(netns, move |handle| async move {
        let Some(pod) = find_link(&handle, &ifname).await? else {
            return Ok(false);
        };
        // Both ends name each other: this is the pod end of that very pair.
        if pod.header.index != pod_index || peer_index(&pod) != Some(host_index) {
            return Ok(false);
        }
        release(&handle, pod_index, &ifname).await
    })
}

/// Down, without addresses, renamed. A link that vanishes meanwhile (the enforcer
/// deleted the pair) counts as released.
async fn release(handle: &Handle, index: u32, ifname: &str) -> Result<bool, LinkError> {
    let gone = |err: &rtnetlink::Error| is_errno(err, Errno::ENODEV);
    let down = LinkUnspec::new_with_index(index).down().build();
    match handle.link().set(down).execute().await {
        Ok(()) => {}
        Err(err) if gone(&err) => return Ok(true),
        Err(err) => return Err(LinkError::netlink("set link down", ifname)(err)),
    }
    for address in link_addresses(handle, index, ifname).await? {
        match handle.address().del(address).execute().await {
            Ok(()) => {}
            // Gone with the link, or with the IPv4 primary it was secondary to.
            Err(err) if gone(&err) || is_errno(&err, Errno::EADDRNOTAVAIL) => {}
            Err(err) => return Err(LinkError::netlink("delete address", ifname)(err)),
        }
    }
    let renamed = LinkUnspec::new_with_index(index)
        .name(format!("{RELEASED_PREFIX}{index}"))
        .build();
    match handle.link().set(renamed).execute().await {
        Ok(()) => {
            debug!(ifname, index, "pod end released: down, no address, renamed");
            Ok(true)
        }
        Err(err) if gone(&err) => Ok(true),
        Err(err) => Err(LinkError::netlink("rename link", ifname)(err)),
    }
}
