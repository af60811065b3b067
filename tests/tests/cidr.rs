//! Operator-defined CIDR zones, as root: an address outside every endpoint resolves to
//! its CIDR zone (which takes precedence over `world`), is learned and reported by that
//! name, and approvals of CIDR-zone and world edges are enforced separately.

use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::add_pod;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const CORP: &str = "10.250.0.5";
const WORLD: &str = "10.250.0.100";

/// A namespace outside the node, reached through a veth, holding one address in the
/// CIDR zone and one that is `world`.
fn outside(node: &Node, pod_subnet: &str) -> Netns {
    let ext = Netns::new("ext");
    node.netns.ip(&[
        "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", &ext.name,
    ]);
    node.netns
        .ip(&["addr", "add", "10.250.1.1/32", "dev", "ext0"]);
    node.netns.ip(&["link", "set", "ext0", "up"]);
    node.netns
        .ip(&["route", "add", "10.250.0.0/24", "dev", "ext0"]);
    let sysctl = node
        .netns
        .exec("sysctl", &["-qw", "net.ipv4.conf.ext0.forwarding=1"])
        .status()
        .unwrap();
    assert!(
        sysctl.success(),
        "forwarding on the node's link to the outside"
    );
    for addr in [CORP, WORLD] {
        ext.ip(&["addr", "add", &format!("{addr}/32"), "dev", "eth0"]);
    }
    ext.ip(&["link", "set", "eth0", "up"]);
    ext.ip(&["route", "add", "10.250.1.1", "dev", "eth0"]);
    ext.ip(&["route", "add", pod_subnet, "via", "10.250.1.1"]);
    ext
}

#[test]
fn cidr_zones_take_precedence_over_world() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--cidr-zone", "corp-dns=10.250.0.0/28"]);
    let list = Conflist::routed(&node, "zw-cidr", "10.136.0.0/24");
    let app = add_pod(&node, &list, "app", "shop/app");
    let ext = outside(&node, "10.136.0.0/24");
    let _server = Server::start(&ext, &["udp:53", "tcp:443"]);
    let dns = |to: &str| format!("{to}:53/udp");
    let https = |to: &str| format!("{to}:443/tcp");

    // Learning names the CIDR zone and world apart.
    // The first packets also resolve neighbours across two links: allow for a loaded machine.
    for target in [dns(CORP), https(WORLD)] {
        wait::until(
            &format!("{target} to answer while learning"),
            Duration::from_secs(10),
            || connects(&app.netns, &target),
        );
    }
    wait::until("both edges to be learned", Duration::from_secs(10), || {
        let e = node.zwctl(&["get", "edges", "--learned"]).to_string();
        e.contains("shop/app->corp-dns:53/udp") && e.contains("shop/app->world:443/tcp")
    });

    node.zwctl(&["mode", "set", "shop/app", "enforce"]);
    assert!(
        !connects(&app.netns, &dns(CORP)),
        "unapproved CIDR-zone edge dropped"
    );
    wait::until(
        "the drop to name the CIDR zone",
        Duration::from_secs(10),
        || node.reported("drop", "shop/app->corp-dns:53/udp"),
    );

    node.zwctl(&[
        "profile",
        "approve",
        "shop/app",
        "--edge",
        "shop/app->corp-dns:53/udp",
    ]);
    assert!(
        connects(&app.netns, &dns(CORP)),
        "approved CIDR-zone edge allowed"
    );
    assert!(
        !connects(&app.netns, &dns(WORLD)),
        "the same port to world is another edge"
    );

    node.zwctl(&[
        "profile",
        "approve",
        "shop/app",
        "--edge",
        "shop/app->world:443/tcp",
    ]);
    assert!(
        connects(&app.netns, &https(WORLD)),
        "approved world edge allowed"
    );
    assert!(
        !connects(&app.netns, &https(CORP)),
        "a world approval does not cover a CIDR zone"
    );

    // Without CIDR-zone edges a zone has no CIDR (interval) sets: they cost every nft
    // transaction a read, so they exist only while needed.
    let sets = |node: &Node| {
        let out = node
            .netns
            .exec("nft", &["list", "sets", "inet"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        sets(&node).contains("cidr_out_"),
        "the zone has CIDR sets while it has CIDR edges"
    );
    node.zwctl(&[
        "profile",
        "remove",
        "shop/app",
        "--edge",
        "shop/app->corp-dns:53/udp",
    ]);
    assert!(
        !sets(&node).contains("cidr_out_"),
        "its CIDR sets go with its last CIDR edge"
    );
    assert!(
        !connects(&app.netns, &dns(CORP)),
        "the removed approval no longer allows"
    );
}

#[test]
fn cidr_zones_are_listed_and_exported_as_ip_blocks() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--cidr-zone", "corp-dns=10.250.0.0/28"]);
    let list = Conflist::routed(&node, "zw-cidr2", "10.137.0.0/24");
    let _app = add_pod(&node, &list, "app", "shop/app");
    let zones = node.zwctl(&["get", "zones"]).to_string();
    assert!(
        zones.contains("corp-dns") && zones.contains("\"cidr\""),
        "CIDR zones are listed: {zones}"
    );
    node.zwctl(&[
        "profile",
        "approve",
        "shop/app",
        "--edge",
        "shop/app->corp-dns:53/udp",
    ]);
    let out = std::process::Command::new(zonewarden_tests::bin("zwctl"))
        .arg("--socket")
        .arg(node.socket())
        .args(["profile", "export", "shop/app", "--format", "networkpolicy"])
        .output()
        .expect("run zwctl");
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        yaml.contains("cidr: 10.250.0.0/28"),
        "the CIDR zone becomes an ipBlock:\n{yaml}"
    );
}
