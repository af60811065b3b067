//! containerd's CRI, the kubelet's path, as root: Debian's containerd 1.6 runs pod
//! sandboxes through the shipped routed conflist, the pods get their zones from their
//! Kubernetes metadata and annotations, the zones learn, are approved and enforce with
//! real traffic between the pods, survive restarts of containerd and of the enforcer,
//! and StopPodSandbox + RemovePodSandbox (containerd's DELs, the first with the netns,
//! the later ones without, each seen as containerd made it) leave nothing behind.

use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::attach::{assert_endpoint_at, endpoint_of};
use zonewarden_tests::cni::example_conflist;
use zonewarden_tests::containerd::Containerd;
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::PodPair;
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::{require_root, wait};

/// The shipped routed network (`deploy/cni/10-zonewarden.conflist`) for this node.
fn routed_network(node: &Node) -> (Value, String) {
    let list = example_conflist(node, "10-zonewarden.conflist");
    let name = list["name"].as_str().expect("name").to_owned();
    (list, name)
}

/// Panics unless the node and containerd hold nothing any more: no endpoint, lease,
/// veth or sandbox; then stops containerd and checks that nothing of it is left.
fn assert_all_gone(node: &Node, containerd: &mut Containerd, network: &str, ids: &[&str]) {
    assert!(node.endpoints().is_empty(), "{:?}", node.endpoints());
    let leases = node.leases(network);
    assert!(leases.is_empty(), "leases left: {leases:?}");
    node.wait_veths_gone("the pods' host veths to go");
    let sandboxes = containerd
        .cri()
        .list_pod_sandboxes()
        .expect("ListPodSandbox");
    assert!(sandboxes.is_empty(), "sandboxes left: {sandboxes:?}");
    containerd.stop();
    let left = containerd.leftovers(ids);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn cri_pods_learn_approve_enforce_and_leave_nothing() {
    require_root!();
    let mut node = Node::with_enforcer();
    let (list, network) = routed_network(&node);
    let mut containerd = Containerd::start(&node, &list);
    let version = containerd.cri().version().expect("CRI Version");
    assert_eq!(version.runtime_name, "containerd", "{version:?}");

    // A Deployment's pod (zone from its name, no annotations: containerd sends them
    // as null) and a StatefulSet's pod whose annotation names its zone inside its own
    // namespace.
    let web = containerd
        .run_pod("shop", "web-7d4b9c8f6-x2k9p", &[])
        .unwrap_or_else(|e| panic!("RunPodSandbox web: {e}"));
    let db = containerd
        .run_pod("shop", "postgres-0", &[("zonewarden.io/zone", "db")])
        .unwrap_or_else(|e| panic!("RunPodSandbox db: {e}"));
    let ep_web = endpoint_of(&node, &web.id).expect("web registered under its sandbox id");
    let ep_db = endpoint_of(&node, &db.id).expect("db registered under its sandbox id");
    assert_eq!(
        (ep_web["zone"].as_str(), ep_web["zoneSource"].as_str()),
        (Some("shop/web"), Some("workload")),
        "the zone of a Deployment's pod comes from its name: {ep_web}"
    );
    assert_eq!(
        (ep_db["zone"].as_str(), ep_db["zoneSource"].as_str()),
        (Some("shop/db"), Some("annotation")),
        "containerd passes the pod annotations: {ep_db}"
    );
    for (pod, ep) in [(&web, &ep_web), (&db, &ep_db)] {
        assert_endpoint_at(ep, &pod.netns, &pod.ip);
        assert_eq!(ep["podNamespace"], "shop", "{ep}");
    }

    let (web_ns, db_ns) = (Netns::adopt(&web.netns), Netns::adopt(&db.netns));
    let pair = PodPair {
        client: &web_ns,
        client_zone: "shop/web",
        server: &db_ns,
        server_zone: "shop/db",
        server_ip: &db.ip,
    };
    let servers = pair.learn_approve_enforce(&node, 5432, 9090);

    // containerd restarts: its pods and their attachments stay, enforcement too.
    containerd.restart();
    let ids = containerd
        .cri()
        .list_pod_sandboxes()
        .expect("ListPodSandbox");
    assert!(
        ids.contains(&web.id) && ids.contains(&db.id),
        "both sandboxes survive a containerd restart: {ids:?}"
    );
    assert_eq!(node.endpoints().len(), 2, "{:?}", node.endpoints());
    pair.assert_enforced(5432, 9090, "after containerd's restart");

    // The enforcer restarts: the same.
    node.stop_enforcer(false);
    node.start_enforcer();
    assert_eq!(node.endpoints().len(), 2, "{:?}", node.endpoints());
    pair.assert_enforced(5432, 9090, "after the enforcer's restart");
    drop(servers);

    // The kubelet removes the pods: StopPodSandbox (DEL with the netns), then
    // RemovePodSandbox (DEL again, without one).
    let mut cri = containerd.cri();
    cri.stop_pod_sandbox(&web.id).expect("StopPodSandbox web");
    assert!(
        endpoint_of(&node, &web.id).is_none(),
        "the first DEL (StopPodSandbox) removes the endpoint"
    );
    cri.remove_pod_sandbox(&web.id)
        .expect("RemovePodSandbox web: the second DEL, without a netns, succeeds");
    cri.stop_pod_sandbox(&db.id).expect("StopPodSandbox db");
    cri.stop_pod_sandbox(&db.id)
        .expect("a repeated StopPodSandbox (another DEL) succeeds");
    cri.remove_pod_sandbox(&db.id).expect("RemovePodSandbox db");
    drop(cri);
    // What containerd sent, as the CNI notes say: ADD and the first DEL with the
    // netns, every later DEL (a repeated stop, the removal) without one.
    let (add, del) = (
        format!("ADD {}", web.netns.display()),
        format!("DEL {}", web.netns.display()),
    );
    assert_eq!(containerd.cni_calls(&web.id), [add, del, "DEL -".into()]);
    let (add, del) = (
        format!("ADD {}", db.netns.display()),
        format!("DEL {}", db.netns.display()),
    );
    assert_eq!(
        containerd.cni_calls(&db.id),
        [add, del, "DEL -".into(), "DEL -".into()]
    );
    assert_all_gone(&node, &mut containerd, &network, &[&web.id, &db.id]);
}

/// A pod whose annotation claims a zone of another namespace: RunPodSandbox fails with
/// zonewarden's message, and containerd's clean-up DELs leave nothing.
#[test]
fn cri_refused_zone_claim_fails_the_sandbox_and_leaves_nothing() {
    require_root!();
    let node = Node::with_enforcer();
    let (list, network) = routed_network(&node);
    let mut containerd = Containerd::start(&node, &list);
    let err = containerd
        .run_pod(
            "tenant-a",
            "cache-0",
            &[("zonewarden.io/zone", "tenant-b/db")],
        )
        .expect_err("a claim of another namespace's zone must fail the sandbox");
    assert!(
        err.message().contains("zonewarden.io/zone") && err.message().contains("tenant-b"),
        "the kubelet sees why: {err}"
    );
    let calls =
        std::fs::read_to_string(containerd.dir.path().join("cni-calls")).unwrap_or_default();
    let commands: Vec<&str> = calls.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        commands,
        ["ADD", "DEL"],
        "containerd cleans a failed ADD up with a DEL: {calls}"
    );
    assert_all_gone(&node, &mut containerd, &network, &[]);
}

/// `ctr run --cni`, containerd without Kubernetes: ctr attaches the container through
/// the shipped conflist (no pod metadata: the zone comes from the conflist's default),
/// the container's traffic is learned under that zone, and when its task ends ctr's
/// DEL (without a netns) removes everything.
#[test]
fn ctr_run_cni_attaches_and_detaches_a_container() {
    require_root!();
    let mut node = Node::with_enforcer();
    let (mut list, network) = routed_network(&node);
    list["plugins"][0]["zone"] = serde_json::json!("ops/tools");
    let mut containerd = Containerd::start(&node, &list);
    let db = zonewarden_tests::pods::add_pod(
        &node,
        &zonewarden_tests::cni::Conflist::from_json(&list),
        "db",
        "shop/db",
    );
    let _server = Server::start(&db.netns, &["tcp:5432"]);

    let mut ctr = containerd.ctr_run_cni("zwctr1");
    // ctr names the attachment `<namespace>-<id>`.
    let full_id = "k8s.io-zwctr1";
    let mut endpoint = None;
    wait::until(
        "ctr's container to be attached",
        Duration::from_secs(30),
        || {
            if let Ok(Some(status)) = ctr.try_wait() {
                panic!(
                    "ctr run --cni exited ({status}): {}",
                    std::fs::read_to_string(containerd.dir.path().join("ctr-zwctr1.log"))
                        .unwrap_or_default()
                );
            }
            endpoint = endpoint_of(&node, full_id);
            endpoint.is_some()
        },
    );
    let endpoint = endpoint.unwrap();
    assert_eq!(endpoint["zone"], "ops/tools", "{endpoint}");
    let netns = endpoint["netns"].as_str().expect("netns").to_owned();
    let ip = endpoint["ips"][0]
        .as_str()
        .and_then(|ip| ip.split('/').next())
        .expect("an address")
        .to_owned();
    let container = Netns::adopt(std::path::Path::new(&netns));
    assert_endpoint_at(&endpoint, std::path::Path::new(&netns), &ip);
    assert!(
        connects(&container, &db.target(5432, "tcp")),
        "the container reaches the pod"
    );
    wait::until(
        "the container's edge to be learned",
        Duration::from_secs(10),
        || {
            node.items(&["get", "edges", "--learned"])
                .iter()
                .any(|e| e["edge"] == "ops/tools->shop/db:5432/tcp")
        },
    );

    // The task ends: ctr sends DEL (without the netns, which went with the task) and
    // removes the container.
    containerd.ctr(&["task", "kill", "--signal", "SIGKILL", "zwctr1"]);
    let status = wait_exit(&mut ctr);
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "ctr run ends with its task's status (SIGKILL), not an error of its own"
    );
    assert_eq!(
        containerd.cni_calls(full_id),
        [format!("ADD {netns}"), "DEL -".to_owned()]
    );
    assert!(endpoint_of(&node, full_id).is_none());
    let leases = node.leases(&network);
    assert!(
        leases.iter().all(|l| !l.contains(&ip)),
        "the container's address was released: {leases:?}"
    );
    assert!(
        containerd
            .ctr(&["containers", "list", "-q"])
            .trim()
            .is_empty(),
        "--rm removed the container"
    );
    node.stop_enforcer(false);
    drop(db);
    containerd.stop();
    let left = containerd.leftovers(&[full_id]);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Waits (at most 30 s) for `child` to exit.
fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    wait::until("ctr to exit", Duration::from_secs(30), || {
        status = child.try_wait().expect("wait for ctr");
        status.is_some()
    });
    status.unwrap()
}
