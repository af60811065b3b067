//! A runtime may ADD a new sandbox into a network namespace right after DEL of the
//! previous one, with the same CNI_IFNAME: DEL frees the pod end's name before it
//! returns, so that ADD never finds the old interface, under churn, as root.

use std::sync::Mutex;

use serde_json::json;
use zonewarden_tests::cni::{Attachment, Conflist, first_ip};
use zonewarden_tests::netns::Netns;
use zonewarden_tests::node::{NODE_ADDR, Node};
use zonewarden_tests::require_root;

const NET: &str = "zw-churn";
/// Netns reused concurrently, and ADD/DEL cycles in each: 200 cycles in all.
const WORKERS: usize = 8;
const CYCLES: usize = 25;

#[test]
fn add_right_after_del_in_the_same_netns_never_finds_the_old_interface() {
    require_root!();
    let node = Node::with_enforcer();
    let list = Conflist::routed(&node, NET, "10.133.0.0/24");
    let pods: Vec<Netns> = (0..WORKERS)
        .map(|i| Netns::new(&format!("ch{i}")))
        .collect();
    let failures = Mutex::new(Vec::new());
    let rt = json!({});
    std::thread::scope(|scope| {
        for (worker, pod) in pods.iter().enumerate() {
            let (node, list, failures, rt) = (&node, &list, &failures, &rt);
            scope.spawn(move || {
                let fail = |what: String| failures.lock().unwrap().push(what);
                for cycle in 0..CYCLES {
                    let at = Attachment::new(&format!("churn-{worker}-{cycle}"), pod);
                    if let Err(out) = list.add(node, &at, rt) {
                        fail(format!(
                            "ADD {worker}/{cycle} failed with code {:?}: {}",
                            out.code(),
                            out.stdout
                        ));
                        continue;
                    }
                    if let Err(out) = list.del(node, &at, rt, None) {
                        fail(format!("DEL {worker}/{cycle}: {}", out.stdout));
                    }
                    let links = pod.links();
                    if links.contains(&"eth0".to_owned()) {
                        fail(format!(
                            "after DEL {worker}/{cycle} the netns still has eth0: {links:?}"
                        ));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cycles went wrong:\n{}",
        failures.len(),
        WORKERS * CYCLES,
        failures.join("\n")
    );

    // The netns still works for a new sandbox, and nothing of the churn is left.
    let at = Attachment::new("after-churn", &pods[0]);
    let res = list
        .add(&node, &at, &rt)
        .unwrap_or_else(|o| panic!("ADD after the churn: {o:?}"));
    list.check(&node, &at, &rt, &res)
        .unwrap_or_else(|o| panic!("CHECK after the churn: {o:?}"));
    assert!(pods[0].ping(NODE_ADDR) && node.netns.ping(&first_ip(&res)));
    list.del(&node, &at, &rt, None)
        .unwrap_or_else(|o| panic!("DEL: {o:?}"));
    node.wait_veths_gone("the retired veths of the churn to go");
    assert!(node.leases(NET).is_empty(), "{:?}", node.leases(NET));
    assert!(node.endpoints().is_empty());
    assert!(node.netns.nft_map_keys("zone_of_v4").is_empty());
    for pod in &pods {
        let links = pod.links();
        assert_eq!(
            links,
            vec!["lo".to_owned()],
            "only lo is left in {}",
            pod.name
        );
    }
}
