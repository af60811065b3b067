//! The chain check, pure: the bytes of `audit.log` in, what is wrong with them out.
//!
//! [`verify`] names every edited, unreadable, truncated, dropped or reordered
//! entry by its line and sequence number; [`tail`] tells the appender where to
//! continue (or that the tail is corrupt and a new chain segment must start).

use std::collections::HashMap;

use super::entry::{Action, AuditEntry, GENESIS, hex_sha256, short};

/// What kind of damage a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The line is not an audit entry (an edit broke its JSON).
    Unreadable,
    /// The last line is cut short (a write that did not finish, or a truncation).
    Truncated,
    /// The entry's bytes or fields are not what the enforcer wrote.
    Edited,
    /// Entries are missing.
    Dropped,
    /// Entries are out of order.
    Reordered,
    /// The enforcer found a corrupt tail and started a new chain segment here.
    Restarted,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::Truncated => "truncated",
            Self::Edited => "edited",
            Self::Dropped => "dropped",
            Self::Reordered => "reordered",
            Self::Restarted => "restarted",
        }
    }
}

/// One finding, about one line (1-based) and the entry expected or found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub seq: u64,
    pub kind: ProblemKind,
    pub message: String,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    /// Lines that hold a readable entry.
    pub entries: usize,
    pub lines: usize,
    /// The last readable entry's seq and `hash`: the chain head.
    pub head: Option<(u64, String)>,
    /// Ordered by line.
    pub problems: Vec<Problem>,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One line of the file as read.
struct Line<'a> {
    bytes: &'a [u8],
    /// The hash the next entry's `prev` must hold.
    hash: String,
    /// Why it is no entry, and whether its JSON simply stops (cut short).
    entry: Result<AuditEntry, (String, bool)>,
    /// Whether it ends the file without a newline.
    unterminated: bool,
}

fn split(bytes: &[u8]) -> Vec<Line<'_>> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let unterminated = lines.last().is_some_and(|l| !l.is_empty());
    if !unterminated {
        lines.pop();
    }
    let count = lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| Line {
            bytes,
            hash: hex_sha256(bytes),
            entry: parse(bytes),
            unterminated: unterminated && i + 1 == count,
        })
        .collect()
}

fn parse(bytes: &[u8]) -> Result<AuditEntry, (String, bool)> {
    serde_json::from_slice::<AuditEntry>(bytes).map_err(|err| (err.to_string(), err.is_eof()))
}

/// Why an entry that parses is not what the enforcer wrote, if it is not.
fn tampered(line: &Line<'_>, entry: &AuditEntry) -> Option<String> {
    let computed = entry.content_hash();
    if computed != entry.hash {
        return Some(format!(
            "its fields hash to {}, not to its recorded hash {}",
            short(&computed),
            short(&entry.hash)
        ));
    }
    if entry.to_line().as_bytes() != line.bytes {
        return Some(
            "its bytes differ from the entry it encodes (spacing or escapes were changed)".into(),
        );
    }
    None
}

/// The readable entries with their 1-based line, and how many lines are not.
pub fn entries(bytes: &[u8]) -> (Vec<(usize, AuditEntry)>, usize) {
    let mut unreadable = 0;
    let entries = split(bytes)
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| match l.entry {
            Ok(e) => Some((i + 1, e)),
            Err(_) => {
                unreadable += 1;
                None
            }
        })
        .collect();
    (entries, unreadable)
}

/// Checks every line and every link of the chain; `written` is the head the
/// running enforcer last appended (seq, hash), which shows entries dropped from the end.
pub fn verify(bytes: &[u8], written: Option<(u64, &str)>) -> Verification {
    let lines = split(bytes);
    let mut v = Verification {
        lines: lines.len(),
        ..Verification::default()
    };
    let mut good = vec![false; lines.len()];
    let by_hash: HashMap<&str, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l.hash.as_str(), i))
        .collect();

    // Each line on its own.
    let mut expected_seq = 1;
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        match &line.entry {
            Err((why, cut_short)) => {
                let (kind, what) = if line.unterminated || *cut_short {
                    (ProblemKind::Truncated, "is truncated (cut short)")
                } else {
                    (ProblemKind::Unreadable, "is no audit entry (edited)")
                };
                v.problems.push(Problem {
                    line: n,
                    seq: expected_seq,
                    kind,
                    message: format!("line {n} (expected entry seq {expected_seq}) {what}: {why}"),
                });
                expected_seq += 1;
            }
            Ok(entry) => {
                v.entries += 1;
                v.head = Some((entry.seq, entry.hash.clone()));
                let expected = if entry.seq == expected_seq {
                    String::new()
                } else {
                    format!(", expected seq {expected_seq}")
                };
                if let Some(why) = tampered(line, entry) {
                    v.problems.push(Problem {
                        line: n,
                        seq: entry.seq,
                        kind: ProblemKind::Edited,
                        message: format!(
                            "entry seq {} (line {n}{expected}) was edited: {why}",
                            entry.seq
                        ),
                    });
                } else {
                    good[i] = true;
                }
                expected_seq = entry.seq + 1;
            }
        }
    }

    // The links between lines.
    let mut i = 0;
    let mut moved_before = false;
    // After two swapped lines, the line after them continues from the first one.
    let mut resume: Option<usize> = None;
    while i < lines.len() {
        let n = i + 1;
        let Ok(entry) = &lines[i].entry else {
            i += 1;
            continue;
        };
        let (want_prev, want_seq, pred_ok) = match resume.take().or(i.checked_sub(1)) {
            None => (GENESIS, 1, true),
            Some(p) => (
                lines[p].hash.as_str(),
                lines[p].entry.as_ref().map_or(0, |e| e.seq + 1),
                good[p],
            ),
        };
        let moved = std::mem::take(&mut moved_before);
        if entry.action == Action::ChainRestart {
            let from = by_hash.get(entry.prev.as_str()).copied().filter(|j| *j < i);
            let after = match from {
                Some(j) => format!(
                    "after entry seq {} (line {})",
                    lines[j].entry.as_ref().map_or(0, |e| e.seq),
                    j + 1
                ),
                None if entry.prev == GENESIS => "from the start".into(),
                None => format!("after {} which is no earlier line", short(&entry.prev)),
            };
            v.problems.push(Problem {
                line: n,
                seq: entry.seq,
                kind: ProblemKind::Restarted,
                message: format!(
                    "entry seq {} (line {n}): the enforcer found the log corrupt and restarted the chain {after}: {}",
                    entry.seq, entry.detail
                ),
            });
            i += 1;
            continue;
        }
        if entry.prev == want_prev || !pred_ok || !good[i] {
            // An edited or unreadable line is already reported.
            i += 1;
            continue;
        }
        let found = by_hash.get(entry.prev.as_str()).copied();
        match found {
            Some(j) if j > i => {
                // Two neighbours swapped: the next line continues the chain here.
                let swapped = lines.get(i + 1).and_then(|l| l.entry.as_ref().ok());
                if j == i + 1 && swapped.is_some_and(|s| s.prev == want_prev) {
                    let s = swapped.map_or(0, |s| s.seq);
                    v.problems.push(Problem {
                        line: n,
                        seq: entry.seq,
                        kind: ProblemKind::Reordered,
                        message: format!(
                            "entries seq {} (line {n}) and seq {s} (line {}) are swapped: expected seq {s} at line {n}",
                            entry.seq,
                            n + 1
                        ),
                    });
                    resume = Some(i);
                    i += 2;
                    continue;
                }
                v.problems.push(reordered(n, entry, want_seq, &lines[j], j));
                moved_before = true;
            }
            Some(j) => {
                if !moved {
                    v.problems.push(reordered(n, entry, want_seq, &lines[j], j));
                    moved_before = true;
                }
            }
            None if entry.seq > want_seq && i > 0 => v.problems.push(Problem {
                line: n,
                seq: want_seq,
                kind: ProblemKind::Dropped,
                message: format!(
                    "{} dropped between line {i} (seq {}) and line {n} (seq {}): seq {} chains to an entry that is not in the log",
                    seqs(want_seq, entry.seq - 1),
                    want_seq - 1,
                    entry.seq,
                    entry.seq
                ),
            }),
            None if entry.seq > want_seq => v.problems.push(Problem {
                line: n,
                seq: want_seq,
                kind: ProblemKind::Dropped,
                message: format!(
                    "{} dropped from the start: the first line holds seq {}",
                    seqs(want_seq, entry.seq - 1),
                    entry.seq
                ),
            }),
            None if i == 0 => v.problems.push(Problem {
                line: n,
                seq: entry.seq,
                kind: ProblemKind::Edited,
                message: format!(
                    "entry seq {} (line 1) does not start a chain: its prev is {}, not the genesis hash; lines before it were removed or it was edited",
                    entry.seq,
                    short(&entry.prev)
                ),
            }),
            None => v.problems.push(Problem {
                line: i,
                seq: want_seq.saturating_sub(1),
                kind: ProblemKind::Edited,
                message: format!(
                    "entry seq {} (line {i}) was edited and its hash recomputed: entry seq {} (line {n}) chains to a different version of it",
                    want_seq.saturating_sub(1),
                    entry.seq
                ),
            }),
        }
        i += 1;
    }

    // Entries dropped from the end: only the writer knows how far it got.
    // A cut-off last line is reported already.
    let cut_off = lines.last().is_some_and(|l| l.entry.is_err());
    if let (Some((seq, hash)), false) = (written, cut_off) {
        let last = lines
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, l)| l.entry.as_ref().ok().map(|e| (i + 1, e)));
        let (at, ends) = last.map_or((0, 0), |(at, e)| (at, e.seq));
        if ends < seq || (ends == seq && last.is_some_and(|(_, e)| e.hash != hash)) {
            v.problems.push(Problem {
                line: lines.len() + 1,
                seq: ends + 1,
                kind: ProblemKind::Dropped,
                message: format!(
                    "the log ends at seq {ends} (line {at}) but its writer recorded entries up to seq {seq} (hash {}): {} dropped from the end",
                    short(hash),
                    seqs(ends + 1, seq)
                ),
            });
        }
    }
    v.problems.sort_by_key(|p| p.line);
    v
}

fn reordered(n: usize, entry: &AuditEntry, want_seq: u64, pred: &Line<'_>, j: usize) -> Problem {
    let pred_seq = pred.entry.as_ref().map_or(0, |e| e.seq);
    Problem {
        line: n,
        seq: entry.seq,
        kind: ProblemKind::Reordered,
        message: format!(
            "entry seq {} (line {n}) is out of order: expected seq {want_seq} here; it belongs right after seq {pred_seq} (line {})",
            entry.seq,
            j + 1
        ),
    }
}

fn seqs(from: u64, to: u64) -> String {
    if from >= to {
        format!("entry seq {from} was")
    } else {
        format!("entries seq {from}..={to} were")
    }
}

/// Where appending continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// An empty (or missing) log: start at seq 1 after [`GENESIS`].
    Empty,
    /// The last line is a sound entry: continue after it.
    Sound { next_seq: u64, prev: String },
    /// The last line is not a sound entry: append a chain-restart entry that
    /// chains to the last sound line (or [`GENESIS`]), after a newline when
    /// `needs_newline`.
    Corrupt {
        next_seq: u64,
        prev: String,
        needs_newline: bool,
        why: String,
    },
}

/// Whether the log holds the entry `seq` as the line whose SHA-256 is `line_hash`: the
/// head the store's index saw is still in the log.
pub fn holds(bytes: &[u8], seq: u64, line_hash: &str) -> bool {
    split(bytes)
        .iter()
        .any(|l| l.hash == line_hash && l.entry.as_ref().is_ok_and(|e| e.seq == seq))
}

/// The last sound entry of the log: its seq and the SHA-256 of its line.
pub fn last_head(bytes: &[u8]) -> Option<(u64, String)> {
    split(bytes)
        .iter()
        .rev()
        .find_map(|l| l.entry.as_ref().ok().map(|e| (e.seq, l.hash.clone())))
}

/// Checks the last line (its bytes and its hash) and, when it is not sound, finds
/// the last line that is.
pub fn tail(bytes: &[u8]) -> Tail {
    let lines = split(bytes);
    let sound = |l: &Line<'_>| {
        l.entry
            .as_ref()
            .ok()
            .filter(|e| tampered(l, e).is_none())
            .map(|e| e.seq)
    };
    let Some(last) = lines.last() else {
        return Tail::Empty;
    };
    if let Some(seq) = sound(last) {
        return Tail::Sound {
            next_seq: seq + 1,
            prev: last.hash.clone(),
        };
    }
    let n = lines.len();
    let why = match &last.entry {
        Err((err, _)) => format!("line {n}, the last, is no audit entry: {err}"),
        Ok(e) => format!(
            "line {n}, the last (seq {}), was edited: {}",
            e.seq,
            tampered(last, e).unwrap_or_default()
        ),
    };
    let good = lines
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, l)| sound(l).map(|seq| (i, seq)));
    let max_seq = lines
        .iter()
        .filter_map(|l| l.entry.as_ref().ok().map(|e| e.seq))
        .max()
        .unwrap_or(0);
    let (prev, why) = match good {
        Some((i, seq)) => (
            lines[i].hash.clone(),
            format!("{why}; the last sound entry is seq {seq} (line {})", i + 1),
        ),
        None => (
            GENESIS.to_owned(),
            format!("{why}; no line is a sound entry"),
        ),
    };
    Tail::Corrupt {
        next_seq: max_seq + 1,
        prev,
        needs_newline: last.unterminated,
        why,
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
