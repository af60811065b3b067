//! Switching network namespaces: the only module that calls `setns`.
//!
//! `setns` changes one thread, never the process, so [`run_in_netns`] runs its closure
//! on a dedicated `std::thread` that enters the namespace and then ends; the calling
//! thread never moves. Anything that needs a netlink socket in that namespace opens it
//! inside the closure.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

/// The calling thread's own network namespace.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Failures of entering or inspecting a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path} does not exist; the container is gone")]
    NotFound { path: PathBuf },
    #[error("failed to open network namespace {path}")]
    Open { path: PathBuf, source: io::Error },
    #[error("failed to stat network namespace {path}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("failed to enter network namespace {path}; is it a netns file?")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("failed to start a thread for network namespace {path}")]
    Spawn { path: PathBuf, source: io::Error },
    #[error("the work inside network namespace {path} panicked")]
    Panicked { path: PathBuf },
    #[error(
        "{path} is not a network namespace (it is {what}); pass the container's netns \
         file, such as /run/netns/NAME or /proc/PID/ns/net"
    )]
    NotNetns { path: PathBuf, what: String },
}

/// Opens a netns file, telling "gone" apart from other failures.
pub fn open_netns(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => NetnsError::NotFound {
            path: path.to_path_buf(),
        },
        _ => NetnsError::Open {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Runs `f` on a fresh thread inside the network namespace at `path` and returns its value.
///
/// The thread ends after `f`; it is never switched back or reused.
#[allow(clippy::disallowed_methods)]
pub fn run_in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let file = open_netns(path)?;
    let owned = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("zw-netns".to_owned())
        .spawn(move || -> Result<T, NetnsError> {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| {
                NetnsError::Enter {
                    path: owned,
                    source,
                }
            })?;
            drop(file);
            Ok(f())
        })
        .map_err(|source| NetnsError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
    handle.join().map_err(|_| NetnsError::Panicked {
        path: path.to_path_buf(),
    })?
}

/// Fails unless `path` is a network namespace file (a bind mount of one, or
/// `/proc/PID/ns/net`): a regular file, a directory or another kind of namespace would
/// only fail later, deep in netlink, with a message that does not name it.
#[allow(clippy::disallowed_methods)]
pub fn require_netns(path: &Path) -> Result<(), NetnsError> {
    let file = open_netns(path)?;
    let not_netns = |what: &str| NetnsError::NotNetns {
        path: path.to_path_buf(),
        what: what.to_owned(),
    };
    let on_nsfs = nix::sys::statfs::fstatfs(&file)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
    if !on_nsfs {
        return Err(match file.metadata() {
            Ok(meta) if meta.is_dir() => not_netns("a directory"),
            Ok(meta) if meta.is_file() => not_netns("a regular file"),
            _ => not_netns("no namespace file"),
        });
    }
    // A namespace file; only entering it tells a network namespace from the others
    // (setns refuses the wrong kind). A thread of its own enters it and ends.
    let owned = path.to_path_buf();
    let entered = std::thread::Builder::new()
        .name("zw-netns-check".to_owned())
        .spawn(move || nix::sched::setns(&file, CloneFlags::CLONE_NEWNET))
        .map_err(|source| NetnsError::Spawn {
            path: owned.clone(),
            source,
        })?
        .join()
        .map_err(|_| NetnsError::Panicked {
            path: owned.clone(),
        })?;
    match entered {
        Ok(()) => Ok(()),
        Err(nix::Error::EINVAL) => Err(not_netns("another kind of namespace")),
        Err(source) => Err(NetnsError::Enter {
            path: owned,
            source,
        }),
    }
}

/// Whether two netns files are the same namespace (the same path, or the same inode
/// through two paths such as `/run/netns/NAME` and `/proc/PID/ns/net`).
pub fn same_netns(a: &Path, b: &Path) -> bool {
    a == b || matches!((stat(a), stat(b)), (Ok(x), Ok(y)) if x == y)
}

/// Whether a netns file exists at `path`.
pub fn netns_exists(path: &Path) -> bool {
    path.exists()
}

/// Whether `path` is the network namespace the calling thread is in (CNI error 8 checks).
pub fn is_current_netns(path: &Path) -> Result<bool, NetnsError> {
    let target = stat(path)?;
    let own = stat(Path::new(THREAD_NETNS))?;
    Ok(target == own)
}

fn stat(path: &Path) -> Result<(u64, u64), NetnsError> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => NetnsError::NotFound {
            path: path.to_path_buf(),
        },
        _ => NetnsError::Stat {
            path: path.to_path_buf(),
            source,
        },
    })?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_netns_is_not_found() {
        let path = Path::new("/run/netns/zw-definitely-missing");
        assert!(!netns_exists(path));
        let err = run_in_netns(path, || ()).expect_err("a missing netns must fail");
        assert!(
            matches!(err, NetnsError::NotFound { .. }),
            "expected NotFound, got {err:?}"
        );
    }

    #[test]
    fn own_netns_is_current() {
        let own = Path::new("/proc/self/ns/net");
        assert!(is_current_netns(own).expect("stat of own netns"));
    }

    #[test]
    fn one_namespace_through_two_paths_is_the_same() {
        let own = Path::new("/proc/self/ns/net");
        let thread = Path::new("/proc/thread-self/ns/net");
        assert!(same_netns(own, thread));
        assert!(!same_netns(own, Path::new("/proc/self/ns/uts")));
        assert!(!same_netns(
            own,
            Path::new("/run/netns/zw-definitely-missing")
        ));
    }

    #[test]
    fn only_network_namespaces_pass() {
        require_netns(Path::new("/proc/self/ns/net")).expect("a netns file");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-netns");
        std::fs::write(&file, b"").unwrap();
        for (path, what) in [
            (file.as_path(), "a regular file"),
            (dir.path(), "a directory"),
            (Path::new("/proc/self/ns/uts"), "another kind of namespace"),
        ] {
            let err = require_netns(path).expect_err("not a netns");
            let msg = err.to_string();
            assert!(
                matches!(err, NetnsError::NotNetns { .. })
                    && msg.contains(&path.display().to_string())
                    && msg.contains(what),
                "{path:?}: {msg}"
            );
        }
        assert!(matches!(
            require_netns(Path::new("/run/netns/zw-definitely-missing")),
            Err(NetnsError::NotFound { .. })
        ));
    }
}
