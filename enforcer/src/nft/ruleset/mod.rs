//! The compiled ruleset ([`zonewarden_profiles::ruleset::Ruleset`]) as the table
//! `inet zonewarden`: rendered to `nft -j -f -` transactions, read back from
//! `nft -j list table`, and applied through the [`RulesetDataplane`] seam.
//!
//! A packet of a new connection meets: the anti-spoofing and quarantine rules of the
//! base chains, then one verdict-map lookup (`egress_v4` by source, `ingress_v4` by
//! destination) that jumps to its zone's chain, where one set lookup decides. The
//! per-packet cost does not grow with zones, endpoints or edges.
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
//! - [`read`]: the kernel's table read back into the model ([`read_listing`]).
//! - [`dataplane`]: the [`RulesetDataplane`] seam, its `nft`-backed implementation and
//!   an in-memory fake for tests.

pub mod dataplane;
pub mod elements;
pub mod expr;
#[cfg(test)]
mod kernel_tests;
pub mod read;
pub mod render_base;
pub mod render_diff;
pub mod render_zone;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use zonewarden_profiles::ruleset::Ruleset;

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nflog_group: 100,
            seen_timeout_secs: 60,
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
}

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

/// Names of the table's objects.
pub mod names {
    pub const ZONE_OF_V4: &str = "zone_of_v4";
    pub const ZONE_OF_V6: &str = "zone_of_v6";
    pub const HOST_V4: &str = "host_v4";
    pub const CIDR_V4: &str = "cidr_v4";
    pub const EGRESS_V4: &str = "egress_v4";
    pub const INGRESS_V4: &str = "ingress_v4";
    pub const LOCAL_V4: &str = "local_v4";
    pub const QUARANTINE_V4: &str = "quarantine_v4";
    pub const POD_IFACES: &str = "pod_ifaces";
    pub const POD_SRC_V4: &str = "pod_src_v4";
    pub const FORWARD: &str = "forward";
    pub const INPUT: &str = "input";
    pub const OUTPUT: &str = "output";
    pub const BASE_CHAINS: [&str; 3] = [FORWARD, INPUT, OUTPUT];
    pub const ZONE_OUT_PREFIX: &str = "zout_";
    pub const ZONE_IN_PREFIX: &str = "zin_";

    /// The egress (`out`) or ingress (`in`) chain of zone `id`.
    pub fn zone_chain(dir: super::Dir, id: u32) -> String {
        match dir {
            super::Dir::Out => format!("{ZONE_OUT_PREFIX}{id}"),
            super::Dir::In => format!("{ZONE_IN_PREFIX}{id}"),
        }
    }

    /// `allow_out_N`, `allow_out_icmp_N`, `world_out_N` (and `_in_`).
    pub fn zone_set(kind: super::ZoneSet, dir: super::Dir, id: u32) -> String {
        let dir = dir.as_str();
        match kind {
            super::ZoneSet::Allow => format!("allow_{dir}_{id}"),
            super::ZoneSet::AllowIcmp => format!("allow_{dir}_icmp_{id}"),
            super::ZoneSet::World => format!("world_{dir}_{id}"),
            super::ZoneSet::Cidr => format!("cidr_{dir}_{id}"),
            super::ZoneSet::CidrIcmp => format!("cidr_{dir}_icmp_{id}"),
        }
    }
}

/// The direction of a zone chain: connections the zone opens, or receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

/// The three sets of a zone in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ZoneSet {
    /// (peer address, protocol, port) for tcp, udp, sctp.
    Allow,
    /// Peer addresses for ICMP.
    AllowIcmp,
    /// (protocol, port) to or from `world`.
    World,
    /// (CIDR zone prefix, protocol, port) for tcp, udp, sctp: an interval set.
    Cidr,
    /// CIDR zone prefixes for ICMP: an interval set.
    CidrIcmp,
}

impl ZoneSet {
    pub const ALL: [ZoneSet; 5] = [
        ZoneSet::Allow,
        ZoneSet::AllowIcmp,
        ZoneSet::World,
        ZoneSet::Cidr,
        ZoneSet::CidrIcmp,
    ];

    /// Whether the set holds prefixes (`flags interval`).
    pub fn is_interval(self) -> bool {
        matches!(self, Self::Cidr | Self::CidrIcmp)
    }
}
