//! The multi-node harness proves itself, as root: a real three-member etcd cluster on
//! the underlay, nodes that reach each other across it, and pods on two nodes that
//! reach each other through the enforcer's host-gateway routes.

use std::time::Duration;

use zonewarden_tests::cluster::Cluster;
use zonewarden_tests::cluster::etcd::EtcdCluster;
use zonewarden_tests::cluster::routes::{ManualRoutes, our_routes, wait_routes};
use zonewarden_tests::cluster::{Underlay, underlay_v4};
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

fn host_sysctl(key: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/net/{key}")).expect("read a host sysctl")
}

#[test]
fn etcd_survives_a_member_and_keeps_its_data_across_a_full_stop() {
    require_root!();
    let underlay = Underlay::new();
    let mut etcd = EtcdCluster::start(&underlay, 3);
    assert_eq!(
        etcd.endpoints(),
        format!(
            "http://{}:2379,http://{}:2379,http://{}:2379",
            underlay_v4(101),
            underlay_v4(102),
            underlay_v4(103)
        )
    );

    assert_eq!(
        etcd.enforcer_args("/zw-test")[..4],
        ["--store", "etcd", "--etcd-endpoints", &etcd.endpoints()]
    );
    assert!(
        etcd.put(0, "/zw/first", "written-via-m0"),
        "a healthy cluster takes a write"
    );
    assert_eq!(
        etcd.get(2, "/zw/first").as_deref(),
        Some("written-via-m0"),
        "a write through one member is read through another"
    );

    let killed = etcd.members[1].pid().expect("member 1 runs");
    etcd.kill(1);
    assert!(
        !std::path::Path::new(&format!("/proc/{killed}")).exists(),
        "member 1 (pid {killed}) is gone"
    );
    // If member 1 led, the others elect a new leader first: bounded, not a sleep.
    wait::until(
        "a write with one member of three down",
        Duration::from_secs(20),
        || etcd.put(0, "/zw/second", "written-with-m1-down"),
    );
    assert_eq!(
        etcd.get(2, "/zw/second").as_deref(),
        Some("written-with-m1-down")
    );

    // One member of three alone has no quorum: up, but no write is acknowledged.
    // (Its outcome is unknown, as etcd documents for a timed-out request: the entry may
    // still be committed once a quorum is back.)
    etcd.kill(2);
    assert!(
        !etcd.put(0, "/zw/no-quorum", "unacknowledged"),
        "one member of three must not acknowledge a write"
    );

    etcd.stop_all();
    for member in 0..3 {
        assert!(!etcd.members[member].is_running());
        assert!(
            !etcd.put(member, "/zw/stopped", "never"),
            "a stopped cluster takes no write (member {member})"
        );
    }

    etcd.start_all();
    for member in 0..3 {
        assert_eq!(
            etcd.get(member, "/zw/first").as_deref(),
            Some("written-via-m0"),
            "restarted on the same data (member {member})"
        );
        assert_eq!(
            etcd.get(member, "/zw/second").as_deref(),
            Some("written-with-m1-down")
        );
        assert_eq!(
            etcd.get(member, "/zw/lost"),
            None,
            "refused writes left nothing"
        );
    }
}

#[test]
fn nodes_reach_each_other_across_the_underlay_and_the_host_is_untouched() {
    require_root!();
    let forwarding = (
        host_sysctl("ipv4/ip_forward"),
        host_sysctl("ipv6/conf/all/forwarding"),
    );
    let cluster = Cluster::new(3, 0);
    for a in &cluster.nodes {
        for b in &cluster.nodes {
            if a.index == b.index {
                continue;
            }
            for addr in [b.address().to_string(), b.address6().to_string()] {
                assert!(
                    a.node.netns.ping(&addr),
                    "node {} must reach node {} at {addr}",
                    a.index,
                    b.index
                );
            }
        }
        let sysctl = |key: &str| {
            zonewarden_tests::netns::run_ok(&mut a.node.netns.exec("cat", &[key]))
                .trim()
                .to_owned()
        };
        assert_eq!(sysctl("/proc/sys/net/ipv4/ip_forward"), "1");
        assert_eq!(sysctl("/proc/sys/net/ipv6/conf/all/forwarding"), "1");
    }
    assert_eq!(
        (
            host_sysctl("ipv4/ip_forward"),
            host_sysctl("ipv6/conf/all/forwarding")
        ),
        forwarding,
        "the machine's own forwarding is never changed"
    );
    let names: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.node.netns.name.clone())
        .chain([cluster.underlay.netns.name.clone()])
        .collect();
    drop(cluster);
    let left = zonewarden_tests::netns::run_ok(std::process::Command::new("ip").args(["netns"]));
    for name in names {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&name)),
            "namespace {name} must go with the cluster"
        );
    }
}

#[test]
fn pods_on_two_nodes_reach_each_other_through_host_gateway_routes() {
    require_root!();
    let mut cluster = Cluster::new(2, 0);
    // The routes come from the test's node list here (the local store has no node
    // records); cluster_etcd.rs drives them from etcd.
    for n in &mut cluster.nodes {
        n.node.start_enforcer();
    }
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let pa = add_pod(&a.node, &a.conflist("zw-cluster"), "pa", "shop/frontend");
    let pb = add_pod(&b.node, &b.conflist("zw-cluster"), "pb", "shop/db");
    assert!(
        a.pod_block()
            .contains(&pa.ip.parse::<std::net::IpAddr>().unwrap()),
        "{} from A's block",
        pa.ip
    );
    assert!(
        b.pod_block()
            .contains(&pb.ip.parse::<std::net::IpAddr>().unwrap()),
        "{} from B's block",
        pb.ip
    );
    let _servers = (
        Server::start(&pa.netns, &["tcp:8080", "udp:8081"]),
        Server::start(&pb.netns, &["tcp:8080", "udp:8081"]),
    );
    assert!(
        !pa.netns.ping(&pb.ip),
        "without routes pods of two nodes do not reach each other"
    );

    // IPv4: every node routes the other's block via its underlay address.
    let routes_a = ManualRoutes::start(&a.node, cluster.records());
    let routes_b = ManualRoutes::start(&b.node, cluster.records());
    wait_routes(&a.node, &[format!("{} via {}", b.pod_block(), b.address())]);
    wait_routes(&b.node, &[format!("{} via {}", a.pod_block(), a.address())]);
    assert!(pa.netns.ping(&pb.ip), "pod A must reach pod B at {}", pb.ip);
    assert!(pb.netns.ping(&pa.ip), "pod B must reach pod A at {}", pa.ip);
    for (from, to) in [(&pa, &pb), (&pb, &pa)] {
        for (port, proto) in [(8080, "tcp"), (8081, "udp")] {
            assert!(
                connects(&from.netns, &to.target(port, proto)),
                "{} -> {} ({port}/{proto}) across the underlay",
                from.netns.name,
                to.target(port, proto)
            );
        }
    }
    // Local pods keep their veth routes: the own block is never routed.
    assert!(
        !our_routes(&a.node)
            .iter()
            .any(|r| r.starts_with(&a.pod_block().to_string()))
    );

    // IPv6: the records now carry the IPv6 addresses and blocks; the IPv4 routes go.
    routes_a.set(cluster.records6());
    routes_b.set(cluster.records6());
    wait_routes(
        &a.node,
        &[format!("{} via {}", b.pod_block6(), b.address6())],
    );
    wait_routes(
        &b.node,
        &[format!("{} via {}", a.pod_block6(), a.address6())],
    );
    assert!(
        pa.netns.ping(pb.v6()),
        "pod A must reach pod B at {}",
        pb.v6()
    );
    assert!(
        connects(&pb.netns, &pa.target6(8080, "tcp")),
        "pod B must connect to pod A over IPv6"
    );
    assert!(!pa.netns.ping(&pb.ip), "no IPv4 route is left");

    // Node B leaves A's list: A's route to B's block goes, and with it the way between
    // the pods, both ways (B's replies to A no longer come back either).
    routes_a.set(vec![a.record6()]);
    wait_routes(&a.node, &[]);
    assert!(!pa.netns.ping(pb.v6()), "pod A must no longer reach pod B");
    assert!(
        !pb.netns.ping(pa.v6()),
        "pod B's packets get no answer back"
    );
    assert_eq!(
        our_routes(&b.node),
        [format!("{} via {}", a.pod_block6(), a.address6())],
        "B's own list did not change"
    );

    // Nothing was dropped by the tables: both zones learn.
    for n in [a, b] {
        assert!(
            n.node.violations().iter().all(|v| v["verdict"] != "drop"),
            "no drop in learn: {:?}",
            n.node.violations()
        );
    }
}
