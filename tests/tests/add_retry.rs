//! A runtime retries ADD with the same container, ifname and network (after a
//! timeout, or a failure further down its list): the attachment the first ADD made
//! keeps working, routed and chained, as root.

use serde_json::json;
use zonewarden_tests::attach::{bridge_chained, endpoint_of};
use zonewarden_tests::cni::{Attachment, Conflist, exec, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::require_root;

const NET: &str = "zw-retry";

/// How many `endpoint-add` entries the audit log holds for `container_id`.
fn audited_adds(node: &Node, container_id: &str) -> usize {
    node.items(&["audit", "log"])
        .iter()
        .filter(|e| e["action"] == "endpoint-add" && e["target"] == container_id)
        .count()
}

#[test]
fn a_repeated_routed_add_answers_again_and_keeps_the_attachment() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.131.0.0/24");
    let pod = Netns::new("retry");
    let at = Attachment::new("retry-0", &pod)
        .with_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=api-0");
    let rt = json!({});
    let first = list
        .add(&node, &at, &rt)
        .unwrap_or_else(|o| panic!("first ADD: {o:?}"));
    list.check(&node, &at, &rt, &first)
        .unwrap_or_else(|o| panic!("CHECK after the first ADD: {o:?}"));
    let ip = first_ip(&first);
    let record = endpoint_of(&node, "retry-0").expect("registered");

    for round in 1..=2 {
        let again = list
            .add(&node, &at, &rt)
            .unwrap_or_else(|o| panic!("repeated ADD {round} must succeed: {o:?}"));
        assert_eq!(again, first, "a repeated ADD answers with the same result");
        list.check(&node, &at, &rt, &again)
            .unwrap_or_else(|o| panic!("CHECK after repeated ADD {round}: {o:?}"));
        assert!(
            pod.ping(NODE_ADDR),
            "round {round}: the pod reaches the node"
        );
        assert!(node.netns.ping(&ip), "round {round}: the node reaches {ip}");
        assert_eq!(node.leases(NET), vec![ip.clone()], "one lease, the first");
        assert_eq!(
            endpoint_of(&node, "retry-0").as_ref(),
            Some(&record),
            "the registration is untouched"
        );
        assert_eq!(node.endpoints().len(), 1, "one endpoint");
        assert_eq!(
            node.host_veths().len(),
            1,
            "one veth: {:?}",
            node.host_veths()
        );
    }
    assert_eq!(
        audited_adds(&node, "retry-0"),
        1,
        "one endpoint-add in the audit log"
    );

    // The attachment is broken now: a repeated ADD says so and changes nothing; the
    // runtime's DEL then removes it and the next ADD starts afresh.
    pod.ip(&["addr", "del", &format!("{ip}/32"), "dev", "eth0"]);
    let out = exec(&node, "zonewarden", "ADD", &at, &list.single(0, json!({})));
    assert_eq!(out.code(), Some(102), "attachment conflict: {}", out.stdout);
    assert!(
        out.stdout.contains(&ip) && out.stdout.contains("DEL"),
        "the message names the missing address and what to do: {}",
        out.stdout
    );
    assert_eq!(node.leases(NET), vec![ip.clone()], "the lease is kept");
    assert_eq!(endpoint_of(&node, "retry-0").as_ref(), Some(&record));
    assert_eq!(node.host_veths().len(), 1, "the veth is kept");
    assert!(
        pod.links().contains(&"eth0".to_owned()),
        "the pod end is kept"
    );

    list.del(&node, &at, &rt, None)
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    let fresh = list
        .add(&node, &at, &rt)
        .unwrap_or_else(|o| panic!("ADD after DEL: {o:?}"));
    let fresh_ip = first_ip(&fresh);
    assert!(pod.ping(NODE_ADDR) && node.netns.ping(&fresh_ip));
    assert_eq!(node.leases(NET), vec![fresh_ip]);
    assert_eq!(node.endpoints().len(), 1);
}

#[test]
fn a_repeated_chained_add_keeps_the_registration() {
    require_root!();
    let node = Node::with_enforcer();
    let list = bridge_chained(&node, "zw-retry-bridge", "brretry0", "10.132.0.0/24");
    let (pa, pb) = (Netns::new("ra"), Netns::new("rb"));
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=";
    let at_a = Attachment::new("chained-a", &pa).with_args(&format!("{args}cart-0"));
    let at_b = Attachment::new("chained-b", &pb).with_args(&format!("{args}db-0"));
    let rt = json!({"io.kubernetes.cri.pod-annotations": {"zonewarden.io/zone": "shop/cart"}});
    let res_a = list
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD a: {o:?}"));
    let res_b = list
        .add(&node, &at_b, &json!({}))
        .unwrap_or_else(|o| panic!("ADD b: {o:?}"));
    let record = endpoint_of(&node, "chained-a").expect("a is registered");
    assert_eq!(record["zone"], "shop/cart");

    // The runtime runs zonewarden again with the previous plugin's result: once as
    // before, then with annotations the enforcer would refuse (the attachment is
    // registered already: a retry does not derive its zone again).
    let annotations = [
        json!({"zonewarden.io/zone": "Not A Zone"}),
        json!({"zonewarden.io/zone": "shop/cart"}),
        json!({"zonewarden.io/zone": "bank/vault"}),
    ];
    for annotation in annotations {
        let request = list.single(
            1,
            json!({"prevResult": res_a,
                   "runtimeConfig": {"io.kubernetes.cri.pod-annotations": annotation}}),
        );
        let out = exec(&node, "zonewarden", "ADD", &at_a, &request);
        assert_eq!(
            endpoint_of(&node, "chained-a").as_ref(),
            Some(&record),
            "the registration is untouched ({annotation}); the ADD said: {}",
            out.stdout
        );
        assert!(
            out.success,
            "a repeated chained ADD of an intact attachment succeeds ({annotation}): {}",
            out.stdout
        );
        assert_eq!(out.json(), res_a, "prevResult is passed on unchanged");
        assert_eq!(node.endpoints().len(), 2);
        assert_eq!(node.netns.nft_map_keys("zone_of_v4").len(), 2);
        list.check(&node, &at_a, &rt, &res_a)
            .unwrap_or_else(|o| panic!("CHECK after the repeated ADD: {o:?}"));
        assert!(pa.ping(&first_ip(&res_b)), "bridged pods still talk");
    }
    assert_eq!(audited_adds(&node, "chained-a"), 1, "registered once");
}
