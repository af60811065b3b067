//! zonewarden IPAM in cluster mode, as root: two node namespaces on one underlay and a
//! real etcd; every enforcer claims its pod block from one pool (`--pod-cidr-pool`),
//! leases its pods' addresses from it (`"ipam": {"type": "zonewarden"}`), and routes
//! the other node's block via that node's address.

use std::time::Duration;

use ipnet::IpNet;
use zonewarden_tests::cluster::routes::wait_routes;
use zonewarden_tests::cluster::{Cluster, ClusterNode};
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const PREFIX: &str = "/zw-pool";
const POOL: &str = "10.250.0.0/16";
const NET: &str = "zw-pool";

fn start(n: &mut ClusterNode, store: &[String]) {
    let mut args = store.to_vec();
    args.extend([
        "--node-address".to_owned(),
        n.address().to_string(),
        "--pod-cidr-pool".to_owned(),
        POOL.to_owned(),
        "--pod-block-size".to_owned(),
        "26".to_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    n.node.start_enforcer_with(&args);
}

/// The pod blocks of `n`'s node record in etcd, once it is published.
fn published_block(cluster: &Cluster, n: &ClusterNode) -> IpNet {
    let key = format!("{PREFIX}/nodes/{}", n.name());
    let mut record = None;
    wait::until(
        &format!("the node record of {}", n.name()),
        Duration::from_secs(10),
        || {
            record = cluster.etcd().get(0, &key);
            record.is_some()
        },
    );
    let record: serde_json::Value = serde_json::from_str(&record.unwrap()).expect("JSON record");
    let blocks = record["pod_cidrs"].as_array().expect("pod_cidrs").clone();
    assert_eq!(blocks.len(), 1, "one block claimed: {record}");
    blocks[0].as_str().unwrap().parse().expect("a CIDR")
}

#[test]
fn nodes_claim_their_own_blocks_from_one_pool_and_keep_them_across_a_restart() {
    require_root!();
    let mut cluster = Cluster::new(2, 1);
    let store = cluster.etcd().enforcer_args(PREFIX);
    for n in &mut cluster.nodes {
        start(n, &store);
    }
    let pool: IpNet = POOL.parse().unwrap();
    let blocks: Vec<IpNet> = cluster
        .nodes
        .iter()
        .map(|n| published_block(&cluster, n))
        .collect();
    assert_ne!(blocks[0], blocks[1], "two nodes never share a block");
    for block in &blocks {
        assert!(pool.contains(block) && block.prefix_len() == 26, "{block}");
    }
    for (n, block) in cluster.nodes.iter().zip(&blocks) {
        let owner = cluster
            .etcd()
            .get(0, &format!("{PREFIX}/pod-blocks/{}_26", block.network()))
            .expect("the claim key");
        assert!(
            owner.contains(n.name()),
            "{block} is claimed by {}: {owner}",
            n.name()
        );
    }
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    wait_routes(&a.node, &[format!("{} via {}", blocks[1], b.address())]);
    wait_routes(&b.node, &[format!("{} via {}", blocks[0], a.address())]);

    let web = add_pod(
        &a.node,
        &Conflist::enforcer_ipam(&a.node, NET),
        "web",
        "shop/web",
    );
    let db = add_pod(
        &b.node,
        &Conflist::enforcer_ipam(&b.node, NET),
        "db",
        "shop/db",
    );
    assert!(
        blocks[0].contains(&web.ip.parse::<std::net::IpAddr>().unwrap()),
        "{}",
        web.ip
    );
    assert!(
        blocks[1].contains(&db.ip.parse::<std::net::IpAddr>().unwrap()),
        "{}",
        db.ip
    );
    let _server = Server::start(&db.netns, &["tcp:5432"]);
    assert!(
        connects(&web.netns, &db.target(5432, "tcp")),
        "node A's pod reaches node B's pod through the host-gateway route"
    );

    // A restarted node claims nothing new: its block is its own again.
    cluster.nodes[1].node.stop_enforcer(false);
    cluster.nodes[1].node.start_enforcer();
    assert_eq!(published_block(&cluster, &cluster.nodes[1]), blocks[1]);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    wait_routes(&a.node, &[format!("{} via {}", blocks[1], b.address())]);
    let db2 = add_pod(
        &b.node,
        &Conflist::enforcer_ipam(&b.node, NET),
        "db2",
        "shop/db",
    );
    assert!(blocks[1].contains(&db2.ip.parse::<std::net::IpAddr>().unwrap()));
    assert_ne!(
        db2.ip, db.ip,
        "the lease of the first pod survived the restart"
    );
    assert!(
        connects(&web.netns, &db.target(5432, "tcp")),
        "still reachable"
    );
}
