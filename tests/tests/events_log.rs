//! `--events-log` as root against the real enforcer, plugin and traffic: learning, an
//! approval, a violation in monitor, a drop in enforce, a zone and an endpoint
//! quarantined and released and a mode change each write their JSON line; every line
//! is valid against the schema shipped in docs/events.schema.json (checked with the
//! Python `jsonschema` package of the venv scripts/install-deps --tests creates), and
//! the schema refuses a line that breaks it. A file moved away (as logrotate's
//! `create` does), with or without SIGHUP, is reopened at its path and no line is
//! lost: the audit sequence numbers of the lines are contiguous and
//! `zonewarden_events_lost_total` stays 0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::web::{metric, scrape};
use zonewarden_tests::{require_root, wait};

/// The Python of the venv scripts/install-deps --tests creates (it has `jsonschema`).
const PYTHON: &str = "/opt/zonewarden-tests/kubernetes-validate/bin/python";
const LISTEN: &str = "127.0.0.1:19931";

/// Validates every line of `lines` against the shipped schema; prints one line per
/// invalid event.
const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
bad = 0
for n, line in enumerate(open(sys.argv[2]), 1):
    for error in validator.iter_errors(json.loads(line)):
        bad += 1
        print(f"line {n}: {error.message} at {list(error.absolute_path)}: {line.strip()}")
sys.exit(1 if bad else 0)
"#;

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.schema.json")
}

/// Runs the validator on `lines`: (valid, what it said).
fn validate(dir: &Path, lines: &[String]) -> (bool, String) {
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} is missing: run scripts/install-deps --tests (as root), which creates \
         that venv with the jsonschema package"
    );
    let file = dir.join("to-validate.jsonl");
    std::fs::write(
        &file,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let out = Command::new(PYTHON)
        .args(["-c", VALIDATE])
        .arg(schema())
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn parsed(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Waits until `path` holds a line that `wanted` accepts; returns it.
fn wait_line(path: &Path, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    wait_line_doing(path, what, || {}, wanted)
}

/// [`wait_line`], doing `action` (e.g. a connection) before each look.
fn wait_line_doing(
    path: &Path,
    what: &str,
    mut action: impl FnMut(),
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let mut found = None;
    wait::until(what, Duration::from_secs(15), || {
        action();
        found = parsed(&lines_of(path)).into_iter().find(|v| wanted(v));
        found.is_some()
    });
    found.unwrap()
}

fn is(v: &Value, kind: &str, edge: &str) -> bool {
    v["kind"] == kind && v["edge"] == edge
}

#[test]
fn every_event_kind_is_one_json_line_valid_against_the_schema_and_rotation_loses_none() {
    require_root!();
    let mut node = Node::new();
    let log = node.dir.path().join("events.jsonl");
    let log_arg = log.display().to_string();
    node.start_enforcer_with(&[
        "--events-log",
        &log_arg,
        "--seen-timeout-secs",
        "1",
        "--web-listen",
        LISTEN,
    ]);
    let list = Conflist::routed(&node, "zw-events", "10.191.0.0/24");
    let web = add_pod(&node, &list, "web", "shop/web");
    let db = add_pod(&node, &list, "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:6379"]);

    // Learn: the new edge is one line, with both ends' pods and addresses.
    assert!(connects(&web.netns, &db.target(5432, "tcp")));
    let learned = wait_line(&log, "the learned edge's line", |v| {
        is(v, "edgeLearned", "shop/web->shop/db:5432/tcp")
    });
    assert_eq!(learned["srcAddress"], web.ip.as_str(), "{learned}");
    assert_eq!(learned["dstAddress"], db.ip.as_str(), "{learned}");
    assert_eq!(learned["dstPort"], 5432, "{learned}");
    assert_eq!(learned["protocol"], "tcp", "{learned}");
    assert_eq!(learned["srcNamespace"], "shop", "{learned}");
    assert!(learned["dstPod"].is_string(), "the pod is named: {learned}");

    // Approve, then monitor: an unapproved connection passes and is a violation.
    node.zwctl(&[
        "profile",
        "approve",
        "shop/db",
        "--all",
        "--comment",
        "CHG-1",
    ]);
    node.zwctl(&["mode", "set", "shop/db", "monitor"]);
    let violation = wait_line_doing(
        &log,
        "the violation's line",
        || {
            assert!(
                connects(&web.netns, &db.target(6379, "tcp")),
                "monitor drops nothing"
            )
        },
        |v| is(v, "violation", "shop/web->shop/db:6379/tcp"),
    );
    assert_eq!(violation["reportedBy"], "shop/db", "{violation}");

    // Enforce: the same connection is dropped.
    node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    let drop = wait_line_doing(
        &log,
        "the drop's line",
        || {
            assert!(
                !connects(&web.netns, &db.target(6379, "tcp")),
                "enforce drops it"
            )
        },
        |v| is(v, "drop", "shop/web->shop/db:6379/tcp"),
    );
    assert_eq!(drop["reason"], "unapproved", "{drop}");

    // Quarantine, zone and endpoint, set and lifted.
    node.zwctl(&["quarantine", "--zone", "shop/web", "--comment", "INC-7"]);
    node.zwctl(&["unquarantine", "--zone", "shop/web"]);
    let short: String = db.at.container_id.chars().take(12).collect();
    node.zwctl(&["quarantine", "--endpoint", &short]);
    node.zwctl(&["unquarantine", "--endpoint", &short]);
    let set = wait_line(&log, "the endpoint quarantine's line", |v| {
        v["kind"] == "quarantine" && v["scope"] == "endpoint" && v["action"] == "set"
    });
    assert_eq!(set["containerId"], db.at.container_id.as_str(), "{set}");
    assert_eq!(set["zone"], "shop/db", "{set}");
    assert_eq!(set["addresses"][0], db.ip.as_str(), "{set}");
    let zone = wait_line(&log, "the zone quarantine's line", |v| {
        v["kind"] == "quarantine" && v["scope"] == "zone" && v["action"] == "set"
    });
    assert_eq!(zone["zone"], "shop/web", "{zone}");
    assert_eq!(zone["reason"], "INC-7", "{zone}");
    assert!(zone["auditSeq"].as_u64().unwrap() > 0, "{zone}");
    wait_line(&log, "the lifted quarantines' lines", |v| {
        v["kind"] == "quarantine" && v["scope"] == "endpoint" && v["action"] == "lifted"
    });

    // Rotation as logrotate's `create`: moved away, nothing told; then moved and SIGHUP.
    let first = node.dir.path().join("events.jsonl.1");
    std::fs::rename(&log, &first).unwrap();
    node.zwctl(&["mode", "set", "shop/web", "monitor"]);
    let mode = wait_line(&log, "a line in the new file after the move", |v| {
        v["kind"] == "policyChange" && v["action"] == "mode" && v["zone"] == "shop/web"
    });
    assert_eq!(mode["target"], "monitor", "{mode}");
    let second = node.dir.path().join("events.jsonl.2");
    std::fs::rename(&log, &second).unwrap();
    let pid = node.enforcer_pid().expect("the enforcer runs").to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    node.zwctl(&["mode", "set", "shop/web", "learn"]);
    wait_line(&log, "a line in the new file after SIGHUP", |v| {
        v["kind"] == "policyChange" && v["target"] == "learn"
    });
    assert!(
        node.enforcer_pid().is_some(),
        "SIGHUP reopens the log, it does not stop the enforcer"
    );

    // Every kind is there, and every line of every file is valid.
    let all: Vec<String> = [&first, &second, &log]
        .iter()
        .flat_map(|p| lines_of(p))
        .collect();
    let events = parsed(&all);
    for kind in [
        "edgeLearned",
        "violation",
        "drop",
        "quarantine",
        "policyChange",
    ] {
        assert!(
            events.iter().any(|v| v["kind"] == kind),
            "no {kind} line in {all:#?}"
        );
    }
    for action in ["approve", "mode"] {
        assert!(
            events.iter().any(|v| v["action"] == action),
            "no {action} policy change in {all:#?}"
        );
    }
    let (valid, said) = validate(node.dir.path(), &all);
    assert!(
        valid,
        "lines invalid against docs/events.schema.json:\n{said}"
    );

    // None lost: the audited lines are numbered 1..=N like the audit log, no gap.
    let mut seqs: Vec<u64> = events
        .iter()
        .filter_map(|v| v["auditSeq"].as_u64())
        .collect();
    seqs.sort_unstable();
    let audit = node.items(&["audit", "log"]);
    let expected: Vec<u64> = (1..=audit.len() as u64).collect();
    assert_eq!(seqs, expected, "every audit entry has exactly one line");
    // And the enforcer counts every line it wrote, none lost (a late report may still
    // be written meanwhile: the files are read again until they agree).
    wait::until(
        "zonewarden_events_written_total to match the lines in the files",
        Duration::from_secs(10),
        || {
            let metrics = scrape(&node, LISTEN);
            assert_eq!(
                metric(&metrics, "zonewarden_events_lost_total"),
                Some(0.0),
                "{metrics}"
            );
            let lines = [&first, &second, &log]
                .iter()
                .map(|p| lines_of(p).len())
                .sum::<usize>();
            metric(&metrics, "zonewarden_events_written_total") == Some(lines as f64)
        },
    );

    // zwctl status says where the lines go and that none was lost.
    let status = node.zwctl(&["status"]);
    let events_log = &status["eventsLog"];
    assert_eq!(events_log["destination"], log_arg.as_str(), "{status}");
    assert_eq!(events_log["lost"], 0, "{status}");
    assert!(events_log["written"].as_u64().unwrap() > 0, "{status}");

    // The schema is no formality: a drop without its reason, and an unknown field,
    // are refused.
    let mut broken = drop.clone();
    broken.as_object_mut().unwrap().remove("reason");
    let mut extra = violation.clone();
    extra["surprise"] = Value::from(1);
    for bad in [broken, extra] {
        let (valid, said) = validate(node.dir.path(), &[bad.to_string()]);
        assert!(!valid, "the schema accepts {bad}: {said}");
    }
}

/// The example line of every kind in the operator guide is valid, and there is one
/// of each kind.
#[test]
fn the_operator_guide_examples_are_valid_against_the_schema() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operator-guide.md");
    let text = std::fs::read_to_string(&guide).unwrap();
    let examples: Vec<String> = text
        .split("One line of each kind:")
        .nth(1)
        .expect("the guide shows one line of each kind")
        .lines()
        .skip_while(|l| !l.starts_with('{'))
        .take_while(|l| l.starts_with('{'))
        .map(str::to_owned)
        .collect();
    let kinds: std::collections::BTreeSet<String> = parsed(&examples)
        .iter()
        .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "drop",
            "edgeLearned",
            "policyChange",
            "quarantine",
            "violation"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let (valid, said) = validate(dir.path(), &examples);
    assert!(valid, "the guide's examples are invalid:\n{said}");
}
