//! podman, as root: Debian's podman 4.3 with its CNI network backend runs containers
//! on the shipped chained network (`deploy/cni/20-bridge-chained.conflist`: the
//! reference bridge, then zonewarden); each container gets its name as zone, the zones
//! learn, are approved and enforce with real traffic between the containers, and
//! `podman rm` leaves nothing behind.

use zonewarden_tests::attach::{assert_endpoint_at, endpoint_of};
use zonewarden_tests::cni::example_conflist;
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::podman::Podman;
use zonewarden_tests::pods::PodPair;
use zonewarden_tests::require_root;

#[test]
fn podman_containers_learn_approve_enforce_and_leave_nothing() {
    require_root!();
    let node = Node::with_enforcer();
    let list = example_conflist(&node, "20-bridge-chained.conflist");
    let network = list["name"].as_str().expect("name").to_owned();
    let mut podman = Podman::new(&node, &list);
    let networks = podman.run_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        networks.lines().any(|n| n == network),
        "podman reads the conflist from its network config dir: {networks}"
    );

    let client = podman
        .run("client", &network)
        .unwrap_or_else(|e| panic!("podman run client: {e}"));
    let store = podman
        .run("store", &network)
        .unwrap_or_else(|e| panic!("podman run store: {e}"));
    for c in [&client, &store] {
        let ep = endpoint_of(&node, &c.id)
            .unwrap_or_else(|| panic!("{} registered under its container id", c.name));
        assert_eq!(
            (ep["zone"].as_str(), ep["zoneSource"].as_str()),
            (Some(c.name.as_str()), Some("pod")),
            "podman passes the container name as K8S_POD_NAME: {ep}"
        );
        assert_eq!(ep["attachMode"], "chained", "{ep}");
        assert_endpoint_at(&ep, &c.netns, &c.ip);
    }

    let (client_ns, store_ns) = (Netns::adopt(&client.netns), Netns::adopt(&store.netns));
    let pair = PodPair {
        client: &client_ns,
        client_zone: "client",
        server: &store_ns,
        server_zone: "store",
        server_ip: &store.ip,
    };
    drop(pair.learn_approve_enforce(&node, 6379, 8080));

    podman.remove(&client);
    assert!(
        endpoint_of(&node, &client.id).is_none(),
        "podman rm's DEL removes the endpoint"
    );
    podman.remove(&store);
    assert!(node.endpoints().is_empty(), "{:?}", node.endpoints());
    let leases = node.leases(&network);
    assert!(leases.is_empty(), "leases left: {leases:?}");
    let containers = podman.run_ok(&["ps", "--all", "--quiet"]);
    assert!(
        containers.trim().is_empty(),
        "containers left: {containers}"
    );
    let left = podman.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
}
