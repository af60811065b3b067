//! The main routing table through rtnetlink: what [`plan`] needs to know of it (our
//! routes, the destinations of everyone else's, the node's addresses) and the changes
//! it decides. A route netlink socket keeps the network namespace it was opened in.
//!
//! [`plan`]: super::routes::plan

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::routes::{BlockRoute, KernelRoutes, NodeRecord, ROUTE_PROTOCOL, RouteChanges, plan};

/// Failures of reading or changing the node's routes.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("failed to open a route netlink socket")]
    Open { source: std::io::Error },
    #[error("failed to list the node's {what}")]
    List {
        what: &'static str,
        source: rtnetlink::Error,
    },
    #[error("failed to {op} the route {route}")]
    Change {
        op: &'static str,
        route: BlockRoute,
        source: rtnetlink::Error,
    },
}

/// The main routing table of the network namespace the table was opened in.
pub struct RouteTable {
    handle: Handle,
}

impl RouteTable {
    /// Opens a route netlink socket in the caller's network namespace; its connection
    /// runs as a task of the current tokio runtime.
    pub fn open() -> Result<Self, RouteError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| RouteError::Open { source })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// Our routes, the other routes' destinations and the node's addresses.
    pub async fn read(&self) -> Result<KernelRoutes, RouteError> {
        let mut kernel = KernelRoutes::default();
        let dumps = [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ];
        for request in dumps {
            let mut routes = self.handle.route().get(request).execute();
            while let Some(route) = routes.try_next().await.map_err(|source| RouteError::List {
                what: "routes",
                source,
            })? {
                if table_of(&route) != u32::from(RouteHeader::RT_TABLE_MAIN) {
                    continue;
                }
                let Some(block) = destination(&route) else {
                    continue;
                };
                match (route.header.protocol, gateway(&route)) {
                    (RouteProtocol::Other(ROUTE_PROTOCOL), Some(via)) => {
                        kernel.ours.push(BlockRoute { block, via })
                    }
                    _ => kernel.foreign.push(block),
                }
            }
        }
        let mut addresses = self.handle.address().get().execute();
        while let Some(address) = addresses
            .try_next()
            .await
            .map_err(|source| RouteError::List {
                what: "addresses",
                source,
            })?
        {
            kernel.addresses.extend(address_net(&address));
        }
        Ok(kernel)
    }

    /// Applies `changes`: removals first (a block that moved to another node must not
    /// have two routes), then replacements and additions. Every failure is returned;
    /// one failed route does not stop the others.
    pub async fn apply(&self, changes: &RouteChanges) -> Vec<RouteError> {
        let mut failed = Vec::new();
        for route in &changes.remove {
            if let Err(source) = self.handle.route().del(message(route)).execute().await {
                failed.push(RouteError::Change {
                    op: "delete",
                    route: *route,
                    source,
                });
            }
        }
        for (op, routes) in [("replace", &changes.replace), ("add", &changes.add)] {
            for route in routes {
                let request = self.handle.route().add(message(route));
                // A new route is added exclusively: should someone else's route to the
                // block appear since the kernel was read, it is kept and ours refused.
                let request = if op == "replace" {
                    request.replace()
                } else {
                    request
                };
                if let Err(source) = request.execute().await {
                    failed.push(RouteError::Change {
                        op,
                        route: *route,
                        source,
                    });
                }
            }
        }
        failed
    }

    /// Reads the kernel, plans for `own` and `nodes`, applies; returns the plan.
    pub async fn reconcile(
        &self,
        own: &str,
        nodes: &[NodeRecord],
    ) -> Result<(RouteChanges, Vec<RouteError>), RouteError> {
        let kernel = self.read().await?;
        let changes = plan(own, nodes, &kernel);
        let failed = self.apply(&changes).await;
        Ok((changes, failed))
    }
}

/// The netlink message of one of our routes (for add, replace and delete alike: a
/// delete with our protocol never matches anyone else's route).
fn message(route: &BlockRoute) -> RouteMessage {
    let mut message = RouteMessageBuilder::<IpAddr>::new()
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .build();
    message.header.address_family = match route.block {
        IpNet::V4(_) => rtnetlink::packet_route::AddressFamily::Inet,
        IpNet::V6(_) => rtnetlink::packet_route::AddressFamily::Inet6,
    };
    message.header.destination_prefix_length = route.block.prefix_len();
    message
        .attributes
        .push(RouteAttribute::Destination(route_address(
            route.block.addr(),
        )));
    message
        .attributes
        .push(RouteAttribute::Gateway(route_address(route.via)));
    message
}

fn route_address(addr: IpAddr) -> RouteAddress {
    match addr {
        IpAddr::V4(a) => RouteAddress::Inet(a),
        IpAddr::V6(a) => RouteAddress::Inet6(a),
    }
}

fn table_of(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

fn destination(route: &RouteMessage) -> Option<IpNet> {
    let len = route.header.destination_prefix_length;
    let addr = route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    });
    match (addr, route.header.address_family) {
        (Some(addr), _) => IpNet::new(addr, len).ok(),
        // The default route carries no destination.
        (None, rtnetlink::packet_route::AddressFamily::Inet) => "0.0.0.0/0".parse().ok(),
        (None, rtnetlink::packet_route::AddressFamily::Inet6) => "::/0".parse().ok(),
        (None, _) => None,
    }
}

fn gateway(route: &RouteMessage) -> Option<IpAddr> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

/// An interface address with its prefix length (IPv4's local address, not the peer).
fn address_net(message: &AddressMessage) -> Option<IpNet> {
    let find = |local: bool| {
        message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(addr) if local => Some(*addr),
            AddressAttribute::Address(addr) if !local => Some(*addr),
            _ => None,
        })
    };
    let addr = find(true).or_else(|| find(false))?;
    IpNet::new(addr, message.header.prefix_len).ok()
}
