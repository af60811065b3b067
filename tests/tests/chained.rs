//! Interop with Debian's reference plugins, as root: zonewarden chained after
//! `bridge`, and `portmap` chained after zonewarden (a hostPort answers).

use std::time::Duration;

use serde_json::json;
use zonewarden_tests::cni::{Attachment, Conflist, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::traffic::{Catcher, send_udp_spoofed};
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

/// Pods chained after `bridge`, dual-stack, in zones of their own.
struct Bridged {
    node: Node,
    list: Conflist,
    pods: Vec<(Netns, Attachment, serde_json::Value)>,
}

impl Bridged {
    fn new(names: &[&str]) -> Self {
        let node = Node::with_enforcer();
        let list = Conflist {
            name: "zw-bridge6".into(),
            cni_version: "1.0.0".into(),
            plugins: vec![
                json!({"type": "bridge", "bridge": "zwbr1", "isGateway": true, "ipMasq": false,
                       "ipam": {"type": "host-local", "dataDir": node.ipam_dir(), "ranges": [
                           [{"subnet": "10.126.0.0/24"}], [{"subnet": "fd7b:126::/64"}]]}}),
                json!({"type": "zonewarden", "mode": "chained", "socket": node.socket()}),
            ],
        };
        let pods = names
            .iter()
            .map(|name| {
                let ns = Netns::new(name);
                let at = Attachment::new(&format!("br-{name}"), &ns)
                    .with_args(&format!("IgnoreUnknown=1;ZONEWARDEN_ZONE=t/{name}"));
                let res = list
                    .add(&node, &at, &json!({}))
                    .unwrap_or_else(|o| panic!("ADD {name}: {o:?}"));
                (ns, at, res)
            })
            .collect();
        Self { node, list, pods }
    }

    fn ns(&self, i: usize) -> &Netns {
        &self.pods[i].0
    }

    /// The pod's address of one family.
    fn ip(&self, i: usize, v6: bool) -> String {
        zonewarden_tests::cni::all_ips(&self.pods[i].2)
            .into_iter()
            .find(|a| a.contains(':') == v6)
            .expect("an address of the family")
    }

    fn mac(&self, i: usize) -> String {
        let out = self.ns(i).ip(&["-j", "link", "show", "eth0"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0]["address"].as_str().unwrap().to_owned()
    }
}

#[test]
fn chained_pods_on_a_bridge_cannot_spoof_or_hijack() {
    require_root!();
    let b = Bridged::new(&["sa", "sb", "sc"]);
    let (a, target, c) = (0, 1, 2);
    let endpoints = b.node.endpoints();
    assert!(
        endpoints.iter().all(|e| e["hostIfname"]
            .as_str()
            .is_some_and(|h| h.starts_with("veth"))),
        "chained endpoints name their host end: {endpoints:?}"
    );
    for (set, n) in [
        ("pod_ports", 3),
        ("port_src_v4", 3),
        ("port_src_v6", 3),
        ("port_mac", 3),
    ] {
        let elems = b.node.netns.nft_elements(set);
        assert_eq!(elems.len(), n, "the bridge table's {set}: {elems:?}");
    }
    let catcher = Catcher::udp(b.ns(target), 7000);

    // A pod sends with another pod's address, over both families: dropped at its
    // bridge port, whatever the inet table would have said. Its own address works.
    for v6 in [false, true] {
        let (spoof, to) = (b.ip(c, v6), b.ip(target, v6));
        assert!(
            send_udp_spoofed(b.ns(a), &spoof, &to, 7000),
            "send from {spoof}"
        );
        let own = b.ip(a, v6);
        assert!(send_udp_spoofed(b.ns(a), &own, &to, 7000));
        assert!(
            catcher.got_from(&own, Duration::from_secs(5)),
            "the pod's own {own} gets through"
        );
        assert!(
            !catcher.got_from(&spoof, Duration::ZERO),
            "a datagram spoofing {spoof} was delivered"
        );
    }

    // A pod takes another pod's MAC address: its frames are dropped.
    let own_mac = b.mac(a);
    b.ns(a).ip(&["link", "set", "eth0", "address", &b.mac(c)]);
    let to = b.ip(target, false);
    assert!(send_udp_spoofed(b.ns(a), &b.ip(a, false), &to, 7000));
    b.ns(a).ip(&["link", "set", "eth0", "address", &own_mac]);
    let probe_mark = b.ip(c, false);
    assert!(send_udp_spoofed(b.ns(c), &probe_mark, &to, 7000));
    assert!(catcher.got_from(&probe_mark, Duration::from_secs(5)));

    // A poisoned neighbour cache (what a forged ARP or NA reply would do): c sends
    // the target's traffic to a's MAC. The frame must not leave a's port.
    let hijacker = Catcher::udp(b.ns(a), 7000);
    for v6 in [false, true] {
        let victim = b.ip(target, v6);
        let family = if v6 { "-6" } else { "-4" };
        b.ns(c).ip(&[
            family,
            "neigh",
            "replace",
            &victim,
            "lladdr",
            &own_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]);
        assert!(send_udp_spoofed(b.ns(c), &b.ip(c, v6), &victim, 7000));
        b.ns(c)
            .ip(&[family, "neigh", "del", &victim, "dev", "eth0"]);
    }
    // Then a frame a may receive: sent after the hijacked ones, it comes in last.
    assert!(send_udp_spoofed(
        b.ns(c),
        &b.ip(c, false),
        &b.ip(a, false),
        7000
    ));
    assert!(hijacker.got_from(&b.ip(c, false), Duration::from_secs(5)));
    assert!(
        !hijacker.got_from(&b.ip(c, true), Duration::ZERO),
        "traffic for another pod reached the hijacker's port over IPv6"
    );

    wait::until("the spoofs to be reported", Duration::from_secs(10), || {
        b.node.violations().iter().any(|v| v["verdict"] == "spoof")
    });
}

#[test]
fn chained_mode_keeps_bridged_traffic_on_netfilter() {
    require_root!();
    let b = Bridged::new(&["na"]);
    let sysctl = |key: &str| {
        let out = b
            .node
            .netns
            .exec("sysctl", &["-n", &format!("net.bridge.{key}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // Someone turns it off (as a distribution default or a careless script would):
    // the enforcer turns it back on while chained endpoints of a bridge exist.
    for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        let set = b
            .node
            .netns
            .exec("sysctl", &["-qw", &format!("net.bridge.{key}=0")])
            .status()
            .unwrap();
        assert!(set.success());
        wait::until(
            &format!("the enforcer to turn net.bridge.{key} back on"),
            Duration::from_secs(10),
            || sysctl(key) == "1",
        );
    }
    let status = b.node.zwctl(&["status"]);
    assert_eq!(status["ready"], true, "{status}");
    let at = &b.pods[0].1;
    b.list
        .del(&b.node, at, &json!({}), Some(&b.pods[0].2))
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    for set in ["pod_ports", "port_src_v4", "port_src_v6", "port_mac"] {
        let left = b.node.netns.nft_elements(set);
        assert!(left.is_empty(), "{set} keeps {left:?} after DEL");
    }
}

/// A previous plugin's result is a claim, not the truth: the interface must exist in
/// the container with those addresses, as one end of a veth pair with the node, and a
/// live pod's address cannot be taken over.
#[test]
fn a_lying_prev_result_is_refused() {
    require_root!();
    let node = Node::with_enforcer();
    let routed = Conflist::routed(&node, "zw-routed-victim", "10.127.0.0/24");
    let victim = Netns::new("victim");
    let victim_at = Attachment::new("victim-1", &victim);
    let res = routed
        .add(&node, &victim_at, &json!({}))
        .unwrap_or_else(|o| panic!("ADD victim: {o:?}"));
    let victim_ip = first_ip(&res);

    let liar = Netns::new("liar");
    let chained = |prev: serde_json::Value| {
        let conf = json!({
            "cniVersion": "1.0.0", "name": "zw-liar", "type": "zonewarden",
            "mode": "chained", "socket": node.socket(), "prevResult": prev,
        });
        let at = Attachment::new("liar-1", &liar);
        zonewarden_tests::cni::exec(&node, "zonewarden", "ADD", &at, &conf)
    };
    let claim = |ifname: &str| {
        json!({"cniVersion": "1.0.0",
               "interfaces": [{"name": ifname, "sandbox": liar.path()}],
               "ips": [{"address": format!("{victim_ip}/24"), "interface": 0}]})
    };

    // The interface does not exist in the container.
    let out = chained(claim("eth0"));
    assert!(!out.success, "{out:?}");
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert!(out.stdout.contains("does not exist"), "{}", out.stdout);

    // It exists, as a veth with the node, but without the address claimed.
    node.netns.ip(&[
        "link", "add", "vethliar", "type", "veth", "peer", "name", "eth0", "netns", &liar.name,
    ]);
    liar.ip(&["link", "set", "eth0", "up"]);
    let out = chained(claim("eth0"));
    assert_eq!(out.code(), Some(7), "{out:?}");
    assert!(out.stdout.contains("does not have it"), "{}", out.stdout);

    // It has the address (set by someone with NET_ADMIN in the pod): the victim, alive,
    // keeps it.
    liar.ip(&["addr", "add", &format!("{victim_ip}/24"), "dev", "eth0"]);
    let out = chained(claim("eth0"));
    assert!(!out.success, "{out:?}");
    assert!(
        out.stdout.contains("belongs to endpoint") && out.stdout.contains("still exists"),
        "{}",
        out.stdout
    );
    let eps = node.endpoints();
    assert_eq!(eps.len(), 1, "only the victim is registered: {eps:?}");
    assert_eq!(
        node.netns.nft_map_keys("zone_of_v4"),
        std::slice::from_ref(&victim_ip)
    );
}

/// Where bridged traffic cannot be made to reach netfilter (here: the enforcer sees
/// `/proc/sys/net/bridge` read-only), chained endpoints of a bridge are refused and
/// the enforcer says it is not ready, instead of attaching pods it cannot enforce.
#[test]
fn chained_after_a_bridge_is_refused_where_bridged_traffic_skips_netfilter() {
    require_root!();
    let mut node = Node::new();
    // The enforcer runs in a mount namespace of its own with the bridge settings
    // read-only; the test (outside it) turns them off.
    node.start_enforcer_wrapped(&[
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount -o bind,ro /proc/sys/net/bridge /proc/sys/net/bridge && exec \"$@\"",
        "sh",
    ]);
    for key in ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"] {
        let off = node
            .netns
            .exec("sysctl", &["-qw", &format!("net.bridge.{key}=0")])
            .status()
            .unwrap();
        assert!(off.success());
    }
    let list = Conflist {
        name: "zw-nobrnf".into(),
        cni_version: "1.0.0".into(),
        plugins: vec![
            json!({"type": "bridge", "bridge": "zwbr2", "isGateway": true, "ipMasq": false,
                   "ipam": {"type": "host-local", "dataDir": node.ipam_dir(),
                            "ranges": [[{"subnet": "10.128.0.0/24"}]]}}),
            json!({"type": "zonewarden", "mode": "chained", "socket": node.socket()}),
        ],
    };
    let pod = Netns::new("nobr");
    let at = Attachment::new("nobr-1", &pod);
    let out = list
        .add(&node, &at, &json!({}))
        .expect_err("a chained ADD the enforcer cannot enforce must fail");
    assert!(
        out.stdout
            .contains("bridge-nf-call-iptables is 0 and cannot be set"),
        "the error says why: {}",
        out.stdout
    );
    assert!(node.endpoints().is_empty(), "nothing was registered");
    assert!(node.leases("zw-nobrnf").is_empty(), "no lease is left");
    let status = std::process::Command::new(zonewarden_tests::bin("zwctl"))
        .arg("--socket")
        .arg(node.socket())
        .args(["-o", "json", "status"])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "zwctl status fails while not ready"
    );
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("chained endpoints are not enforced"),
        "status says why: {text}"
    );
}
