//! The policy of a node: every profile, the quarantined endpoints, and the oracle that
//! says what happens to a new connection. The data plane must agree with
//! [`Policy::verdict`] for every (source, destination, protocol, port).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::edge::{Edge, Proto};
use crate::profile::{Mode, Profile};
use crate::zone::ZoneName;

/// What happens to the first packet of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The edge is approved (or the traffic is exempt, like host probes).
    Allow,
    /// Not approved; every end learns: allowed and recorded.
    Learn,
    /// Not approved; an end monitors and none enforces: allowed and reported.
    Violation,
    /// Not approved and an end enforces: dropped and reported.
    Drop,
    /// An end is quarantined: dropped and reported.
    Quarantine,
}

impl Verdict {
    pub fn passes(self) -> bool {
        matches!(self, Self::Allow | Self::Learn | Self::Violation)
    }
}

/// Settings of the node that shape verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSettings {
    /// Allow `host` → every local pod (kubelet probes) without approval.
    pub allow_host_probes: bool,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            allow_host_probes: true,
        }
    }
}

/// All profiles of the cluster, keyed by zone, and the operator-defined CIDR zones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub profiles: BTreeMap<ZoneName, Profile>,
    pub settings: NodeSettings,
    /// Zones of addresses that are no endpoint (e.g. `corp-dns = 10.1.2.0/24`); they take
    /// precedence over `world`. They have no members to enforce at, so their own mode
    /// never drops: the other end's mode decides.
    pub cidr_zones: BTreeMap<ZoneName, Vec<IpNet>>,
}

/// One end of a connection as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End<'a> {
    pub zone: &'a ZoneName,
    /// The endpoint itself is quarantined (as opposed to its whole zone).
    pub quarantined: bool,
}

impl Policy {
    pub fn mode(&self, zone: &ZoneName) -> Mode {
        if zone.is_builtin() || self.cidr_zones.contains_key(zone) {
            return Mode::Learn;
        }
        self.profiles.get(zone).map(|p| p.mode).unwrap_or_default()
    }

    pub fn zone_quarantined(&self, zone: &ZoneName) -> bool {
        self.profiles.get(zone).is_some_and(|p| p.quarantined)
    }

    /// The version of a zone's profile in force (0 when it has none).
    pub fn version(&self, zone: &ZoneName) -> u64 {
        self.profiles.get(zone).map_or(0, |p| p.version)
    }

    /// The CIDR zone of an address that is no endpoint: the longest prefix wins.
    pub fn cidr_zone_of(&self, addr: IpAddr) -> Option<&ZoneName> {
        cidr_zone_in(&self.cidr_zones, addr)
    }

    /// The ends whose profiles approve the edge (each once).
    pub fn approved_in<'a>(&'a self, edge: &'a Edge) -> Vec<&'a ZoneName> {
        let ends: BTreeSet<&ZoneName> = [&edge.src, &edge.dst].into_iter().collect();
        ends.into_iter()
            .filter(|z| {
                self.profiles
                    .get(*z)
                    .is_some_and(|p| p.approved.contains(edge))
            })
            .collect()
    }

    /// Whether the edge is approved in the profile of either end.
    pub fn approved(&self, edge: &Edge) -> bool {
        [&edge.src, &edge.dst].into_iter().any(|z| {
            self.profiles
                .get(z)
                .is_some_and(|p| p.approved.contains(edge))
        })
    }

    /// Every approved edge, each once.
    pub fn approved_edges(&self) -> BTreeSet<&Edge> {
        self.profiles
            .values()
            .flat_map(|p| p.approved.iter())
            .collect()
    }

    /// Every edge some profile rejected, each once.
    pub fn rejected_edges(&self) -> BTreeSet<&Edge> {
        self.profiles
            .values()
            .flat_map(|p| p.rejected.iter())
            .collect()
    }

    /// The oracle: what happens to a new connection from `src` to `dst`.
    pub fn verdict(&self, src: End<'_>, dst: End<'_>, proto: Proto, port: u16) -> Verdict {
        let host = ZoneName::host();
        let from_host = src.zone == &host;
        let to_host = dst.zone == &host;
        let quarantined = |end: End<'_>| end.quarantined || self.zone_quarantined(end.zone);
        // Quarantine drops everything but traffic with the host zone.
        if !from_host && !to_host && (quarantined(src) || quarantined(dst)) {
            return Verdict::Quarantine;
        }
        if from_host && self.settings.allow_host_probes {
            return Verdict::Allow;
        }
        let edge = Edge::new(src.zone.clone(), dst.zone.clone(), proto, port);
        if self.approved(&edge) {
            return Verdict::Allow;
        }
        let modes = [self.mode(src.zone), self.mode(dst.zone)];
        if modes.contains(&Mode::Enforce) {
            Verdict::Drop
        } else if modes.contains(&Mode::Monitor) {
            Verdict::Violation
        } else {
            Verdict::Learn
        }
    }
}

/// The CIDR zone of `addr` among `cidr_zones`: the one with the longest matching prefix.
pub fn cidr_zone_in(
    cidr_zones: &BTreeMap<ZoneName, Vec<IpNet>>,
    addr: IpAddr,
) -> Option<&ZoneName> {
    cidr_zones
        .iter()
        .flat_map(|(zone, nets)| nets.iter().map(move |net| (zone, net)))
        .filter(|(_, net)| net.contains(&addr))
        .max_by_key(|(_, net)| net.prefix_len())
        .map(|(zone, _)| zone)
}
