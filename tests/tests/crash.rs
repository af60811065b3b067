//! `kill -9` of the enforcer during traffic, as root: the kernel keeps enforcing the
//! last approved state, established connections keep working, and after the restart
//! the table and the store are exactly what they were.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use std::time::Duration;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;

use zonewarden_tests::traffic::{Hold, Server, connects};
use zonewarden_tests::{require_root, wait};

/// The table without the dynamic "seen" sets (their elements expire on their own)
/// and the enforcer's seal (`ruleset_digest`: it names the nftables generation of
/// its last write, so it is rewritten after every change, its own included).
fn table(node: &Node) -> Vec<Value> {
    let out = node
        .netns
        .exec("nft", &["-j", "list", "table", "inet", "zonewarden"])
        .output()
        .expect("nft");
    let v: Value = serde_json::from_slice(&out.stdout).expect("nft JSON");
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| {
            !o["set"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("seen_") || n == "ruleset_digest")
        })
        .filter(|o| o.get("metainfo").is_none())
        .cloned()
        .collect()
}

/// Every file of the store but the learned edges and reports (learning goes on).
fn store_files(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("learned.json" | "reports.json")
            ) {
                files.insert(
                    path.display().to_string(),
                    std::fs::read_to_string(&path).unwrap_or_default(),
                );
            }
        }
    }
    files
}

#[test]
fn kill_9_during_traffic_changes_nothing() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = Conflist::routed(&node, "zw-crash", "10.135.0.0/24");
    let fe = add_pod(&node, &list, "frontend", "shop/frontend");
    let api = add_pod(&node, &list, "api", "shop/api");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _s = [
        Server::start(&api.netns, &["tcp:8080"]),
        Server::start(&db.netns, &["tcp:5432"]),
    ];
    // Learn first: the edge is recorded and reaches the disk.
    assert!(connects(&fe.netns, &api.target(8080, "tcp")));
    let learned_file = node.state_dir().join("learned.json");
    wait::until(
        "the learned edge to be on disk",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&learned_file)
                .is_ok_and(|t| t.contains("shop/frontend->shop/api:8080/tcp"))
        },
    );
    node.zwctl(&[
        "profile",
        "approve",
        "shop/frontend",
        "--edge",
        "shop/frontend->shop/api:8080/tcp",
    ]);
    for zone in ["shop/frontend", "shop/api", "shop/db"] {
        node.zwctl(&["mode", "set", zone, "enforce"]);
    }
    assert!(connects(&fe.netns, &api.target(8080, "tcp")));
    assert!(!connects(&fe.netns, &db.target(5432, "tcp")));
    let (table_before, store_before) = (table(&node), store_files(&node.state_dir()));

    let held = Hold::start(&fe.netns, &api.target(8080, "tcp"), 4);
    node.stop_enforcer(true);
    for _ in 0..5 {
        assert!(
            !connects(&fe.netns, &db.target(5432, "tcp")),
            "no disallowed connection passes while the enforcer is down"
        );
        assert!(
            connects(&fe.netns, &api.target(8080, "tcp")),
            "approved new connections pass while it is down"
        );
    }
    assert!(
        held.finish(),
        "an established connection keeps working through the crash"
    );

    node.start_enforcer();
    assert_eq!(
        node.zwctl(&["status"])["ready"],
        true,
        "the restarted enforcer is ready"
    );
    assert_eq!(
        table(&node),
        table_before,
        "the restart must leave the table exactly as it was"
    );
    assert_eq!(
        store_files(&node.state_dir()),
        store_before,
        "the restart must leave the store exactly as it was"
    );
    assert!(!connects(&fe.netns, &db.target(5432, "tcp")));
    assert!(connects(&fe.netns, &api.target(8080, "tcp")));
    let learned = node.zwctl(&["get", "edges", "--learned"]).to_string();
    assert!(
        learned.contains("shop/frontend->shop/api:8080/tcp"),
        "learned edges survive the crash: {learned}"
    );
}
