//! A real etcd v3 cluster (Debian's `etcd-server`, `/usr/bin/etcd`) on an underlay:
//! each member in a namespace of its own, data directories in a temporary directory,
//! started, killed and restarted by PID with the same data; readiness is `etcdctl
//! endpoint health` answering, waited for with a deadline.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{Underlay, underlay_v4};
use crate::netns::Netns;
use crate::wait;

/// Debian's etcd server.
pub const ETCD: &str = "/usr/bin/etcd";
/// Debian's etcd client (`etcd-client`).
pub const ETCDCTL: &str = "/usr/bin/etcdctl";
/// How long a cluster may take to elect a leader and answer.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// One member: its namespace, its address on the underlay, its process when running.
pub struct EtcdMember {
    pub name: String,
    pub netns: Netns,
    /// Its underlay host number: the address is `10.240.0.host`.
    pub host: u8,
    child: Option<Child>,
}

impl EtcdMember {
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", underlay_v4(self.host))
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}:2380", underlay_v4(self.host))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// An etcd cluster of 1 or 3 (or more) members on one underlay.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    /// Data directories and logs, one per member.
    dir: tempfile::TempDir,
    token: String,
}

impl EtcdCluster {
    /// Starts `members` members on `underlay` (hosts 101, 102, ...) and waits until
    /// every one answers healthy.
    pub fn start(underlay: &Underlay, members: u8) -> Self {
        assert!(
            std::path::Path::new(ETCD).is_file(),
            "{ETCD} is missing: apt-get install etcd-server etcd-client (scripts/install-deps)"
        );
        let members = (0..members)
            .map(|i| {
                let netns = Netns::new("etcd");
                let host = 101 + i;
                underlay.attach(&netns, host);
                EtcdMember {
                    name: format!("m{i}"),
                    netns,
                    host,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self {
            members,
            dir: tempfile::tempdir().expect("etcd temp dir"),
            token: format!("zw-{}-{}", std::process::id(), underlay.netns.name),
        };
        cluster.start_all();
        cluster
    }

    /// Every member's client URL, comma-separated (`--etcd-endpoints`).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(EtcdMember::client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The enforcer's store flags for this cluster, as agreed for cluster mode:
    /// `--store etcd --etcd-endpoints <every member> --etcd-prefix <prefix>`.
    pub fn enforcer_args(&self, prefix: &str) -> Vec<String> {
        vec![
            "--store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            self.endpoints(),
            "--etcd-prefix".into(),
            prefix.into(),
        ]
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_dir(&self, member: usize) -> PathBuf {
        self.dir.path().join(&self.members[member].name)
    }

    pub fn log(&self, member: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[member].name))
    }

    /// Starts one member on its data directory (a restart keeps what it held); does not
    /// wait (a member of three answers only once a quorum is up).
    pub fn start_member(&mut self, member: usize) {
        assert!(
            !self.members[member].is_running(),
            "etcd member {member} is already running"
        );
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log(member))
            .expect("etcd log file");
        let initial_cluster = self.initial_cluster();
        let data_dir = self.data_dir(member);
        let m = &self.members[member];
        let child = m
            .netns
            .exec(ETCD, &[])
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[member].child = Some(child);
    }

    /// Starts every member that is not running and waits until all answer healthy.
    pub fn start_all(&mut self) {
        for member in 0..self.members.len() {
            if !self.members[member].is_running() {
                self.start_member(member);
            }
        }
        self.wait_healthy();
    }

    /// SIGKILL to one member, by its PID, and reaps it.
    pub fn kill(&mut self, member: usize) {
        self.signal(member, "-KILL");
    }

    /// SIGTERM to one member, by its PID, and waits until it has exited.
    pub fn stop(&mut self, member: usize) {
        self.signal(member, "-TERM");
    }

    /// Stops every running member.
    pub fn stop_all(&mut self) {
        for member in 0..self.members.len() {
            self.stop(member);
        }
    }

    fn signal(&mut self, member: usize, signal: &str) {
        let Some(mut child) = self.members[member].child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let _ = child.wait();
    }

    /// Waits until every running member answers `endpoint health`.
    pub fn wait_healthy(&self) {
        for (i, m) in self.members.iter().enumerate() {
            if !m.is_running() {
                continue;
            }
            wait::until(
                &format!("etcd member {i} ({}) to answer healthy", m.client_url()),
                READY_WITHIN,
                || self.healthy(i),
            );
        }
    }

    /// Whether member `member` answers healthy now (it needs a quorum for that).
    pub fn healthy(&self, member: usize) -> bool {
        self.etcdctl(member, &["endpoint", "health"])
            .status
            .success()
    }

    /// `etcdctl` against member `member` only, run in that member's namespace, with
    /// short timeouts so that an unavailable cluster answers with an error soon.
    pub fn etcdctl(&self, member: usize, args: &[&str]) -> Output {
        let m = &self.members[member];
        m.netns
            .exec(ETCDCTL, &[])
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                &m.client_url(),
                "--dial-timeout",
                "1s",
                "--command-timeout",
                "3s",
            ])
            .args(args)
            .output()
            .expect("run etcdctl")
    }

    /// Writes `key` through member `member`; whether the cluster took it.
    pub fn put(&self, member: usize, key: &str, value: &str) -> bool {
        self.etcdctl(member, &["put", key, value]).status.success()
    }

    /// Reads `key` through member `member` (a linearizable read: it needs a quorum);
    /// `None` when absent, panics when the cluster does not answer.
    pub fn get(&self, member: usize, key: &str) -> Option<String> {
        let out = self.etcdctl(member, &["get", "--print-value-only", key]);
        assert!(
            out.status.success(),
            "etcd member {member} did not answer a read of {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
        (!value.is_empty()).then_some(value)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in 0..self.members.len() {
            self.kill(member);
        }
        if std::thread::panicking() {
            for member in 0..self.members.len() {
                if let Ok(log) = std::fs::read_to_string(self.log(member)) {
                    let tail: Vec<&str> = log.lines().rev().take(40).collect();
                    eprintln!(
                        "--- etcd member {member} log (last lines) ---\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
            }
        }
    }
}
