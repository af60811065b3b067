//! The one transaction that turns the kernel's table from one ruleset into another.
//!
//! Order matters inside it: a verdict-map element may only jump to a chain that
//! exists, and a chain may only be deleted once nothing jumps to it. So: base chains
//! (when a node setting changed), then the sets and chains of created and rewritten
//! zones, then element deletions, then element additions, then the chains and sets
//! of removed zones.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::Value;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::ruleset::{LocalAddr, Ruleset};

use super::expr;
use super::names::{self, *};
use super::render_base::{base_chain_rules, rewrite_chain};
use super::render_zone::{ZoneElements, drop_cidr_sets, remove_zone, write_zone};
use super::{Dir, Options};

/// The transaction from `old` to `new`, given `diff = RulesetDiff::between(old, new)`.
/// Empty (`{"nftables": []}`) when nothing the table holds changes. Expects the
/// table's global objects and base chains to exist ([`super::base_commands`]); a
/// changed node setting rewrites the base chains within this transaction.
pub fn diff_commands(diff: &RulesetDiff, new: &Ruleset, opts: &Options) -> Value {
    let mut cmds = Vec::new();
    if diff.settings_changed {
        for chain in BASE_CHAINS {
            cmds.extend(rewrite_chain(
                chain,
                &base_chain_rules(chain, &new.settings, opts),
            ));
        }
    }
    for zone in diff.created.iter().chain(&diff.rewritten) {
        cmds.extend(write_zone(zone, opts));
    }

    let mut del = Elements::default();
    let mut add = Elements::default();
    for (addr, local) in &diff.local.del {
        del.local(*addr, local);
    }
    for (addr, local) in &diff.local.add {
        add.local(*addr, local);
    }
    for (addr, (id, comment)) in &diff.members.del {
        del.member(*addr, *id, comment);
    }
    for (addr, (id, comment)) in &diff.members.add {
        add.member(*addr, *id, comment);
    }
    for addr in &diff.host.del {
        del.host(*addr);
    }
    for addr in &diff.host.add {
        add.host(*addr);
    }
    for net in &diff.cidrs.del {
        del.cidr(net);
    }
    for net in &diff.cidrs.add {
        add.cidr(net);
    }
    let (del, add) = (del.minus(&add), add.minus(&del));

    let mut zone_del = ZoneElements::default();
    let mut zone_add = ZoneElements::default();
    for (id, delta) in &diff.zones {
        let (o, i) = (&delta.allow_out, &delta.allow_in);
        let (co, ci) = (&delta.cidr_out, &delta.cidr_in);
        let (wo, wi) = (&delta.world_out, &delta.world_in);
        zone_del.push(*id, Dir::Out, &o.del, &co.del, &wo.del);
        zone_del.push(*id, Dir::In, &i.del, &ci.del, &wi.del);
        zone_add.push(*id, Dir::Out, &o.add, &co.add, &wo.add);
        zone_add.push(*id, Dir::In, &i.add, &ci.add, &wi.add);
    }
    for zone in &diff.created {
        zone_add.push(
            zone.id,
            Dir::Out,
            &zone.allow_out,
            &zone.cidr_out,
            &zone.world_out,
        );
        zone_add.push(
            zone.id,
            Dir::In,
            &zone.allow_in,
            &zone.cidr_in,
            &zone.world_in,
        );
    }

    let (iface_del, iface_add) = pod_iface_changes(diff, new);
    for (set, elems) in del.by_set(|e| e.key.clone()) {
        cmds.push(expr::elements("delete", set, elems));
    }
    if !iface_del.is_empty() {
        cmds.push(expr::elements("delete", POD_IFACES, iface_del));
    }
    for (set, elems) in zone_del.sets {
        cmds.push(expr::elements("delete", &set, elems));
    }
    for (set, elems) in add.by_set(|e| e.elem.clone()) {
        cmds.push(expr::elements("add", set, elems));
    }
    if !iface_add.is_empty() {
        cmds.push(expr::elements("add", POD_IFACES, iface_add));
    }
    for (set, elems) in zone_add.sets {
        cmds.push(expr::elements("add", &set, elems));
    }

    for zone in &diff.removed {
        cmds.extend(remove_zone(zone));
    }
    for id in &diff.cidr_sets_dropped {
        cmds.extend(drop_cidr_sets(*id));
    }
    expr::transaction(cmds)
}

/// Host interfaces to remove (no local address of `new` uses them) and to add (no
/// local address of the old ruleset used them: its addresses are the unchanged ones
/// of `new` and the deleted ones of `diff`).
fn pod_iface_changes(diff: &RulesetDiff, new: &Ruleset) -> (Vec<Value>, Vec<Value>) {
    let ifname = |l: &LocalAddr| l.host_ifname.clone();
    let in_new: BTreeSet<String> = new.local.values().filter_map(ifname).collect();
    let added: BTreeSet<&IpAddr> = diff.local.add.iter().map(|(a, _)| a).collect();
    let deleted = || diff.local.del.iter().filter_map(|(_, l)| ifname(l));
    let in_old: BTreeSet<String> = new
        .local
        .iter()
        .filter(|(a, _)| !added.contains(a))
        .filter_map(|(_, l)| ifname(l))
        .chain(deleted())
        .collect();
    let del: BTreeSet<String> = deleted().filter(|i| !in_new.contains(i)).collect();
    let add: BTreeSet<String> = diff
        .local
        .add
        .iter()
        .filter_map(|(_, l)| ifname(l))
        .filter(|i| !in_old.contains(i))
        .collect();
    let values = |s: BTreeSet<String>| s.into_iter().map(Value::String).collect();
    (values(del), values(add))
}

/// One element of a global set or map: the key that deletes it and the full element
/// (key with comment, and value for maps) that adds it.
#[derive(Debug, Clone, PartialEq)]
struct Element {
    set: &'static str,
    key: Value,
    elem: Value,
}

/// Elements of the global sets and maps, in the order they were pushed.
#[derive(Debug, Default)]
struct Elements(Vec<Element>);

impl Elements {
    fn push(&mut self, set: &'static str, key: Value, elem: Value) {
        self.0.push(Element { set, key, elem });
    }

    /// The elements of a local endpoint address (IPv4 only: the chains cover IPv4).
    fn local(&mut self, addr: IpAddr, local: &LocalAddr) {
        if !addr.is_ipv4() {
            return;
        }
        let key = Value::String(addr.to_string());
        let commented = expr::commented(key.clone(), &local.comment);
        for (map, dir) in [(EGRESS_V4, Dir::Out), (INGRESS_V4, Dir::In)] {
            let target = expr::jump(&names::zone_chain(dir, local.zone_id));
            let elem = Value::Array(vec![commented.clone(), target]);
            self.push(map, key.clone(), elem);
        }
        self.push(LOCAL_V4, key.clone(), commented.clone());
        if local.quarantined {
            self.push(QUARANTINE_V4, key.clone(), commented);
        }
        if let Some(ifname) = &local.host_ifname {
            let pair = expr::concat(vec![ifname.as_str().into(), key]);
            self.push(POD_SRC_V4, pair.clone(), pair);
        }
    }

    fn member(&mut self, addr: IpAddr, zone_id: u32, comment: &str) {
        let map = if addr.is_ipv4() {
            ZONE_OF_V4
        } else {
            ZONE_OF_V6
        };
        let key = Value::String(addr.to_string());
        let elem = Value::Array(vec![expr::commented(key.clone(), comment), zone_id.into()]);
        self.push(map, key, elem);
    }

    fn cidr(&mut self, net: &ipnet::IpNet) {
        if net.addr().is_ipv4() {
            let key = expr::prefix(net);
            self.push(CIDR_V4, key.clone(), key);
        }
    }

    fn host(&mut self, addr: IpAddr) {
        if addr.is_ipv4() {
            let key = Value::String(addr.to_string());
            self.push(HOST_V4, key.clone(), key);
        }
    }

    /// These elements without those `other` holds identically: an element removed and
    /// re-added unchanged (the egress element of an endpoint that is only quarantined)
    /// is left alone.
    fn minus(&self, other: &Self) -> Self {
        let others: BTreeSet<(&str, String)> = other
            .0
            .iter()
            .map(|o| (o.set, o.elem.to_string()))
            .collect();
        Self(
            self.0
                .iter()
                .filter(|e| !others.contains(&(e.set, e.elem.to_string())))
                .cloned()
                .collect(),
        )
    }

    /// Elements grouped by set, as `part` renders them.
    fn by_set(&self, part: impl Fn(&Element) -> Value) -> BTreeMap<&'static str, Vec<Value>> {
        let mut sets: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
        for e in &self.0 {
            sets.entry(e.set).or_default().push(part(e));
        }
        sets
    }
}
