//! CNI GC as libcni 1.2 sends it (a null list when the runtime has no attachments),
//! and GC racing an ADD that is still running, as root.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use zonewarden_tests::attach::{endpoint_of, gc, zonewarden_like};
use zonewarden_tests::cni::{Attachment, Conflist, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::{REFERENCE_PLUGINS, require_root, wait};

/// A routed network on cniVersion 1.1.0 (GC needs it).
fn network(node: &Node, name: &str, subnet: &str) -> Conflist {
    Conflist {
        cni_version: "1.1.0".into(),
        ..Conflist::routed(node, name, subnet)
    }
}

fn our_veths(node: &Node) -> BTreeSet<String> {
    node.host_veths()
        .into_iter()
        .filter(|l| zonewarden_like(l))
        .collect()
}

fn host_ifname(node: &Node, container_id: &str) -> String {
    endpoint_of(node, container_id)
        .and_then(|e| e["hostIfname"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no endpoint for {container_id}"))
}

#[test]
fn gc_with_a_null_list_removes_every_attachment_of_its_network() {
    require_root!();
    let node = Node::with_enforcer();
    let (net, other) = ("zw-gc-null", "zw-gc-other");
    let list = network(&node, net, "10.134.0.0/24");
    let other_list = network(&node, other, "10.135.0.0/24");
    let pods: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("gn{i}"))).collect();
    for (i, pod) in pods.iter().enumerate() {
        list.add(
            &node,
            &Attachment::new(&format!("null-{i}"), pod),
            &json!({}),
        )
        .unwrap_or_else(|o| panic!("ADD {i}: {o:?}"));
    }
    let other_pod = Netns::new("gno");
    other_list
        .add(&node, &Attachment::new("other-0", &other_pod), &json!({}))
        .unwrap_or_else(|o| panic!("ADD on the other network: {o:?}"));
    assert_eq!(our_veths(&node).len(), 4);

    gc(&node, &list, json!({})).ok("GC without a list");
    assert_eq!(node.endpoints().len(), 4, "an absent list removes nothing");

    // libcni 1.2: the runtime's nil slice of attachments, under both keys.
    gc(
        &node,
        &list,
        json!({"cni.dev/valid-attachments": null, "cni.dev/attachments": null}),
    )
    .ok("GC with a null list");
    let left: Vec<_> = node
        .endpoints()
        .iter()
        .map(|e| e["key"]["containerId"].clone())
        .collect();
    assert_eq!(
        left,
        vec![json!("other-0")],
        "every attachment of {net} is stale"
    );
    assert!(node.leases(net).is_empty(), "{:?}", node.leases(net));
    assert_eq!(
        our_veths(&node),
        BTreeSet::from([host_ifname(&node, "other-0")]),
        "only the other network's veth is left"
    );
    assert_eq!(
        node.leases(other).len(),
        1,
        "the other network keeps its lease"
    );
    assert!(
        other_pod.ping(NODE_ADDR),
        "the other network's pod still works"
    );
}

/// An IPAM plugin that tells the test it started an ADD, waits for the test's go,
/// then is Debian's host-local: the ADD is in flight for as long as the test wants.
struct GatedIpam {
    dir: PathBuf,
}

impl GatedIpam {
    const NAME: &'static str = "gated-ipam";

    fn install(node: &Node) -> Self {
        let dir = node.dir.path().join("gate");
        std::fs::create_dir_all(&dir).expect("gate dir");
        let script = format!(
            "#!/bin/sh\n\
             if [ \"$CNI_COMMAND\" = ADD ]; then\n\
               touch '{started}'\n\
               while [ ! -e '{go}' ]; do sleep 0.01; done\n\
             fi\n\
             exec '{host_local}'\n",
            started = dir.join("started").display(),
            go = dir.join("go").display(),
            host_local = Path::new(REFERENCE_PLUGINS).join("host-local").display(),
        );
        let path = node.bin_dir().join(Self::NAME);
        std::fs::write(&path, script).expect("write the gated IPAM plugin");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        let gate = Self { dir };
        gate.open();
        gate
    }

    fn close(&self) {
        let _ = std::fs::remove_file(self.dir.join("go"));
        let _ = std::fs::remove_file(self.dir.join("started"));
    }

    fn open(&self) {
        std::fs::write(self.dir.join("go"), b"").expect("open the gate");
    }

    fn started(&self) -> bool {
        self.dir.join("started").exists()
    }
}

#[test]
fn gc_keeps_an_add_that_is_still_running() {
    require_root!();
    let node = Node::with_enforcer();
    let net = "zw-gc-race";
    let gate = GatedIpam::install(&node);
    let mut list = network(&node, net, "10.136.0.0/24");
    list.plugins[0]["ipam"]["type"] = json!(GatedIpam::NAME);
    let pods: Vec<Netns> = ["kept", "stale", "racer"]
        .iter()
        .map(|role| Netns::new(role))
        .collect();
    let ats: Vec<Attachment> = ["kept", "stale", "racer"]
        .iter()
        .zip(&pods)
        .map(|(id, pod)| Attachment::new(id, pod))
        .collect();
    for at in &ats[..2] {
        list.add(&node, at, &json!({}))
            .unwrap_or_else(|o| panic!("ADD {}: {o:?}", at.container_id));
    }

    gate.close();
    let log = node.dir.path().join("gc.log");
    let gc_log_says =
        |what: &str| std::fs::read_to_string(&log).is_ok_and(|text| text.contains(what));
    std::thread::scope(|scope| {
        let racer = scope.spawn(|| list.add(&node, &ats[2], &json!({})));
        wait::until(
            "the racing ADD to be in its IPAM call",
            Duration::from_secs(20),
            || gate.started(),
        );
        // The racer's pair is made beside its IPAM call: wait for its host veth.
        wait::until("the racing ADD's veth", Duration::from_secs(20), || {
            our_veths(&node).len() == 3
        });
        // The runtime made its list before this ADD: only "kept" is valid.
        let collector = scope.spawn(|| {
            gc(
                &node,
                &list,
                json!({"logFile": log,
                       "cni.dev/valid-attachments": [{"containerID": "kept", "ifname": "eth0"}]}),
            )
        });
        wait::until(
            "GC to wait for the running ADD, or to end",
            Duration::from_secs(20),
            || collector.is_finished() || gc_log_says("waiting for running ADDs"),
        );
        gate.open();
        let added = racer
            .join()
            .expect("ADD thread")
            .unwrap_or_else(|o| panic!("the ADD that raced GC must succeed: {o:?}"));
        collector.join().expect("GC thread").ok("GC");
        let left: BTreeSet<String> = node
            .endpoints()
            .iter()
            .filter_map(|e| e["key"]["containerId"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            left,
            BTreeSet::from(["kept".to_owned(), "racer".to_owned()]),
            "GC removed the stale attachment and kept the one added while it ran"
        );
        assert_eq!(
            our_veths(&node),
            BTreeSet::from([host_ifname(&node, "kept"), host_ifname(&node, "racer")]),
        );
        assert_eq!(node.leases(net).len(), 2, "{:?}", node.leases(net));
        list.check(&node, &ats[2], &json!({}), &added)
            .unwrap_or_else(|o| panic!("CHECK of the racing ADD: {o:?}"));
        assert!(pods[2].ping(NODE_ADDR) && node.netns.ping(&first_ip(&added)));
    });
}
