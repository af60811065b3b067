//! Two networks attaching the same container: each attachment gets a host veth of
//! its own, and neither ADD touches the other's, as root.

use serde_json::json;
use zonewarden_tests::attach::endpoint_of;
use zonewarden_tests::cni::{Attachment, Conflist, exec, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::require_root;

const NET_A: &str = "zw-net-a";
const NET_B: &str = "zw-net-b";

/// The host veths the enforcer records for `container_id`, one per attachment.
fn host_veths_of(node: &Node, container_id: &str) -> Vec<String> {
    let mut names: Vec<String> = node
        .endpoints()
        .iter()
        .filter(|e| e["key"]["containerId"] == container_id)
        .filter_map(|e| e["hostIfname"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn the_same_container_and_ifname_on_two_networks_get_distinct_veths() {
    require_root!();
    let node = Node::with_enforcer();
    let list_a = Conflist::routed(&node, NET_A, "10.139.0.0/24");
    let list_b = Conflist::routed(&node, NET_B, "10.140.0.0/24");
    // One container id, eth0 on each network (each in a netns of its own, as two
    // runtimes or a test harness may do).
    let (pod_a, pod_b) = (Netns::new("na"), Netns::new("nb"));
    let (at_a, at_b) = (
        Attachment::new("shared", &pod_a),
        Attachment::new("shared", &pod_b),
    );
    let rt = json!({});
    let res_a = list_a
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD on {NET_A}: {o:?}"));
    let res_b = list_b
        .add(&node, &at_b, &rt)
        .unwrap_or_else(|o| panic!("ADD on {NET_B}: {o:?}"));
    let veths = host_veths_of(&node, "shared");
    assert_eq!(veths.len(), 2, "two attachments: {veths:?}");
    assert_ne!(veths[0], veths[1], "each network has its own host veth");
    assert_eq!(node.host_veths().len(), 2, "{:?}", node.host_veths());
    for (list, at, res, pod) in [
        (&list_a, &at_a, &res_a, &pod_a),
        (&list_b, &at_b, &res_b, &pod_b),
    ] {
        list.check(&node, at, &rt, res)
            .unwrap_or_else(|o| panic!("CHECK on {}: {o:?}", list.name));
        assert!(
            pod.ping(NODE_ADDR),
            "{}: the pod reaches the node",
            list.name
        );
        assert!(
            node.netns.ping(&first_ip(res)),
            "{}: the node reaches the pod",
            list.name
        );
    }

    // Deleting one attachment leaves the other's.
    list_b
        .del(&node, &at_b, &rt, None)
        .unwrap_or_else(|o| panic!("DEL on {NET_B}: {o:?}"));
    list_a
        .check(&node, &at_a, &rt, &res_a)
        .unwrap_or_else(|o| panic!("CHECK on {NET_A} after DEL on {NET_B}: {o:?}"));
    assert!(pod_a.ping(NODE_ADDR));
    list_a
        .del(&node, &at_a, &rt, None)
        .unwrap_or_else(|o| panic!("DEL on {NET_A}: {o:?}"));
    node.wait_veths_gone("both veths to go");
}

#[test]
fn an_ifname_held_by_another_networks_attachment_is_refused_and_kept() {
    require_root!();
    let node = Node::with_enforcer();
    let list_a = Conflist::routed(&node, NET_A, "10.141.0.0/24");
    let list_b = Conflist::routed(&node, NET_B, "10.142.0.0/24");
    let pod = Netns::new("nab");
    let rt = json!({});
    let at_a = Attachment::new("both", &pod);
    let res_a = list_a
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD on {NET_A}: {o:?}"));
    let record = endpoint_of(&node, "both").expect("registered");

    // Network B asks for eth0 too, in the same netns: eth0 is network A's, live.
    let out = exec(
        &node,
        "zonewarden",
        "ADD",
        &at_a,
        &list_b.single(0, json!({})),
    );
    assert_eq!(out.code(), Some(7), "eth0 is taken: {}", out.stdout);
    assert!(out.stdout.contains("eth0"), "{}", out.stdout);
    assert!(
        node.leases(NET_B).is_empty(),
        "the refused ADD released its lease"
    );
    assert_eq!(
        node.endpoints(),
        vec![record],
        "network A's record is untouched"
    );
    list_a
        .check(&node, &at_a, &rt, &res_a)
        .unwrap_or_else(|o| panic!("network A's attachment is intact: {o:?}"));
    assert!(pod.ping(NODE_ADDR));

    // Once network A's attachment is deleted, network B takes eth0 at once.
    list_a
        .del(&node, &at_a, &rt, None)
        .unwrap_or_else(|o| panic!("DEL on {NET_A}: {o:?}"));
    let res_b = list_b
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD on {NET_B} after DEL on {NET_A}: {o:?}"));
    list_b
        .check(&node, &at_a, &rt, &res_b)
        .unwrap_or_else(|o| panic!("CHECK on {NET_B}: {o:?}"));
    assert!(pod.ping(NODE_ADDR) && node.netns.ping(&first_ip(&res_b)));
}
