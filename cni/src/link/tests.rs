//! Root tests: real pairs between fresh "node" and "pod" namespaces, checked with real
//! traffic, CHECK, failure clean-up and teardown. They skip themselves without root.

use std::path::PathBuf;

use super::test_netns::{TestNetns, ip, is_root, ping_until, run};
use super::*;
use crate::netns::run_in_netns;

#[test]
fn routed_pair_between_fresh_namespaces() {
    if !is_root() {
        return;
    }
    let (node, pod) = (TestNetns::new("node"), TestNetns::new("pod"));
    // No dummy driver on every test machine: the node's own address lives on lo.
    ip(&["-n", &node.0, "addr", "add", "10.99.0.1/32", "dev", "lo"]);
    let ipv6 = std::path::Path::new("/proc/sys/net/ipv6").exists();
    let mut addrs = vec!["10.99.1.2/32".parse().expect("v4")];
    if ipv6 {
        ip(&["-n", &node.0, "addr", "add", "fd00:99::1/128", "dev", "lo"]);
        addrs.push("fd00:99::2/128".parse().expect("v6"));
    }
    let spec = RoutedSpec {
        netns: pod.path(),
        ifname: "eth0".to_owned(),
        host_ifname: host_ifname("test", &format!("test-{}", std::process::id()), "eth0"),
        addrs,
        mtu: Some(1400),
    };
    let host = spec.host_ifname.clone();
    let in_node = |work: fn(&RoutedSpec) -> Result<Vec<String>, LinkError>, spec: &RoutedSpec| {
        let spec = spec.clone();
        run_in_netns(&node.path(), move || work(&spec)).expect("enter node netns")
    };
    let setup =
        |spec: &RoutedSpec| setup_routed(spec).map(|links| vec![links.host_mac, links.pod_mac]);

    // Twice: the second run must replace the first pair as a stale attachment.
    in_node(setup, &spec).expect("first setup");
    let macs = in_node(setup, &spec).expect("setup over a stale pair");
    assert_eq!(macs[0], "ee:ee:ee:ee:ee:ee", "host MAC");
    let pod_link = ip(&["-n", &pod.0, "link", "show", "eth0"]);
    assert!(
        pod_link.contains(&macs[1]) && pod_link.contains("mtu 1400"),
        "{pod_link}"
    );
    assert!(ip(&["-n", &pod.0, "addr", "show", "eth0"]).contains("10.99.1.2/32"));
    let routes = ip(&["-n", &pod.0, "route"]);
    assert!(
        routes.contains("default via 169.254.1.1 dev eth0"),
        "{routes}"
    );
    assert!(routes.contains("169.254.1.1 dev eth0"), "{routes}");
    let neigh = ip(&["-n", &pod.0, "neigh", "show", "dev", "eth0"]);
    assert!(
        neigh.contains("169.254.1.1 lladdr ee:ee:ee:ee:ee:ee PERMANENT"),
        "{neigh}"
    );
    let host_routes = ip(&["-n", &node.0, "route", "show", "dev", &host]);
    let v4_route = host_routes.lines().find(|l| l.starts_with("10.99.1.2 "));
    assert!(
        v4_route.is_some_and(|l| l.contains("scope link")),
        "{host_routes}"
    );
    let sysctl = |key: &str| {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &node.0,
                "cat",
                &format!("/proc/sys/net/{key}"),
            ],
        )
        .1
    };
    assert_eq!(sysctl(&format!("ipv4/conf/{host}/proxy_arp")).trim(), "1");
    assert_eq!(
        sysctl(&format!("ipv4/neigh/{host}/proxy_delay")).trim(),
        "0"
    );
    assert_eq!(
        sysctl("ipv4/conf/all/forwarding").trim(),
        "0",
        "a global sysctl was changed"
    );
    assert!(
        ping_until(&node, "10.99.1.2"),
        "node cannot ping the pod over the veth"
    );
    if ipv6 {
        assert!(
            ping_until(&node, "fd00:99::2"),
            "node cannot ping the pod over ipv6"
        );
    }
    assert_eq!(
        in_node(verify_routed, &spec).expect("verify"),
        Vec::<String>::new()
    );

    ip(&["-n", &pod.0, "addr", "del", "10.99.1.2/32", "dev", "eth0"]);
    let problems = in_node(verify_routed, &spec).expect("verify after addr del");
    assert!(
        problems.iter().any(|p| p.contains("10.99.1.2/32")),
        "{problems:?}"
    );

    let names = in_node(|_| list_host_links(HOST_IFNAME_PREFIX), &spec).expect("list");
    assert_eq!(names, vec![host.clone()]);
    let teardown =
        |spec: &RoutedSpec| teardown_routed(&spec.host_ifname).map(|gone| vec![gone.to_string()]);
    assert_eq!(in_node(teardown, &spec).expect("teardown"), ["true"]);
    assert_eq!(
        in_node(teardown, &spec).expect("second teardown"),
        ["false"]
    );
    assert!(
        !run("ip", &["-n", &node.0, "link", "show", &host]).0,
        "host veth survived teardown"
    );
    assert!(
        pod_interface(&pod.path(), "eth0")
            .expect("pod view")
            .is_none(),
        "pod end survived"
    );
}

#[test]
fn existing_pod_interface_is_refused_without_leftovers() {
    if !is_root() {
        return;
    }
    let (node, pod) = (TestNetns::new("node"), TestNetns::new("pod"));
    ip(&["-n", &pod.0, "link", "add", "eth0", "type", "bridge"]);
    let spec = RoutedSpec {
        netns: pod.path(),
        ifname: "eth0".to_owned(),
        host_ifname: host_ifname("test", "busy", "eth0"),
        addrs: vec!["10.99.2.2/32".parse().expect("v4")],
        mtu: None,
    };
    let inner = spec.clone();
    let err = run_in_netns(&node.path(), move || setup_routed(&inner))
        .expect("enter node netns")
        .expect_err("setup must refuse an existing eth0");
    assert!(
        matches!(err, LinkError::PodInterfaceExists { .. }),
        "{err:?}"
    );
    assert!(
        !run("ip", &["-n", &node.0, "link", "show", &spec.host_ifname]).0,
        "host veth left behind"
    );
    let view = pod_interface(&pod.path(), "eth0")
        .expect("pod view")
        .expect("bridge eth0");
    assert!(!view.up && view.addrs.is_empty(), "{view:?}");

    // A failure after the pair exists (the host route is taken) must remove the pair.
    ip(&["-n", &node.0, "route", "add", "10.99.2.2/32", "dev", "lo"]);
    let inner = RoutedSpec {
        ifname: "eth1".to_owned(),
        ..spec.clone()
    };
    let err = run_in_netns(&node.path(), move || setup_routed(&inner))
        .expect("enter node netns")
        .expect_err("setup must refuse a taken host route");
    assert!(matches!(err, LinkError::RouteExists { .. }), "{err:?}");
    assert!(
        !run("ip", &["-n", &node.0, "link", "show", &spec.host_ifname]).0,
        "half-made veth left behind"
    );
    assert!(
        pod_interface(&pod.path(), "eth1")
            .expect("pod view")
            .is_none(),
        "pod end left behind"
    );
}

#[test]
fn gone_netns_is_reported_as_netns_not_found() {
    let spec = RoutedSpec {
        netns: PathBuf::from("/run/netns/zwl-missing"),
        ifname: "eth0".to_owned(),
        host_ifname: "zwmissing".to_owned(),
        addrs: Vec::new(),
        mtu: None,
    };
    let err = pod_interface(&spec.netns, &spec.ifname).expect_err("gone netns");
    assert!(
        matches!(
            err,
            LinkError::Netns(crate::netns::NetnsError::NotFound { .. })
        ),
        "{err:?}"
    );
}
