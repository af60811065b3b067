//! The table's global sets and maps and its three base chains.
//!
//! `add table|set|map|chain` are idempotent in nft, `add rule` appends: a base chain
//! whose rule comments differ from the rendered ones is flushed and rewritten in the
//! same transaction, one that matches is left alone. The table itself is never
//! flushed or deleted, so enforcement continues while the enforcer restarts.

use serde_json::{Value, json};
use zonewarden_profiles::policy::NodeSettings;

use super::expr::{self, Rule};
use super::names::{self, *};
use super::render_zone::Tail;
use super::{Dir, Family, KernelView, Options};

/// Packets per second the spoofing and quarantine rules log at most.
const LOG_RATE_PER_SECOND: u32 = 10;

/// The global sets and maps: name, key type, value type.
pub fn global_sets() -> Vec<(&'static str, Vec<&'static str>, Option<&'static str>)> {
    let mut sets = vec![
        (POD_IFACES, vec!["ifname"], None),
        (PORT_PROTOS, vec!["inet_proto"], None),
        (EGRESS_ZONES, vec!["devgroup"], Some("verdict")),
        (INGRESS_ZONES, vec!["devgroup"], Some("verdict")),
    ];
    for f in Family::BOTH {
        let addr = f.addr_type();
        sets.extend([
            (names::zone_of(f), vec![addr], Some("mark")),
            (names::host(f), vec![addr], None),
            (names::egress(f), vec![addr], Some("verdict")),
            (names::ingress(f), vec![addr], Some("verdict")),
            (names::local(f), vec![addr], Some("mark")),
            (names::quarantine(f), vec![addr], None),
            (names::pod_src(f), vec!["ifname", addr], None),
        ]);
    }
    sets
}

/// The bridge table's sets: name, key type.
pub fn bridge_sets() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (POD_PORTS, vec!["ifname"]),
        (PORT_SRC_V4, vec!["ifname", "ipv4_addr"]),
        (PORT_SRC_V6, vec!["ifname", "ipv6_addr"]),
        (PORT_MAC, vec!["ifname", "ether_addr"]),
    ]
}

/// The seen sets of the tails, with their key types.
pub fn seen_sets() -> Vec<(String, Vec<&'static str>)> {
    let mut sets = Vec::new();
    for tail in Tail::ALL {
        for f in Family::BOTH {
            let addr = f.addr_type();
            sets.push((
                tail.seen_set(f),
                vec![addr, addr, "inet_proto", "inet_service"],
            ));
            sets.push((tail.seen_proto_set(f), vec![addr, addr, "inet_proto"]));
        }
    }
    sets
}

/// Every set and map name this version's base transaction creates.
pub fn global_set_names() -> Vec<String> {
    let mut names: Vec<String> = global_sets()
        .into_iter()
        .map(|(n, _, _)| n.to_owned())
        .collect();
    names.extend(Family::BOTH.map(|f| names::cidr(f).to_owned()));
    names.extend(seen_sets().into_iter().map(|(n, _)| n));
    names.extend(bridge_sets().into_iter().map(|(n, _)| n.to_owned()));
    names
}

/// The rules of a bridge-table chain: frames from and to the ports of chained
/// endpoints after a bridge. The inet family sees bridged packets only with the
/// bridge as their interface, so a pod's port is checked here, statelessly.
fn bridge_chain_rules(chain: &str, group: u16) -> Vec<Rule> {
    let from_pod = || expr::eq(expr::meta("iifname"), expr::set_ref(POD_PORTS));
    let port_key = |field: Value| expr::concat(vec![expr::meta("iifname"), field]);
    let ether_type = |t: &str| expr::eq(expr::payload("ether", "type"), t.into());
    let logged_drop = |comment: &str, matches: Vec<Value>| -> [Rule; 2] {
        let mut log = matches.clone();
        log.extend([
            expr::limit_per_second(LOG_RATE_PER_SECOND),
            expr::log("zw spoof", group),
        ]);
        let mut drop = matches;
        drop.push(expr::drop());
        [
            Rule::new(&format!("{comment}: report to nflog {group}"), log),
            Rule::new(&format!("{comment}: drop"), drop),
        ]
    };
    let mut rules = Vec::new();
    if chain == PREROUTING {
        // Attack: a pod sends frames with another pod's MAC address (to take over its
        // place in the bridge's forwarding table and receive its traffic).
        rules.extend(logged_drop(
            "source MAC not the pod's own on a pod port",
            vec![
                from_pod(),
                expr::ne(
                    port_key(expr::payload("ether", "saddr")),
                    expr::set_ref(PORT_MAC),
                ),
            ],
        ));
        // Attack: ARP replies or announcements claiming another pod's address (to
        // have its traffic sent here); address probes (0.0.0.0) are fine.
        rules.extend(logged_drop(
            "arp sender not the pod's own on a pod port",
            vec![
                from_pod(),
                ether_type("arp"),
                expr::ne(expr::payload("arp", "saddr ip"), "0.0.0.0".into()),
                expr::ne(
                    port_key(expr::payload("arp", "saddr ip")),
                    expr::set_ref(PORT_SRC_V4),
                ),
            ],
        ));
        rules.extend(logged_drop(
            "arp sender hardware address not the pod's own on a pod port",
            vec![
                from_pod(),
                ether_type("arp"),
                expr::ne(
                    port_key(expr::payload("arp", "saddr ether")),
                    expr::set_ref(PORT_MAC),
                ),
            ],
        ));
        // Neighbour discovery, duplicate address detection and listener reports come
        // from the unspecified or a link-local address: the link's business.
        rules.push(Rule::new(
            "ipv6 neighbour discovery from a pod port: link-local or unspecified source",
            vec![
                from_pod(),
                expr::eq(
                    expr::payload("ip6", "saddr"),
                    json!({"set": ["::", {"prefix": {"addr": "fe80::", "len": 10}}]}),
                ),
                expr::eq(
                    expr::payload("icmpv6", "type"),
                    expr::anon_set(&[
                        "nd-router-solicit",
                        "nd-neighbor-solicit",
                        "nd-neighbor-advert",
                        "mld-listener-report",
                        "mld2-listener-report",
                    ]),
                ),
                expr::accept(),
            ],
        ));
        for f in Family::BOTH {
            let n = f.name();
            rules.extend(logged_drop(
                &format!("{n} source not the pod's own on a pod port"),
                vec![
                    from_pod(),
                    ether_type(f.payload()),
                    expr::ne(
                        port_key(expr::payload(f.payload(), "saddr")),
                        expr::set_ref(names::port_src(f)),
                    ),
                ],
            ));
        }
        // Attack: VLAN tags, raw layer-2 protocols, anything the inet family never sees.
        rules.extend(logged_drop(
            "other ether types from a pod port",
            vec![
                from_pod(),
                expr::ne(
                    expr::payload("ether", "type"),
                    expr::anon_set(&["ip", "ip6", "arp"]),
                ),
            ],
        ));
    } else {
        // Attack: a poisoned neighbour cache (ARP or NDP) sends one pod's traffic to
        // another's port. A unicast frame leaves a pod port only for that pod.
        let to_pod = || expr::eq(expr::meta("oifname"), expr::set_ref(POD_PORTS));
        rules.extend(logged_drop(
            "ipv4 destination not the pod's own on a pod port",
            vec![
                to_pod(),
                ether_type("ip"),
                expr::ne(
                    expr::payload("ip", "daddr"),
                    json!({"set": [{"prefix": {"addr": "224.0.0.0", "len": 4}}, "255.255.255.255"]}),
                ),
                expr::ne(
                    expr::concat(vec![expr::meta("oifname"), expr::payload("ip", "daddr")]),
                    expr::set_ref(PORT_SRC_V4),
                ),
            ],
        ));
        rules.extend(logged_drop(
            "ipv6 destination not the pod's own on a pod port",
            vec![
                to_pod(),
                ether_type("ip6"),
                expr::ne(
                    expr::payload("ip6", "daddr"),
                    json!({"set": [
                        {"prefix": {"addr": "ff00::", "len": 8}},
                        {"prefix": {"addr": "fe80::", "len": 10}}
                    ]}),
                ),
                expr::ne(
                    expr::concat(vec![expr::meta("oifname"), expr::payload("ip6", "daddr")]),
                    expr::set_ref(PORT_SRC_V6),
                ),
            ],
        ));
    }
    rules
}

/// ICMPv6 neighbour discovery a pod sends to its node: router solicitation, neighbour
/// solicitation and advertisement.
const ND_FROM_POD: [&str; 3] = [
    "nd-router-solicit",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
];
/// ICMPv6 neighbour discovery the node sends to its pods.
const ND_TO_POD: [&str; 3] = [
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
];
/// MLD reports a pod's kernel sends for its multicast groups (solicited-node ones).
const MLD_REPORTS: [&str; 2] = ["mld-listener-report", "mld2-listener-report"];

/// The rules of base chain `chain` (one of [`BASE_CHAINS`] or [`BRIDGE_CHAINS`]), in
/// order.
pub fn base_chain_rules(chain: &str, settings: &NodeSettings, opts: &Options) -> Vec<Rule> {
    let group = opts.nflog_group;
    if BRIDGE_CHAINS.contains(&chain) {
        return bridge_chain_rules(chain, group);
    }
    if let Some(sidecar) = opts.sidecar
        && chain != FORWARD
    {
        return super::render_sidecar::chain_rules(chain, sidecar, opts);
    }
    let established = Rule::new(
        "known connections: accepted before any lookup",
        vec![expr::ct_state_established(), expr::accept()],
    );
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
    // Attack: a pod sends with another pod's address, the node's, or any other as its
    // source, over either family; it only gets to choose among its own addresses.
    let spoofing = |f: Family| {
        let spoofed = || {
            vec![
                expr::eq(expr::meta("iifname"), expr::set_ref(POD_IFACES)),
                expr::ne(
                    expr::concat(vec![
                        expr::meta("iifname"),
                        expr::payload(f.payload(), "saddr"),
                    ]),
                    expr::set_ref(names::pod_src(f)),
                ),
            ]
        };
        let n = f.name();
        [
            Rule::new(
                &format!(
                    "{n} source not the pod's own on a pod interface: report to nflog {group}"
                ),
                with(spoofed(), logged("zw spoof")),
            ),
            Rule::new(
                &format!("{n} source not the pod's own on a pod interface: drop"),
                with(spoofed(), vec![expr::drop()]),
            ),
        ]
    };
    // Attack: a quarantined pod (or its peers) keeps talking over the other family.
    let quarantine = |f: Family, field: &str, way: &str| {
        let is_quarantined = || {
            expr::eq(
                expr::payload(f.payload(), field),
                expr::set_ref(names::quarantine(f)),
            )
        };
        let n = f.name();
        [
            Rule::new(
                &format!("{n} {way} a quarantined endpoint: report to nflog {group}"),
                with(vec![is_quarantined()], logged("zw quarantine")),
            ),
            Rule::new(
                &format!("{n} {way} a quarantined endpoint: drop"),
                vec![is_quarantined(), expr::drop()],
            ),
        ]
    };
    // A routed endpoint's host interface carries its zone id as its interface group
    // (set by the enforcer before the interface joins `pod_ifaces`): one jump per
    // zone, whatever the number of endpoints.
    // Attack: the interface's group is not (or no longer) a zone's id (someone reset it,
    // or it was never set): without the second rule the packet would pass no zone chain
    // and meet the chain's `accept` policy. It is reported and dropped instead. A pod
    // cannot change its host interface's group: that needs CAP_NET_ADMIN on the node.
    let by_group = |dir: Dir| {
        let (ifname, group_key, way, chain, map) = match dir {
            Dir::Out => ("iifname", "iifgroup", "from", "egress", EGRESS_ZONES),
            Dir::In => ("oifname", "oifgroup", "to", "ingress", INGRESS_ZONES),
        };
        let on_pod_iface = || expr::eq(expr::meta(ifname), expr::set_ref(POD_IFACES));
        let ungrouped = || {
            vec![
                on_pod_iface(),
                expr::ne(expr::meta(group_key), expr::set_ref(map)),
            ]
        };
        let what = format!("{way} a pod interface whose group is no zone's id");
        [
            Rule::new(
                &format!(
                    "{way} a pod interface: its zone's {chain} chain (its group is the zone id)"
                ),
                vec![on_pod_iface(), expr::vmap(expr::meta(group_key), map)],
            ),
            Rule::new(
                &format!("{what}: report to nflog {group}"),
                with(ungrouped(), logged("zw spoof")),
            ),
            Rule::new(
                &format!("{what}: drop"),
                with(ungrouped(), vec![expr::drop()]),
            ),
        ]
    };
    let egress = |f: Family| {
        Rule::new(
            &format!(
                "from a local endpoint without a routed interface over {}: its zone's egress chain",
                f.name()
            ),
            vec![expr::vmap(
                expr::payload(f.payload(), "saddr"),
                names::egress(f),
            )],
        )
    };
    let ingress = |f: Family| {
        Rule::new(
            &format!(
                "to a local endpoint without a routed interface over {}: its zone's ingress chain",
                f.name()
            ),
            vec![expr::vmap(
                expr::payload(f.payload(), "daddr"),
                names::ingress(f),
            )],
        )
    };
    // ICMPv6 messages of the link itself, accepted in every mode.
    let icmpv6_accept = |comment: &str, types: &[&str], condition: Value| {
        Rule::new(
            comment,
            vec![
                expr::eq(expr::payload("icmpv6", "type"), expr::anon_set(types)),
                condition,
                expr::accept(),
            ],
        )
    };
    let mut rules = vec![established];
    match chain {
        FORWARD => {
            for f in Family::BOTH {
                rules.extend(spoofing(f));
            }
            for f in Family::BOTH {
                rules.extend(quarantine(f, "saddr", "from"));
                rules.extend(quarantine(f, "daddr", "to"));
            }
            rules.extend(by_group(Dir::Out));
            rules.extend(Family::BOTH.map(egress));
            rules.extend(by_group(Dir::In));
            rules.extend(Family::BOTH.map(ingress));
        }
        INPUT => {
            // A pod must never lose its gateway: neighbour discovery with the node
            // works in every mode. Hop limit 255 proves it came from the link; these
            // messages reach no service.
            rules.push(icmpv6_accept(
                "ipv6 neighbour discovery from the link: accepted in every mode",
                &ND_FROM_POD,
                expr::eq(expr::payload("ip6", "hoplimit"), 255.into()),
            ));
            rules.push(icmpv6_accept(
                "ipv6 multicast listener reports from link-local sources: accepted",
                &MLD_REPORTS,
                expr::eq(
                    expr::payload("ip6", "saddr"),
                    expr::prefix_value("fe80::", 10),
                ),
            ));
            for f in Family::BOTH {
                rules.extend(spoofing(f));
            }
            rules.extend(by_group(Dir::Out));
            rules.extend(Family::BOTH.map(egress));
        }
        _ => {
            rules.push(icmpv6_accept(
                "ipv6 neighbour discovery to the link: accepted in every mode",
                &ND_TO_POD,
                expr::eq(expr::payload("ip6", "hoplimit"), 255.into()),
            ));
            // The node joins multicast groups on every interface, a pod's among them,
            // and reports so (from its link-local address, or from :: while that is
            // not ready yet): link traffic, hop limit 1, that reaches no service of the
            // pod. Every packet out of a pod interface meets its zone's chain,
            // whatever its destination, so these would be reported as edges.
            rules.push(icmpv6_accept(
                "ipv6 multicast listener reports to the link: accepted",
                &MLD_REPORTS,
                expr::eq(expr::payload("ip6", "hoplimit"), 1.into()),
            ));
            if settings.allow_host_probes {
                for f in Family::BOTH {
                    rules.push(Rule::new(
                        &probes_comment(f),
                        vec![
                            expr::eq(
                                expr::payload(f.payload(), "daddr"),
                                expr::set_ref(names::local(f)),
                            ),
                            expr::accept(),
                        ],
                    ));
                }
            }
            rules.extend(by_group(Dir::In));
            rules.extend(Family::BOTH.map(ingress));
        }
    }
    rules
}

/// The comment of the `output` rules that let the node reach its pods: their presence
/// is how `allow_host_probes` reads back.
pub fn probes_comment(f: Family) -> String {
    format!(
        "host to local endpoints over {}: allowed (kubelet probes)",
        f.name()
    )
}

/// The transaction that creates the table's global objects if missing and rewrites
/// the base chains whose rule comments differ from the ones `settings` wants.
/// Whether the table already holds everything [`base_commands`] creates: every base
/// set and map (the set of protocols with ports with its elements) and every base
/// chain with this version's rules. A restart of an enforcer whose table is intact
/// then sends no transaction and reads the table once.
pub fn base_is_complete(settings: &NodeSettings, current: &KernelView, opts: &Options) -> bool {
    current.port_protos_complete
        && global_set_names()
            .iter()
            .all(|name| current.base_sets.contains(name))
        && ALL_BASE_CHAINS.iter().all(|chain| {
            let rules = base_chain_rules(chain, settings, opts);
            current.base_chains.get(*chain).is_some_and(|have| {
                have.len() == rules.len() && have.iter().zip(&rules).all(|(h, r)| *h == r.comment)
            })
        })
}

pub fn base_commands(settings: &NodeSettings, current: &KernelView, opts: &Options) -> Value {
    let mut cmds = vec![expr::add_table()];
    for (name, key, value) in global_sets() {
        cmds.push(expr::add_set(name, &key, value));
    }
    cmds.push(expr::elements(
        "add",
        PORT_PROTOS,
        expr::PORT_PROTOS.iter().map(|&p| p.into()).collect(),
    ));
    for f in Family::BOTH {
        cmds.push(expr::add_interval_set(names::cidr(f), &[f.addr_type()]));
    }
    for (name, key) in seen_sets() {
        cmds.push(expr::add_seen_set(&name, &key, opts.seen_timeout_secs));
    }
    cmds.push(expr::add_bridge_table());
    for (name, key) in bridge_sets() {
        cmds.push(expr::add_set(name, &key, None));
    }
    for chain in ALL_BASE_CHAINS {
        cmds.push(expr::add_base_chain(chain));
    }
    for chain in ALL_BASE_CHAINS {
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
