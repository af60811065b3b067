use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn node(name: &str, address: &str, blocks: &[&str]) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        address: ip(address),
        second_address: None,
        pod_cidrs: blocks.iter().map(|b| net(b)).collect(),
        enforcer_version: String::new(),
    }
}

fn route(block: &str, via: &str) -> BlockRoute {
    BlockRoute {
        block: net(block),
        via: ip(via),
    }
}

/// A node on 10.77.0.0/24 and fd77::/64 with nothing routed yet.
fn kernel() -> KernelRoutes {
    KernelRoutes {
        ours: Vec::new(),
        foreign: vec![net("10.77.0.0/24"), net("fd77::/64"), net("0.0.0.0/0")],
        addresses: vec![
            net("127.0.0.1/8"),
            net("10.77.0.1/24"),
            net("fd77::1/64"),
            net("fe80::1/64"),
        ],
    }
}

fn cluster() -> Vec<NodeRecord> {
    vec![
        node("a", "10.77.0.1", &["10.201.1.0/24"]),
        node("b", "10.77.0.2", &["10.201.2.0/24"]),
        node("c", "10.77.0.3", &["10.201.3.0/24", "10.201.33.0/24"]),
    ]
}

#[test]
fn every_other_node_block_is_routed_via_its_address_and_the_own_block_is_not() {
    let changes = plan("a", &cluster(), &kernel());
    assert_eq!(
        changes.add,
        vec![
            route("10.201.2.0/24", "10.77.0.2"),
            route("10.201.3.0/24", "10.77.0.3"),
            route("10.201.33.0/24", "10.77.0.3"),
        ]
    );
    assert!(changes.replace.is_empty() && changes.remove.is_empty());
    assert!(changes.refused.is_empty(), "{:?}", changes.refused);
}

#[test]
fn ipv6_blocks_are_routed_via_ipv6_addresses() {
    let nodes = vec![
        node("a", "fd77::1", &["fd20:0:0:1::/64"]),
        node("b", "fd77::2", &["fd20:0:0:2::/64"]),
    ];
    let changes = plan("a", &nodes, &kernel());
    assert_eq!(changes.add, vec![route("fd20:0:0:2::/64", "fd77::2")]);
}

#[test]
fn a_block_of_the_other_family_than_the_address_is_refused() {
    let nodes = vec![node(
        "b",
        "10.77.0.2",
        &["10.201.2.0/24", "fd20:0:0:2::/64"],
    )];
    let changes = plan("a", &nodes, &kernel());
    assert_eq!(changes.add, vec![route("10.201.2.0/24", "10.77.0.2")]);
    assert_eq!(
        changes.refused,
        vec![RouteRefusal::FamilyMismatch {
            node: "b".into(),
            block: net("fd20:0:0:2::/64"),
            via: ip("10.77.0.2"),
        }]
    );
}

#[test]
fn the_plan_of_the_kernel_it_made_is_empty() {
    let mut current = kernel();
    current.ours = plan("a", &cluster(), &current).add;
    let again = plan("a", &cluster(), &current);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn routes_of_nodes_that_left_go_and_a_moved_node_gets_its_new_next_hop() {
    let mut current = kernel();
    current.ours = vec![
        route("10.201.2.0/24", "10.77.0.2"),
        route("10.201.3.0/24", "10.77.0.3"),
        route("10.201.33.0/24", "10.77.0.3"),
    ];
    let nodes = vec![node("b", "10.77.0.20", &["10.201.2.0/24"])];
    let changes = plan("a", &nodes, &current);
    assert!(changes.add.is_empty());
    assert_eq!(changes.replace, vec![route("10.201.2.0/24", "10.77.0.20")]);
    assert_eq!(
        changes.remove,
        vec![
            route("10.201.3.0/24", "10.77.0.3"),
            route("10.201.33.0/24", "10.77.0.3"),
        ]
    );
    let gone = plan("a", &[], &current);
    assert_eq!(gone.remove, current.ours, "an empty cluster keeps no route");
}

#[test]
fn a_block_overlapping_the_own_block_is_refused() {
    let mut nodes = cluster();
    nodes.push(node("d", "10.77.0.4", &["10.201.1.128/25"]));
    let changes = plan("a", &nodes, &kernel());
    assert!(
        !changes
            .add
            .iter()
            .any(|r| r.block == net("10.201.1.128/25"))
    );
    assert_eq!(
        changes.refused,
        vec![RouteRefusal::OverlapsOwnBlock {
            node: "d".into(),
            block: net("10.201.1.128/25"),
            own: net("10.201.1.0/24"),
        }]
    );
    let text = changes.refused[0].to_string();
    assert!(
        text.contains("node d") && text.contains("10.201.1.0/24"),
        "{text}"
    );
}

#[test]
fn two_other_nodes_claiming_overlapping_blocks_both_get_no_route() {
    let mut nodes = cluster();
    nodes.push(node("d", "10.77.0.4", &["10.201.0.0/16"]));
    let changes = plan("x", &nodes, &kernel());
    assert!(changes.add.is_empty(), "{:?}", changes.add);
    assert!(
        changes
            .refused
            .iter()
            .all(|r| matches!(r, RouteRefusal::OverlapsOtherNode { .. })),
        "{:?}",
        changes.refused
    );
    assert_eq!(changes.refused.len(), 5, "a, b, c twice and d");
}

#[test]
fn a_next_hop_off_the_connected_networks_is_refused() {
    let nodes = vec![
        node("far", "10.99.0.1", &["10.201.9.0/24"]),
        // An IPv6 next hop only a link-local address could reach is no neighbour.
        node("ll", "fe80::2", &["fd20:0:0:9::/64"]),
    ];
    let changes = plan("a", &nodes, &kernel());
    assert!(changes.add.is_empty());
    assert_eq!(
        changes.refused,
        vec![
            RouteRefusal::NotDirectlyConnected {
                node: "far".into(),
                block: net("10.201.9.0/24"),
                via: ip("10.99.0.1"),
            },
            RouteRefusal::NotDirectlyConnected {
                node: "ll".into(),
                block: net("fd20:0:0:9::/64"),
                via: ip("fe80::2"),
            },
        ]
    );
    assert!(
        changes.refused[0]
            .to_string()
            .contains("directly connected"),
        "{}",
        changes.refused[0]
    );
}

#[test]
fn the_own_address_under_another_name_and_the_underlay_itself_are_refused() {
    let nodes = vec![
        node("me-again", "10.77.0.1", &["10.201.7.0/24"]),
        node("greedy", "10.77.0.8", &["10.77.0.128/25"]),
    ];
    let changes = plan("a", &nodes, &kernel());
    assert!(changes.add.is_empty());
    assert!(matches!(
        changes.refused[0],
        RouteRefusal::OverlapsConnected { .. }
    ));
    assert!(matches!(
        changes.refused[1],
        RouteRefusal::OwnAddress { .. }
    ));
}

#[test]
fn a_route_someone_else_made_to_the_block_is_left_alone() {
    let mut current = kernel();
    current.foreign.push(net("10.201.2.0/24"));
    let changes = plan("a", &cluster(), &current);
    assert!(!changes.add.iter().any(|r| r.block == net("10.201.2.0/24")));
    assert!(changes.remove.is_empty() && changes.replace.is_empty());
    assert_eq!(
        changes.refused,
        vec![RouteRefusal::ForeignRoute {
            node: "b".into(),
            block: net("10.201.2.0/24"),
        }]
    );
    // A more specific route of someone else inside a block is no conflict.
    let mut current = kernel();
    current.foreign.push(net("10.201.2.7/32"));
    assert!(plan("a", &cluster(), &current).refused.is_empty());
}

#[test]
fn a_routed_block_that_becomes_refused_loses_its_route() {
    let mut current = kernel();
    current.ours = vec![route("10.201.2.0/24", "10.77.0.2")];
    let nodes = vec![
        node("a", "10.77.0.1", &["10.201.0.0/16"]),
        node("b", "10.77.0.2", &["10.201.2.0/24"]),
    ];
    let changes = plan("a", &nodes, &current);
    assert_eq!(changes.remove, current.ours);
    assert_eq!(changes.refused.len(), 1);
}

#[test]
fn blocks_are_taken_by_their_network_and_duplicates_count_once() {
    let nodes = vec![node("b", "10.77.0.2", &["10.201.2.9/24", "10.201.2.0/24"])];
    let changes = plan("a", &nodes, &kernel());
    assert_eq!(changes.add, vec![route("10.201.2.0/24", "10.77.0.2")]);
    assert!(changes.refused.is_empty());
}

/// Real netlink, as root, in a namespace of the test's own.
mod kernel {
    use super::*;

    use crate::test_support::{TestNetns, root_or_skip};

    /// A node namespace of the test's own.
    struct Netns(TestNetns);

    impl Netns {
        fn ip(&self, args: &[&str]) -> String {
            self.0.ip(args)
        }

        /// `proto 122` routes of both families as `block via next-hop`, sorted.
        fn our_routes(&self) -> Vec<String> {
            let mut lines = Vec::new();
            for family in ["-4", "-6"] {
                let out = self.ip(&[family, "route", "show", "proto", "122"]);
                lines.extend(out.lines().map(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    format!("{} via {}", words[0], words[2])
                }));
            }
            lines.sort();
            lines
        }

        /// Runs the future `f` makes on a thread inside the namespace, to its end.
        fn block_on<T: Send + 'static, F: std::future::Future<Output = T>>(
            &self,
            f: impl FnOnce() -> F + Send + 'static,
        ) -> T {
            crate::test_support::run_in_netns(&self.0.0, move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(f())
            })
        }

        fn reconcile(&self, nodes: Vec<NodeRecord>) -> RouteChanges {
            self.block_on(move || async move {
                let table = RouteTable::open().expect("open");
                let (changes, failed) = table.reconcile("a", &nodes).await.expect("read");
                assert!(failed.is_empty(), "{failed:?}");
                changes
            })
        }

        /// A namespace with `ul0` up on 10.77.0.1/24 and fd77::1/64 (its veth peer up).
        fn on_underlay() -> Self {
            let ns = Self(TestNetns::new("zwr"));
            ns.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul0p"]);
            ns.ip(&["link", "set", "ul0p", "up"]);
            ns.ip(&["link", "set", "ul0", "up"]);
            ns.ip(&["addr", "add", "10.77.0.1/24", "dev", "ul0"]);
            ns.ip(&["addr", "add", "fd77::1/64", "dev", "ul0", "nodad"]);
            ns
        }
    }

    #[test]
    fn routes_follow_the_node_list_and_leave_other_routes_alone() {
        if !root_or_skip() {
            return;
        }
        let ns = Netns::on_underlay();
        // Someone else's routes: one to a block a node claims, one elsewhere.
        ns.ip(&[
            "route",
            "add",
            "10.201.5.0/24",
            "via",
            "10.77.0.5",
            "proto",
            "static",
        ]);
        ns.ip(&["route", "add", "10.250.0.0/16", "via", "10.77.0.9"]);
        let foreign = ["10.201.5.0/24 via 10.77.0.5", "10.250.0.0/16 via 10.77.0.9"];
        let assert_foreign_kept = |what: &str| {
            let all = ns.ip(&["route", "show"]);
            for route in foreign {
                assert!(all.contains(route), "{what}: {route} must stay: {all}");
            }
        };

        let nodes = vec![
            node("a", "10.77.0.1", &["10.201.1.0/24"]),
            node("b", "10.77.0.2", &["10.201.2.0/24"]),
            node("c", "10.77.0.3", &["10.201.3.0/24"]),
            node("b6", "fd77::2", &["fd20:0:0:2::/64"]),
            node("e", "10.77.0.6", &["10.201.5.0/24"]),
            node("far", "10.99.0.1", &["10.201.9.0/24"]),
            node("thief", "10.77.0.4", &["10.201.1.128/25"]),
        ];
        let changes = ns.reconcile(nodes.clone());
        assert_eq!(
            ns.our_routes(),
            [
                "10.201.2.0/24 via 10.77.0.2",
                "10.201.3.0/24 via 10.77.0.3",
                "fd20:0:0:2::/64 via fd77::2",
            ],
            "one route per remote block, both families"
        );
        let mut refused: Vec<&str> = changes
            .refused
            .iter()
            .map(|r| match r {
                RouteRefusal::ForeignRoute { node, .. }
                | RouteRefusal::NotDirectlyConnected { node, .. }
                | RouteRefusal::OverlapsOwnBlock { node, .. } => node.as_str(),
                other => panic!("unexpected refusal {other}"),
            })
            .collect();
        refused.sort();
        assert_eq!(refused, ["e", "far", "thief"], "{:?}", changes.refused);
        assert_foreign_kept("after the first reconcile");

        let again = ns.reconcile(nodes);
        assert!(
            again.is_empty(),
            "a second reconcile changes nothing: {again:?}"
        );

        // c leaves, b moves to another address.
        let changes = ns.reconcile(vec![
            node("a", "10.77.0.1", &["10.201.1.0/24"]),
            node("b", "10.77.0.20", &["10.201.2.0/24"]),
            node("b6", "fd77::2", &["fd20:0:0:2::/64"]),
        ]);
        assert_eq!(changes.replace.len(), 1);
        assert_eq!(changes.remove.len(), 1);
        assert_eq!(
            ns.our_routes(),
            [
                "10.201.2.0/24 via 10.77.0.20",
                "fd20:0:0:2::/64 via fd77::2"
            ]
        );

        // A route of ours deleted by hand comes back.
        ns.ip(&["route", "del", "10.201.2.0/24", "proto", "122"]);
        ns.reconcile(vec![
            node("b", "10.77.0.20", &["10.201.2.0/24"]),
            node("b6", "fd77::2", &["fd20:0:0:2::/64"]),
        ]);
        assert_eq!(
            ns.our_routes(),
            [
                "10.201.2.0/24 via 10.77.0.20",
                "fd20:0:0:2::/64 via fd77::2"
            ]
        );

        ns.reconcile(Vec::new());
        assert!(ns.our_routes().is_empty(), "no node, no route of ours");
        assert_foreign_kept("after every node left");
    }

    #[test]
    fn run_routes_follows_the_watch_channel_and_stops_with_it() {
        if !root_or_skip() {
            return;
        }
        let ns = std::sync::Arc::new(Netns::on_underlay());
        let (tx, rx) = watch::channel(vec![node("b", "10.77.0.2", &["10.201.2.0/24"])]);
        let inside = ns.clone();
        let task = std::thread::spawn(move || inside.block_on(|| run_routes("a".into(), rx)));
        let wait_for = |expected: &[&str]| {
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while ns.our_routes() != expected {
                assert!(
                    std::time::Instant::now() < end,
                    "expected {expected:?}, the kernel has {:?}",
                    ns.our_routes()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for(&["10.201.2.0/24 via 10.77.0.2"]);
        tx.send_replace(vec![node("c", "10.77.0.3", &["10.201.3.0/24"])]);
        wait_for(&["10.201.3.0/24 via 10.77.0.3"]);
        drop(tx);
        task.join()
            .expect("run_routes returns once the list's sender is gone");
        assert_eq!(
            ns.our_routes(),
            ["10.201.3.0/24 via 10.77.0.3"],
            "routes stay"
        );
    }
}

#[test]
fn a_dual_stack_node_gets_each_block_via_its_address_of_that_family() {
    let mut b = node("b", "10.240.0.2", &["10.241.2.0/24", "fd00:241:0:2::/64"]);
    let nodes = |b: &NodeRecord| vec![node("a", "10.240.0.1", &["10.241.1.0/24"]), b.clone()];
    let current = KernelRoutes {
        addresses: vec![net("10.240.0.1/24"), net("fd00:240::1/64")],
        ..KernelRoutes::default()
    };
    // Only an IPv4 address published: the IPv6 block is refused, naming the fix.
    let changes = plan("a", &nodes(&b), &current);
    assert_eq!(changes.add, [route("10.241.2.0/24", "10.240.0.2")]);
    assert_eq!(changes.refused.len(), 1, "{changes:?}");
    assert!(
        changes.refused[0]
            .to_string()
            .contains("--node-address of both families"),
        "{}",
        changes.refused[0]
    );
    // Both published: each block via the address of its family.
    b.second_address = Some(ip("fd00:240::2"));
    let changes = plan("a", &nodes(&b), &current);
    assert_eq!(
        changes.add,
        [
            route("10.241.2.0/24", "10.240.0.2"),
            route("fd00:241:0:2::/64", "fd00:240::2")
        ]
    );
    assert!(changes.refused.is_empty(), "{changes:?}");
}
