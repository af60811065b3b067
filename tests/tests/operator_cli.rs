//! The operator CLI against a running enforcer, as root: describe, zone map, profile
//! export/import (YAML round trip, validation, atomic apply that changes
//! enforcement), NetworkPolicy export and the live flow stream, in every format.
//! A typo in a zone name changes nothing: `mode set`, `quarantine`, `profile
//! approve|remove` of a zone that does not exist (no endpoints, no profile) exit 1
//! naming the nearest zone, and leave the profiles and the audit log as they were;
//! `--create` makes the zone when it is meant. The JSON words operators' scripts read
//! (zone source, attach mode, kind, mode) are the ones zwctl printed before the API
//! carried enums.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::flows::Watch;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const NET: &str = "zw-opcli";
const EDGE: &str = "shop/web->shop/db:5432/tcp";

/// `zwctl ARGS` (no `-o` added) against the node's enforcer.
fn zwctl(node: &Node, args: &[&str]) -> Output {
    node.zwctl_output(args)
}

/// stdout of a `zwctl` that must succeed.
fn ok(node: &Node, args: &[&str]) -> String {
    let out = zwctl(node, args);
    assert!(
        out.status.success(),
        "zwctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// stderr of a `zwctl` that must fail.
fn fails(node: &Node, args: &[&str]) -> String {
    let out = zwctl(node, args);
    assert!(
        !out.status.success(),
        "zwctl {args:?} should fail, printed {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf-8 output")
}

fn json(node: &Node, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let out = ok(node, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("zwctl {args:?}: no JSON ({e}): {out}"))
}

/// The table as nft lists it, without counters and expiry times (they move by
/// themselves) and without the enforcer's seal (`ruleset_digest`, rewritten a second
/// after every change).
fn kernel_table(node: &Node) -> String {
    let out = node
        .netns
        .exec("nft", &["list", "table", "inet", "zonewarden"])
        .output()
        .expect("nft list table");
    assert!(out.status.success(), "nft list table failed");
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut in_seal = false;
    let without_seal: Vec<&str> = listing
        .lines()
        .filter(|line| {
            let line = line.trim();
            if line.starts_with("set ruleset_digest ") {
                in_seal = true;
            }
            let keep = !in_seal;
            if in_seal && line == "}" {
                in_seal = false;
            }
            keep
        })
        .collect();
    let mut words = Vec::new();
    let mut skip = 0;
    for word in without_seal.join("\n").split_whitespace() {
        if skip > 0 {
            skip -= 1;
        } else if matches!(word, "packets" | "bytes" | "expires") {
            skip = 1;
        } else {
            words.push(word.to_owned());
        }
    }
    words.join(" ")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn operator_cli_end_to_end() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.137.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    let target = db.target(5432, "tcp");

    // Learn, approve and enforce the one edge.
    assert!(connects(&web.netns, &target), "web -> db in learn mode");
    wait::until("the edge to be learned", Duration::from_secs(10), || {
        json(&node, &["get", "edges", "--learned"])["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|e| e["edge"] == EDGE))
    });
    ok(
        &node,
        &["profile", "approve", "shop/db", "--all", "--comment", "ok"],
    );
    ok(&node, &["mode", "set", "shop/db", "enforce"]);
    assert!(connects(&web.netns, &target), "approved edge passes");

    // describe zone, in every format.
    let text = ok(&node, &["describe", "zone", "shop/db"]);
    for needle in ["Name:", "shop/db", "Mode:", "enforce", EDGE, "History:"] {
        assert!(text.contains(needle), "describe lacks {needle:?}:\n{text}");
    }
    let d = json(&node, &["describe", "zone", "shop/db"]);
    assert_eq!(d["zone"], "shop/db");
    assert_eq!(d["profile"]["mode"], "enforce");
    assert_eq!(d["approvedEdges"][0]["edge"], EDGE);
    assert_eq!(d["members"].as_array().map(Vec::len), Some(1), "{d}");
    let yaml = ok(&node, &["describe", "zone", "shop/db", "-o", "yaml"]);
    assert!(yaml.starts_with("zone: shop/db\n"), "{yaml}");
    assert!(fails(&node, &["describe", "zone", "shop/none"]).contains("shop/none"));

    // zones map, in every format; graph formats are refused elsewhere.
    let table = ok(&node, &["zones", "map"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("shop/web") && l.contains("shop/db:5432/tcp")),
        "{table}"
    );
    let map = json(&node, &["zones", "map"]);
    assert!(
        map["edges"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["edge"] == EDGE && e["approved"] == true)),
        "{map}"
    );
    assert!(ok(&node, &["zones", "map", "-o", "yaml"]).starts_with("kind: ZoneMap\n"));
    let dot = ok(&node, &["zones", "map", "-o", "dot"]);
    assert!(
        dot.contains("digraph zonewarden {") && dot.contains("\"shop/web\" -> \"shop/db\""),
        "{dot}"
    );
    let mermaid = ok(&node, &["zones", "map", "-o", "mermaid"]);
    assert!(
        mermaid.contains("graph LR\n") && mermaid.contains("-->|\"5432/tcp\"|"),
        "{mermaid}"
    );
    for args in [
        &["get", "zones", "-o", "dot"][..],
        &["describe", "zone", "shop/db", "-o", "mermaid"],
    ] {
        let out = zwctl(&node, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: a command line error");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid value")
                && err.contains("[possible values: table, wide, json, yaml]"),
            "{args:?}: {err}"
        );
    }

    // Export in every format; export -> import -> export is identical.
    let one = ok(&node, &["profile", "export", "shop/db"]);
    assert!(one.contains("zone: \"shop/db\"\nmode: enforce\n"), "{one}");
    assert_eq!(
        ok(&node, &["profile", "export", "shop/db", "-o", "yaml"]),
        one
    );
    let exported = json(&node, &["profile", "export", "shop/db"]);
    assert_eq!(exported["kind"], "ZoneProfileList");
    assert_eq!(exported["items"][0]["approvedEdges"][0], EDGE);
    let all = ok(&node, &["profile", "export", "--all"]);
    assert_eq!(all.matches("kind: ZoneProfile\n").count(), 2, "{all}");
    let file = write(node.dir.path(), "all.yaml", &all);
    let result = json(&node, &["profile", "import", "-f", &file]);
    assert_eq!(result["changedZones"], 0, "{result}");
    assert_eq!(
        ok(&node, &["profile", "export", "--all"]),
        all,
        "round trip"
    );

    // NetworkPolicy export.
    let netpol = ok(
        &node,
        &["profile", "export", "--all", "--format", "networkpolicy"],
    );
    assert!(
        netpol.contains("kind: NetworkPolicy") && netpol.contains("name: zonewarden-db"),
        "{netpol}"
    );
    assert!(netpol.contains("# zonewarden:"), "{netpol}");
    assert!(
        fails(
            &node,
            &[
                "profile",
                "export",
                "--all",
                "--format",
                "networkpolicy",
                "-o",
                "json"
            ]
        )
        .contains("networkpolicy")
    );

    // An invalid import is refused with the line and the reason; nothing changes.
    let kernel_before = kernel_table(&node);
    let bad = all.replacen("mode: enforce\n", "mode: enforce\nlockdown: true\n", 1);
    let line = bad
        .lines()
        .position(|l| l == "lockdown: true")
        .expect("inserted line")
        + 1;
    let bad_file = write(node.dir.path(), "bad.yaml", &bad);
    let err = fails(&node, &["profile", "import", "-f", &bad_file]);
    assert!(
        err.contains(&format!("line {line} column 1")) && err.contains("unknown field `lockdown`"),
        "{err}"
    );
    let bad_edge = all.replace(EDGE, "shop/web->shop/db:5432");
    let err = fails(
        &node,
        &[
            "profile",
            "import",
            "-f",
            &write(node.dir.path(), "bad2.yaml", &bad_edge),
        ],
    );
    assert!(err.contains("line ") && err.contains("protocol"), "{err}");
    assert_eq!(
        ok(&node, &["profile", "export", "--all"]),
        all,
        "profiles untouched"
    );
    assert_eq!(kernel_table(&node), kernel_before, "kernel untouched");

    // A dry run shows the diff and changes nothing.
    let without = all.replace(
        &format!("approvedEdges:\n  - \"{EDGE}\"\n"),
        "approvedEdges: []\n",
    );
    assert_ne!(without, all, "the edge is in the export");
    let without_file = write(node.dir.path(), "without.yaml", &without);
    let dry = ok(
        &node,
        &["profile", "import", "-f", &without_file, "--dry-run"],
    );
    assert!(
        dry.contains(&format!("  - {EDGE}")) && dry.contains("dry run"),
        "{dry}"
    );
    let dry = json(
        &node,
        &["profile", "import", "-f", &without_file, "--dry-run"],
    );
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["changedZones"], 1);
    assert_eq!(ok(&node, &["profile", "export", "--all"]), all);
    assert!(connects(&web.netns, &target), "a dry run changes nothing");

    // flows watch: a watcher sees the drop the import causes.
    let watch = Watch::start(
        &node,
        &[
            "-o",
            "json",
            "flows",
            "watch",
            "--verdict",
            "drop",
            "--zone",
            "shop/db",
        ],
    );

    // Importing the profile without the edge makes enforcement drop it.
    let applied = ok(
        &node,
        &[
            "profile",
            "import",
            "-f",
            &without_file,
            "--comment",
            "revoke",
        ],
    );
    assert!(
        applied.contains("imported: 1 of 2 zone(s) changed"),
        "{applied}"
    );
    assert!(
        !connects(&web.netns, &target),
        "the imported profile drops web -> db"
    );
    let line = watch
        .first(Duration::from_secs(10), &mut Vec::new(), |_| true)
        .expect("flows watch printed the drop within 10s");
    drop(watch);
    let flow: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(flow["verdict"], "drop", "{flow}");
    assert_eq!(flow["edge"], EDGE, "{flow}");
    assert_eq!(flow["reportedBy"], "shop/db", "{flow}");

    let profile = json(&node, &["get", "profiles", "shop/db"]);
    let history = &profile["items"][0]["history"];
    let last = history.as_array().and_then(|h| h.last()).expect("history");
    assert_eq!(last["what"], "imported: +0 -1 edge(s)", "{last}");
    assert_eq!(last["comment"], "revoke");
    assert!(
        !ok(&node, &["profile", "export", "shop/db"]).contains(EDGE),
        "the import set the approved edges exactly"
    );
}

/// stderr of a `zwctl` that must exit 1 (refused, not a command line error) and print
/// nothing on stdout.
fn refused(node: &Node, args: &[&str]) -> String {
    let out = zwctl(node, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "zwctl {args:?} must be refused with exit 1; stdout {}, stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "a refusal prints no result");
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

fn items(value: Value) -> Vec<Value> {
    value["items"].as_array().cloned().unwrap_or_default()
}

/// Every profile and every audit entry, to compare before and after refusals.
fn state(node: &Node) -> (Vec<Value>, Vec<Value>) {
    (
        items(node.zwctl(&["get", "profiles"])),
        items(node.zwctl(&["audit", "log"])),
    )
}

#[test]
fn a_zone_typo_is_refused_with_the_nearest_zone_and_changes_nothing() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, "zw-typo", "10.171.0.0/24");
    let _api = add_pod(&node, &list, "api", "shop/api");
    node.zwctl(&["mode", "set", "shop/api", "monitor"]);
    let before = state(&node);

    let typo = "zone \"shop/apii\" does not exist (no endpoints, no profile); \
                did you mean \"shop/api\"? pass --create to make it";
    for args in [
        &["mode", "set", "shop/apii", "enforce"][..],
        &["quarantine", "--zone", "shop/apii"],
        &["unquarantine", "--zone", "shop/apii"],
        &[
            "profile",
            "approve",
            "shop/apii",
            "--edge",
            "shop/apii->shop/api:8080/tcp",
        ],
        &["profile", "remove", "shop/apii", "--all"],
    ] {
        let stderr = refused(&node, args);
        assert!(stderr.contains(typo), "zwctl {args:?}: {stderr}");
    }
    // Far from every zone: refused without a guess.
    let stderr = refused(&node, &["quarantine", "--zone", "shop/ghost"]);
    assert!(
        stderr.contains(
            "zone \"shop/ghost\" does not exist (no endpoints, no profile); pass --create to make it"
        ) && !stderr.contains("did you mean"),
        "{stderr}"
    );
    refused(&node, &["-o", "json", "mode", "set", "shop/ghost", "learn"]);

    assert_eq!(
        state(&node),
        before,
        "refused requests change no profile and write no audit entry"
    );
    let stderr = refused(&node, &["get", "profiles", "shop/apii"]);
    assert!(stderr.contains("has no profile"), "{stderr}");

    // The zone being changed must exist; the other end of an edge need not.
    let approved = node.zwctl(&[
        "profile",
        "approve",
        "shop/api",
        "--edge",
        "shop/api->shop/later:9000/tcp",
    ]);
    assert_eq!(approved["changed"], 1, "{approved}");
    let stderr = refused(&node, &["get", "profiles", "shop/later"]);
    assert!(
        stderr.contains("has no profile"),
        "approving an edge makes no profile at its other end: {stderr}"
    );

    // --create makes the zone: the change, its profile and its audit entry.
    let created = node.zwctl(&["mode", "set", "shop/payments", "enforce", "--create"]);
    assert_eq!(created["changed"], 1, "{created}");
    assert_eq!(created["profile"]["zone"], "shop/payments");
    assert_eq!(created["profile"]["mode"], "enforce");
    let log = items(node.zwctl(&["audit", "log", "--zone", "shop/payments"]));
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        (&log[0]["action"], &log[0]["target"]),
        (&Value::from("mode"), &Value::from("enforce"))
    );
    // Now it exists (a profile): no --create needed.
    let quarantined = node.zwctl(&["quarantine", "--zone", "shop/payments"]);
    assert_eq!(quarantined["profile"]["quarantined"], true, "{quarantined}");
    let created = node.zwctl(&[
        "profile",
        "approve",
        "shop/batch",
        "--create",
        "--edge",
        "shop/batch->shop/api:8080/tcp",
    ]);
    assert_eq!(
        created["profile"]["approvedEdges"][0],
        "shop/batch->shop/api:8080/tcp"
    );
}

#[test]
fn json_words_are_the_ones_scripts_read() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, "zw-words", "10.172.0.0/24");
    let _web = add_pod(&node, &list, "web", "shop/web");

    let endpoints = items(node.zwctl(&["get", "endpoints"]));
    assert_eq!(endpoints.len(), 1, "{endpoints:#?}");
    assert_eq!(endpoints[0]["zoneSource"], "cni-args", "{endpoints:#?}");
    assert_eq!(endpoints[0]["attachMode"], "routed", "{endpoints:#?}");
    let zones = items(node.zwctl(&["get", "zones"]));
    assert_eq!(zones[0]["kind"], "cni-args", "{zones:#?}");
    let profiles = items(node.zwctl(&["get", "profiles"]));
    assert_eq!(profiles[0]["mode"], "learn", "{profiles:#?}");
    for (mode, word) in [("monitor", "monitor"), ("enforce", "enforce")] {
        let changed = node.zwctl(&["mode", "set", "shop/web", mode]);
        assert_eq!(changed["profile"]["mode"], word, "{changed}");
    }
    let out = zwctl(&node, &["-o", "yaml", "get", "profiles", "shop/web"]);
    let yaml = String::from_utf8(out.stdout).expect("utf-8 yaml");
    assert!(yaml.contains("mode: enforce"), "{yaml}");
}
