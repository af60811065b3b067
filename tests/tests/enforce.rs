//! Learn, approve, enforce with real traffic between namespaces, as root.

use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::attach::endpoint_of;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::{NODE_ADDR, NODE_ADDR6, Node};
use zonewarden_tests::pods::{Pod, add_pod};
use zonewarden_tests::traffic::{Hold, Server, connects, probe};
use zonewarden_tests::{require_root, wait};

const NET: &str = "zw-enforce";

fn edges(node: &Node, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["get", "edges"];
    cmd.extend_from_slice(args);
    let mut e: Vec<String> = node
        .items(&cmd)
        .iter()
        .filter_map(|e| e["edge"].as_str().map(str::to_owned))
        .collect();
    e.sort();
    e
}

struct Tiers {
    frontend: Pod,
    api: Pod,
    db: Pod,
    dns: Pod,
    _servers: Vec<Server>,
}

fn tiers(node: &Node, list: &Conflist) -> Tiers {
    let frontend = add_pod(node, list, "frontend", "shop/frontend");
    let api = add_pod(node, list, "api", "shop/api");
    let db = add_pod(node, list, "db", "shop/db");
    let dns = add_pod(node, list, "dns", "shop/dns");
    let servers = vec![
        Server::start(&frontend.netns, &["tcp:80"]),
        Server::start(&api.netns, &["tcp:8080", "tcp:9090"]),
        Server::start(&db.netns, &["tcp:5432"]),
        Server::start(&dns.netns, &["udp:53"]),
    ];
    Tiers {
        frontend,
        api,
        db,
        dns,
        _servers: servers,
    }
}

/// Which address family traffic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

/// `pod`'s target in family `fam`.
fn at(pod: &Pod, fam: Fam, port: u16, proto: &str) -> String {
    match fam {
        Fam::V4 => pod.target(port, proto),
        Fam::V6 => pod.target6(port, proto),
    }
}

/// The traffic of the three tiers, plus the node probing every pod, over each family
/// of `fams`.
fn normal_traffic(node: &Node, t: &Tiers, fams: &[Fam]) {
    let timeout = Duration::from_secs(2);
    for &fam in fams {
        assert_eq!(
            probe(&t.frontend.netns, &[at(&t.api, fam, 8080, "tcp")], timeout),
            [true],
            "frontend -> api over {fam:?}"
        );
        assert_eq!(
            probe(
                &t.api.netns,
                &[at(&t.db, fam, 5432, "tcp"), at(&t.dns, fam, 53, "udp")],
                timeout
            ),
            [true, true],
            "api -> db, dns over {fam:?}"
        );
        let probes: Vec<String> = [(&t.frontend, 80), (&t.api, 8080), (&t.db, 5432)]
            .iter()
            .map(|(p, port)| at(p, fam, *port, "tcp"))
            .collect();
        assert_eq!(
            probe(&node.netns, &probes, timeout),
            [true, true, true],
            "host probes over {fam:?}"
        );
    }
}

/// Both families, for dual-stack pods.
const BOTH: [Fam; 2] = [Fam::V4, Fam::V6];

/// A dual-stack network: every pod gets an IPv4 and an IPv6 address.
fn dual_stack(node: &Node, v4: &str, v6: &str) -> Conflist {
    Conflist::routed_ranges(node, NET, &[v4, v6])
}

#[test]
fn learn_approve_enforce_three_tiers() {
    require_root!();
    let node = Node::with_enforcer();
    let list = dual_stack(&node, "10.130.0.0/24", "fd7b:130::/64");
    let t = tiers(&node, &list);

    // Learn over IPv6 alone, then over IPv4: the same edges, whatever the family.
    normal_traffic(&node, &t, &[Fam::V6]);
    let want = [
        "shop/api->shop/db:5432/tcp",
        "shop/api->shop/dns:53/udp",
        "shop/frontend->shop/api:8080/tcp",
    ];
    wait::until(
        "the three edges to be learned over IPv6",
        Duration::from_secs(10),
        || {
            let learned = edges(&node, &["--learned"]);
            want.iter().all(|w| learned.iter().any(|l| l == w))
        },
    );
    let learned_v6 = edges(&node, &["--learned"]);
    assert_eq!(learned_v6, want, "IPv6 traffic learns zone edges");
    let v6_sample = node
        .items(&["get", "edges", "--learned", "--zone", "shop/db"])
        .iter()
        .find(|e| e["edge"] == "shop/api->shop/db:5432/tcp")
        .map(|e| e["evidence"]["sample"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    assert!(
        v6_sample.contains(&format!("[{}]:5432", t.db.v6())),
        "the evidence keeps the IPv6 connection: {v6_sample}"
    );
    normal_traffic(&node, &t, &[Fam::V4]);
    wait::until(
        "IPv4 traffic to be counted on the same edges",
        Duration::from_secs(10),
        || {
            node.items(&["get", "edges", "--learned", "--zone", "shop/dns"])
                .iter()
                .any(|e| {
                    e["edge"] == "shop/api->shop/dns:53/udp"
                        && e["evidence"]["count"].as_u64().unwrap_or(0) >= 2
                })
        },
    );
    assert_eq!(
        edges(&node, &["--learned"]),
        want,
        "IPv4 traffic learns no other edges than IPv6 did"
    );
    let learned = node.items(&["get", "edges", "--learned", "--zone", "shop/api"]);
    let fe_api = learned
        .iter()
        .find(|e| e["edge"] == "shop/frontend->shop/api:8080/tcp")
        .expect("frontend->api learned");
    let ev = &fe_api["evidence"];
    assert!(
        ev["count"].as_u64().unwrap_or(0) >= 1,
        "evidence counts connections: {fe_api}"
    );
    assert!(
        ev["sample"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("[{}]:8080", t.api.v6())),
        "sample 5-tuple of the first connection (over IPv6): {fe_api}"
    );
    assert!(
        !ev["sample"].as_str().unwrap_or("").ends_with(":0/tcp"),
        "{fe_api}"
    );
    assert!(
        ev["nodes"]
            .as_array()
            .is_some_and(|n| n.contains(&Value::from(node.netns.name.clone()))),
        "{fe_api}"
    );
    assert!(
        edges(&node, &["--learned"])
            .iter()
            .all(|e| !e.contains(":0/tcp")),
        "source ports never become edges"
    );
    assert!(
        !edges(&node, &["--learned"])
            .iter()
            .any(|e| e.starts_with("host->")),
        "host probes are exempt by default, so they are neither checked nor recorded"
    );

    // A long-lived connection opened before approval and enforcement survives both.
    let held = Hold::start(&t.frontend.netns, &t.api.target(8080, "tcp"), 6);

    for zone in ["shop/frontend", "shop/api", "shop/db", "shop/dns"] {
        node.zwctl(&[
            "profile",
            "approve",
            zone,
            "--all",
            "--comment",
            "reviewed in test",
        ]);
    }
    for zone in ["shop/frontend", "shop/api", "shop/db", "shop/dns"] {
        node.zwctl(&["mode", "set", zone, "enforce"]);
    }
    let profiles = node.items(&["get", "profiles"]);
    let enforcing: Vec<&str> = profiles
        .iter()
        .filter(|p| p["mode"] == "enforce")
        .filter_map(|p| p["zone"].as_str())
        .collect();
    assert_eq!(
        enforcing,
        ["shop/api", "shop/db", "shop/dns", "shop/frontend"],
        "every tier enforces: {profiles:?}"
    );

    // Approved traffic keeps working, over both families.
    normal_traffic(&node, &t, &BOTH);
    // Everything else is dropped and reported, over both families.
    let node_service = Server::start(&node.netns, &["tcp:9999", "udp:5353"]);
    for fam in BOTH {
        let dropped = [
            (&t.frontend, &t.db, 5432, "tcp", "frontend -> db"),
            (&t.api, &t.frontend, 80, "tcp", "api -> frontend"),
            (&t.db, &t.api, 8080, "tcp", "db -> api"),
            (
                &t.frontend,
                &t.api,
                9090,
                "tcp",
                "an unapproved port of an approved pair",
            ),
            (&t.db, &t.dns, 53, "udp", "db -> dns (udp)"),
        ];
        for (src, dst, port, proto, what) in dropped {
            assert!(
                !connects(&src.netns, &at(dst, fam, port, proto)),
                "{what} must be dropped over {fam:?}"
            );
        }
        let (node_tcp, node_udp) = match fam {
            Fam::V4 => (
                format!("{NODE_ADDR}:9999/tcp"),
                format!("{NODE_ADDR}:5353/udp"),
            ),
            Fam::V6 => (
                format!("[{NODE_ADDR6}]:9999/tcp"),
                format!("[{NODE_ADDR6}]:5353/udp"),
            ),
        };
        assert!(
            !connects(&t.frontend.netns, &node_tcp) && !connects(&t.frontend.netns, &node_udp),
            "the node's own services are the host zone, unapproved, over {fam:?}"
        );
    }
    assert!(
        !t.frontend.netns.ping(t.db.v6()) && !t.frontend.netns.ping(&t.db.ip),
        "ICMP and ICMPv6 between unapproved zones are dropped"
    );
    assert!(
        connects(&node.netns, &format!("[{NODE_ADDR6}]:9999/tcp")),
        "the node's service itself works"
    );
    drop(node_service);
    wait::until("the drops to be reported", Duration::from_secs(10), || {
        node.reported("drop", "shop/frontend->shop/db:5432/tcp")
            && node.reported("drop", "shop/api->shop/frontend:80/tcp")
            && node.reported("drop", "shop/frontend->shop/api:9090/tcp")
            && node.reported("drop", "shop/db->shop/dns:53/udp")
            && node.reported("drop", "shop/frontend->host:9999/tcp")
            && node.reported("drop", "shop/frontend->host:5353/udp")
            && node.reported("drop", "shop/frontend->shop/db:icmp")
    });
    let v6_drop =
        node.violations()
            .into_iter()
            .any(|v| v["edge"] == "shop/frontend->shop/db:icmp" && v["src"] == t.frontend.v6())
            || node.violations().into_iter().any(|v| {
                v["edge"] == "shop/frontend->shop/db:5432/tcp" && v["src"] == t.frontend.v6()
            });
    assert!(
        v6_drop,
        "IPv6 drops are reported with their IPv6 addresses: {:?}",
        node.violations()
    );
    let v = node.violations();
    let drop = v
        .iter()
        .find(|v| v["edge"] == "shop/frontend->shop/db:5432/tcp")
        .unwrap();
    assert!(
        drop["profileVersion"].as_u64().unwrap_or(0) >= 1,
        "the report names the version in force: {drop}"
    );
    assert!(
        drop["reportedBy"]
            .as_str()
            .is_some_and(|z| z.starts_with("shop/")),
        "{drop}"
    );

    assert!(
        held.finish(),
        "the connection opened before approval must survive approval and enforcement"
    );
}

#[test]
fn monitor_passes_and_reports() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.131.0.0/24");
    let t = tiers(&node, &list);
    node.zwctl(&["mode", "set", "shop/db", "monitor"]);
    assert!(
        connects(&t.frontend.netns, &t.db.target(5432, "tcp")),
        "monitor lets unapproved traffic pass"
    );
    wait::until(
        "the violation to be reported",
        Duration::from_secs(10),
        || node.reported("violation", "shop/frontend->shop/db:5432/tcp"),
    );
    assert!(
        edges(&node, &["--learned"]).contains(&"shop/frontend->shop/db:5432/tcp".to_owned()),
        "monitor also records"
    );
    node.zwctl(&[
        "profile",
        "approve",
        "shop/db",
        "--edge",
        "shop/frontend->shop/db:5432/tcp",
    ]);
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    assert!(
        connects(&t.frontend.netns, &t.db.target(5432, "tcp")),
        "approved at db's end: allowed at both"
    );
    assert!(
        !connects(&t.api.netns, &t.db.target(5432, "tcp")),
        "api -> db is not approved"
    );
    node.zwctl(&[
        "profile",
        "remove",
        "shop/db",
        "--edge",
        "shop/frontend->shop/db:5432/tcp",
    ]);
    assert!(
        !connects(&t.frontend.netns, &t.db.target(5432, "tcp")),
        "a removed approval no longer allows"
    );
}

#[test]
fn a_new_pod_is_enforced_from_its_first_packet() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.132.0.0/24");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    node.zwctl(&[
        "profile",
        "approve",
        "shop/db",
        "--edge",
        "shop/api->shop/db:5432/tcp",
    ]);
    // Their pods come later: the zones are made on purpose.
    node.zwctl(&["mode", "set", "shop/frontend", "enforce", "--create"]);
    node.zwctl(&["mode", "set", "shop/api", "enforce", "--create"]);
    // The very first packet of each new pod meets its zone's rules.
    let fe = add_pod(&node, &list, "frontend", "shop/frontend");
    assert!(
        !connects(&fe.netns, &db.target(5432, "tcp")),
        "a new frontend pod must not reach db"
    );
    let api = add_pod(&node, &list, "api", "shop/api");
    assert!(
        connects(&api.netns, &db.target(5432, "tcp")),
        "a new api pod reaches db at once"
    );
}

#[test]
fn spoofing_quarantine_and_host_probes() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.133.0.0/24");
    let t = tiers(&node, &list);

    // Spoofing: a second address on the pod's interface is not the pod's.
    t.frontend
        .netns
        .ip(&["addr", "add", "10.133.0.200/32", "dev", "eth0"]);
    let spoofed = t
        .frontend
        .netns
        .exec("ping", &["-c1", "-W1", "-I", "10.133.0.200", &t.api.ip])
        .output()
        .unwrap();
    assert!(
        !spoofed.status.success(),
        "a spoofed source must be dropped"
    );
    wait::until("the spoof to be reported", Duration::from_secs(10), || {
        node.violations().iter().any(|v| v["verdict"] == "spoof")
    });
    assert!(
        connects(&t.frontend.netns, &t.api.target(8080, "tcp")),
        "the pod's own address still works"
    );

    // Quarantine of a zone: everything but the host is dropped, open connections
    // included; lifting it restores.
    let held = Hold::start(&t.frontend.netns, &t.api.target(8080, "tcp"), 3);
    node.zwctl(&["quarantine", "--zone", "shop/api"]);
    assert!(
        !held.finish(),
        "a connection open before the quarantine must be cut"
    );
    assert!(
        !connects(&t.frontend.netns, &t.api.target(8080, "tcp")),
        "quarantined zone unreachable"
    );
    assert!(
        !connects(&t.api.netns, &t.db.target(5432, "tcp")),
        "quarantined zone cannot reach out"
    );
    assert!(
        connects(&node.netns, &t.api.target(8080, "tcp")),
        "the host still reaches a quarantined pod"
    );
    wait::until(
        "the quarantine drop to be reported",
        Duration::from_secs(10),
        || {
            node.violations()
                .iter()
                .any(|v| v["verdict"] == "quarantine")
        },
    );
    node.zwctl(&["unquarantine", "--zone", "shop/api"]);
    assert!(
        connects(&t.frontend.netns, &t.api.target(8080, "tcp")),
        "lifting the quarantine restores traffic"
    );

    // Quarantine of one endpoint, named by the 12 characters `get endpoints` prints;
    // it shows on the endpoint (table and JSON) and in describe zone.
    let short: String = t.db.at.container_id.chars().take(12).collect();
    node.zwctl(&["quarantine", "--endpoint", &short]);
    assert!(
        !connects(&t.api.netns, &t.db.target(5432, "tcp")),
        "quarantined endpoint unreachable"
    );
    let db = endpoint_of(&node, &t.db.at.container_id).expect("db is listed");
    assert_eq!(db["quarantined"], true, "{db}");
    assert_eq!(db["zoneQuarantined"], false, "{db}");
    let table = node.zwctl_output(&["get", "endpoints", "--zone", "shop/db"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("QUARANTINED") && table.contains(&short) && table.contains("endpoint"),
        "{table}"
    );
    let described = node.zwctl(&["describe", "zone", "shop/db"]);
    assert_eq!(described["members"][0]["quarantined"], true, "{described}");
    // A prefix that several endpoints share, or none has, is refused.
    let refused = node.zwctl_output(&["unquarantine", "--endpoint", ""]);
    assert!(!refused.status.success());
    let refused = node.zwctl_output(&["unquarantine", "--endpoint", "zz-no-such-id"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("zwctl get endpoints lists them"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    node.zwctl(&["unquarantine", "--endpoint", &short]);
    assert!(
        connects(&t.api.netns, &t.db.target(5432, "tcp")),
        "endpoint quarantine lifted"
    );
    let db = endpoint_of(&node, &t.db.at.container_id).expect("db is listed");
    assert_eq!(db["quarantined"], false, "{db}");

    // Host probes reach enforcing pods by default.
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    assert!(
        connects(&node.netns, &t.db.target(5432, "tcp")),
        "kubelet-style probes pass by default"
    );
}

#[test]
fn host_probes_can_be_turned_off() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--no-host-probes"]);
    let list = Conflist::routed(&node, NET, "10.134.0.0/24");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    assert!(
        !connects(&node.netns, &db.target(5432, "tcp")),
        "without the probe exemption the host needs an approval"
    );
    wait::until(
        "the host's drop to be reported",
        Duration::from_secs(10),
        || node.reported("drop", "host->shop/db:5432/tcp"),
    );
    node.zwctl(&[
        "profile",
        "approve",
        "shop/db",
        "--edge",
        "host->shop/db:5432/tcp",
    ]);
    assert!(
        connects(&node.netns, &db.target(5432, "tcp")),
        "an approved host edge passes"
    );
}
