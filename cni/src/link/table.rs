//! Reading the main routing table back, reduced to what CHECK compares.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::error::LinkError;

/// A unicast route of the main table, reduced to what CHECK compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MainRoute {
    pub(crate) dst: Option<IpNet>,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) oif: Option<u32>,
}

/// The unicast routes of the main table, both families.
pub(crate) async fn main_routes(
    handle: &Handle,
    ifname: &str,
) -> Result<Vec<MainRoute>, LinkError> {
    let mut routes = Vec::new();
    let dumps = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for dump in dumps {
        let messages: Vec<RouteMessage> = handle
            .route()
            .get(dump)
            .execute()
            .try_collect()
            .await
            .map_err(LinkError::netlink("list routes", ifname))?;
        routes.extend(messages.iter().filter_map(MainRoute::from_message));
    }
    Ok(routes)
}

impl MainRoute {
    fn from_message(msg: &RouteMessage) -> Option<Self> {
        let table = msg.attributes.iter().find_map(|attr| match attr {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        });
        let main = u32::from(RouteHeader::RT_TABLE_MAIN);
        if table.unwrap_or(u32::from(msg.header.table)) != main
            || msg.header.kind != RouteType::Unicast
        {
            return None;
        }
        let mut route = MainRoute {
            dst: None,
            gateway: None,
            oif: None,
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(dst) => {
                    route.dst = ip_of(dst)
                        .and_then(|ip| IpNet::new(ip, msg.header.destination_prefix_length).ok());
                }
                RouteAttribute::Gateway(gw) => route.gateway = ip_of(gw),
                RouteAttribute::Oif(oif) => route.oif = Some(*oif),
                _ => {}
            }
        }
        Some(route)
    }

    /// A default route through `gateway` on link `oif`.
    pub(crate) fn is_default_via(&self, gateway: IpAddr, oif: u32) -> bool {
        self.dst.is_none_or(|dst| dst.prefix_len() == 0)
            && self.gateway == Some(gateway)
            && self.oif == Some(oif)
    }
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}
