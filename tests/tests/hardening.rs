//! What an SRE would try before production, as root: profiles of thousands of edges,
//! restarts over them, and more pods of a zone that has them.

use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{bin, require_root, wait};

/// One netlink message holds at most 64 KiB of a set's elements; 3,000 (address,
/// protocol, port) elements of one zone are about twice that, per family.
const EDGES: u16 = 3000;
const FIRST_PORT: u16 = 20000;

#[test]
fn a_profile_of_thousands_of_edges_is_programmed_and_survives_restarts() {
    require_root!();
    let mut node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, "zw-big", &["10.170.0.0/24", "fd7b:170::/64"]);
    let a = add_pod(&node, &list, "ba", "t/a");
    let b = add_pod(&node, &list, "bb", "t/b");
    let last = FIRST_PORT + EDGES - 1;
    let _server = Server::start(
        &b.netns,
        &[&format!("tcp:{last}"), &format!("tcp:{}", last + 1)],
    );

    let mut yaml = String::from(
        "apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: t/b\nmode: enforce\napproved:\n",
    );
    for port in FIRST_PORT..=last {
        yaml.push_str(&format!("  - t/a->t/b:{port}/tcp\n"));
    }
    let file = node.dir.path().join("big.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = std::process::Command::new(bin("zwctl"))
        .arg("--socket")
        .arg(node.socket())
        .args(["profile", "import", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the import of {EDGES} edges: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let check = |node: &Node, what: &str| {
        for (allowed, port) in [(true, last), (false, last + 1)] {
            for target in [a_target(&b, port, false), a_target(&b, port, true)] {
                assert_eq!(
                    connects(&a.netns, &target),
                    allowed,
                    "{what}: {target} should be {}",
                    if allowed { "allowed" } else { "dropped" }
                );
            }
        }
        for set in ["allow_in_v4_2", "allow_in_v6_2"] {
            let n = node.netns.nft_elements(set).len();
            assert_eq!(n, usize::from(EDGES), "{what}: {set} holds every edge");
        }
        assert_eq!(node.zwctl(&["status"])["ready"], true, "{what}");
    };
    check(&node, "after the import");

    // A restart over the table, and one over no table at all.
    node.stop_enforcer(true);
    node.start_enforcer();
    check(&node, "after a restart");
    node.stop_enforcer(true);
    node.netns.nft(&["delete", "table", "inet", "zonewarden"]);
    node.start_enforcer();
    check(&node, "after a restart with no table");

    // A second pod of the zone gets every element of its own at once.
    let b2 = add_pod(&node, &list, "bb2", "t/b");
    let _server2 = Server::start(&b2.netns, &[&format!("tcp:{last}")]);
    assert!(
        connects(&a.netns, &a_target(&b2, last, true)),
        "the new pod is reachable"
    );
    wait::until(
        "the zone's sets to hold both pods",
        Duration::from_secs(10),
        || {
            node.netns.nft_elements("allow_in_v4_2").len() == usize::from(EDGES)
                && node.netns.nft_elements("local_zone_v4").len() == 3
        },
    );
}

fn a_target(pod: &zonewarden_tests::pods::Pod, port: u16, v6: bool) -> String {
    if v6 {
        pod.target6(port, "tcp")
    } else {
        pod.target(port, "tcp")
    }
}
