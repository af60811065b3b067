//! The compiled data plane: what the node's nftables table must hold for a policy and
//! a set of endpoints, as a typed model, and the difference between two of them.
//!
//! Per packet, a new connection costs a constant number of hash lookups whatever the
//! number of zones, endpoints or edges: the source address selects its zone's egress
//! chain through a verdict map, the destination address its zone's ingress chain, and
//! each chain asks one set of allowed (peer address, protocol, port). Endpoints and
//! approvals are set elements; a zone's chain changes only with its mode, or when its
//! first or last approved edge of a kind comes or goes (see [`SetKinds`]).
//!
//! Both address families are compiled alike: addresses are [`IpAddr`]s, and an
//! approved edge allows its peers' IPv4 and IPv6 addresses (ICMP edges allow ICMP and
//! ICMPv6). The renderer puts each address into the set of its family.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::edge::{Edge, Proto};
use crate::endpoint::Endpoint;
use crate::policy::{NodeSettings, Policy};
use crate::profile::Mode;
use crate::zone::ZoneName;

/// One allowed (peer address, protocol, port) in a zone's egress or ingress set.
pub type Allow = (IpAddr, Proto, u16);

/// The chains and sets of one zone with members on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneRules {
    pub id: u32,
    pub zone: ZoneName,
    pub mode: Mode,
    /// Destinations this zone may open connections to (approved edges from it).
    pub allow_out: BTreeSet<Allow>,
    /// Sources that may open connections to this zone (approved edges into it).
    pub allow_in: BTreeSet<Allow>,
    /// (prefix, protocol, port) approved to and from CIDR zones.
    pub cidr_out: BTreeSet<(IpNet, Proto, u16)>,
    pub cidr_in: BTreeSet<(IpNet, Proto, u16)>,
    /// (protocol, port) approved to and from `world`.
    pub world_out: BTreeSet<(Proto, u16)>,
    pub world_in: BTreeSet<(Proto, u16)>,
    /// Which of its peer and world sets the zone has (and the rules that use them):
    /// those its approved edges need, whatever the elements.
    pub sets: SetKinds,
}

/// Which peer and world sets a zone has, each in both address families: only those
/// of the kinds of edge it has approved, so that a zone with no approved edge has no
/// set at all. The kernel finds a set by name by walking the table's list of sets, at
/// every element change and every listing, so each set costs every change a little;
/// a node of a large cluster would otherwise hold a dozen per zone, nearly all empty.
///
/// A kind is needed while an approved edge of it touches the zone, even when the
/// peer zone has no member yet: an endpoint that comes or goes changes elements
/// only, never a chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetKinds(u8);

impl SetKinds {
    pub const NONE: Self = Self(0);
    /// Peers with ports (`allow_out_v4_N`, `allow_out_v6_N`), then without
    /// (`proto_out_v4_N`, ...), then `world` with and without ports, each `out` and `in`.
    pub const PEERS_OUT: Self = Self(1);
    pub const PEERS_PROTO_OUT: Self = Self(1 << 1);
    pub const WORLD_OUT: Self = Self(1 << 2);
    pub const WORLD_PROTO_OUT: Self = Self(1 << 3);
    pub const PEERS_IN: Self = Self(1 << 4);
    pub const PEERS_PROTO_IN: Self = Self(1 << 5);
    pub const WORLD_IN: Self = Self(1 << 6);
    pub const WORLD_PROTO_IN: Self = Self(1 << 7);
    pub const ALL: Self = Self(u8::MAX);

    pub fn contains(self, kinds: Self) -> bool {
        self.0 & kinds.0 == kinds.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The kinds of `self` that `other` does not have.
    pub fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The sets one approved edge needs in `zone` (none when it does not touch it):
    /// as the source, its outgoing kind; as the destination, its incoming one.
    pub fn of_edge(zone: &ZoneName, edge: &Edge) -> Self {
        let ports = edge.proto.has_ports();
        let kind = |other: &ZoneName, out: bool| {
            let world = other.as_str() == crate::zone::WORLD_ZONE;
            Self(match (world, ports, out) {
                (false, true, true) => Self::PEERS_OUT.0,
                (false, false, true) => Self::PEERS_PROTO_OUT.0,
                (true, true, true) => Self::WORLD_OUT.0,
                (true, false, true) => Self::WORLD_PROTO_OUT.0,
                (false, true, false) => Self::PEERS_IN.0,
                (false, false, false) => Self::PEERS_PROTO_IN.0,
                (true, true, false) => Self::WORLD_IN.0,
                (true, false, false) => Self::WORLD_PROTO_IN.0,
            })
        };
        let mut kinds = Self::NONE;
        if &edge.src == zone {
            kinds = kinds.union(kind(&edge.dst, true));
        }
        if &edge.dst == zone {
            kinds = kinds.union(kind(&edge.src, false));
        }
        kinds
    }

    /// The sets the approved edges touching `zone` need.
    pub fn of_edges<'a>(zone: &ZoneName, edges: impl IntoIterator<Item = &'a Edge>) -> Self {
        edges.into_iter().fold(Self::NONE, |kinds, edge| {
            kinds.union(Self::of_edge(zone, edge))
        })
    }
}

impl ZoneRules {
    /// What the zone's chains say, apart from set elements: a change means a rewrite.
    /// The profile's version is not in it: an approval changes elements only (reports
    /// take the version in force when the enforcer receives them).
    pub fn chain_key(&self) -> (Mode, bool, SetKinds) {
        (self.mode, self.has_cidr(), self.sets)
    }

    /// Whether the zone has approved edges with CIDR zones. Only then does it have CIDR
    /// sets (interval sets, which make every nft transaction read them) and the rules
    /// that use them.
    pub fn has_cidr(&self) -> bool {
        !self.cidr_out.is_empty() || !self.cidr_in.is_empty()
    }
}

/// A local endpoint address and what the data plane needs about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalAddr {
    pub zone_id: u32,
    /// The host-side interface: packets from it must carry this address.
    pub host_ifname: Option<String>,
    /// `host_ifname` is a bridge port (chained after a bridge): its frames must carry
    /// this address and `mac` (when known), checked in the bridge family.
    pub bridged: bool,
    pub mac: Option<String>,
    pub quarantined: bool,
    pub comment: String,
}

/// Everything the node's table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub settings: NodeSettings,
    pub zones: BTreeMap<u32, ZoneRules>,
    /// Local endpoint addresses (egress/ingress maps, anti-spoofing, quarantine).
    pub local: BTreeMap<IpAddr, LocalAddr>,
    /// Every known endpoint address (local or not) and its zone id, with a comment.
    /// The comment is shared text: a node that knows a large cluster holds one per
    /// remote endpoint, and the incremental compiler's index holds the same one.
    pub members: BTreeMap<IpAddr, (u32, Comment)>,
    /// The node's own addresses: the `host` zone.
    pub host: BTreeSet<IpAddr>,
    /// Every prefix of every CIDR zone: these addresses are not `world`.
    pub cidrs: BTreeSet<IpNet>,
}

/// What the compiler needs to know besides the policy.
pub struct CompileInput<'a> {
    pub policy: &'a Policy,
    /// Every endpoint known (this node's and others').
    pub endpoints: &'a [Endpoint],
    pub node: &'a str,
    pub zone_ids: &'a BTreeMap<ZoneName, u32>,
    /// Addresses of the node itself: the `host` zone.
    pub host_addrs: &'a [IpAddr],
    /// Endpoints quarantined one by one (by container id).
    pub quarantined_endpoints: &'a BTreeSet<String>,
}

/// The comment of an endpoint's set elements, shared by the indexes that keep it.
pub type Comment = std::sync::Arc<str>;

/// The comment of an endpoint's elements: its zone and its pod or attachment.
pub fn member_comment(ep: &Endpoint) -> String {
    let who = match (&ep.pod_namespace, &ep.pod_name) {
        (Some(ns), Some(pod)) => format!("pod {ns}/{pod}"),
        (None, Some(pod)) => format!("pod {pod}"),
        _ => format!("container {}", ep.key.container_id),
    };
    truncate_chars(format!("{} {who}", ep.zone), MAX_MEMBER_COMMENT_BYTES)
}

/// Whether an endpoint's host interface is a bridge port (chained after a bridge).
pub fn is_bridged(ep: &Endpoint) -> bool {
    ep.bridge.is_some() && ep.host_ifname.is_some()
}

/// The MAC address a bridge port's frames must carry (only bridged endpoints have one
/// in the data plane).
pub fn bridge_mac(ep: &Endpoint) -> Option<String> {
    ep.mac.clone().filter(|m| is_bridged(ep) && !m.is_empty())
}

/// At most this many bytes of an endpoint's comment are kept.
pub const MAX_MEMBER_COMMENT_BYTES: usize = 120;

/// `text` cut to at most `max` bytes, on a character boundary (a pod name may hold
/// any Unicode).
pub fn truncate_chars(mut text: String, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

pub fn compile(input: &CompileInput<'_>) -> Ruleset {
    let mut rs = Ruleset {
        settings: input.policy.settings,
        host: input.host_addrs.iter().copied().collect(),
        cidrs: input
            .policy
            .cidr_zones
            .values()
            .flatten()
            .map(IpNet::trunc)
            .collect(),
        ..Ruleset::default()
    };
    let mut addrs_of: BTreeMap<&ZoneName, Vec<IpAddr>> = BTreeMap::new();
    for ep in input.endpoints {
        let Some(&id) = input.zone_ids.get(&ep.zone) else {
            continue;
        };
        addrs_of.entry(&ep.zone).or_default().extend(ep.addrs());
        for addr in ep.addrs() {
            rs.members.insert(addr, (id, member_comment(ep).into()));
            if ep.node != input.node {
                continue;
            }
            let quarantined = input.quarantined_endpoints.contains(&*ep.key.container_id)
                || input.policy.zone_quarantined(&ep.zone);
            let local = LocalAddr {
                zone_id: id,
                host_ifname: ep.host_ifname.clone(),
                bridged: is_bridged(ep),
                mac: bridge_mac(ep),
                quarantined,
                comment: member_comment(ep),
            };
            rs.local.insert(addr, local);
            rs.zones.entry(id).or_insert_with(|| ZoneRules {
                id,
                zone: ep.zone.clone(),
                mode: input.policy.mode(&ep.zone),
                allow_out: BTreeSet::new(),
                allow_in: BTreeSet::new(),
                cidr_out: BTreeSet::new(),
                cidr_in: BTreeSet::new(),
                world_out: BTreeSet::new(),
                world_in: BTreeSet::new(),
                sets: SetKinds::NONE,
            });
        }
    }
    let host = ZoneName::host();
    let world = ZoneName::world();
    let peers = |zone: &ZoneName| -> Vec<IpAddr> {
        if zone == &host {
            input.host_addrs.to_vec()
        } else {
            addrs_of.get(zone).cloned().unwrap_or_default()
        }
    };
    let ids: BTreeMap<ZoneName, u32> = rs.zones.values().map(|z| (z.zone.clone(), z.id)).collect();
    for edge in input.policy.approved_edges() {
        let Edge {
            src,
            dst,
            proto,
            port,
        } = edge;
        let nets = |zone: &ZoneName| {
            input
                .policy
                .cidr_zones
                .get(zone)
                .cloned()
                .unwrap_or_default()
        };
        for zone in [src, dst] {
            if let Some(rules) = ids.get(zone).and_then(|id| rs.zones.get_mut(id)) {
                rules.sets = rules.sets.union(SetKinds::of_edge(zone, edge));
            }
        }
        if let Some(rules) = ids.get(src).and_then(|id| rs.zones.get_mut(id)) {
            if dst == &world {
                rules.world_out.insert((*proto, *port));
            } else {
                rules
                    .allow_out
                    .extend(peers(dst).into_iter().map(|a| (a, *proto, *port)));
                rules
                    .cidr_out
                    .extend(nets(dst).into_iter().map(|n| (n.trunc(), *proto, *port)));
            }
        }
        if let Some(rules) = ids.get(dst).and_then(|id| rs.zones.get_mut(id)) {
            if src == &world {
                rules.world_in.insert((*proto, *port));
            } else {
                rules
                    .allow_in
                    .extend(peers(src).into_iter().map(|a| (a, *proto, *port)));
                rules
                    .cidr_in
                    .extend(nets(src).into_iter().map(|n| (n.trunc(), *proto, *port)));
            }
        }
    }
    rs
}

/// Where a connection's first packet meets the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Routed between two addresses that are not the node's (pod to pod, pod to world).
    Forward,
    /// From the node itself (kubelet probes, host processes).
    Output,
    /// To the node itself.
    Input,
}

impl Ruleset {
    /// Whether an address belongs to an endpoint or the node.
    pub fn is_known(&self, addr: IpAddr) -> bool {
        self.members.contains_key(&addr) || self.host.contains(&addr)
    }

    /// Whether an address is `world`: no endpoint, not the node, in no CIDR zone.
    pub fn is_world(&self, addr: IpAddr) -> bool {
        !self.is_known(addr) && !self.cidrs.iter().any(|n| n.contains(&addr))
    }

    /// The verdict of the rendered chains for a new connection: the reference semantics
    /// the kernel rules implement, rule by rule (see the enforcer's renderer).
    pub fn simulate(
        &self,
        hook: Hook,
        src: IpAddr,
        dst: IpAddr,
        proto: Proto,
        port: u16,
    ) -> crate::policy::Verdict {
        use crate::policy::Verdict;
        let port = if proto.has_ports() { port } else { 0 };
        let local_src = self.local.get(&src).filter(|_| hook != Hook::Output);
        let local_dst = self.local.get(&dst).filter(|_| hook != Hook::Input);
        if hook == Hook::Forward
            && (local_src.is_some_and(|l| l.quarantined)
                || local_dst.is_some_and(|l| l.quarantined))
        {
            return Verdict::Quarantine;
        }
        if hook == Hook::Output && self.settings.allow_host_probes && local_dst.is_some() {
            return Verdict::Allow;
        }
        let mut reported = Verdict::Learn;
        let mut tail = |mode: Mode| match mode {
            Mode::Enforce => Some(Verdict::Drop),
            Mode::Monitor => {
                reported = Verdict::Violation;
                None
            }
            Mode::Learn => None,
        };
        if let Some(zone) = local_src.and_then(|l| self.zones.get(&l.zone_id)) {
            let world = self.is_world(dst) && zone.world_out.contains(&(proto, port));
            let cidr = !self.is_known(dst)
                && zone
                    .cidr_out
                    .iter()
                    .any(|(n, p, o)| n.contains(&dst) && (*p, *o) == (proto, port));
            if zone.allow_out.contains(&(dst, proto, port)) || cidr || world {
                return Verdict::Allow;
            }
            if let Some(v) = tail(zone.mode) {
                return v;
            }
        }
        if let Some(zone) = local_dst.and_then(|l| self.zones.get(&l.zone_id)) {
            let world = self.is_world(src) && zone.world_in.contains(&(proto, port));
            let cidr = !self.is_known(src)
                && zone
                    .cidr_in
                    .iter()
                    .any(|(n, p, o)| n.contains(&src) && (*p, *o) == (proto, port));
            if zone.allow_in.contains(&(src, proto, port)) || cidr || world {
                return Verdict::Allow;
            }
            if let Some(v) = tail(zone.mode) {
                return v;
            }
        }
        reported
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::derive::ZoneSource;
    use crate::endpoint::{AttachMode, AttachmentKey};

    fn endpoint(pod: &str) -> Endpoint {
        Endpoint {
            key: AttachmentKey {
                network: "n".into(),
                container_id: "c".into(),
                ifname: "eth0".into(),
            },
            zone: ZoneName::parse("shop/web").unwrap(),
            zone_source: ZoneSource::Workload,
            netns: String::new(),
            host_ifname: None,
            ips: Vec::new(),
            mac: None,
            node: "n1".into(),
            pod_namespace: Some("shop".into()),
            pod_name: Some(pod.into()),
            bridge: None,
            attach_mode: AttachMode::Routed,
            created_unix_ms: 0,
        }
    }

    #[test]
    fn a_multibyte_pod_name_is_cut_on_a_character_boundary() {
        // 109 x + é puts the 2-byte é across byte 120 of "shop/web pod shop/...".
        let pod = format!("{}é", "x".repeat(109));
        let comment = member_comment(&endpoint(&pod));
        assert!(comment.len() <= MAX_MEMBER_COMMENT_BYTES, "{comment}");
        assert!(comment.starts_with("shop/web pod shop/xxx"));
    }

    proptest! {
        #[test]
        fn truncation_never_splits_a_character(text in "\\PC{0,200}", max in 0usize..260) {
            let cut = truncate_chars(text.clone(), max);
            prop_assert!(cut.len() <= max);
            prop_assert!(text.starts_with(&cut));
            // Nothing more fits: the next character would cross `max`.
            if cut.len() < text.len() {
                let next = text[cut.len()..].chars().next().unwrap();
                prop_assert!(cut.len() + next.len_utf8() > max);
            }
        }

        #[test]
        fn member_comments_of_any_pod_name_are_valid(pod in "\\PC{0,300}") {
            let comment = member_comment(&endpoint(&pod));
            prop_assert!(comment.len() <= MAX_MEMBER_COMMENT_BYTES);
        }
    }
}
