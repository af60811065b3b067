//! Root test: the real `zonewarden-enforcer` in a fresh network namespace programs
//! `inet zonewarden`, keeps its elements across a restart (never flushing), and
//! replays a DEL the CNI plugin queued.
//!
//! Needs root, `ip`, `nft` and `sha256sum`, and the binary built first:
//! `cargo build -p zonewarden-enforcer`. Self-contained: it drives the binary and
//! nft through `std::process::Command` only.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

static NETNS_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A namespace `zwt-<pid>-<n>`, deleted on drop.
struct NetnsGuard(String);

impl NetnsGuard {
    fn new() -> Self {
        let name = format!(
            "zwt-{}-{}",
            std::process::id(),
            NETNS_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(
            status.success(),
            "ip netns add {name} failed; this test needs root"
        );
        Self(name)
    }

    fn exec(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(program);
        cmd
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A running enforcer, stopped with SIGTERM on drop.
struct Enforcer(Child);

impl Enforcer {
    fn start(ns: &NetnsGuard, socket: &Path, state: &Path) -> Self {
        let binary = zonewarden_tests::bin("zonewarden-enforcer");
        let child = ns
            .exec(&binary)
            .arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state)
            .args(["--node", "test-node", "--log-level", "info"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the enforcer");
        let enforcer = Self(child);
        // The socket is bound before the table is programmed: ready is when
        // `zwctl status` says so.
        let zwctl = binary.with_file_name("zwctl");
        wait_until("the enforcer to program its table and answer ready", || {
            Command::new(&zwctl)
                .arg("--socket")
                .arg(socket)
                .args(["--timeout", "2", "status"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        enforcer
    }

    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.0.wait().unwrap();
        assert!(
            status.success(),
            "the enforcer must exit cleanly on SIGTERM, got {status}"
        );
        std::mem::forget(self);
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn try_list_table(ns: &NetnsGuard) -> Option<Value> {
    let out = ns
        .exec("nft")
        .args(["-j", "list", "table", "inet", "zonewarden"])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("nft prints JSON"))
}

fn list_table(ns: &NetnsGuard) -> Value {
    try_list_table(ns).expect("table inet zonewarden exists")
}

fn objects<'a>(table: &'a Value, kind: &str) -> Vec<&'a Value> {
    table["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get(kind))
        .collect()
}

fn elements(table: &Value, map: &str) -> Vec<Value> {
    let map = objects(table, "map")
        .into_iter()
        .find(|m| m["name"] == map)
        .expect("the map exists");
    map.get("elem")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Seeds the local store as a previous run would have left it.
fn seed_endpoint(state: &Path, container_id: &str, ip: &str) {
    let key = format!("podnet\0{container_id}\0eth0\0");
    let mut sha = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut sha.stdin.take().unwrap(), key.as_bytes()).unwrap();
    let hash = String::from_utf8(sha.wait_with_output().unwrap().stdout).unwrap();
    let record = json!({"version": 1, "endpoint": {
        "key": {"network": "podnet", "container_id": container_id, "ifname": "eth0"},
        "zone": "shop/web", "zone_source": "config", "netns": "/run/netns/x",
        "host_ifname": null, "ips": [ip], "mac": null, "node": "test-node",
        "pod_namespace": null, "pod_name": null, "attach_mode": "chained", "created_unix_ms": 1
    }});
    let dir = state.join("endpoints");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{}.json", &hash[..64])),
        record.to_string(),
    )
    .unwrap();
}

#[test]
fn enforcer_programs_reconciles_and_replays() {
    let ns = NetnsGuard::new();
    let tmp = tempfile::tempdir().unwrap();
    let (socket, state) = (
        tmp.path().join("run/enforcer.sock"),
        tmp.path().join("state"),
    );
    seed_endpoint(&state, "c1", "10.0.0.5/24");
    seed_endpoint(&state, "c2", "fd00::6/64");

    let enforcer = Enforcer::start(&ns, &socket, &state);
    // The socket is bound before the kernel is reconciled; wait for the elements.
    wait_until("the seeded elements", || {
        try_list_table(&ns).is_some_and(|t| elements(&t, "zone_of_v6").len() == 1)
    });
    let table = list_table(&ns);
    let chains: Vec<_> = objects(&table, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        chains,
        ["forward", "input", "output", "zout_1", "zin_1"],
        "the base chains and the chains of the one local zone"
    );
    let rules = objects(&table, "rule").len();
    let first_rules: Vec<_> = objects(&table, "rule")
        .iter()
        .filter(|r| ["forward", "input", "output"].contains(&r["chain"].as_str().unwrap()))
        .map(|r| r["comment"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        first_rules
            .iter()
            .filter(|c| c.starts_with("known connections"))
            .count()
            == 3,
        "each base chain accepts known connections first: {first_rules:?}"
    );
    let v4 = elements(&table, "zone_of_v4");
    assert_eq!(v4.len(), 1, "the seeded v4 endpoint is programmed: {v4:?}");
    assert_eq!(v4[0][0]["elem"]["val"], "10.0.0.5");
    assert_eq!(v4[0][1], 1, "the first zone gets id 1");
    assert!(
        v4[0][0]["elem"]["comment"]
            .as_str()
            .unwrap()
            .starts_with("shop/web container c1")
    );
    assert_eq!(elements(&table, "zone_of_v6").len(), 1);
    enforcer.stop();
    assert!(!socket.exists(), "a clean shutdown removes the socket");

    // Stopped: enforcement stays. Restarted: nothing is duplicated or flushed.
    assert_eq!(
        elements(&list_table(&ns), "zone_of_v4").len(),
        1,
        "elements outlive the enforcer"
    );
    let _enforcer = Enforcer::start(&ns, &socket, &state);
    let table = list_table(&ns);
    assert_eq!(
        objects(&table, "rule").len(),
        rules,
        "a restart must not duplicate rules"
    );
    assert_eq!(elements(&table, "zone_of_v4").len(), 1);

    // A DEL queued by the plugin removes the endpoint, its element and the file.
    let queue = socket.parent().unwrap().join("pending-del");
    std::fs::create_dir_all(&queue).unwrap();
    let pending = queue.join("c1.json");
    std::fs::write(
        &pending,
        r#"{"network":"podnet","container_id":"c1","ifname":"eth0"}"#,
    )
    .unwrap();
    wait_until("the queued DEL to be replayed", || !pending.exists());
    assert!(
        elements(&list_table(&ns), "zone_of_v4").is_empty(),
        "the replayed DEL removes the element"
    );
    assert_eq!(
        elements(&list_table(&ns), "zone_of_v6").len(),
        1,
        "other endpoints stay"
    );
}

#[test]
fn a_second_enforcer_on_the_same_socket_refuses_to_start() {
    let ns = NetnsGuard::new();
    let tmp = tempfile::tempdir().unwrap();
    let (socket, state) = (tmp.path().join("enforcer.sock"), tmp.path().join("state"));
    let _first = Enforcer::start(&ns, &socket, &state);
    let binary = zonewarden_tests::bin("zonewarden-enforcer");
    let out = ns
        .exec(&binary)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second enforcer must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another zonewarden-enforcer already runs in this network namespace"),
        "stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(socket.exists(), "the first enforcer's socket is left alone");
}

/// A second enforcer with its own socket, state directory and NFLOG group in the same
/// network namespace exits before it touches the first one's table.
#[test]
fn a_second_enforcer_anywhere_in_the_netns_leaves_the_table_alone() {
    let ns = NetnsGuard::new();
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("first.sock");
    let _first = Enforcer::start(&ns, &socket, &tmp.path().join("first-state"));
    let listing = |ns: &NetnsGuard| {
        let out = ns
            .exec("nft")
            .args(["list", "table", "inet", "zonewarden"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = listing(&ns);
    assert!(before.contains("chain forward"), "{before}");
    let binary = zonewarden_tests::bin("zonewarden-enforcer");
    let out = ns
        .exec(&binary)
        .arg("--socket")
        .arg(tmp.path().join("second.sock"))
        .arg("--state-dir")
        .arg(tmp.path().join("second-state"))
        .args(["--nflog-group", "101", "--no-web"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the second enforcer must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already runs in this network namespace"),
        "stderr: {stderr}"
    );
    assert_eq!(
        listing(&ns),
        before,
        "the first enforcer's table is untouched"
    );
    assert!(
        !tmp.path().join("second-state").exists(),
        "the second enforcer wrote nothing"
    );
}
