//! Pods attached through the real plugin on a routed network, each in its own zone.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cni::{Attachment, Conflist, all_ips};
use crate::netns::Netns;
use crate::node::Node;
use crate::traffic::{Server, connects};
use crate::wait;

pub struct Pod {
    pub netns: Netns,
    pub at: Attachment,
    /// The pod's first address (IPv4 on a dual-stack network).
    pub ip: String,
    /// The pod's IPv6 address, if it has one.
    pub ip6: Option<String>,
    pub zone: String,
    pub result: Value,
}

impl Pod {
    /// `addr:port/proto` of this pod's first address.
    pub fn target(&self, port: u16, proto: &str) -> String {
        target_of(&self.ip, port, proto)
    }

    /// `[addr]:port/proto` of this pod's IPv6 address.
    pub fn target6(&self, port: u16, proto: &str) -> String {
        let ip6 = self
            .ip6
            .as_deref()
            .unwrap_or_else(|| panic!("pod {} has no IPv6 address", self.netns.name));
        target_of(ip6, port, proto)
    }

    /// The IPv6 address; panics when the pod has none.
    pub fn v6(&self) -> &str {
        self.ip6
            .as_deref()
            .unwrap_or_else(|| panic!("pod {} has no IPv6 address", self.netns.name))
    }
}

/// `addr:port/proto`, with the address in brackets for IPv6.
pub fn target_of(addr: &str, port: u16, proto: &str) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}/{proto}")
    } else {
        format!("{addr}:{port}/{proto}")
    }
}

/// Attaches a pod named `name` whose zone is `zone` (given through CNI_ARGS).
pub fn add_pod(node: &Node, list: &Conflist, name: &str, zone: &str) -> Pod {
    let netns = Netns::new(name);
    let at = Attachment::new(&format!("{name}-{}", std::process::id()), &netns).with_args(
        &format!("IgnoreUnknown=1;ZONEWARDEN_ZONE={zone};K8S_POD_NAME={name}"),
    );
    let result = list
        .add(node, &at, &json!({}))
        .unwrap_or_else(|o| panic!("ADD {name}: {o:?}"));
    let ips = all_ips(&result);
    let ip = ips
        .first()
        .cloned()
        .unwrap_or_else(|| panic!("ADD {name} gave no address: {result}"));
    let ip6 = ips.iter().find(|a| a.contains(':')).cloned();
    Pod {
        netns,
        at,
        ip,
        ip6,
        zone: zone.to_owned(),
        result,
    }
}

/// Two pods a runtime made, by their namespaces, zones and the server's address.
pub struct PodPair<'a> {
    pub client: &'a Netns,
    pub client_zone: &'a str,
    pub server: &'a Netns,
    pub server_zone: &'a str,
    pub server_ip: &'a str,
}

impl PodPair<'_> {
    /// The server's `port` over TCP.
    pub fn target(&self, port: u16) -> String {
        target_of(self.server_ip, port, "tcp")
    }

    /// Learn → approve → enforce with real traffic: the client connects to the server's
    /// `port` while its zone learns; the server's zone approves what it learned and
    /// enforces; then `port` still passes, and `other` (never learned) is dropped and
    /// reported. Returns the server's echo servers (both ports), for later checks.
    pub fn learn_approve_enforce(&self, node: &Node, port: u16, other: u16) -> Server {
        let servers = Server::start(
            self.server,
            &[&format!("tcp:{port}"), &format!("tcp:{other}")],
        );
        assert!(
            connects(self.client, &self.target(port)),
            "{} -> {}:{port} while learning",
            self.client_zone,
            self.server_zone
        );
        let edge = format!("{}->{}:{port}/tcp", self.client_zone, self.server_zone);
        wait::until(
            &format!("{edge} to be learned"),
            Duration::from_secs(10),
            || {
                node.items(&["get", "edges", "--learned", "--zone", self.server_zone])
                    .iter()
                    .any(|e| e["edge"] == edge.as_str())
            },
        );
        node.zwctl(&["profile", "approve", self.server_zone, "--all"]);
        node.zwctl(&["mode", "set", self.server_zone, "enforce"]);
        self.assert_enforced(port, other, "after approval");
        let dropped = format!("{}->{}:{other}/tcp", self.client_zone, self.server_zone);
        wait::until(
            &format!("the drop of {dropped} to be reported"),
            Duration::from_secs(10),
            || node.reported("drop", &dropped),
        );
        servers
    }

    /// The approved `port` passes, the unapproved `other` is dropped.
    pub fn assert_enforced(&self, port: u16, other: u16, when: &str) {
        assert!(
            connects(self.client, &self.target(port)),
            "the approved edge to {port} passes {when}"
        );
        assert!(
            !connects(self.client, &self.target(other)),
            "the unapproved port {other} is dropped {when}"
        );
    }
}
