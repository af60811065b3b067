//! One shape for every output, against a running enforcer, as root.
//!
//! A fixed scenario (three zones in a shop, one zone with a long name, an approved,
//! a dropped and a quarantined edge, an import) and then every `zwctl -o json`
//! result, and the enforcer's `/api/map`, compared with the golden files in
//! `tests/golden/`. Volatile values (times, container ids, addresses' ports, hashes,
//! the node's name, counters) are replaced by `"<volatile>"` first: the files pin the
//! field names and the stable values. `-o yaml` must say the same as `-o json`. Every
//! key is camelCase. Tables fit 120 columns and `-o wide` shows the full values; no
//! output and no redirected enforcer log holds an ANSI escape.
//!
//! After a deliberate change of an output, regenerate the files and review the diff:
//!
//! ```sh
//! ZW_UPDATE_GOLDEN=1 cargo test -p zonewarden-tests --test output_shapes
//! ```
//!
//! The exit codes (0, 1, 2) are checked without root, against no enforcer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{bin, require_root, wait};

const NET: &str = "zw-shapes";
const LISTEN: &str = "127.0.0.1:19931";
const WEB_DB: &str = "shop/web->shop/db:5432/tcp";
const CACHE_DB: &str = "shop/cache->shop/db:5432/tcp";
/// A zone whose name alone makes a wide table.
const LONG: &str =
    "warehouse-inventory-reconciliation/nightly-batch-reconciler-worker-for-every-region";
const WIDTH: usize = 120;

/// Keys whose values change from run to run.
const VOLATILE: &[&str] = &[
    "atUnixMs",
    "createdUnixMs",
    "firstSeenUnixMs",
    "lastSeenUnixMs",
    "generatedUnixMs",
    "sinceLastNewEdgeMs",
    "newInWindow",
    "seenInWindow",
    "containerId",
    "netns",
    "hostIfname",
    "mac",
    "sample",
    "srcPort",
    "count",
    "drops",
    "violations",
    "hash",
    "prev",
    "headHash",
    "path",
    "node",
    "nodes",
    "events",
    "ingested",
    "kernel",
    "queue",
    "unreadable",
    "edgesLearned",
    "edgesEvicted",
    "reportsEvicted",
    "watchLag",
    "revision",
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden")
}

/// `value` with the volatile values replaced and the node's name and directory
/// (which are in paths and messages) written as `<node>` and `<dir>`.
fn normalise(value: &Value, node: &Node) -> Value {
    let dir = node.dir.path().to_string_lossy().into_owned();
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    // `version` of a profile is a number; of the enforcer, a release.
                    let release = k == "version" && v.is_string();
                    let v = if release || VOLATILE.contains(&k.as_str()) {
                        Value::from("<volatile>")
                    } else {
                        normalise(v, node)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalise(v, node)).collect()),
        Value::String(s) if s.parse::<SocketAddr>().is_ok() => {
            let addr: SocketAddr = s.parse().expect("checked");
            Value::from(format!("{}:<port>", addr.ip()))
        }
        Value::String(s) => Value::from(
            s.replace(&dir, "<dir>")
                .replace(&node.netns.name, "<node>")
                .replace(&format!("-{}", std::process::id()), "-<pid>"),
        ),
        other => other.clone(),
    }
}

/// Compares `text` with the golden file `name` (or writes it when
/// `ZW_UPDATE_GOLDEN` is set).
fn golden(name: &str, text: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("ZW_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("create tests/golden");
        std::fs::write(&path, text).expect("write a golden file");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; generate it with ZW_UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if let Some((n, (got, wanted))) = text
        .lines()
        .zip(want.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!(
            "{} differs at line {}: got {got:?}, the file says {wanted:?}; if the change is \
             meant, regenerate with ZW_UPDATE_GOLDEN=1 and review the diff. Output:\n{text}",
            path.display(),
            n + 1
        );
    }
    assert_eq!(
        text.lines().count(),
        want.lines().count(),
        "{} differs in length; regenerate with ZW_UPDATE_GOLDEN=1 if meant. Output:\n{text}",
        path.display()
    );
}

fn golden_json(name: &str, value: &Value, node: &Node) {
    let mut text = serde_json::to_string_pretty(&normalise(value, node)).expect("json");
    text.push('\n');
    golden(&format!("{name}.json"), &text);
}

/// Every key in `value` is camelCase (`^[a-z][a-zA-Z0-9]*$`).
fn assert_camel_case(what: &str, value: &Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                assert!(
                    k.starts_with(|c: char| c.is_ascii_lowercase())
                        && k.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{what}: key {k:?} is not camelCase"
                );
                assert_camel_case(what, v);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| assert_camel_case(what, v)),
        _ => {}
    }
}

fn run(node: &Node, args: &[&str]) -> Output {
    node.zwctl_output(args)
}

/// stdout of a zwctl that must succeed; never an ANSI escape in it.
fn ok(node: &Node, args: &[&str]) -> String {
    let out = run(node, args);
    assert!(
        out.status.success(),
        "zwctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
        "zwctl {args:?} wrote an ANSI escape"
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json(node: &Node, args: &[&str]) -> Value {
    let text = ok(node, &[args, &["-o", "json"]].concat());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("zwctl {args:?}: no JSON ({e}): {text}"))
}

fn yaml(node: &Node, args: &[&str]) -> Value {
    let text = ok(node, &[args, &["-o", "yaml"]].concat());
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("zwctl {args:?}: no YAML ({e}): {text}"))
}

/// A read-only command: its JSON is the golden file, its YAML says the same.
fn read_only(node: &Node, name: &str, args: &[&str]) -> Value {
    let j = json(node, args);
    assert_camel_case(name, &j);
    golden_json(name, &j, node);
    let y = yaml(node, args);
    assert_eq!(
        normalise(&y, node),
        normalise(&j, node),
        "zwctl {args:?}: -o yaml and -o json differ"
    );
    j
}

fn http_get(node: &Node, path: &str) -> String {
    let (status, body) = zonewarden_tests::web::http(node, LISTEN, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Every line of a table fits [`WIDTH`] columns.
fn assert_fits(args: &[&str], text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= WIDTH,
            "zwctl {args:?}: a line of {} characters:\n{line}\n{text}",
            line.chars().count()
        );
    }
}

#[test]
fn every_output_has_one_shape() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--web-listen", LISTEN]);
    let list = Conflist::routed(&node, NET, "10.141.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let cache = add_pod(&node, &list, "cache", "shop/cache");
    let batch = add_pod(
        &node,
        &list,
        "nightly-reconciler-batch-worker-7d9f8b6c5d-x2x4q",
        LONG,
    );
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    let target = db.target(5432, "tcp");
    let long_edge = format!("{LONG}->shop/db:5432/tcp");

    // Learn three edges into shop/db; approve one, enforce.
    for pod in [&web, &cache, &batch] {
        assert!(
            connects(&pod.netns, &target),
            "{} -> db in learn mode",
            pod.zone
        );
    }
    wait::until(
        "the three edges to be learned",
        Duration::from_secs(10),
        || {
            let edges = node.items(&["get", "edges", "--learned"]);
            [WEB_DB, CACHE_DB, long_edge.as_str()]
                .iter()
                .all(|want| edges.iter().any(|e| e["edge"] == *want))
        },
    );
    let approved = json(
        &node,
        &[
            "profile",
            "approve",
            "shop/db",
            "--edge",
            WEB_DB,
            "--comment",
            "reviewed",
        ],
    );
    golden_json("profile-approve", &approved, &node);
    let mode = json(&node, &["mode", "set", "shop/db", "enforce"]);
    golden_json("mode-set", &mode, &node);
    assert_camel_case("mode set", &mode);

    // A drop, then a quarantine.
    assert!(!connects(&cache.netns, &target), "cache -> db is dropped");
    wait::until("the drop to be reported", Duration::from_secs(10), || {
        node.reported("drop", CACHE_DB)
    });
    let quarantine = json(&node, &["quarantine", "--zone", "shop/cache"]);
    golden_json("quarantine", &quarantine, &node);
    assert!(
        !connects(&cache.netns, &target),
        "a quarantined zone is cut off"
    );
    wait::until(
        "the quarantine to be reported",
        Duration::from_secs(10),
        || node.reported("quarantine", CACHE_DB),
    );

    // An import that approves the long zone's edge: its audit entry names it.
    let export = ok(&node, &["profile", "export", "--all"]);
    let file = node.dir.path().join("profiles.yaml");
    let with_long = export.replace(
        &format!("approvedEdges:\n  - \"{WEB_DB}\"\n"),
        &format!("approvedEdges:\n  - \"{WEB_DB}\"\n  - \"{long_edge}\"\n"),
    );
    assert_ne!(
        with_long, export,
        "the export lists shop/db's edge:\n{export}"
    );
    std::fs::write(&file, &with_long).expect("write the import file");
    let file = file.to_str().expect("utf-8 path");
    read_only(
        &node,
        "profile-import-dry-run",
        &["profile", "import", "-f", file, "--dry-run"],
    );
    let imported = json(
        &node,
        &["profile", "import", "-f", file, "--comment", "PR 7"],
    );
    golden_json("profile-import", &imported, &node);
    let db_import = imported["zones"]
        .as_array()
        .and_then(|zones| zones.iter().find(|z| z["zone"] == "shop/db"))
        .unwrap_or_else(|| panic!("shop/db is not in the import's result: {imported}"));
    assert_eq!(db_import["addedEdges"][0], long_edge.as_str(), "{imported}");
    // Export is stable: the import bumped shop/db's version, the file is the same.
    assert_eq!(
        ok(&node, &["profile", "export", "--all"]),
        with_long,
        "export after import"
    );
    golden("profile-export.yaml", &with_long);

    // Every read-only output.
    let shapes: &[(&str, &[&str])] = &[
        ("get-endpoints", &["get", "endpoints"]),
        ("get-zones", &["get", "zones"]),
        ("get-edges", &["get", "edges"]),
        ("get-profiles", &["get", "profiles"]),
        ("get-violations", &["get", "violations"]),
        ("describe-zone", &["describe", "zone", "shop/db"]),
        ("zones-map", &["zones", "map"]),
        ("profile-diff", &["profile", "diff", "shop/db"]),
        ("profile-export", &["profile", "export", "--all"]),
        ("status", &["status"]),
        ("audit-log", &["audit", "log"]),
        ("audit-verify", &["audit", "verify"]),
    ];
    for (name, args) in shapes {
        if *name == "profile-export" {
            // -o yaml is the export file itself (checked above); -o json its list.
            let j = json(&node, args);
            assert_camel_case(name, &j);
            golden_json(name, &j, &node);
        } else {
            read_only(&node, name, args);
        }
    }
    let log = node.items(&["audit", "log"]);
    let import_entry = log
        .iter()
        .find(|e| e["action"] == "import")
        .unwrap_or_else(|| panic!("no import entry: {log:#?}"));
    assert_eq!(
        import_entry["detail"],
        format!("added 1 edge(s): {long_edge}").as_str(),
        "{import_entry}"
    );
    let zones = node.items(&["get", "zones"]);
    assert!(
        zones
            .iter()
            .any(|z| z["zone"] == "shop/db" && z["mode"] == "enforce"),
        "{zones:#?}"
    );
    let violations = node.violations();
    let quarantined = violations
        .iter()
        .find(|v| v["verdict"] == "quarantine")
        .expect("a quarantine report");
    assert!(
        quarantined.get("reportedBy").is_none() && quarantined.get("profileVersion").is_none(),
        "a quarantine has no reporting profile: {quarantined}"
    );

    // The web page's data: the same names.
    let map: Value = serde_json::from_str(&http_get(&node, "/api/map")).expect("/api/map JSON");
    assert_camel_case("/api/map", &map);
    golden_json("api-map", &map, &node);

    // Tables fit 120 columns; -o wide has the full values.
    let tables: &[&[&str]] = &[
        &["get", "endpoints"],
        &["get", "zones"],
        &["get", "edges"],
        &["get", "profiles"],
        &["get", "violations"],
        &["get", "violations", "--verdict", "quarantine"],
        &["describe", "zone", "shop/db"],
        &["describe", "zone", LONG],
        &["zones", "map"],
        &["profile", "diff", "shop/db"],
        &["profile", "import", "-f", file, "--dry-run"],
        &["status"],
        &["audit", "log"],
        &["audit", "verify"],
    ];
    for args in tables {
        assert_fits(args, &ok(&node, args));
    }
    let quarantine_only = ok(&node, &["get", "violations", "--verdict", "quarantine"]);
    assert!(
        !quarantine_only.contains("REPORTED-BY") && !quarantine_only.contains("<none>"),
        "quarantine reports have no reporter column:\n{quarantine_only}"
    );
    let zones_table = ok(&node, &["get", "zones"]);
    assert!(
        zones_table
            .lines()
            .next()
            .is_some_and(|h| h.contains("MODE")),
        "{zones_table}"
    );
    let edges_wide = ok(&node, &["get", "edges", "-o", "wide"]);
    for column in ["FIRST-SEEN", "NODES", "SAMPLE"] {
        assert!(
            edges_wide.contains(column),
            "-o wide lacks {column}:\n{edges_wide}"
        );
    }
    let map_wide = ok(&node, &["zones", "map", "-o", "wide"]);
    assert!(
        map_wide
            .lines()
            .any(|l| l.starts_with(LONG) && l.contains("shop/db:5432/tcp")),
        "-o wide shows the long zone's edge in full:\n{map_wide}"
    );
    let audit_wide = ok(&node, &["audit", "log", "-o", "wide"]);
    assert!(
        audit_wide.contains(&format!("added 1 edge(s): {long_edge}")),
        "-o wide shows the import's edges:\n{audit_wide}"
    );

    // The enforcer's log goes to a file: no colours in it.
    let log = std::fs::read(node.enforcer_log()).expect("the enforcer's log");
    assert!(!log.is_empty(), "the enforcer logged something");
    assert!(
        !log.contains(&0x1b),
        "the redirected enforcer log holds ANSI escapes"
    );
}

fn zwctl_alone(args: &[&str]) -> Output {
    Command::new(bin("zwctl"))
        .args(["--socket", "/nonexistent/zonewarden.sock", "--timeout", "1"])
        .args(args)
        .output()
        .expect("run zwctl")
}

#[test]
fn exit_codes_are_the_documented_ones() {
    for (code, args) in [
        (0, &["--help"][..]),
        (0, &["get", "zones", "--help"]),
        (0, &["completion", "bash"]),
        (1, &["status"]),
        (1, &["get", "zones", "-o", "wide"]),
        (1, &["zones", "map", "-o", "mermaid"]),
        (2, &["get", "zones", "-o", "dot"]),
        (2, &["-o", "dot", "get", "zones"]),
        (2, &["describe", "zone", "shop/db", "-o", "mermaid"]),
        (2, &["status", "-o", "wide"]),
        (2, &["-o", "wide", "mode", "set", "shop/db", "enforce"]),
        (2, &["get", "zones", "-o", "xml"]),
        (2, &["get", "flows"]),
        (2, &["--timeout", "0", "status"]),
        (2, &["get", "zones", "--bogus"]),
        (2, &[]),
    ] {
        let out = zwctl_alone(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "zwctl {args:?} must exit {code}: {stderr}"
        );
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "zwctl {args:?} wrote an ANSI escape to a pipe"
        );
    }
    let out = zwctl_alone(&["-o", "dot", "get", "zones"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "`zwctl get zones` does not write -o dot; it writes: table, wide, json, yaml"
        ),
        "{stderr}"
    );
    let help = String::from_utf8(zwctl_alone(&["status", "--help"]).stdout).unwrap();
    assert!(
        help.contains("table") && !help.contains("mermaid") && !help.contains("- wide"),
        "status --help lists only what status writes:\n{help}"
    );
    let help = String::from_utf8(zwctl_alone(&["zones", "map", "--help"]).stdout).unwrap();
    assert!(help.contains("mermaid") && help.contains("dot"), "{help}");
}
