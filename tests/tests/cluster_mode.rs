//! Cluster mode on three nodes, as root: three node namespaces on one underlay, a real
//! three-member etcd cluster (each member in its own namespace), every enforcer with
//! `--store etcd`, pods attached through the real plugin. The nodes route each
//! other's pod blocks from the node records in etcd; an approval and the mode switch
//! made on a node without any of the pods are enforced on the nodes that have them;
//! with one etcd member killed, a further approval still goes through. A node whose
//! enforcer dies leaves the other nodes' zones once its lease runs out, and rejoins.
//! A node whose state directory still holds its local store refuses cluster mode
//! until told to move it into etcd, and then moves it with its pods enforced.

use std::time::Duration;

use zonewarden_tests::cluster::Cluster;
use zonewarden_tests::cluster::routes::wait_routes;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const NET: &str = "zw-cl3";
const DB: &str = "shop/web->shop/db:5432/tcp";
const SSH: &str = "shop/web->shop/db:22/tcp";

/// Starts every node's enforcer on the cluster's etcd under `prefix`, with `extra` flags.
fn start_enforcers(cluster: &mut Cluster, prefix: &str, extra: &[&str]) {
    let store = cluster.etcd().enforcer_args(prefix);
    for n in &mut cluster.nodes {
        let mut args = store.clone();
        args.extend(n.enforcer_args());
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        n.node.start_enforcer_with(&args);
    }
}

#[test]
fn three_nodes_share_routes_zones_and_approvals_through_etcd() {
    require_root!();
    let mut cluster = Cluster::new(3, 3);
    start_enforcers(&mut cluster, "/zw-cl3", &[]);
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);

    // Every node routes the other two nodes' blocks via their addresses, each family
    // via the address of that family.
    for n in [a, b, c] {
        let others: Vec<String> = [a, b, c]
            .iter()
            .filter(|o| o.index != n.index)
            .flat_map(|o| {
                [
                    format!("{} via {}", o.pod_block(), o.address()),
                    format!("{} via {}", o.pod_block6(), o.address6()),
                ]
            })
            .collect();
        wait_routes(&n.node, &others);
    }

    let web = add_pod(&a.node, &a.conflist(NET), "web", "shop/web");
    let db = add_pod(&b.node, &b.conflist(NET), "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:22"]);
    assert!(
        connects(&web.netns, &db.target(5432, "tcp")),
        "learn: node A's pod reaches node B's pod across the underlay"
    );
    assert!(connects(&web.netns, &db.target(22, "tcp")));
    assert!(
        connects(&web.netns, &db.target6(5432, "tcp")),
        "learn: and over IPv6, via node B's IPv6 address"
    );

    // Node C has none of the pods, yet knows both zones' endpoints.
    wait::until("node C to know both pods", Duration::from_secs(10), || {
        let zones: Vec<String> = c
            .node
            .endpoints()
            .iter()
            .filter_map(|e| e["zone"].as_str().map(str::to_owned))
            .collect();
        zones.contains(&"shop/web".to_owned()) && zones.contains(&"shop/db".to_owned())
    });

    // Node C lists node B's pods alone when asked for them.
    let db_node = c
        .node
        .endpoints()
        .iter()
        .find(|e| e["key"]["containerId"] == db.at.container_id)
        .map(|e| e["node"].as_str().expect("node").to_owned())
        .expect("node C lists the db pod");
    let on_b = c.node.items(&["get", "endpoints", "--node", &db_node]);
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!(on_b[0]["key"]["containerId"], db.at.container_id);
    assert!(
        c.node
            .items(&["get", "endpoints", "--node", "no-such-node"])
            .is_empty()
    );

    // Node C learned nothing itself, yet lists what nodes A and B learned, with
    // their evidence, and approves it once for the cluster; the port-22 edge is
    // rejected there.
    wait::until(
        "node C to list the edges nodes A and B learned",
        Duration::from_secs(20),
        || {
            let edges = c.node.items(&["get", "edges", "--learned"]);
            [DB, SSH].iter().all(|want| {
                edges.iter().any(|e| {
                    e["edge"] == *want
                        && e["evidence"]["nodes"]
                            .as_array()
                            .is_some_and(|n| n.iter().any(|n| n == a.name() || n == b.name()))
                })
            })
        },
    );
    c.node
        .zwctl(&["profile", "reject", "shop/db", "--edge", SSH]);
    c.node.zwctl(&["profile", "approve", "shop/db", "--all"]);
    let approved = c.node.items(&["get", "profiles", "shop/db"]);
    assert_eq!(
        approved[0]["approvedEdges"],
        serde_json::json!([DB]),
        "approve --all on node C took node A's and B's learning: {approved:?}"
    );
    c.node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    c.node.zwctl(&["mode", "set", "shop/web", "enforce"]);
    wait::until(
        "the unapproved edge to be dropped on nodes A and B",
        Duration::from_secs(15),
        || !connects(&web.netns, &db.target(22, "tcp")),
    );
    assert!(
        connects(&web.netns, &db.target(5432, "tcp")),
        "the edge approved on node C passes between nodes A and B"
    );
    assert!(
        connects(&web.netns, &db.target6(5432, "tcp")),
        "and over IPv6"
    );
    assert!(
        !connects(&web.netns, &db.target6(22, "tcp")),
        "the unapproved edge is dropped over IPv6 too"
    );

    // One etcd member down: the cluster still takes an approval, made on node B. A
    // request the client had sent to the killed member may fail as unavailable (the
    // enforcer waits 5 s for etcd); as the error says, the operator retries.
    cluster.etcd_mut().kill(0);
    let (b, web, db) = (&cluster.nodes[1], &web, &db);
    wait::until(
        "an approval on node B with one etcd member down",
        Duration::from_secs(40),
        || {
            b.node
                .zwctl_output(&[
                    "--timeout",
                    "15",
                    "profile",
                    "approve",
                    "shop/db",
                    "--edge",
                    SSH,
                ])
                .status
                .success()
        },
    );
    let profiles = b.node.items(&["get", "profiles", "shop/db"]);
    assert!(
        profiles[0]["approvedEdges"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e == SSH) && a.iter().any(|e| e == DB)),
        "{profiles:?}"
    );
    wait::until(
        "the approval made on node B to reach node A",
        Duration::from_secs(15),
        || connects(&web.netns, &db.target(22, "tcp")),
    );

    // Node A, which changed no policy, shows the cluster-wide trail: node C's approval
    // and modes, then node B's approval, each naming its node, chained and intact.
    let a = &cluster.nodes[0];
    let trail = a.node.items(&["audit", "log"]);
    let made: Vec<(String, String, String)> = trail
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("node"), text("action"), text("target"))
        })
        .collect();
    let (b_name, c_name) = (cluster.nodes[1].name(), cluster.nodes[2].name());
    assert!(
        made.contains(&(c_name.into(), "approve".into(), DB.into()))
            && made.contains(&(c_name.into(), "mode".into(), "enforce".into()))
            && made.contains(&(b_name.into(), "approve".into(), SSH.into())),
        "{made:#?}"
    );
    assert!(
        made.iter()
            .all(|(node, action, _)| !node.is_empty() && !action.starts_with("endpoint")),
        "the trail holds policy changes only, each with its node: {made:#?}"
    );
    let seqs: Vec<u64> = trail.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, (1..=trail.len() as u64).collect::<Vec<_>>());
    let verified = a.node.zwctl(&["audit", "verify"]);
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["headSeq"], trail.len() as u64, "{verified}");
    // Node A's own log has its endpoint changes and none of the others' approvals.
    let own = a.node.items(&["audit", "log", "--node-log"]);
    assert!(
        own.iter().all(|e| e["action"] != "approve") && !own.is_empty(),
        "{own:#?}"
    );
}

/// A node whose enforcer dies (SIGKILL, its lease left to run out) leaves the other
/// node's zones: its pod's address is no member there any more, nor routed; when its
/// enforcer is back, the pod rejoins its zone on the other node.
#[test]
fn a_dead_nodes_pods_leave_the_other_nodes_zones_until_it_is_back() {
    require_root!();
    let mut cluster = Cluster::new(2, 1);
    start_enforcers(&mut cluster, "/zw-dead", &["--node-lease-ttl", "3"]);
    let db = add_pod(
        &cluster.nodes[1].node,
        &cluster.nodes[1].conflist(NET),
        "db",
        "shop/db",
    );
    let a = &cluster.nodes[0];
    let member_on_a = || a.node.netns.nft_map_keys("zone_of_v4").contains(&db.ip);
    wait::until(
        "node A to take node B's pod into its zone",
        Duration::from_secs(10),
        member_on_a,
    );

    cluster.nodes[1].node.stop_enforcer(true);
    let a = &cluster.nodes[0];
    let member_on_a = || a.node.netns.nft_map_keys("zone_of_v4").contains(&db.ip);
    wait::until(
        "node B's pod to leave node A's zone once B's lease ran out",
        Duration::from_secs(20),
        || !member_on_a(),
    );
    // The listing follows once the change that took the pod out of the kernel has
    // finished (the kernel is written first, within the same change).
    wait::until(
        "node A to no longer list node B's pod",
        Duration::from_secs(10),
        || {
            !a.node
                .endpoints()
                .iter()
                .any(|e| e["key"]["containerId"] == db.at.container_id)
        },
    );

    cluster.nodes[1].node.start_enforcer();
    let a = &cluster.nodes[0];
    wait::until(
        "node B's pod to rejoin its zone on node A",
        Duration::from_secs(20),
        || a.node.netns.nft_map_keys("zone_of_v4").contains(&db.ip),
    );
}

/// A node that ran alone joins the cluster with its pods attached and enforced
/// (no drain): cluster mode is refused while its local store holds pods, and with
/// `--migrate-local-store` while a zone's profile differs from the cluster's; once
/// the profiles agree, its endpoints, profiles and learned edges move into etcd, the
/// move is audited, the local files are set aside, and another start moves nothing.
#[test]
fn a_nodes_local_store_moves_into_the_cluster_with_its_pods_enforced() {
    require_root!();
    let mut cluster = Cluster::new(2, 1);
    // Alone, node A hands out its pods' addresses from its block (--pod-cidr); in
    // the cluster it also names its underlay addresses (--node-address).
    let flags: Vec<String> = cluster.nodes[0].enforcer_args();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (addresses, own) = flags.split_at(4);
    assert!(own[0] == "--pod-cidr" && addresses[0] == "--node-address");
    cluster.nodes[0].node.start_enforcer_with(own);
    let a = &cluster.nodes[0];
    let web = add_pod(&a.node, &a.conflist(NET), "web", "shop/web");
    let db = add_pod(&a.node, &a.conflist(NET), "db", "shop/db");
    let _server = Server::start(&db.netns, &["tcp:5432", "tcp:22"]);
    assert!(connects(&web.netns, &db.target(5432, "tcp")));
    assert!(connects(&web.netns, &db.target(22, "tcp")));
    wait::until(
        "node A to learn both edges",
        Duration::from_secs(15),
        || {
            let edges = a.node.items(&["get", "edges", "--learned"]);
            [DB, SSH]
                .iter()
                .all(|w| edges.iter().any(|e| e["edge"] == *w))
        },
    );
    a.node
        .zwctl(&["profile", "approve", "shop/db", "--edge", DB]);
    a.node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    let enforced = || {
        connects(&web.netns, &db.target(5432, "tcp"))
            && !connects(&web.netns, &db.target(22, "tcp"))
    };
    assert!(enforced(), "node A enforces shop/db alone");
    cluster.nodes[0].node.stop_enforcer(false);

    // Node B is in the cluster already and has put shop/db in monitor.
    let store: Vec<String> = cluster.etcd().enforcer_args("/zw-move");
    let mut b_args = store.clone();
    b_args.extend(cluster.nodes[1].enforcer_args());
    let b_args: Vec<&str> = b_args.iter().map(String::as_str).collect();
    cluster.nodes[1].node.start_enforcer_with(&b_args);
    let b = &cluster.nodes[1];
    b.node
        .zwctl(&["mode", "set", "shop/db", "monitor", "--create"]);

    let a = &cluster.nodes[0];
    let mut store: Vec<&str> = store.iter().map(String::as_str).collect();
    store.extend(addresses);
    let (code, said) = a.node.enforcer_refuses(&store);
    assert_ne!(code, Some(0));
    assert!(
        said.contains("still holds this node's local store (2 endpoint(s)")
            && said.contains("Add --migrate-local-store"),
        "{said}"
    );
    let mut migrating = store.clone();
    migrating.push("--migrate-local-store");
    let (code, said) = a.node.enforcer_refuses(&migrating);
    assert_ne!(code, Some(0));
    assert!(
        said.contains(&format!(
            "zone shop/db: this node approves 1 edge(s) the cluster does not ({DB}), \
             mode enforce here, monitor in the cluster"
        )) && said.contains("nothing was written to etcd")
            && said.contains("--migrate-conflicts cluster"),
        "{said}"
    );
    assert!(
        b.node
            .items(&["get", "endpoints", "--node", a.name()])
            .is_empty(),
        "a refused move writes nothing"
    );
    assert!(
        a.node
            .state_dir()
            .join("endpoints")
            .read_dir()
            .unwrap()
            .count()
            == 2,
        "and keeps the local store"
    );
    assert!(
        enforced(),
        "node A's table enforces while its enforcer is down"
    );

    // The profiles agree once node B approves the same edge and enforces.
    b.node
        .zwctl(&["profile", "approve", "shop/db", "--edge", DB]);
    b.node.zwctl(&["mode", "set", "shop/db", "enforce"]);
    let mut args = migrating.clone();
    args.extend(own.iter().copied());
    cluster.nodes[0].node.start_enforcer_with(&args);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    wait::until(
        "node B to list node A's two pods",
        Duration::from_secs(10),
        || {
            b.node
                .items(&["get", "endpoints", "--node", a.name()])
                .len()
                == 2
        },
    );
    let web_profile = b.node.items(&["get", "profiles", "shop/web"]);
    assert_eq!(
        web_profile.len(),
        1,
        "node A's shop/web profile is the cluster's"
    );
    wait::until(
        "node B to list the edges node A learned alone",
        Duration::from_secs(10),
        || {
            let edges = b.node.items(&["get", "edges", "--learned"]);
            edges.iter().any(|e| {
                e["edge"] == SSH
                    && e["evidence"]["nodes"]
                        .as_array()
                        .is_some_and(|n| n.iter().any(|n| n == a.name()))
            })
        },
    );
    let moved = |a: &zonewarden_tests::cluster::ClusterNode| {
        a.node
            .items(&["audit", "log"])
            .into_iter()
            .filter(|e| {
                e["action"] == "store-migrated"
                    && e["node"] == a.name()
                    && e["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("moved into the cluster store"))
            })
            .count()
    };
    assert_eq!(moved(a), 1, "the move is in the cluster-wide trail");
    assert_eq!(a.node.zwctl(&["audit", "verify"])["intact"], true);
    let aside: Vec<_> = std::fs::read_dir(a.node.state_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("local-store-migrated-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].path().join("profiles.yaml").exists());
    assert!(!a.node.state_dir().join("endpoints").exists());
    assert!(enforced(), "the cluster's profile enforces node A's pods");

    // Another start with the flag moves nothing and duplicates nothing.
    cluster.nodes[0].node.stop_enforcer(false);
    cluster.nodes[0].node.start_enforcer();
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert_eq!(moved(a), 1);
    assert_eq!(
        b.node
            .items(&["get", "endpoints", "--node", a.name()])
            .len(),
        2
    );
    assert_eq!(a.node.endpoints().len(), 2);
    assert!(enforced());
}

/// The zone id each address of node `n`'s `zone_of_v4` map holds, by address.
fn zone_ids(n: &zonewarden_tests::netns::Netns) -> std::collections::BTreeMap<String, String> {
    let out = n
        .exec(
            "nft",
            &["-j", "list", "map", "inet", "zonewarden", "zone_of_v4"],
        )
        .output()
        .expect("run nft");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
    let mut ids = std::collections::BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for elem in item["map"]["elem"].as_array().into_iter().flatten() {
            let key = &elem[0];
            let addr = key.as_str().or_else(|| key["elem"]["val"].as_str());
            if let Some(addr) = addr {
                ids.insert(addr.to_owned(), elem[1].to_string());
            }
        }
    }
    ids
}

/// Two nodes attach the first pods of the same new zones at the same moment: both
/// try to give each zone its id, etcd takes one, and the other node's ADD is made
/// again on top of it. Every ADD succeeds (a runtime never sees "try again later" for
/// that race) and each zone has one id on both nodes.
#[test]
fn first_pods_of_a_new_zone_attached_on_two_nodes_at_once_all_succeed() {
    require_root!();
    const ZONES: usize = 8;
    let mut cluster = Cluster::new(2, 1);
    start_enforcers(&mut cluster, "/zw-race", &[]);
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (list_a, list_b) = (a.conflist(NET), b.conflist(NET));
    let together = std::sync::Barrier::new(2);
    // One start for both, then each node at its own pace: the two ADDs of a zone come
    // within milliseconds of each other, and a failing side never holds the other.
    let attach = |node: &zonewarden_tests::node::Node, list, side: &str| {
        together.wait();
        (0..ZONES)
            .map(|i| add_pod(node, list, &format!("r{side}{i}"), &format!("race/z{i}")))
            .collect::<Vec<_>>()
    };
    let (pods_a, pods_b) = std::thread::scope(|s| {
        let on_a = s.spawn(|| attach(&a.node, &list_a, "a"));
        let on_b = s.spawn(|| attach(&b.node, &list_b, "b"));
        (
            on_a.join().expect("node A's ADDs"),
            on_b.join().expect("node B's ADDs"),
        )
    });
    wait::until(
        "both nodes to hold every pod of both nodes",
        Duration::from_secs(20),
        || {
            [a, b].iter().all(|n| {
                let ids = zone_ids(&n.node.netns);
                pods_a
                    .iter()
                    .chain(&pods_b)
                    .all(|p| ids.contains_key(&p.ip))
            })
        },
    );
    for n in [a, b] {
        let ids = zone_ids(&n.node.netns);
        for (pa, pb) in pods_a.iter().zip(&pods_b) {
            assert_eq!(
                ids[&pa.ip], ids[&pb.ip],
                "{} and {} are both in zone {}: one id on node {}",
                pa.ip, pb.ip, pa.zone, n.index
            );
        }
        let distinct: std::collections::BTreeSet<&String> =
            pods_a.iter().map(|p| &ids[&p.ip]).collect();
        assert_eq!(distinct.len(), ZONES, "every zone has an id of its own");
    }
}

/// An etcd member cut off from the others (its peers unreachable, its client port
/// still answering) has no leader: what it serves is stale, and a watch on it
/// delivers nothing more. A node whose only member it is says its store is down and
/// refuses changes, instead of reporting a healthy store while it misses every change
/// the cluster makes; a node that also knows a healthy member follows the cluster
/// through it. Once the member is back, the first node catches up.
#[test]
fn a_node_whose_etcd_member_is_cut_off_says_so_and_catches_up() {
    require_root!();
    let mut cluster = Cluster::new(3, 3);
    let urls: Vec<String> = cluster
        .etcd()
        .members
        .iter()
        .map(|m| m.client_url())
        .collect();
    // Node A talks to members 1 and 2, node B only to member 0 (the one to be cut
    // off), node C to members 0 and 1.
    for (n, members) in [(0, vec![1, 2]), (1, vec![0]), (2, vec![0, 1])] {
        let endpoints: Vec<&str> = members.iter().map(|&m: &usize| urls[m].as_str()).collect();
        let mut args: Vec<String> = [
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoints.join(","),
            "--etcd-prefix",
            "/zw-cut",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend(cluster.nodes[n].enforcer_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.nodes[n].node.start_enforcer_with(&args);
    }
    let mode_on = |n: usize| -> Option<String> {
        cluster.nodes[n]
            .node
            .items(&["get", "profiles"])
            .iter()
            .find(|p| p["zone"] == "shop/db")
            .and_then(|p| p["mode"].as_str().map(str::to_owned))
    };
    // `zwctl status` exits 1 while the store takes no writes; it still prints it.
    let status = |n: usize| {
        let out = cluster.nodes[n]
            .node
            .zwctl_output(&["-o", "json", "status"]);
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("status: {e} {out:?}"));
        (out.status.success(), status)
    };
    let store_up = |n: usize| {
        let (ready, status) = status(n);
        ready && status["store"]["up"] == true
    };
    cluster.nodes[0]
        .node
        .zwctl(&["mode", "set", "shop/db", "monitor", "--create"]);
    for n in [1, 2] {
        wait::until(
            "every node to take the first change",
            Duration::from_secs(20),
            || mode_on(n).as_deref() == Some("monitor"),
        );
    }

    // Member 0 loses its peers: every raft message in or out is dropped inside its
    // own namespace; clients still reach it.
    let cut = &cluster.etcd().members[0].netns;
    cut.nft(&["add", "table", "inet", "zwcut"]);
    for (chain, hook) in [("in", "input"), ("out", "output")] {
        cut.nft(&[
            "add",
            "chain",
            "inet",
            "zwcut",
            chain,
            &format!("{{ type filter hook {hook} priority 0 ; }}"),
        ]);
        for port in ["dport", "sport"] {
            cut.nft(&[
                "add", "rule", "inet", "zwcut", chain, "tcp", port, "2380", "drop",
            ]);
        }
    }
    // The other two elect a leader among themselves (member 0 may have been it).
    wait::until(
        "members 1 and 2 to answer without member 0",
        Duration::from_secs(30),
        || cluster.etcd().healthy(1) && cluster.etcd().healthy(2),
    );
    cluster.nodes[0]
        .node
        .zwctl(&["mode", "set", "shop/db", "enforce"]);
    wait::until(
        "node C to follow the cluster through its healthy member",
        Duration::from_secs(60),
        || mode_on(2).as_deref() == Some("enforce"),
    );
    wait::until(
        "node B to say that its store is down",
        Duration::from_secs(60),
        || !store_up(1),
    );
    // It says why: its member answers that it has no leader (a member asked without
    // requiring one would serve stale reads and keep a silent watch).
    let (_, down) = status(1);
    assert!(
        down["store"]["detail"].to_string().contains("no leader"),
        "node B's status names the cause: {down}"
    );
    assert_eq!(
        mode_on(1).as_deref(),
        Some("monitor"),
        "node B keeps enforcing what it last knew"
    );
    let refused = cluster.nodes[1]
        .node
        .zwctl_output(&["mode", "set", "shop/db", "learn"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("unavailable"),
        "node B refuses a change while its store is down: {stderr}"
    );

    // The member back: node B catches up and says its store is up again.
    cut.nft(&["delete", "table", "inet", "zwcut"]);
    wait::until(
        "node B to catch up once its member is back",
        Duration::from_secs(60),
        || mode_on(1).as_deref() == Some("enforce") && store_up(1),
    );
    for n in [0, 2] {
        assert_eq!(
            mode_on(n).as_deref(),
            Some("enforce"),
            "the refused change left nothing"
        );
    }
}
