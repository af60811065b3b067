//! Building and removing the routed veth pair.

use std::os::fd::{AsRawFd, RawFd};

use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkUnspec, LinkVeth};
use tracing::{debug, warn};

use super::error::{LinkError, is_errno};
use super::netlink::{delete_link, find_link, link_mac, with_handle, with_handle_in};
use super::{HOST_MAC, RoutedLinks, RoutedSpec, format_mac, host_prefix, routes, sysctl};
use crate::netns::open_netns;

/// Builds the pair for `spec`, replacing a stale host end of the same name. The caller's
/// thread must be in the host network namespace. On failure after the pair exists, the
/// pair is deleted again.
///
/// Two netlink connections in all: one on the host (stale end, pair, host end up, host
/// routes) and one in the pod (its end up, addresses, routes, neighbour).
pub fn setup_routed(spec: &RoutedSpec) -> Result<RoutedLinks, LinkError> {
    validate_ifname(&spec.ifname)?;
    validate_ifname(&spec.host_ifname)?;
    let addrs: Vec<IpNet> = spec.addrs.iter().map(host_prefix).collect();
    let netns = open_netns(&spec.netns)?;
    let fd = netns.as_raw_fd();
    let host = spec.host_ifname.as_str();
    let host_addrs = &addrs;
    let host_link = with_handle(|handle| async move {
        if delete_link(&handle, host).await? {
            debug!(host, "removed a stale host veth");
        }
        // An existing CNI_IFNAME in the pod makes the kernel refuse the pair (EEXIST).
        create_pair(&handle, spec, fd).await?;
        let configured = async {
            let link = find_link(&handle, host)
                .await?
                .ok_or_else(|| LinkError::Vanished {
                    ifname: host.to_owned(),
                })?;
            routes::set_up(&handle, link.header.index, host).await?;
            routes::add_host_routes(&handle, link.header.index, host, host_addrs).await?;
            Ok(link)
        };
        match configured.await {
            Ok(link) => Ok(link),
            Err(err) => {
                remove_half_made(&handle, host, &err).await;
                Err(err)
            }
        }
    })?;
    drop(netns);
    configure(spec, &addrs)
        .map(|pod_mac| RoutedLinks {
            host_mac: format_mac(link_mac(&host_link)),
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

/// The host end's sysctls and the pod end; returns the pod end's MAC address.
fn configure(spec: &RoutedSpec, addrs: &[IpNet]) -> Result<String, LinkError> {
    sysctl::configure_host(&spec.host_ifname, addrs)?;
    let (ifname, pod_addrs) = (spec.ifname.clone(), addrs.to_vec());
    with_handle_in(&spec.netns, move |handle| async move {
        routes::configure_pod(&handle, &ifname, &pod_addrs).await
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
