//! Differences: between two compiled rulesets (what one transaction must change in the
//! kernel) and between a zone's learned and approved edges (what an operator reviews).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::edge::{Edge, Proto};
use crate::learned::LearnedEdges;
use crate::policy::Policy;
use crate::ruleset::{Allow, Comment, LocalAddr, Ruleset, SetKinds, ZoneRules};
use crate::zone::ZoneName;

/// Elements to remove and to add in one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta<T> {
    pub del: Vec<T>,
    pub add: Vec<T>,
}

impl<T> Default for Delta<T> {
    fn default() -> Self {
        Self {
            del: Vec::new(),
            add: Vec::new(),
        }
    }
}

impl<T> Delta<T> {
    pub fn is_empty(&self) -> bool {
        self.del.is_empty() && self.add.is_empty()
    }
}

fn set_delta<T: Ord + Clone>(old: &BTreeSet<T>, new: &BTreeSet<T>) -> Delta<T> {
    Delta {
        del: old.difference(new).cloned().collect(),
        add: new.difference(old).cloned().collect(),
    }
}

/// A changed entry of a map appears as a removal of the old and an addition of the new.
fn map_delta<K: Ord + Clone, V: PartialEq + Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
) -> Delta<(K, V)> {
    let mut delta = Delta::default();
    for (k, v) in old {
        if new.get(k) != Some(v) {
            delta.del.push((k.clone(), v.clone()));
        }
    }
    for (k, v) in new {
        if old.get(k) != Some(v) {
            delta.add.push((k.clone(), v.clone()));
        }
    }
    delta
}

/// The element changes of one zone's four sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneDelta {
    pub allow_out: Delta<Allow>,
    pub allow_in: Delta<Allow>,
    pub cidr_out: Delta<(IpNet, Proto, u16)>,
    pub cidr_in: Delta<(IpNet, Proto, u16)>,
    pub world_out: Delta<(Proto, u16)>,
    pub world_in: Delta<(Proto, u16)>,
}

impl ZoneDelta {
    fn between(old: &ZoneRules, new: &ZoneRules) -> Self {
        Self {
            allow_out: set_delta(&old.allow_out, &new.allow_out),
            allow_in: set_delta(&old.allow_in, &new.allow_in),
            cidr_out: set_delta(&old.cidr_out, &new.cidr_out),
            cidr_in: set_delta(&old.cidr_in, &new.cidr_in),
            world_out: set_delta(&old.world_out, &new.world_out),
            world_in: set_delta(&old.world_in, &new.world_in),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.allow_out.is_empty()
            && self.allow_in.is_empty()
            && self.cidr_out.is_empty()
            && self.cidr_in.is_empty()
            && self.world_out.is_empty()
            && self.world_in.is_empty()
    }
}

/// Everything one transaction changes to go from one ruleset to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesetDiff {
    /// The base chains must be rewritten (a node setting changed).
    pub settings_changed: bool,
    /// Zones with new chains and sets (created with all their elements).
    pub created: Vec<ZoneRules>,
    /// Zones whose chains and sets go (their last local member left).
    pub removed: Vec<ZoneRules>,
    /// Zones whose chains are rewritten (mode or version changed).
    pub rewritten: Vec<ZoneRules>,
    /// Rewritten zones that lose their CIDR sets (their last CIDR-zone edge went):
    /// the sets go after the chains stop using them.
    pub cidr_sets_dropped: Vec<u32>,
    /// Rewritten zones that lose peer or world sets (the last approved edge of their
    /// kind went), with the kinds they lose: the sets go after the chains stop using
    /// them.
    pub sets_dropped: Vec<(u32, SetKinds)>,
    /// Element changes of zones that exist before and after.
    pub zones: BTreeMap<u32, ZoneDelta>,
    pub local: Delta<(IpAddr, LocalAddr)>,
    pub members: Delta<(IpAddr, (u32, Comment))>,
    pub host: Delta<IpAddr>,
    pub cidrs: Delta<IpNet>,
}

impl RulesetDiff {
    pub fn between(old: &Ruleset, new: &Ruleset) -> Self {
        let mut diff = Self {
            settings_changed: old.settings != new.settings,
            local: map_delta(&old.local, &new.local),
            members: map_delta(&old.members, &new.members),
            host: set_delta(&old.host, &new.host),
            cidrs: set_delta(&old.cidrs, &new.cidrs),
            ..Self::default()
        };
        for (id, rules) in &new.zones {
            match old.zones.get(id) {
                None => diff.created.push(rules.clone()),
                Some(prev) => {
                    if prev.chain_key() != rules.chain_key() || prev.zone != rules.zone {
                        diff.rewritten.push(rules.clone());
                    }
                    if prev.has_cidr() && !rules.has_cidr() {
                        diff.cidr_sets_dropped.push(*id);
                    }
                    let dropped = prev.sets.minus(rules.sets);
                    if !dropped.is_empty() {
                        diff.sets_dropped.push((*id, dropped));
                    }
                    let delta = ZoneDelta::between(prev, rules);
                    if !delta.is_empty() {
                        diff.zones.insert(*id, delta);
                    }
                }
            }
        }
        diff.removed = old
            .zones
            .iter()
            .filter(|(id, _)| !new.zones.contains_key(id))
            .map(|(_, z)| z.clone())
            .collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether the table's structure changes (base chains, zone chains or set
    /// definitions), not only set elements.
    pub fn changes_structure(&self) -> bool {
        self.settings_changed
            || !self.created.is_empty()
            || !self.removed.is_empty()
            || !self.rewritten.is_empty()
            || !self.cidr_sets_dropped.is_empty()
            || !self.sets_dropped.is_empty()
    }
}

/// A zone's learned edges against its approved ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileDiff {
    /// Learned, neither approved nor rejected: what `approve --all` would add.
    pub unapproved: Vec<Edge>,
    /// Rejected by the profile of either end, and seen again since: approved only
    /// when an operator names them.
    pub rejected_seen: Vec<Edge>,
    /// Approved and learned.
    pub approved_seen: Vec<Edge>,
    /// Approved but never learned (or forgotten): candidates for removal.
    pub approved_unseen: Vec<Edge>,
}

pub fn profile_diff(zone: &ZoneName, learned: &LearnedEdges, policy: &Policy) -> ProfileDiff {
    let seen: BTreeSet<&Edge> = learned.of_zone(zone).map(|(e, _)| e).collect();
    let approved: BTreeSet<&Edge> = policy
        .approved_edges()
        .into_iter()
        .filter(|e| e.touches(zone))
        .collect();
    let rejected: BTreeSet<&Edge> = policy
        .rejected_edges()
        .into_iter()
        .filter(|e| e.touches(zone) && !approved.contains(e))
        .collect();
    let open: BTreeSet<&Edge> = seen.difference(&approved).copied().collect();
    ProfileDiff {
        unapproved: open.difference(&rejected).map(|e| (*e).clone()).collect(),
        rejected_seen: open.intersection(&rejected).map(|e| (*e).clone()).collect(),
        approved_seen: seen.intersection(&approved).map(|e| (*e).clone()).collect(),
        approved_unseen: approved.difference(&seen).map(|e| (*e).clone()).collect(),
    }
}
