//! Real traffic between test namespaces through `zw-probe`: echo servers, batches of
//! new connections, and one long-lived connection.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::bin;
use crate::netns::Netns;

/// Echo servers in a namespace, killed on drop.
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `tcp:PORT` / `udp:PORT` echo servers in `ns` and waits until they listen.
    pub fn start(ns: &Netns, specs: &[&str]) -> Self {
        let mut child = ns
            .exec(bin("zw-probe").to_str().expect("utf-8"), &["serve"])
            .args(specs)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start zw-probe serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read ready");
        assert_eq!(
            line.trim(),
            "ready",
            "servers {specs:?} in {} did not start",
            ns.name
        );
        Self { child }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens one new connection per target from `ns` at once; true where it succeeded.
/// Targets are `ADDR:PORT/tcp` or `ADDR:PORT/udp`.
pub fn probe(ns: &Netns, targets: &[String], timeout: Duration) -> Vec<bool> {
    if targets.is_empty() {
        return Vec::new();
    }
    let out = ns
        .exec(
            bin("zw-probe").to_str().expect("utf-8"),
            &["probe", "--timeout-ms", &timeout.as_millis().to_string()],
        )
        .args(targets)
        .output()
        .expect("run zw-probe probe");
    let text = String::from_utf8_lossy(&out.stdout);
    let results: Vec<bool> = text.lines().map(|l| l.ends_with(" ok")).collect();
    assert_eq!(
        results.len(),
        targets.len(),
        "zw-probe answered {text:?} for {targets:?}"
    );
    results
}

/// Whether one new connection from `ns` to `target` succeeds.
pub fn connects(ns: &Netns, target: &str) -> bool {
    probe(ns, &[target.to_owned()], Duration::from_millis(700))[0]
}

/// A connection held open and exercised every 100 ms until `finish`.
pub struct Hold {
    child: Child,
}

impl Hold {
    pub fn start(ns: &Netns, target: &str, seconds: u64) -> Self {
        let mut child = ns
            .exec(
                bin("zw-probe").to_str().expect("utf-8"),
                &["hold", "--seconds", &seconds.to_string(), target],
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("start zw-probe hold");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(
            line.trim(),
            "connected",
            "the long-lived connection to {target} did not open"
        );
        Self { child }
    }

    /// Waits for the end; true when the connection worked throughout.
    pub fn finish(mut self) -> bool {
        self.child.wait().map(|s| s.success()).unwrap_or(false)
    }
}
