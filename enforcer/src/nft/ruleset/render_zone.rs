//! One zone: its sets (allowed peers with and without ports, per family; world
//! services; CIDR-zone prefixes while it has CIDR-zone edges), its two chains (`zout_N`
//! for connections it opens, `zin_N` for those it receives) and the elements of its
//! sets.
//!
//! A zone has only the peer and world sets its approved edges need, and the rules
//! that use them ([`SetKinds`]): a zone with no approved edge has none.
//!
//! A zone chain accepts what is approved and ends in its mode's tail: a "seen" set
//! makes the NFLOG volume follow distinct edges, not connections; `learn` and
//! `monitor` return (the packet goes on), `enforce` drops, whatever the family or
//! protocol.

use serde_json::Value;
use zonewarden_profiles::edge::Proto;
use zonewarden_profiles::profile::Mode;
use zonewarden_profiles::ruleset::{SetKinds, ZoneRules};

use super::expr::{self, Rule};
use super::names;
use super::{Dir, Family, Options, ZoneSet};

/// What a zone's tail does with what is not approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The word in the seen sets' names and the log prefix: learn, violation, drop.
    pub kind: &'static str,
    pub drops: bool,
}

impl Tail {
    pub const ALL: [Tail; 3] = [
        Tail::of(Mode::Learn),
        Tail::of(Mode::Monitor),
        Tail::of(Mode::Enforce),
    ];

    pub const fn of(mode: Mode) -> Self {
        match mode {
            Mode::Learn => Self {
                kind: "learn",
                drops: false,
            },
            Mode::Monitor => Self {
                kind: "violation",
                drops: false,
            },
            Mode::Enforce => Self {
                kind: "drop",
                drops: true,
            },
        }
    }

    /// The mode whose tail logs with this kind.
    pub fn mode_of_kind(kind: &str) -> Option<Mode> {
        [Mode::Learn, Mode::Monitor, Mode::Enforce]
            .into_iter()
            .find(|m| Self::of(*m).kind == kind)
    }

    /// `seen_K_v4` / `_v6`: (source, destination, protocol, port) already reported.
    pub fn seen_set(self, family: Family) -> String {
        format!("seen_{}_{}", self.kind, family.suffix())
    }

    /// `seen_proto_K_v4` / `_v6`: (source, destination, protocol) of traffic without
    /// ports (ICMP, ICMPv6, any other protocol) already reported.
    pub fn seen_proto_set(self, family: Family) -> String {
        format!("seen_proto_{}_{}", self.kind, family.suffix())
    }

    fn verdict(self) -> Value {
        if self.drops {
            expr::drop()
        } else {
            expr::verdict_return()
        }
    }

    fn verb(self) -> &'static str {
        match self.kind {
            "learn" => "allow and learn new",
            "violation" => "allow unapproved",
            _ => "drop unapproved",
        }
    }
}

/// The NFLOG prefix of a zone's tail: `zw K zN out`. It names no profile version, so
/// that an approval changes set elements only; the enforcer attributes a report to the
/// version in force when it receives it.
pub fn log_prefix(rules: &ZoneRules, dir: Dir) -> String {
    let kind = Tail::of(rules.mode).kind;
    format!("zw {kind} z{} {}", rules.id, dir.as_str())
}

/// The comment of the rule that accepts approved peers with ports.
fn peers_comment(zone: &str, dir: Dir) -> String {
    format!("{zone}: approved edges {}", dir.as_str())
}

/// The comment of a zone's tail rule for already reported edges (`f`), which every
/// zone chain has whatever its sets: the zone's name is read back from it.
fn reported_comment(zone: &str, mode: Mode, dir: Dir, f: Family) -> String {
    let verb = Tail::of(mode).verb();
    format!(
        "{zone} {mode}: {verb} edge {}{}, already reported",
        dir.as_str(),
        over(f)
    )
}

/// The zone a comment of [`reported_comment`] names, in a chain of a zone in `mode`.
pub fn zone_of_comment(comment: &str, mode: Mode, dir: Dir) -> Option<&str> {
    comment.strip_suffix(reported_comment("", mode, dir, Family::V4).as_str())
}

/// The words a rule comment adds for the IPv6 rule of a pair.
fn over(f: Family) -> &'static str {
    match f {
        Family::V4 => "",
        Family::V6 => " over ipv6",
    }
}

/// The key type of a zone set.
pub fn set_type(kind: ZoneSet) -> Vec<&'static str> {
    match kind {
        ZoneSet::Allow(f) | ZoneSet::Cidr(f) => vec![f.addr_type(), "inet_proto", "inet_service"],
        ZoneSet::AllowProto(f) | ZoneSet::CidrProto(f) => vec![f.addr_type(), "inet_proto"],
        ZoneSet::World => vec!["inet_proto", "inet_service"],
        ZoneSet::WorldProto => vec!["inet_proto"],
    }
}

/// The rules of `zout_N` (`Dir::Out`) or `zin_N` (`Dir::In`), in order: for each
/// family, the approved peers (with ports, then without), the approved CIDR zones, the
/// approved world services; then the mode's tail.
pub fn zone_chain_rules(rules: &ZoneRules, dir: Dir, opts: &Options) -> Vec<Rule> {
    let id = rules.id;
    let zone = rules.zone.as_str();
    let d = dir.as_str();
    let set = |kind| expr::set_ref(&names::zone_set(kind, dir, id));
    let port_key = || vec![expr::meta("l4proto"), expr::payload("th", "dport")];
    // Only the sets the zone has; a kind it lacks has no rule, and what that rule
    // would accept falls to the tail like any other unapproved connection.
    let has = |kind: ZoneSet| kind.present(dir, rules.sets, rules.has_cidr());
    let mut out = Vec::new();
    for f in Family::BOTH {
        let peer = || expr::payload(f.payload(), dir.peer_field());
        let over = over(f);
        // Attack: a pod of this zone opens a connection to a peer of an approved zone
        // on an unapproved port, or with another protocol: neither key is in the set.
        // No protocol check first: the key holds the protocol, and the set holds only
        // tcp, udp and sctp keys, so an ICMP or raw packet whose header bytes look like
        // an approved port still finds no element (the same holds for CIDR and world).
        if has(ZoneSet::Allow(f)) {
            out.push(Rule::new(
                &format!("{}{over}", peers_comment(zone, dir)),
                vec![
                    expr::eq(
                        expr::concat([vec![peer()], port_key()].concat()),
                        set(ZoneSet::Allow(f)),
                    ),
                    expr::accept(),
                ],
            ));
        }
        if has(ZoneSet::AllowProto(f)) {
            out.push(Rule::new(
                &format!("{zone}: approved icmp and other protocols {d}{over}"),
                vec![
                    expr::eq(
                        expr::concat(vec![peer(), expr::meta("l4proto")]),
                        set(ZoneSet::AllowProto(f)),
                    ),
                    expr::accept(),
                ],
            ));
        }
        // Outside every zone: no endpoint, not the node. CIDR zones come before world.
        let outside = || {
            vec![
                expr::ne(peer(), expr::set_ref(names::zone_of(f))),
                expr::ne(peer(), expr::set_ref(names::host(f))),
            ]
        };
        if rules.has_cidr() {
            let mut e = outside();
            e.push(expr::eq(
                expr::concat([vec![peer()], port_key()].concat()),
                set(ZoneSet::Cidr(f)),
            ));
            e.push(expr::accept());
            out.push(Rule::new(
                &format!("{zone}: approved cidr zone edges {d}{over}"),
                e,
            ));
            let mut e = outside();
            e.push(expr::eq(
                expr::concat(vec![peer(), expr::meta("l4proto")]),
                set(ZoneSet::CidrProto(f)),
            ));
            e.push(expr::accept());
            out.push(Rule::new(
                &format!("{zone}: approved cidr zone icmp and other protocols {d}{over}"),
                e,
            ));
        }
        // World is what is no endpoint, not the node and in no CIDR zone.
        let world = || {
            let mut e = outside();
            e.push(expr::ne(peer(), expr::set_ref(names::cidr(f))));
            e
        };
        if has(ZoneSet::World) {
            let mut e = world();
            e.push(expr::eq(expr::concat(port_key()), set(ZoneSet::World)));
            e.push(expr::accept());
            out.push(Rule::new(
                &format!("{zone}: approved world edges {d}{over}"),
                e,
            ));
        }
        if has(ZoneSet::WorldProto) {
            let mut e = world();
            e.push(expr::eq(expr::meta("l4proto"), set(ZoneSet::WorldProto)));
            e.push(expr::accept());
            out.push(Rule::new(
                &format!("{zone}: approved world icmp and other protocols {d}{over}"),
                e,
            ));
        }
    }
    out.extend(tail_rules(rules, dir, opts));
    out
}

/// How many packets per second a zone's last-resort rule reports (when its seen sets
/// are full, every unapproved packet reaches it).
const LAST_RESORT_LOG_RATE: u32 = 10;

fn tail_rules(rules: &ZoneRules, dir: Dir, opts: &Options) -> Vec<Rule> {
    let tail = Tail::of(rules.mode);
    let head = format!("{} {}: {} ", rules.zone, rules.mode, tail.verb());
    let d = dir.as_str();
    let group = opts.nflog_group;
    let prefix = log_prefix(rules, dir);
    let mut out = Vec::new();
    for f in Family::BOTH {
        let over = over(f);
        let ends = || {
            vec![
                expr::payload(f.payload(), "saddr"),
                expr::payload(f.payload(), "daddr"),
                expr::meta("l4proto"),
            ]
        };
        let edge = || {
            let mut e = ends();
            e.push(expr::payload("th", "dport"));
            expr::concat(e)
        };
        let portless = || expr::concat(ends());
        out.extend([
            // Only the rule below adds to the seen set, for protocols with ports: the
            // lookup needs no protocol check of its own.
            Rule::new(
                &reported_comment(rules.zone.as_str(), rules.mode, dir, f),
                vec![
                    expr::eq(edge(), expr::set_ref(&tail.seen_set(f))),
                    tail.verdict(),
                ],
            ),
            Rule::new(
                &format!("{head}edge {d}{over}, report to nflog {group}"),
                vec![
                    expr::l4proto_with_ports(),
                    expr::set_add(&tail.seen_set(f), edge()),
                    expr::log(&prefix, group),
                    tail.verdict(),
                ],
            ),
            Rule::new(
                &format!("{head}other protocols {d}{over}, already reported"),
                vec![
                    expr::eq(portless(), expr::set_ref(&tail.seen_proto_set(f))),
                    tail.verdict(),
                ],
            ),
            Rule::new(
                &format!("{head}other protocols {d}{over}, report to nflog {group}"),
                vec![
                    expr::set_add(&tail.seen_proto_set(f), portless()),
                    expr::log(&prefix, group),
                    tail.verdict(),
                ],
            ),
        ]);
    }
    if tail.drops {
        // Attack: flood the seen sets with distinct edges until they are full, so that
        // adding to them fails and the rules above stop matching. What reaches here is
        // still dropped, and reported at a bounded rate.
        out.push(Rule::new(
            &format!("{head}anything else {d}: report to nflog {group} (rate-limited)"),
            vec![
                expr::limit_per_second(LAST_RESORT_LOG_RATE),
                expr::log(&prefix, group),
            ],
        ));
        out.push(Rule::new(
            &format!("{head}anything else {d}: drop (fail closed)"),
            vec![expr::drop()],
        ));
    }
    out
}

/// The commands that create a zone's sets and chains if missing and (re)write the
/// chains' rules: used for created and rewritten zones alike.
pub fn write_zone(rules: &ZoneRules, opts: &Options) -> Vec<Value> {
    let mut cmds = Vec::new();
    for dir in Dir::BOTH {
        for kind in sets_of(rules, dir) {
            let name = names::zone_set(kind, dir, rules.id);
            cmds.push(if kind.is_interval() {
                expr::add_interval_set(&name, &set_type(kind))
            } else {
                expr::add_set(&name, &set_type(kind), None)
            });
        }
    }
    for dir in Dir::BOTH {
        let chain = names::zone_chain(dir, rules.id);
        cmds.push(expr::add_chain(&chain));
        cmds.push(expr::flush_chain(&chain));
        for rule in zone_chain_rules(rules, dir, opts) {
            cmds.push(expr::add_rule(&chain, &rule));
        }
    }
    cmds
}

/// The commands that delete a zone's chains and then its sets. The verdict-map
/// elements that jump to the chains must be gone before (earlier in the transaction).
pub fn remove_zone(rules: &ZoneRules) -> Vec<Value> {
    let id = rules.id;
    let mut cmds = Vec::new();
    for dir in Dir::BOTH {
        cmds.push(expr::flush_chain(&names::zone_chain(dir, id)));
    }
    for dir in Dir::BOTH {
        cmds.push(expr::delete_chain(&names::zone_chain(dir, id)));
    }
    for dir in Dir::BOTH {
        for kind in sets_of(rules, dir) {
            cmds.push(expr::delete_set(&names::zone_set(kind, dir, id)));
        }
    }
    cmds
}

/// The sets a zone has in `dir`: the peer and world sets its approved edges need
/// ([`SetKinds`]), and the CIDR (interval) sets only while it has CIDR-zone edges,
/// because every nft transaction reads every interval set of the table.
pub fn sets_of(rules: &ZoneRules, dir: Dir) -> impl Iterator<Item = ZoneSet> {
    let (sets, cidr) = (rules.sets, rules.has_cidr());
    ZoneSet::ALL
        .into_iter()
        .filter(move |k| k.present(dir, sets, cidr))
}

/// The commands that delete the peer and world sets of zone `id` of the kinds in
/// `dropped`, once its chains no longer use them.
pub fn drop_sets(id: u32, dropped: SetKinds) -> Vec<Value> {
    let mut cmds = Vec::new();
    for dir in Dir::BOTH {
        for kind in ZoneSet::ALL {
            if kind.kind(dir).is_some_and(|k| dropped.contains(k)) {
                cmds.push(expr::delete_set(&names::zone_set(kind, dir, id)));
            }
        }
    }
    cmds
}

/// The commands that delete the CIDR sets of zone `id` once its chains no longer use them.
pub fn drop_cidr_sets(id: u32) -> Vec<Value> {
    let mut cmds = Vec::new();
    for dir in Dir::BOTH {
        for kind in ZoneSet::ALL.into_iter().filter(|k| k.is_interval()) {
            cmds.push(expr::delete_set(&names::zone_set(kind, dir, id)));
        }
    }
    cmds
}

/// An approved (CIDR zone prefix, protocol, port).
pub type CidrAllow = (ipnet::IpNet, Proto, u16);

/// A (protocol, port) to or from `world`.
pub type WorldPort = (Proto, u16);
