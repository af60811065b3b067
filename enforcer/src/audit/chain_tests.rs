use super::*;
use crate::audit::entry::AuditRecord;

/// A sound log of `n` entries, one line each.
fn log(n: u64) -> Vec<String> {
    let mut prev = GENESIS.to_owned();
    (1..=n)
        .map(|seq| {
            let record = AuditRecord {
                at_unix_ms: 1_700_000_000_000 + i64::try_from(seq).unwrap(),
                who: "root".into(),
                action: Action::Approve,
                zone: Some("shop/db".into()),
                target: Some("shop/api->shop/db:5432/tcp".into()),
                detail: "approved 1 edge(s)".into(),
                version_before: Some(seq - 1),
                version_after: Some(seq),
                reason: None,
            };
            let line = AuditEntry::chain(record, seq, prev.clone()).to_line();
            prev = hex_sha256(line.as_bytes());
            line
        })
        .collect()
}

fn file(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

fn only_problem(v: &Verification) -> &Problem {
    assert_eq!(v.problems.len(), 1, "exactly one problem expected: {v:#?}");
    &v.problems[0]
}

#[test]
fn a_sound_log_is_intact_with_its_head() {
    let lines = log(5);
    let v = verify(&file(&lines), None);
    assert!(v.intact(), "{v:#?}");
    assert_eq!((v.entries, v.lines), (5, 5));
    let last: AuditEntry = serde_json::from_str(&lines[4]).unwrap();
    assert_eq!(v.head, Some((5, last.hash.clone())));
    assert!(verify(&file(&lines), Some((5, &last.hash))).intact());
    assert!(verify(b"", None).intact());
}

#[test]
fn an_edited_byte_is_detected_and_named() {
    let mut lines = log(5);
    lines[2] = lines[2].replace("\"who\":\"root\"", "\"who\":\"roet\"");
    let v = verify(&file(&lines), None);
    let p = only_problem(&v);
    assert_eq!(
        (p.kind, p.line, p.seq),
        (ProblemKind::Edited, 3, 3),
        "{p:?}"
    );
    assert!(
        p.message.starts_with("entry seq 3 (line 3) was edited"),
        "{p:?}"
    );
}

#[test]
fn every_single_byte_edit_is_detected() {
    let lines = log(3);
    let bytes = file(&lines);
    for at in 0..bytes.len() {
        let mut edited = bytes.clone();
        edited[at] = if edited[at] == b'7' { b'8' } else { b'7' };
        let v = verify(&edited, None);
        assert!(!v.intact(), "an edit at byte {at} went unnoticed");
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        assert!(
            v.problems.iter().any(|p| p.line == line),
            "an edit at byte {at} (line {line}) is not named: {v:#?}"
        );
    }
}

#[test]
fn a_broken_line_is_unreadable_and_named_with_its_expected_seq() {
    let mut lines = log(4);
    lines[1] = lines[1].replacen('"', "x", 1);
    let v = verify(&file(&lines), None);
    let p = only_problem(&v);
    assert_eq!(
        (p.kind, p.line, p.seq),
        (ProblemKind::Unreadable, 2, 2),
        "{p:?}"
    );
}

#[test]
fn a_dropped_line_is_detected_and_named() {
    let mut lines = log(5);
    lines.remove(2);
    let v = verify(&file(&lines), None);
    let p = only_problem(&v);
    assert_eq!(
        (p.kind, p.line, p.seq),
        (ProblemKind::Dropped, 3, 3),
        "{p:?}"
    );
    assert_eq!(
        p.message,
        "entry seq 3 was dropped between line 2 (seq 2) and line 3 (seq 4): seq 4 chains to an entry that is not in the log"
    );
}

#[test]
fn dropped_first_and_last_lines_are_detected() {
    let mut lines = log(4);
    lines.remove(0);
    let p = only_problem(&verify(&file(&lines), None)).clone();
    assert_eq!(
        (p.kind, p.line, p.seq),
        (ProblemKind::Dropped, 1, 1),
        "{p:?}"
    );

    let lines = log(4);
    let last: AuditEntry = serde_json::from_str(&lines[3]).unwrap();
    let v = verify(&file(&lines[..3]), Some((4, &last.hash)));
    let p = only_problem(&v);
    assert_eq!((p.kind, p.seq), (ProblemKind::Dropped, 4), "{p:?}");
    assert!(p.message.contains("dropped from the end"), "{p:?}");
}

#[test]
fn two_swapped_lines_are_detected_and_named() {
    let mut lines = log(5);
    lines.swap(1, 2);
    let v = verify(&file(&lines), None);
    let p = only_problem(&v);
    assert_eq!(
        (p.kind, p.line, p.seq),
        (ProblemKind::Reordered, 2, 3),
        "{p:?}"
    );
    assert_eq!(
        p.message,
        "entries seq 3 (line 2) and seq 2 (line 3) are swapped: expected seq 2 at line 2"
    );
    // The last two.
    let mut lines = log(5);
    lines.swap(3, 4);
    let p = only_problem(&verify(&file(&lines), None)).clone();
    assert_eq!((p.kind, p.line), (ProblemKind::Reordered, 4), "{p:?}");
}

#[test]
fn a_moved_line_is_reported_out_of_order() {
    let mut lines = log(6);
    let moved = lines.remove(1);
    lines.insert(3, moved);
    let v = verify(&file(&lines), None);
    assert!(!v.intact());
    assert!(
        v.problems.iter().all(|p| p.kind == ProblemKind::Reordered),
        "{v:#?}"
    );
    assert!(
        v.problems.iter().any(|p| p.line == 4 && p.seq == 2),
        "{v:#?}"
    );
}

#[test]
fn a_truncated_last_line_is_detected_and_named() {
    let lines = log(4);
    let mut bytes = file(&lines);
    bytes.truncate(bytes.len() - 40);
    let v = verify(&bytes, None);
    let p = only_problem(&v);
    assert_eq!(
        (p.kind, p.line, p.seq),
        (ProblemKind::Truncated, 4, 4),
        "{p:?}"
    );
    assert!(p.message.contains("truncated"), "{p:?}");
}

#[test]
fn a_recomputed_hash_still_breaks_the_next_link() {
    let mut lines = log(4);
    let mut entry: AuditEntry = serde_json::from_str(&lines[1]).unwrap();
    entry.who = "mallory".into();
    entry.hash = entry.content_hash();
    lines[1] = entry.to_line();
    let p = only_problem(&verify(&file(&lines), None)).clone();
    assert_eq!(
        (p.kind, p.line, p.seq),
        (ProblemKind::Edited, 2, 2),
        "{p:?}"
    );
}

#[test]
fn the_tail_of_a_sound_log_continues_the_chain() {
    assert_eq!(tail(b""), Tail::Empty);
    let lines = log(3);
    assert_eq!(
        tail(&file(&lines)),
        Tail::Sound {
            next_seq: 4,
            prev: hex_sha256(lines[2].as_bytes())
        }
    );
}

#[test]
fn a_corrupt_tail_restarts_after_the_last_sound_entry_and_verify_reports_it() {
    let lines = log(3);
    let mut bytes = file(&lines);
    bytes.truncate(bytes.len() - 10);
    let Tail::Corrupt {
        next_seq,
        prev,
        needs_newline,
        why,
    } = tail(&bytes)
    else {
        panic!("a truncated tail is corrupt");
    };
    assert_eq!(next_seq, 3);
    assert_eq!(prev, hex_sha256(lines[1].as_bytes()));
    assert!(needs_newline);
    assert!(why.contains("last sound entry is seq 2 (line 2)"), "{why}");

    // What the appender then writes: a newline, the restart, more entries.
    bytes.push(b'\n');
    let restart = AuditEntry::chain(
        AuditRecord {
            at_unix_ms: 1,
            who: "zonewarden-enforcer".into(),
            action: Action::ChainRestart,
            zone: None,
            target: None,
            detail: why,
            version_before: None,
            version_after: None,
            reason: None,
        },
        next_seq,
        prev,
    )
    .to_line();
    bytes.extend_from_slice(format!("{restart}\n").as_bytes());
    assert!(matches!(tail(&bytes), Tail::Sound { next_seq: 4, .. }));
    let v = verify(&bytes, None);
    let kinds: Vec<_> = v.problems.iter().map(|p| (p.kind, p.line)).collect();
    assert_eq!(
        kinds,
        [(ProblemKind::Truncated, 3), (ProblemKind::Restarted, 4)],
        "{v:#?}"
    );
    assert!(
        v.problems[1].message.contains("after entry seq 2 (line 2)"),
        "{v:#?}"
    );
}
