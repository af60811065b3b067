//! Sidecar mode, as root: a cluster-mode node (real etcd, the real enforcer, a pod
//! attached through the real plugin) beside a pod that zonewarden never attached (its
//! interface is a veth the test made, on the nodes' network) and that runs
//! `zonewarden-enforcer --sidecar` inside its own network namespace. The sidecar's pod
//! learns, is approved and enforced from the node's zwctl, in both directions with
//! real packets over IPv4 and IPv6, is quarantined and released, and keeps being
//! enforced while its sidecar is killed with SIGKILL; the restarted sidecar takes its
//! table as it is and applies what changed in the store meanwhile.

use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cluster::routes::our_routes;
use zonewarden_tests::cluster::{Cluster, underlay_v4, underlay_v6};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{add_pod, target_of};
use zonewarden_tests::traffic::{Catcher, Server, connect_tcp_spoofed, connects, send_udp_spoofed};
use zonewarden_tests::{require_root, wait};

const NET: &str = "zw-sc";
const PREFIX: &str = "/zw-sidecar";
/// The sidecar pod's address: a host of the nodes' network (10.240.0.50).
const SIDE_HOST: u8 = 50;
const OUT_OK: &str = "shop/web->shop/api:8080/tcp";
const OUT_NO: &str = "shop/web->shop/api:8081/tcp";
const IN_OK: &str = "shop/api->shop/web:9090/tcp";
const IN_NO: &str = "shop/api->shop/web:9091/tcp";

/// The endpoint of the sidecar's pod as `zwctl get endpoints` on `node` lists it.
fn sidecar_endpoint(node: &Node) -> Option<Value> {
    node.endpoints()
        .into_iter()
        .find(|e| e["key"]["containerId"] == "shop/web-0")
}

/// The rule comments of one chain of the sidecar's table.
fn chain_comments(ns: &Netns, chain: &str) -> Vec<String> {
    let listing: Value =
        serde_json::from_str(&ns.nft(&["-j", "list", "chain", "inet", "zonewarden", chain]))
            .expect("nft -j output");
    listing["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|item| item["rule"]["comment"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_sidecar_pod_is_learned_approved_enforced_quarantined_and_survives_sigkill() {
    require_root!();
    let mut cluster = Cluster::new(1, 1);
    let store = cluster.etcd().enforcer_args(PREFIX);
    let lease = ["--node-lease-ttl", "3"].map(str::to_owned);
    {
        let n = &mut cluster.nodes[0];
        let mut args = store.clone();
        args.extend(n.enforcer_args());
        args.extend(lease.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        n.node.start_enforcer_with(&args);
    }
    let a = &cluster.nodes[0];
    let api = add_pod(&a.node, &a.conflist(NET), "api", "shop/api");

    // The sidecar's pod: not attached by zonewarden; it reaches the node's pods through
    // the node, and etcd directly.
    let pod_ns = Netns::new("side");
    cluster.underlay.attach(&pod_ns, SIDE_HOST);
    for (block, via) in [
        (a.pod_block(), a.address().to_string()),
        (a.pod_block6(), a.address6().to_string()),
    ] {
        pod_ns.ip(&["route", "add", &block.to_string(), "via", &via]);
    }
    let side_ip = underlay_v4(SIDE_HOST).to_string();
    let side_ip6 = underlay_v6(SIDE_HOST).to_string();
    let mut side = Node::in_netns(pod_ns);
    let mut args = store.clone();
    args.extend(lease);
    args.extend(
        [
            "--sidecar",
            "--pod-namespace",
            "shop",
            "--pod-name",
            "web-0",
            "--pod-ip",
            &side_ip,
            "--pod-ip",
            &side_ip6,
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    side.start_enforcer_with(&args);
    let sidecar_node = format!("{}:shop:web-0", side.netns.name);

    // The node knows the sidecar's pod: attach mode sidecar, zone from the pod name.
    wait::until(
        "the node to list the sidecar's pod",
        Duration::from_secs(15),
        || sidecar_endpoint(&a.node).is_some(),
    );
    let listed = sidecar_endpoint(&a.node).expect("listed");
    assert_eq!(listed["attachMode"], "sidecar", "{listed}");
    assert_eq!(listed["zone"], "shop/web", "{listed}");
    assert_eq!(listed["node"], sidecar_node.as_str(), "{listed}");
    assert_eq!(
        listed["ips"],
        serde_json::json!([format!("{side_ip}/32"), format!("{side_ip6}/128")])
    );
    // Its node record names the pod's addresses and claims no pod block; the pod's
    // routes are the test's own (the sidecar installs none).
    let record: Value = serde_json::from_str(
        &cluster
            .etcd()
            .get(0, &format!("{PREFIX}/nodes/{sidecar_node}"))
            .expect("the sidecar's node record"),
    )
    .expect("a JSON record");
    assert_eq!(record["pod_cidrs"], serde_json::json!([]), "{record}");
    assert_eq!(record["address"], side_ip.as_str(), "{record}");
    assert!(
        our_routes(&side).is_empty(),
        "routes the sidecar installed: {:?}",
        our_routes(&side)
    );
    // The sidecar's table hooks input and output, and its pod is its one local endpoint.
    let local = side.netns.nft_elements("local_zone_v4");
    assert!(local.len() == 1 && local[0].contains(&side_ip), "{local:?}");
    assert!(
        chain_comments(&side.netns, "output")
            .iter()
            .any(|c| c == "ipv4 source not the pod's own: drop")
    );
    // The node's pod is a member of its zone in the sidecar's table.
    wait::until(
        "the sidecar to take the node's pod into its zone map",
        Duration::from_secs(15),
        || side.netns.nft_map_keys("zone_of_v4").contains(&api.ip),
    );

    // Learn: both directions pass and are learned by the sidecar.
    let _api_servers = Server::start(&api.netns, &["tcp:8080", "tcp:8081"]);
    let _web_servers = Server::start(&side.netns, &["tcp:9090", "tcp:9091"]);
    let out_ok = api.target(8080, "tcp");
    let out_no = api.target(8081, "tcp");
    let in_ok = target_of(&side_ip, 9090, "tcp");
    let in_no = target_of(&side_ip, 9091, "tcp");
    for target in [&out_ok, &out_no] {
        assert!(
            connects(&side.netns, target),
            "learn: sidecar pod -> {target}"
        );
    }
    for target in [&in_ok, &in_no] {
        assert!(connects(&api.netns, target), "learn: node pod -> {target}");
    }
    // Even in learn, the pod sends from its own addresses only: a datagram from
    // another address is reported as a spoof and dropped, its own passes.
    let catcher = Catcher::udp(&api.netns, 7000);
    let spoof = underlay_v4(SIDE_HOST + 1).to_string();
    // Dropped on the pod's own output hook: the sender sees EPERM.
    let _ = send_udp_spoofed(&side.netns, &spoof, &api.ip, 7000);
    assert!(send_udp_spoofed(&side.netns, &side_ip, &api.ip, 7000));
    assert!(
        catcher.got_from(&side_ip, Duration::from_secs(5)),
        "the pod's own address gets through"
    );
    assert!(
        !catcher.got_from(&spoof, Duration::ZERO),
        "a datagram spoofing {spoof} was delivered"
    );
    wait::until(
        "the sidecar to report the spoof",
        Duration::from_secs(10),
        || side.reported("spoof", "world->shop/api:7000/udp"),
    );
    // Attack: the pod, with CAP_NET_RAW, opens a connection to the cluster store's port
    // from a forged source over either family (the one path its table accepts before
    // the source check is to the store). Nothing of it reaches the etcd member, while
    // the sidecar's own connection from the pod's address does; it is reported.
    let member = &cluster.etcd().members[0];
    let at_store = Catcher::raw(&member.netns, 6);
    let store_v4 = underlay_v4(member.host).to_string();
    let store_v6 = underlay_v6(member.host).to_string();
    let spoof6 = underlay_v6(SIDE_HOST + 1).to_string();
    assert!(!connect_tcp_spoofed(&side.netns, &spoof, &store_v4, 2379));
    assert!(!connect_tcp_spoofed(&side.netns, &spoof6, &store_v6, 2379));
    assert!(
        at_store.got_from(&side_ip, Duration::from_secs(10)),
        "the sidecar's own connection to the store reaches it"
    );
    for forged in [&spoof, &spoof6] {
        assert!(
            !at_store.got_from(forged, Duration::ZERO),
            "a segment forged from {forged} reached the store"
        );
    }
    wait::until(
        "the sidecar to report the forged connections to the store",
        Duration::from_secs(10),
        || side.reported("spoof", "world->world:2379/tcp"),
    );
    wait::until(
        "the node to list what the sidecar learned, with the sidecar as evidence",
        Duration::from_secs(20),
        || {
            let edges = a.node.items(&["get", "edges", "--learned"]);
            [OUT_OK, OUT_NO, IN_OK, IN_NO].iter().all(|want| {
                edges.iter().any(|e| {
                    e["edge"] == *want
                        && e["evidence"]["nodes"]
                            .as_array()
                            .is_some_and(|n| n.iter().any(|n| n == sidecar_node.as_str()))
                })
            })
        },
    );

    // Approve on the node, enforce the sidecar's zone only (the node's pod stays in
    // learn: whatever is dropped, the sidecar dropped).
    for edge in [OUT_OK, IN_OK] {
        a.node
            .zwctl(&["profile", "approve", "shop/web", "--edge", edge]);
    }
    a.node.zwctl(&["mode", "set", "shop/web", "enforce"]);
    wait::until(
        "the sidecar to enforce the mode set on the node",
        Duration::from_secs(20),
        || !connects(&side.netns, &out_no),
    );
    assert!(connects(&side.netns, &out_ok), "approved egress passes");
    assert!(connects(&api.netns, &in_ok), "approved ingress passes");
    assert!(
        !connects(&api.netns, &in_no),
        "unapproved ingress is dropped"
    );
    // IPv6: the approvals hold, and the rest is dropped, both ways.
    assert!(connects(&side.netns, &api.target6(8080, "tcp")));
    assert!(!connects(&side.netns, &api.target6(8081, "tcp")));
    assert!(connects(&api.netns, &target_of(&side_ip6, 9090, "tcp")));
    assert!(!connects(&api.netns, &target_of(&side_ip6, 9091, "tcp")));
    wait::until(
        "the sidecar to report both drops",
        Duration::from_secs(10),
        || side.reported("drop", OUT_NO) && side.reported("drop", IN_NO),
    );
    assert!(
        !a.node.reported("drop", OUT_NO),
        "the node dropped nothing: the sidecar did"
    );
    // Reports reach the cluster store under the sidecar's name, as a node's do.
    wait::until(
        "the sidecar's reports in etcd",
        Duration::from_secs(10),
        || {
            cluster
                .etcd()
                .get(0, &format!("{PREFIX}/reports/{sidecar_node}"))
                .is_some_and(|r| r.contains("8081"))
        },
    );

    // Quarantine the sidecar's pod from the node: everything dropped and reported,
    // both ways; lifted, the approved edges pass again.
    a.node.zwctl(&["quarantine", "--endpoint", "shop/web-0"]);
    wait::until(
        "the quarantine to reach the sidecar",
        Duration::from_secs(20),
        || !connects(&side.netns, &out_ok),
    );
    assert!(!connects(&api.netns, &in_ok), "quarantined: no ingress");
    wait::until(
        "the sidecar to report the quarantine",
        Duration::from_secs(10),
        || side.reported("quarantine", OUT_OK) || side.reported("quarantine", IN_OK),
    );
    a.node.zwctl(&["unquarantine", "--endpoint", "shop/web-0"]);
    wait::until(
        "the lifted quarantine to reach the sidecar",
        Duration::from_secs(20),
        || connects(&side.netns, &out_ok),
    );
    assert!(connects(&api.netns, &in_ok));

    // SIGKILL: the table stays and keeps enforcing.
    let before: Vec<Vec<String>> = ["input", "output"]
        .iter()
        .map(|c| chain_comments(&side.netns, c))
        .collect();
    let registered = sidecar_endpoint(&side).expect("the sidecar lists its pod");
    assert!(registered["createdUnixMs"].is_i64(), "{registered}");
    side.stop_enforcer(true);
    assert!(
        !connects(&side.netns, &out_no),
        "sidecar dead: still dropped"
    );
    assert!(!connects(&api.netns, &in_no), "sidecar dead: still dropped");
    assert!(
        connects(&side.netns, &out_ok),
        "sidecar dead: approved passes"
    );
    // Its lease runs out: the node no longer lists the pod.
    wait::until(
        "the dead sidecar's pod to leave the node's listing",
        Duration::from_secs(20),
        || sidecar_endpoint(&a.node).is_none(),
    );
    assert!(!connects(&side.netns, &out_no), "lease gone: still dropped");
    // An approval made while the sidecar is down waits for it.
    a.node
        .zwctl(&["profile", "approve", "shop/web", "--edge", OUT_NO]);
    assert!(!connects(&side.netns, &out_no), "no sidecar, no update");

    // Restarted: the pod is back on the node, the table is taken as it is and brought
    // up to date with the store.
    side.start_enforcer();
    wait::until(
        "the restarted sidecar's pod to be listed again",
        Duration::from_secs(15),
        || sidecar_endpoint(&a.node).is_some(),
    );
    wait::until(
        "the restarted sidecar to apply the approval made while it was down",
        Duration::from_secs(15),
        || connects(&side.netns, &out_no),
    );
    let again = sidecar_endpoint(&side).expect("the restarted sidecar lists its pod");
    assert_eq!(
        again["createdUnixMs"], registered["createdUnixMs"],
        "the restarted sidecar kept its registration: {again}"
    );
    let after: Vec<Vec<String>> = ["input", "output"]
        .iter()
        .map(|c| chain_comments(&side.netns, c))
        .collect();
    assert_eq!(
        after, before,
        "the base chains were reconciled, not doubled"
    );
    assert!(connects(&side.netns, &out_ok));
    assert!(connects(&api.netns, &in_ok));
    assert!(!connects(&api.netns, &in_no));

    // The pod's annotation now claims another namespace's zone, which no
    // --allow-zone-claim allows: the sidecar refuses to start and withdraws the
    // earlier registration instead of keeping its access.
    side.stop_enforcer(true);
    let (code, said) = side.enforcer_refuses(&["--pod-zone-annotation", "bank/payments"]);
    assert_ne!(code, Some(0));
    assert!(
        said.contains("the zone of the pod shop/web-0 is refused"),
        "{said}"
    );
    assert!(
        !connects(&side.netns, &out_ok),
        "a refused zone keeps no access of the earlier registration"
    );
    assert!(!connects(&api.netns, &in_ok));
}

/// A sidecar without its identity refuses to start and says what to give; the node's
/// own flags are refused in a sidecar. Nothing is programmed: no table is left.
#[test]
fn a_sidecar_without_identity_refuses_to_start() {
    require_root!();
    let side = Node::in_netns(Netns::new("side"));
    let named = [
        "--sidecar",
        "--pod-namespace",
        "shop",
        "--pod-name",
        "web-0",
    ];
    let cases: [(Vec<&str>, &[&str]); 3] = [
        (
            vec!["--sidecar", "--pod-name", "web-0"],
            &["--pod-namespace", "POD_NAMESPACE"],
        ),
        (named.to_vec(), &["no address to enforce", "POD_IPS"]),
        (
            [
                &named[..],
                &["--pod-ip", "10.9.0.1", "--pod-cidr", "10.9.0.0/24"],
            ]
            .concat(),
            &["--pod-cidr", "claims no pod block"],
        ),
    ];
    for (args, wanted) in cases {
        let (code, said) = side.enforcer_refuses(&args);
        assert_ne!(code, Some(0), "{args:?}");
        assert!(wanted.iter().all(|w| said.contains(w)), "{args:?}: {said}");
    }
    assert!(
        side.netns
            .exec("nft", &["list", "table", "inet", "zonewarden"])
            .output()
            .is_ok_and(|o| !o.status.success()),
        "a refused sidecar programs nothing"
    );
}
