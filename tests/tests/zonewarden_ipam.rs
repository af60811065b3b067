//! zonewarden IPAM (`"ipam": {"type": "zonewarden"}`) on one node with the local
//! store, as root: the real enforcer leases the addresses of its `--pod-cidr` blocks
//! to the real plugin over its socket.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::json;
use zonewarden_tests::attach::{endpoint_of, gc, zonewarden_like};
use zonewarden_tests::cni::{Attachment, Conflist, all_ips, example_conflist, exec, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::require_root;

const NET: &str = "zw-ipam";

fn node_with_blocks(blocks: &[&str]) -> Node {
    let mut node = Node::new();
    let args: Vec<&str> = blocks.iter().flat_map(|b| ["--pod-cidr", *b]).collect();
    node.start_enforcer_with(&args);
    node
}

fn our_veths(node: &Node) -> BTreeSet<String> {
    node.host_veths()
        .into_iter()
        .filter(|l| zonewarden_like(l))
        .collect()
}

fn add(node: &Node, list: &Conflist, id: &str, pod: &Netns) -> serde_json::Value {
    list.add(node, &Attachment::new(id, pod), &json!({}))
        .unwrap_or_else(|o| panic!("ADD {id}: {o:?}"))
}

fn del(node: &Node, list: &Conflist, id: &str, pod: &Netns) {
    list.del(node, &Attachment::new(id, pod), &json!({}), None)
        .unwrap_or_else(|o| panic!("DEL {id}: {o:?}"));
}

/// The ADD of `id` alone (no clean-up DEL after a failure, unlike a runtime).
fn add_once(node: &Node, list: &Conflist, at: &Attachment) -> zonewarden_tests::cni::CniOutput {
    exec(node, "zonewarden", "ADD", at, &list.single(0, json!({})))
}

#[test]
fn pods_get_distinct_addresses_of_the_blocks_and_talk() {
    require_root!();
    let node = node_with_blocks(&["10.140.0.0/24", "fd7d:140::/64"]);
    let list = Conflist::enforcer_ipam(&node, NET);
    let (v4, v6): (IpNet, IpNet) = (
        "10.140.0.0/24".parse().unwrap(),
        "fd7d:140::/64".parse().unwrap(),
    );
    let pods: Vec<Netns> = (0..4).map(|i| Netns::new(&format!("zi{i}"))).collect();
    let results: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, pod)| add(&node, &list, &format!("ipam-{i}"), pod))
        .collect();

    let mut seen = BTreeSet::new();
    for res in &results {
        let ips = all_ips(res);
        assert_eq!(ips.len(), 2, "one address of each block: {res}");
        let (a4, a6): (IpAddr, IpAddr) = (ips[0].parse().unwrap(), ips[1].parse().unwrap());
        assert!(
            v4.contains(&a4) && v6.contains(&a6),
            "inside the blocks: {res}"
        );
        for a in [a4, a6] {
            assert!(seen.insert(a), "{a} handed out twice");
            assert!(
                a != v4.network()
                    && a != v4.broadcast()
                    && a != "10.140.0.1".parse::<IpAddr>().unwrap(),
                "never the network, broadcast or gateway address: {a}"
            );
            assert_ne!(a, "fd7d:140::1".parse::<IpAddr>().unwrap());
            assert_ne!(a, v6.network());
        }
        // As host-local's would in routed mode: host prefixes through the link-local
        // gateways, pointing at the pod's interface.
        assert!(
            res["ips"][0]["address"].as_str().unwrap().ends_with("/32"),
            "{res}"
        );
        assert!(
            res["ips"][1]["address"].as_str().unwrap().ends_with("/128"),
            "{res}"
        );
        assert_eq!(res["ips"][0]["gateway"], "169.254.1.1", "{res}");
        assert_eq!(res["ips"][0]["interface"], 1);
        let eth0 = &res["interfaces"][1];
        assert_eq!(eth0["name"], "eth0");
    }

    let ip0 = first_ip(&results[0]);
    let ip0_v6 = all_ips(&results[0])[1].clone();
    for (i, pod) in pods.iter().enumerate().skip(1) {
        assert!(pod.ping(&ip0), "pod {i} must reach pod 0 at {ip0}");
        assert!(pod.ping(&ip0_v6), "pod {i} must reach pod 0 at {ip0_v6}");
    }
    assert!(pods[0].ping(NODE_ADDR), "a pod reaches the node");
    // The enforcer's records hold the leased addresses.
    let ep = endpoint_of(&node, "ipam-2").expect("registered");
    let recorded: Vec<String> = ep["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip.as_str().unwrap().split('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(recorded, all_ips(&results[2]));

    // A repeated ADD (a runtime's retry) gets the same addresses.
    let again = add(&node, &list, "ipam-1", &pods[1]);
    assert_eq!(all_ips(&again), all_ips(&results[1]));
    list.check(
        &node,
        &Attachment::new("ipam-1", &pods[1]),
        &json!({}),
        &again,
    )
    .unwrap_or_else(|o| panic!("CHECK: {o:?}"));

    for (i, pod) in pods.iter().enumerate() {
        del(&node, &list, &format!("ipam-{i}"), pod);
        del(&node, &list, &format!("ipam-{i}"), pod);
    }
    node.wait_veths_gone("the veths to go");
    assert!(node.endpoints().is_empty());
}

#[test]
fn a_full_block_is_a_clear_error_that_leaves_nothing_and_del_frees_the_address() {
    require_root!();
    // A /30 has one address to lease: .0 network, .1 gateway, .3 broadcast.
    let node = node_with_blocks(&["10.141.0.0/30"]);
    let list = Conflist::enforcer_ipam(&node, NET);
    let (pa, pb) = (Netns::new("zfa"), Netns::new("zfb"));
    let res_a = add(&node, &list, "full-a", &pa);
    assert_eq!(first_ip(&res_a), "10.141.0.2");

    let at_b = Attachment::new("full-b", &pb);
    let out = add_once(&node, &list, &at_b);
    assert!(!out.success, "the block is full: {out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("10.141.0.0/30")
            && msg.contains("no free address")
            && msg.contains("--pod-cidr"),
        "the error names the block and what to do: {msg}"
    );
    assert_eq!(
        our_veths(&node).len(),
        1,
        "no veth of b: {:?}",
        our_veths(&node)
    );
    assert!(!pb.links().contains(&"eth0".to_owned()), "b has no eth0");
    assert!(endpoint_of(&node, "full-b").is_none());
    // The runtime's DEL of the failed ADD, then of a: the address goes to b.
    del(&node, &list, "full-b", &pb);
    del(&node, &list, "full-a", &pa);
    let res_b = add(&node, &list, "full-b", &pb);
    assert_eq!(
        first_ip(&res_b),
        "10.141.0.2",
        "the released address is leased again"
    );
    assert!(node.netns.ping(&first_ip(&res_b)), "the node reaches b");
    del(&node, &list, "full-b", &pb);
}

#[test]
fn an_add_that_fails_after_its_lease_releases_it() {
    require_root!();
    let node = node_with_blocks(&["10.142.0.0/30"]);
    let list = Conflist::enforcer_ipam(&node, NET);
    let pod = Netns::new("zr");
    // The enforcer refuses the zone after the address was leased and the veth made.
    let at = Attachment::new("refused", &pod)
        .with_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0");
    let request = list.single(
        0,
        json!({"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"zonewarden.io/zone": "bank/vault"}}}),
    );
    let out = exec(&node, "zonewarden", "ADD", &at, &request);
    assert!(
        !out.success,
        "a zone of another namespace is refused: {out:?}"
    );
    assert!(
        our_veths(&node).is_empty(),
        "no veth left: {:?}",
        our_veths(&node)
    );
    assert!(!pod.links().contains(&"eth0".to_owned()));
    assert!(node.endpoints().is_empty());
    // No DEL came: the only address of the block must be free all the same.
    let other = Netns::new("zr2");
    let res = add(&node, &list, "after", &other);
    assert_eq!(
        first_ip(&res),
        "10.142.0.2",
        "the failed ADD released its lease"
    );
    del(&node, &list, "after", &other);
}

#[test]
fn leases_survive_an_enforcer_restart_and_del_after_it_releases() {
    require_root!();
    // A /29 leases .2 to .6.
    let mut node = node_with_blocks(&["10.143.0.0/29"]);
    let list = Conflist::enforcer_ipam(&node, NET);
    let pods: Vec<Netns> = (0..6).map(|i| Netns::new(&format!("zs{i}"))).collect();
    let before: Vec<String> = (0..2)
        .map(|i| first_ip(&add(&node, &list, &format!("keep-{i}"), &pods[i])))
        .collect();

    node.stop_enforcer(true);
    node.start_enforcer();

    let mut all: BTreeSet<String> = before.iter().cloned().collect();
    for (i, pod) in pods.iter().enumerate().take(5).skip(2) {
        let ip = first_ip(&add(&node, &list, &format!("keep-{i}"), pod));
        assert!(
            all.insert(ip.clone()),
            "{ip} was leased before the restart: {all:?}"
        );
    }
    assert_eq!(all.len(), 5, "the block is full now");
    assert!(pods[2].ping(&before[0]), "a new pod reaches an old one");
    let out = add_once(&node, &list, &Attachment::new("keep-5", &pods[5]));
    assert!(!out.success, "no address is left: {out:?}");
    del(&node, &list, "keep-5", &pods[5]);

    // DEL after the restart releases what was leased before it.
    del(&node, &list, "keep-0", &pods[0]);
    let res = add(&node, &list, "keep-5", &pods[5]);
    assert_eq!(first_ip(&res), before[0]);
    for (i, pod) in pods.iter().enumerate().skip(1) {
        del(&node, &list, &format!("keep-{i}"), pod);
    }
    node.wait_veths_gone("the veths to go");
}

/// Leases addresses for (`NET`, `container_id`, eth0) straight over the socket, as a
/// plugin that was killed right after asking left it.
fn lease_directly(node: &Node, container_id: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let timeout = std::time::Duration::from_secs(5);
        let channel = zonewarden_proto::connect_with(&node.socket(), timeout, timeout)
            .await
            .expect("the enforcer's socket");
        let mut client = zonewarden_proto::v1::enforcer_client::EnforcerClient::new(channel);
        let request = zonewarden_proto::v1::AllocateAddressesRequest {
            key: Some(zonewarden_proto::v1::AttachmentKey {
                network: NET.into(),
                container_id: container_id.into(),
                ifname: "eth0".into(),
            }),
        };
        client
            .allocate_addresses(request)
            .await
            .expect("AllocateAddresses")
            .into_inner()
            .ips
    })
}

#[test]
fn gc_releases_the_leases_of_attachments_that_are_gone() {
    require_root!();
    // A /29 leases .2 to .6.
    let node = node_with_blocks(&["10.144.0.0/29"]);
    let list = Conflist::enforcer_ipam(&node, NET);
    let gone = Netns::new("zga");
    add(&node, &list, "gone", &gone);
    assert_eq!(lease_directly(&node, "killed"), vec!["10.144.0.3/29"]);
    gc(&node, &list, json!({"cni.dev/valid-attachments": []})).ok("GC");
    assert!(node.endpoints().is_empty());
    // Every address of the block is free again: the registered pod's and the lease an
    // ADD that was killed left behind.
    let pods: Vec<Netns> = (0..5).map(|i| Netns::new(&format!("zgn{i}"))).collect();
    let mut leased = BTreeSet::new();
    for (i, pod) in pods.iter().enumerate() {
        leased.insert(first_ip(&add(&node, &list, &format!("new-{i}"), pod)));
    }
    assert_eq!(leased.len(), 5, "{leased:?}");
    for (i, pod) in pods.iter().enumerate() {
        del(&node, &list, &format!("new-{i}"), pod);
    }
}

#[test]
fn without_a_block_the_add_says_to_pass_pod_cidr_and_bad_blocks_are_refused() {
    require_root!();
    let mut node = Node::new();
    for (flags, needle) in [
        (&["--pod-cidr", "10.145.0.0/31"][..], "too small"),
        (&["--pod-cidr", "10.145.0.1/24"][..], "host bits"),
        (
            &["--pod-cidr", "10.145.0.0/24", "--pod-cidr", "10.146.0.0/24"][..],
            "one IPv4 and/or one IPv6 block",
        ),
        (
            &["--pod-cidr-pool", "10.250.0.0/16"][..],
            "are for cluster mode: add --store etcd",
        ),
        (
            &[
                "--store",
                "etcd",
                "--etcd-endpoints",
                "http://127.0.0.1:9",
                "--node-address",
                NODE_ADDR,
                "--pod-cidr-pool",
                "10.250.0.0/16",
                "--pod-block-size",
                "8",
            ][..],
            "--pod-block-size 8 does not fit --pod-cidr-pool 10.250.0.0/16",
        ),
    ] {
        let (code, said) = node.enforcer_refuses(flags);
        assert_ne!(code, Some(0), "{flags:?}");
        assert!(said.contains(needle), "{flags:?}: {said}");
    }

    node.start_enforcer();
    let list = Conflist::enforcer_ipam(&node, NET);
    let pod = Netns::new("zn");
    let out = add_once(&node, &list, &Attachment::new("no-block", &pod));
    assert!(!out.success);
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("no pod CIDR block") && msg.contains("--pod-cidr"),
        "the error says to pass --pod-cidr: {msg}"
    );
    assert!(our_veths(&node).is_empty(), "no veth left");
    assert!(!pod.links().contains(&"eth0".to_owned()));
    assert!(node.endpoints().is_empty());
}

#[test]
fn the_shipped_example_conflist_attaches_pods_from_the_block() {
    require_root!();
    let node = node_with_blocks(&["10.147.0.0/24"]);
    let list = Conflist::from_json(&example_conflist(&node, "30-zonewarden-ipam.conflist"));
    let (a, b) = (Netns::new("zxa"), Netns::new("zxb"));
    let rt = json!({"io.kubernetes.cri.pod-annotations": {}, "portMappings": []});
    let (at_a, at_b) = (Attachment::new("ex-a", &a), Attachment::new("ex-b", &b));
    let res_a = list
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD a: {o:?}"));
    let res_b = list
        .add(&node, &at_b, &rt)
        .unwrap_or_else(|o| panic!("ADD b: {o:?}"));
    let block: IpNet = "10.147.0.0/24".parse().unwrap();
    for res in [&res_a, &res_b] {
        assert!(
            block.contains(&first_ip(res).parse::<IpAddr>().unwrap()),
            "{res}"
        );
    }
    assert!(a.ping(&first_ip(&res_b)), "pods reach each other");
    for (at, res) in [(&at_a, &res_a), (&at_b, &res_b)] {
        list.del(&node, at, &rt, Some(res))
            .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    }
    assert!(node.endpoints().is_empty());
}
