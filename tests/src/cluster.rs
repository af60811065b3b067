//! Many nodes on one network: an underlay (a bridge in a namespace of its own), node
//! namespaces attached to it by veth, and a real etcd cluster whose members sit on the
//! same underlay, each in a namespace of its own.
//!
//! Every namespace has a name unique to the test process ([`Netns::new`]); everything
//! goes on drop, even when the test panics: enforcers and etcd members are killed by
//! PID, namespaces deleted, data directories removed. Forwarding is turned on inside
//! the node namespaces only, never in the machine's own.
//!
//! Addresses (each underlay is a namespace of its own, so tests never collide):
//! node `n` (1-based) is `10.240.0.n/24` and `fd00:240::n/64` on the underlay, with pod
//! blocks `10.241.n.0/24` and `fd00:241:0:n::/64`; etcd member `m` (0-based) is
//! `10.240.0.(101+m)`.
//!
//! # Layout
//! - this file: [`Underlay`], [`Cluster`], [`ClusterNode`].
//! - [`etcd`]: [`etcd::EtcdCluster`], Debian's etcd started, killed and restarted by PID.
//! - [`routes`]: [`routes::ManualRoutes`], the enforcer's host-gateway routes fed a
//!   node list by hand (until the cluster store feeds them).

pub mod etcd;
pub mod routes;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use zonewarden_enforcer::cluster::routes::NodeRecord;

use crate::cni::Conflist;
use crate::netns::{Netns, run_ok};
use crate::node::Node;

/// The underlay's interface inside every node and member namespace.
pub const UNDERLAY_IFNAME: &str = "ul0";

/// An underlay host's IPv4 address (`10.240.0.host`).
pub fn underlay_v4(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 240, 0, host)
}

/// An underlay host's IPv6 address (`fd00:240::host`).
pub fn underlay_v6(host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x240, 0, 0, 0, 0, 0, u16::from(host))
}

/// One shared L2 network: a bridge in a namespace of its own.
pub struct Underlay {
    pub netns: Netns,
}

impl Underlay {
    pub fn new() -> Self {
        let netns = Netns::new("ul");
        netns.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        netns.ip(&["link", "set", "br0", "up"]);
        Self { netns }
    }

    /// Plugs `ns` into the bridge: a veth whose end in `ns` is [`UNDERLAY_IFNAME`] with
    /// `10.240.0.host/24` and `fd00:240::host/64`, usable at once (no duplicate detection).
    pub fn attach(&self, ns: &Netns, host: u8) {
        let port = format!("p{host}");
        self.netns.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            UNDERLAY_IFNAME,
            "netns",
            &ns.name,
        ]);
        self.netns
            .ip(&["link", "set", &port, "master", "br0", "up"]);
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/24", underlay_v4(host)),
            "dev",
            UNDERLAY_IFNAME,
        ]);
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/64", underlay_v6(host)),
            "dev",
            UNDERLAY_IFNAME,
            "nodad",
        ]);
        // No duplicate detection on the link-local address either: the kernel sends
        // the neighbour solicitations of forwarded IPv6 packets from it, and sends none
        // while it is tentative (the first second or two after the link comes up).
        run_ok(&mut ns.exec(
            "sh",
            &[
                "-c",
                &format!("echo 0 > /proc/sys/net/ipv6/conf/{UNDERLAY_IFNAME}/accept_dad"),
            ],
        ));
        ns.ip(&["link", "set", UNDERLAY_IFNAME, "up"]);
    }
}

impl Default for Underlay {
    fn default() -> Self {
        Self::new()
    }
}

/// A node of a cluster: a [`Node`] whose namespace is on the underlay.
pub struct ClusterNode {
    pub node: Node,
    /// 1-based: the host part of its underlay addresses and the third octet of its block.
    pub index: u8,
}

impl ClusterNode {
    /// The node's name, as its enforcer is told (`--node`).
    pub fn name(&self) -> &str {
        &self.node.netns.name
    }

    pub fn address(&self) -> Ipv4Addr {
        underlay_v4(self.index)
    }

    pub fn address6(&self) -> Ipv6Addr {
        underlay_v6(self.index)
    }

    /// The node's IPv4 pod block, `10.241.index.0/24`.
    pub fn pod_block(&self) -> IpNet {
        format!("10.241.{}.0/24", self.index)
            .parse()
            .expect("IPv4 block")
    }

    /// The node's IPv6 pod block, `fd00:241:0:index::/64`.
    pub fn pod_block6(&self) -> IpNet {
        format!("fd00:241:0:{:x}::/64", self.index)
            .parse()
            .expect("IPv6 block")
    }

    /// The node's record with its IPv4 address and block.
    pub fn record(&self) -> NodeRecord {
        NodeRecord {
            name: self.name().to_owned(),
            address: IpAddr::V4(self.address()),
            second_address: None,
            pod_cidrs: vec![self.pod_block()],
            enforcer_version: String::new(),
        }
    }

    /// The node's record with its IPv6 address and block.
    pub fn record6(&self) -> NodeRecord {
        NodeRecord {
            name: self.name().to_owned(),
            address: IpAddr::V6(self.address6()),
            second_address: None,
            pod_cidrs: vec![self.pod_block6()],
            enforcer_version: String::new(),
        }
    }

    /// A routed network whose host-local ranges are this node's blocks (dual-stack pods).
    pub fn conflist(&self, network: &str) -> Conflist {
        Conflist::routed_ranges(
            &self.node,
            network,
            &[
                &self.pod_block().to_string(),
                &self.pod_block6().to_string(),
            ],
        )
    }

    /// `--node-address` (both families) and `--pod-cidr` for this node's enforcer.
    pub fn enforcer_args(&self) -> Vec<String> {
        vec![
            "--node-address".into(),
            self.address().to_string(),
            "--node-address".into(),
            self.address6().to_string(),
            "--pod-cidr".into(),
            self.pod_block().to_string(),
            "--pod-cidr".into(),
            self.pod_block6().to_string(),
        ]
    }
}

/// Nodes on one underlay, with an etcd cluster when asked for.
pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    pub etcd: Option<etcd::EtcdCluster>,
    /// Last: dropped after the namespaces plugged into it.
    pub underlay: Underlay,
}

impl Cluster {
    /// `nodes` node namespaces (forwarding on, no enforcer yet) and, unless
    /// `etcd_members` is 0, an etcd cluster of that many members, healthy.
    pub fn new(nodes: u8, etcd_members: u8) -> Self {
        assert!(nodes <= 100, "node addresses end below the etcd members'");
        let underlay = Underlay::new();
        let nodes = (1..=nodes)
            .map(|index| {
                let netns = Netns::new("node");
                underlay.attach(&netns, index);
                enable_forwarding(&netns);
                ClusterNode {
                    node: Node::in_netns(netns),
                    index,
                }
            })
            .collect();
        let etcd = (etcd_members > 0).then(|| etcd::EtcdCluster::start(&underlay, etcd_members));
        Self {
            nodes,
            etcd,
            underlay,
        }
    }

    pub fn etcd(&self) -> &etcd::EtcdCluster {
        self.etcd
            .as_ref()
            .expect("this cluster was made without etcd")
    }

    pub fn etcd_mut(&mut self) -> &mut etcd::EtcdCluster {
        self.etcd
            .as_mut()
            .expect("this cluster was made without etcd")
    }

    /// Every node's IPv4 record.
    pub fn records(&self) -> Vec<NodeRecord> {
        self.nodes.iter().map(ClusterNode::record).collect()
    }

    /// Every node's IPv6 record.
    pub fn records6(&self) -> Vec<NodeRecord> {
        self.nodes.iter().map(ClusterNode::record6).collect()
    }
}

/// IPv4 and IPv6 forwarding inside `ns` (a node routes between its pods and the underlay).
pub fn enable_forwarding(ns: &Netns) {
    run_ok(&mut ns.exec(
        "sh",
        &[
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward && \
             echo 1 > /proc/sys/net/ipv6/conf/all/forwarding",
        ],
    ));
}
