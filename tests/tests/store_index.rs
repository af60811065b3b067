//! The store's index, as root: a profile file deleted while the enforcer was down, or
//! an emptied audit log, stops the next start with an error that names it (the kernel
//! keeps enforcing meanwhile); `--accept-store-as-is` takes the state as it is and
//! records that decision in the audit log.

use std::path::PathBuf;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{Pod, add_pod};
use zonewarden_tests::require_root;
use zonewarden_tests::traffic::{Server, connects};

/// A node where `t/b` enforces `t/a->t/b:7001/tcp`, its network and its two pods.
fn enforcing_node() -> (Node, Conflist, Pod, Pod, Server) {
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, "zw-index", "10.171.0.0/24");
    let a = add_pod(&node, &list, "ia", "t/a");
    let b = add_pod(&node, &list, "ib", "t/b");
    let server = Server::start(&b.netns, &["tcp:7001", "tcp:7002"]);
    node.zwctl(&["profile", "approve", "t/b", "--edge", "t/a->t/b:7001/tcp"]);
    node.zwctl(&["mode", "set", "t/b", "enforce"]);
    assert!(connects(&a.netns, &b.target(7001, "tcp")));
    assert!(!connects(&a.netns, &b.target(7002, "tcp")));
    (node, list, a, b, server)
}

/// The stored profile of `zone`.
fn profile_file(node: &Node, zone: &str) -> PathBuf {
    let dir = node.state_dir().join("profiles");
    std::fs::read_dir(&dir)
        .expect("list the profiles")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            std::fs::read_to_string(p)
                .is_ok_and(|text| text.contains(&format!("\"zone\": \"{zone}\"")))
        })
        .unwrap_or_else(|| panic!("no stored profile of {zone} in {}", dir.display()))
}

#[test]
fn a_deleted_profile_stops_the_start_until_accepted() {
    require_root!();
    let (mut node, _list, a, b, _server) = enforcing_node();
    let file = profile_file(&node, "t/b");
    node.stop_enforcer(true);
    std::fs::remove_file(&file).unwrap();

    let (code, said) = node.enforcer_refuses(&[]);
    assert_ne!(code, Some(0), "{said}");
    assert!(
        said.contains(file.to_str().unwrap()) && said.contains("--accept-store-as-is"),
        "the error names the file and what to do: {said}"
    );
    // Meanwhile the kernel keeps enforcing what it was told.
    assert!(connects(&a.netns, &b.target(7001, "tcp")));
    assert!(!connects(&a.netns, &b.target(7002, "tcp")));

    node.start_enforcer_with(&["--accept-store-as-is"]);
    let log = node.items(&["audit", "log"]);
    let accepted = log
        .iter()
        .find(|e| e["action"] == "store-accepted")
        .unwrap_or_else(|| panic!("no store-accepted entry in {log:?}"));
    let detail = accepted["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("profiles/"),
        "names what was missing: {detail}"
    );
    assert_eq!(node.zwctl(&["status"])["ready"], true);
    // Accepted once: the next plain start needs no flag.
    node.stop_enforcer(false);
    node.start_enforcer_with(&[]);
    let verify = node.zwctl(&["audit", "verify"]);
    assert_eq!(verify["intact"], true, "{verify}");
}

#[test]
fn an_emptied_audit_log_stops_the_start() {
    require_root!();
    let (mut node, _list, _a, _b, _server) = enforcing_node();
    node.stop_enforcer(false);
    let audit = node.state_dir().join("audit.log");
    std::fs::write(&audit, "").unwrap();

    let (code, said) = node.enforcer_refuses(&[]);
    assert_ne!(code, Some(0), "{said}");
    assert!(
        said.contains(audit.to_str().unwrap()) && said.contains("--accept-store-as-is"),
        "the error names the audit log and what to do: {said}"
    );

    node.start_enforcer_with(&["--accept-store-as-is"]);
    let log = node.items(&["audit", "log"]);
    assert_eq!(log.len(), 1, "only the decision is in the new log: {log:?}");
    assert_eq!(log[0]["action"], "store-accepted");
    assert!(
        log[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no longer holds entry")),
        "{log:?}"
    );
}

#[test]
fn endpoints_removed_through_the_plugin_are_not_missing() {
    require_root!();
    let (mut node, list, a, _b, _server) = enforcing_node();
    list.del(&node, &a.at, &serde_json::json!({}), Some(&a.result))
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    node.stop_enforcer(true);
    node.start_enforcer();
    assert_eq!(node.endpoints().len(), 1, "{:?}", node.endpoints());
}
