//! The appender: the one writer of `audit.log`, and its readers.
//!
//! Every append opens the file with `O_APPEND`, writes one line and `fsync`s it. The
//! registry appends a change's entry after the store and before the kernel
//! ([`AuditLog::append_now`]): when the entry cannot be written, the change is refused.
//! The next append re-reads the tail after a failed write, so a half-written line
//! starts a new chain segment instead of corrupting the next entry.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{debug, error};

use super::chain::{self, Tail, Verification};
use super::entry::{Action, AuditEntry, AuditRecord, GENESIS, hex_sha256};
use crate::registry::now_unix_ms;
use crate::store::AuditHead;

/// Who the enforcer's own entries (chain restarts) are by.
pub const ENFORCER: &str = "zonewarden-enforcer";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot read the audit log {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot append to the audit log {path}: {source}; check the disk and its permissions")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit log is disabled in this enforcer")]
    Disabled,
    #[error("an audit task failed: {0}; this is a bug, please report it")]
    Task(String),
}

/// The appender's state, behind one lock.
#[derive(Debug)]
struct Appender {
    path: PathBuf,
    /// The next seq and `prev`; `None` until the tail has been read.
    next: Option<(u64, String)>,
    /// The last entry this process wrote (seq, hash).
    written: Option<(u64, String)>,
    failures: u64,
    last_error: Option<String>,
}

/// The audit log of one enforcer; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    inner: Option<Arc<Mutex<Appender>>>,
}

/// What [`AuditLog::verify`] found, with what only the writer knows.
#[derive(Debug, Clone)]
pub struct Verified {
    pub chain: Verification,
    /// Appends that failed since the enforcer started, and the last error.
    pub failures: u64,
    pub last_error: Option<String>,
}

impl AuditLog {
    /// A log that records nothing (tests of other parts).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Opens `path` and checks its tail. A corrupt tail is logged and a
    /// chain-restart entry is appended at once; nothing here stops the enforcer.
    pub fn open(path: PathBuf) -> Self {
        let log = Self {
            inner: Some(Arc::new(Mutex::new(Appender {
                path,
                next: None,
                written: None,
                failures: 0,
                last_error: None,
            }))),
        };
        if let Some(inner) = &log.inner {
            let mut appender = inner.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(err) = appender.continue_chain() {
                error!(%err, "cannot read the audit log's tail; retrying at the next change");
                appender.failed(&err);
            }
        }
        log
    }

    pub fn path(&self) -> Option<PathBuf> {
        let inner = self.inner.as_ref()?;
        Some(
            inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .path
                .clone(),
        )
    }

    /// Appends one record durably, on the calling thread (a blocking one): the entry is
    /// on disk when this returns `Ok`. A disabled log writes nothing and succeeds.
    pub fn append_now(&self, record: AuditRecord) -> Result<Option<AuditHead>, AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let action = record.action;
        let entry = inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(record)?;
        debug!(seq = entry.seq, %action, "audit entry appended");
        Ok(Some(AuditHead {
            seq: entry.seq,
            line_hash: hex_sha256(entry.to_line().as_bytes()),
        }))
    }

    /// [`Self::append_now`] on a blocking thread, for async callers.
    pub async fn append_blocking(
        &self,
        record: AuditRecord,
    ) -> Result<Option<AuditHead>, AuditError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.append_now(record))
            .await
            .map_err(|err| AuditError::Task(err.to_string()))?
    }

    /// Appends one record durably; failures are logged and reported by `verify`.
    pub async fn append(&self, record: AuditRecord) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let action = record.action;
        let appended = tokio::task::spawn_blocking(move || {
            inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(record)
        })
        .await;
        match appended {
            Ok(Ok(entry)) => debug!(seq = entry.seq, %action, "audit entry appended"),
            Ok(Err(err)) => {
                error!(%err, %action, "the change is in force but its audit entry is not written")
            }
            Err(err) => error!(%err, %action, "the audit task failed"),
        }
    }

    /// The whole file, read under the writer's lock (never a half-written line).
    pub async fn read(&self) -> Result<(Vec<u8>, PathBuf), AuditError> {
        self.with_bytes(|bytes, _| bytes.to_vec()).await
    }

    /// Checks the file's chain, and that it ends where this process last wrote.
    pub async fn verify(&self) -> Result<(Verified, PathBuf), AuditError> {
        self.with_bytes(|bytes, appender| Verified {
            chain: chain::verify(
                bytes,
                appender
                    .written
                    .as_ref()
                    .map(|(seq, hash)| (*seq, hash.as_str())),
            ),
            failures: appender.failures,
            last_error: appender.last_error.clone(),
        })
        .await
    }

    async fn with_bytes<T: Send + 'static>(
        &self,
        work: impl FnOnce(&[u8], &Appender) -> T + Send + 'static,
    ) -> Result<(T, PathBuf), AuditError> {
        let inner = self.inner.clone().ok_or(AuditError::Disabled)?;
        tokio::task::spawn_blocking(move || {
            let appender = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let bytes = read_or_empty(&appender.path)?;
            Ok((work(&bytes, &appender), appender.path.clone()))
        })
        .await
        .map_err(|err| AuditError::Task(err.to_string()))?
    }
}

fn read_or_empty(path: &Path) -> Result<Vec<u8>, AuditError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(AuditError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

impl Appender {
    fn append(&mut self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        let result = self.continue_chain().and_then(|(seq, prev)| {
            let entry = AuditEntry::chain(record, seq, prev);
            self.write(&entry, false).map(|()| entry)
        });
        if let Err(err) = &result {
            self.failed(err);
        }
        result
    }

    fn failed(&mut self, err: &AuditError) {
        self.failures += 1;
        self.last_error = Some(err.to_string());
        // A half-written line may be on disk: read the tail again next time.
        self.next = None;
    }

    /// Where the next entry goes; reads the tail (and restarts a corrupt chain) once.
    fn continue_chain(&mut self) -> Result<(u64, String), AuditError> {
        if let Some(next) = &self.next {
            return Ok(next.clone());
        }
        let bytes = read_or_empty(&self.path)?;
        let next = match chain::tail(&bytes) {
            Tail::Empty => (1, GENESIS.to_owned()),
            Tail::Sound { next_seq, prev } => (next_seq, prev),
            Tail::Corrupt {
                next_seq,
                prev,
                needs_newline,
                why,
            } => {
                error!(path = %self.path.display(), %why, "the audit log is corrupt; starting a new chain segment (zwctl audit verify shows where)");
                let restart = AuditEntry::chain(
                    AuditRecord {
                        at_unix_ms: now_unix_ms(),
                        who: ENFORCER.to_owned(),
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
                );
                self.write(&restart, needs_newline)?;
                (restart.seq + 1, hex_sha256(restart.to_line().as_bytes()))
            }
        };
        self.next = Some(next.clone());
        Ok(next)
    }

    /// Appends one line (after a newline that ends a cut-off line, if asked) and fsyncs it.
    fn write(&mut self, entry: &AuditEntry, newline_first: bool) -> Result<(), AuditError> {
        let line = entry.to_line();
        let mut bytes = Vec::with_capacity(line.len() + 2);
        if newline_first {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        let created = !self.path.exists();
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(&self.path)?;
            file.write_all(&bytes)?;
            file.sync_data()?;
            if created && let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|source| AuditError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.next = Some((entry.seq + 1, hex_sha256(line.as_bytes())));
        self.written = Some((entry.seq, entry.hash.clone()));
        crate::events::audited(entry);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::ProblemKind;

    fn record(action: Action) -> AuditRecord {
        AuditRecord {
            at_unix_ms: 1,
            who: "root".into(),
            action,
            zone: Some("shop/db".into()),
            target: Some("enforce".into()),
            detail: "mode learn -> enforce".into(),
            version_before: Some(1),
            version_after: Some(2),
            reason: None,
        }
    }

    #[tokio::test]
    async fn appends_continue_the_chain_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(path.clone());
        log.append(record(Action::Mode)).await;
        log.append(record(Action::Quarantine)).await;
        drop(log);
        let log = AuditLog::open(path.clone());
        log.append(record(Action::Unquarantine)).await;
        let (verified, _) = log.verify().await.unwrap();
        assert!(verified.chain.intact(), "{verified:#?}");
        assert_eq!(verified.chain.entries, 3);
        assert_eq!(verified.failures, 0);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the log is root-only");
    }

    #[tokio::test]
    async fn a_truncated_tail_starts_a_new_segment_and_stays_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(path.clone());
        for _ in 0..3 {
            log.append(record(Action::Approve)).await;
        }
        drop(log);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();

        let log = AuditLog::open(path.clone());
        log.append(record(Action::Remove)).await;
        let (verified, _) = log.verify().await.unwrap();
        let kinds: Vec<_> = verified
            .chain
            .problems
            .iter()
            .map(|p| (p.kind, p.line))
            .collect();
        assert_eq!(
            kinds,
            [(ProblemKind::Truncated, 3), (ProblemKind::Restarted, 4)],
            "{verified:#?}"
        );
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let last: AuditEntry = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!((last.seq, last.action), (4, Action::Remove), "{text}");
    }

    #[tokio::test]
    async fn a_dropped_last_line_is_noticed_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(path.clone());
        log.append(record(Action::Approve)).await;
        log.append(record(Action::Mode)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        std::fs::write(&path, format!("{first}\n")).unwrap();
        let (verified, _) = log.verify().await.unwrap();
        assert_eq!(verified.chain.problems.len(), 1, "{verified:#?}");
        assert!(
            verified.chain.problems[0]
                .message
                .contains("entry seq 2 was dropped from the end"),
            "{verified:#?}"
        );
    }
}
