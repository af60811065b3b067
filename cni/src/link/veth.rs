//! Building and removing the routed veth pair.

use std::os::fd::{AsRawFd, RawFd};

use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkUnspec, LinkVeth};
use tracing::{debug, warn};

use super::error::{LinkError, is_errno};
use futures::TryStreamExt;

use super::netlink::{
    delete_link, find_link, link_mac, link_name, peer_index, with_handle, with_handle_in,
};
use super::{
    HOST_IFNAME_PREFIX, HOST_MAC, RoutedLinks, RoutedSpec, format_mac, host_prefix, routes, sysctl,
};
use crate::netns::open_netns;

/// Builds the pair for `spec`, replacing a stale host end of the same name. The caller's
/// thread must be in the host network namespace. On failure after the pair exists, the
/// pair is deleted again.
pub fn setup_routed(spec: &RoutedSpec) -> Result<RoutedLinks, LinkError> {
    let host = create_routed(spec)?;
    configure_routed(spec, &host)
}

/// The host end of a pair made by [`create_routed`].
#[derive(Debug, Clone)]
pub struct HostEnd {
    index: u32,
    mac: String,
}

/// The first half of [`setup_routed`], which needs no address (so it can run while
/// IPAM allocates one): the stale host end goes, the pair is made, the host end comes
/// up; one netlink connection. On failure nothing is left. `spec.addrs` is not read.
///
/// When `CNI_IFNAME` is taken in the pod by the pod end of another pair of ours, it
/// fails with [`LinkError::LeftoverExists`] naming that pair's host end: only the
/// caller knows whether that attachment is still registered (then it must stay) or a
/// leftover ([`replace_leftover`]). An interface that vanishes meanwhile (its pair was
/// being deleted) is no obstacle: the pair is made again.
pub fn create_routed(spec: &RoutedSpec) -> Result<HostEnd, LinkError> {
    validate_ifname(&spec.ifname)?;
    validate_ifname(&spec.host_ifname)?;
    match make_pair(spec) {
        Err(LinkError::PodInterfaceExists { .. }) => match holder(spec)? {
            Holder::Vanished => {
                debug!(ifname = %spec.ifname, "the pod interface vanished; making the pair again");
                make_pair(spec)
            }
            Holder::Ours { host_ifname } => Err(LinkError::LeftoverExists {
                ifname: spec.ifname.clone(),
                netns: spec.netns.clone(),
                host_ifname,
            }),
            Holder::Foreign => Err(LinkError::PodInterfaceExists {
                ifname: spec.ifname.clone(),
                netns: spec.netns.clone(),
            }),
        },
        made => made,
    }
}

/// Deletes the pair of ours whose host end is `host_ifname` (a leftover the caller
/// found unregistered) and makes the pair for `spec`.
pub fn replace_leftover(spec: &RoutedSpec, host_ifname: &str) -> Result<HostEnd, LinkError> {
    validate_ifname(host_ifname)?;
    let removed = with_handle(|handle| async move {
        match find_link(&handle, host_ifname).await? {
            Some(link) if link_mac(&link) == HOST_MAC => {
                match handle.link().del(link.header.index).execute().await {
                    Ok(()) => Ok(true),
                    Err(err) if is_errno(&err, Errno::ENODEV) => Ok(false),
                    Err(err) => Err(LinkError::netlink("delete link", host_ifname)(err)),
                }
            }
            _ => Ok(false),
        }
    })?;
    debug!(
        host = host_ifname,
        removed, "leftover pair of an earlier attachment"
    );
    create_routed(spec)
}

/// What holds `CNI_IFNAME` in the pod when the pair was refused.
enum Holder {
    /// The pod end of one of our pairs, whose host end has this name.
    Ours { host_ifname: String },
    /// Nothing any more (its pair was being deleted).
    Vanished,
    /// Another interface, or a pair that is not ours.
    Foreign,
}

/// Who holds `spec.ifname` in the pod: ours when its peer on the host is a `zw…` link
/// with our MAC address.
fn holder(spec: &RoutedSpec) -> Result<Holder, LinkError> {
    let ifname = spec.ifname.clone();
    let pod_end = with_handle_in(&spec.netns, move |handle| async move {
        let link = find_link(&handle, &ifname).await?;
        Ok(link.map(|l| peer_index(&l)))
    })?;
    let index = match pod_end {
        None => return Ok(Holder::Vanished),
        Some(None) => return Ok(Holder::Foreign),
        Some(Some(index)) => index,
    };
    with_handle(|handle| async move {
        let mut links = handle.link().get().match_index(index).execute();
        let link = match links.try_next().await {
            Ok(link) => link,
            Err(err) if is_errno(&err, Errno::ENODEV) => None,
            Err(err) => {
                return Err(LinkError::netlink("look up link", "the pod end's peer")(
                    err,
                ));
            }
        };
        // No such peer here: a pair into another namespace, not ours.
        let Some(link) = link else {
            return Ok(Holder::Foreign);
        };
        match link_name(&link) {
            Some(name) if name.starts_with(HOST_IFNAME_PREFIX) && link_mac(&link) == HOST_MAC => {
                Ok(Holder::Ours {
                    host_ifname: name.to_owned(),
                })
            }
            _ => Ok(Holder::Foreign),
        }
    })
}

/// Replaces a stale host end of the same name and makes the pair, host end up.
fn make_pair(spec: &RoutedSpec) -> Result<HostEnd, LinkError> {
    let netns = open_netns(&spec.netns)?;
    let fd = netns.as_raw_fd();
    let host = spec.host_ifname.as_str();
    let link = with_handle(|handle| async move {
        if delete_link(&handle, host).await? {
            debug!(host, "removed a stale host veth");
        }
        // An existing CNI_IFNAME in the pod makes the kernel refuse the pair (EEXIST).
        create_pair(&handle, spec, fd).await?;
        let up = async {
            let link = find_link(&handle, host)
                .await?
                .ok_or_else(|| LinkError::Vanished {
                    ifname: host.to_owned(),
                })?;
            routes::set_up(&handle, link.header.index, host).await?;
            Ok(link)
        };
        match up.await {
            Ok(link) => Ok(link),
            Err(err) => {
                remove_half_made(&handle, host, &err).await;
                Err(err)
            }
        }
    })?;
    Ok(HostEnd {
        index: link.header.index,
        mac: format_mac(link_mac(&link)),
    })
}

/// The second half of [`setup_routed`]: the host end's sysctls and routes to
/// `spec.addrs`, and the pod end (up, addresses, routes, neighbour), the two sides at
/// the same time. On failure the pair is deleted.
pub fn configure_routed(spec: &RoutedSpec, host_end: &HostEnd) -> Result<RoutedLinks, LinkError> {
    let addrs: Vec<IpNet> = spec.addrs.iter().map(host_prefix).collect();
    let host = spec.host_ifname.as_str();
    let configured = sysctl::configure_host(host, &addrs).and_then(|()| {
        let (ifname, pod_addrs) = (spec.ifname.clone(), addrs.clone());
        std::thread::scope(|scope| {
            let pod = scope.spawn(|| {
                with_handle_in(&spec.netns, move |handle| async move {
                    routes::configure_pod(&handle, &ifname, &pod_addrs).await
                })
            });
            let index = host_end.index;
            let host_routes = with_handle(|handle| async move {
                routes::add_host_routes(&handle, index, host, &addrs).await
            });
            let pod_mac = pod
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            host_routes.and(pod_mac)
        })
    });
    configured
        .map(|pod_mac| RoutedLinks {
            host_mac: host_end.mac.clone(),
            pod_mac,
        })
        .inspect_err(|err| {
            warn!(%err, host, "veth setup failed; removing the pair");
            if let Err(cleanup) = teardown_routed(host) {
                warn!(err = %cleanup, host, "could not remove the half-made veth");
            }
        })
}

async fn remove_half_made(handle: &Handle, host: &str, err: &LinkError) {
    warn!(%err, host, "veth setup failed; removing the pair");
    if let Err(cleanup) = delete_link(handle, host).await {
        warn!(err = %cleanup, host, "could not remove the half-made veth");
    }
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
