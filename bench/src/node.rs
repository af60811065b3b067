//! A benchmark "node": a namespace with an address, a CNI bin dir (the release
//! `zonewarden` plus Debian's reference plugins), and its own release enforcer on a
//! socket in a temporary directory, with a gRPC client to it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tonic::transport::Channel;
use zonewarden_enforcer::nft::netlink::{ElementSocket, key_bytes};
use zonewarden_enforcer::nft::ruleset::elements::Part;
use zonewarden_enforcer::nft::ruleset::seal;
use zonewarden_proto::v1;
use zonewarden_proto::v1::enforcer_client::EnforcerClient;

use crate::cleanup;
use crate::netns::Netns;

pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The release binaries next to this one (`target/release/`).
pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("where is zw-bench?")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo build --release --workspace` first",
            path.display()
        );
    }
    Ok(path)
}

pub struct Node {
    pub netns: Netns,
    pub dir: tempfile::TempDir,
    enforcer: Option<Child>,
    /// A netfilter socket opened inside the node, for reading its table's elements.
    kernel: OnceLock<ElementSocket>,
    pub rt: tokio::runtime::Runtime,
    /// More flags for the enforcer (cluster mode: the store, the node's address and block).
    pub extra_args: Vec<String>,
}

impl Node {
    /// A node namespace with `addr` on loopback and forwarding on, without an enforcer.
    pub fn new(addr: &str) -> anyhow::Result<Self> {
        let netns = Netns::new("node")?;
        netns.ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"])?;
        netns.sysctl("net.ipv4.ip_forward", "1");
        let dir = tempfile::Builder::new().prefix("zw-bench-").tempdir()?;
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir)?;
        std::os::unix::fs::symlink(bin("zonewarden")?, bin_dir.join("zonewarden"))?;
        for entry in std::fs::read_dir(REFERENCE_PLUGINS)
            .context("Debian's containernetworking-plugins in /usr/lib/cni")?
        {
            let entry = entry?;
            let _ = std::os::unix::fs::symlink(entry.path(), bin_dir.join(entry.file_name()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        Ok(Self {
            netns,
            dir,
            enforcer: None,
            kernel: OnceLock::new(),
            rt,
            extra_args: Vec::new(),
        })
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/enforcer.sock")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn enforcer_pid(&self) -> Option<u32> {
        self.enforcer.as_ref().map(Child::id)
    }

    /// Starts the enforcer (not waiting); returns when the process exists.
    pub fn spawn_enforcer(&mut self) -> anyhow::Result<()> {
        if self.enforcer.is_some() {
            bail!("the enforcer of {} already runs", self.netns.name);
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("enforcer.log"))?;
        let child = self
            .netns
            .exec(bin("zonewarden-enforcer")?.to_str().context("utf-8 path")?)
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .args(["--node", &self.netns.name, "--log-level", "warn"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start zonewarden-enforcer")?;
        cleanup::register_pid(child.id());
        self.enforcer = Some(child);
        Ok(())
    }

    /// Starts the enforcer and waits until it answers Status ready; returns how long it took.
    pub fn start_enforcer(&mut self) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.spawn_enforcer()?;
        self.wait_ready(Duration::from_secs(120))?;
        Ok(start.elapsed())
    }

    /// Waits until the enforcer is idle (at most 20 ms of CPU over half a second), for
    /// at most `deadline`; returns how long it waited. A data-plane figure taken right
    /// after a restart or a burst of API calls would otherwise share the machine's
    /// cores with the enforcer's own follow-up work (rebuilding, sealing, freeing).
    pub fn wait_idle(&self, deadline: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let pid = self.enforcer_pid().context("the enforcer is not running")?;
        let mut before = crate::proc_stat::cpu_seconds(pid)?;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = crate::proc_stat::cpu_seconds(pid)?;
            if now - before <= 0.02 || start.elapsed() > deadline {
                return Ok(start.elapsed());
            }
            before = now;
        }
    }

    /// Polls Status until it says ready.
    pub fn wait_ready(&mut self, deadline: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + deadline;
        loop {
            let ready = self.rt.block_on(async {
                let mut c = zonewarden_proto::client(&self.socket(), Duration::from_secs(30))
                    .await
                    .ok()?;
                c.status(v1::StatusRequest {}).await.ok()
            });
            if ready.is_some_and(|r| r.get_ref().ready) {
                return Ok(());
            }
            if let Some(child) = self.enforcer.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "the enforcer exited with {status}; its log ends: {}",
                    self.log_tail()
                );
            }
            if Instant::now() > end {
                bail!("the enforcer was not ready within {deadline:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("enforcer.log")
    }

    /// Where the enforcer's log says it panicked, or its last errors, or its last
    /// lines (the log goes with the node's directory).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        if let Some(at) = lines.iter().position(|l| l.contains("panicked")) {
            return lines[at..(at + 3).min(lines.len())].join(" / ");
        }
        let errors: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains("ERROR"))
            .collect();
        let pick = if errors.is_empty() { &lines } else { &errors };
        pick[pick.len().saturating_sub(3)..].join(" / ")
    }

    /// SIGKILL (or SIGTERM) the enforcer and reap it.
    pub fn stop_enforcer(&mut self, kill: bool) {
        let Some(mut child) = self.enforcer.take() else {
            return;
        };
        let signal = if kill { "-KILL" } else { "-TERM" };
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let _ = child.wait();
        cleanup::forget_pid(child.id());
    }

    /// A gRPC client of this node's enforcer.
    pub fn client(&self) -> anyhow::Result<EnforcerClient<Channel>> {
        let socket = self.socket();
        Ok(self
            .rt
            .block_on(zonewarden_proto::client(&socket, Duration::from_secs(120)))?)
    }

    /// `nft ...` inside the node.
    pub fn nft(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::netns::run(self.netns.exec("nft").args(args))
    }

    /// Whether the node's table holds `elem` (nft's notation: `10.1.2.3`, or
    /// `10.1.2.3 . tcp . 80`) in `set`. One netlink lookup in the node's kernel, which
    /// costs the node nothing: `nft get element` reads the whole table first, seconds
    /// of CPU at this scale, on the cores the node's enforcer needs.
    pub fn has_element(&self, set: &str, elem: &str) -> anyhow::Result<bool> {
        let key = element_key(elem)?;
        Ok(self.kernel()?.has_key(set, &key_bytes(&key))?)
    }

    /// Whether the node's table is sealed: its seal names the namespace's current
    /// nftables generation, so a restart confirms the table without reading it back
    /// (see the enforcer's `nft::ruleset::seal`).
    pub fn table_sealed(&self) -> anyhow::Result<bool> {
        let socket = self.kernel()?;
        let Some(keys) = socket.set_keys(seal::DIGEST_SET)? else {
            return Ok(false);
        };
        let generation = socket.generation()?;
        Ok(keys
            .iter()
            .filter_map(|key| seal::read_seal_key(key))
            .any(|(_, sealed)| sealed == generation))
    }

    /// The netfilter socket inside the node, opened at the first use.
    fn kernel(&self) -> anyhow::Result<&ElementSocket> {
        if let Some(socket) = self.kernel.get() {
            return Ok(socket);
        }
        let path = PathBuf::from(format!("/run/netns/{}", self.netns.name));
        let socket = zonewarden_cni::netns::run_in_netns(&path, ElementSocket::open)?
            .with_context(|| format!("open a netfilter socket in {}", self.netns.name))?;
        Ok(self.kernel.get_or_init(|| socket))
    }

    /// `nft -f FILE` inside the node.
    pub fn nft_file(&self, file: &Path) -> anyhow::Result<()> {
        crate::netns::run(self.netns.exec("nft").arg("-f").arg(file)).map(drop)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_enforcer(true);
    }
}

/// The key of an element in nft's notation: fields joined by ` . `, each an address,
/// `tcp`/`udp`/`icmp`, or a port.
fn element_key(elem: &str) -> anyhow::Result<Vec<Part>> {
    elem.split(" . ")
        .map(|field| {
            let field = field.trim();
            Ok(match field {
                "tcp" => Part::Proto(6),
                "udp" => Part::Proto(17),
                "icmp" => Part::Proto(1),
                _ => match field.parse() {
                    Ok(addr) => Part::Addr(addr),
                    Err(_) => Part::Port(
                        field
                            .parse()
                            .with_context(|| format!("{field:?} of element {elem:?}"))?,
                    ),
                },
            })
        })
        .collect()
}
