//! Isolation holes that are not about one address family, as root: the node's
//! addresses as they change, and the table as other tools change it.

use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{add_pod, target_of};
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

/// Addresses the test adds to the node after its enforcer started.
const LATE4: &str = "10.123.254.9";
const LATE6: &str = "fd7b:fffe::9";

fn host_set_has(node: &Node, set: &str, addr: &str) -> bool {
    node.netns
        .nft_elements(set)
        .iter()
        .any(|e| e == &format!("\"{addr}\""))
}

#[test]
fn node_addresses_added_after_start_are_the_host_zone() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, "zw-late", &["10.160.0.0/24", "fd7b:160::/64"]);
    let app = add_pod(&node, &list, "app", "t/app");
    node.zwctl(&[
        "profile",
        "approve",
        "t/app",
        "--edge",
        "t/app->world:9000/tcp",
    ]);
    node.zwctl(&["mode", "set", "t/app", "enforce"]);
    let _server = Server::start(&node.netns, &["tcp:9000"]);

    // Attack: the node gains an address (a new interface, a VIP); with only world
    // approved, the pod must not reach the node's services through it.
    node.netns
        .ip(&["addr", "add", &format!("{LATE4}/32"), "dev", "lo"]);
    node.netns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{LATE6}/128"),
        "dev",
        "lo",
        "nodad",
    ]);
    wait::until(
        "the new addresses to join the host zone",
        Duration::from_secs(10),
        || host_set_has(&node, "host_v4", LATE4) && host_set_has(&node, "host_v6", LATE6),
    );
    for addr in [LATE4, LATE6] {
        assert!(
            !connects(&app.netns, &target_of(addr, 9000, "tcp")),
            "the node's service on its new address {addr} is host, not world"
        );
    }
    wait::until("the drop to name the host", Duration::from_secs(10), || {
        node.reported("drop", "t/app->host:9000/tcp")
    });

    node.netns
        .ip(&["addr", "del", &format!("{LATE4}/32"), "dev", "lo"]);
    wait::until(
        "a removed address to leave the host zone",
        Duration::from_secs(10),
        || !host_set_has(&node, "host_v4", LATE4),
    );
}

/// Whether `a` reaches `b`'s port, and whether `b`'s other port stays closed to it:
/// the enforcement the table must keep.
fn enforced(a: &zonewarden_tests::pods::Pod, b: &zonewarden_tests::pods::Pod) -> bool {
    connects(&a.netns, &b.target(80, "tcp"))
        && connects(&a.netns, &b.target6(80, "tcp"))
        && !connects(&a.netns, &b.target(81, "tcp"))
        && !connects(&a.netns, &b.target6(81, "tcp"))
}

#[test]
fn the_table_is_restored_when_another_tool_changes_or_removes_it() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, "zw-guard", &["10.161.0.0/24", "fd7b:161::/64"]);
    let a = add_pod(&node, &list, "ga", "t/a");
    let b = add_pod(&node, &list, "gb", "t/b");
    let _server = Server::start(&b.netns, &["tcp:80", "tcp:81"]);
    node.zwctl(&["profile", "approve", "t/b", "--edge", "t/a->t/b:80/tcp"]);
    node.zwctl(&["mode", "set", "t/b", "enforce"]);
    assert!(enforced(&a, &b), "enforced before anything happens");
    let restores = |node: &Node| {
        node.items(&["audit", "log"])
            .iter()
            .filter(|e| e["action"] == "table-restored")
            .count()
    };

    // What `systemctl restart nftables` does with Debian's default configuration,
    // what a firewalld reload does, and three edits by hand: each is undone.
    // The zone id of a's zone: its address's value in the local endpoints' map.
    let a_zone = node
        .netns
        .nft_elements("local_zone_v4")
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .find(|e| e[0]["elem"]["val"] == a.ip.as_str())
        .and_then(|e| e[1].as_u64())
        .expect("a's address is a local endpoint")
        .to_string();
    let attacks: Vec<(&str, Vec<&str>)> = vec![
        ("flush ruleset", vec!["flush", "ruleset"]),
        (
            "delete table",
            vec!["delete", "table", "inet", "zonewarden"],
        ),
        (
            "accept everything first in forward",
            vec!["insert", "rule", "inet", "zonewarden", "forward", "accept"],
        ),
        (
            "delete the jump of a pod's zone",
            vec![
                "delete",
                "element",
                "inet",
                "zonewarden",
                "egress_zones",
                "{",
                &a_zone,
                "}",
            ],
        ),
        (
            "flush a zone chain",
            vec!["flush", "chain", "inet", "zonewarden", "zin_2"],
        ),
        (
            "add a chain of one's own",
            vec![
                "add",
                "chain",
                "inet",
                "zonewarden",
                "mine",
                "{",
                "type",
                "filter",
                "hook",
                "forward",
                "priority",
                "-10",
                ";",
                "}",
            ],
        ),
    ];
    for (what, args) in &attacks {
        let before = restores(&node);
        node.netns.nft(args);
        wait::until(
            &format!("the table to be restored after '{what}'"),
            Duration::from_secs(10),
            || restores(&node) > before,
        );
        wait::until(
            &format!("enforcement to hold again after '{what}'"),
            Duration::from_secs(10),
            || enforced(&a, &b),
        );
        let status = node.zwctl(&["status"]);
        assert_eq!(status["ready"], true, "ready after '{what}': {status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or("")
                .contains("restored"),
            "the status says the table was restored: {status}"
        );
    }
    let listing = node.netns.nft(&["list", "table", "inet", "zonewarden"]);
    assert!(
        !listing.contains("chain mine"),
        "a foreign chain is deleted:\n{listing}"
    );

    // A rule replaced by one that keeps its comment (so the comments still read as
    // ours): the guard knows which chain was touched and rewrites it.
    let chain = node
        .netns
        .nft(&["-a", "list", "chain", "inet", "zonewarden", "zin_2"]);
    let tail: Vec<(String, String)> = chain
        .lines()
        .filter(|l| l.contains("edge in, ") && !l.contains("over ipv6"))
        .map(|l| {
            let handle = l.rsplit("# handle ").next().unwrap_or("").trim().to_owned();
            let comment = l
                .split("comment \"")
                .nth(1)
                .unwrap_or("")
                .split('"')
                .next()
                .unwrap_or("")
                .to_owned();
            (handle, comment)
        })
        .collect();
    assert_eq!(
        tail.len(),
        2,
        "the two IPv4 edge rules of the tail:\n{chain}"
    );
    let script: String = tail
        .iter()
        .map(|(handle, comment)| {
            format!(
                "replace rule inet zonewarden zin_2 handle {handle} accept comment \"{comment}\"\n"
            )
        })
        .collect();
    let file = node.dir.path().join("replace.nft");
    std::fs::write(&file, script).unwrap();
    let before = restores(&node);
    node.netns.nft(&["-f", file.to_str().unwrap()]);
    wait::until(
        "the table to be restored after a same-comment replace",
        Duration::from_secs(10),
        || restores(&node) > before,
    );
    wait::until(
        "enforcement to hold again after a same-comment replace",
        Duration::from_secs(10),
        || enforced(&a, &b),
    );
    let chain = node
        .netns
        .nft(&["list", "chain", "inet", "zonewarden", "zin_2"]);
    assert!(
        !chain
            .lines()
            .any(|l| l.trim_start().starts_with("accept comment")),
        "the replaced rules are rewritten:\n{chain}"
    );
    let entry = node
        .items(&["audit", "log"])
        .into_iter()
        .find(|e| e["action"] == "table-restored")
        .expect("an audit entry");
    assert!(
        entry["detail"].as_str().unwrap_or("").contains("nft"),
        "the entry names the process: {entry}"
    );
}

/// A pod name of any Unicode becomes an element comment cut on a character boundary
/// (109 × `x` then `é` used to put the cut inside `é` and crash an enforcer task).
#[test]
fn a_multibyte_pod_name_is_attached() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, "zw-utf8", "10.162.0.0/24");
    let ns = zonewarden_tests::netns::Netns::new("utf8");
    let name = format!("{}é", "x".repeat(109));
    let at = zonewarden_tests::cni::Attachment::new("utf8-1", &ns).with_args(&format!(
        "IgnoreUnknown=1;ZONEWARDEN_ZONE=shop/web;K8S_POD_NAMESPACE=shop;K8S_POD_NAME={name}"
    ));
    let res = list
        .add(&node, &at, &serde_json::json!({}))
        .unwrap_or_else(|o| panic!("ADD with a multibyte pod name: {o:?}"));
    assert!(
        node.endpoints()
            .iter()
            .any(|e| e["podName"].as_str() == Some(name.as_str())),
        "the endpoint keeps its whole name"
    );
    let comments = node.netns.nft_elements("zone_of_v4");
    assert!(
        comments.iter().any(|c| c.contains("xxxx")),
        "the element carries its cut comment: {comments:?}"
    );
    list.del(&node, &at, &serde_json::json!({}), Some(&res))
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
}

/// The host interface of a routed pod carries its zone id as its interface group, and
/// the table sends the interface's packets to the zone's chains by that group. Attack:
/// someone on the node resets the group (as a tool that manages interface groups
/// would): the pod's packets then match no zone, and must be dropped and reported,
/// never accepted by the chain's policy. The enforcer notices and puts the group back
/// (a `table-restored` audit entry); a start does too. While the enforcer is stopped
/// (SIGSTOP: its table keeps enforcing), the pod stays closed.
#[test]
fn a_pod_interface_that_lost_its_zone_group_is_closed_until_the_enforcer_restores_it() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, "zw-group", &["10.163.0.0/24", "fd7b:163::/64"]);
    let a = add_pod(&node, &list, "gra", "t/a");
    let b = add_pod(&node, &list, "grb", "t/b");
    let _server = Server::start(&b.netns, &["tcp:80", "tcp:81"]);
    node.zwctl(&["profile", "approve", "t/b", "--edge", "t/a->t/b:80/tcp"]);
    node.zwctl(&["mode", "set", "t/b", "enforce"]);
    assert!(enforced(&a, &b), "enforced before anything happens");
    // t/a stays in learn mode: without its group, its packets would meet no chain
    // that drops them.
    let host_if = |pod: &zonewarden_tests::pods::Pod| -> String {
        pod.result["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i.get("sandbox").is_none())
            .and_then(|i| i["name"].as_str())
            .expect("the result names the host interface")
            .to_owned()
    };
    let (a_if, b_if) = (host_if(&a), host_if(&b));
    let group = |node: &Node, name: &str| -> String {
        let out = node.netns.ip(&["-j", "link", "show", "dev", name]);
        let links: serde_json::Value = serde_json::from_str(&out).expect("ip -j link");
        match &links[0]["group"] {
            serde_json::Value::String(name) => name.clone(),
            other => other.to_string(),
        }
    };
    let (a_group, b_group) = (group(&node, &a_if), group(&node, &b_if));
    assert_ne!(a_group, "default", "a's interface carries its zone id");
    assert_ne!(a_group, b_group, "two zones, two groups");
    let pid = node.enforcer_pid().expect("the enforcer runs").to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid}");
    };
    let restores = |node: &Node| {
        node.items(&["audit", "log"])
            .iter()
            .filter(|e| e["action"] == "table-restored")
            .count()
    };

    // a's interface loses its group while the enforcer is stopped: a's new
    // connections are dropped, over both families, to its allowed peer too. Once the
    // enforcer runs again, they are reported and the group is put back.
    let before = restores(&node);
    signal("-STOP");
    node.netns.ip(&["link", "set", "dev", &a_if, "group", "0"]);
    for target in [b.target(80, "tcp"), b.target6(80, "tcp")] {
        assert!(
            !connects(&a.netns, &target),
            "{target} is closed to a pod whose interface names no zone"
        );
    }
    signal("-CONT");
    wait::until(
        "the drop on the interface without a zone to be reported",
        Duration::from_secs(10),
        || node.reported("spoof", "t/a->t/b:80/tcp"),
    );
    wait::until("a's group to be put back", Duration::from_secs(10), || {
        group(&node, &a_if) == a_group && restores(&node) > before
    });
    assert!(enforced(&a, &b), "enforced again");

    // b's interface loses its group. a's zone learns, so its chain lets b:81 through
    // to b's side, where b's zone (enforcing) would drop it: without the group no zone
    // chain is met there, and the port must stay closed. (b:80 is approved, and a's
    // own chain accepts it already.)
    let before = restores(&node);
    signal("-STOP");
    node.netns.ip(&["link", "set", "dev", &b_if, "group", "0"]);
    for target in [b.target(81, "tcp"), b.target6(81, "tcp")] {
        assert!(
            !connects(&a.netns, &target),
            "{target} stays closed when its pod's interface names no zone"
        );
    }
    signal("-CONT");
    wait::until(
        "the drop to the interface without a zone to be reported",
        Duration::from_secs(10),
        || node.reported("spoof", "t/a->t/b:81/tcp"),
    );
    wait::until("b's group to be put back", Duration::from_secs(10), || {
        group(&node, &b_if) == b_group && restores(&node) > before
    });
    assert!(enforced(&a, &b), "enforced again");

    // Changed while the enforcer is down: its start reads the groups with the table
    // and puts them back.
    node.stop_enforcer(false);
    node.netns.ip(&["link", "set", "dev", &a_if, "group", "0"]);
    node.start_enforcer();
    wait::until(
        "the group to be restored at start and enforcement to hold",
        Duration::from_secs(10),
        || enforced(&a, &b),
    );
    assert_eq!(
        (group(&node, &a_if), group(&node, &b_if)),
        (a_group, b_group)
    );
}
