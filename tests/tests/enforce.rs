//! Learn, approve, enforce with real traffic between namespaces, as root.

use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
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

/// The traffic of the three tiers, plus the node probing every pod.
fn normal_traffic(node: &Node, t: &Tiers) {
    let timeout = Duration::from_secs(2);
    assert_eq!(
        probe(&t.frontend.netns, &[t.api.target(8080, "tcp")], timeout),
        [true],
        "frontend -> api"
    );
    assert_eq!(
        probe(
            &t.api.netns,
            &[t.db.target(5432, "tcp"), t.dns.target(53, "udp")],
            timeout
        ),
        [true, true],
        "api -> db, dns"
    );
    let probes: Vec<String> = [&t.frontend, &t.api, &t.db]
        .iter()
        .map(|p| {
            p.target(
                if p.zone == "shop/frontend" {
                    80
                } else if p.zone == "shop/api" {
                    8080
                } else {
                    5432
                },
                "tcp",
            )
        })
        .collect();
    assert_eq!(
        probe(&node.netns, &probes, timeout),
        [true, true, true],
        "host probes"
    );
}

#[test]
fn learn_approve_enforce_three_tiers() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.130.0.0/24");
    let t = tiers(&node, &list);

    // Learn.
    normal_traffic(&node, &t);
    let want = [
        "shop/api->shop/db:5432/tcp",
        "shop/api->shop/dns:53/udp",
        "shop/frontend->shop/api:8080/tcp",
    ];
    wait::until(
        "the three edges to be learned",
        Duration::from_secs(10),
        || {
            let learned = edges(&node, &["--learned"]);
            want.iter().all(|w| learned.iter().any(|l| l == w))
        },
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
            .contains(&format!("{}:8080", t.api.ip)),
        "sample 5-tuple: {fe_api}"
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

    // Approved traffic keeps working.
    normal_traffic(&node, &t);
    // Everything else is dropped and reported.
    assert!(
        !connects(&t.frontend.netns, &t.db.target(5432, "tcp")),
        "frontend -> db must be dropped"
    );
    assert!(
        !connects(&t.api.netns, &t.frontend.target(80, "tcp")),
        "api -> frontend must be dropped"
    );
    assert!(
        !connects(&t.db.netns, &t.api.target(8080, "tcp")),
        "db -> api must be dropped"
    );
    assert!(
        !connects(&t.frontend.netns, &t.api.target(9090, "tcp")),
        "an unapproved port of an approved pair must be dropped"
    );
    assert!(
        !connects(&t.db.netns, &t.dns.target(53, "udp")),
        "db -> dns (udp) must be dropped"
    );
    wait::until("the drops to be reported", Duration::from_secs(10), || {
        node.reported("drop", "shop/frontend->shop/db:5432/tcp")
            && node.reported("drop", "shop/api->shop/frontend:80/tcp")
            && node.reported("drop", "shop/frontend->shop/api:9090/tcp")
            && node.reported("drop", "shop/db->shop/dns:53/udp")
    });
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
    node.zwctl(&["mode", "set", "shop/frontend", "enforce"]);
    node.zwctl(&["mode", "set", "shop/api", "enforce"]);
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

    // Quarantine of one endpoint.
    node.zwctl(&["quarantine", "--endpoint", &t.db.at.container_id]);
    assert!(
        !connects(&t.api.netns, &t.db.target(5432, "tcp")),
        "quarantined endpoint unreachable"
    );
    node.zwctl(&["unquarantine", "--endpoint", &t.db.at.container_id]);
    assert!(
        connects(&t.api.netns, &t.db.target(5432, "tcp")),
        "endpoint quarantine lifted"
    );

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
