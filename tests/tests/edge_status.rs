//! "Status is the present, history is history", as root with real traffic: an edge
//! an enforcing zone dropped and then approved reads `approved` in get edges,
//! describe zone and zones map, with its last drop (time and the profile version
//! before the approval) as history; a quarantined zone shows its quarantine while its
//! approved edges stay approved, during the quarantine and after it.

use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const EDGE: &str = "shop/web->shop/db:5432/tcp";

/// The edge as `get edges --zone shop/db` shows it.
fn listed(node: &Node) -> Value {
    node.items(&["get", "edges", "--zone", "shop/db"])
        .into_iter()
        .find(|e| e["edge"] == EDGE)
        .unwrap_or_else(|| panic!("{EDGE} is not listed"))
}

/// The edge as `zones map -o json` shows it, and the map's shop/db node.
fn mapped(node: &Node) -> (Value, Value) {
    let map = node.zwctl(&["zones", "map"]);
    let edge = map["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["edge"] == EDGE)
        .cloned()
        .unwrap_or_else(|| panic!("{EDGE} is not on the map: {map}"));
    let zone = map["zones"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["zone"] == "shop/db")
        .cloned()
        .unwrap_or_else(|| panic!("shop/db is not on the map: {map}"));
    (edge, zone)
}

#[test]
fn an_edge_shows_what_the_table_does_now_and_its_last_drop_as_history() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, "zw-status", "10.183.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    let target = db.target(5432, "tcp");

    // Learned, nobody approves it: observed (it passes).
    wait::until("the edge to be learned", Duration::from_secs(10), || {
        assert!(connects(&web.netns, &target));
        node.items(&["get", "edges", "--learned"])
            .iter()
            .any(|e| e["edge"] == EDGE)
    });
    assert_eq!(listed(&node)["status"], "observed");

    // shop/db enforces without approving it: dropped now, and the drop is recorded.
    let enforced = node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    let version_at_drop = enforced["profile"]["version"].as_u64().unwrap();
    assert!(!connects(&web.netns, &target), "unapproved edge dropped");
    wait::until("the drop to be listed", Duration::from_secs(10), || {
        !listed(&node)["lastDrop"].is_null()
    });
    let dropped = listed(&node);
    assert_eq!(dropped["status"], "dropped", "{dropped}");
    assert_eq!(
        dropped["lastDrop"]["profileVersion"].as_u64(),
        Some(version_at_drop),
        "{dropped}"
    );
    assert_eq!(dropped["lastDrop"]["reportedBy"], "shop/db", "{dropped}");
    let table = String::from_utf8(node.zwctl_output(&["get", "edges"]).stdout).unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with(EDGE))
        .unwrap_or_else(|| panic!("{EDGE} not in the table:\n{table}"));
    assert!(
        row.contains(" dropped ") && row.contains(&format!("(v{version_at_drop})")),
        "STATUS and LAST-DROP columns: {row}"
    );

    // Approved: approved now, the drop stays as history (before the approval).
    let approved = node.zwctl(&["profile", "approve", "shop/db", "--edge", EDGE]);
    assert!(approved["profile"]["version"].as_u64().unwrap() > version_at_drop);
    assert!(connects(&web.netns, &target), "approved edge passes");
    let healed = listed(&node);
    assert_eq!(healed["status"], "approved", "{healed}");
    assert_eq!(
        healed["lastDrop"]["profileVersion"].as_u64(),
        Some(version_at_drop),
        "{healed}"
    );
    let described = node.zwctl(&["describe", "zone", "shop/db"]);
    assert_eq!(described["approvedEdges"][0]["edge"], EDGE, "{described}");
    assert_eq!(described["approvedEdges"][0]["status"], "approved");
    assert!(!described["approvedEdges"][0]["lastDrop"].is_null());
    let (edge, _) = mapped(&node);
    assert_eq!(edge["status"], "approved", "{edge}");
    assert_eq!(
        edge["lastDrop"]["profileVersion"].as_u64(),
        Some(version_at_drop)
    );

    // Quarantined: the zone says so, its approved edge stays approved (and its
    // quarantine drops are not the edge's last drop).
    node.zwctl(&["quarantine", "--zone", "shop/db"]);
    assert!(!connects(&web.netns, &target), "quarantine cuts it");
    wait::until(
        "the quarantine drop to be reported",
        Duration::from_secs(10),
        || node.reported("quarantine", EDGE),
    );
    let during = listed(&node);
    assert_eq!(during["status"], "approved", "{during}");
    assert_eq!(
        during["lastDrop"]["profileVersion"].as_u64(),
        Some(version_at_drop),
        "a quarantine drop is no edge drop: {during}"
    );
    let (edge, zone) = mapped(&node);
    assert_eq!(edge["status"], "approved", "{edge}");
    assert_eq!(zone["quarantined"], true, "{zone}");
    let described = node.zwctl(&["describe", "zone", "shop/db"]);
    assert_eq!(described["profile"]["quarantined"], true);
    assert_eq!(described["approvedEdges"][0]["status"], "approved");
    let text =
        String::from_utf8(node.zwctl_output(&["describe", "zone", "shop/db"]).stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("Quarantined:") && l.ends_with("yes")),
        "{text}"
    );

    // Released: still approved, and it passes.
    node.zwctl(&["unquarantine", "--zone", "shop/db"]);
    assert!(connects(&web.netns, &target), "released");
    assert_eq!(listed(&node)["status"], "approved");
    let (edge, zone) = mapped(&node);
    assert_eq!(edge["status"], "approved", "{edge}");
    assert_eq!(zone["quarantined"], false, "{zone}");
}
