//! A running `zwctl flows watch` and the lines it prints, read on a thread of their own
//! so that a test waits for a line with a deadline.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bin;
use crate::node::Node;

/// A running `zwctl flows watch` and the lines it printed; killed on drop.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    /// Starts `zwctl ARGS` (e.g. `flows watch --zone Z`) against the node's enforcer.
    pub fn start(node: &Node, args: &[&str]) -> Self {
        let mut child = Command::new(bin("zwctl"))
            .arg("--socket")
            .arg(node.socket())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zwctl flows watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The first line printed within `deadline` that `wanted` accepts; every line
    /// before it goes to `skipped`.
    pub fn first(
        &self,
        deadline: Duration,
        skipped: &mut Vec<String>,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let end = Instant::now() + deadline;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Some(line),
                Ok(line) => skipped.push(line),
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
