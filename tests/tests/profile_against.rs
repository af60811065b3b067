//! Production against the development profile, as root with the real enforcer, plugin
//! and traffic: `zwctl profile diff ZONE --against FILE` shows the edge this node
//! learned that a staged export lacks, the approval of the export this node never
//! used, and the mode, in a table and as JSON, exiting 1 (0 when nothing differs);
//! `zwctl profile import --mode monitor FILE` applies the export with every zone in
//! monitor: traffic outside the file passes and is reported as a violation, the import
//! is audited, and an unknown mode is refused with nothing changed.

use std::path::Path;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

/// A profile of shop/db as exported on staging: web may reach it on 5432 (used here
/// too) and on 9999 (never used here); enforcing.
const STAGING: &str = "\
---
apiVersion: zonewarden.io/v1
kind: ZoneProfile
zone: \"shop/db\"
mode: enforce
version: 4
approved:
  - \"shop/web->shop/db:5432/tcp\"
  - \"shop/web->shop/db:9999/tcp\"
";

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn diff_against_a_staged_export_shows_the_extra_edge_the_unused_approval_and_the_mode() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer();
    let list = Conflist::routed(&node, "zw-against", "10.192.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:6379"]);
    // Production: 5432 as on staging, and 6379, which staging never approved.
    for port in [5432, 6379] {
        assert!(connects(&web.netns, &db.target(port, "tcp")));
        let edge = format!("shop/web->shop/db:{port}/tcp");
        wait::until(
            &format!("{edge} learned"),
            std::time::Duration::from_secs(10),
            || {
                node.items(&["get", "edges", "--learned", "--zone", "shop/db"])
                    .iter()
                    .any(|e| e["edge"] == edge.as_str())
            },
        );
    }
    let staging = write(node.dir.path(), "staging.yaml", STAGING);

    let out = node.zwctl_output(&["profile", "diff", "shop/db", "--against", &staging]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "differences exit 1: {}",
        stderr(&out)
    );
    let table = stdout(&out);
    assert!(
        table.contains(&format!("Mode: learn here, enforce in {staging} (differs)")),
        "{table}"
    );
    let (observed, unused) = table
        .split_once("never observed here")
        .unwrap_or_else(|| panic!("two sections: {table}"));
    assert!(observed.contains("shop/web->shop/db:6379/tcp"), "{table}");
    assert!(!observed.contains("5432"), "5432 is in the file: {table}");
    assert!(unused.contains("shop/web->shop/db:9999/tcp"), "{table}");
    assert!(!unused.contains("5432"), "5432 was observed: {table}");
    assert!(
        stderr(&out).contains("zone shop/db differs from"),
        "{}",
        stderr(&out)
    );

    let out = node.zwctl_output(&[
        "-o",
        "json",
        "profile",
        "diff",
        "shop/db",
        "--against",
        &staging,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_str(&stdout(&out)).expect("one JSON object");
    assert_eq!(json["zone"], "shop/db", "{json}");
    assert_eq!(json["file"], staging.as_str(), "{json}");
    assert_eq!(json["mode"], "learn", "{json}");
    assert_eq!(json["fileMode"], "enforce", "{json}");
    assert_eq!(json["modeDiffers"], true, "{json}");
    assert_eq!(json["differences"], 3, "{json}");
    let extra = json["observedNotInFile"].as_array().expect("a list");
    assert_eq!(extra.len(), 1, "{json}");
    assert_eq!(extra[0]["edge"], "shop/web->shop/db:6379/tcp", "{json}");
    assert!(
        extra[0]["evidence"]["count"].as_u64().unwrap() >= 1,
        "with evidence: {json}"
    );
    assert_eq!(
        json["inFileNeverObserved"],
        serde_json::json!(["shop/web->shop/db:9999/tcp"])
    );

    // A file that matches: exit 0. `profile diff` without --against is unchanged.
    let same = write(
        node.dir.path(),
        "same.yaml",
        "---\napiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/db\nmode: learn\n\
         version: 1\napproved:\n  - \"shop/web->shop/db:5432/tcp\"\n  - \"shop/web->shop/db:6379/tcp\"\n",
    );
    let out = node.zwctl_output(&[
        "-o",
        "yaml",
        "profile",
        "diff",
        "shop/db",
        "--against",
        &same,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("differences: 0"), "{}", stdout(&out));
    let plain = node.zwctl(&["profile", "diff", "shop/db"]);
    assert_eq!(
        plain["unapproved"].as_array().map(Vec::len),
        Some(2),
        "{plain}"
    );

    // A file without the zone, or no export at all: refused, saying why.
    let out = node.zwctl_output(&["profile", "diff", "shop/web", "--against", &staging]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has no profile of zone shop/web"),
        "{}",
        stderr(&out)
    );
    let junk = write(node.dir.path(), "junk.yaml", "zone: [\n");
    let out = node.zwctl_output(&["profile", "diff", "shop/db", "--against", &junk]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is no profile export"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn import_mode_monitor_applies_the_edges_and_reports_instead_of_dropping() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--seen-timeout-secs", "1"]);
    let list = Conflist::routed(&node, "zw-import-mode", "10.193.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:6379"]);
    let staging = write(node.dir.path(), "staging.yaml", STAGING);

    // An unknown mode: a usage error, nothing imported.
    let out = node.zwctl_output(&["profile", "import", "-f", &staging, "--mode", "observe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("learn, monitor, enforce"),
        "{}",
        stderr(&out)
    );
    assert!(
        node.items(&["get", "profiles"])
            .iter()
            .all(|p| p["zone"] != "shop/db" || p["mode"] == "learn"),
        "nothing changed"
    );

    let result = node.zwctl(&["profile", "import", "-f", &staging, "--mode", "monitor"]);
    assert_eq!(result["changedZones"], 1, "{result}");
    assert_eq!(result["zones"][0]["modeAfter"], "monitor", "{result}");
    let profile = node
        .items(&["get", "profiles"])
        .into_iter()
        .find(|p| p["zone"] == "shop/db")
        .expect("shop/db has a profile");
    assert_eq!(profile["mode"], "monitor", "{profile}");
    let approved = node.items(&["get", "edges", "--approved", "--zone", "shop/db"]);
    assert_eq!(approved.len(), 2, "the file's edges approved: {approved:?}");

    // Outside the file: passes, reported as a violation; inside: passes, not reported.
    wait::until(
        "the violation of shop/web->shop/db:6379/tcp",
        std::time::Duration::from_secs(10),
        || {
            assert!(
                connects(&web.netns, &db.target(6379, "tcp")),
                "monitor drops nothing"
            );
            node.reported("violation", "shop/web->shop/db:6379/tcp")
        },
    );
    assert!(connects(&web.netns, &db.target(5432, "tcp")));
    assert!(!node.reported("violation", "shop/web->shop/db:5432/tcp"));
    assert!(!node.reported("drop", "shop/web->shop/db:6379/tcp"));

    // Audited as an import, saying --mode.
    let log = node.zwctl(&["audit", "log", "--zone", "shop/db"]);
    let import = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "import")
        .cloned()
        .unwrap_or_else(|| panic!("an import entry: {log}"));
    assert!(
        import["detail"].as_str().unwrap().contains("monitor"),
        "{import}"
    );
    assert!(
        import["reason"]
            .as_str()
            .unwrap()
            .contains("--mode monitor"),
        "{import}"
    );
}
