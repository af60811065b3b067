//! The enforcer's host-gateway routes module, run inside a node namespace and fed a
//! node list by the test (a watch channel of hand-made [`NodeRecord`]s), until the
//! etcd store feeds the enforcer itself.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use zonewarden_enforcer::cluster::routes::{NodeRecord, ROUTE_PROTOCOL, run_routes};

use crate::node::Node;
use crate::wait;

/// `run_routes` for one node, on a thread inside its namespace; stopped on drop (the
/// routes it made stay, with the namespace).
pub struct ManualRoutes {
    list: Option<watch::Sender<Vec<NodeRecord>>>,
    thread: Option<JoinHandle<()>>,
}

impl ManualRoutes {
    /// Starts the routes of `node` for the live nodes `nodes` (`node` among them or not).
    pub fn start(node: &Node, nodes: Vec<NodeRecord>) -> Self {
        let (list, receiver) = watch::channel(nodes);
        let own = node.netns.name.clone();
        let path = node.netns.path();
        let thread = std::thread::spawn(move || {
            zonewarden_cni::netns::run_in_netns(&path, move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the routes task")
                    .block_on(run_routes(own, receiver));
            })
            .expect("enter the node namespace");
        });
        Self {
            list: Some(list),
            thread: Some(thread),
        }
    }

    /// Publishes a new list of live nodes.
    pub fn set(&self, nodes: Vec<NodeRecord>) {
        self.list.as_ref().expect("running").send_replace(nodes);
    }
}

impl Drop for ManualRoutes {
    fn drop(&mut self) {
        drop(self.list.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The routes of ours (`proto 122`) in `node`, both families, as `block via next-hop`,
/// sorted.
pub fn our_routes(node: &Node) -> Vec<String> {
    let proto = ROUTE_PROTOCOL.to_string();
    let mut routes = Vec::new();
    for family in ["-4", "-6"] {
        let out = node.netns.ip(&[family, "route", "show", "proto", &proto]);
        routes.extend(out.lines().map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            format!("{} via {}", words[0], words.get(2).copied().unwrap_or("?"))
        }));
    }
    routes.sort();
    routes
}

/// Waits until `node`'s routes of ours are exactly `expected` (sorted).
pub fn wait_routes(node: &Node, expected: &[String]) {
    let mut expected = expected.to_vec();
    expected.sort();
    wait::until(
        &format!("routes {expected:?} in {}", node.netns.name),
        Duration::from_secs(10),
        || our_routes(node) == expected,
    );
}
