//! A real containerd (Debian's 1.6) for one test, driven through its CRI as the kubelet
//! does: its own root, state, sockets, pod network namespaces and CNI dirs under a
//! temporary directory, running in a node's network namespace (entered with
//! `nsenter --net`, not `ip netns exec`: that would give it a mount namespace of its own,
//! and the pods' namespaces it mounts would be invisible to the test and to runc), with
//! the test image imported from a local OCI archive.
//!
//! The CNI conf dir holds one conflist of the test; the bin dir has the node's plugins
//! (Debian's reference plugins, `loopback` among them) and, as `zonewarden`, a wrapper
//! that writes down each call containerd makes (command, container id, netns) and then
//! runs the real plugin, so a test sees which CNI calls the CRI makes. Stopped by PID;
//! on drop everything it started or mounted is taken away, even after a failure.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cri::{CriClient, pod_config};
use crate::netns::run_ok;
use crate::node::Node;
use crate::oci::{TEST_IMAGE, build_test_image};
use crate::runtime_host as host;
use crate::wait;

/// The containerd namespace the CRI plugin uses.
const CRI_NAMESPACE: &str = "k8s.io";

pub struct Containerd {
    pub dir: tempfile::TempDir,
    node_netns: PathBuf,
    child: Option<Child>,
    /// The cgroup parent of the test's pods (removed on drop).
    pub cgroup_parent: String,
    /// The network namespaces of the sandboxes run so far.
    netns_seen: Vec<PathBuf>,
}

/// A pod sandbox containerd ran.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    /// The pod's network namespace (`<state>/io.containerd.grpc.v1.cri/netns/cni-<uuid>`).
    pub netns: PathBuf,
    /// The pod's address, as containerd reports it from the CNI result.
    pub ip: String,
}

impl Containerd {
    /// Starts containerd for `node` with `conflist` (a whole CNI network config list)
    /// as its only network, and imports the test image.
    pub fn start(node: &Node, conflist: &Value) -> Self {
        let binary = Path::new("/usr/bin/containerd");
        assert!(
            binary.is_file() && Path::new("/usr/bin/runc").is_file(),
            "containerd or runc is missing: scripts/install-deps installs Debian's \
             containerd and runc"
        );
        let dir = tempfile::Builder::new()
            .prefix("zw-containerd-")
            .tempdir()
            .expect("temp dir");
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).expect("conf dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("log dir");
        let name = conflist["name"].as_str().expect("conflist name");
        std::fs::write(
            conf_dir.join(format!("10-{name}.conflist")),
            serde_json::to_vec_pretty(conflist).expect("conflist JSON"),
        )
        .expect("write conflist");
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).expect("bin dir");
        for entry in std::fs::read_dir(node.bin_dir()).expect("the node's bin dir") {
            let entry = entry.expect("plugin entry");
            if entry.file_name() != "zonewarden" {
                std::os::unix::fs::symlink(entry.path(), bin_dir.join(entry.file_name()))
                    .expect("link plugin");
            }
        }
        write_recording_plugin(&bin_dir.join("zonewarden"), &dir.path().join("cni-calls"));
        let cgroup_parent = format!("/zonewarden-test-{}-{name}", std::process::id());
        let mut containerd = Self {
            node_netns: node.netns.path(),
            dir,
            child: None,
            cgroup_parent,
            netns_seen: Vec::new(),
        };
        std::fs::write(containerd.config_path(), containerd.config())
            .expect("write containerd config");
        containerd.launch();
        let image = build_test_image(&containerd.dir.path().join("image"));
        containerd.ctr(&["images", "import", image.to_str().expect("utf-8 path")]);
        containerd
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("containerd.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The CNI calls of zonewarden containerd made for `container_id`, in order, as
    /// `COMMAND netns` (`-` for no netns).
    pub fn cni_calls(&self, container_id: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("cni-calls"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split(' ');
                let (command, id, netns) = (words.next()?, words.next()?, words.next()?);
                (id == container_id).then(|| format!("{command} {netns}"))
            })
            .collect()
    }

    /// containerd's config: everything of its own under the test's directory.
    fn config(&self) -> String {
        let d = self.dir.path().display();
        format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
# Only what the CRI path needs.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{TEST_IMAGE}"
  # Without it runc cannot start a sandbox here ("can't get final child's PID from
  # pipe"): the sandbox's oom_score_adj (-998) may not go below containerd's own.
  restrict_oom_score_adj = true
  # The pods' network namespaces under the state dir, not /run/netns: whatever a
  # failure leaves is under the test's directory and goes with it.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/bin"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
"#
        )
    }

    /// Starts the containerd process in the node namespace and waits until its CRI
    /// answers.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "containerd already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.node_netns.display()))
            .arg("/usr/bin/containerd")
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.child = Some(child);
        let socket = self.socket();
        let mut exited = None;
        wait::until(
            "containerd's CRI to answer Version",
            Duration::from_secs(30),
            || {
                if let Some(status) = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    exited = Some(status);
                    return true;
                }
                socket.exists()
                    && CriClient::connect(&socket).is_ok_and(|mut c| c.version().is_ok())
            },
        );
        if let Some(status) = exited {
            self.child = None;
            panic!(
                "containerd exited ({status}) at start:\n{}",
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        }
    }

    /// Stops containerd (SIGTERM by its PID); its pods keep running in their shims.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            host::stop_child(&mut child, Duration::from_secs(10));
        }
    }

    /// Stops and starts containerd again with the same config and state.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// A CRI client of this containerd.
    pub fn cri(&self) -> CriClient {
        CriClient::connect(&self.socket())
            .unwrap_or_else(|e| panic!("connect to containerd's CRI: {e}"))
    }

    /// `ctr` against this containerd, in the CRI's namespace; must succeed.
    pub fn ctr(&self, args: &[&str]) -> String {
        run_ok(
            Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .args(["--namespace", CRI_NAMESPACE])
                .args(args),
        )
    }

    /// `ctr run --cni --rm` of the test image as container `id`, in the foreground (its
    /// default command sleeps), in the node's network namespace, as an operator runs a
    /// container without Kubernetes. ctr reads CNI from the fixed paths
    /// `/etc/cni/net.d` and `/opt/cni/bin`; in a mount namespace of its own, this
    /// containerd's conf and bin dirs are mounted there for it alone, so the machine's
    /// CNI configuration is neither read nor changed. When the task ends, ctr sends
    /// DEL and removes the container.
    pub fn ctr_run_cni(&self, id: &str) -> Child {
        let d = self.dir.path();
        std::fs::create_dir_all(d.join("fifo")).expect("fifo dir");
        std::fs::create_dir_all(d.join("opt")).expect("opt dir");
        // A tmpfs over `/opt`, for ctr alone, with `cni/bin` linking to the plugins.
        let script = format!(
            "set -e\n\
             mount --make-rprivate /\n\
             mount --bind '{d}/net.d' /etc/cni/net.d\n\
             mount -t tmpfs zw-ctr-opt /opt\n\
             mkdir -p /opt/cni\n\
             ln -s '{d}/bin' /opt/cni/bin\n\
             exec ctr --address '{socket}' --namespace {CRI_NAMESPACE} run --cni --rm \
             --null-io --fifo-dir '{d}/fifo' --runc-root '{d}/runc' \
             --cgroup '{cgroup}/ctr-{id}' {TEST_IMAGE} {id}\n",
            d = d.display(),
            socket = self.socket().display(),
            cgroup = self.cgroup_parent,
        );
        assert!(
            Path::new("/etc/cni/net.d").is_dir() && Path::new("/opt").is_dir(),
            "ctr reads CNI from /etc/cni/net.d and /opt/cni/bin; the test mounts its own \
             over them and needs both directories (Debian's podman package makes \
             /etc/cni/net.d)"
        );
        Command::new("nsenter")
            .arg(format!("--net={}", self.node_netns.display()))
            .args(["unshare", "--mount", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                File::options()
                    .create(true)
                    .append(true)
                    .open(d.join(format!("ctr-{id}.log")))
                    .expect("ctr log"),
            )
            .spawn()
            .expect("start ctr run --cni")
    }

    /// Runs a pod sandbox as the kubelet does for pod `namespace/name` with its
    /// annotations, and reads back its network namespace and address.
    pub fn run_pod(
        &mut self,
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
    ) -> Result<Sandbox, tonic::Status> {
        let log_dir = self.dir.path().join("logs").join(name);
        std::fs::create_dir_all(&log_dir).expect("pod log dir");
        let config = pod_config(namespace, name, annotations, &log_dir, &self.cgroup_parent);
        let mut cri = self.cri();
        let id = cri.run_pod_sandbox(config)?;
        let status = cri.pod_sandbox_status(&id)?;
        let info: Value = status
            .info
            .get("info")
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null);
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no network namespace in the status of {id}: {info}"));
        self.netns_seen.push(netns.clone());
        let ip = status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        Ok(Sandbox { id, netns, ip })
    }

    /// The shims and pod processes containerd started, by their PID files in its state
    /// directory, that are still alive.
    pub fn live_shims(&self) -> Vec<u32> {
        let tasks = self
            .dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(CRI_NAMESPACE);
        let mut pids = Vec::new();
        for entry in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            for file in ["init.pid", "shim.pid"] {
                let pid = std::fs::read_to_string(entry.path().join(file))
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok());
                pids.extend(pid.filter(|p| host::alive(*p)));
            }
        }
        pids
    }

    /// What this containerd left on the machine: live shims, mounts under its
    /// directory, pod network namespaces, the test's cgroups, the CNI result cache of
    /// its sandboxes.
    pub fn leftovers(&self, sandbox_ids: &[&str]) -> Vec<String> {
        let mut left: Vec<String> = Vec::new();
        left.extend(self.live_shims().iter().map(|p| format!("process {p}")));
        left.extend(
            host::mounts_under(self.dir.path())
                .iter()
                .map(|m| format!("mount {}", m.display())),
        );
        left.extend(
            self.netns_seen
                .iter()
                .filter(|n| host::netns_exists(n))
                .map(|n| format!("netns {}", n.display())),
        );
        for cgroup in host::cgroups_of(&self.cgroup_parent) {
            left.extend(
                host::cgroup_children(&cgroup)
                    .iter()
                    .map(|c| format!("cgroup {}", c.display())),
            );
        }
        // libcni's cache of results, which containerd keeps per sandbox until DEL.
        for entry in std::fs::read_dir("/var/lib/cni/results")
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = entry.file_name().to_string_lossy().into_owned();
            if sandbox_ids.iter().any(|id| file.contains(id)) {
                left.push(format!("CNI cache /var/lib/cni/results/{file}"));
            }
        }
        left
    }
}

/// Writes `path`: a plugin that appends `COMMAND CONTAINERID NETNS` to `record`, then
/// runs the real zonewarden with the same environment, stdin and arguments.
fn write_recording_plugin(path: &Path, record: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        "#!/bin/sh\n\
         echo \"$CNI_COMMAND $CNI_CONTAINERID ${{CNI_NETNS:--}}\" >> '{record}'\n\
         exec '{real}' \"$@\"\n",
        record = record.display(),
        real = crate::bin("zonewarden").display()
    );
    std::fs::write(path, script).expect("write the recording plugin");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("make the recording plugin executable");
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
        for pid in self.live_shims() {
            host::signal(pid, "-KILL");
        }
        wait::until_or_not(Duration::from_secs(5), || self.live_shims().is_empty());
        host::unmount_under(self.dir.path());
        for netns in &self.netns_seen {
            host::remove_netns(netns);
        }
        host::remove_cgroups(&self.cgroup_parent);
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.log_path())
        {
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- containerd log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
