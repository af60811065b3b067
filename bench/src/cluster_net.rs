//! The network of the cluster benchmarks: an underlay (a bridge in a namespace of its
//! own) with node namespaces plugged in by veth, and one real etcd member (Debian's
//! `etcd`) in a namespace of its own on it.
//!
//! Addresses: underlay host `h` is `10.240.0.h/16`; the etcd member is host 200. Fake
//! nodes that exist only as records in etcd have addresses further up the /16.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cleanup;
use crate::netns::{Netns, run};

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";
/// The underlay's interface in every namespace plugged into it.
pub const UNDERLAY_IFNAME: &str = "ul0";
const ETCD_HOST: u8 = 200;

/// One shared L2 network: a bridge in a namespace of its own.
pub struct Underlay {
    pub netns: Netns,
}

impl Underlay {
    pub fn new() -> anyhow::Result<Self> {
        let netns = Netns::new("ul")?;
        netns.ip(&["link", "add", "br0", "type", "bridge"])?;
        netns.ip(&["link", "set", "br0", "up"])?;
        Ok(Self { netns })
    }

    /// Plugs `ns` into the bridge with `10.240.0.host/16` on [`UNDERLAY_IFNAME`].
    pub fn attach(&self, ns: &Netns, host: u8) -> anyhow::Result<()> {
        let port = format!("p{host}");
        self.netns.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            UNDERLAY_IFNAME,
            "netns",
            &ns.name,
        ])?;
        self.netns
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("10.240.0.{host}/16"),
            "dev",
            UNDERLAY_IFNAME,
        ])?;
        ns.ip(&["link", "set", UNDERLAY_IFNAME, "up"])?;
        Ok(())
    }
}

/// One etcd member on the underlay, killed on drop.
pub struct Etcd {
    pub netns: Netns,
    child: Child,
    _dir: tempfile::TempDir,
}

/// What `etcdctl endpoint status` says of the member.
#[derive(Debug, Clone, Copy)]
pub struct EtcdStatus {
    pub revision: i64,
    /// The size of the backend database file, and the part of it in use.
    pub db_size: u64,
    pub db_size_in_use: u64,
}

impl Etcd {
    pub fn start(underlay: &Underlay) -> anyhow::Result<Self> {
        anyhow::ensure!(
            std::path::Path::new(ETCD).is_file() && std::path::Path::new(ETCDCTL).is_file(),
            "{ETCD} or {ETCDCTL} is missing: apt-get install etcd-server etcd-client (scripts/install-deps)"
        );
        let netns = Netns::new("etcd")?;
        underlay.attach(&netns, ETCD_HOST)?;
        let dir = tempfile::Builder::new()
            .prefix("zw-bench-etcd-")
            .tempdir()?;
        let log = File::create(dir.path().join("etcd.log"))?;
        let url = Self::url_of();
        let peer = format!("http://10.240.0.{ETCD_HOST}:2380");
        let child = netns
            .exec(ETCD)
            .args(["--name", "m0"])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("m0={peer}")])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start etcd")?;
        cleanup::register_pid(child.id());
        let etcd = Self {
            netns,
            child,
            _dir: dir,
        };
        let end = Instant::now() + Duration::from_secs(30);
        while etcd.ctl(&["endpoint", "health"]).is_err() {
            if Instant::now() > end {
                bail!("etcd did not answer healthy within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(etcd)
    }

    fn url_of() -> String {
        format!("http://10.240.0.{ETCD_HOST}:2379")
    }

    pub fn url(&self) -> String {
        Self::url_of()
    }

    /// `etcdctl --endpoints URL ...` inside the member's namespace.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(self
            .netns
            .exec(ETCDCTL)
            .args(["--endpoints", &self.url()])
            .args(args))
    }

    pub fn status(&self) -> anyhow::Result<EtcdStatus> {
        let out = self.ctl(&["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("etcdctl status JSON")?;
        let s = &v[0]["Status"];
        let int = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
        Ok(EtcdStatus {
            revision: int(&s["header"]["revision"]),
            db_size: int(&s["dbSize"]) as u64,
            db_size_in_use: int(&s["dbSizeInUse"]) as u64,
        })
    }

    /// Compacts the history up to the current revision; returns that revision.
    pub fn compact(&self) -> anyhow::Result<i64> {
        let rev = self.status()?.revision;
        self.ctl(&["compact", &rev.to_string(), "--physical"])?;
        Ok(rev)
    }

    /// The enforcer's store flags for this member.
    pub fn enforcer_args(&self, prefix: &str) -> Vec<String> {
        [
            "--store",
            "etcd",
            "--etcd-endpoints",
            &self.url(),
            "--etcd-prefix",
            prefix,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        cleanup::forget_pid(self.child.id());
    }
}
