//! Named network namespaces that remove themselves on drop, and commands run in them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace made by a test; deleted (with its interfaces) on drop.
pub struct Netns {
    pub name: String,
    /// Where a runtime mounted a namespace this test adopted (which the runtime, not
    /// the test, removes); `None` for the test's own under /run/netns.
    adopted: Option<PathBuf>,
}

impl Netns {
    /// Creates `zw<pid>-<n>-<role>` with loopback up.
    pub fn new(role: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("zw{}-{n}-{role}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self {
            name,
            adopted: None,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A pod's namespace that a runtime made and mounted at `path` (containerd's
    /// `cni-<uuid>`, podman's `netns-<uuid>`): used like the test's own, entered with
    /// `nsenter --net`, and never deleted by the test: removing it is the runtime's job,
    /// and part of what is tested.
    pub fn adopt(path: &std::path::Path) -> Self {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("netns path {}", path.display()))
            .to_owned();
        Self {
            name,
            adopted: Some(path.to_path_buf()),
        }
    }

    pub fn path(&self) -> PathBuf {
        match &self.adopted {
            Some(path) => path.clone(),
            None => PathBuf::from("/run/netns").join(&self.name),
        }
    }

    /// `ip -n <ns> ...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        if self.adopted.is_some() {
            return run_ok(&mut self.exec("ip", args));
        }
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        run_ok(&mut cmd)
    }

    /// `nft ...` inside the namespace, which must succeed.
    pub fn nft(&self, args: &[&str]) -> String {
        run_ok(self.exec("nft", args).args(Vec::<&str>::new()))
    }

    /// A command run inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        if let Some(path) = &self.adopted {
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--net={}", path.display()))
                .arg(program)
                .args(args);
            return cmd;
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd
    }

    /// Whether `ping -c1` from this namespace to `addr` gets an answer.
    pub fn ping(&self, addr: &str) -> bool {
        self.exec("ping", &["-c1", "-W2", "-q", addr])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Link names in this namespace.
    pub fn links(&self) -> Vec<String> {
        let out = self.ip(&["-j", "link", "show"]);
        let links: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str().map(str::to_owned))
            .collect()
    }

    /// The elements of one set or map of the zonewarden tables (inet and bridge), each
    /// as nft's JSON of it; panics when neither table has such a set or map.
    pub fn nft_elements(&self, name: &str) -> Vec<String> {
        let mut found = None;
        for family in ["inet", "bridge"] {
            let out = self.nft(&["-j", "list", "table", family, "zonewarden"]);
            let v: serde_json::Value = serde_json::from_str(&out).expect("nft JSON");
            found = found.or_else(|| {
                v["nftables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|item| {
                        let set = item.get("set").or_else(|| item.get("map"))?;
                        (set["name"] == name)
                            .then(|| set["elem"].as_array().cloned().unwrap_or_default())
                    })
            });
        }
        let elems = found.unwrap_or_else(|| panic!("the tables have no set or map {name}"));
        elems.iter().map(ToString::to_string).collect()
    }

    /// The elements of one map of the zonewarden table, as "addr" strings.
    pub fn nft_map_keys(&self, map: &str) -> Vec<String> {
        let out = self
            .exec("nft", &["-j", "list", "map", "inet", "zonewarden", map])
            .output()
            .expect("run nft");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut keys = Vec::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            for elem in item["map"]["elem"].as_array().into_iter().flatten() {
                // [key, value] where key may be a plain string or {"elem": {"val": ...}}.
                let key = &elem[0];
                let s = key
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| key["elem"]["val"].as_str().map(str::to_owned));
                keys.extend(s);
            }
        }
        keys.sort();
        keys
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.adopted.is_some() {
            return;
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// Runs a command that must succeed and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
