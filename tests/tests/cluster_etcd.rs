//! Cluster mode end to end, as root: two node namespaces on one veth link, a real
//! etcd in the first one, each enforcer in its namespace with `--store etcd`. An
//! approval made on node A reaches node B's kernel; each node knows the other's pods.
//! A profile is not deleted while its zone has a pod on another node; once the pod is
//! gone, the deletion made on node A reaches node B, and the zone is gone on both.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::netns::{Netns, run_ok};
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::{require_root, wait};

const NET: &str = "zw-cluster";
const ADDR_A: &str = "10.123.254.1";
const ADDR_B: &str = "10.123.254.2";

/// etcd inside a node namespace, listening on the node's link address; killed by PID
/// on drop.
struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start(netns: &Netns, addr: &str) -> Self {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "/usr/bin/etcd is missing: install Debian's etcd-server (scripts/install-deps)"
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://{addr}:2379");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = netns
            .exec("/usr/bin/etcd", &[])
            .arg("--name=e2e")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg("--listen-peer-urls=http://127.0.0.1:2380")
            .arg("--initial-advertise-peer-urls=http://127.0.0.1:2380")
            .arg("--initial-cluster=e2e=http://127.0.0.1:2380")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let etcd = Self { child, _dir: dir };
        wait::until("etcd answers", Duration::from_secs(60), || {
            netns
                .exec("/usr/bin/etcdctl", &[])
                .env("ETCDCTL_API", "3")
                .args([
                    &format!("--endpoints={url}"),
                    "--command-timeout=1s",
                    "get",
                    "/probe",
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_flags(addr: &str, pod_cidr: &str) -> Vec<String> {
    [
        "--store",
        "etcd",
        "--etcd-endpoints",
        &format!("http://{ADDR_A}:2379"),
        "--etcd-prefix",
        "/zw-e2e",
        "--node-address",
        addr,
        "--pod-cidr",
        pod_cidr,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Whether some zone of `node` lets `peer` in on `port`/tcp (an element of an
/// `allow_in_v4_<zone id>` set).
fn allows_in(node: &Node, peer: &str, port: u16) -> bool {
    let out = node
        .netns
        .nft(&["-j", "list", "table", "inet", "zonewarden"]);
    let table: serde_json::Value = serde_json::from_str(&out).expect("nft JSON");
    table["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("set"))
        .filter(|set| {
            set["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("allow_in_v4_"))
        })
        .flat_map(|set| set["elem"].as_array().cloned().unwrap_or_default())
        .map(|elem| elem.to_string())
        .any(|elem| elem.contains(&format!("\"{peer}\"")) && elem.contains(&port.to_string()))
}

#[test]
fn an_approval_made_on_node_a_is_enforced_on_node_b() {
    require_root!();
    let mut a = Node::new();
    let mut b = Node::new();
    let (link_a, link_b) = (
        format!("zwca{}", std::process::id() % 100_000),
        format!("zwcb{}", std::process::id() % 100_000),
    );
    run_ok(Command::new("ip").args([
        "link",
        "add",
        &link_a,
        "netns",
        &a.netns.name,
        "type",
        "veth",
        "peer",
        "name",
        &link_b,
        "netns",
        &b.netns.name,
    ]));
    a.netns
        .ip(&["addr", "add", &format!("{ADDR_A}/30"), "dev", &link_a]);
    a.netns.ip(&["link", "set", &link_a, "up"]);
    b.netns
        .ip(&["addr", "add", &format!("{ADDR_B}/30"), "dev", &link_b]);
    b.netns.ip(&["link", "set", &link_b, "up"]);
    let _etcd = Etcd::start(&a.netns, ADDR_A);

    let flags_a = cluster_flags(ADDR_A, "10.141.1.0/24");
    let flags_b = cluster_flags(ADDR_B, "10.141.2.0/24");
    a.start_enforcer_with(&flags_a.iter().map(String::as_str).collect::<Vec<_>>());
    b.start_enforcer_with(&flags_b.iter().map(String::as_str).collect::<Vec<_>>());
    let status = b.zwctl(&["status"]);
    assert_eq!(status["store"]["kind"], "etcd", "{status}");
    assert_eq!(status["store"]["up"], true, "{status}");

    let list_a = Conflist::routed(&a, NET, "10.141.1.0/24");
    let list_b = Conflist::routed(&b, NET, "10.141.2.0/24");
    let api = add_pod(&a, &list_a, "api", "shop/api");
    let db = add_pod(&b, &list_b, "db", "shop/db");

    // Each node knows the other's pod as a member of its zone (no jump for it).
    wait::until("node-b knows node-a's pod", Duration::from_secs(30), || {
        b.netns.nft_map_keys("zone_of_v4").contains(&api.ip)
    });
    wait::until("node-a knows node-b's pod", Duration::from_secs(30), || {
        a.netns.nft_map_keys("zone_of_v4").contains(&db.ip)
    });
    let remote: Vec<serde_json::Value> = b
        .endpoints()
        .into_iter()
        .filter(|e| e["node"] == a.netns.name.as_str())
        .collect();
    assert_eq!(remote.len(), 1, "node-b lists node-a's pod: {remote:?}");

    // Approved and enforced once, on node A; node B's kernel follows.
    assert!(!allows_in(&b, &api.ip, 5432), "nothing approved yet");
    a.zwctl(&[
        "profile",
        "approve",
        "shop/db",
        "--edge",
        "shop/api->shop/db:5432/tcp",
        "--comment",
        "approved on node A",
    ]);
    a.zwctl(&["mode", "set", "shop/db", "enforce"]);
    wait::until(
        "node-b enforces node-a's approval",
        Duration::from_secs(30),
        || {
            b.items(&["get", "profiles"]).iter().any(|p| {
                p["zone"] == "shop/db"
                    && p["mode"] == "enforce"
                    && p["approvedEdges"]
                        .to_string()
                        .contains("shop/api->shop/db:5432/tcp")
            })
        },
    );
    wait::until(
        "node-b's kernel lets node-a's api pod reach its db on 5432/tcp",
        Duration::from_secs(30),
        || allows_in(&b, &api.ip, 5432),
    );
    let table = b.netns.nft(&["list", "table", "inet", "zonewarden"]);
    assert!(
        table.contains("shop/db"),
        "node-b's table names the zone: {table}"
    );

    // shop/db has a pod on node B: node A refuses to delete its profile.
    let out = a.zwctl_output(&["profile", "delete", "shop/db"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has 1 endpoint(s)") && stderr.contains(&b.netns.name),
        "names the node of the endpoint: {stderr}"
    );
    // The pod goes; node A learns it through the store, then deletes the profile.
    list_b
        .del(&b, &db.at, &serde_json::json!({}), Some(&db.result))
        .expect("DEL db");
    wait::until(
        "node-a sees node-b's pod gone",
        Duration::from_secs(30),
        || !a.endpoints().iter().any(|e| e["zone"] == "shop/db"),
    );
    let deleted = a.zwctl(&["profile", "delete", "shop/db", "--comment", "retired"]);
    assert_eq!(deleted["zone"], "shop/db", "{deleted}");
    let zones_of = |node: &Node, what: &[&str], field: &str| -> Vec<String> {
        node.items(what)
            .iter()
            .filter_map(|i| i[field].as_str().map(str::to_owned))
            .collect()
    };
    for (name, node) in [("node-a", &a), ("node-b", &b)] {
        wait::until(
            &format!("{name} no longer lists shop/db"),
            Duration::from_secs(30),
            || {
                !zones_of(node, &["get", "profiles"], "zone").contains(&"shop/db".to_owned())
                    && !zones_of(node, &["get", "zones"], "zone").contains(&"shop/db".to_owned())
            },
        );
    }
    assert!(
        !allows_in(&b, &api.ip, 5432),
        "node-b's kernel holds nothing of the deleted approval"
    );
}
