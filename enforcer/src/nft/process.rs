//! A deadline for the `nft` processes the enforcer still starts (the base chains,
//! interval sets, a full read of the table): a hung nft must not hold the registry
//! forever. Each process runs in a process group of its own; a [`Deadline`] kills the
//! whole group (`ip netns exec` and the nft under it included) once its time is up.
//!
//! The group is killed only while its leader has not been reaped, so the id cannot
//! belong to another process yet: [`Deadline::finish`] waits for the exit without
//! reaping (`waitid` with `WNOWAIT`), stops the deadline, and only then reaps.

use std::process::{Child, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// How long one nft process may take unless the data plane says otherwise: a full
/// read or creation of the table at 10,000 zones takes seconds, not minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Kills a child's process group when its time is up, unless finished first.
pub struct Deadline {
    /// Whether the child finished (set before it is reaped).
    finished: Arc<(Mutex<bool>, Condvar)>,
    killer: JoinHandle<bool>,
}

impl Deadline {
    /// Starts the deadline of `child`, which must lead its own process group.
    pub fn start(child: &Child, timeout: Duration) -> Self {
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let finished = Arc::new((Mutex::new(false), Condvar::new()));
        let watched = finished.clone();
        let killer = std::thread::spawn(move || {
            let (lock, signal) = &*watched;
            let done = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let (done, _) = signal
                .wait_timeout_while(done, timeout, |done| !*done)
                .unwrap_or_else(PoisonError::into_inner);
            if *done {
                return false;
            }
            // Under the lock: the leader is not reaped yet, the group id is still its.
            let _ = killpg(pid, Signal::SIGKILL);
            true
        });
        Self { finished, killer }
    }

    /// Waits for `child` to exit (its pipes must be read or closed first), stops the
    /// deadline and reaps the child; `Err(())` when the deadline killed it.
    pub fn finish(self, child: &mut Child) -> std::io::Result<Result<ExitStatus, ()>> {
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        loop {
            match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
                Ok(_) => break,
            }
        }
        {
            let (lock, signal) = &*self.finished;
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
            signal.notify_all();
        }
        let killed = self.killer.join().unwrap_or(false);
        let status = child.wait()?;
        Ok(if killed { Err(()) } else { Ok(status) })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn a_process_within_its_time_is_reaped_with_its_status() {
        let mut child = Command::new("sh")
            .args(["-c", "exit 3"])
            .process_group(0)
            .spawn()
            .expect("run sh");
        let deadline = Deadline::start(&child, Duration::from_secs(60));
        let status = deadline.finish(&mut child).expect("wait").expect("in time");
        assert_eq!(status.code(), Some(3));
    }

    /// A hung process and the one it started (which holds the pipe) are both stopped.
    #[test]
    fn a_hung_process_group_is_killed_at_its_deadline() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 600 & wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("run sh");
        let deadline = Deadline::start(&child, Duration::from_millis(100));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().expect("a pipe"), &mut out)
            .expect("the pipe closes once the whole group is gone");
        assert!(
            deadline.finish(&mut child).expect("wait").is_err(),
            "the deadline stopped it"
        );
    }
}
