//! One attachment of a container to a network: what the registry stores and the data
//! plane enforces.

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::derive::ZoneSource;
use crate::zone::ZoneName;

/// The key of an attachment, as the CNI spec identifies it. Its parts are shared
/// text: the registry, the compiled ruleset's indexes and the cluster store's index
/// each keep the key of every endpoint a node knows, and a clone is three reference
/// counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttachmentKey {
    pub network: Arc<str>,
    pub container_id: Arc<str>,
    pub ifname: Arc<str>,
}

impl fmt::Display for AttachmentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.network, self.container_id, self.ifname)
    }
}

/// How the plugin attached the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// zonewarden made the veth pair and the routes.
    Routed,
    /// Another plugin made the interface; zonewarden only registered it.
    Chained,
    /// `zonewarden-enforcer --sidecar` registered its own pod and enforces it inside
    /// the pod's network namespace (the cluster's CNI is not zonewarden).
    Sidecar,
}

impl AttachMode {
    pub const ALL: [AttachMode; 3] = [AttachMode::Routed, AttachMode::Chained, AttachMode::Sidecar];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Routed => "routed",
            Self::Chained => "chained",
            Self::Sidecar => "sidecar",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "routed" => Some(Self::Routed),
            "chained" => Some(Self::Chained),
            "sidecar" => Some(Self::Sidecar),
            _ => None,
        }
    }
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub key: AttachmentKey,
    pub zone: ZoneName,
    pub zone_source: ZoneSource,
    pub netns: String,
    /// The host-side interface, when there is one: the routed mode's veth, or in
    /// chained mode the host end of the pod's veth pair (a bridge port after `bridge`).
    pub host_ifname: Option<String>,
    /// In chained mode after a bridge: the bridge `host_ifname` is a port of. Its
    /// traffic is bridged, so anti-spoofing happens in the bridge family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    pub ips: Vec<IpNet>,
    pub mac: Option<String>,
    pub node: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub attach_mode: AttachMode,
    pub created_unix_ms: i64,
}

impl Endpoint {
    /// The bare addresses of this endpoint, as the data plane matches them.
    pub fn addrs(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        self.ips.iter().map(IpNet::addr)
    }
}

/// Endpoints by attachment key, each holding its key once: a map from key to endpoint
/// would keep every key twice, and a node that knows a large cluster keeps one entry
/// per remote endpoint. Each endpoint is shared (`Arc`): a clone of the whole set
/// (the registry's copy-on-write after a snapshot took it) copies the tree, not every
/// endpoint's text.
#[derive(Debug, Clone, Default)]
pub struct Endpoints(BTreeSet<ByKey>);

/// An endpoint ordered (and found) by its key alone.
#[derive(Debug, Clone)]
struct ByKey(Arc<Endpoint>);

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key.cmp(&other.0.key)
    }
}

impl Borrow<AttachmentKey> for ByKey {
    fn borrow(&self) -> &AttachmentKey {
        &self.0.key
    }
}

impl Endpoints {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &AttachmentKey) -> Option<&Endpoint> {
        self.0.get(key).map(|e| &*e.0)
    }

    pub fn contains_key(&self, key: &AttachmentKey) -> bool {
        self.0.contains(key)
    }

    /// Inserts or replaces the endpoint under its key; returns the one it replaced.
    pub fn insert(&mut self, endpoint: Endpoint) -> Option<Endpoint> {
        self.0
            .replace(ByKey(Arc::new(endpoint)))
            .map(|e| Arc::unwrap_or_clone(e.0))
    }

    pub fn remove(&mut self, key: &AttachmentKey) -> Option<Endpoint> {
        self.0.take(key).map(|e| Arc::unwrap_or_clone(e.0))
    }

    /// The endpoints in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Endpoint> + Clone {
        self.0.iter().map(|e| &*e.0)
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &AttachmentKey> + Clone {
        self.values().map(|e| &e.key)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Equal when they hold the same endpoints, whole (not only the same keys).
impl PartialEq for Endpoints {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.values().eq(other.values())
    }
}

impl Eq for Endpoints {}

impl FromIterator<Endpoint> for Endpoints {
    fn from_iter<I: IntoIterator<Item = Endpoint>>(iter: I) -> Self {
        let mut endpoints = Self::new();
        for endpoint in iter {
            endpoints.insert(endpoint);
        }
        endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(container: &str, netns: &str) -> Endpoint {
        Endpoint {
            key: AttachmentKey {
                network: "net".into(),
                container_id: container.into(),
                ifname: "eth0".into(),
            },
            zone: ZoneName::parse("shop/web").unwrap(),
            zone_source: ZoneSource::Annotation,
            netns: netns.into(),
            host_ifname: None,
            bridge: None,
            ips: vec!["10.0.0.5/32".parse().unwrap()],
            mac: None,
            node: "node-a".into(),
            pod_namespace: None,
            pod_name: None,
            attach_mode: AttachMode::Chained,
            created_unix_ms: 1,
        }
    }

    #[test]
    fn endpoints_are_found_replaced_and_removed_by_key() {
        let mut endpoints = Endpoints::new();
        assert_eq!(endpoints.insert(endpoint("b", "/run/netns/b")), None);
        assert_eq!(endpoints.insert(endpoint("a", "/run/netns/a")), None);
        let old = endpoints.insert(endpoint("b", "/run/netns/b2"));
        assert_eq!(old.map(|e| e.netns), Some("/run/netns/b".to_owned()));
        assert_eq!(endpoints.len(), 2);
        let b = endpoint("b", "").key;
        assert_eq!(endpoints.get(&b).unwrap().netns, "/run/netns/b2");
        let order: Vec<&str> = endpoints.keys().map(|k| &*k.container_id).collect();
        assert_eq!(order, ["a", "b"]);
        assert_eq!(endpoints.remove(&b).unwrap().netns, "/run/netns/b2");
        assert!(!endpoints.contains_key(&b));
        assert_eq!(endpoints.len(), 1);
    }

    #[test]
    fn a_copy_of_the_endpoints_shares_each_endpoint_until_it_changes() {
        let mut endpoints: Endpoints = [endpoint("a", "/x"), endpoint("b", "/y")]
            .into_iter()
            .collect();
        let copy = endpoints.clone();
        let a = endpoint("a", "").key;
        assert!(std::ptr::eq(
            endpoints.get(&a).unwrap(),
            copy.get(&a).unwrap()
        ));
        endpoints.insert(endpoint("a", "/z"));
        assert_eq!(copy.get(&a).unwrap().netns, "/x", "the copy keeps its own");
        assert_eq!(endpoints.get(&a).unwrap().netns, "/z");
    }

    #[test]
    fn endpoints_are_equal_only_when_every_endpoint_is() {
        let one: Endpoints = [endpoint("a", "/x")].into_iter().collect();
        let same: Endpoints = [endpoint("a", "/x")].into_iter().collect();
        let other: Endpoints = [endpoint("a", "/y")].into_iter().collect();
        assert_eq!(one, same);
        assert_ne!(one, other, "same key, another netns");
    }
}
