//! The enforcer being down, and many attachments at once, as root.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use zonewarden_tests::attach::endpoint_of;
use zonewarden_tests::cni::{Attachment, Conflist, exec, spawn};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::require_root;
use zonewarden_tests::wait;

const NET: &str = "zw-res";

/// The host-side name of `container_id`'s eth0, read back from the enforcer.
fn host_ifname_of(node: &Node, container_id: &str) -> String {
    node.endpoints()
        .iter()
        .find(|e| e["key"]["containerId"] == container_id)
        .and_then(|e| e["hostIfname"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no endpoint for {container_id}"))
}

#[test]
fn enforcer_down_add_fails_with_11_and_del_is_replayed() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.126.0.0/24");
    let (kept, refused) = (Netns::new("kept"), Netns::new("refused"));
    let at_kept = Attachment::new("kept", &kept);
    list.add(&node, &at_kept, &json!({}))
        .unwrap_or_else(|o| panic!("ADD: {o:?}"));
    node.stop_enforcer(false);

    let at = Attachment::new("refused", &refused);
    let conf = list.single(0, json!({"addWaitSeconds": 1}));
    let out = exec(&node, "zonewarden", "ADD", &at, &conf);
    assert!(!out.success, "ADD must fail while the enforcer is down");
    assert_eq!(out.code(), Some(11), "try again later: {}", out.stdout);
    let socket = node.socket().display().to_string();
    let msg = out.json()["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains(&socket), "the message names the socket: {msg}");
    assert!(
        msg.contains("waited 1.0s") && msg.contains("addWaitSeconds"),
        "the message says how long it waited and what sets it: {msg}"
    );
    assert_eq!(node.host_veths().len(), 1, "the refused ADD made no veth");
    assert_eq!(node.leases(NET).len(), 1, "the refused ADD holds no lease");
    assert!(!refused.links().contains(&"eth0".to_owned()));

    let status = exec(&node, "zonewarden", "STATUS", &at, &{
        let mut c = list.single(0, json!({}));
        c["cniVersion"] = json!("1.1.0");
        c
    });
    assert_eq!(
        status.code(),
        Some(50),
        "STATUS is unavailable: {}",
        status.stdout
    );

    list.del(&node, &at_kept, &json!({}), None)
        .unwrap_or_else(|o| panic!("DEL while down must succeed: {o:?}"));
    assert!(node.host_veths().is_empty(), "DEL removed the veth itself");
    assert!(node.leases(NET).is_empty(), "DEL released the lease itself");

    node.start_enforcer();
    wait::until(
        "the queued DEL to be replayed",
        Duration::from_secs(15),
        || node.endpoints().is_empty(),
    );
    assert!(
        node.netns.nft_map_keys("zone_of_v4").is_empty(),
        "the set element went with it"
    );
}

/// An ADD that comes while the enforcer restarts waits for it (`addWaitSeconds`)
/// instead of failing, and attaches the pod once the enforcer answers.
#[test]
fn an_add_while_the_enforcer_restarts_waits_for_it() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.126.1.0/24");
    let pod = Netns::new("waits");
    node.stop_enforcer(false);
    let at = Attachment::new("waits", &pod);
    // Long enough for any machine: the enforcer is started as soon as the ADD waits.
    let log = node.dir.path().join("plugin.log");
    let conf = list.single(
        0,
        json!({"addWaitSeconds": 60, "logLevel": "debug", "logFile": log}),
    );
    let mut running = spawn(&node, "zonewarden", "ADD", &at, &conf);
    // The plugin says when its first attempt failed and it starts waiting: from then
    // on it must still be running, however slow the machine.
    let waiting = || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("waiting for it"));
    wait::until(
        "the plugin to log that it waits",
        Duration::from_secs(30),
        || waiting() || running.exited(),
    );
    assert!(
        waiting(),
        "the plugin logs that it waits for the enforcer: {:?}",
        std::fs::read_to_string(&log)
    );
    assert!(
        !running.exited(),
        "the ADD waits for the enforcer instead of failing"
    );
    node.start_enforcer();
    let out = running.finish();
    assert!(
        out.success,
        "the ADD succeeds once the enforcer answers: {out:?}"
    );
    let ip = out.json()["ips"][0]["address"]
        .as_str()
        .expect("an address")
        .to_owned();
    let record =
        endpoint_of(&node, "waits").unwrap_or_else(|| panic!("registered: {:?}", node.endpoints()));
    assert!(
        record.to_string().contains(ip.split('/').next().unwrap()),
        "the endpoint holds the address the ADD returned: {record}"
    );
    assert_eq!(node.host_veths().len(), 1, "one veth, the pod's");
    list.del(&node, &at, &json!({}), None)
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
}

#[test]
fn fifty_concurrent_adds_then_dels_leak_nothing() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.127.0.0/24");
    let pods: Vec<Netns> = (0..50).map(|i| Netns::new(&format!("c{i}"))).collect();
    let ats: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Attachment::new(&format!("conc-{i}"), p).with_args(&format!(
                "K8S_POD_NAMESPACE=load;K8S_POD_NAME=w{}-{i}",
                i % 5
            ))
        })
        .collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ats
            .iter()
            .map(|at| s.spawn(|| list.add(&node, at, &json!({}))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let mut ips = BTreeSet::new();
    for (i, r) in results.iter().enumerate() {
        let r = r.as_ref().unwrap_or_else(|o| panic!("ADD {i}: {o:?}"));
        ips.insert(r["ips"][0]["address"].as_str().unwrap().to_owned());
    }
    assert_eq!(ips.len(), 50, "every pod got its own address");
    assert_eq!(node.host_veths().len(), 50);
    assert_eq!(node.endpoints().len(), 50);
    assert_eq!(node.netns.nft_map_keys("zone_of_v4").len(), 50);

    std::thread::scope(|s| {
        for at in &ats {
            s.spawn(|| {
                list.del(&node, at, &json!({}), None)
                    .unwrap_or_else(|o| panic!("DEL: {o:?}"))
            });
        }
    });
    node.wait_veths_gone("the 50 retired veths to go");
    assert!(
        node.leases(NET).is_empty(),
        "leases leaked: {:?}",
        node.leases(NET)
    );
    assert!(node.endpoints().is_empty(), "endpoints leaked");
    assert!(
        node.netns.nft_map_keys("zone_of_v4").is_empty(),
        "set elements leaked"
    );
}

#[test]
fn gc_removes_what_is_not_valid() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist {
        cni_version: "1.1.0".into(),
        ..Conflist::routed(&node, NET, "10.128.0.0/24")
    };
    let pods: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("g{i}"))).collect();
    let ats: Vec<Attachment> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| Attachment::new(&format!("gc-{i}"), p))
        .collect();
    for at in &ats {
        list.add(&node, at, &json!({}))
            .unwrap_or_else(|o| panic!("ADD: {o:?}"));
    }
    let gc = |extra| {
        let mut at = ats[0].clone();
        at.container_id = String::new();
        exec(&node, "zonewarden", "GC", &at, &list.single(0, extra))
    };
    // A link that merely starts with "zw" is not ours; a leaked veth of ours is.
    node.netns.ip(&["link", "add", "zw-br0", "type", "bridge"]);
    node.netns.ip(&[
        "link",
        "add",
        "zw0123456789a",
        "type",
        "veth",
        "peer",
        "name",
        "leakpeer",
    ]);
    gc(json!({})).ok("GC without a list");
    assert_eq!(
        node.endpoints().len(),
        3,
        "GC without a list removes nothing"
    );
    gc(json!({"cni.dev/valid-attachments": [{"containerID": "gc-0", "ifname": "eth0"}]})).ok("GC");
    let left: Vec<_> = node
        .endpoints()
        .iter()
        .map(|e| e["key"]["containerId"].clone())
        .collect();
    assert_eq!(left, vec![json!("gc-0")]);
    assert_eq!(
        node.host_veths(),
        BTreeSet::from(["zw-br0".to_owned(), host_ifname_of(&node, "gc-0")]),
        "stale and leaked veths go, other links stay"
    );
    assert_eq!(node.leases(NET).len(), 1, "the stale leases are released");
    gc(json!({"cni.dev/attachments": []})).ok("GC with the older key");
    assert!(node.endpoints().is_empty() && node.leases(NET).is_empty());
    assert_eq!(node.host_veths(), BTreeSet::from(["zw-br0".to_owned()]));
}

#[test]
fn failed_add_after_ipam_leaves_nothing() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.129.0.0/24");
    let pod = Netns::new("bad");
    let at = Attachment::new("bad-zone", &pod);
    let assert_clean = |what: &str| {
        assert!(
            node.host_veths().is_empty(),
            "{what}: veth left: {:?}",
            node.host_veths()
        );
        assert!(
            node.leases(NET).is_empty(),
            "{what}: lease left: {:?}",
            node.leases(NET)
        );
        assert!(node.endpoints().is_empty(), "{what}: endpoint left");
        assert!(
            node.netns.nft_map_keys("zone_of_v4").is_empty(),
            "{what}: set element left"
        );
    };

    // The enforcer refuses the zone after the lease and the veth exist.
    let rt = json!({"io.kubernetes.cri.pod-annotations": {"zonewarden.io/zone": "Not A Zone"}});
    let out = exec(
        &node,
        "zonewarden",
        "ADD",
        &at,
        &list.single(0, json!({"runtimeConfig": rt})),
    );
    assert_eq!(
        out.code(),
        Some(7),
        "an invalid zone is an invalid config: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("zonewarden.io/zone"),
        "the message names the annotation: {}",
        out.stdout
    );
    assert!(
        !pod.links().contains(&"eth0".to_owned()),
        "no pod interface left"
    );
    assert_clean("refused zone");

    // The pod already has an interface named CNI_IFNAME: refuse, and leave it alone.
    pod.ip(&["link", "add", "eth0", "type", "bridge"]);
    let out = exec(&node, "zonewarden", "ADD", &at, &list.single(0, json!({})));
    assert!(!out.success, "ADD over an existing eth0 must fail");
    assert!(
        out.stdout.contains("eth0"),
        "the message names the interface: {}",
        out.stdout
    );
    assert!(
        pod.links().contains(&"eth0".to_owned()),
        "the pod's own eth0 is untouched"
    );
    assert_clean("existing interface");
}
