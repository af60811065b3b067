//! Root test: the real enforcer serves `/metrics` inside the node namespace; the
//! counters follow real traffic, and `promtool check metrics` (Debian's `prometheus`)
//! accepts the live output.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::web::{self, metric};
use zonewarden_tests::{require_root, wait};

const LISTEN: &str = "127.0.0.1:19917";

fn http(node: &Node, method: &str, path: &str) -> (u16, String) {
    web::http(node, LISTEN, method, path)
}

fn scrape(node: &Node) -> String {
    web::scrape(node, LISTEN)
}

#[test]
fn metrics_follow_traffic_and_pass_promtool() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--web-listen", LISTEN]);
    wait::until("/metrics to answer", Duration::from_secs(10), || {
        http(&node, "GET", "/metrics").0 == 200
    });
    let list = Conflist::routed(&node, "zw-metrics", "10.133.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:6000"]);

    assert!(
        connects(&web.netns, &db.target(5432, "tcp")),
        "web -> db while learning"
    );
    wait::until("the edge to be learned", Duration::from_secs(10), || {
        metric(&scrape(&node), "zonewarden_edges_learned").is_some_and(|v| v >= 1.0)
    });
    node.zwctl(&["profile", "approve", "shop/db", "--all"]);
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    assert!(
        !connects(&web.netns, &db.target(6000, "tcp")),
        "an unapproved port must be dropped"
    );
    wait::until("the drop to be counted", Duration::from_secs(10), || {
        metric(
            &scrape(&node),
            "zonewarden_connections_total{zone=\"shop/db\",verdict=\"drop\"}",
        )
        .is_some_and(|v| v >= 1.0)
    });

    let metrics = scrape(&node);
    for (series, want) in [
        ("zonewarden_endpoints", 2.0),
        ("zonewarden_zones{mode=\"enforce\"}", 1.0),
        ("zonewarden_zones{mode=\"learn\"}", 1.0),
        ("zonewarden_edges_approved", 1.0),
        ("zonewarden_store_errors_total", 0.0),
        ("zonewarden_nflog_dropped_total{cause=\"kernel\"}", 0.0),
        ("zonewarden_nflog_dropped_total{cause=\"queue\"}", 0.0),
        ("zonewarden_nflog_dropped_total{cause=\"unreadable\"}", 0.0),
    ] {
        assert_eq!(
            metric(&metrics, series),
            Some(want),
            "{series} in\n{metrics}"
        );
    }
    assert!(
        metric(
            &metrics,
            "zonewarden_connections_total{zone=\"shop/web\",verdict=\"learn\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "the learned connection is counted for the zone that logged it:\n{metrics}"
    );
    assert!(
        metric(&metrics, "zonewarden_rule_sync_seconds_count").is_some_and(|v| v >= 4.0),
        "two ADDs, an approval and a mode change each synced the rules:\n{metrics}"
    );
    assert!(
        metrics.contains("# HELP zonewarden_connections_total New connections the table logged")
            && metrics.contains("once per seen-window"),
        "the HELP says what is counted:\n{metrics}"
    );

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics rejected the live output:\n{}{}\n---\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for (method, path) in [("POST", "/metrics"), ("DELETE", "/api/map"), ("PUT", "/")] {
        let (status, _) = http(&node, method, path);
        assert_eq!(status, 405, "{method} {path} must be refused");
    }
}
