//! Operator-defined CIDR zones, as root: an address outside every endpoint resolves to
//! its CIDR zone (which takes precedence over `world`), is learned and reported by that
//! name, and approvals of CIDR-zone and world edges are enforced separately.

use std::time::Duration;

use zonewarden_tests::cni::Conflist;
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{add_pod, target_of};
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

const CORP: &str = "10.250.0.5";
const WORLD: &str = "10.250.0.100";
const CORP6: &str = "fd7b:250::5";
const WORLD6: &str = "fd7b:250::100";

/// A namespace outside the node, reached through a veth, holding one address in the
/// CIDR zone and one that is `world`, of each family.
fn outside(node: &Node, pod_subnet: &str, pod_subnet6: &str) -> Netns {
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
    for addr in [CORP6, WORLD6] {
        ext.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{addr}/128"),
            "dev",
            "eth0",
            "nodad",
        ]);
    }
    node.netns.ip(&[
        "-6",
        "addr",
        "add",
        "fd7b:250:1::1/128",
        "dev",
        "ext0",
        "nodad",
    ]);
    node.netns
        .ip(&["-6", "route", "add", "fd7b:250::/64", "dev", "ext0"]);
    let sysctl = node
        .netns
        .exec("sysctl", &["-qw", "net.ipv6.conf.ext0.force_forwarding=1"])
        .status()
        .unwrap();
    assert!(sysctl.success(), "IPv6 forwarding of what comes back");
    ext.ip(&["link", "set", "eth0", "up"]);
    ext.ip(&["route", "add", "10.250.1.1", "dev", "eth0"]);
    ext.ip(&["route", "add", pod_subnet, "via", "10.250.1.1"]);
    ext.ip(&["-6", "route", "add", "fd7b:250:1::1", "dev", "eth0"]);
    ext.ip(&["-6", "route", "add", pod_subnet6, "via", "fd7b:250:1::1"]);
    ext
}

#[test]
fn cidr_zones_take_precedence_over_world() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&[
        "--cidr-zone",
        "corp-dns=10.250.0.0/28",
        "--cidr-zone",
        "corp-dns=fd7b:250::/124",
    ]);
    let (subnet, subnet6) = ("10.136.0.0/24", "fd7b:136::/64");
    let list = Conflist::routed_ranges(&node, "zw-cidr", &[subnet, subnet6]);
    let app = add_pod(&node, &list, "app", "shop/app");
    let ext = outside(&node, subnet, subnet6);
    // One UDP server per address: a reply must come from the address asked.
    let udp: Vec<String> = [CORP, WORLD, CORP6, WORLD6]
        .iter()
        .map(|a| format!("udp:{}", target_of(a, 53, "").trim_end_matches('/')))
        .collect();
    let mut specs: Vec<&str> = udp.iter().map(String::as_str).collect();
    specs.push("tcp:443");
    let _server = Server::start(&ext, &specs);
    let dns = |to: &str| target_of(to, 53, "udp");
    let https = |to: &str| target_of(to, 443, "tcp");

    // Learning names the CIDR zone and world apart, over both families.
    // The first packets also resolve neighbours across two links: allow for a loaded machine.
    for target in [dns(CORP), https(WORLD), dns(CORP6), https(WORLD6)] {
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

    let learned: Vec<String> = node
        .items(&["get", "edges", "--learned"])
        .iter()
        .filter_map(|e| e["edge"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        learned,
        ["shop/app->corp-dns:53/udp", "shop/app->world:443/tcp"],
        "IPv6 traffic learns the same two edges"
    );

    node.zwctl(&["mode", "set", "shop/app", "enforce"]);
    for corp in [CORP, CORP6] {
        assert!(
            !connects(&app.netns, &dns(corp)),
            "unapproved CIDR-zone edge to {corp} dropped"
        );
    }
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
    for (corp, world) in [(CORP, WORLD), (CORP6, WORLD6)] {
        assert!(
            connects(&app.netns, &dns(corp)),
            "approved CIDR-zone edge to {corp} allowed"
        );
        assert!(
            !connects(&app.netns, &dns(world)),
            "the same port to world ({world}) is another edge"
        );
    }

    node.zwctl(&[
        "profile",
        "approve",
        "shop/app",
        "--edge",
        "shop/app->world:443/tcp",
    ]);
    for (corp, world) in [(CORP, WORLD), (CORP6, WORLD6)] {
        assert!(
            connects(&app.netns, &https(world)),
            "approved world edge to {world} allowed"
        );
        assert!(
            !connects(&app.netns, &https(corp)),
            "a world approval does not cover a CIDR zone ({corp})"
        );
    }

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
    for corp in [CORP, CORP6] {
        assert!(
            !connects(&app.netns, &dns(corp)),
            "the removed approval no longer allows {corp}"
        );
    }
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
