//! Rejections are remembered, as root with real traffic: a learned edge an operator
//! rejects is recorded in the zone's profile (new version, audit entry, export); when
//! the traffic comes back it is listed as "rejected, seen again" and `approve --all`
//! leaves it out, so a bulk approval never undoes an explicit rejection. Naming the
//! edge approves it and lifts the rejection; an approved edge cannot be rejected
//! without removing the approval first.

use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const WANTED: &str = "shop/web->shop/db:5432/tcp";
const UNWANTED: &str = "shop/web->shop/db:22/tcp";

fn edges(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|e| e["edge"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn diff(node: &Node) -> Value {
    node.zwctl(&["profile", "diff", "shop/db"])
}

#[test]
fn a_rejected_edge_seen_again_is_not_approved_by_approve_all() {
    require_root!();
    // Each flow is logged once per second, so the same connection is seen again soon
    // after its evidence was forgotten.
    let mut node = Node::new();
    node.start_enforcer_with(&["--seen-timeout-secs", "1"]);
    let list = Conflist::routed(&node, "zw-reject", "10.173.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:22"]);
    let learn_both = || {
        wait::until("both edges to be learned", Duration::from_secs(20), || {
            assert!(connects(&web.netns, &db.target(5432, "tcp")));
            assert!(connects(&web.netns, &db.target(22, "tcp")));
            let unapproved = edges(&diff(&node)["unapproved"]);
            let rejected = edges(&diff(&node)["rejectedSeen"]);
            [WANTED, UNWANTED]
                .iter()
                .all(|e| unapproved.iter().chain(&rejected).any(|u| u == e))
        });
    };

    learn_both();
    let change = node.zwctl(&[
        "profile",
        "reject",
        "shop/db",
        "--edge",
        UNWANTED,
        "--comment",
        "no ssh",
    ]);
    assert_eq!(change["changed"], 1, "{change}");
    assert_eq!(change["profile"]["rejectedEdges"][0], UNWANTED, "{change}");
    let version = change["profile"]["version"].as_u64().unwrap();
    assert!(
        !edges(&diff(&node)["unapproved"]).contains(&UNWANTED.to_owned()),
        "the rejected edge's evidence is gone"
    );

    // The audit log has the rejection, with its version.
    let audit = node.zwctl(&["audit", "log", "--zone", "shop/db"]);
    let entry = audit["items"]
        .as_array()
        .and_then(|items| items.iter().rev().find(|e| e["action"] == "reject"))
        .unwrap_or_else(|| panic!("no reject entry: {audit}"))
        .clone();
    assert_eq!(entry["versionAfter"].as_u64(), Some(version), "{entry}");

    // Seen again: listed as rejected, and approve --all leaves it out.
    learn_both();
    let d = diff(&node);
    assert_eq!(edges(&d["rejectedSeen"]), vec![UNWANTED.to_owned()], "{d}");
    assert_eq!(edges(&d["unapproved"]), vec![WANTED.to_owned()], "{d}");
    let approved = node.zwctl(&["profile", "approve", "shop/db", "--all"]);
    assert_eq!(approved["changed"], 1, "{approved}");
    assert_eq!(
        approved["profile"]["approvedEdges"],
        serde_json::json!([WANTED])
    );
    assert_eq!(
        approved["profile"]["rejectedEdges"],
        serde_json::json!([UNWANTED])
    );

    // Enforced: the rejected edge is dropped, the approved one passes.
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    assert!(connects(&web.netns, &db.target(5432, "tcp")));
    assert!(
        !connects(&web.netns, &db.target(22, "tcp")),
        "rejected edge dropped"
    );

    // The export keeps the decision; re-importing it changes nothing.
    let export = node.zwctl_output(&["profile", "export", "shop/db"]);
    let text = String::from_utf8(export.stdout).unwrap();
    assert!(
        text.contains(&format!("rejectedEdges:\n  - \"{UNWANTED}\"\n")),
        "{text}"
    );
    let file = node.dir.path().join("db.yaml");
    std::fs::write(&file, &text).unwrap();
    let import = node.zwctl(&["profile", "import", "-f", file.to_str().unwrap()]);
    assert_eq!(import["changedZones"], 0, "{import}");

    // An approved edge is not rejected: remove it first.
    let out = node.zwctl_output(&["profile", "reject", "shop/db", "--edge", WANTED]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "rejecting an approved edge is refused"
    );
    assert!(
        stderr.contains("is approved in zone shop/db's profile")
            && stderr.contains("zwctl profile remove shop/db"),
        "{stderr}"
    );

    // Naming the edge approves it and lifts the rejection.
    let named = node.zwctl(&["profile", "approve", "shop/db", "--edge", UNWANTED]);
    assert_eq!(named["changed"], 1, "{named}");
    assert!(
        named["profile"]["rejectedEdges"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{named}"
    );
    assert!(
        connects(&web.netns, &db.target(22, "tcp")),
        "approved by name"
    );
}
