//! Input the plugin refuses before it touches anything, with a message that names the
//! variable: an overlong container id, a CNI_NETNS that is no network namespace, as
//! root.

use serde_json::json;
use zonewarden_tests::attach::assert_nothing_left;
use zonewarden_tests::cni::{Attachment, Conflist, exec};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::require_root;

const NET: &str = "zw-limits";

#[test]
fn an_overlong_container_id_is_refused() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.138.0.0/24");
    let pod = Netns::new("long");
    let at = Attachment::new(&"c".repeat(5000), &pod);
    let out = exec(&node, "zonewarden", "ADD", &at, &list.single(0, json!({})));
    assert_eq!(out.code(), Some(4), "a bad variable: {}", out.stdout);
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("CNI_CONTAINERID") && msg.contains("5000") && msg.contains("256"),
        "the message names the variable, its length and the limit: {msg}"
    );
    assert!(
        msg.len() < 400,
        "the id is not echoed whole: {} bytes",
        msg.len()
    );
    assert_nothing_left(&node, NET, &pod, "overlong container id");
}

#[test]
fn a_netns_that_is_no_network_namespace_is_named() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.138.0.0/24");
    let pod = Netns::new("nons");
    let file = node.dir.path().join("not-a-netns");
    std::fs::write(&file, b"").expect("a regular file");
    let cases = [
        (file.display().to_string(), "a regular file"),
        (node.dir.path().display().to_string(), "a directory"),
        ("/proc/self/ns/uts".to_owned(), "another kind of namespace"),
    ];
    for (netns, what) in cases {
        let at = Attachment {
            netns: netns.clone(),
            ..Attachment::new("nons", &pod)
        };
        for command in ["ADD", "CHECK"] {
            let mut conf = list.single(0, json!({}));
            if command == "CHECK" {
                conf["prevResult"] = json!({"cniVersion": "1.0.0", "interfaces": [], "ips": []});
            }
            let out = exec(&node, "zonewarden", command, &at, &conf);
            assert_eq!(out.code(), Some(8), "{command} {netns}: {}", out.stdout);
            let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
            assert!(
                msg.contains("CNI_NETNS") && msg.contains(&netns) && msg.contains(what),
                "{command}: the message names the variable, the path and what it is: {msg}"
            );
        }
        assert_nothing_left(&node, NET, &pod, &format!("CNI_NETNS={netns}"));
    }
}
