//! The set-element changes of a ruleset difference, typed: what both the `nft -j -f -`
//! transaction and the netlink batch ([`crate::nft::netlink`]) are rendered from.
//!
//! Order: deletions first (global sets and maps, host interfaces, zone sets), then
//! additions in the same order, so a verdict-map element is replaced (its zone
//! changed) by a deletion and an addition in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::ruleset::{Allow, LocalAddr, Ruleset};

use super::names::{self, *};
use super::render_zone::{CidrAllow, WorldPort};
use super::{Dir, Family, ZoneSet, expr};

/// One field of an element's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Addr(IpAddr),
    /// A prefix of an interval set.
    Prefix(IpNet),
    Ifname(String),
    /// A MAC address, `aa:bb:cc:dd:ee:ff`.
    Mac(String),
    /// An IP protocol number (ICMPv6 is 58 in IPv6 sets, ICMP 1 in IPv4 ones).
    Proto(u8),
    Port(u16),
    /// An interface group (`devgroup`): a zone id.
    Group(u32),
}

/// How nft names the protocols we write, so that listings read the same; any other
/// protocol goes by number.
pub fn proto_json(number: u8) -> Value {
    match number {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        other => other.into(),
    }
}

/// The value of a map element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Data {
    /// `jump <chain>` (the egress and ingress verdict maps).
    Jump(String),
    /// A 32-bit value of type `mark` (a zone id).
    Mark(u32),
}

/// One element: its key (one field, or a concatenation), its value in a map and its
/// comment (empty: none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Elem {
    pub key: Vec<Part>,
    pub data: Option<Data>,
    pub comment: String,
}

impl Elem {
    fn plain(key: Vec<Part>) -> Self {
        Self {
            key,
            data: None,
            comment: String::new(),
        }
    }

    /// Whether the key holds a prefix (only interval sets do).
    pub fn is_interval(&self) -> bool {
        self.key.iter().any(|p| matches!(p, Part::Prefix(_)))
    }

    /// The key as nft's JSON writes it.
    pub fn key_json(&self) -> Value {
        let part = |p: &Part| -> Value {
            match p {
                Part::Addr(a) => a.to_string().into(),
                Part::Prefix(n) => expr::prefix(n),
                Part::Ifname(i) => i.as_str().into(),
                Part::Mac(m) => m.as_str().into(),
                Part::Proto(p) => proto_json(*p),
                Part::Port(p) => (*p).into(),
                Part::Group(g) => (*g).into(),
            }
        };
        match self.key.as_slice() {
            [one] => part(one),
            many => expr::concat(many.iter().map(part).collect()),
        }
    }

    /// The whole element as nft's JSON writes it: the key with its comment, and the
    /// value of a map element.
    pub fn full_json(&self) -> Value {
        let key = expr::commented(self.key_json(), &self.comment);
        match &self.data {
            None => key,
            Some(Data::Jump(chain)) => Value::Array(vec![key, expr::jump(chain)]),
            Some(Data::Mark(mark)) => Value::Array(vec![key, (*mark).into()]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Add,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Delete => "delete",
        }
    }
}

/// Elements added to or deleted from one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    pub verb: Verb,
    pub set: String,
    pub elems: Vec<Elem>,
}

impl SetChange {
    /// The `add element` / `delete element` command (a deletion names keys only).
    pub fn to_json(&self) -> Value {
        let elems = self
            .elems
            .iter()
            .map(|e| match self.verb {
                Verb::Add => e.full_json(),
                Verb::Delete => e.key_json(),
            })
            .collect();
        expr::elements(self.verb.as_str(), &self.set, elems)
    }
}

/// Every element change of `diff` (from `old` to `new`), in transaction order.
pub fn element_changes(diff: &RulesetDiff, new: &Ruleset) -> Vec<SetChange> {
    let mut del = Globals::default();
    let mut add = Globals::default();
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
    // A rewritten zone's elements are added again (an addition of an element the
    // table holds changes nothing): a restart whose table lost one restores it.
    for zone in diff.created.iter().chain(&diff.rewritten) {
        add.zone_jumps(zone.id);
    }
    for zone in &diff.removed {
        del.zone_jumps(zone.id);
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
        let (o, i) = (&zone.allow_out, &zone.allow_in);
        zone_add.push(zone.id, Dir::Out, o, &zone.cidr_out, &zone.world_out);
        zone_add.push(zone.id, Dir::In, i, &zone.cidr_in, &zone.world_in);
    }

    let (port_del, port_add) = port_changes(diff, new);
    let mut changes = Vec::new();
    let mut push = |verb, set: String, elems: Vec<Elem>| {
        if !elems.is_empty() {
            changes.push(SetChange { verb, set, elems });
        }
    };
    for (set, elems) in del.by_set() {
        push(Verb::Delete, set.to_owned(), elems);
    }
    for (set, elems) in port_del.by_set() {
        push(Verb::Delete, set.to_owned(), elems);
    }
    for (set, elems) in zone_del.sets {
        push(Verb::Delete, set, elems);
    }
    for (set, elems) in add.by_set() {
        push(Verb::Add, set.to_owned(), elems);
    }
    for (set, elems) in port_add.by_set() {
        push(Verb::Add, set.to_owned(), elems);
    }
    for (set, elems) in zone_add.sets {
        push(Verb::Add, set, elems);
    }
    changes
}

/// The per-interface elements of a local address: its host interface in `pod_ifaces`
/// (inet), or, for a bridge port, the port in `pod_ports` and (port, MAC) in
/// `port_mac` (bridge).
fn port_elements(local: &LocalAddr) -> Vec<(&'static str, Elem)> {
    let Some(name) = &local.host_ifname else {
        return Vec::new();
    };
    let port = || Elem::plain(vec![Part::Ifname(name.clone())]);
    if !local.bridged {
        return vec![(POD_IFACES, port())];
    }
    let mut elems = vec![(POD_PORTS, port())];
    if let Some(mac) = &local.mac {
        let key = vec![Part::Ifname(name.clone()), Part::Mac(mac.clone())];
        elems.push((PORT_MAC, Elem::plain(key)));
    }
    elems
}

/// Per-interface elements to remove (no local address of `new` needs them any more)
/// and to add (no local address of the old ruleset needed them). Only the interfaces
/// the diff names are looked at, with one pass over `new`'s local addresses.
fn port_changes(diff: &RulesetDiff, new: &Ruleset) -> (Globals, Globals) {
    let name = |l: &LocalAddr| l.host_ifname.clone();
    let touched: BTreeSet<String> = diff
        .local
        .del
        .iter()
        .chain(&diff.local.add)
        .filter_map(|(_, l)| name(l))
        .collect();
    if touched.is_empty() {
        return (Globals::default(), Globals::default());
    }
    let added: BTreeSet<&IpAddr> = diff.local.add.iter().map(|(a, _)| a).collect();
    let mut before: BTreeSet<(&'static str, Elem)> = diff
        .local
        .del
        .iter()
        .flat_map(|(_, l)| port_elements(l))
        .collect();
    let mut after = BTreeSet::new();
    for (addr, local) in &new.local {
        if !local
            .host_ifname
            .as_ref()
            .is_some_and(|n| touched.contains(n))
        {
            continue;
        }
        let elems = port_elements(local);
        if !added.contains(addr) {
            before.extend(elems.iter().cloned());
        }
        after.extend(elems);
    }
    let del = Globals(before.difference(&after).cloned().collect());
    let add = Globals(after.difference(&before).cloned().collect());
    (del, add)
}

/// The host interface of a local address that is its own and routed (not a bridge
/// port): the interface whose group is the address's zone id.
pub fn routed_ifname(local: &LocalAddr) -> Option<&str> {
    local.host_ifname.as_deref().filter(|_| !local.bridged)
}

/// Elements of the global sets and maps, in the order they were pushed.
#[derive(Debug, Default)]
struct Globals(Vec<(&'static str, Elem)>);

impl Globals {
    /// The elements of a local endpoint address, in the sets of its family. An
    /// address with a routed host interface of its own reaches its zone's chains
    /// through the interface's group ([`routed_ifname`]), not through an element.
    fn local(&mut self, addr: IpAddr, local: &LocalAddr) {
        let f = Family::of(addr);
        let commented = Elem {
            key: vec![Part::Addr(addr)],
            data: None,
            comment: cut(&local.comment),
        };
        let by_addr = routed_ifname(local).is_none();
        for (map, dir) in [(names::egress(f), Dir::Out), (names::ingress(f), Dir::In)]
            .into_iter()
            .filter(|_| by_addr)
        {
            let chain = names::zone_chain(dir, local.zone_id);
            let elem = Elem {
                data: Some(Data::Jump(chain)),
                ..commented.clone()
            };
            self.0.push((map, elem));
        }
        let zone = Elem {
            data: Some(Data::Mark(local.zone_id)),
            ..commented.clone()
        };
        self.0.push((names::local(f), zone));
        if local.quarantined {
            self.0.push((names::quarantine(f), commented));
        }
        if let Some(ifname) = &local.host_ifname {
            let pair = vec![Part::Ifname(ifname.clone()), Part::Addr(addr)];
            let set = if local.bridged {
                names::port_src(f)
            } else {
                names::pod_src(f)
            };
            self.0.push((set, Elem::plain(pair)));
        }
    }

    /// The elements that send the packets of zone `id`'s routed interfaces to its
    /// chains: one per direction, whatever the number of endpoints.
    fn zone_jumps(&mut self, id: u32) {
        for (map, dir) in [(EGRESS_ZONES, Dir::Out), (INGRESS_ZONES, Dir::In)] {
            let elem = Elem {
                key: vec![Part::Group(id)],
                data: Some(Data::Jump(names::zone_chain(dir, id))),
                comment: String::new(),
            };
            self.0.push((map, elem));
        }
    }

    fn member(&mut self, addr: IpAddr, zone_id: u32, comment: &str) {
        let elem = Elem {
            key: vec![Part::Addr(addr)],
            data: Some(Data::Mark(zone_id)),
            comment: cut(comment),
        };
        self.0.push((names::zone_of(Family::of(addr)), elem));
    }

    fn cidr(&mut self, net: &IpNet) {
        let set = names::cidr(Family::of(net.addr()));
        self.0.push((set, Elem::plain(vec![Part::Prefix(*net)])));
    }

    fn host(&mut self, addr: IpAddr) {
        let set = names::host(Family::of(addr));
        self.0.push((set, Elem::plain(vec![Part::Addr(addr)])));
    }

    /// These elements without those `other` holds identically: an element removed and
    /// re-added unchanged (the egress element of an endpoint that is only quarantined)
    /// is left alone.
    fn minus(&self, other: &Self) -> Self {
        let others: BTreeSet<&(&str, Elem)> = other.0.iter().collect();
        Self(
            self.0
                .iter()
                .filter(|e| !others.contains(e))
                .cloned()
                .collect(),
        )
    }

    fn by_set(self) -> BTreeMap<&'static str, Vec<Elem>> {
        let mut sets: BTreeMap<&'static str, Vec<Elem>> = BTreeMap::new();
        for (set, elem) in self.0 {
            sets.entry(set).or_default().push(elem);
        }
        sets
    }
}

fn cut(comment: &str) -> String {
    super::cut_comment(comment)
}

/// The element of a set for one allowed peer, in the sets of its family.
pub fn allow_element(allow: &Allow) -> (ZoneSet, Elem) {
    let (addr, proto, port) = allow;
    let f = Family::of(*addr);
    let number = f.proto_number(*proto);
    if proto.has_ports() {
        let key = vec![Part::Addr(*addr), Part::Proto(number), Part::Port(*port)];
        (ZoneSet::Allow(f), Elem::plain(key))
    } else {
        let key = vec![Part::Addr(*addr), Part::Proto(number)];
        (ZoneSet::AllowProto(f), Elem::plain(key))
    }
}

/// The element of a CIDR set for one allowed prefix, in the sets of its family.
pub fn cidr_element(cidr: &CidrAllow) -> (ZoneSet, Elem) {
    let (net, proto, port) = cidr;
    let f = Family::of(net.addr());
    let number = f.proto_number(*proto);
    if proto.has_ports() {
        let key = vec![Part::Prefix(*net), Part::Proto(number), Part::Port(*port)];
        (ZoneSet::Cidr(f), Elem::plain(key))
    } else {
        let key = vec![Part::Prefix(*net), Part::Proto(number)];
        (ZoneSet::CidrProto(f), Elem::plain(key))
    }
}

/// The elements of a world set for one (protocol, port): ICMP is approved as ICMP
/// and ICMPv6.
pub fn world_elements(world: &WorldPort) -> Vec<(ZoneSet, Elem)> {
    let (proto, port) = world;
    if proto.has_ports() {
        let key = vec![Part::Proto(proto.number()), Part::Port(*port)];
        return vec![(ZoneSet::World, Elem::plain(key))];
    }
    let numbers: BTreeSet<u8> = Family::BOTH
        .iter()
        .map(|f| f.proto_number(*proto))
        .collect();
    numbers
        .into_iter()
        .map(|n| (ZoneSet::WorldProto, Elem::plain(vec![Part::Proto(n)])))
        .collect()
}

/// Elements grouped by the zone set that holds them.
#[derive(Debug, Default)]
pub struct ZoneElements {
    pub sets: Vec<(String, Vec<Elem>)>,
}

impl ZoneElements {
    /// The elements of `allows`, `cidrs` and `world` of zone `id` in direction `dir`.
    pub fn push<'a>(
        &mut self,
        id: u32,
        dir: Dir,
        allows: impl IntoIterator<Item = &'a Allow>,
        cidrs: impl IntoIterator<Item = &'a CidrAllow>,
        world: impl IntoIterator<Item = &'a WorldPort>,
    ) {
        let mut by_kind: BTreeMap<ZoneSet, Vec<Elem>> = BTreeMap::new();
        let elems = allows
            .into_iter()
            .map(allow_element)
            .chain(cidrs.into_iter().map(cidr_element))
            .chain(world.into_iter().flat_map(world_elements));
        for (kind, elem) in elems {
            by_kind.entry(kind).or_default().push(elem);
        }
        for (kind, elems) in by_kind {
            self.sets.push((names::zone_set(kind, dir, id), elems));
        }
    }
}
