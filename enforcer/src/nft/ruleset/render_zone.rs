//! One zone: its six sets (allowed peers, ICMP peers and world ports, out and in),
//! its two chains (`zout_N` for connections it opens, `zin_N` for those it receives)
//! and the elements of its sets.
//!
//! A zone chain accepts what is approved and ends in its mode's tail: a "seen" set
//! makes the NFLOG volume follow distinct edges, not connections; `learn` and
//! `monitor` return (the packet goes on), `enforce` drops.

use serde_json::Value;
use zonewarden_profiles::edge::Proto;
use zonewarden_profiles::profile::Mode;
use zonewarden_profiles::ruleset::ZoneRules;

use super::expr::{self, Rule};
use super::names::{self, CIDR_V4, HOST_V4, ZONE_OF_V4};
use super::{Dir, Options, ZoneSet};

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

    /// `seen_K_v4`: (source, destination, protocol, port) already reported.
    pub fn seen_set(self) -> String {
        format!("seen_{}_v4", self.kind)
    }

    /// `seen_icmp_K_v4`: (source, destination) of other traffic already reported.
    pub fn seen_icmp_set(self) -> String {
        format!("seen_icmp_{}_v4", self.kind)
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

/// The comment of a zone chain's first rule, from which its zone name is read back.
pub fn first_comment(zone: &str, dir: Dir) -> String {
    format!("{zone}: approved edges {}", dir.as_str())
}

/// The key type of a zone set.
pub fn set_type(kind: ZoneSet) -> &'static [&'static str] {
    match kind {
        ZoneSet::Allow => &["ipv4_addr", "inet_proto", "inet_service"],
        ZoneSet::AllowIcmp => &["ipv4_addr"],
        ZoneSet::World => &["inet_proto", "inet_service"],
        ZoneSet::Cidr => &["ipv4_addr", "inet_proto", "inet_service"],
        ZoneSet::CidrIcmp => &["ipv4_addr"],
    }
}

/// The rules of `zout_N` (`Dir::Out`) or `zin_N` (`Dir::In`), in order.
pub fn zone_chain_rules(rules: &ZoneRules, dir: Dir, opts: &Options) -> Vec<Rule> {
    let id = rules.id;
    let zone = rules.zone.as_str();
    let d = dir.as_str();
    let peer = || match dir {
        Dir::Out => expr::payload("ip", "daddr"),
        Dir::In => expr::payload("ip", "saddr"),
    };
    let port_key = || expr::concat(vec![expr::meta("l4proto"), expr::payload("th", "dport")]);
    let icmp = || expr::eq(expr::meta("l4proto"), "icmp".into());
    let outside = || {
        [
            expr::ne(peer(), expr::set_ref(ZONE_OF_V4)),
            expr::ne(peer(), expr::set_ref(HOST_V4)),
        ]
    };
    let set = |kind| names::zone_set(kind, dir, id);
    let mut out = vec![
        Rule::new(
            &first_comment(zone, dir),
            vec![
                expr::l4proto_with_ports(),
                expr::eq(
                    expr::concat(vec![
                        peer(),
                        expr::meta("l4proto"),
                        expr::payload("th", "dport"),
                    ]),
                    expr::set_ref(&set(ZoneSet::Allow)),
                ),
                expr::accept(),
            ],
        ),
        Rule::new(
            &format!("{zone}: approved icmp {d}"),
            vec![
                icmp(),
                expr::eq(peer(), expr::set_ref(&set(ZoneSet::AllowIcmp))),
                expr::accept(),
            ],
        ),
    ];
    if rules.has_cidr() {
        let mut e = vec![expr::l4proto_with_ports()];
        e.extend(outside());
        e.push(expr::eq(
            expr::concat(vec![
                peer(),
                expr::meta("l4proto"),
                expr::payload("th", "dport"),
            ]),
            expr::set_ref(&set(ZoneSet::Cidr)),
        ));
        e.push(expr::accept());
        out.push(Rule::new(
            &format!("{zone}: approved cidr zone edges {d}"),
            e,
        ));
        let mut e = vec![icmp()];
        e.extend(outside());
        e.push(expr::eq(peer(), expr::set_ref(&set(ZoneSet::CidrIcmp))));
        e.push(expr::accept());
        out.push(Rule::new(
            &format!("{zone}: approved cidr zone icmp {d}"),
            e,
        ));
    }
    // World is what is no endpoint, not the node and in no CIDR zone.
    let outside = || {
        let mut e = outside().to_vec();
        e.push(expr::ne(peer(), expr::set_ref(CIDR_V4)));
        e
    };
    let world = match dir {
        Dir::Out => &rules.world_out,
        Dir::In => &rules.world_in,
    };
    if world.contains(&(Proto::Icmp, 0)) {
        let to = if dir == Dir::Out { "to" } else { "from" };
        let mut e = vec![icmp()];
        e.extend(outside());
        e.push(expr::accept());
        out.push(Rule::new(&format!("{zone}: icmp {to} world approved"), e));
    }
    let mut e = vec![expr::l4proto_with_ports()];
    e.extend(outside());
    e.push(expr::eq(port_key(), expr::set_ref(&set(ZoneSet::World))));
    e.push(expr::accept());
    out.push(Rule::new(&format!("{zone}: approved world edges {d}"), e));
    out.extend(tail_rules(rules, dir, opts));
    out
}

fn tail_rules(rules: &ZoneRules, dir: Dir, opts: &Options) -> [Rule; 4] {
    let tail = Tail::of(rules.mode);
    let head = format!("{} {}: {} ", rules.zone, rules.mode, tail.verb());
    let d = dir.as_str();
    let group = opts.nflog_group;
    let prefix = log_prefix(rules, dir);
    let edge = || {
        expr::concat(vec![
            expr::payload("ip", "saddr"),
            expr::payload("ip", "daddr"),
            expr::meta("l4proto"),
            expr::payload("th", "dport"),
        ])
    };
    let pair = || {
        expr::concat(vec![
            expr::payload("ip", "saddr"),
            expr::payload("ip", "daddr"),
        ])
    };
    [
        Rule::new(
            &format!("{head}edge {d}, already reported"),
            vec![
                expr::l4proto_with_ports(),
                expr::eq(edge(), expr::set_ref(&tail.seen_set())),
                tail.verdict(),
            ],
        ),
        Rule::new(
            &format!("{head}edge {d}, report to nflog {group}"),
            vec![
                expr::l4proto_with_ports(),
                expr::set_add(&tail.seen_set(), edge()),
                expr::log(&prefix, group),
                tail.verdict(),
            ],
        ),
        Rule::new(
            &format!("{head}other traffic {d}, already reported"),
            vec![
                expr::eq(pair(), expr::set_ref(&tail.seen_icmp_set())),
                tail.verdict(),
            ],
        ),
        Rule::new(
            &format!("{head}other traffic {d}, report to nflog {group}"),
            vec![
                expr::set_add(&tail.seen_icmp_set(), pair()),
                expr::log(&prefix, group),
                tail.verdict(),
            ],
        ),
    ]
}

/// The commands that create a zone's sets and chains if missing and (re)write the
/// chains' rules: used for created and rewritten zones alike.
pub fn write_zone(rules: &ZoneRules, opts: &Options) -> Vec<Value> {
    let mut cmds = Vec::new();
    for dir in Dir::BOTH {
        for kind in sets_of(rules) {
            let name = names::zone_set(kind, dir, rules.id);
            cmds.push(if kind.is_interval() {
                expr::add_interval_set(&name, set_type(kind))
            } else {
                expr::add_set(&name, set_type(kind), None)
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
        for kind in sets_of(rules) {
            cmds.push(expr::delete_set(&names::zone_set(kind, dir, id)));
        }
    }
    cmds
}

/// The sets a zone has: the CIDR (interval) sets only while it has CIDR-zone edges,
/// because every nft transaction reads every interval set of the table.
pub fn sets_of(rules: &ZoneRules) -> impl Iterator<Item = ZoneSet> {
    let cidr = rules.has_cidr();
    ZoneSet::ALL
        .into_iter()
        .filter(move |k| cidr || !k.is_interval())
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
