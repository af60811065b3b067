//! The compiled ruleset ([`zonewarden_profiles::ruleset::Ruleset`]) as the table
//! `inet zonewarden`: rendered to `nft -j -f -` transactions, read back from
//! `nft -j list table`, and applied through the [`RulesetDataplane`] seam.
//!
//! A packet of a new connection meets: the anti-spoofing and quarantine rules of the
//! base chains, then one verdict-map lookup that jumps to its zone's chain, where one
//! set lookup decides: by the group of a routed pod's host interface (`egress_zones`
//! by the interface it came in on, `ingress_zones` by the one it leaves by; the group
//! is the zone id, so one element per zone), or by address for a pod chained behind a
//! bridge (`egress_addr_v4`/`_v6` by source, `ingress_addr_v4`/`_v6` by destination). The per-packet cost does not grow with zones, endpoints or
//! edges. IPv4 and IPv6 have the same sets and rules, each in its own family
//! ([`Family`]); a zone chain ends, for both, in its mode's tail, and a zone in
//! `enforce` drops whatever its earlier rules did not accept (fail closed).
//!
//! The rule comments of a chain are its signature: a chain is up to date when its
//! comments equal the rendered ones (they name the zone, its mode and its version,
//! and the NFLOG group of the rules that log).
//!
//! # Layout
//! - [`expr`]: small builders for the nft JSON expressions and commands we write.
//! - [`render_base`]: the global sets and maps and the base chains ([`base_commands`]).
//! - [`render_zone`]: a zone's sets, chains and set elements.
//! - [`elements`]: the set-element changes of a difference, typed (rendered to nft
//!   JSON here and to netlink batches by [`crate::nft::netlink`]).
//! - [`render_diff`]: the one transaction from one ruleset to another ([`diff_commands`]).
//! - [`listing`]: `nft -j list table` output parsed as it streams in, without the
//!   seen sets' elements ([`listing::parse_listing`]).
//! - [`read`]: the kernel's table read back into the model ([`read_listing`]).
//! - [`seal`]: the digest and generation that let a restart confirm an intact table
//!   without reading it.
//! - [`dataplane`]: the [`RulesetDataplane`] seam, its `nft`-backed implementation and
//!   an in-memory fake for tests.

pub mod dataplane;
pub mod elements;
pub mod expr;
#[cfg(test)]
mod kernel_tests;
pub mod lean;
pub mod listing;
pub mod read;
pub mod render_base;
pub mod render_diff;
pub mod render_sidecar;
pub mod render_zone;
pub mod seal;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use zonewarden_profiles::ruleset::{Ruleset, SetKinds};

pub use dataplane::{MemoryDataplane, NftRulesetDataplane, RulesetDataplane};
pub use read::{read_listing, read_listing_for, representable};
pub use render_base::base_commands;
pub use render_diff::diff_commands;

/// How the rendered rules report: what is not a ruleset decision but a node's setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The NFLOG group every logging rule sends to (the enforcer listens on it).
    pub nflog_group: u16,
    /// How long an edge stays in a "seen" set, so it is logged once per period.
    /// Applied when the seen sets are created; an existing set keeps its timeout.
    pub seen_timeout_secs: u32,
    /// `zonewarden-enforcer --sidecar`: the table is in one pod's network namespace and
    /// its `input`/`output` chains enforce that pod ([`render_sidecar`]). Set once at
    /// start, for the process's lifetime.
    pub sidecar: Option<&'static render_sidecar::Sidecar>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nflog_group: 100,
            seen_timeout_secs: 60,
            sidecar: None,
        }
    }
}

/// What the kernel holds in the table, in the model's terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelView {
    /// Zones, endpoints, members and host addresses as the kernel holds them. A zone
    /// whose chains are not what this version renders reads with the zone name
    /// `host`, which no compiled zone has, so a diff against it rewrites its chains.
    pub ruleset: Ruleset,
    /// The rule comments of each base chain present (`forward`, `input`, `output`).
    pub base_chains: BTreeMap<String, Vec<String>>,
    /// Sets and maps of the table that this version neither writes nor reads (left by
    /// an older version): deleted once the chains that used them are rewritten.
    pub obsolete_sets: Vec<String>,
    /// Chains of the table that are neither base chains nor zone chains (someone else
    /// added them): deleted with the obsolete sets.
    pub foreign_chains: Vec<String>,
    /// The sets and maps of the base transaction that the table has, with whether the
    /// set of protocols with ports holds its elements.
    pub base_sets: BTreeSet<String>,
    pub port_protos_complete: bool,
}

/// The family of the table that guards the ports of chained endpoints after a bridge.
pub const BRIDGE_FAMILY: &str = "bridge";

/// nft keeps at most 128 bytes of a comment, including its terminating NUL.
pub const MAX_COMMENT_BYTES: usize = 127;

/// A comment as nft stores it: cut to [`MAX_COMMENT_BYTES`] at a character boundary.
pub fn cut_comment(text: &str) -> String {
    let mut end = text.len().min(MAX_COMMENT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// An address family of the table's sets and rules. Every set keyed by an address
/// and every rule that reads one exists once per family; an approved edge puts its
/// peers' addresses of both families into the sets of their family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(addr: std::net::IpAddr) -> Self {
        if addr.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    /// `v4` / `v6`: the suffix of set names.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::V4 => "v4",
            Self::V6 => "v6",
        }
    }

    /// `ip` / `ip6`: the protocol of the address payload expressions.
    pub fn payload(self) -> &'static str {
        match self {
            Self::V4 => "ip",
            Self::V6 => "ip6",
        }
    }

    /// `ipv4_addr` / `ipv6_addr`: the key type of address sets.
    pub fn addr_type(self) -> &'static str {
        match self {
            Self::V4 => "ipv4_addr",
            Self::V6 => "ipv6_addr",
        }
    }

    /// `ipv4` / `ipv6`, as rule comments name the family.
    pub fn name(self) -> &'static str {
        match self {
            Self::V4 => "ipv4",
            Self::V6 => "ipv6",
        }
    }

    /// The protocol number ICMP has in this family (1, or ICMPv6's 58).
    pub fn proto_number(self, proto: zonewarden_profiles::edge::Proto) -> u8 {
        match self {
            Self::V4 => proto.number(),
            Self::V6 => proto.number_v6(),
        }
    }
}

/// Names of the table's objects.
pub mod names {
    use super::Family;

    pub const ZONE_OF_V4: &str = "zone_of_v4";
    pub const ZONE_OF_V6: &str = "zone_of_v6";
    pub const HOST_V4: &str = "host_v4";
    pub const HOST_V6: &str = "host_v6";
    pub const CIDR_V4: &str = "cidr_v4";
    pub const CIDR_V6: &str = "cidr_v6";
    /// Address → zone chain, for the local endpoints without a routed host interface
    /// of their own (chained after a bridge, or without a host interface).
    pub const EGRESS_V4: &str = "egress_addr_v4";
    pub const EGRESS_V6: &str = "egress_addr_v6";
    pub const INGRESS_V4: &str = "ingress_addr_v4";
    pub const INGRESS_V6: &str = "ingress_addr_v6";
    /// Interface group → zone chain: a routed endpoint's host interface carries its
    /// zone id as its group, so one element per zone serves every endpoint of it.
    pub const EGRESS_ZONES: &str = "egress_zones";
    pub const INGRESS_ZONES: &str = "ingress_zones";
    /// Local endpoint address → its zone id (plain data: the zone of a routed address
    /// is also its interface's group, that of any other its address maps' jump).
    pub const LOCAL_V4: &str = "local_zone_v4";
    pub const LOCAL_V6: &str = "local_zone_v6";
    pub const QUARANTINE_V4: &str = "quarantine_v4";
    pub const QUARANTINE_V6: &str = "quarantine_v6";
    pub const POD_IFACES: &str = "pod_ifaces";
    pub const POD_SRC_V4: &str = "pod_src_v4";
    pub const POD_SRC_V6: &str = "pod_src_v6";
    /// The protocols with ports (tcp, udp, sctp): a constant set, one for the table.
    pub const PORT_PROTOS: &str = "port_protos";
    /// The bridge table's sets (`table bridge zonewarden`): the ports of chained
    /// endpoints after a bridge, their addresses and MAC addresses.
    pub const POD_PORTS: &str = "pod_ports";
    pub const PORT_SRC_V4: &str = "port_src_v4";
    pub const PORT_SRC_V6: &str = "port_src_v6";
    pub const PORT_MAC: &str = "port_mac";
    /// The bridge table's base chains: frames from pod ports, frames to them.
    pub const PREROUTING: &str = "prerouting";
    pub const POSTROUTING: &str = "postrouting";
    pub const BRIDGE_CHAINS: [&str; 2] = [PREROUTING, POSTROUTING];
    pub const BRIDGE_SETS: [&str; 4] = [POD_PORTS, PORT_SRC_V4, PORT_SRC_V6, PORT_MAC];
    /// Every base chain of both tables.
    pub const ALL_BASE_CHAINS: [&str; 5] = [FORWARD, INPUT, OUTPUT, PREROUTING, POSTROUTING];
    pub const FORWARD: &str = "forward";
    pub const INPUT: &str = "input";
    pub const OUTPUT: &str = "output";
    pub const BASE_CHAINS: [&str; 3] = [FORWARD, INPUT, OUTPUT];
    pub const ZONE_OUT_PREFIX: &str = "zout_";
    pub const ZONE_IN_PREFIX: &str = "zin_";
    /// The seen sets (`seen_learn_v4`, `seen_proto_drop_v6`, ...): what the log rules
    /// already reported, filled by the kernel itself.
    pub const SEEN_PREFIX: &str = "seen_";

    /// Picks the name of `family` from a (v4, v6) pair of names.
    pub fn of(family: Family, pair: (&'static str, &'static str)) -> &'static str {
        match family {
            Family::V4 => pair.0,
            Family::V6 => pair.1,
        }
    }

    pub fn zone_of(f: Family) -> &'static str {
        of(f, (ZONE_OF_V4, ZONE_OF_V6))
    }
    pub fn host(f: Family) -> &'static str {
        of(f, (HOST_V4, HOST_V6))
    }
    pub fn cidr(f: Family) -> &'static str {
        of(f, (CIDR_V4, CIDR_V6))
    }
    pub fn egress(f: Family) -> &'static str {
        of(f, (EGRESS_V4, EGRESS_V6))
    }
    pub fn ingress(f: Family) -> &'static str {
        of(f, (INGRESS_V4, INGRESS_V6))
    }
    pub fn local(f: Family) -> &'static str {
        of(f, (LOCAL_V4, LOCAL_V6))
    }
    pub fn quarantine(f: Family) -> &'static str {
        of(f, (QUARANTINE_V4, QUARANTINE_V6))
    }
    pub fn pod_src(f: Family) -> &'static str {
        of(f, (POD_SRC_V4, POD_SRC_V6))
    }
    pub fn port_src(f: Family) -> &'static str {
        of(f, (PORT_SRC_V4, PORT_SRC_V6))
    }

    /// The nftables family of one of our objects: `bridge` for the bridge table's
    /// sets and chains, `inet` for everything else.
    pub fn family_of(object: &str) -> &'static str {
        if BRIDGE_SETS.contains(&object) || BRIDGE_CHAINS.contains(&object) {
            super::BRIDGE_FAMILY
        } else {
            crate::nft::FAMILY
        }
    }

    /// The egress (`out`) or ingress (`in`) chain of zone `id`.
    pub fn zone_chain(dir: super::Dir, id: u32) -> String {
        match dir {
            super::Dir::Out => format!("{ZONE_OUT_PREFIX}{id}"),
            super::Dir::In => format!("{ZONE_IN_PREFIX}{id}"),
        }
    }

    /// `allow_out_v4_N`, `proto_out_v6_N`, `world_out_N`, `world_proto_out_N`,
    /// `cidr_out_v4_N`, `cidr_proto_out_v6_N` (and `_in_`).
    pub fn zone_set(kind: super::ZoneSet, dir: super::Dir, id: u32) -> String {
        use super::ZoneSet;
        let dir = dir.as_str();
        match kind {
            ZoneSet::Allow(f) => format!("allow_{dir}_{}_{id}", f.suffix()),
            ZoneSet::AllowProto(f) => format!("proto_{dir}_{}_{id}", f.suffix()),
            ZoneSet::World => format!("world_{dir}_{id}"),
            ZoneSet::WorldProto => format!("world_proto_{dir}_{id}"),
            ZoneSet::Cidr(f) => format!("cidr_{dir}_{}_{id}", f.suffix()),
            ZoneSet::CidrProto(f) => format!("cidr_proto_{dir}_{}_{id}", f.suffix()),
        }
    }
}

/// The direction of a zone chain: connections the zone opens, or receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    Out,
    In,
}

impl Dir {
    pub const BOTH: [Dir; 2] = [Dir::Out, Dir::In];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Out => "out",
            Self::In => "in",
        }
    }

    /// The address of the other end: the destination of what the zone opens, the
    /// source of what it receives.
    pub fn peer_field(self) -> &'static str {
        match self {
            Self::Out => "daddr",
            Self::In => "saddr",
        }
    }
}

/// The sets of a zone in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ZoneSet {
    /// (peer address, protocol, port) for tcp, udp, sctp.
    Allow(Family),
    /// (peer address, protocol) for protocols without ports: ICMP (ICMPv6 in the IPv6
    /// set) and any other IP protocol an edge names by number.
    AllowProto(Family),
    /// (protocol, port) to or from `world`.
    World,
    /// Protocols without ports to or from `world` (ICMP as both 1 and 58).
    WorldProto,
    /// (CIDR zone prefix, protocol, port) for tcp, udp, sctp: an interval set.
    Cidr(Family),
    /// (CIDR zone prefix, protocol) for protocols without ports: an interval set.
    CidrProto(Family),
}

impl ZoneSet {
    pub const ALL: [ZoneSet; 10] = [
        ZoneSet::Allow(Family::V4),
        ZoneSet::Allow(Family::V6),
        ZoneSet::AllowProto(Family::V4),
        ZoneSet::AllowProto(Family::V6),
        ZoneSet::World,
        ZoneSet::WorldProto,
        ZoneSet::Cidr(Family::V4),
        ZoneSet::Cidr(Family::V6),
        ZoneSet::CidrProto(Family::V4),
        ZoneSet::CidrProto(Family::V6),
    ];

    /// Whether the set holds prefixes (`flags interval`).
    pub fn is_interval(self) -> bool {
        matches!(self, Self::Cidr(_) | Self::CidrProto(_))
    }

    /// The kind of approved edge this set serves in direction `dir` (see
    /// [`SetKinds`]); `None` for the CIDR sets, which a zone has while it has
    /// CIDR-zone edges ([`has_cidr`](zonewarden_profiles::ruleset::ZoneRules::has_cidr)).
    pub fn kind(self, dir: Dir) -> Option<SetKinds> {
        let (out, inward) = match self {
            Self::Allow(_) => (SetKinds::PEERS_OUT, SetKinds::PEERS_IN),
            Self::AllowProto(_) => (SetKinds::PEERS_PROTO_OUT, SetKinds::PEERS_PROTO_IN),
            Self::World => (SetKinds::WORLD_OUT, SetKinds::WORLD_IN),
            Self::WorldProto => (SetKinds::WORLD_PROTO_OUT, SetKinds::WORLD_PROTO_IN),
            Self::Cidr(_) | Self::CidrProto(_) => return None,
        };
        Some(match dir {
            Dir::Out => out,
            Dir::In => inward,
        })
    }

    /// Whether a zone with these sets and CIDR sets (`cidr`) has this one in `dir`.
    pub fn present(self, dir: Dir, sets: SetKinds, cidr: bool) -> bool {
        match self.kind(dir) {
            Some(kind) => sets.contains(kind),
            None => cidr,
        }
    }
}
