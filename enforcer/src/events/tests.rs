use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zonewarden_profiles::Edge;

use super::writer::{Destination, EventsLog};
use super::*;

fn edge() -> Edge {
    "shop/web->shop/db:5432/tcp".parse().unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn line(event: Event) -> Value {
    serde_json::to_value(EventLine {
        schema_version: SCHEMA_VERSION,
        time: rfc3339_utc(0),
        node: "node-a".into(),
        event,
    })
    .unwrap()
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
    assert_eq!(rfc3339_utc(1_796_053_281_007), "2026-11-30T15:41:21.007Z");
    assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59.999Z");
}

#[test]
fn a_drop_is_one_flat_camel_case_object_with_its_kind() {
    let mut flow = Flow::new(&edge(), ip("10.0.0.1"), 40000, ip("10.0.0.2"));
    flow.reason = Some("unapproved");
    flow.reported_by = Some("shop/db".into());
    flow.profile_version = Some(3);
    flow.dst_pod = Some("shop/db-0".into());
    assert_eq!(
        line(Event::Drop(flow)),
        json!({
            "schemaVersion": 1,
            "time": "1970-01-01T00:00:00.000Z",
            "node": "node-a",
            "kind": "drop",
            "edge": "shop/web->shop/db:5432/tcp",
            "srcZone": "shop/web",
            "srcNamespace": "shop",
            "dstZone": "shop/db",
            "dstNamespace": "shop",
            "dstPod": "shop/db-0",
            "srcAddress": "10.0.0.1",
            "srcPort": 40000,
            "dstAddress": "10.0.0.2",
            "dstPort": 5432,
            "protocol": "tcp",
            "reason": "unapproved",
            "reportedBy": "shop/db",
            "profileVersion": 3
        })
    );
}

fn entry(action: Action, zone: &str, target: &str) -> AuditEntry {
    AuditEntry {
        seq: 7,
        at_unix_ms: 1000,
        who: "alice".into(),
        node: None,
        action,
        zone: Some(zone.into()),
        target: Some(target.into()),
        detail: "something".into(),
        version_before: Some(1),
        version_after: Some(2),
        reason: Some("ticket 42".into()),
        prev: String::new(),
        hash: String::new(),
    }
}

fn audited_event(entry: &AuditEntry) -> Value {
    line(event_of_audit(entry))
}

#[test]
fn quarantines_say_set_or_lifted_and_zone_or_endpoint() {
    let zone = audited_event(&entry(Action::Quarantine, "shop/web", "shop/web"));
    assert_eq!(zone["kind"], "quarantine");
    assert_eq!(zone["action"], "set");
    assert_eq!(zone["scope"], "zone");
    assert_eq!(zone["namespace"], "shop");
    assert_eq!(zone["auditSeq"], 7);
    assert_eq!(zone["user"], "alice");
    assert!(zone.get("containerId").is_none(), "{zone}");
    let endpoint = audited_event(&entry(Action::Unquarantine, "shop/web", "abc123"));
    assert_eq!(endpoint["action"], "lifted");
    assert_eq!(endpoint["scope"], "endpoint");
    assert_eq!(endpoint["containerId"], "abc123");
}

#[test]
fn other_audited_actions_are_policy_changes() {
    let mode = audited_event(&entry(Action::Mode, "shop/web", "enforce"));
    assert_eq!(mode["kind"], "policyChange");
    assert_eq!(mode["action"], "mode");
    assert_eq!(mode["versionBefore"], 1);
    assert_eq!(mode["versionAfter"], 2);
    assert_eq!(mode["reason"], "ticket 42");
}

fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} lines in {}, found {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn learned_event(port: u16) -> Event {
    let edge: Edge = format!("shop/web->shop/db:{port}/tcp").parse().unwrap();
    Event::EdgeLearned(Flow::new(&edge, ip("10.0.0.1"), 1, ip("10.0.0.2")))
}

#[test]
fn a_file_moved_away_is_reopened_at_its_path_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let log = EventsLog::start(Destination::File(path.clone()), "n".into(), None).unwrap();
    log.send(0, learned_event(1));
    wait_for_lines(&path, 1);
    // Rotation as logrotate's `create`: the file is renamed, nothing told.
    let rotated = dir.path().join("events.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    log.send(0, learned_event(2));
    let new = wait_for_lines(&path, 1);
    assert_eq!(new[0]["dstPort"], 2);
    // Moved again, and told (SIGHUP).
    std::fs::rename(&path, dir.path().join("events.jsonl.2")).unwrap();
    log.reopen();
    log.send(0, learned_event(3));
    assert_eq!(wait_for_lines(&path, 1)[0]["dstPort"], 3);
    assert_eq!(wait_for_lines(&rotated, 1).len(), 1);
    let totals = log.totals();
    assert_eq!(
        (totals.written, totals.lost, totals.write_errors),
        (3, 0, 0)
    );
}

#[test]
fn a_failing_write_is_counted_as_lost_and_the_writer_goes_on() {
    // /dev/full opens, and every write to it fails (ENOSPC).
    let log = EventsLog::start(Destination::File("/dev/full".into()), "n".into(), None).unwrap();
    log.send(0, learned_event(1));
    log.send(0, learned_event(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.totals().lost < 2 {
        assert!(
            Instant::now() < deadline,
            "lines not counted lost: {:?}",
            log.totals()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let totals = log.totals();
    assert!(totals.write_errors >= 1, "{totals:?}");
    assert_eq!(totals.written, 0, "{totals:?}");
    // The writer is still there: the next line is tried (and lost) too.
    log.send(0, learned_event(3));
    while log.totals().lost < 3 {
        assert!(
            Instant::now() < deadline,
            "the writer stopped: {:?}",
            log.totals()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_unopenable_path_is_refused_at_start_with_the_path() {
    let err = EventsLog::start(
        Destination::File("/nonexistent-dir/events.jsonl".into()),
        "n".into(),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-dir/events.jsonl"),
        "{err}"
    );
}

#[test]
fn destination_dash_is_stdout() {
    assert_eq!(Destination::parse("-").unwrap(), Destination::Stdout);
    assert!(Destination::parse("").is_err());
}
