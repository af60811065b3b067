//! The network of the cluster benchmarks: an underlay (a bridge in a namespace of its
//! own) with node namespaces plugged in by veth, and a real etcd cluster (Debian's
//! `etcd`), each member in a namespace of its own on it.
//!
//! Addresses: underlay host `h` is `10.240.0.h/16`; the etcd members are hosts 200,
//! 201, ... Fake
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

/// A real etcd cluster on the underlay: its members, each in a namespace of its own,
/// killed on drop.
pub struct Etcd {
    members: Vec<Member>,
}

struct Member {
    netns: Netns,
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
    /// Starts a cluster of `members` members (hosts 200, 201, ...) and waits until
    /// every member answers healthy.
    pub fn start(underlay: &Underlay, members: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            std::path::Path::new(ETCD).is_file() && std::path::Path::new(ETCDCTL).is_file(),
            "{ETCD} or {ETCDCTL} is missing: apt-get install etcd-server etcd-client (scripts/install-deps)"
        );
        anyhow::ensure!((1..=5).contains(&members), "1 to 5 etcd members");
        let peer = |i: usize| format!("http://10.240.0.{}:2380", host(i));
        let initial = (0..members)
            .map(|i| format!("m{i}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Self {
            members: Vec::with_capacity(members),
        };
        for i in 0..members {
            let netns = Netns::new("etcd")?;
            underlay.attach(&netns, host(i))?;
            let dir = tempfile::Builder::new()
                .prefix("zw-bench-etcd-")
                .tempdir()?;
            let log = File::create(dir.path().join("etcd.log"))?;
            let url = client_url(i);
            let child = netns
                .exec(ETCD)
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &url])
                .args(["--advertise-client-urls", &url])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "zw-bench"])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("start etcd")?;
            cleanup::register_pid(child.id());
            etcd.members.push(Member {
                netns,
                child,
                _dir: dir,
            });
        }
        let end = Instant::now() + Duration::from_secs(30);
        while etcd.ctl(&["endpoint", "health"]).is_err() {
            if Instant::now() > end {
                bail!("etcd's {members} member(s) did not all answer healthy within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(etcd)
    }

    /// The first member's client URL.
    pub fn url(&self) -> String {
        client_url(0)
    }

    /// Every member's client URL, comma-separated.
    pub fn urls(&self) -> String {
        (0..self.members.len())
            .map(client_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every member's underlay address.
    pub fn addresses(&self) -> Vec<String> {
        (0..self.members.len())
            .map(|i| format!("10.240.0.{}", host(i)))
            .collect()
    }

    /// The first member's namespace (on the underlay, next to the others).
    pub fn netns(&self) -> &Netns {
        &self.members[0].netns
    }

    /// `etcdctl --endpoints URLS ...` (every member) inside the first member's namespace.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ctl_at(&self.urls(), args)
    }

    /// `etcdctl --endpoints ENDPOINTS ...` inside the first member's namespace.
    fn ctl_at(&self, endpoints: &str, args: &[&str]) -> anyhow::Result<String> {
        run(self
            .netns()
            .exec(ETCDCTL)
            .args(["--endpoints", endpoints])
            .args(args))
    }

    /// The first member's status (every member holds the same data).
    pub fn status(&self) -> anyhow::Result<EtcdStatus> {
        let out = self.ctl_at(&self.url(), &["endpoint", "status", "-w", "json"])?;
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

    /// The enforcer's store flags for this cluster (every member).
    pub fn enforcer_args(&self, prefix: &str) -> Vec<String> {
        [
            "--store",
            "etcd",
            "--etcd-endpoints",
            &self.urls(),
            "--etcd-prefix",
            prefix,
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

/// The underlay host of member `i`.
fn host(i: usize) -> u8 {
    ETCD_HOST + i as u8
}

fn client_url(i: usize) -> String {
    format!("http://10.240.0.{}:2379", host(i))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = Command::new("kill")
                .args(["-KILL", &member.child.id().to_string()])
                .status();
            let _ = member.child.wait();
            cleanup::forget_pid(member.child.id());
        }
    }
}
