//! `zwctl flows watch` as root against the real enforcer and real traffic: the table
//! output starts with its header at once, then one row per flow with the verdict, the
//! source and destination (zone, address, port) and the protocol; `-o json` prints one
//! camelCase object per line; `--namespace`, `--zone` and `--verdict` keep only the
//! flows they name; an approved connection in an enforcing zone, which no log rule
//! reports, shows as `allow` (from connection tracking) and its dropped neighbour as
//! `drop`; a namespace that cannot be one is refused before anything is sent.

use std::time::{Duration, Instant};

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::flows::Watch;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::require_root;
use zonewarden_tests::traffic::{Server, connects};

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"))
}

#[test]
fn flows_watch_has_a_header_ports_verdicts_filters_and_json_lines() {
    require_root!();
    let mut node = Node::new();
    // Each edge is logged at most once per second: repeated traffic shows again.
    node.start_enforcer_with(&["--seen-timeout-secs", "1"]);
    let list = Conflist::routed(&node, "zw-flows", "10.185.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let monitor = add_pod(&node, &list, "monitor", "ops/monitor");
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    let target = db.target(5432, "tcp");

    let table = Watch::start(&node, &["flows", "watch"]);
    let ops = Watch::start(
        &node,
        &["-o", "json", "flows", "watch", "--namespace", "ops"],
    );
    let drops = Watch::start(
        &node,
        &[
            "-o",
            "json",
            "flows",
            "watch",
            "--zone",
            "shop/db",
            "--verdict",
            "drop",
        ],
    );
    // The header comes first, before any flow.
    let mut before = Vec::new();
    let header = table
        .first(Duration::from_secs(10), &mut before, |_| true)
        .expect("the header is printed at once");
    assert!(
        header.starts_with("TIME")
            && header.contains("VERDICT")
            && header.contains("SOURCE")
            && header.contains("DESTINATION")
            && header.contains("PROTO")
            && header.contains("REPORTED-BY"),
        "{header}"
    );

    // Learn mode: web -> db and monitor -> db pass and are shown as learn.
    let mut skipped = Vec::new();
    let row = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                Instant::now() < deadline,
                "no learn row for web -> db: {skipped:?}"
            );
            assert!(connects(&web.netns, &target));
            assert!(connects(&monitor.netns, &target));
            if let Some(row) = table.first(Duration::from_millis(500), &mut skipped, |l| {
                l.contains("LEARN") && l.contains(&format!("shop/web {}:", web.ip))
            }) {
                break row;
            }
        }
    };
    assert!(
        row.contains(&format!("shop/db {}:5432", db.ip)) && row.contains(" tcp "),
        "source and destination with ports, protocol: {row}"
    );

    // --namespace ops: only monitor's flows, as camelCase JSON lines.
    let mut others = Vec::new();
    let line = ops
        .first(Duration::from_secs(10), &mut others, |_| true)
        .expect("the namespace watcher sees monitor -> db");
    let flow = json(&line);
    assert_eq!(flow["srcZone"], "ops/monitor", "{flow}");
    assert_eq!(flow["dstZone"], "shop/db", "{flow}");
    assert_eq!(flow["dstPort"], 5432, "{flow}");
    assert_eq!(flow["protocol"], "tcp", "{flow}");
    assert_eq!(flow["verdict"], "learn", "{flow}");
    assert!(flow["srcPort"].as_u64().unwrap() > 0, "{flow}");
    // Nothing of shop's own traffic reached it.
    assert!(connects(&web.netns, &target));
    let mut rest = Vec::new();
    ops.first(Duration::from_secs(2), &mut rest, |_| false);
    for line in &rest {
        let flow = json(line);
        assert!(
            flow["srcZone"] == "ops/monitor"
                || flow["dstZone"].as_str().unwrap().starts_with("ops/"),
            "a flow of another namespace: {flow}"
        );
    }

    // --zone shop/db --verdict drop: nothing until shop/db enforces, then the drop.
    let mut early = Vec::new();
    assert!(
        drops
            .first(Duration::from_millis(200), &mut early, |_| true)
            .is_none(),
        "no drop in learn mode: {early:?}"
    );
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    assert!(!connects(&web.netns, &target), "unapproved edge dropped");
    let mut none = Vec::new();
    let line = drops
        .first(Duration::from_secs(10), &mut none, |_| true)
        .expect("the drop watcher sees the drop");
    let flow = json(&line);
    assert_eq!(flow["verdict"], "drop", "{flow}");
    assert_eq!(flow["edge"], "shop/web->shop/db:5432/tcp", "{flow}");
    assert_eq!(flow["reportedBy"], "shop/db", "{flow}");
    assert_eq!(flow["dst"], db.ip.as_str(), "{flow}");

    // Approved in the enforcing zone: web -> db passes, reported by no rule, and is
    // shown as allow, naming the zone whose approval let it pass.
    node.zwctl(&[
        "profile",
        "approve",
        "shop/db",
        "--edge",
        "shop/web->shop/db:5432/tcp",
    ]);
    let allowed = Watch::start(
        &node,
        &["-o", "json", "flows", "watch", "--verdict", "allow"],
    );
    let mut other = Vec::new();
    let line = {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                Instant::now() < deadline,
                "no allow flow for the approved edge: {other:?}"
            );
            assert!(connects(&web.netns, &target), "approved edge passes");
            if let Some(line) = allowed.first(Duration::from_millis(500), &mut other, |l| {
                l.contains(&format!("\"src\":\"{}\"", web.ip))
            }) {
                break line;
            }
        }
    };
    let flow = json(&line);
    assert_eq!(flow["verdict"], "allow", "{flow}");
    assert_eq!(flow["edge"], "shop/web->shop/db:5432/tcp", "{flow}");
    assert_eq!(flow["dst"], db.ip.as_str(), "{flow}");
    assert_eq!(flow["dstPort"], 5432, "{flow}");
    assert_eq!(flow["reportedBy"], "shop/db", "{flow}");
    assert!(flow["srcPort"].as_u64().unwrap() > 0, "{flow}");
    // Every flow this watcher got is an allow; monitor -> db stays a drop.
    assert!(
        !connects(&monitor.netns, &target),
        "unapproved edge dropped"
    );
    let mut rest = Vec::new();
    allowed.first(Duration::from_secs(2), &mut rest, |_| false);
    for line in other.iter().chain(&rest) {
        let flow = json(line);
        assert_eq!(flow["verdict"], "allow", "{flow}");
        assert_ne!(
            flow["srcZone"], "ops/monitor",
            "a dropped connection shown as allow: {flow}"
        );
    }

    // A namespace that cannot be one: a usage error, nothing sent.
    let out = node.zwctl_output(&["flows", "watch", "--namespace", "shop/web"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("before '/'"), "{stderr}");
}
