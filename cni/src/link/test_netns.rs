//! A throwaway network namespace for root tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A namespace made with `ip netns add`, deleted on drop even when the test panics.
pub(crate) struct TestNetns(pub(crate) String);

impl TestNetns {
    pub(crate) fn new(role: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("zwl-{}-{n}-{role}", std::process::id());
        ip(&["netns", "add", &name]);
        let netns = Self(name);
        ip(&["-n", &netns.0, "link", "set", "lo", "up"]);
        netns
    }

    pub(crate) fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub(crate) fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("spawn a command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub(crate) fn ip(args: &[&str]) -> String {
    let (ok, text) = run("ip", args);
    assert!(ok, "ip {args:?} failed: {text}");
    text
}

pub(crate) fn is_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    eprintln!("skipped: needs root");
    false
}

/// Pings `addr` from `node` until it answers or five seconds pass.
pub(crate) fn ping_until(node: &TestNetns, addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (ok, _) = run(
            "ip",
            &["netns", "exec", &node.0, "ping", "-c1", "-W1", addr],
        );
        if ok || Instant::now() > deadline {
            return ok;
        }
    }
}
