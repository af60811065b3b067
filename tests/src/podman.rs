//! A real podman (Debian's 4.3) for one test, with the CNI network backend: its own
//! storage, run and temporary directories and its own network config dir under a
//! temporary directory, the node's CNI bin dir as its only plugin dir, and every podman
//! command run in the node's network namespace (`nsenter --net`, which keeps the
//! machine's mount namespace: the containers' namespaces podman mounts under /run/netns
//! stay visible to the test). The test image is loaded from a local OCI archive.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::netns::run_ok;
use crate::node::Node;
use crate::oci::{TEST_IMAGE, build_test_image};
use crate::runtime_host as host;
use crate::wait;

pub struct Podman {
    pub dir: tempfile::TempDir,
    node_netns: PathBuf,
    /// The cgroup parent of the test's containers (removed on drop).
    pub cgroup_parent: String,
    /// Containers run so far, with what they left to check.
    started: Vec<Container>,
}

/// A container podman ran.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The container's network namespace (`/run/netns/netns-<uuid>`).
    pub netns: PathBuf,
    pub ip: String,
    /// conmon, which podman leaves running beside the container, and the container's
    /// own first process.
    pub pids: Vec<u32>,
}

impl Podman {
    /// A podman whose only network is `conflist` (a whole CNI network config list),
    /// with the test image loaded.
    pub fn new(node: &Node, conflist: &Value) -> Self {
        assert!(
            Path::new("/usr/bin/podman").is_file(),
            "podman is missing: scripts/install-deps installs Debian's podman"
        );
        let dir = tempfile::Builder::new()
            .prefix("zw-podman-")
            .tempdir()
            .expect("temp dir");
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).expect("conf dir");
        let name = conflist["name"].as_str().expect("conflist name");
        std::fs::write(
            conf_dir.join(format!("10-{name}.conflist")),
            serde_json::to_vec_pretty(conflist).expect("conflist JSON"),
        )
        .expect("write conflist");
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("containers.conf"),
            format!(
                r#"[containers]
# podman raises the open-files and process limits of root's containers (to 1048576 and
# more), which runc may not set where the test runs under lower hard limits: limits
# every machine allows.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}"]
network_config_dir = "{d}/net.d"
default_network = "{name}"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "runc"
tmp_dir = "{d}/tmp"
volume_path = "{d}/volumes"
static_dir = "{d}/libpod"
"#,
                bin = node.bin_dir().display()
            ),
        )
        .expect("write containers.conf");
        std::fs::write(
            dir.path().join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/root\"\nrunroot = \"{d}/run\"\n"
            ),
        )
        .expect("write storage.conf");
        std::fs::write(
            dir.path().join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("write registries.conf");
        let podman = Self {
            node_netns: node.netns.path(),
            cgroup_parent: format!("/zonewarden-test-{}-{name}", std::process::id()),
            dir,
            started: Vec::new(),
        };
        let image = build_test_image(&podman.dir.path().join("image"));
        podman.load(&image);
        podman
    }

    /// The environment that points any podman (or a script running it) at this
    /// podman's config, storage and directories.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        let d = self.dir.path();
        vec![
            ("CONTAINERS_CONF", d.join("containers.conf")),
            ("CONTAINERS_STORAGE_CONF", d.join("storage.conf")),
            ("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf")),
        ]
    }

    /// `podman ARGS` in the node namespace with this podman's config.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.node_netns.display()))
            .envs(self.env())
            .args(self.podman_args(args));
        cmd
    }

    /// The podman command line of `podman ARGS` with this podman's directories.
    fn podman_args(&self, args: &[&str]) -> Vec<String> {
        let d = self.dir.path().display();
        let mut all: Vec<String> = [
            "/usr/bin/podman".to_owned(),
            "--root".to_owned(),
            format!("{d}/root"),
            "--runroot".to_owned(),
            format!("{d}/run"),
            "--tmpdir".to_owned(),
            format!("{d}/tmp"),
            "--network-config-dir".to_owned(),
            format!("{d}/net.d"),
        ]
        .into();
        all.extend(
            [
                "--network-backend",
                "cni",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
                "--runtime",
                "runc",
            ]
            .map(str::to_owned),
        );
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    }

    /// `podman load` of an OCI archive, leaving no blob-info cache on the machine.
    fn load(&self, archive: &Path) {
        let mut cmd = without_host_cache("nsenter");
        cmd.arg(format!("--net={}", self.node_netns.display()))
            .envs(self.env())
            .args(self.podman_args(&["load", "--input", archive.to_str().expect("utf-8 path")]));
        run_ok(&mut cmd);
    }

    /// `podman ARGS`, whatever its exit.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run podman")
    }

    /// `podman ARGS`, which must succeed; returns its stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args))
    }

    /// `podman run -d` of the test image named `name` on `network` (what the runtime
    /// sends through CNI: the container id, `K8S_POD_NAME=<name>`), and what it made.
    pub fn run(&mut self, name: &str, network: &str) -> Result<Container, String> {
        let out = self.output(&[
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            network,
            "--cgroup-parent",
            &self.cgroup_parent,
            TEST_IMAGE,
        ]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(self.track(name, Some(network)))
    }

    /// Inspects the running container `name` (address on `network`, if any) and keeps
    /// it for the checks of what is left and for the clean-up.
    pub fn track(&mut self, name: &str, network: Option<&str>) -> Container {
        let inspect: Value = serde_json::from_str(&self.run_ok(&["inspect", name]))
            .unwrap_or_else(|e| panic!("podman inspect {name}: {e}"));
        let c = &inspect[0];
        let id = c["Id"].as_str().expect("container id").to_owned();
        let netns = PathBuf::from(
            c["NetworkSettings"]["SandboxKey"]
                .as_str()
                .unwrap_or_else(|| panic!("no network namespace for {name}: {c}")),
        );
        let ip = network
            .and_then(|n| c["NetworkSettings"]["Networks"][n]["IPAddress"].as_str())
            .unwrap_or_default()
            .to_owned();
        let pids = ["ConmonPid", "Pid"]
            .iter()
            .filter_map(|k| c["State"][k].as_u64())
            .filter(|p| *p > 0)
            .map(|p| p as u32)
            .collect();
        let container = Container {
            id,
            name: name.to_owned(),
            netns,
            ip,
            pids,
        };
        self.started.push(container.clone());
        container
    }

    /// `podman rm --force --time 0`: stops the container (CNI DEL) and removes it.
    pub fn remove(&self, container: &Container) {
        self.run_ok(&["rm", "--force", "--time", "0", &container.name]);
    }

    /// What this podman left on the machine: live conmon or container processes,
    /// mounts under its directory, container network namespaces, the test's cgroups,
    /// the CNI result cache of its containers.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = Vec::new();
        for c in &self.started {
            left.extend(
                c.pids
                    .iter()
                    .filter(|p| host::alive(**p))
                    .map(|p| format!("process {p} of {}", c.name)),
            );
            if c.netns.starts_with("/run/netns") && host::netns_exists(&c.netns) {
                left.push(format!("netns {}", c.netns.display()));
            }
            for entry in std::fs::read_dir("/var/lib/cni/results")
                .into_iter()
                .flatten()
                .flatten()
            {
                let file = entry.file_name().to_string_lossy().into_owned();
                if file.contains(&c.id) {
                    left.push(format!("CNI cache /var/lib/cni/results/{file}"));
                }
            }
        }
        left.extend(
            host::mounts_under(self.dir.path())
                .iter()
                .map(|m| format!("mount {}", m.display())),
        );
        // podman keeps one `conmon` cgroup under the parent for the monitors of all its
        // containers (as `/libpod_parent/conmon`): it must be empty, the containers'
        // own cgroups gone.
        for cgroup in host::cgroups_of(&self.cgroup_parent) {
            for child in host::cgroup_children(&cgroup) {
                if child == cgroup.join("conmon") {
                    if !host::cgroup_processes(&child).is_empty() {
                        left.push(format!("processes in {}", child.display()));
                    }
                } else {
                    left.push(format!("cgroup {}", child.display()));
                }
            }
        }
        left
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if !self.started.is_empty() {
            let _ = self.output(&["rm", "--all", "--force", "--time", "0"]);
        }
        for c in &self.started {
            for pid in &c.pids {
                if host::alive(*pid) {
                    host::signal(*pid, "-KILL");
                }
            }
        }
        wait::until_or_not(Duration::from_secs(5), || {
            self.started
                .iter()
                .all(|c| c.pids.iter().all(|p| !host::alive(*p)))
        });
        host::unmount_under(self.dir.path());
        for c in self
            .started
            .iter()
            .filter(|c| c.netns.starts_with("/run/netns"))
        {
            host::remove_netns(&c.netns);
        }
        host::remove_cgroups(&self.cgroup_parent);
    }
}

/// `program` (to which the caller adds arguments) in a mount namespace of its own with
/// a tmpfs over `/var/lib/containers` (over `/var/lib` when the machine has none):
/// podman 4.3 keeps root's blob-info cache in `/var/lib/containers/cache` whatever its
/// `--root`, and an image it loads, imports or builds must leave nothing on the
/// machine.
pub fn without_host_cache(program: &str) -> Command {
    let script = "if [ -d /var/lib/containers ]; then \
                      mount -t tmpfs zw-podman-cache /var/lib/containers; \
                  else mount -t tmpfs zw-podman-cache /var/lib; fi && exec \"$@\"";
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--"])
        .args(["sh", "-c", script, "sh", program]);
    cmd
}
