//! Building and removing the routed veth pair.

use std::os::fd::{AsRawFd, RawFd};

use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkUnspec, LinkVeth};
use tracing::{debug, warn};

use super::error::{LinkError, is_errno};
use super::netlink::{delete_link, find_link, link_mac, with_handle};
use super::{HOST_MAC, RoutedLinks, RoutedSpec, format_mac, host_prefix, routes, sysctl};
use crate::netns::{open_netns, run_in_netns};

/// Builds the pair for `spec`, replacing a stale host end of the same name. The caller's
/// thread must be in the host network namespace. On failure after the pair exists, the
/// pair is deleted again.
pub fn setup_routed(spec: &RoutedSpec) -> Result<RoutedLinks, LinkError> {
    validate_ifname(&spec.ifname)?;
    validate_ifname(&spec.host_ifname)?;
    let addrs: Vec<IpNet> = spec.addrs.iter().map(host_prefix).collect();
    if teardown_routed(&spec.host_ifname)? {
        debug!(host = %spec.host_ifname, "removed a stale host veth");
    }
    let ifname = spec.ifname.clone();
    let exists = run_in_netns(&spec.netns, move || {
        with_handle(|handle| async move { Ok(find_link(&handle, &ifname).await?.is_some()) })
    })??;
    if exists {
        return Err(LinkError::PodInterfaceExists {
            ifname: spec.ifname.clone(),
            netns: spec.netns.clone(),
        });
    }
    let netns = open_netns(&spec.netns)?;
    let fd = netns.as_raw_fd();
    with_handle(|handle| async move { create_pair(&handle, spec, fd).await })?;
    drop(netns);
    configure(spec, &addrs).inspect_err(|err| {
        warn!(%err, host = %spec.host_ifname, "veth setup failed; removing the pair");
        if let Err(cleanup) = teardown_routed(&spec.host_ifname) {
            warn!(err = %cleanup, host = %spec.host_ifname, "could not remove the half-made veth");
        }
    })
}

/// Deletes the host end named `host_ifname` (and with it the pod end and the host
/// routes). `Ok(false)` when it was already gone.
pub fn teardown_routed(host_ifname: &str) -> Result<bool, LinkError> {
    validate_ifname(host_ifname)?;
    with_handle(|handle| async move { delete_link(&handle, host_ifname).await })
}

/// Creates the host end here and the pod end directly in the netns behind `netns_fd`.
async fn create_pair(handle: &Handle, spec: &RoutedSpec, netns_fd: RawFd) -> Result<(), LinkError> {
    let mut peer = LinkUnspec::new_with_name(&spec.ifname).setns_by_fd(netns_fd);
    let mut host = LinkVeth::new(&spec.host_ifname, &spec.ifname).address(HOST_MAC.to_vec());
    if let Some(mtu) = spec.mtu {
        peer = peer.mtu(mtu);
        host = host.mtu(mtu);
    }
    let message = host
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    match handle.link().add(message).execute().await {
        Ok(()) => Ok(()),
        Err(err) if is_errno(&err, Errno::EEXIST) => Err(LinkError::PodInterfaceExists {
            ifname: spec.ifname.clone(),
            netns: spec.netns.clone(),
        }),
        Err(err) => Err(LinkError::netlink("create veth pair", &spec.host_ifname)(
            err,
        )),
    }
}

/// Everything after the pair exists: sysctls, both ends up, addresses and routes.
fn configure(spec: &RoutedSpec, addrs: &[IpNet]) -> Result<RoutedLinks, LinkError> {
    sysctl::configure_host(&spec.host_ifname, addrs)?;
    let host = spec.host_ifname.as_str();
    let host_link = with_handle(|handle| async move {
        let link = find_link(&handle, host)
            .await?
            .ok_or_else(|| LinkError::Vanished {
                ifname: host.to_owned(),
            })?;
        routes::set_up(&handle, link.header.index, host).await?;
        Ok(link)
    })?;
    let (ifname, pod_addrs) = (spec.ifname.clone(), addrs.to_vec());
    let pod_mac = run_in_netns(&spec.netns, move || {
        with_handle(
            |handle| async move { routes::configure_pod(&handle, &ifname, &pod_addrs).await },
        )
    })??;
    let index = host_link.header.index;
    with_handle(
        |handle| async move { routes::add_host_routes(&handle, index, host, addrs).await },
    )?;
    Ok(RoutedLinks {
        host_mac: format_mac(link_mac(&host_link)),
        pod_mac,
    })
}

/// Rejects names the kernel would refuse or that could escape a `/proc/sys` path.
fn validate_ifname(ifname: &str) -> Result<(), LinkError> {
    let reason = if ifname.is_empty() {
        "it is empty"
    } else if ifname.len() > 15 {
        "it is longer than 15 bytes"
    } else if ifname == "." || ifname == ".." {
        "it is a path component"
    } else if ifname
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "it contains '/', ':' or whitespace"
    } else {
        return Ok(());
    };
    Err(LinkError::InvalidName {
        ifname: ifname.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("zw0123456789a").is_ok());
        for bad in ["", "a-name-longer-than-15", "..", "a/b", "a b", "eth0:1"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
