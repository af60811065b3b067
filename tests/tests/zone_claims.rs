//! Zone claims follow Kubernetes trust boundaries: the pod annotation names a zone of
//! the pod's own namespace only, never a built-in zone, unless the operator allowed
//! the crossing (`--allow-zone-claim`); a refused ADD leaves nothing, as root.

use serde_json::json;
use zonewarden_tests::attach::{assert_nothing_left, endpoint_of};
use zonewarden_tests::cni::{Attachment, Conflist, exec, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::require_root;

const NET: &str = "zw-claims";

#[test]
fn annotations_cannot_claim_other_namespaces_or_built_in_zones() {
    require_root!();
    let mut node = Node::new();
    node.start_enforcer_with(&["--allow-zone-claim", "tenant-a=shared/*"]);
    let list = Conflist::routed(&node, NET, "10.137.0.0/24");
    let pod = Netns::new("claim");
    let at = Attachment::new("claimer", &pod)
        .with_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0");

    // The plugin alone, as a runtime runs it: a refused ADD must clean up by itself.
    let add_annotated = |zone: &str| {
        let request = list.single(
            0,
            json!({"runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"zonewarden.io/zone": zone}}}),
        );
        exec(&node, "zonewarden", "ADD", &at, &request)
    };
    let refusals = [
        ("tenant-b/db", "--allow-zone-claim tenant-a=tenant-b/db"),
        ("host", "built-in"),
        ("host/x", "built-in"),
        ("world", "built-in"),
        ("world/db", "built-in"),
    ];
    for (zone, hint) in refusals {
        let out = add_annotated(zone);
        assert_eq!(
            out.code(),
            Some(7),
            "{zone} is refused as invalid config: {}",
            out.stdout
        );
        let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
        assert!(
            msg.contains(&format!("zonewarden.io/zone={zone:?}")) && msg.contains(hint),
            "the refusal of {zone} says what was wrong and what to do: {msg}"
        );
        assert_nothing_left(&node, NET, &pod, &format!("refused claim of {zone}"));
    }

    // Allowed: a zone of the pod's own namespace, short or written out, and what the
    // operator allowed.
    for (zone, want) in [
        ("cache", "tenant-a/cache"),
        ("tenant-a/cache", "tenant-a/cache"),
        ("shared/cache", "shared/cache"),
    ] {
        let out = add_annotated(zone);
        assert!(out.success, "{zone} is allowed: {}", out.stdout);
        let ep = endpoint_of(&node, "claimer").expect("registered");
        assert_eq!(
            (ep["zone"].as_str(), ep["zoneSource"].as_str()),
            (Some(want), Some("annotation")),
            "{zone}: {ep}"
        );
        assert!(pod.ping(NODE_ADDR) && node.netns.ping(&first_ip(&out.json())));
        list.del(&node, &at, &json!({}), None)
            .unwrap_or_else(|o| panic!("DEL: {o:?}"));
        node.wait_veths_gone("the claimer's veth to go");
    }

    // CNI_ARGS come from the runtime, not from the pod's author: not confined.
    let by_runtime = Attachment::new("by-runtime", &pod).with_args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=tenant-a;K8S_POD_NAME=web-0;ZONEWARDEN_ZONE=tenant-b/batch",
    );
    list.add(&node, &by_runtime, &json!({}))
        .unwrap_or_else(|o| panic!("ADD with a CNI_ARGS zone: {o:?}"));
    let ep = endpoint_of(&node, "by-runtime").expect("registered");
    assert_eq!(
        (ep["zone"].as_str(), ep["zoneSource"].as_str()),
        (Some("tenant-b/batch"), Some("cni-args"))
    );
    list.del(&node, &by_runtime, &json!({}), None)
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    node.wait_veths_gone("the last veth to go");
    assert_nothing_left(&node, NET, &pod, "after the DELs");
}
