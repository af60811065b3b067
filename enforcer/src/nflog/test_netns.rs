//! Test-only helpers for the nflog root tests: the root check and a private network
//! namespace holding the test ruleset.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub(super) use crate::test_support::root_or_skip;

/// A network namespace of our own, with loopback up and the test ruleset; deleted
/// on drop, even when the test panics.
pub(super) struct TestNetns {
    name: String,
}

impl TestNetns {
    pub(super) fn new(ruleset: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("zwn-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]), None);
        let ns = Self { name };
        run(
            Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]),
            None,
        );
        run(
            Command::new("ip").args(["netns", "exec", &ns.name, "nft", "-f", "-"]),
            Some(ruleset),
        );
        ns
    }

    /// Runs `f` on a new thread that has entered this namespace; the thread ends
    /// with `f`, so it never needs to switch back.
    pub(super) fn run_inside<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        crate::test_support::run_in_netns(&self.name, f)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

fn run(cmd: &mut Command, stdin: Option<&str>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .expect("write the ruleset to nft");
    }
    let out = child.wait_with_output().expect("wait for the command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
