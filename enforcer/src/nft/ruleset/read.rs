//! The kernel's table read back into the model: what `nft -j -p list table inet
//! zonewarden` prints (protocols as numbers), as a [`KernelView`].
//!
//! Zones come from their chains (`zout_N`, `zin_N`) and sets: the mode from the
//! tail's log prefix (`zw K zN out`), the name from the comment of the tail's first
//! rule (which every zone chain has), the kinds of sets it has from the sets that
//! exist. A zone whose chains' comments are not the ones this version renders
//! (another version wrote them, or its name was too long for a comment) reads with
//! the name `host`, which no compiled zone has, so the next diff rewrites it.
//!
//! The parser reads the fields it needs and ignores the rest, so a newer nft that
//! adds fields does not break it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;
use zonewarden_profiles::edge::Proto;
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::ruleset::{LocalAddr, Ruleset, SetKinds, ZoneRules};
use zonewarden_profiles::zone::ZoneName;

use super::expr;
use super::lean::Lean;
use super::listing::ParsedListing;
use super::names::{self, *};
use super::render_base::{global_set_names, probes_comment};
use super::render_zone::{Tail, zone_chain_rules, zone_of_comment};
use super::{Dir, Family, KernelView, Options, ZoneSet, cut_comment};

/// The group of each interface of the namespace, by name: a routed endpoint's host
/// interface carries its zone id as its group (see [`super::elements::routed_ifname`]).
pub type LinkGroups = BTreeMap<String, u32>;

/// Reads a listing; zone chains are checked against the NFLOG group they log to.
pub fn read_listing(listing: &Value, links: &LinkGroups) -> Result<KernelView, String> {
    read(&split_listing(listing)?, None, links)
}

/// Reads a listing; zone chains that do not log to `opts.nflog_group` count as stale.
pub fn read_listing_for(
    listing: &Value,
    opts: &Options,
    links: &LinkGroups,
) -> Result<KernelView, String> {
    read(&split_listing(listing)?, Some(opts.nflog_group), links)
}

/// Reads a listing as [`super::listing::parse_listing`] parsed it from nft's output;
/// zone chains that do not log to `opts.nflog_group` count as stale.
pub fn read_parsed(
    listing: &ParsedListing,
    opts: &Options,
    links: &LinkGroups,
) -> Result<KernelView, String> {
    read(listing, Some(opts.nflog_group), links)
}

/// A whole listing as the streaming parser gives it: items, and elements apart.
fn split_listing(listing: &Value) -> Result<ParsedListing, String> {
    let items = listing
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("the listing has no \"nftables\" array")?;
    let mut out = ParsedListing::default();
    for item in items {
        let set = item.get("set").or_else(|| item.get("map"));
        if let Some(elems) = set.and_then(|s| s.get("elem")).and_then(Value::as_array) {
            let name = set.map(|s| str_field(s, "name")).transpose()?.unwrap_or("");
            out.elements
                .push((name.to_owned(), elems.iter().map(Lean::from).collect()));
        }
        out.items.push(item.clone());
    }
    Ok(out)
}

/// What of `ruleset` the table can hold, so that reading it back after applying it
/// gives exactly this: comments cut as nft cuts them, ports of protocols without ports
/// as 0.
pub fn representable(ruleset: &Ruleset) -> Ruleset {
    let mut out = ruleset.clone();
    for local in out.local.values_mut() {
        local.comment = cut_comment(&local.comment);
    }
    for (_, comment) in out.members.values_mut() {
        let cut = cut_comment(comment);
        if cut.len() < comment.len() {
            *comment = cut.into();
        }
    }
    for zone in out.zones.values_mut() {
        for allow in [&mut zone.allow_out, &mut zone.allow_in] {
            *allow = allow
                .iter()
                .map(|&(a, p, port)| (a, p, if p.has_ports() { port } else { 0 }))
                .collect();
        }
        for world in [&mut zone.world_out, &mut zone.world_in] {
            world.retain(|(p, port)| p.has_ports() || *port == 0);
        }
        for cidr in [&mut zone.cidr_out, &mut zone.cidr_in] {
            *cidr = cidr
                .iter()
                .map(|&(n, p, port)| (n, p, if p.has_ports() { port } else { 0 }))
                .collect();
        }
    }
    out
}

/// The parts of a listing we read: elements by set, rules by chain.
#[derive(Default)]
struct Listing<'a> {
    elements: BTreeMap<&'a str, &'a [Lean]>,
    chains: BTreeMap<&'a str, Vec<(&'a str, &'a [Value])>>,
}

impl<'a> Listing<'a> {
    fn parse(listing: &'a ParsedListing) -> Result<Self, String> {
        let mut out = Self::default();
        for item in &listing.items {
            if let Some(set) = item.get("set").or_else(|| item.get("map")) {
                out.elements.insert(str_field(set, "name")?, &[]);
            } else if let Some(chain) = item.get("chain") {
                out.chains.entry(str_field(chain, "name")?).or_default();
            } else if let Some(rule) = item.get("rule") {
                let comment = rule.get("comment").and_then(Value::as_str).unwrap_or("");
                let expr = rule.get("expr").and_then(Value::as_array);
                out.chains
                    .entry(str_field(rule, "chain")?)
                    .or_default()
                    .push((comment, expr.map_or(&[], Vec::as_slice)));
            }
        }
        for (name, elements) in &listing.elements {
            // Elements of a set the listing does not hold are no set of ours.
            if let Some(slot) = out.elements.get_mut(name.as_str()) {
                *slot = elements;
            }
        }
        Ok(out)
    }

    fn has_set(&self, set: &str) -> bool {
        self.elements.contains_key(set)
    }

    fn elements(&self, set: &str) -> &'a [Lean] {
        self.elements.get(set).copied().unwrap_or(&[])
    }

    fn comments(&self, chain: &str) -> Option<Vec<String>> {
        let rules = self.chains.get(chain)?;
        Some(rules.iter().map(|(c, _)| (*c).to_owned()).collect())
    }
}

fn read(
    listing: &ParsedListing,
    group: Option<u16>,
    links: &LinkGroups,
) -> Result<KernelView, String> {
    let table = Listing::parse(listing)?;
    let mut view = KernelView::default();
    for chain in ALL_BASE_CHAINS {
        if let Some(comments) = table.comments(chain) {
            view.base_chains.insert(chain.to_owned(), comments);
        }
    }
    let rs = &mut view.ruleset;
    rs.settings = match view.base_chains.get(OUTPUT) {
        Some(comments) => NodeSettings {
            allow_host_probes: comments.iter().any(|c| *c == probes_comment(Family::V4)),
        },
        None => NodeSettings::default(),
    };
    for map in [ZONE_OF_V4, ZONE_OF_V6] {
        for entry in table.elements(map) {
            let (addr, comment, id) = addr_zone_entry(map, entry)?;
            rs.members
                .insert(addr, (id, comment.unwrap_or_default().into()));
        }
    }
    for f in Family::BOTH {
        let set = names::host(f);
        for entry in table.elements(set) {
            rs.host.insert(addr_key(set, entry)?.0);
        }
        let set = names::cidr(f);
        for entry in table.elements(set) {
            rs.cidrs.insert(prefix_key(set, entry)?);
        }
        read_locals(&table, rs, f, links)?;
    }
    let ids: BTreeSet<u32> = table
        .chains
        .keys()
        .filter_map(|c| {
            let id = c
                .strip_prefix(ZONE_OUT_PREFIX)
                .or_else(|| c.strip_prefix(ZONE_IN_PREFIX))?;
            id.parse().ok()
        })
        .collect();
    let mut known: BTreeSet<String> = global_set_names().into_iter().collect();
    known.insert(super::seal::DIGEST_SET.to_owned());
    let jumps = zone_jumps(&table);
    for id in &ids {
        let mut zone = read_zone(&table, *id, group)?;
        // A zone whose group elements are missing (or jump elsewhere) reads as stale:
        // the next diff rewrites it, which adds them again.
        let wanted = Dir::BOTH.map(|dir| (dir, names::zone_chain(dir, *id)));
        if !wanted
            .iter()
            .all(|(dir, chain)| jumps.get(&(*dir, *id)) == Some(chain))
        {
            zone.zone = ZoneName::host();
        }
        rs.zones.insert(*id, zone);
        for dir in Dir::BOTH {
            known.extend(ZoneSet::ALL.map(|kind| names::zone_set(kind, dir, *id)));
        }
    }
    view.foreign_chains = table
        .chains
        .keys()
        .filter(|c| {
            !ALL_BASE_CHAINS.contains(c)
                && !c.starts_with(ZONE_OUT_PREFIX)
                && !c.starts_with(ZONE_IN_PREFIX)
        })
        .map(|c| (*c).to_owned())
        .collect();
    view.obsolete_sets = table
        .elements
        .keys()
        .filter(|name| !known.contains(**name))
        .map(|name| (*name).to_owned())
        .collect();
    let base: BTreeSet<String> = global_set_names().into_iter().collect();
    view.base_sets = table
        .elements
        .keys()
        .filter(|name| base.contains(**name))
        .map(|name| (*name).to_owned())
        .collect();
    view.port_protos_complete = table.elements(PORT_PROTOS).len() == expr::PORT_PROTOS.len();
    Ok(view)
}

fn read_locals(
    table: &Listing<'_>,
    rs: &mut Ruleset,
    f: Family,
    links: &LinkGroups,
) -> Result<(), String> {
    let quarantine = names::quarantine(f);
    let quarantined: BTreeSet<IpAddr> = table
        .elements(quarantine)
        .iter()
        .map(|e| addr_key(quarantine, e).map(|(a, _)| a))
        .collect::<Result<_, _>>()?;
    // (interface, bridged) of each address with anti-spoofing.
    let mut ifnames = BTreeMap::new();
    for (set, bridged) in [(names::pod_src(f), false), (names::port_src(f), true)] {
        for entry in table.elements(set) {
            let parts = entry.get("concat").and_then(Lean::as_array);
            let Some([ifname, addr]) = parts else {
                return Err(bad(set, entry));
            };
            let ifname = ifname.as_str().ok_or_else(|| bad(set, entry))?;
            ifnames.insert(addr_key(set, addr)?.0, (ifname.to_owned(), bridged));
        }
    }
    let mut macs = BTreeMap::new();
    for entry in table.elements(PORT_MAC) {
        let parts = entry.get("concat").and_then(Lean::as_array);
        let Some([Lean::Str(port), Lean::Str(mac)]) = parts else {
            return Err(bad(PORT_MAC, entry));
        };
        macs.insert(port.to_string(), mac.to_string());
    }
    // Where an address's packets are sent: the chain its address jumps to (an
    // address without a routed interface of its own).
    let egress = names::egress(f);
    let mut jumps = BTreeMap::new();
    for entry in table.elements(egress) {
        let (key, value) = map_entry(egress, entry)?;
        let (addr, _) = addr_key(egress, key)?;
        let zone_id: u32 = value
            .at(&["jump", "target"])
            .and_then(Lean::as_str)
            .and_then(|t| t.strip_prefix(ZONE_OUT_PREFIX))
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| bad(egress, entry))?;
        jumps.insert(addr, zone_id);
    }
    let local_map = names::local(f);
    for entry in table.elements(local_map) {
        let (addr, comment, zone_id) = addr_zone_entry(local_map, entry)?;
        let port = ifnames.get(&addr);
        let bridged = port.is_some_and(|(_, bridged)| *bridged);
        let host_ifname = port.map(|(name, _)| name.clone());
        // The address is held only if its packets reach its zone's chains: a routed
        // interface whose group is not the zone id (reset, or never set), or an address
        // whose jump is missing or goes elsewhere, reads as missing, and the next diff
        // adds it again (which sets the group). An interface that is gone carries no
        // packets: its address is held as the map says.
        let dispatched = match host_ifname.as_deref().filter(|_| !bridged) {
            Some(ifname) => links.get(ifname).is_none_or(|g| *g == zone_id),
            None => jumps.get(&addr) == Some(&zone_id),
        };
        if !dispatched {
            continue;
        }
        let local = LocalAddr {
            zone_id,
            host_ifname,
            bridged,
            mac: port
                .filter(|_| bridged)
                .and_then(|(name, _)| macs.get(name).cloned()),
            quarantined: quarantined.contains(&addr),
            comment: comment.unwrap_or_default(),
        };
        rs.local.insert(addr, local);
    }
    Ok(())
}

/// The chain each zone id's group element jumps to, by direction.
fn zone_jumps<'a>(table: &Listing<'a>) -> BTreeMap<(Dir, u32), String> {
    let mut jumps = BTreeMap::new();
    for (map, dir) in [(EGRESS_ZONES, Dir::Out), (INGRESS_ZONES, Dir::In)] {
        for entry in table.elements(map) {
            let Some([key, value]) = entry.as_array() else {
                continue;
            };
            let id = key.as_u64().and_then(|id| u32::try_from(id).ok());
            let target = value.at(&["jump", "target"]).and_then(Lean::as_str);
            if let (Some(id), Some(target)) = (id, target) {
                jumps.insert((dir, id), target.to_owned());
            }
        }
    }
    jumps
}

/// A zone from its chains and sets; stale or unreadable chains give the name `host`.
fn read_zone(table: &Listing<'_>, id: u32, group: Option<u16>) -> Result<ZoneRules, String> {
    let out_chain = names::zone_chain(Dir::Out, id);
    let in_chain = names::zone_chain(Dir::In, id);
    let rules_of = |chain: &str| table.chains.get(chain).map_or(&[][..], Vec::as_slice);
    let tail = [&out_chain, &in_chain]
        .into_iter()
        .flat_map(|c| rules_of(c))
        .flat_map(|(_, expr)| expr.iter())
        .find_map(|stmt| stmt.get("log"));
    let prefix = tail
        .and_then(|log| log.get("prefix"))
        .and_then(Value::as_str);
    let logged_group = tail
        .and_then(|log| log.get("group"))
        .and_then(Value::as_u64)
        .and_then(|g| u16::try_from(g).ok());
    let mode = prefix.and_then(|p| parse_prefix(p, id));
    let name = mode.and_then(|mode| {
        rules_of(&out_chain)
            .iter()
            .find_map(|(c, _)| zone_of_comment(c, mode, Dir::Out))
            .and_then(|name| ZoneName::parse_any(name).ok())
    });
    let mode = mode.unwrap_or_default();
    // A kind counts when its sets exist in both families: the kinds with a set
    // present, minus those with a set missing. A chain whose rules use a set that is
    // missing reads as stale below, and is rewritten.
    let (mut present, mut missing) = (SetKinds::NONE, SetKinds::NONE);
    for dir in Dir::BOTH {
        for set in ZoneSet::ALL {
            let Some(kind) = set.kind(dir) else { continue };
            if table.has_set(&names::zone_set(set, dir, id)) {
                present = present.union(kind);
            } else {
                missing = missing.union(kind);
            }
        }
    }
    let sets = present.minus(missing);
    let mut zone = ZoneRules {
        id,
        zone: name.clone().unwrap_or_else(ZoneName::host),
        mode,
        allow_out: Default::default(),
        allow_in: Default::default(),
        cidr_out: Default::default(),
        cidr_in: Default::default(),
        world_out: Default::default(),
        world_in: Default::default(),
        sets,
    };
    for dir in Dir::BOTH {
        let (allow, cidr, world) = match dir {
            Dir::Out => (&mut zone.allow_out, &mut zone.cidr_out, &mut zone.world_out),
            Dir::In => (&mut zone.allow_in, &mut zone.cidr_in, &mut zone.world_in),
        };
        for f in Family::BOTH {
            let set = names::zone_set(ZoneSet::Allow(f), dir, id);
            for entry in table.elements(&set) {
                let parts = concat_parts(&set, entry, 3)?;
                let addr = addr_key(&set, &parts[0])?.0;
                allow.insert((addr, proto(&set, &parts[1])?, port(&set, &parts[2])?));
            }
            let set = names::zone_set(ZoneSet::AllowProto(f), dir, id);
            for entry in table.elements(&set) {
                let parts = concat_parts(&set, entry, 2)?;
                allow.insert((addr_key(&set, &parts[0])?.0, proto(&set, &parts[1])?, 0));
            }
            let set = names::zone_set(ZoneSet::Cidr(f), dir, id);
            for entry in table.elements(&set) {
                let parts = concat_parts(&set, entry, 3)?;
                let net = prefix_key(&set, &parts[0])?;
                cidr.insert((net, proto(&set, &parts[1])?, port(&set, &parts[2])?));
            }
            let set = names::zone_set(ZoneSet::CidrProto(f), dir, id);
            for entry in table.elements(&set) {
                let parts = concat_parts(&set, entry, 2)?;
                cidr.insert((prefix_key(&set, &parts[0])?, proto(&set, &parts[1])?, 0));
            }
        }
        let set = names::zone_set(ZoneSet::World, dir, id);
        for entry in table.elements(&set) {
            let parts = concat_parts(&set, entry, 2)?;
            world.insert((proto(&set, &parts[0])?, port(&set, &parts[1])?));
        }
        let set = names::zone_set(ZoneSet::WorldProto, dir, id);
        for entry in table.elements(&set) {
            world.insert((proto(&set, entry)?, 0));
        }
    }
    let opts = Options {
        nflog_group: group.or(logged_group).unwrap_or_default(),
        ..Options::default()
    };
    let current = |chain: &str| table.comments(chain).unwrap_or_default();
    let rendered = |dir| -> Vec<String> {
        zone_chain_rules(&zone, dir, &opts)
            .into_iter()
            .map(|r| r.comment)
            .collect()
    };
    let up_to_date = name.is_some()
        && prefix.is_some()
        && logged_group == Some(opts.nflog_group)
        && current(&out_chain) == rendered(Dir::Out)
        && current(&in_chain) == rendered(Dir::In);
    if !up_to_date {
        zone.zone = ZoneName::host();
    }
    Ok(zone)
}

/// `zw K zN dir` → the mode, when it names zone `id`.
fn parse_prefix(prefix: &str, id: u32) -> Option<zonewarden_profiles::profile::Mode> {
    let mut words = prefix.split_whitespace();
    if words.next()? != "zw" {
        return None;
    }
    let mode = Tail::mode_of_kind(words.next()?)?;
    let zone_id: u32 = words.next()?.strip_prefix('z')?.parse().ok()?;
    (zone_id == id).then_some(mode)
}

/// A prefix element: `{"prefix": {"addr", "len"}}`, or a plain address for a full-length one.
fn prefix_key(set: &str, entry: &Lean) -> Result<ipnet::IpNet, String> {
    if let Some(p) = entry.get("prefix") {
        let addr: IpAddr = p
            .get("addr")
            .and_then(Lean::as_str)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| bad(set, entry))?;
        let len = p
            .get("len")
            .and_then(Lean::as_u64)
            .and_then(|l| u8::try_from(l).ok())
            .ok_or_else(|| bad(set, entry))?;
        return ipnet::IpNet::new(addr, len).map_err(|_| bad(set, entry));
    }
    let addr: IpAddr = entry
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(set, entry))?;
    Ok(ipnet::IpNet::from(addr))
}

fn str_field<'a>(object: &'a Value, field: &str) -> Result<&'a str, String> {
    object
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("an object has no string field {field:?}: {object}"))
}

fn bad(set: &str, entry: &Lean) -> String {
    format!("set {set} has an element nft listed as {entry}")
}

/// A map element: `[key, value]`.
fn map_entry<'a>(map: &str, entry: &'a Lean) -> Result<(&'a Lean, &'a Lean), String> {
    match entry.as_array() {
        Some([key, value]) => Ok((key, value)),
        _ => Err(bad(map, entry)),
    }
}

/// An element of a map from addresses to zone ids: address, comment, zone id.
fn addr_zone_entry(map: &str, entry: &Lean) -> Result<(IpAddr, Option<String>, u32), String> {
    let (key, value) = map_entry(map, entry)?;
    let (addr, comment) = addr_key(map, key)?;
    let id = value
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad(map, entry))?;
    Ok((addr, comment, id))
}

/// An address key, bare or as `{"elem": {"val": address, "comment": ...}}`.
fn addr_key(set: &str, key: &Lean) -> Result<(IpAddr, Option<String>), String> {
    let (val, comment) = match key.get("elem") {
        Some(annotated) => (
            annotated.get("val"),
            annotated
                .get("comment")
                .and_then(Lean::as_str)
                .map(str::to_owned),
        ),
        None => (Some(key), None),
    };
    let addr = val
        .and_then(Lean::as_str)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| bad(set, key))?;
    Ok((addr, comment))
}

fn concat_parts<'a>(set: &str, entry: &'a Lean, len: usize) -> Result<&'a [Lean], String> {
    let key = entry.at(&["elem", "val"]).unwrap_or(entry);
    key.get("concat")
        .and_then(Lean::as_array)
        .filter(|parts| parts.len() == len)
        .ok_or_else(|| bad(set, entry))
}

fn proto(set: &str, value: &Lean) -> Result<Proto, String> {
    let parsed = match value {
        Lean::Str(s) => Proto::from_str(s).ok(),
        Lean::Unsigned(n) => u8::try_from(*n).ok().map(Proto::from_number),
        _ => None,
    };
    parsed.ok_or_else(|| bad(set, value))
}

fn port(set: &str, value: &Lean) -> Result<u16, String> {
    let parsed = match value {
        Lean::Str(s) => s.parse().ok(),
        Lean::Unsigned(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    parsed.ok_or_else(|| bad(set, value))
}
