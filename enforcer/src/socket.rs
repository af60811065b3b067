//! The root-only unix socket the gRPC API is served on.
//!
//! A socket file left by a crashed enforcer is removed, but only when nothing
//! answers on it: a second enforcer refuses to start instead of stealing the socket.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another enforcer is already serving {path}; stop it first or pass a different --socket"
    )]
    AlreadyServed { path: PathBuf },
    #[error("{path} exists and is not a socket; remove it or pass a different --socket")]
    NotASocket { path: PathBuf },
}

/// Removes the socket file when dropped, so a clean shutdown leaves nothing behind.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => info!(socket = %self.path.display(), "socket removed"),
            Err(err) if err.kind() == ErrorKind::NotFound => {}
            Err(err) => warn!(socket = %self.path.display(), %err, "cannot remove the socket"),
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SocketError {
    let path = path.to_path_buf();
    move |source| SocketError::Io {
        action,
        path,
        source,
    }
}

/// Creates the parent directory (0700), clears a stale socket, binds and makes the
/// socket root-only (0600).
pub async fn bind_root_only(path: &Path) -> Result<(UnixListener, SocketFile), SocketError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_error("create directory", parent))?;
    }
    remove_stale(path).await?;
    let listener = UnixListener::bind(path).map_err(io_error("bind", path))?;
    let file = SocketFile {
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_error("restrict permissions of", path))?;
    Ok((listener, file))
}

async fn remove_stale(path: &Path) -> Result<(), SocketError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error("inspect", path)(err)),
    };
    if !metadata.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(SocketError::AlreadyServed {
            path: path.to_path_buf(),
        });
    }
    warn!(socket = %path.display(), "removing a stale socket nothing answers on");
    std::fs::remove_file(path).map_err(io_error("remove stale socket", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_root_only_replaces_stale_and_refuses_live_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/enforcer.sock");
        let (listener, file) = bind_root_only(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the socket must be root-only");
        let parent_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(parent_mode, 0o700);

        let err = bind_root_only(&path).await.unwrap_err();
        assert!(matches!(err, SocketError::AlreadyServed { .. }), "{err}");

        drop(listener);
        std::mem::forget(file); // leave a stale socket behind, as a crash would
        let (_listener, file) = bind_root_only(&path)
            .await
            .expect("a stale socket is replaced");
        drop(file);
        assert!(!path.exists(), "dropping the guard removes the socket");

        std::fs::write(&path, "not a socket").unwrap();
        assert!(matches!(
            bind_root_only(&path).await.unwrap_err(),
            SocketError::NotASocket { .. }
        ));
    }
}

/// The name of the abstract unix socket that marks "an enforcer runs in this network
/// namespace". Abstract socket names belong to the network namespace, whatever the
/// file systems: a second enforcer finds it taken, whatever `--socket` and
/// `--state-dir` it was given, and exits before it touches the kernel.
const NETNS_LOCK: &[u8] = b"zonewarden-enforcer";

/// Held for the enforcer's whole life: the one-enforcer-per-network-namespace lock.
#[derive(Debug)]
pub enum NetnsLock {
    /// The abstract socket (a node's enforcer).
    Abstract(std::os::unix::net::UnixListener),
    /// A file of the state directory (`--sidecar`).
    File(std::fs::File),
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsLockError {
    #[error(
        "another zonewarden-enforcer already runs in this network namespace (it holds the abstract socket @{}); two enforcers would fight over one table: stop the other one (ss -xlp | grep zonewarden-enforcer names it)",
        String::from_utf8_lossy(NETNS_LOCK)
    )]
    Taken,
    #[error(
        "another zonewarden-enforcer --sidecar already runs with the state directory of {}; two sidecars would fight over one table: run one sidecar per pod",
        .0.display()
    )]
    TakenFile(std::path::PathBuf),
    #[error("cannot take the one-enforcer lock of this network namespace: {0}")]
    Io(#[source] std::io::Error),
}

/// Takes the lock of the caller's network namespace.
pub fn lock_netns() -> Result<NetnsLock, NetnsLockError> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(NETNS_LOCK)
        .map_err(NetnsLockError::Io)?;
    match std::os::unix::net::UnixListener::bind_addr(&addr) {
        Ok(listener) => Ok(NetnsLock::Abstract(listener)),
        Err(err) if err.kind() == ErrorKind::AddrInUse => Err(NetnsLockError::Taken),
        Err(err) => Err(NetnsLockError::Io(err)),
    }
}

/// The sidecar's lock: `enforcer.lock` in its state directory, a volume of the sidecar
/// alone. The abstract socket name of [`lock_netns`] belongs to the pod's network
/// namespace, where any process of the pod, with no privilege at all, could bind it
/// first and so keep every later start of the sidecar out (and with it every
/// quarantine and policy change meant for the pod).
pub fn lock_state_dir(state_dir: &std::path::Path) -> Result<NetnsLock, NetnsLockError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(NetnsLockError::Io)?;
    let path = state_dir.join("enforcer.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(NetnsLockError::Io)?;
    match file.try_lock() {
        Ok(()) => Ok(NetnsLock::File(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(NetnsLockError::TakenFile(path)),
        Err(std::fs::TryLockError::Error(err)) => Err(NetnsLockError::Io(err)),
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn a_second_sidecar_on_one_state_directory_is_refused_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = lock_state_dir(&state).expect("the first takes the lock");
        assert!(matches!(
            lock_state_dir(&state),
            Err(NetnsLockError::TakenFile(path)) if path == state.join("enforcer.lock")
        ));
        drop(first);
        lock_state_dir(&state).expect("free again once the first ended");
    }
}
