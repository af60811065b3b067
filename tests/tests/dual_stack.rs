//! IPv6 and every other protocol, as root, with real packets: spoofed IPv6 sources,
//! quarantine over IPv6, neighbour discovery in every mode and across an enforcer
//! `kill -9`, IPv6-only pods, and protocols without ports. Whatever the family or the
//! protocol, a pod gets exactly what its zone's profile says.

use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::{NODE_ADDR, NODE_ADDR6, Node};
use zonewarden_tests::pods::{Pod, add_pod};
use zonewarden_tests::traffic::{Catcher, Hold, Server, connects, send_raw, send_udp_spoofed};
use zonewarden_tests::{require_root, wait};

const NET: &str = "zw-dual";

/// The node's link-local address on every pod's host end (its MAC is
/// `ee:ee:ee:ee:ee:ee`): the pods' IPv6 gateway.
const GATEWAY6: &str = "fe80::ecee:eeff:feee:eeee";

fn dual_stack(node: &Node, v4: &str, v6: &str) -> Conflist {
    Conflist::routed_ranges(node, NET, &[v4, v6])
}

/// Whether neighbour discovery between the pod and its node works from scratch: the
/// node forgets the pod's link-layer address, the pod pings the node over IPv6 (the
/// node must solicit the pod's address to answer), and the node knows it again. The
/// pod's own gateway entry is static (the plugin writes it): it must still be there.
fn neighbour_discovery_works(node: &Node, pod: &Pod) -> bool {
    let host_end = pod.result["interfaces"][0]["name"]
        .as_str()
        .expect("the host end in the result")
        .to_owned();
    node.netns.ip(&["-6", "neigh", "flush", "dev", &host_end]);
    let pinged = pod.netns.ping(NODE_ADDR6);
    let on_node = node.netns.ip(&["-6", "neigh", "show", "dev", &host_end]);
    let resolved = on_node.lines().any(|l| {
        l.starts_with(&format!("{} ", pod.v6()))
            && l.contains("lladdr")
            && ["REACHABLE", "STALE", "DELAY", "PROBE"]
                .iter()
                .any(|s| l.contains(s))
    });
    let in_pod = pod.netns.ip(&["-6", "neigh", "show", "dev", "eth0"]);
    let gateway = in_pod
        .lines()
        .any(|l| l.starts_with(GATEWAY6) && l.contains("ee:ee:ee:ee:ee:ee"));
    if !(pinged && resolved && gateway) {
        eprintln!(
            "neighbour discovery of {}: pinged {pinged}; node: {on_node:?}; pod: {in_pod:?}",
            pod.netns.name
        );
    }
    pinged && resolved && gateway
}

#[test]
fn spoofed_ipv6_sources_are_dropped_and_reported() {
    require_root!();
    let node = Node::with_enforcer();
    let list = dual_stack(&node, "10.150.0.0/24", "fd7b:150::/64");
    let a = add_pod(&node, &list, "sa", "t/a");
    let b = add_pod(&node, &list, "sb", "t/b");
    let c = add_pod(&node, &list, "sc", "t/c");
    let catcher = Catcher::udp(&b.netns, 7000);

    // A pod may only send from its own addresses. Attack: another pod's IPv6 address,
    // the node's, a global address nobody has, and the other family's equivalent.
    let spoofed = [c.v6(), NODE_ADDR6, "2001:db8::1", c.ip.as_str()];
    for src in spoofed {
        let dst = if src.contains(':') { b.v6() } else { &b.ip };
        assert!(
            send_udp_spoofed(&a.netns, src, dst, 7000),
            "the pod's kernel sends from {src}"
        );
    }
    // An address added to the pod's own interface is no more its own.
    a.netns.ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8::2/128",
        "dev",
        "eth0",
        "nodad",
    ]);
    assert!(send_udp_spoofed(&a.netns, "2001:db8::2", b.v6(), 7000));
    // Then a datagram from its real address: once it arrived, anything sent before
    // it would have arrived too.
    assert!(send_udp_spoofed(&a.netns, a.v6(), b.v6(), 7000));
    assert!(
        catcher.got_from(a.v6(), Duration::from_secs(5)),
        "the pod's own IPv6 address works"
    );
    for src in spoofed.iter().chain(&["2001:db8::2"]) {
        assert!(
            !catcher.got_from(src, Duration::ZERO),
            "a datagram spoofing {src} was delivered"
        );
    }
    // Reports name the edge the packet claimed (its source address's zone) and count
    // repeats: two world sources, the node, and t/c over both families.
    wait::until("the spoofs to be reported", Duration::from_secs(10), || {
        let v = node.violations();
        let count = |edge: &str| {
            v.iter()
                .filter(|r| r["verdict"] == "spoof" && r["edge"] == edge)
                .map(|r| r["count"].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        count("world->t/b:7000/udp") >= 2
            && count("host->t/b:7000/udp") >= 1
            && count("t/c->t/b:7000/udp") >= 2
    });
}

#[test]
fn ipv6_quarantine_neighbour_discovery_and_a_killed_enforcer() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = dual_stack(&node, "10.151.0.0/24", "fd7b:151::/64");
    let a = add_pod(&node, &list, "qa", "t/a");
    let b = add_pod(&node, &list, "qb", "t/b");
    let _servers = [
        Server::start(&a.netns, &["tcp:80", "udp:53"]),
        Server::start(&b.netns, &["tcp:80", "udp:53"]),
    ];
    assert!(
        connects(&a.netns, &b.target6(80, "tcp")),
        "pods talk over IPv6"
    );
    assert!(
        neighbour_discovery_works(&node, &a),
        "neighbour discovery while learning"
    );

    // Quarantine: a held IPv6 connection is cut, nothing new passes either way over
    // either family, the node still reaches the pod and the pod its gateway.
    let held = Hold::start(&b.netns, &a.target6(80, "tcp"), 3);
    node.zwctl(&["quarantine", "--zone", "t/a"]);
    assert!(!held.finish(), "an open IPv6 connection is cut");
    for target in [
        b.target6(80, "tcp"),
        b.target6(53, "udp"),
        b.target(80, "tcp"),
    ] {
        assert!(!connects(&a.netns, &target), "quarantined a -> {target}");
    }
    assert!(!a.netns.ping(b.v6()), "quarantined a -> b over ICMPv6");
    assert!(
        !connects(&b.netns, &a.target6(80, "tcp")),
        "b -> quarantined a"
    );
    assert!(
        connects(&node.netns, &a.target6(80, "tcp")),
        "the node still reaches a quarantined pod over IPv6"
    );
    assert!(
        neighbour_discovery_works(&node, &a),
        "neighbour discovery while quarantined: a quarantined pod still reaches its node"
    );
    wait::until(
        "the IPv6 quarantine drop to be reported",
        Duration::from_secs(10),
        || {
            node.violations()
                .iter()
                .any(|v| v["verdict"] == "quarantine" && v["src"] == a.v6())
        },
    );
    node.zwctl(&["unquarantine", "--zone", "t/a"]);
    assert!(
        connects(&a.netns, &b.target6(80, "tcp")),
        "quarantine lifted"
    );

    // Enforce with only a -> b:80/tcp approved: the rest of IPv6 is dropped, and the
    // pod keeps its gateway.
    node.zwctl(&["profile", "approve", "t/a", "--edge", "t/a->t/b:80/tcp"]);
    for zone in ["t/a", "t/b"] {
        node.zwctl(&["mode", "set", zone, "enforce"]);
    }
    assert!(
        connects(&a.netns, &b.target6(80, "tcp")),
        "approved over IPv6"
    );
    assert!(
        !connects(&a.netns, &b.target6(53, "udp")),
        "unapproved udp over IPv6"
    );
    assert!(!a.netns.ping(b.v6()), "unapproved ICMPv6");
    assert!(!a.netns.ping(NODE_ADDR6), "unapproved ICMPv6 to the node");
    wait::until(
        "the IPv6 drops to be reported",
        Duration::from_secs(10),
        || {
            node.reported("drop", "t/a->t/b:53/udp")
                && node.reported("drop", "t/a->t/b:icmp")
                && node.reported("drop", "t/a->host:icmp")
        },
    );
    node.zwctl(&["profile", "approve", "t/a", "--edge", "t/a->host:icmp"]);
    assert!(
        neighbour_discovery_works(&node, &a),
        "neighbour discovery while enforcing"
    );

    // kill -9: the kernel keeps the table, IPv6 included.
    node.stop_enforcer(true);
    assert!(
        connects(&a.netns, &b.target6(80, "tcp")),
        "approved, enforcer dead"
    );
    assert!(
        !connects(&a.netns, &b.target6(53, "udp")),
        "dropped, enforcer dead"
    );
    assert!(
        neighbour_discovery_works(&node, &a),
        "neighbour discovery with the enforcer dead"
    );
    node.start_enforcer();
    assert!(
        connects(&a.netns, &b.target6(80, "tcp")),
        "after the restart"
    );
    assert!(
        !connects(&a.netns, &b.target6(53, "udp")),
        "after the restart"
    );
    assert!(
        neighbour_discovery_works(&node, &a),
        "neighbour discovery after the restart"
    );
}

#[test]
fn ipv6_only_pods_work_end_to_end() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, NET, &["fd7b:152::/64"]);
    let a = add_pod(&node, &list, "6a", "t/a");
    let b = add_pod(&node, &list, "6b", "t/b");
    assert!(!a.ip.contains('.'), "an IPv6-only pod: {}", a.result);
    let _server = Server::start(&b.netns, &["tcp:80", "tcp:81"]);
    assert!(a.netns.ping(NODE_ADDR6), "pod -> node");
    assert!(node.netns.ping(a.v6()), "node -> pod");
    assert!(connects(&a.netns, &b.target6(80, "tcp")), "pod -> pod");
    wait::until("the edge to be learned", Duration::from_secs(10), || {
        node.items(&["get", "edges", "--learned"])
            .iter()
            .any(|e| e["edge"] == "t/a->t/b:80/tcp")
    });
    node.zwctl(&["profile", "approve", "t/b", "--all"]);
    node.zwctl(&["mode", "set", "t/b", "enforce"]);
    assert!(connects(&a.netns, &b.target6(80, "tcp")), "approved");
    assert!(!connects(&a.netns, &b.target6(81, "tcp")), "unapproved");
    wait::until("the drop to be reported", Duration::from_secs(10), || {
        node.reported("drop", "t/a->t/b:81/tcp")
    });
    list.check(&node, &a.at, &serde_json::json!({}), &a.result)
        .unwrap_or_else(|o| panic!("CHECK of an IPv6-only pod: {o:?}"));

    for pod in [&a, &b] {
        list.del(&node, &pod.at, &serde_json::json!({}), Some(&pod.result))
            .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    }
    node.wait_veths_gone("the host veths to go after DEL");
    assert!(node.endpoints().is_empty(), "no endpoint is left");
    assert!(node.leases(NET).is_empty(), "no lease is left");
    for map in [
        "zone_of_v6",
        "egress_addr_v6",
        "ingress_addr_v6",
        "local_zone_v6",
        "pod_src_v6",
    ] {
        let keys = node.netns.nft_elements(map);
        assert!(keys.is_empty(), "{map} keeps {keys:?} after DEL");
    }
}

/// A protocol no edge grammar has a name for: reported with its number, approvable,
/// and enforced over both families.
#[test]
fn protocols_without_ports_are_decided_and_reported() {
    require_root!();
    let node = Node::with_enforcer();
    let list = dual_stack(&node, "10.153.0.0/24", "fd7b:153::/64");
    let a = add_pod(&node, &list, "pa", "t/a");
    let b = add_pod(&node, &list, "pb", "t/b");
    let catcher = Catcher::raw(&b.netns, 253);
    let sends = |what: &str| {
        for dst in [b.ip.as_str(), b.v6()] {
            assert!(send_raw(&a.netns, 253, dst), "{what}: raw send to {dst}");
        }
    };
    let arrived = |src: &str| catcher.got_from(src, Duration::from_secs(3));

    sends("learning");
    assert!(
        arrived(&a.ip) && arrived(a.v6()),
        "learn passes protocol 253"
    );
    wait::until(
        "protocol 253 to be learned",
        Duration::from_secs(10),
        || {
            node.items(&["get", "edges", "--learned"])
                .iter()
                .any(|e| e["edge"] == "t/a->t/b:proto-253")
        },
    );

    // Enforce without the approval: dropped, reported with its edge. A fresh catcher
    // tells what arrives from now on.
    node.zwctl(&["profile", "reject", "t/b", "--edge", "t/a->t/b:proto-253"]);
    node.zwctl(&["mode", "set", "t/b", "enforce"]);
    drop(catcher);
    let catcher = Catcher::raw(&b.netns, 253);
    sends("enforcing");
    // The node may reach its pods (host probes): once its packets arrived, the pod's,
    // sent before, would have too.
    for dst in [b.ip.as_str(), b.v6()] {
        assert!(send_raw(&node.netns, 253, dst), "the node sends to {dst}");
    }
    assert!(
        catcher.got_from(NODE_ADDR, Duration::from_secs(3))
            && catcher.got_from(NODE_ADDR6, Duration::from_secs(3)),
        "the node's packets arrive"
    );
    assert!(
        !catcher.got_from(&a.ip, Duration::ZERO) && !catcher.got_from(a.v6(), Duration::ZERO),
        "an unapproved protocol is dropped over both families"
    );
    wait::until("the drop to be reported", Duration::from_secs(10), || {
        node.reported("drop", "t/a->t/b:proto-253")
    });

    node.zwctl(&["profile", "approve", "t/b", "--edge", "t/a->t/b:proto-253"]);
    sends("approved");
    assert!(
        catcher.got_from(&a.ip, Duration::from_secs(3))
            && catcher.got_from(a.v6(), Duration::from_secs(3)),
        "an approved protocol passes over both families"
    );
}
