//! `zwctl profile delete`, as root against the real enforcer: refused (exit 1,
//! nothing changed) for a typo (naming the nearest zone), for a zone with endpoints
//! and for a zone whose edges another zone's profile approves; with `--force` the
//! profile and the held edge go in one change, recorded in the audit log before the
//! kernel sees it; the zone is then gone from get zones, get profiles, get edges,
//! zones map and profile export, the table is changed in place
//! (never recreated), the removed approval is enforced, and a restart does not bring
//! the zone back.

use std::time::Duration;

use serde_json::{Value, json};
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const NET: &str = "zw-pdel";
const WEB_TO_OLD: &str = "shop/web->shop/old:8080/tcp";
const OLD_TO_DB: &str = "shop/old->shop/db:5432/tcp";

fn fails(node: &Node, args: &[&str]) -> String {
    let out = node.zwctl_output(args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "zwctl {args:?} must be refused with exit status 1, printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

fn names(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i[field].as_str().map(str::to_owned))
        .collect()
}

/// The handle of table inet zonewarden: a new one would mean it was recreated.
fn table_handle(node: &Node) -> u64 {
    let listing: Value =
        serde_json::from_str(&node.netns.nft(&["-j", "list", "tables"])).expect("nft -j output");
    listing["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|o| {
            let t = &o["table"];
            (t["family"] == "inet" && t["name"] == "zonewarden").then(|| t["handle"].as_u64())
        })
        .flatten()
        .expect("table inet zonewarden exists")
}

#[test]
fn a_deleted_profile_is_gone_everywhere_and_refusals_change_nothing() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.181.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let old = add_pod(&node, &list, "old", "shop/old");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _old_server = Server::start(&old.netns, &["tcp:8080"]);
    let _db_server = Server::start(&db.netns, &["tcp:5432"]);

    wait::until("both edges to be learned", Duration::from_secs(20), || {
        assert!(connects(&web.netns, &old.target(8080, "tcp")));
        assert!(connects(&old.netns, &db.target(5432, "tcp")));
        let learned = names(&node.items(&["get", "edges", "--learned"]), "edge");
        [WEB_TO_OLD, OLD_TO_DB]
            .iter()
            .all(|e| learned.iter().any(|l| l == e))
    });
    node.zwctl(&["profile", "approve", "shop/web", "--edge", WEB_TO_OLD]);
    node.zwctl(&["profile", "approve", "shop/old", "--all"]);
    node.zwctl(&["mode", "set", "shop/old", "enforce"]);
    node.zwctl(&["mode", "set", "shop/web", "enforce"]);
    assert!(connects(&web.netns, &old.target(8080, "tcp")), "approved");

    // Refusals: exit 1, the reason, and nothing changed.
    let audit_before = node.items(&["audit", "log"]).len();
    let err = fails(&node, &["profile", "delete", "shop/oldd"]);
    assert!(
        err.contains("zone \"shop/oldd\" does not exist")
            && err.contains("did you mean \"shop/old\"?"),
        "{err}"
    );
    let err = fails(&node, &["profile", "delete", "shop/old", "--force"]);
    assert!(
        err.contains("has 1 endpoint(s)") && err.contains("pod old"),
        "{err}"
    );
    let err = fails(&node, &["profile", "delete", "world"]);
    assert!(err.contains("is reserved"), "{err}");

    // The workload goes; its profile stays until deleted, and shop/web still holds
    // an edge to it.
    list.del(&node, &old.at, &json!({}), Some(&old.result))
        .expect("DEL old");
    let err = fails(&node, &["profile", "delete", "shop/old"]);
    assert!(
        err.contains(&format!("shop/web: {WEB_TO_OLD}")) && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        node.items(&["audit", "log"]).len(),
        audit_before + 1,
        "only the DEL was recorded, no refused deletion"
    );
    assert!(names(&node.items(&["get", "profiles"]), "zone").contains(&"shop/old".to_owned()));

    // Deleted with --force: the profile and the edge shop/web held, in one change.
    let handle = table_handle(&node);
    let web_version = node.items(&["get", "profiles", "shop/web"])[0]["version"]
        .as_u64()
        .unwrap();
    let deleted = node.zwctl(&[
        "profile",
        "delete",
        "shop/old",
        "--force",
        "--comment",
        "retired",
    ]);
    assert_eq!(deleted["zone"], "shop/old", "{deleted}");
    assert_eq!(deleted["removedEdges"], json!([WEB_TO_OLD]), "{deleted}");
    assert_eq!(deleted["changedProfiles"][0]["zone"], "shop/web");
    assert_eq!(
        deleted["changedProfiles"][0]["version"].as_u64(),
        Some(web_version + 1)
    );
    assert!(
        deleted["forgottenEdges"].as_u64().unwrap() >= 2,
        "both learned edges of the zone are forgotten: {deleted}"
    );

    // Gone everywhere.
    let gone = |what: &str, list: Vec<String>| {
        assert!(
            !list.iter().any(|n| n.contains("shop/old")),
            "{what} still shows shop/old: {list:?}"
        );
    };
    gone("get zones", names(&node.items(&["get", "zones"]), "zone"));
    gone(
        "get profiles",
        names(&node.items(&["get", "profiles"]), "zone"),
    );
    gone("get edges", names(&node.items(&["get", "edges"]), "edge"));
    let map = node.zwctl(&["zones", "map"]);
    gone("zones map", names(map["zones"].as_array().unwrap(), "zone"));
    let export = node.zwctl_output(&["profile", "export", "--all"]);
    let export = String::from_utf8(export.stdout).unwrap();
    assert!(!export.contains("zone: shop/old"), "{export}");
    assert!(!export.contains(WEB_TO_OLD), "{export}");
    let err = fails(&node, &["profile", "delete", "shop/old"]);
    assert!(err.contains("does not exist"), "deleted once: {err}");

    // The audit log: shop/web's removal, then the deletion; the chain verifies.
    let audit = node.items(&["audit", "log"]);
    let tail: Vec<(String, String)> = audit[audit.len() - 2..]
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["zone"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        tail,
        vec![
            ("remove".to_owned(), "shop/web".to_owned()),
            ("profile-delete".to_owned(), "shop/old".to_owned()),
        ]
    );
    assert_eq!(audit[audit.len() - 1]["reason"], "retired");
    assert_eq!(node.zwctl(&["audit", "verify"])["intact"], true);

    // The kernel: changed in place, nothing of shop/old left, and the removed
    // approval is enforced (the old address, reused by a new pod of shop/old-2, is
    // no longer reachable from shop/web's enforcing zone).
    assert_eq!(table_handle(&node), handle, "the table was not recreated");
    let table = node.netns.nft(&["list", "table", "inet", "zonewarden"]);
    assert!(!table.contains("shop/old"), "{table}");
    let again = add_pod(&node, &list, "old2", "shop/old");
    let _again_server = Server::start(&again.netns, &["tcp:8080"]);
    assert!(
        !connects(&web.netns, &again.target(8080, "tcp")),
        "the approval went with the deleted zone: shop/web enforces"
    );
    list.del(&node, &again.at, &json!({}), Some(&again.result))
        .expect("DEL old2");

    // Durable: a restart loads neither the profile nor the removed edge.
    node.stop_enforcer(false);
    node.start_enforcer();
    gone(
        "get profiles after a restart",
        names(&node.items(&["get", "profiles"]), "zone"),
    );
    let web_profile = &node.items(&["get", "profiles", "shop/web"])[0];
    assert!(
        web_profile["approvedEdges"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{web_profile}"
    );
}
