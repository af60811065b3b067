//! Routed mode end to end, as root: real plugin, real enforcer, Debian's host-local.

use std::collections::BTreeSet;

use serde_json::json;
use zonewarden_tests::cni::{Attachment, Conflist, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::require_root;

const NET: &str = "zw-routed";
const SUBNET: &str = "10.123.0.0/24";

#[test]
fn two_pods_talk_check_and_clean_up() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, SUBNET);
    let (pod_a, pod_b) = (Netns::new("pa"), Netns::new("pb"));
    let at_a = Attachment::new("pod-a", &pod_a)
        .with_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=frontend-7d4b9c8f6-x2k9p");
    let at_b = Attachment::new("pod-b", &pod_b)
        .with_args("K8S_POD_NAME=db-0;K8S_POD_NAMESPACE=shop;IgnoreUnknown=1");
    let rt = json!({});

    let res_a = list
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD a: {o:?}"));
    let res_b = list
        .add(&node, &at_b, &rt)
        .unwrap_or_else(|o| panic!("ADD b: {o:?}"));
    assert_eq!(res_a["cniVersion"], "1.0.0");
    assert!(
        res_a["ips"][0].get("version").is_none(),
        "1.x results have no ips[].version"
    );
    let eth0 = res_a["interfaces"][res_a["ips"][0]["interface"].as_u64().unwrap() as usize].clone();
    assert_eq!(eth0["name"], "eth0", "ips[].interface points at CNI_IFNAME");
    assert_eq!(eth0["sandbox"], json!(pod_a.path()));
    let (ip_a, ip_b) = (first_ip(&res_a), first_ip(&res_b));
    assert!(
        res_a["ips"][0]["address"]
            .as_str()
            .unwrap()
            .ends_with("/32")
    );

    assert!(pod_a.ping(&ip_b), "pod a must reach pod b at {ip_b}");
    assert!(pod_b.ping(&ip_a), "pod b must reach pod a at {ip_a}");
    assert!(node.netns.ping(&ip_a), "the node must reach pod a");
    assert!(pod_a.ping(NODE_ADDR), "pod a must reach the node");

    let eps = node.endpoints();
    let zones: BTreeSet<&str> = eps.iter().filter_map(|e| e["zone"].as_str()).collect();
    assert_eq!(
        zones,
        BTreeSet::from(["shop/db", "shop/frontend"]),
        "zones from pod names: {eps:?}"
    );
    assert_eq!(node.netns.nft_map_keys("zone_of_v4"), {
        let mut v = vec![ip_a.clone(), ip_b.clone()];
        v.sort();
        v
    });
    assert_eq!(node.leases(NET).len(), 2);

    list.check(&node, &at_a, &rt, &res_a)
        .unwrap_or_else(|o| panic!("CHECK must pass: {o:?}"));
    pod_a.ip(&["addr", "del", &format!("{ip_a}/32"), "dev", "eth0"]);
    let failed = list
        .check(&node, &at_a, &rt, &res_a)
        .expect_err("CHECK must fail without the address");
    assert!(
        failed.stdout.contains(&ip_a),
        "CHECK names the missing address: {}",
        failed.stdout
    );

    for at in [&at_a, &at_b] {
        list.del(&node, at, &rt, None)
            .unwrap_or_else(|o| panic!("DEL: {o:?}"));
        list.del(&node, at, &rt, None)
            .unwrap_or_else(|o| panic!("second DEL: {o:?}"));
    }
    // The routes go before DEL returns (a new pod may get the address at once); the
    // veths a moment later (the enforcer deletes them in the background).
    let routes = node.netns.ip(&["route", "show"]);
    assert!(
        !routes.contains(&ip_a) && !routes.contains(&ip_b),
        "no pod route may remain: {routes}"
    );
    node.wait_veths_gone("the retired veths to go");
    assert!(
        node.leases(NET).is_empty(),
        "no lease may remain: {:?}",
        node.leases(NET)
    );
    assert!(node.endpoints().is_empty(), "no endpoint may remain");
    assert!(
        node.netns.nft_map_keys("zone_of_v4").is_empty(),
        "no set element may remain"
    );
    assert!(
        !pod_a.links().contains(&"eth0".to_owned()),
        "the pod side goes with the veth"
    );
}

#[test]
fn del_without_netns_prev_result_or_add() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, SUBNET);
    let pod = Netns::new("p");
    let rt = json!({});
    // DEL before any ADD.
    let at = Attachment::new("never-added", &pod);
    list.del(&node, &at, &rt, None)
        .unwrap_or_else(|o| panic!("DEL before ADD: {o:?}"));
    // ADD, then DEL with an empty CNI_NETNS (containerd's RemovePodSandbox).
    let at = Attachment::new("c1", &pod);
    let res = list
        .add(&node, &at, &rt)
        .unwrap_or_else(|o| panic!("ADD: {o:?}"));
    let mut gone = at.clone();
    gone.netns = String::new();
    list.del(&node, &gone, &rt, Some(&res))
        .unwrap_or_else(|o| panic!("DEL without netns: {o:?}"));
    node.wait_veths_gone("the veth to go after a DEL without netns");
    assert!(node.leases(NET).is_empty());
    // ADD, delete the netns, then DEL.
    let pod2 = Netns::new("p2");
    let at2 = Attachment::new("c2", &pod2);
    list.add(&node, &at2, &rt)
        .unwrap_or_else(|o| panic!("ADD: {o:?}"));
    drop(pod2);
    list.del(&node, &at2, &rt, None)
        .unwrap_or_else(|o| panic!("DEL after the netns is gone: {o:?}"));
    node.wait_veths_gone("the veth to go after the netns");
    assert!(node.endpoints().is_empty());
}

/// The enforcer deletes a retired veth by its interface index: an ADD of the same
/// container right after DEL (same host veth name, same pod netns) replaces the old
/// pair itself and keeps its new one.
#[test]
fn add_right_after_del_keeps_the_new_veth() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, SUBNET);
    let pod = Netns::new("again");
    let rt = json!({});
    let at = Attachment::new("again", &pod);
    for round in 0..3 {
        list.add(&node, &at, &rt)
            .unwrap_or_else(|o| panic!("ADD {round}: {o:?}"));
        list.del(&node, &at, &rt, None)
            .unwrap_or_else(|o| panic!("DEL {round}: {o:?}"));
    }
    let res = list
        .add(&node, &at, &rt)
        .unwrap_or_else(|o| panic!("last ADD: {o:?}"));
    // Give any queued deletion time to run, then the new pair must still be there.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(node.host_veths().len(), 1, "{:?}", node.host_veths());
    assert!(
        pod.links().contains(&"eth0".to_owned()),
        "the pod end is there"
    );
    list.check(&node, &at, &rt, &res)
        .unwrap_or_else(|o| panic!("CHECK of the new pair: {o:?}"));
    list.del(&node, &at, &rt, None)
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    // Another container in the same netns right after DEL (another veth name): the
    // old pod end may still be there while the enforcer deletes it; ADD removes it
    // (it is one of ours) instead of refusing eth0.
    let other = Attachment::new("other", &pod);
    list.add(&node, &other, &rt)
        .unwrap_or_else(|o| panic!("ADD of another container in the same netns: {o:?}"));
    list.del(&node, &other, &rt, None)
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    node.wait_veths_gone("the last veth to go");

    // The same, made certain: a leftover pair of ours (zw… host end, our MAC) whose
    // pod end is eth0 is removed by the next ADD; any other eth0 is refused.
    let ours = [
        "link",
        "add",
        "zwleftover001",
        "address",
        "ee:ee:ee:ee:ee:ee",
    ];
    let peer = [
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod.name.as_str(),
    ];
    node.netns.ip(&[&ours[..], &peer[..]].concat());
    let third = Attachment::new("third", &pod);
    list.add(&node, &third, &rt)
        .unwrap_or_else(|o| panic!("ADD over a leftover pair of ours: {o:?}"));
    assert!(
        !node.host_veths().contains("zwleftover001"),
        "the leftover went"
    );
    list.del(&node, &third, &rt, None)
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    node.wait_veths_gone("the veth of the third container to go");
    let theirs = [
        "link", "add", "other0", "type", "veth", "peer", "name", "eth0",
    ];
    node.netns
        .ip(&[&theirs[..], &["netns", pod.name.as_str()][..]].concat());
    let refused = list
        .add(&node, &Attachment::new("fourth", &pod), &rt)
        .expect_err("an eth0 that is not ours is refused");
    assert!(refused.stdout.contains("eth0"), "{}", refused.stdout);
    assert!(node.host_veths().is_empty(), "the refused ADD left nothing");
}

#[test]
fn enforcer_restart_keeps_endpoints_and_elements() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, SUBNET);
    let pods: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("r{i}"))).collect();
    for (i, pod) in pods.iter().enumerate() {
        let at = Attachment::new(&format!("restart-{i}"), pod)
            .with_args(&format!("ZONEWARDEN_ZONE=tier-{i}"));
        list.add(&node, &at, &json!({}))
            .unwrap_or_else(|o| panic!("ADD {i}: {o:?}"));
    }
    let before = (
        node.endpoints(),
        node.netns.nft_map_keys("zone_of_v4"),
        node.zwctl(&["get", "zones"]),
    );
    for kill in [false, true] {
        node.stop_enforcer(kill);
        // While it is down the kernel keeps its state.
        assert_eq!(node.netns.nft_map_keys("zone_of_v4"), before.1);
        node.start_enforcer();
        let after = (
            node.endpoints(),
            node.netns.nft_map_keys("zone_of_v4"),
            node.zwctl(&["get", "zones"]),
        );
        assert_eq!(after, before, "restart (kill={kill}) must change nothing");
    }
}
