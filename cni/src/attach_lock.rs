//! ADD and GC exclude each other through a lock file beside the enforcer's socket
//! (`<socket dir>/cni.lock`, root-only): every ADD holds it shared for its whole run,
//! GC takes it exclusively. So GC never sees the veth of an ADD that has made its pair
//! but not yet registered it, and ADDs never wait for each other. Both wait a bounded
//! time and then fail with error 11 (try again later), leaving nothing changed.
//!
//! The lock is `flock(2)` on an open file: the kernel releases it when the plugin
//! process ends, however it ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{CniError, ErrorCode};

/// The lock file's name in the socket's directory.
pub const LOCK_FILE: &str = "cni.lock";
/// How long an ADD waits for a GC to finish (the runtime retries after error 11).
pub const ADD_WAIT: Duration = Duration::from_secs(20);
/// How long GC waits for running ADDs to finish.
pub const GC_WAIT: Duration = Duration::from_secs(10);

/// A held lock; released on drop (or when the process ends).
#[derive(Debug)]
pub struct AttachLock {
    _file: File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ADD: many at once.
    Shared,
    /// GC: alone.
    Exclusive,
}

/// The lock file for the enforcer socket `socket`.
pub fn lock_path(socket: &Path) -> PathBuf {
    socket
        .parent()
        .unwrap_or_else(|| Path::new("/run/zonewarden"))
        .join(LOCK_FILE)
}

/// Takes the lock beside `socket`, waiting at most `wait`.
pub fn acquire(socket: &Path, kind: Kind, wait: Duration) -> Result<AttachLock, CniError> {
    let path = lock_path(socket);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| CniError::io(format!("cannot open the lock file {}: {e}", path.display())))?;
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(1);
    loop {
        let attempt = match kind {
            Kind::Shared => file.try_lock_shared(),
            Kind::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => return Ok(AttachLock { _file: file }),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => {
                let (who, holder) = match kind {
                    Kind::Shared => ("ADD", "a GC of this node"),
                    Kind::Exclusive => ("GC", "ADDs on this node"),
                };
                return Err(CniError::new(
                    ErrorCode::TryAgainLater,
                    format!(
                        "{who} waited {}s for {holder} to finish (lock {}); nothing was changed, try again later",
                        wait.as_secs(),
                        path.display()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(CniError::io(format!("cannot lock {}: {e}", path.display())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_share_and_gc_is_alone() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("enforcer.sock");
        let short = Duration::from_millis(20);
        let add_a = acquire(&socket, Kind::Shared, short).expect("first ADD");
        let add_b = acquire(&socket, Kind::Shared, short).expect("ADDs do not wait for each other");
        let err = acquire(&socket, Kind::Exclusive, short).expect_err("GC waits for ADDs");
        assert_eq!(err.code, ErrorCode::TryAgainLater);
        assert!(
            err.msg.contains("GC") && err.msg.contains(LOCK_FILE),
            "{}",
            err.msg
        );
        drop((add_a, add_b));
        let gc = acquire(&socket, Kind::Exclusive, short).expect("GC once the ADDs are done");
        let err = acquire(&socket, Kind::Shared, short).expect_err("ADD waits for GC");
        assert_eq!(err.code, ErrorCode::TryAgainLater);
        drop(gc);
        acquire(&socket, Kind::Shared, short).expect("ADD after GC");
    }

    #[test]
    fn a_waiting_gc_gets_the_lock_when_the_add_ends() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("enforcer.sock");
        let add = acquire(&socket, Kind::Shared, Duration::ZERO).unwrap();
        let waiting = socket.clone();
        let gc = std::thread::spawn(move || acquire(&waiting, Kind::Exclusive, GC_WAIT));
        drop(add);
        gc.join().unwrap().expect("GC once the ADD has ended");
    }
}
