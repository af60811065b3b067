//! The table's global sets and maps and its three base chains.
//!
//! `add table|set|map|chain` are idempotent in nft, `add rule` appends: a base chain
//! whose rule comments differ from the rendered ones is flushed and rewritten in the
//! same transaction, one that matches is left alone. The table itself is never
//! flushed or deleted, so enforcement continues while the enforcer restarts.

use serde_json::Value;
use zonewarden_profiles::policy::NodeSettings;

use super::expr::{self, Rule};
use super::names::*;
use super::render_zone::Tail;
use super::{KernelView, Options};

/// Packets per second the spoofing and quarantine rules log at most.
const LOG_RATE_PER_SECOND: u32 = 10;

/// The global sets and maps: name, key type, value type.
pub fn global_sets() -> Vec<(&'static str, &'static [&'static str], Option<&'static str>)> {
    vec![
        (ZONE_OF_V4, &["ipv4_addr"], Some("mark")),
        (ZONE_OF_V6, &["ipv6_addr"], Some("mark")),
        (HOST_V4, &["ipv4_addr"], None),
        (EGRESS_V4, &["ipv4_addr"], Some("verdict")),
        (INGRESS_V4, &["ipv4_addr"], Some("verdict")),
        (LOCAL_V4, &["ipv4_addr"], None),
        (QUARANTINE_V4, &["ipv4_addr"], None),
        (POD_IFACES, &["ifname"], None),
        (POD_SRC_V4, &["ifname", "ipv4_addr"], None),
    ]
}

/// The rules of base chain `chain` (one of [`BASE_CHAINS`]), in order.
pub fn base_chain_rules(chain: &str, settings: &NodeSettings, opts: &Options) -> Vec<Rule> {
    let group = opts.nflog_group;
    let saddr = || expr::payload("ip", "saddr");
    let daddr = || expr::payload("ip", "daddr");
    let established = Rule::new(
        "known connections: accepted before any lookup",
        vec![expr::ct_state_established(), expr::accept()],
    );
    let spoofed = || {
        vec![
            expr::eq(expr::meta("iifname"), expr::set_ref(POD_IFACES)),
            expr::ne(
                expr::concat(vec![expr::meta("iifname"), saddr()]),
                expr::set_ref(POD_SRC_V4),
            ),
        ]
    };
    let with = |mut head: Vec<Value>, tail: Vec<Value>| {
        head.extend(tail);
        head
    };
    let logged = |prefix: &str| {
        vec![
            expr::limit_per_second(LOG_RATE_PER_SECOND),
            expr::log(prefix, group),
        ]
    };
    let spoofing = [
        Rule::new(
            &format!("source not the pod's own on a pod interface: report to nflog {group}"),
            with(spoofed(), logged("zw spoof")),
        ),
        Rule::new(
            "source not the pod's own on a pod interface: drop",
            with(spoofed(), vec![expr::drop()]),
        ),
    ];
    let quarantine = |addr: Value, way: &str| {
        let is_quarantined = || expr::eq(addr.clone(), expr::set_ref(QUARANTINE_V4));
        [
            Rule::new(
                &format!("{way} a quarantined endpoint: report to nflog {group}"),
                with(vec![is_quarantined()], logged("zw quarantine")),
            ),
            Rule::new(
                &format!("{way} a quarantined endpoint: drop"),
                vec![is_quarantined(), expr::drop()],
            ),
        ]
    };
    let egress = Rule::new(
        "from a local endpoint: its zone's egress chain",
        vec![expr::vmap(saddr(), EGRESS_V4)],
    );
    let ingress = Rule::new(
        "to a local endpoint: its zone's ingress chain",
        vec![expr::vmap(daddr(), INGRESS_V4)],
    );
    let mut rules = vec![established];
    match chain {
        FORWARD => {
            rules.extend(spoofing);
            rules.extend(quarantine(saddr(), "from"));
            rules.extend(quarantine(daddr(), "to"));
            rules.extend([egress, ingress]);
        }
        INPUT => {
            rules.extend(spoofing);
            rules.push(egress);
        }
        _ => {
            if settings.allow_host_probes {
                rules.push(Rule::new(
                    PROBES_COMMENT,
                    vec![expr::eq(daddr(), expr::set_ref(LOCAL_V4)), expr::accept()],
                ));
            }
            rules.push(ingress);
        }
    }
    rules
}

/// The comment of the `output` rule that lets the node reach its pods: its presence
/// is how `allow_host_probes` reads back.
pub const PROBES_COMMENT: &str = "host to local endpoints: allowed (kubelet probes)";

/// The transaction that creates the table's global objects if missing and rewrites
/// the base chains whose rule comments differ from the ones `settings` wants.
pub fn base_commands(settings: &NodeSettings, current: &KernelView, opts: &Options) -> Value {
    let mut cmds = vec![expr::add_table()];
    for (name, key, value) in global_sets() {
        cmds.push(expr::add_set(name, key, value));
    }
    cmds.push(expr::add_interval_set(CIDR_V4, &["ipv4_addr"]));
    for tail in Tail::ALL {
        let timeout = opts.seen_timeout_secs;
        let edge = ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"];
        cmds.push(expr::add_seen_set(&tail.seen_set(), &edge, timeout));
        let pair = ["ipv4_addr", "ipv4_addr"];
        cmds.push(expr::add_seen_set(&tail.seen_icmp_set(), &pair, timeout));
    }
    for chain in BASE_CHAINS {
        cmds.push(expr::add_base_chain(chain));
    }
    for chain in BASE_CHAINS {
        let rules = base_chain_rules(chain, settings, opts);
        let comments: Vec<&str> = rules.iter().map(|r| r.comment.as_str()).collect();
        if current
            .base_chains
            .get(chain)
            .is_some_and(|c| *c == comments)
        {
            continue;
        }
        cmds.extend(rewrite_chain(chain, &rules));
    }
    expr::transaction(cmds)
}

/// `flush chain` and the rules in order.
pub fn rewrite_chain(chain: &str, rules: &[Rule]) -> Vec<Value> {
    let mut cmds = vec![expr::flush_chain(chain)];
    cmds.extend(rules.iter().map(|r| expr::add_rule(chain, r)));
    cmds
}
