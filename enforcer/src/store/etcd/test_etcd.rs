//! A real etcd for the tests: Debian's `/usr/bin/etcd` on free ports of 127.0.0.1,
//! its data in a temporary directory, killed by PID when dropped (also on a panic).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

pub struct EtcdProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a port on 127.0.0.1");
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

impl EtcdProcess {
    /// Starts a one-member etcd and waits until it answers.
    pub fn start() -> Self {
        assert!(
            std::path::Path::new(ETCD).exists(),
            "{ETCD} is missing: the cluster-store tests run a real etcd; install Debian's etcd-server (scripts/install-deps)"
        );
        let mut last = String::new();
        for _ in 0..5 {
            let (held_client, client_port) = free_port();
            let (held_peer, peer_port) = free_port();
            drop((held_client, held_peer));
            let mut etcd = Self {
                child: None,
                dir: tempfile::tempdir().unwrap(),
                client_port,
                peer_port,
            };
            match etcd.spawn() {
                Ok(()) => return etcd,
                Err(why) => last = why,
            }
        }
        panic!("etcd did not start: {last}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(ETCD)
            .arg("--name=zw-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={}", self.endpoint()))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=zw-test={peer}"))
            // Progress notifications often, as a loaded cluster's watch gets them.
            .arg("--experimental-watch-progress-notify-interval=100ms")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {ETCD}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("etcd exited with {status}: {}", tail(&log)));
            }
            if self.ctl(&["get", "/ready-probe"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err("etcd did not answer within 60 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs etcdctl against this etcd; its stdout, or why it failed.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--command-timeout=2s")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {ETCDCTL}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Kills etcd (by PID) and waits for it; the data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn()
            .unwrap_or_else(|why| panic!("etcd did not restart: {why}"));
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out = self
            .ctl(&["endpoint", "status", "-w", "json"])
            .expect("etcdctl endpoint status");
        let status: serde_json::Value = serde_json::from_str(&out).unwrap();
        status[0]["Status"]["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in {out}"))
    }

    /// Compacts the history up to the current revision: a watch from an older
    /// revision cannot resume.
    pub fn compact(&self) -> i64 {
        let revision = self.revision();
        self.ctl(&["compact", &revision.to_string(), "--physical"])
            .unwrap_or_else(|e| panic!("etcdctl compact {revision}: {e}"));
        revision
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
