//! Addresses, routes and neighbours on both ends of the pair.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nix::errno::Errno;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::route::{RouteMessage, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::error::{LinkError, is_errno};
use super::netlink::{find_link, link_mac};
use super::{GATEWAY_V4, GATEWAY_V6, HOST_MAC, format_mac};

/// Inside the pod: brings `ifname` up, adds the addresses, the gateway neighbours and
/// the routes through them. Returns the pod end's MAC.
pub(crate) async fn configure_pod(
    handle: &Handle,
    ifname: &str,
    addrs: &[IpNet],
) -> Result<String, LinkError> {
    let link = find_link(handle, ifname)
        .await?
        .ok_or_else(|| LinkError::Vanished {
            ifname: ifname.to_owned(),
        })?;
    let index = link.header.index;
    set_up(handle, index, ifname).await?;
    for addr in addrs {
        let mut request = handle.address().add(index, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request
            .execute()
            .await
            .map_err(LinkError::netlink("add pod address", ifname))?;
    }
    if addrs.iter().any(|addr| addr.addr().is_ipv4()) {
        let link_route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(GATEWAY_V4, 32)
            .output_interface(index)
            .scope(RouteScope::Link)
            .build();
        add_route(handle, link_route, ifname, "add gateway link route").await?;
        add_gateway_neighbour(handle, index, GATEWAY_V4.into(), ifname).await?;
        let default = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(GATEWAY_V4)
            .output_interface(index)
            .build();
        add_route(handle, default, ifname, "add ipv4 default route").await?;
    }
    if addrs.iter().any(|addr| addr.addr().is_ipv6()) {
        add_gateway_neighbour(handle, index, GATEWAY_V6.into(), ifname).await?;
        let default = RouteMessageBuilder::<Ipv6Addr>::new()
            .gateway(GATEWAY_V6)
            .output_interface(index)
            .build();
        add_route(handle, default, ifname, "add ipv6 default route").await?;
    }
    let link = find_link(handle, ifname)
        .await?
        .ok_or_else(|| LinkError::Vanished {
            ifname: ifname.to_owned(),
        })?;
    Ok(format_mac(link_mac(&link)))
}

/// On the host: `<addr> dev <host> scope link` for every pod address.
pub(crate) async fn add_host_routes(
    handle: &Handle,
    index: u32,
    host: &str,
    addrs: &[IpNet],
) -> Result<(), LinkError> {
    for addr in addrs {
        let route = match addr.addr() {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .output_interface(index)
                .build(),
        };
        match handle.route().add(route).execute().await {
            Ok(()) => {}
            Err(err) if is_errno(&err, Errno::EEXIST) => {
                return Err(LinkError::RouteExists {
                    addr: *addr,
                    host_ifname: host.to_owned(),
                });
            }
            Err(err) => return Err(LinkError::netlink("add host route", host)(err)),
        }
    }
    Ok(())
}

/// Sets link `index` administratively up.
pub(crate) async fn set_up(handle: &Handle, index: u32, ifname: &str) -> Result<(), LinkError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(LinkError::netlink("set link up", ifname))
}

async fn add_route(
    handle: &Handle,
    route: RouteMessage,
    ifname: &str,
    op: &'static str,
) -> Result<(), LinkError> {
    handle
        .route()
        .add(route)
        .execute()
        .await
        .map_err(LinkError::netlink(op, ifname))
}

/// A permanent neighbour so the pod never has to resolve its gateway.
async fn add_gateway_neighbour(
    handle: &Handle,
    index: u32,
    gateway: IpAddr,
    ifname: &str,
) -> Result<(), LinkError> {
    handle
        .neighbours()
        .add(index, gateway)
        .link_layer_address(&HOST_MAC)
        .replace()
        .execute()
        .await
        .map_err(LinkError::netlink("add gateway neighbour", ifname))
}
