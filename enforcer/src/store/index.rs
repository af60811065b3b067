//! What the local store holds, kept apart from the files themselves: `index.log`, an
//! append-only journal of the files created and removed (endpoints, profiles, the
//! zone table, the quarantine list) and of the audit log's head after each change.
//!
//! A deleted endpoint file would silently take a live pod's rules away, a deleted
//! profile shrink a zone's approvals, a deleted quarantine list lift a quarantine,
//! and an emptied `audit.log` would start a new chain that verifies as intact. At
//! start the store compares the disk with the index: a file the index lists but the
//! disk lacks is an error that names it, exactly like a corrupt one; an audit log
//! that no longer reaches the head the index saw last is an error too. Files the
//! index does not know (written just before a crash) are taken in.
//!
//! One line per change, fsynced (about half a millisecond), written after the
//! change's audit entry (a removal is written before its file goes); when the journal grows past four times what it describes it
//! is rewritten as one snapshot line (temporary file, fsync, rename).

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::local::io_error;

/// The audit log's head after a change: its last entry's seq and the SHA-256 of that
/// line (what the next entry's `prev` is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub line_hash: String,
}

/// One line of the journal.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    /// A snapshot replaces everything before it: these are all the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot: Option<BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    created: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit: Option<AuditHead>,
}

/// The journal and what it says: the files (paths relative to the state directory)
/// and the last audit head.
#[derive(Debug)]
pub struct StoreIndex {
    path: PathBuf,
    files: BTreeSet<String>,
    anchor: Option<AuditHead>,
    created: BTreeSet<String>,
    removed: BTreeSet<String>,
    lines: usize,
    /// Whether an index existed when the store was opened (an older store has none).
    pub existed: bool,
}

/// The journal's file name in the state directory.
pub const FILE_NAME: &str = "index.log";

impl StoreIndex {
    /// Reads the journal of `state_dir`; an absent one is empty (`existed` false). A
    /// cut last line (a crash while appending) is ignored; any other unreadable line
    /// is corruption.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(FILE_NAME);
        let mut index = Self {
            path: path.clone(),
            files: BTreeSet::new(),
            anchor: None,
            created: BTreeSet::new(),
            removed: BTreeSet::new(),
            lines: 0,
            existed: false,
        };
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(index),
            Err(err) => return Err(io_error("read", &path)(err)),
        };
        index.existed = true;
        let lines: Vec<&str> = text.lines().collect();
        let mut cut = false;
        for (n, raw) in lines.iter().enumerate() {
            let line: Line = match serde_json::from_str(raw) {
                Ok(line) => line,
                Err(_) if n + 1 == lines.len() && !text.ends_with('\n') => {
                    cut = true;
                    break;
                }
                Err(err) => {
                    return Err(StoreError::Corrupt {
                        path: path.clone(),
                        detail: format!("line {}: {err}", n + 1),
                    });
                }
            };
            index.apply(line);
            index.lines += 1;
        }
        if cut {
            // The next line must not be appended to the cut one.
            index.compact()?;
        }
        Ok(index)
    }

    fn apply(&mut self, line: Line) {
        if let Some(all) = line.snapshot {
            self.files = all;
        }
        for name in line.created {
            self.files.insert(name);
        }
        for name in line.removed {
            self.files.remove(&name);
        }
        if line.audit.is_some() {
            self.anchor = line.audit;
        }
    }

    /// The files the store holds: what the journal says, with the changes not yet
    /// committed.
    pub fn files(&self) -> BTreeSet<String> {
        self.files
            .union(&self.created)
            .filter(|name| !self.removed.contains(*name))
            .cloned()
            .collect()
    }

    /// The audit head the journal saw last.
    pub fn anchor(&self) -> Option<&AuditHead> {
        self.anchor.as_ref()
    }

    /// Notes a file that did not exist before this write.
    pub fn created(&mut self, name: String) {
        self.removed.remove(&name);
        if !self.files.contains(&name) {
            self.created.insert(name);
        }
    }

    /// Notes a file that was removed.
    pub fn removed(&mut self, name: String) {
        self.created.remove(&name);
        if self.files.contains(&name) {
            self.removed.insert(name);
        }
    }

    /// Appends what changed since the last commit, with the audit head after it, as
    /// one fsynced line. Nothing to say: nothing is written.
    pub fn commit(&mut self, audit: Option<AuditHead>) -> Result<(), StoreError> {
        if self.created.is_empty() && self.removed.is_empty() && audit.is_none() {
            return Ok(());
        }
        let line = Line {
            snapshot: None,
            created: self.created.iter().cloned().collect(),
            removed: self.removed.iter().cloned().collect(),
            audit,
        };
        self.append(&line)?;
        self.created.clear();
        self.removed.clear();
        self.apply(line);
        self.lines += 1;
        if self.lines > 4 * self.files.len() + 256 {
            self.compact()?;
        }
        Ok(())
    }

    /// Replaces the journal with one snapshot of `files` and `audit` (a new store, a
    /// store taken as it is, or a compaction).
    pub fn reset(
        &mut self,
        files: BTreeSet<String>,
        audit: Option<AuditHead>,
    ) -> Result<(), StoreError> {
        self.files = files;
        self.anchor = audit;
        self.created.clear();
        self.removed.clear();
        self.compact()
    }

    fn compact(&mut self) -> Result<(), StoreError> {
        let line = Line {
            snapshot: Some(self.files.clone()),
            audit: self.anchor.clone(),
            ..Line::default()
        };
        let mut text = serde_json::to_string(&line).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        text.push('\n');
        let mut file = atomic_write_file::AtomicWriteFile::open(&self.path)
            .map_err(io_error("open for writing", &self.path))?;
        file.write_all(text.as_bytes())
            .map_err(io_error("write", &self.path))?;
        file.commit().map_err(io_error("commit", &self.path))?;
        self.lines = 1;
        self.existed = true;
        Ok(())
    }

    fn append(&self, line: &Line) -> Result<(), StoreError> {
        let mut text = serde_json::to_string(line).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        text.push('\n');
        let created = !self.path.exists();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(io_error("open for appending", &self.path))?;
        file.write_all(text.as_bytes())
            .map_err(io_error("append to", &self.path))?;
        // Only a removal must be on disk before its file goes (a lost removal line
        // would name a missing file at the next start). A lost creation line is taken
        // in at start, and a lost audit head leaves an older one, which the log still
        // holds: neither needs an fsync of its own.
        if !line.removed.is_empty() || line.snapshot.is_some() {
            file.sync_data().map_err(io_error("fsync", &self.path))?;
        }
        if created && let Some(dir) = self.path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("fsync", dir))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> Option<AuditHead> {
        Some(AuditHead {
            seq,
            line_hash: format!("h{seq}"),
        })
    }

    #[test]
    fn the_journal_replays_to_the_files_and_the_last_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = StoreIndex::open(dir.path()).unwrap();
        assert!(!index.existed);
        index.created("endpoints/a.json".into());
        index.created("zones.json".into());
        index.commit(head(1)).unwrap();
        index.created("endpoints/b.json".into());
        index.removed("endpoints/a.json".into());
        index.commit(head(2)).unwrap();
        index.commit(None).unwrap();
        let again = StoreIndex::open(dir.path()).unwrap();
        assert!(again.existed);
        let files: Vec<String> = again.files().into_iter().collect();
        assert_eq!(files, ["endpoints/b.json", "zones.json"]);
        assert_eq!(again.anchor(), head(2).as_ref());
    }

    #[test]
    fn a_cut_last_line_is_ignored_and_a_damaged_one_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = StoreIndex::open(dir.path()).unwrap();
        index.created("zones.json".into());
        index.commit(head(1)).unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("{\"created\":[\"endpoints/x");
        fs::write(&path, &text).unwrap();
        let mut again = StoreIndex::open(dir.path()).unwrap();
        assert_eq!(
            again.files().len(),
            1,
            "a crash mid-append loses only that line"
        );
        // The next line is not appended to the cut one.
        again.created("quarantine.json".into());
        again.commit(head(2)).unwrap();
        let reopened = StoreIndex::open(dir.path()).unwrap();
        assert_eq!(reopened.files().len(), 2);
        assert_eq!(reopened.anchor(), head(2).as_ref());
        fs::write(&path, format!("garbage\n{text}\n")).unwrap();
        let err = StoreIndex::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("index.log") && err.contains("line 1"), "{err}");
    }

    #[test]
    fn a_long_journal_is_compacted_into_one_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = StoreIndex::open(dir.path()).unwrap();
        for i in 0..400 {
            index.created(format!("endpoints/{i}.json"));
            index.commit(head(i)).unwrap();
            index.removed(format!("endpoints/{i}.json"));
            index.commit(None).unwrap();
        }
        let text = fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            text.lines().count() < 300,
            "compacted: {} lines",
            text.lines().count()
        );
        let again = StoreIndex::open(dir.path()).unwrap();
        assert!(again.files().is_empty());
        assert_eq!(again.anchor(), head(399).as_ref());
    }
}
