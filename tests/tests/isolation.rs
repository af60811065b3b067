//! Isolation holes that are not about one address family, as root: the node's
//! addresses as they change, and the table as other tools change it.

use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{add_pod, target_of};
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

/// Addresses the test adds to the node after its enforcer started.
const LATE4: &str = "10.123.254.9";
const LATE6: &str = "fd7b:fffe::9";

fn host_set_has(node: &Node, set: &str, addr: &str) -> bool {
    node.netns
        .nft_elements(set)
        .iter()
        .any(|e| e == &format!("\"{addr}\""))
}

#[test]
fn node_addresses_added_after_start_are_the_host_zone() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed_ranges(&node, "zw-late", &["10.160.0.0/24", "fd7b:160::/64"]);
    let app = add_pod(&node, &list, "app", "t/app");
    node.zwctl(&[
        "profile",
        "approve",
        "t/app",
        "--edge",
        "t/app->world:9000/tcp",
    ]);
    node.zwctl(&["mode", "set", "t/app", "enforce"]);
    let _server = Server::start(&node.netns, &["tcp:9000"]);

    // Attack: the node gains an address (a new interface, a VIP); with only world
    // approved, the pod must not reach the node's services through it.
    node.netns
        .ip(&["addr", "add", &format!("{LATE4}/32"), "dev", "lo"]);
    node.netns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{LATE6}/128"),
        "dev",
        "lo",
        "nodad",
    ]);
    wait::until(
        "the new addresses to join the host zone",
        Duration::from_secs(10),
        || host_set_has(&node, "host_v4", LATE4) && host_set_has(&node, "host_v6", LATE6),
    );
    for addr in [LATE4, LATE6] {
        assert!(
            !connects(&app.netns, &target_of(addr, 9000, "tcp")),
            "the node's service on its new address {addr} is host, not world"
        );
    }
    wait::until("the drop to name the host", Duration::from_secs(10), || {
        node.reported("drop", "t/app->host:9000/tcp")
    });

    node.netns
        .ip(&["addr", "del", &format!("{LATE4}/32"), "dev", "lo"]);
    wait::until(
        "a removed address to leave the host zone",
        Duration::from_secs(10),
        || !host_set_has(&node, "host_v4", LATE4),
    );
}
