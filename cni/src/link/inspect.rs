//! Reading links, addresses and routes back: CNI CHECK, chained mode and GC.

use std::net::IpAddr;
use std::path::Path;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressAttribute;

use super::error::LinkError;
use super::netlink::{
    controller_index, find_link, is_veth, link_addresses, link_is_up, link_kind, link_mac,
    link_name, peer_index, with_handle,
};
use super::table::{MainRoute, main_routes};
use super::{GATEWAY_V4, GATEWAY_V6, PodInterface, RoutedSpec, format_mac, host_prefix};
use crate::netns::run_in_netns;

/// The interface `ifname` inside `netns`, or `None` when it does not exist there.
pub fn pod_interface(netns: &Path, ifname: &str) -> Result<Option<PodInterface>, LinkError> {
    let ifname = ifname.to_owned();
    run_in_netns(netns, move || {
        with_handle(|handle| async move { read_interface(&handle, &ifname).await })
    })?
}

/// Where a chained attachment's interface meets the node: the host end of its veth
/// pair, and the bridge that end is a port of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPeer {
    pub name: String,
    pub bridge: Option<String>,
}

/// The container interface `ifname` of a chained attachment, as it really is in
/// `netns` (not as the previous plugin's result says), and its host end in the
/// caller's network namespace. Only veth pairs qualify: the traffic of a macvlan or
/// ipvlan interface never crosses the node's firewall, so it could not be enforced.
pub fn chained_interface(
    netns: &Path,
    ifname: &str,
) -> Result<(PodInterface, HostPeer), LinkError> {
    let fail = |reason: String| LinkError::Chained {
        ifname: ifname.to_owned(),
        netns: netns.to_owned(),
        reason,
    };
    let name = ifname.to_owned();
    let found = run_in_netns(netns, move || {
        with_handle(|handle| async move {
            let Some(link) = find_link(&handle, &name).await? else {
                return Ok(None);
            };
            let kind = link_kind(&link);
            let veth = is_veth(&link);
            let peer = peer_index(&link);
            let pod = read_interface(&handle, &name).await?;
            Ok(pod.map(|pod| (pod, veth, kind, peer)))
        })
    })??;
    let Some((pod, veth, kind, peer)) = found else {
        return Err(fail(
            "does not exist: the previous plugin's result names an interface the container does not have".to_owned(),
        ));
    };
    if !veth {
        return Err(fail(format!(
            "is a {} interface, not a veth pair with the node: its traffic does not cross the node's firewall, so zonewarden cannot enforce it",
            kind.as_deref().unwrap_or("non-veth")
        )));
    }
    let Some(peer) = peer else {
        return Err(fail("is a veth without a peer".to_owned()));
    };
    let pod_index = pod.index;
    let host = with_handle(|handle| async move {
        let Some(link) = link_by_index(&handle, peer).await? else {
            return Ok(None);
        };
        // The peer must point back at the pod's interface: an index of another
        // namespace that happens to exist here is not the host end.
        if peer_index(&link) != Some(pod_index) || !is_veth(&link) {
            return Ok(None);
        }
        let name = link_name(&link).map(str::to_owned);
        let bridge = match controller_index(&link) {
            Some(index) => link_by_index(&handle, index)
                .await?
                .and_then(|b| link_name(&b).map(str::to_owned)),
            None => None,
        };
        Ok(name.map(|name| HostPeer { name, bridge }))
    })?;
    let host = host.ok_or_else(|| {
        fail("has its veth peer outside the network namespace the plugin runs in; run the plugin in the node's network namespace".to_owned())
    })?;
    Ok((pod, host))
}

/// The link with `index` in the handle's namespace, or `None`.
async fn link_by_index(
    handle: &Handle,
    index: u32,
) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, LinkError> {
    let mut links = handle.link().get().match_index(index).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(err) if super::error::is_errno(&err, nix::errno::Errno::ENODEV) => Ok(None),
        Err(err) => Err(LinkError::netlink(
            "look up link",
            &format!("index {index}"),
        )(err)),
    }
}

/// Names of the links in the caller's network namespace that start with `prefix`.
pub fn list_host_links(prefix: &str) -> Result<Vec<String>, LinkError> {
    with_handle(|handle| async move {
        let links: Vec<_> = handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(LinkError::netlink("list links", prefix))?;
        Ok(links
            .iter()
            .filter_map(link_name)
            .filter(|name| name.starts_with(prefix))
            .map(str::to_owned)
            .collect())
    })
}

/// Every way the pair for `spec` differs from what [`super::setup_routed`] builds, one
/// sentence each; empty when all is in place.
pub fn verify_routed(spec: &RoutedSpec) -> Result<Vec<String>, LinkError> {
    let addrs: Vec<IpNet> = spec.addrs.iter().map(host_prefix).collect();
    let host = spec.host_ifname.as_str();
    let mut problems = with_handle(|handle| async move {
        let Some(link) = find_link(&handle, host).await? else {
            return Ok(vec![format!("host veth {host} is missing")]);
        };
        let mut problems = Vec::new();
        if !link_is_up(&link) {
            problems.push(format!("host veth {host} is down"));
        }
        let routes = main_routes(&handle, host).await?;
        for addr in &addrs {
            let wanted = MainRoute {
                dst: Some(*addr),
                gateway: None,
                oif: Some(link.header.index),
            };
            if !routes.contains(&wanted) {
                problems.push(format!("host route {addr} dev {host} is missing"));
            }
        }
        Ok(problems)
    })?;
    let (ifname, netns) = (spec.ifname.clone(), spec.netns.display().to_string());
    let pod_addrs: Vec<IpNet> = spec.addrs.iter().map(host_prefix).collect();
    let pod_problems = run_in_netns(&spec.netns, move || {
        with_handle(|handle| async move { verify_pod(&handle, &ifname, &netns, &pod_addrs).await })
    })??;
    problems.extend(pod_problems);
    Ok(problems)
}

async fn verify_pod(
    handle: &Handle,
    ifname: &str,
    netns: &str,
    addrs: &[IpNet],
) -> Result<Vec<String>, LinkError> {
    let Some(pod) = read_interface(handle, ifname).await? else {
        return Ok(vec![format!(
            "pod interface {ifname} is missing in {netns}"
        )]);
    };
    let mut problems = Vec::new();
    if !pod.up {
        problems.push(format!("pod interface {ifname} in {netns} is down"));
    }
    for addr in addrs {
        if !pod.addrs.iter().any(|have| have.addr() == addr.addr()) {
            problems.push(format!(
                "address {addr} is missing from {ifname} in {netns}"
            ));
        }
    }
    let routes = main_routes(handle, ifname).await?;
    let oif = Some(pod.index);
    let mut expect = |present: bool, what: String| {
        if !present {
            problems.push(format!("{what} is missing in {netns}"));
        }
    };
    if addrs.iter().any(|addr| addr.addr().is_ipv4()) {
        let link_route = MainRoute {
            dst: Some(IpNet::from(IpAddr::from(GATEWAY_V4))),
            gateway: None,
            oif,
        };
        expect(
            routes.contains(&link_route),
            format!("route {GATEWAY_V4}/32 dev {ifname}"),
        );
        let default = routes
            .iter()
            .any(|r| r.is_default_via(GATEWAY_V4.into(), pod.index));
        expect(
            default,
            format!("default route via {GATEWAY_V4} dev {ifname}"),
        );
    }
    if addrs.iter().any(|addr| addr.addr().is_ipv6()) {
        let default = routes
            .iter()
            .any(|r| r.is_default_via(GATEWAY_V6.into(), pod.index));
        expect(
            default,
            format!("default route via {GATEWAY_V6} dev {ifname}"),
        );
    }
    Ok(problems)
}

async fn read_interface(handle: &Handle, ifname: &str) -> Result<Option<PodInterface>, LinkError> {
    let Some(link) = find_link(handle, ifname).await? else {
        return Ok(None);
    };
    let index = link.header.index;
    let addrs = link_addresses(handle, index, ifname)
        .await?
        .iter()
        .filter_map(|msg| {
            let local = msg.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            IpNet::new(local.or(address)?, msg.header.prefix_len).ok()
        })
        .collect();
    Ok(Some(PodInterface {
        mac: format_mac(link_mac(&link)),
        addrs,
        up: link_is_up(&link),
        index,
    }))
}
