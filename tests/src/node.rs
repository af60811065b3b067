//! A "node": its own network namespace with an address, a CNI bin dir, and its own
//! enforcer process on a socket in a temporary directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::netns::{Netns, run_ok};
use crate::{REFERENCE_PLUGINS, bin, wait};

/// The node's own address (on loopback inside the node namespace: this kernel may lack
/// the dummy driver).
pub const NODE_ADDR: &str = "10.123.255.1";
/// The node's own IPv6 address, beside [`NODE_ADDR`].
pub const NODE_ADDR6: &str = "fd7b:ffff::1";

pub struct Node {
    pub netns: Netns,
    pub dir: tempfile::TempDir,
    enforcer: Option<Child>,
    /// Extra enforcer flags, kept for restarts.
    enforcer_args: Vec<String>,
    /// A command the enforcer is started under (its program and arguments come last).
    enforcer_wrapper: Vec<String>,
}

impl Node {
    /// A node namespace with its address, without an enforcer yet.
    pub fn new() -> Self {
        let netns = Netns::new("node");
        netns.ip(&["addr", "add", &format!("{NODE_ADDR}/32"), "dev", "lo"]);
        netns.ip(&["addr", "add", &format!("{NODE_ADDR6}/128"), "dev", "lo"]);
        Self::in_netns(netns)
    }

    /// A node in a namespace made elsewhere, as it is (e.g. attached to a cluster's
    /// underlay by [`crate::cluster`]), without an enforcer yet; the node owns the
    /// namespace from now on and deletes it on drop. Extra enforcer flags go to
    /// [`Node::start_enforcer_with`].
    pub fn in_netns(netns: Netns) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).expect("bin dir");
        std::os::unix::fs::symlink(bin("zonewarden"), bin_dir.join("zonewarden"))
            .expect("link plugin");
        for entry in std::fs::read_dir(REFERENCE_PLUGINS)
            .expect("Debian's containernetworking-plugins in /usr/lib/cni")
        {
            let entry = entry.expect("plugin entry");
            let _ = std::os::unix::fs::symlink(entry.path(), bin_dir.join(entry.file_name()));
        }
        Self {
            netns,
            dir,
            enforcer: None,
            enforcer_args: Vec::new(),
            enforcer_wrapper: Vec::new(),
        }
    }

    /// A node with its enforcer running.
    pub fn with_enforcer() -> Self {
        let mut node = Self::new();
        node.start_enforcer();
        node
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/enforcer.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// host-local's lease directory for this node.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn enforcer_log(&self) -> PathBuf {
        self.dir.path().join("enforcer.log")
    }

    pub fn enforcer_pid(&self) -> Option<u32> {
        self.enforcer.as_ref().map(Child::id)
    }

    /// Starts the enforcer with extra flags (kept for later restarts).
    pub fn start_enforcer_with(&mut self, args: &[&str]) {
        self.enforcer_args = args.iter().map(|a| (*a).to_owned()).collect();
        self.start_enforcer();
    }

    /// Starts the enforcer under `wrapper` (e.g. `unshare --mount ... --`), which runs
    /// the enforcer's command line given after it; kept for restarts.
    pub fn start_enforcer_wrapped(&mut self, wrapper: &[&str]) {
        self.enforcer_wrapper = wrapper.iter().map(|a| (*a).to_owned()).collect();
        self.start_enforcer();
    }

    /// Starts the enforcer inside the node namespace and waits until it answers.
    pub fn start_enforcer(&mut self) {
        assert!(self.enforcer.is_none(), "enforcer already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.enforcer_log())
            .expect("log file");
        let enforcer = bin("zonewarden-enforcer");
        let enforcer = enforcer.to_str().expect("utf-8 path");
        let mut command = match self.enforcer_wrapper.split_first() {
            Some((program, args)) => {
                let mut c = self.netns.exec(program, &[]);
                c.args(args).arg(enforcer);
                c
            }
            None => self.netns.exec(enforcer, &[]),
        };
        let child = command
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args([
                "--node",
                &self.netns.name,
                "--log-level",
                "warn,zonewarden_enforcer=debug",
            ])
            .args(&self.enforcer_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start zonewarden-enforcer");
        self.enforcer = Some(child);
        // The socket accepts connections before the enforcer serves (it binds first, then
        // programs the kernel): ready means `zwctl status` says so.
        let socket = self.socket();
        wait::until(
            "the enforcer to program its table and answer ready",
            Duration::from_secs(30),
            || {
                Command::new(bin("zwctl"))
                    .arg("--socket")
                    .arg(&socket)
                    .args(["--timeout", "2", "status"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
    }

    /// Runs the enforcer (with the node's flags and `extra`) where it must refuse to
    /// start: returns its exit code and what it said. Panics if it keeps running.
    pub fn enforcer_refuses(&self, extra: &[&str]) -> (Option<i32>, String) {
        assert!(self.enforcer.is_none(), "enforcer already running");
        let enforcer = bin("zonewarden-enforcer");
        let mut child = self
            .netns
            .exec(enforcer.to_str().expect("utf-8 path"), &[])
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(["--node", &self.netns.name, "--log-level", "warn"])
            .args(&self.enforcer_args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zonewarden-enforcer");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the enforcer") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the enforcer kept running where it had to refuse to start");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut said = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut said)
            .expect("read the enforcer's stderr");
        (status.code(), said)
    }

    /// Stops the enforcer: SIGTERM (graceful) or SIGKILL.
    pub fn stop_enforcer(&mut self, kill: bool) {
        let Some(mut child) = self.enforcer.take() else {
            return;
        };
        let signal = if kill { "-KILL" } else { "-TERM" };
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let _ = child.wait();
    }

    /// `zwctl ...` (no `-o` added) against this node's enforcer, whatever its exit.
    pub fn zwctl_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("zwctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run zwctl")
    }

    /// `zwctl -o json ...` against this node's enforcer.
    pub fn zwctl(&self, args: &[&str]) -> serde_json::Value {
        let out = run_ok(
            Command::new(bin("zwctl"))
                .arg("--socket")
                .arg(self.socket())
                .args(["-o", "json"])
                .args(args),
        );
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("zwctl {args:?} printed no JSON ({e}): {out}"))
    }

    /// The items of a `zwctl get ...` list.
    pub fn items(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let v = self.zwctl(args);
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Registered endpoints, as zwctl lists them.
    pub fn endpoints(&self) -> Vec<serde_json::Value> {
        self.items(&["get", "endpoints"])
    }

    /// Recent drops and violations, newest first.
    pub fn violations(&self) -> Vec<serde_json::Value> {
        self.items(&["get", "violations"])
    }

    /// Whether a report of `verdict` for `edge` is among the recent ones.
    pub fn reported(&self, verdict: &str, edge: &str) -> bool {
        self.violations()
            .iter()
            .any(|v| v["verdict"] == verdict && v["edge"] == edge)
    }

    /// Links in the node namespace whose names start with `zw` (our host-side veths,
    /// plus anything a test named that way on purpose).
    pub fn host_veths(&self) -> std::collections::BTreeSet<String> {
        self.netns
            .links()
            .into_iter()
            .filter(|l| l.starts_with("zw"))
            .collect()
    }

    /// Waits until no host veth is left: after DEL the enforcer deletes them in the
    /// background (their routes go at once).
    pub fn wait_veths_gone(&self, what: &str) {
        crate::wait::until(what, std::time::Duration::from_secs(10), || {
            self.host_veths().is_empty()
        });
    }

    /// Leases host-local holds for `network`.
    pub fn leases(&self, network: &str) -> Vec<String> {
        lease_files(&self.ipam_dir().join(network))
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

fn lease_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    names.sort();
    names
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_enforcer(true);
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.enforcer_log())
        {
            eprintln!("--- enforcer log of {} ---\n{log}", self.netns.name);
        }
    }
}
