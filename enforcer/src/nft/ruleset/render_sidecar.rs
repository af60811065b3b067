//! The base chains of a sidecar's table: `zonewarden-enforcer --sidecar` owns
//! `inet zonewarden` inside one pod's network namespace, where the pod's traffic meets
//! the `output` hook (what the pod opens or answers: its egress) and the `input` hook
//! (what reaches the pod: its ingress); a pod routes nothing of its own, so its
//! `forward` chain stays the node table's.
//!
//! The pod is the table's one local endpoint, so the zone chains and the verdict maps
//! are the node table's, unchanged: `output` looks up the egress map by source address,
//! `input` the ingress map by destination address. What differs is around them:
//! loopback is the pod talking to itself; a packet the pod sends must carry one of its
//! own addresses (else it is reported as a spoof and dropped), and a packet that
//! reaches the pod for none of its addresses (broadcast, another address) is reported
//! and dropped. Until the pod is registered the local set is empty, so everything but
//! loopback, neighbour discovery and the sidecar's own connections to the cluster store
//! is dropped: the sidecar fails closed from its first transaction.

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use super::expr::{self, Rule};
use super::names::{self, INPUT};
use super::{Family, Options};

/// What a sidecar's base chains need besides the node options: the cluster store's
/// members, which the sidecar reaches from the pod's own address whatever the pod's
/// zone allows (its own connection must survive `enforce` and `quarantine`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sidecar {
    pub store: Vec<SocketAddr>,
    /// The pod's own addresses (its identity, known before it is registered): the
    /// only sources its connections to the store may have.
    pub sources: Vec<IpAddr>,
}

/// Packets per second the sidecar's spoofing and unaddressed-drop rules log at most.
const LOG_RATE_PER_SECOND: u32 = 10;

/// The ICMPv6 neighbour discovery messages a pod receives from its link.
const ND_IN: [&str; 4] = [
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
];
/// The ones a pod sends: never a router advertisement (a pod is no router).
const ND_OUT: [&str; 3] = [
    "nd-router-solicit",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
];
/// MLD reports and queries of the pod's multicast groups (solicited-node ones).
const MLD: [&str; 3] = [
    "mld-listener-query",
    "mld-listener-report",
    "mld2-listener-report",
];

/// Link-local and link-scope multicast destinations: `{ fe80::/10, ff02::/16 }`.
fn link_scope() -> Value {
    serde_json::json!({"set": [
        expr::prefix_value("fe80::", 10),
        expr::prefix_value("ff02::", 16),
    ]})
}

/// The rules of the sidecar's `input` or `output` chain, in order.
pub fn chain_rules(chain: &str, sidecar: &Sidecar, opts: &Options) -> Vec<Rule> {
    let group = opts.nflog_group;
    let input = chain == INPUT;
    let (iface, field, way, peer, link) = match input {
        true => ("iifname", "daddr", "to", "ingress", "from"),
        false => ("oifname", "saddr", "from", "egress", "to"),
    };
    let logged = |prefix: &str, mut matches: Vec<Value>| {
        matches.extend([
            expr::limit_per_second(LOG_RATE_PER_SECOND),
            expr::log(prefix, group),
        ]);
        matches
    };
    let with = |mut matches: Vec<Value>, verdict: Value| {
        matches.push(verdict);
        matches
    };
    let mut rules = vec![
        Rule::new(
            "known connections: accepted before any lookup",
            vec![expr::ct_state_established(), expr::accept()],
        ),
        Rule::new(
            "loopback: the pod talking to itself",
            vec![expr::eq(expr::meta(iface), "lo".into()), expr::accept()],
        ),
        // A pod must never lose its gateway: neighbour discovery works in every mode.
        // Hop limit 255 proves a received message never left the link.
        // Attack: a pod with CAP_NET_RAW sends router advertisements (rogue router),
        // or neighbour advertisements with any payload to a global address (routed
        // on, past its zone's egress rules): it sends solicitations and neighbour
        // advertisements only, and only to link-local and link-scope multicast
        // destinations, which no router forwards.
        Rule::new(
            &format!("ipv6 neighbour discovery {link} the link: accepted in every mode"),
            match input {
                true => vec![
                    expr::eq(expr::payload("icmpv6", "type"), expr::anon_set(&ND_IN)),
                    expr::eq(expr::payload("ip6", "hoplimit"), 255.into()),
                    expr::accept(),
                ],
                false => vec![
                    expr::eq(expr::payload("icmpv6", "type"), expr::anon_set(&ND_OUT)),
                    expr::eq(expr::payload("ip6", "hoplimit"), 255.into()),
                    expr::eq(expr::payload("ip6", "daddr"), link_scope()),
                    expr::accept(),
                ],
            },
        ),
        Rule::new(
            &format!(
                "ipv6 multicast listener messages {link} the link, link-local source: accepted"
            ),
            vec![
                expr::eq(expr::payload("icmpv6", "type"), expr::anon_set(&MLD)),
                expr::eq(
                    expr::payload("ip6", "saddr"),
                    expr::prefix_value("fe80::", 10),
                ),
                expr::eq(expr::payload("ip6", "daddr"), link_scope()),
                expr::accept(),
            ],
        ),
    ];
    if !input {
        // This rule comes before the source check (the sidecar reaches the store
        // before its pod is registered, when no source is the pod's yet). Attack: a
        // pod with CAP_NET_RAW sends to the store's port from a forged source,
        // unreported: the rule takes the pod's own addresses only, from its identity.
        for member in &sidecar.store {
            let f = Family::of(member.ip());
            let sources: Vec<String> = sidecar
                .sources
                .iter()
                .filter(|a| Family::of(**a) == f)
                .map(ToString::to_string)
                .collect();
            if sources.is_empty() {
                continue;
            }
            let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
            rules.push(Rule::new(
                &format!("cluster store {member}: the sidecar's own connection, accepted"),
                vec![
                    expr::eq(
                        expr::payload(f.payload(), "saddr"),
                        expr::anon_set(&sources),
                    ),
                    expr::eq(
                        expr::payload(f.payload(), "daddr"),
                        member.ip().to_string().into(),
                    ),
                    expr::eq(expr::payload("tcp", "dport"), member.port().into()),
                    expr::accept(),
                ],
            ));
        }
        // Attack: the pod sends with another pod's address, or any other, as its
        // source; it only gets to choose among its own addresses.
        for f in Family::BOTH {
            let spoofed = || {
                vec![expr::ne(
                    expr::payload(f.payload(), "saddr"),
                    expr::set_ref(names::local(f)),
                )]
            };
            let n = f.name();
            rules.extend([
                Rule::new(
                    &format!("{n} source not the pod's own: report to nflog {group}"),
                    logged("zw spoof", spoofed()),
                ),
                Rule::new(
                    &format!("{n} source not the pod's own: drop"),
                    with(spoofed(), expr::drop()),
                ),
            ]);
        }
    }
    for f in Family::BOTH {
        let n = f.name();
        let quarantined = || {
            vec![expr::eq(
                expr::payload(f.payload(), field),
                expr::set_ref(names::quarantine(f)),
            )]
        };
        rules.extend([
            Rule::new(
                &format!("{n} {way} the quarantined pod: report to nflog {group}"),
                logged("zw quarantine", quarantined()),
            ),
            Rule::new(
                &format!("{n} {way} the quarantined pod: drop"),
                with(quarantined(), expr::drop()),
            ),
        ]);
    }
    for f in Family::BOTH {
        let map = match input {
            true => names::ingress(f),
            false => names::egress(f),
        };
        rules.push(Rule::new(
            &format!("{way} the pod over {}: its zone's {peer} chain", f.name()),
            vec![expr::vmap(expr::payload(f.payload(), field), map)],
        ));
    }
    if input {
        // The zone chain returned: its mode (learn, monitor) lets the packet pass.
        for f in Family::BOTH {
            rules.push(Rule::new(
                &format!(
                    "to the pod over {}: passed by its zone's mode, accepted",
                    f.name()
                ),
                vec![
                    expr::eq(
                        expr::payload(f.payload(), "daddr"),
                        expr::set_ref(names::local(f)),
                    ),
                    expr::accept(),
                ],
            ));
        }
        // Fail closed: what reaches the pod for none of its addresses (broadcast,
        // multicast, an address the pod was not registered with) is no edge of its zone.
        rules.extend([
            Rule::new(
                &format!("not addressed to the pod: report to nflog {group}"),
                logged("zw drop", Vec::new()),
            ),
            Rule::new("not addressed to the pod: drop", vec![expr::drop()]),
        ]);
    }
    rules
}
