//! The example conflists shipped in `deploy/cni/` work as documented, as root: each is
//! loaded from its file (only the socket and the lease directory are pointed at the
//! test's node) and a pod is attached, reached and detached through it.

use std::path::Path;

use serde_json::{Value, json};
use zonewarden_tests::cni::{Attachment, Conflist, example_conflist, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::require_root;

fn load(node: &Node, file: &str) -> Conflist {
    Conflist::from_json(&example_conflist(node, file))
}

fn attach_reach_detach(file: &str) {
    let node = Node::with_enforcer();
    let list = load(&node, file);
    let (a, b) = (Netns::new("xa"), Netns::new("xb"));
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d4b9c8f6-x2k9p";
    let rt = json!({"io.kubernetes.cri.pod-annotations": {}, "portMappings": []});
    let at_a = Attachment::new("example-a", &a).with_args(args);
    let at_b = Attachment::new("example-b", &b).with_args(args);
    let res_a = list
        .add(&node, &at_a, &rt)
        .unwrap_or_else(|o| panic!("{file}: ADD a: {o:?}"));
    let res_b = list
        .add(&node, &at_b, &rt)
        .unwrap_or_else(|o| panic!("{file}: ADD b: {o:?}"));
    let ip_b = first_ip(&res_b);
    assert!(a.ping(&ip_b), "{file}: pods reach each other");
    let zones: Vec<Value> = node.endpoints().iter().map(|e| e["zone"].clone()).collect();
    assert_eq!(zones, vec![json!("shop/web"), json!("shop/web")], "{file}");
    for (at, res) in [(&at_a, &res_a), (&at_b, &res_b)] {
        list.del(&node, at, &rt, Some(res))
            .unwrap_or_else(|o| panic!("{file}: DEL: {o:?}"));
    }
    assert!(node.endpoints().is_empty(), "{file}: endpoints left");
    assert!(node.leases(&list.name).is_empty(), "{file}: leases left");
}

#[test]
fn routed_example_conflist() {
    require_root!();
    attach_reach_detach("10-zonewarden.conflist");
}

#[test]
fn chained_example_conflist() {
    require_root!();
    attach_reach_detach("20-bridge-chained.conflist");
}

/// The README shows the example conflists inline: they must be the files, byte for
/// byte, so that what an operator copies is what the tests run.
#[test]
fn the_readme_shows_the_example_conflists_as_they_are() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for file in [
        "10-zonewarden.conflist",
        "20-bridge-chained.conflist",
        "30-zonewarden-ipam.conflist",
    ] {
        let text = std::fs::read_to_string(root.join("deploy/cni").join(file)).expect(file);
        assert!(
            readme.contains(text.trim()),
            "README.md must show deploy/cni/{file} exactly"
        );
    }
}
