//! Pods attached through the real plugin on a routed network, each in its own zone.

use serde_json::{Value, json};

use crate::cni::{Attachment, Conflist, first_ip};
use crate::netns::Netns;
use crate::node::Node;

pub struct Pod {
    pub netns: Netns,
    pub at: Attachment,
    pub ip: String,
    pub zone: String,
    pub result: Value,
}

impl Pod {
    /// `addr:port/proto` of this pod.
    pub fn target(&self, port: u16, proto: &str) -> String {
        format!("{}:{port}/{proto}", self.ip)
    }
}

/// Attaches a pod named `name` whose zone is `zone` (given through CNI_ARGS).
pub fn add_pod(node: &Node, list: &Conflist, name: &str, zone: &str) -> Pod {
    let netns = Netns::new(name);
    let at = Attachment::new(&format!("{name}-{}", std::process::id()), &netns).with_args(
        &format!("IgnoreUnknown=1;ZONEWARDEN_ZONE={zone};K8S_POD_NAME={name}"),
    );
    let result = list
        .add(node, &at, &json!({}))
        .unwrap_or_else(|o| panic!("ADD {name}: {o:?}"));
    let ip = first_ip(&result);
    Pod {
        netns,
        at,
        ip,
        zone: zone.to_owned(),
        result,
    }
}
