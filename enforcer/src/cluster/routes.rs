//! Host-gateway routing (as flannel's host-gw): every other node's pod blocks are
//! routed via that node's address on the shared network, one route per block, as
//! `ip route replace <block> via <node address> proto 122` would make it.
//!
//! Local pods keep the /32 (/128) routes through their host veths that the plugin
//! makes; they are more specific than any block, so the node's own block needs no
//! route and remote blocks go to the underlay.
//!
//! Every route made here carries the route protocol [`ROUTE_PROTOCOL`] (122, shown as
//! `proto 122` by `ip route`): that is how the enforcer knows its own routes. It only
//! adds, replaces and deletes main-table routes of that protocol; a block whose exact
//! prefix already has someone else's route is refused, never overwritten.
//!
//! [`plan`] decides (pure: the node list and what the kernel holds in, the changes
//! and the refusals out); [`RouteTable`] (in `route_table.rs`) reads the kernel and
//! applies the changes through rtnetlink, in the network namespace it was opened in;
//! [`run_routes`] keeps the kernel in line with the live node list.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::watch;
use tracing::{error, info, warn};

pub use super::route_table::{RouteError, RouteTable};

/// The route protocol of every route the enforcer makes (`ip route show proto 122`).
/// Numbers above 4 mean nothing to the kernel; 122 is in no iproute2 table and used by
/// no routing daemon we know of (Calico's Felix uses 80, BIRD 12).
pub const ROUTE_PROTOCOL: u8 = 122;

/// How often the kernel is compared with the node list even when nothing changed
/// (a route deleted by hand, an underlay address added later).
const RESYNC_EVERY: Duration = Duration::from_secs(10);

/// A live node as the cluster store publishes it: its address on the shared network
/// is the next hop of its pod blocks.
pub use crate::store::etcd::NodeRecord;

/// One route of ours: a remote node's pod block via that node's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRoute {
    pub block: IpNet,
    pub via: IpAddr,
}

impl fmt::Display for BlockRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.block, self.via)
    }
}

/// What the kernel holds, as far as the plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelRoutes {
    /// Main-table routes with [`ROUTE_PROTOCOL`].
    pub ours: Vec<BlockRoute>,
    /// Destinations of the main table's other routes (whoever made them).
    pub foreign: Vec<IpNet>,
    /// This node's own addresses with their prefix lengths (the connected networks).
    pub addresses: Vec<IpNet>,
}

/// Why a block gets no route. Each names the node, the block and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum RouteRefusal {
    #[error(
        "node {node}: pod block {block} overlaps this node's own block {own}; no route \
         (two nodes must never be given overlapping pod CIDRs)"
    )]
    OverlapsOwnBlock {
        node: String,
        block: IpNet,
        own: IpNet,
    },
    #[error(
        "node {node}: pod block {block} overlaps block {other} of node {other_node}; \
         neither gets a route until one of them gives it up"
    )]
    OverlapsOtherNode {
        node: String,
        block: IpNet,
        other_node: String,
        other: IpNet,
    },
    #[error(
        "node {node}: pod block {block} overlaps {network}, a network this node is \
         directly connected to; no route"
    )]
    OverlapsConnected {
        node: String,
        block: IpNet,
        network: IpNet,
    },
    #[error(
        "node {node}: next hop {via} for pod block {block} is not on a network this node \
         is directly connected to; no route (host-gateway routing needs every node to \
         reach every other directly on one network)"
    )]
    NotDirectlyConnected {
        node: String,
        block: IpNet,
        via: IpAddr,
    },
    #[error(
        "node {node}: next hop {via} for pod block {block} is this node's own address; no route"
    )]
    OwnAddress {
        node: String,
        block: IpNet,
        via: IpAddr,
    },
    #[error(
        "node {node}: pod block {block} and the node's address {via} are of different \
         families; no route (the block needs a next hop of its own family: give that \
         node's enforcer --node-address of both families)"
    )]
    FamilyMismatch {
        node: String,
        block: IpNet,
        via: IpAddr,
    },
    #[error(
        "node {node}: a route to {block} exists that zonewarden does not own; it is left \
         alone and no route is added (delete it, or give the node another block)"
    )]
    ForeignRoute { node: String, block: IpNet },
}

/// What to change in the kernel, and the blocks that get no route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// New routes (no route of ours to the block yet).
    pub add: Vec<BlockRoute>,
    /// Routes of ours whose next hop changed.
    pub replace: Vec<BlockRoute>,
    /// Routes of ours no live node needs any more.
    pub remove: Vec<BlockRoute>,
    pub refused: Vec<RouteRefusal>,
}

impl RouteChanges {
    /// Whether the kernel needs no change (refusals aside).
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.replace.is_empty() && self.remove.is_empty()
    }
}

/// The next hop of `node` for a block of `block`'s family, if the node has one.
fn next_hop(node: &NodeRecord, block: &IpNet) -> Option<IpAddr> {
    node.address_for(block)
}

/// Networks an address's prefix makes directly reachable (not loopback, not
/// link-local, not a host address).
fn connected_networks(addresses: &[IpNet]) -> Vec<IpNet> {
    addresses
        .iter()
        .filter(|a| a.prefix_len() < a.max_prefix_len())
        .filter(|a| !a.addr().is_loopback() && !is_link_local(a.addr()))
        .map(IpNet::trunc)
        .collect()
}

fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.is_unicast_link_local(),
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Decides the routes `own` needs for `nodes`, given what the kernel holds.
pub fn plan(own: &str, nodes: &[NodeRecord], current: &KernelRoutes) -> RouteChanges {
    let own_blocks: Vec<IpNet> = nodes
        .iter()
        .filter(|n| n.name == own)
        .flat_map(|n| n.pod_cidrs.iter().map(IpNet::trunc))
        .collect();
    let connected = connected_networks(&current.addresses);
    // One claim per (node, block), in a stable order.
    let mut remote: Vec<(&NodeRecord, IpNet)> = nodes
        .iter()
        .filter(|n| n.name != own)
        .flat_map(|n| n.pod_cidrs.iter().map(move |b| (n, b.trunc())))
        .collect();
    remote.sort_by(|a, b| (&a.0.name, a.1).cmp(&(&b.0.name, b.1)));
    remote.dedup_by(|a, b| a.0.name == b.0.name && a.1 == b.1);
    let mut refused = Vec::new();
    let mut desired: BTreeMap<IpNet, IpAddr> = BTreeMap::new();
    for &(node, block) in &remote {
        match refusal(node, &block, &own_blocks, &connected, current, &remote) {
            Some(why) => refused.push(why),
            None => {
                if let Some(via) = next_hop(node, &block) {
                    desired.insert(block, via);
                }
            }
        }
    }
    let mut changes = RouteChanges {
        refused,
        ..RouteChanges::default()
    };
    let ours: BTreeMap<IpNet, IpAddr> = current.ours.iter().map(|r| (r.block, r.via)).collect();
    for (&block, &via) in &desired {
        match ours.get(&block) {
            Some(&now) if now == via => {}
            Some(_) => changes.replace.push(BlockRoute { block, via }),
            None => changes.add.push(BlockRoute { block, via }),
        }
    }
    for route in &current.ours {
        if !desired.contains_key(&route.block) {
            changes.remove.push(*route);
        }
    }
    changes.remove.sort();
    changes.remove.dedup();
    changes.refused.sort();
    changes.refused.dedup();
    changes
}

/// Why `node`'s `block` gets no route, if it gets none.
fn refusal(
    node: &NodeRecord,
    block: &IpNet,
    own_blocks: &[IpNet],
    connected: &[IpNet],
    current: &KernelRoutes,
    remote: &[(&NodeRecord, IpNet)],
) -> Option<RouteRefusal> {
    let name = || node.name.clone();
    let Some(via) = next_hop(node, block) else {
        return Some(RouteRefusal::FamilyMismatch {
            node: name(),
            block: *block,
            via: node.address,
        });
    };
    if let Some(own) = own_blocks.iter().find(|own| overlaps(own, block)) {
        return Some(RouteRefusal::OverlapsOwnBlock {
            node: name(),
            block: *block,
            own: *own,
        });
    }
    if let Some((other, other_block)) = remote
        .iter()
        .find(|(other, b)| other.name != node.name && overlaps(b, block))
    {
        return Some(RouteRefusal::OverlapsOtherNode {
            node: name(),
            block: *block,
            other_node: other.name.clone(),
            other: *other_block,
        });
    }
    if current.addresses.iter().any(|a| a.addr() == via) {
        return Some(RouteRefusal::OwnAddress {
            node: name(),
            block: *block,
            via,
        });
    }
    if !connected.iter().any(|net| net.contains(&via)) {
        return Some(RouteRefusal::NotDirectlyConnected {
            node: name(),
            block: *block,
            via,
        });
    }
    if let Some(network) = connected.iter().find(|net| overlaps(net, block)) {
        return Some(RouteRefusal::OverlapsConnected {
            node: name(),
            block: *block,
            network: *network,
        });
    }
    let ours = current.ours.iter().any(|r| r.block == *block);
    if !ours && current.foreign.contains(block) {
        return Some(RouteRefusal::ForeignRoute {
            node: name(),
            block: *block,
        });
    }
    None
}

/// Keeps this node's routes in line with the live node list until the list's sender
/// is gone. The routes stay when it returns: pods keep reaching other nodes while the
/// enforcer restarts, as the table keeps enforcing.
pub async fn run_routes(own: String, mut nodes: watch::Receiver<Vec<NodeRecord>>) {
    let table = loop {
        match RouteTable::open() {
            Ok(table) => break table,
            Err(err) => {
                error!(%err, "host-gateway routing: cannot open a route netlink socket; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let mut refused_before: BTreeSet<RouteRefusal> = BTreeSet::new();
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.tick().await;
    loop {
        let list = nodes.borrow_and_update().clone();
        match table.reconcile(&own, &list).await {
            Ok((changes, failed)) => {
                report(&changes, &failed, &mut refused_before);
            }
            Err(err) => {
                warn!(%err, "host-gateway routing: cannot read the node's routes; retrying")
            }
        }
        tokio::select! {
            changed = nodes.changed() => if changed.is_err() {
                info!("host-gateway routing stops; the routes stay");
                return;
            },
            _ = resync.tick() => {}
        }
    }
}

/// Logs what changed; a refusal once when it appears and once when it clears.
fn report(
    changes: &RouteChanges,
    failed: &[RouteError],
    refused_before: &mut BTreeSet<RouteRefusal>,
) {
    for route in &changes.add {
        info!(%route, "route to a node's pod block added");
    }
    for route in &changes.replace {
        info!(%route, "route to a node's pod block replaced (new next hop)");
    }
    for route in &changes.remove {
        info!(%route, "route to a pod block of a node that left removed");
    }
    for err in failed {
        error!(err = %err, source = ?std::error::Error::source(err), "host-gateway routing: a route change failed; retrying at the next resync");
    }
    let refused: BTreeSet<RouteRefusal> = changes.refused.iter().cloned().collect();
    for refusal in refused.difference(refused_before) {
        error!(%refusal, "host-gateway routing: block refused");
    }
    for refusal in refused_before.difference(&refused) {
        info!(%refusal, "host-gateway routing: refusal cleared");
    }
    *refused_before = refused;
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
