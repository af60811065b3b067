//! Interop with Debian's reference plugins, as root: zonewarden chained after
//! `bridge`, and `portmap` chained after zonewarden (a hostPort answers).

use std::time::Duration;

use serde_json::json;
use zonewarden_tests::cni::{Attachment, Conflist, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::{require_root, wait};

#[test]
fn chained_after_bridge() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist {
        name: "zw-bridge".into(),
        cni_version: "1.0.0".into(),
        plugins: vec![
            json!({"type": "bridge", "bridge": "zwbr0", "isGateway": true, "ipMasq": false,
                   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.124.0.0/24"}]], "dataDir": node.ipam_dir()}}),
            json!({"type": "zonewarden", "mode": "chained", "socket": node.socket(),
                   "capabilities": {"io.kubernetes.cri.pod-annotations": true}}),
        ],
    };
    let (pa, pb) = (Netns::new("ba"), Netns::new("bb"));
    let rt = json!({"io.kubernetes.cri.pod-annotations": {"zonewarden.io/zone": "shop/payments"}});
    let at_a = Attachment::new("bridged-a", &pa)
        .with_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=pay-0");
    let at_b = Attachment::new("bridged-b", &pb);
    let res_a = list
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("ADD a: {o:?}"));
    let res_b = list
        .add(&node, &at_b, &json!({}))
        .unwrap_or_else(|o| panic!("ADD b: {o:?}"));
    // zonewarden passes the bridge's result on: the bridge and its veth are still in it.
    let names: Vec<&str> = res_a["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(
        names.contains(&"zwbr0") && names.contains(&"eth0"),
        "prevResult passed on: {res_a}"
    );
    assert!(
        !node
            .netns
            .links()
            .iter()
            .any(|l| l.starts_with("zw") && l != "zwbr0"),
        "chained mode makes no veth of its own"
    );

    let ip_b = first_ip(&res_b);
    assert!(pa.ping(&ip_b), "bridged pods talk");
    let eps = node.endpoints();
    let zone_a = eps
        .iter()
        .find(|e| e["key"]["containerId"] == "bridged-a")
        .map(|e| e["zone"].clone());
    assert_eq!(
        zone_a,
        Some(json!("shop/payments")),
        "annotation zone: {eps:?}"
    );
    let zone_b = eps
        .iter()
        .find(|e| e["key"]["containerId"] == "bridged-b")
        .map(|e| e["zone"].clone());
    assert_eq!(
        zone_b,
        Some(json!("default")),
        "no hints, default zone: {eps:?}"
    );
    assert_eq!(node.netns.nft_map_keys("zone_of_v4").len(), 2);

    list.check(&node, &at_a, &rt, &res_a)
        .unwrap_or_else(|o| panic!("CHECK: {o:?}"));
    list.del(&node, &at_a, &rt, Some(&res_a))
        .unwrap_or_else(|o| panic!("DEL a: {o:?}"));
    list.del(&node, &at_b, &json!({}), Some(&res_b))
        .unwrap_or_else(|o| panic!("DEL b: {o:?}"));
    assert!(node.endpoints().is_empty());
    assert!(node.netns.nft_map_keys("zone_of_v4").is_empty());
    assert!(node.leases("zw-bridge").is_empty());
}

#[test]
fn portmap_after_zonewarden_serves_a_host_port() {
    require_root!();
    let node = Node::with_enforcer();
    let mut list = Conflist::routed(&node, "zw-portmap", "10.125.0.0/24");
    list.plugins
        .push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    let pod = Netns::new("web");
    let at = Attachment::new("web-1", &pod);
    // Only portmap declares the capability, so only portmap receives it.
    let rt =
        json!({"portMappings": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]});
    let res = list
        .add(&node, &at, &rt)
        .unwrap_or_else(|o| panic!("ADD: {o:?}"));
    assert!(
        res["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "eth0")
    );

    let mut server = pod
        .exec("python3", &["-c", "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',8080))\ns.listen()\nc,_=s.accept()\nc.sendall(b'hello from the pod')\nc.close()"])
        .spawn()
        .expect("start a listener in the pod");
    let addr = format!("{NODE_ADDR}:18080");
    let mut got = String::new();
    wait::until("the hostPort to answer", Duration::from_secs(10), || {
        let out = node
            .netns
            .exec("python3", &["-c", &format!("import socket\ns=socket.create_connection(('{NODE_ADDR}',18080),timeout=2)\nprint(s.recv(100).decode())")])
            .output()
            .expect("run client");
        got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        out.status.success()
    });
    let _ = server.wait();
    assert_eq!(got, "hello from the pod", "{addr} forwards to the pod");
    list.del(&node, &at, &rt, Some(&res))
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    assert!(node.endpoints().is_empty());
}
