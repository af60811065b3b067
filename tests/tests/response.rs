//! Root test: automatic response. A zone's rules quarantine one of its pods by
//! themselves, with real packets and the real enforcer: after N violations within T
//! (its open connection cut), and on the first drop to a port the zone never used.

use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::attach::endpoint_of;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{Pod, add_pod};
use zonewarden_tests::traffic::{Hold, Server, connects, send_udp_spoofed};
use zonewarden_tests::web::{self, metric};
use zonewarden_tests::{require_root, wait};

const LISTEN: &str = "127.0.0.1:19931";

fn node_with_web() -> Node {
    let mut node = Node::new();
    node.start_enforcer_with(&["--web-listen", LISTEN]);
    node
}

/// The reports of `pod` as the source to `port`, newest first.
fn reports_to(node: &Node, pod: &Pod, port: u16) -> Vec<Value> {
    node.violations()
        .into_iter()
        .filter(|v| {
            v["src"].as_str() == Some(&pod.ip)
                && v["edge"]
                    .as_str()
                    .is_some_and(|e| e.ends_with(&format!(":{port}/tcp")))
        })
        .collect()
}

/// Tries `port` of `dst` from `pod` (refused or not: the first packet is what the
/// table reports) until the report of it is listed; returns it. A repeat within the
/// enforcer's seen-window (60 s) is not reported again, so retrying counts nothing twice.
fn report_of(node: &Node, pod: &Pod, dst: &Pod, port: u16, verdict: &str) -> Value {
    let mut found = None;
    wait::until(
        &format!("the {verdict} of {} to port {port}", pod.zone),
        Duration::from_secs(10),
        || {
            found = reports_to(node, pod, port)
                .into_iter()
                .find(|v| v["verdict"] == verdict);
            if found.is_none() {
                connects(&pod.netns, &dst.target(port, "tcp"));
            }
            found.is_some()
        },
    );
    found.unwrap()
}

fn quarantined(node: &Node, pod: &Pod) -> bool {
    endpoint_of(node, &pod.at.container_id).expect("listed")["quarantined"] == true
}

/// The audit entries that quarantined or released `pod`.
fn quarantine_entries(node: &Node, pod: &Pod) -> Vec<Value> {
    node.items(&["audit", "log"])
        .into_iter()
        .filter(|e| {
            e["target"] == pod.at.container_id.as_str()
                && (e["action"] == "quarantine" || e["action"] == "unquarantine")
        })
        .collect()
}

#[test]
fn n_violations_within_t_quarantine_the_pod_once_and_cut_its_connection() {
    require_root!();
    let node = node_with_web();
    let list = Conflist::routed(&node, "zw-response", "10.194.0.0/24");
    let bad = add_pod(&node, &list, "bad", "shop/api");
    let calm = add_pod(&node, &list, "calm", "shop/api");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    node.zwctl(&[
        "profile",
        "approve",
        "shop/api",
        "--edge",
        "shop/api->shop/db:5432/tcp",
    ]);
    node.zwctl(&["mode", "set", "shop/api", "monitor"]);
    let set = node.zwctl(&[
        "response",
        "set",
        "shop/api",
        "--violations",
        "3",
        "--within",
        "10m",
        "--comment",
        "INC-7",
    ]);
    assert_eq!(set["changed"], 1, "{set}");
    assert_eq!(
        set["profile"]["response"]["violations"],
        serde_json::json!({"count": 3, "withinSeconds": 600}),
        "{set}"
    );
    let shown = node.zwctl(&["response", "show", "shop/api"]);
    assert_eq!(shown["response"]["violations"]["count"], 3, "{shown}");
    let described = node.zwctl(&["describe", "zone", "shop/api"]);
    assert_eq!(
        described["profile"]["response"]["violations"]["withinSeconds"], 600,
        "{described}"
    );
    let set_entry = node
        .items(&["audit", "log"])
        .into_iter()
        .find(|e| e["action"] == "response")
        .expect("setting the rules is audited");
    assert_eq!(set_entry["reason"], "INC-7", "{set_entry}");
    assert_eq!(
        set_entry["target"], "3 violations within 600s",
        "{set_entry}"
    );

    // Below the threshold: two violations leave the calm pod alone.
    for port in [6001, 6002] {
        let report = report_of(&node, &calm, &db, port, "violation");
        assert!(report.get("response").is_none(), "{report}");
    }
    assert!(!quarantined(&node, &calm), "two violations are below three");

    // A long-lived connection over the approved edge, opened before.
    let held = Hold::start(&bad.netns, &db.target(5432, "tcp"), 20);
    for port in [7001, 7002] {
        let report = report_of(&node, &bad, &db, port, "violation");
        assert!(report.get("response").is_none(), "{report}");
    }
    let third = report_of(&node, &bad, &db, 7003, "violation");
    assert_eq!(third["response"], "response:shop/api:violations", "{third}");
    wait::until(
        "the bad pod to be quarantined",
        Duration::from_secs(10),
        || quarantined(&node, &bad),
    );
    assert!(!held.finish(), "its open connection must be cut");
    assert!(
        !connects(&bad.netns, &db.target(5432, "tcp")),
        "a quarantined pod reaches nothing but the host"
    );
    assert!(
        connects(&calm.netns, &db.target(5432, "tcp")),
        "the other pod of the zone is not touched"
    );
    assert!(!quarantined(&node, &calm));

    // The endpoint listing says why; the table names the rule.
    let listed = endpoint_of(&node, &bad.at.container_id).unwrap();
    let reason = listed["quarantineReason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("response:shop/api:violations: 3 reports"),
        "{listed}"
    );
    let table = node.zwctl_output(&["get", "endpoints", "--zone", "shop/api"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("endpoint (violations)"), "{table}");
    let violations = node.zwctl_output(&["get", "violations", "--zone", "shop/api", "-o", "wide"]);
    let violations = String::from_utf8_lossy(&violations.stdout);
    // The violation that fired the rule (a retransmission of that connection may
    // follow as a quarantine report of the same edge).
    let marked = violations
        .lines()
        .find(|l| {
            l.split_whitespace().nth(1) == Some("violation")
                && l.contains("shop/api->shop/db:7003/tcp")
        })
        .unwrap_or_default();
    assert!(
        violations.contains("RESPONSE") && marked.trim_end().ends_with("violations"),
        "{violations}"
    );

    // The audit log names the rule as the author, with the counts.
    let entries = quarantine_entries(&node, &bad);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["action"], "quarantine");
    assert_eq!(entries[0]["who"], "response:shop/api:violations");
    assert_eq!(entries[0]["zone"], "shop/api");
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3 reports (drops or violations) within 600s"),
        "{:?}",
        entries[0]
    );
    let (status, map) = web::http(&node, LISTEN, "GET", "/api/map");
    assert_eq!(status, 200, "{map}");
    let map: Value = serde_json::from_str(&map).unwrap();
    let api = map["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "shop/api")
        .unwrap();
    assert_eq!(api["quarantinedMembers"], 1, "{api}");
    assert!(
        api["quarantineReasons"]["bad"]
            .as_str()
            .is_some_and(|r| r.starts_with("response:shop/api:violations")),
        "{api}"
    );
    assert!(
        map["reports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["response"] == "response:shop/api:violations"),
        "the report that fired it is marked on the map"
    );
    let metrics = web::scrape(&node, LISTEN);
    assert_eq!(
        metric(
            &metrics,
            "zonewarden_response_quarantines_total{zone=\"shop/api\",rule=\"violations\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // Fired once: what the quarantined pod tries now is a quarantine drop, never counted.
    for port in [7004, 7005, 7006] {
        report_of(&node, &bad, &db, port, "quarantine");
    }
    assert_eq!(quarantine_entries(&node, &bad).len(), 1);

    // Lifting is the operator's audited action; the count starts from zero after it.
    node.zwctl(&["unquarantine", "--endpoint", &bad.at.container_id]);
    assert!(
        connects(&bad.netns, &db.target(5432, "tcp")),
        "lifted: the approved edge works again"
    );
    let listed = endpoint_of(&node, &bad.at.container_id).unwrap();
    assert!(listed.get("quarantineReason").is_none(), "{listed}");
    let entries = quarantine_entries(&node, &bad);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[1]["action"], "unquarantine");
    assert_eq!(entries[1]["who"], "root");
    for port in [7007, 7008] {
        let report = report_of(&node, &bad, &db, port, "violation");
        assert!(report.get("response").is_none(), "{report}");
    }
    assert!(!quarantined(&node, &bad), "two violations after the lift");
    let third = report_of(&node, &bad, &db, 7009, "violation");
    assert_eq!(third["response"], "response:shop/api:violations", "{third}");
    wait::until(
        "the bad pod to be quarantined again",
        Duration::from_secs(10),
        || quarantined(&node, &bad),
    );

    // Cleared rules are audited and fire no more.
    node.zwctl(&["unquarantine", "--endpoint", &bad.at.container_id]);
    let cleared = node.zwctl(&["response", "clear", "shop/api"]);
    assert!(cleared["profile"].get("response").is_none(), "{cleared}");
    for port in [7010, 7011, 7012] {
        let report = report_of(&node, &bad, &db, port, "violation");
        assert!(report.get("response").is_none(), "{report}");
    }
    assert!(!quarantined(&node, &bad));
}

#[test]
fn the_new_port_rule_fires_on_a_never_seen_port_and_not_on_a_learned_one() {
    require_root!();
    let node = node_with_web();
    let list = Conflist::routed(&node, "zw-response", "10.195.0.0/24");
    let front = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:8080"]);

    // Learned while shop/web learns: 8080/tcp. Approved: 5432/tcp.
    assert!(connects(&front.netns, &db.target(8080, "tcp")));
    wait::until("8080/tcp to be learned", Duration::from_secs(10), || {
        node.items(&["get", "edges", "--learned"])
            .iter()
            .any(|e| e["edge"] == "shop/web->shop/db:8080/tcp")
    });
    node.zwctl(&[
        "profile",
        "approve",
        "shop/web",
        "--edge",
        "shop/web->shop/db:5432/tcp",
    ]);
    node.zwctl(&["mode", "set", "shop/web", "enforce"]);
    node.zwctl(&["response", "set", "shop/web", "--new-port"]);

    // A drop to a port the zone has used is no reason.
    let known = report_of(&node, &front, &db, 8080, "drop");
    assert!(known.get("response").is_none(), "{known}");
    assert!(!quarantined(&node, &front), "8080/tcp was learned");
    assert!(connects(&front.netns, &db.target(5432, "tcp")));

    // The first drop to a port never seen quarantines the pod.
    let new = report_of(&node, &front, &db, 2222, "drop");
    assert_eq!(new["response"], "response:shop/web:new-port", "{new}");
    wait::until(
        "the web pod to be quarantined",
        Duration::from_secs(10),
        || quarantined(&node, &front),
    );
    assert!(
        !connects(&front.netns, &db.target(5432, "tcp")),
        "quarantined: even the approved edge is cut"
    );
    let entries = quarantine_entries(&node, &front);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["who"], "response:shop/web:new-port");
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("shop/web->shop/db:2222/tcp"),
        "{:?}",
        entries[0]
    );
    let metrics = web::scrape(&node, LISTEN);
    assert_eq!(
        metric(
            &metrics,
            "zonewarden_response_quarantines_total{zone=\"shop/web\",rule=\"new-port\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // The rule travels with the profile: exported, cleared, imported back.
    let exported = node.zwctl_output(&["profile", "export", "shop/web"]);
    assert!(exported.status.success());
    let text = String::from_utf8_lossy(&exported.stdout).into_owned();
    assert!(text.contains("response:\n  newPort: true\n"), "{text}");
    let file = node.dir.path().join("shop-web.yaml");
    std::fs::write(&file, &text).unwrap();
    node.zwctl(&["response", "clear", "shop/web"]);
    let shown = node.zwctl(&["response", "show", "shop/web"]);
    assert_eq!(shown["response"]["newPort"], false, "{shown}");
    let imported = node.zwctl(&["profile", "import", "-f", file.to_str().unwrap()]);
    assert_eq!(imported["zones"][0]["responseBefore"], "none", "{imported}");
    assert_eq!(
        imported["zones"][0]["responseAfter"], "new port",
        "{imported}"
    );
    let shown = node.zwctl(&["response", "show", "shop/web"]);
    assert_eq!(shown["response"]["newPort"], true, "{shown}");
    let again = node.zwctl_output(&["profile", "export", "shop/web"]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        text,
        "byte for byte"
    );

    // A bad rule in a file is refused with its line, and nothing changes.
    std::fs::write(
        &file,
        text.replace(
            "  newPort: true\n",
            "  violations:\n    count: 0\n    withinSeconds: 60\n",
        ),
    )
    .unwrap();
    let refused = node.zwctl_output(&["profile", "import", "-f", file.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("response.violations.count: violations must be at least 1"),
        "{stderr}"
    );
    let shown = node.zwctl(&["response", "show", "shop/web"]);
    assert_eq!(shown["response"]["newPort"], true, "{shown}");
}

/// The attack on a response rule: a pod of another zone sends, over both families,
/// datagrams to ports nobody uses with a neighbour's address as their source, so that
/// the neighbour's zone counts violations and quarantines the innocent neighbour. The
/// anti-spoofing rule drops them first and reports them as spoofs; they count for
/// nobody. The rule itself is live: the neighbour's own drops quarantine it.
#[test]
fn spoofed_drops_never_quarantine_the_pod_whose_address_they_forge() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, "zw-response", &["10.196.0.0/24", "fd00:196::/64"]);
    let victim = add_pod(&node, &list, "victim", "shop/web");
    let mallory = add_pod(&node, &list, "mallory", "other/tenant");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    node.zwctl(&[
        "profile",
        "approve",
        "shop/web",
        "--edge",
        "shop/web->shop/db:5432/tcp",
    ]);
    node.zwctl(&["mode", "set", "shop/web", "enforce"]);
    node.zwctl(&[
        "response",
        "set",
        "shop/web",
        "--violations",
        "2",
        "--within",
        "10m",
        "--new-port",
    ]);
    let (victim6, db6) = (victim.ip6.clone().unwrap(), db.ip6.clone().unwrap());
    for port in 7001..7006 {
        send_udp_spoofed(&mallory.netns, &victim.ip, &db.ip, port);
        send_udp_spoofed(&mallory.netns, &victim6, &db6, port);
    }
    wait::until(
        "both families' spoofs to be reported",
        Duration::from_secs(10),
        || {
            let spoofs: Vec<Value> = node
                .violations()
                .into_iter()
                .filter(|v| v["verdict"] == "spoof")
                .collect();
            [&victim.ip, &victim6]
                .iter()
                .all(|ip| spoofs.iter().any(|v| v["src"] == ip.as_str()))
        },
    );
    // The spoofs were reported moments ago; give the responder the same moments it
    // takes for a real drop (below) before looking.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !quarantined(&node, &victim),
        "a forged source quarantined its owner"
    );
    assert!(quarantine_entries(&node, &victim).is_empty());
    let in_its_name: Vec<Value> = node
        .violations()
        .into_iter()
        .filter(|v| {
            v["verdict"] != "spoof"
                && [&victim.ip, &victim6]
                    .iter()
                    .any(|ip| v["src"] == ip.as_str())
        })
        .collect();
    assert!(
        in_its_name.is_empty(),
        "a forged packet was reported as the victim's drop: {in_its_name:?}"
    );
    assert!(connects(&victim.netns, &db.target(5432, "tcp")));

    // The victim's own drop to a port never used quarantines it: the rule was live.
    let own = report_of(&node, &victim, &db, 2222, "drop");
    assert_eq!(own["response"], "response:shop/web:new-port", "{own}");
    wait::until(
        "the victim's own drop to quarantine it",
        Duration::from_secs(10),
        || quarantined(&node, &victim),
    );
}
