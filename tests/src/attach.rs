//! Attachments in the end-to-end tests: the networks they are made on, what one left
//! on a node (its record, its veth, its lease), and the checks that a refused or
//! removed attachment left nothing.

use serde_json::{Value, json};

use crate::cni::{Attachment, CniOutput, Conflist, exec};
use crate::netns::Netns;
use crate::node::Node;

/// A chained network: Debian's `bridge` (bridge `bridge`, `host-local` addresses from
/// `subnet`) then zonewarden in chained mode reading the pod annotations.
pub fn bridge_chained(node: &Node, name: &str, bridge: &str, subnet: &str) -> Conflist {
    Conflist {
        name: name.to_owned(),
        cni_version: "1.0.0".into(),
        plugins: vec![
            json!({"type": "bridge", "bridge": bridge, "isGateway": true,
                   "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": node.ipam_dir()}}),
            json!({"type": "zonewarden", "mode": "chained", "socket": node.socket(),
                   "capabilities": {"io.kubernetes.cri.pod-annotations": true}}),
        ],
    }
}

/// The enforcer's record of `container_id` (any network, any ifname), if any.
pub fn endpoint_of(node: &Node, container_id: &str) -> Option<Value> {
    node.endpoints()
        .into_iter()
        .find(|e| e["key"]["containerId"] == container_id)
}

/// Panics unless the node holds no veth of ours, no lease of `network`, no endpoint,
/// and `pod` has no `eth0`: what a refused ADD must leave.
pub fn assert_nothing_left(node: &Node, network: &str, pod: &Netns, what: &str) {
    let veths: Vec<String> = node
        .host_veths()
        .into_iter()
        .filter(|l| zonewarden_like(l))
        .collect();
    assert!(veths.is_empty(), "{what}: veth left: {veths:?}");
    assert!(
        node.leases(network).is_empty(),
        "{what}: lease left: {:?}",
        node.leases(network)
    );
    assert!(
        node.endpoints().is_empty(),
        "{what}: endpoint left: {:?}",
        node.endpoints()
    );
    assert!(
        !pod.links().contains(&"eth0".to_owned()),
        "{what}: the pod still has an eth0: {:?}",
        pod.links()
    );
}

/// Whether `name` has the shape of the plugin's host veths (`zw` + 11 hex digits).
pub fn zonewarden_like(name: &str) -> bool {
    name.strip_prefix("zw")
        .is_some_and(|rest| rest.len() == 11 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Runs GC of the list's first plugin with `extra` merged into its request (e.g. the
/// valid attachments), as a runtime does: no container, no netns.
pub fn gc(node: &Node, list: &Conflist, extra: Value) -> CniOutput {
    let at = Attachment {
        container_id: String::new(),
        netns: String::new(),
        ifname: String::new(),
        args: String::new(),
    };
    exec(node, "zonewarden", "GC", &at, &list.single(0, extra))
}

/// Panics unless the endpoint record `ep` is in the namespace `netns` and holds `ip`,
/// as the runtime that made the pod reports them.
pub fn assert_endpoint_at(ep: &Value, netns: &std::path::Path, ip: &str) {
    assert_eq!(
        ep["netns"].as_str(),
        netns.to_str(),
        "the endpoint is in the pod's namespace: {ep}"
    );
    let holds = ep["ips"].as_array().is_some_and(|ips| {
        ips.iter()
            .filter_map(Value::as_str)
            .any(|a| a.split('/').next() == Some(ip))
    });
    assert!(holds, "the runtime reports the address {ip}: {ep}");
}
