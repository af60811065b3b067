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
/// per remote endpoint. Each endpoint is shared (`Arc`), and so is each run of at most
/// [`RUN_MAX`] consecutive keys: a copy of the whole set (the registry's copy-on-write
/// after a snapshot took it) copies one pointer per run, and a change then copies the
/// one run it touches. With one tree, the first change after a read copied every
/// endpoint of the cluster a node knows (see bench/README.md, benchmark 8).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// In key order, none empty: every key of a run is below every key of the next.
    runs: Vec<Arc<BTreeSet<ByKey>>>,
}

/// The most keys a run holds: a full run splits in two halves.
const RUN_MAX: usize = 512;

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

    /// The run that holds `key` if any run does: the first whose last key is not
    /// below it (`runs.len()` when `key` is above every key).
    fn run_of(&self, key: &AttachmentKey) -> usize {
        self.runs
            .partition_point(|run| run.last().is_some_and(|last| last.0.key < *key))
    }

    pub fn get(&self, key: &AttachmentKey) -> Option<&Endpoint> {
        self.runs.get(self.run_of(key))?.get(key).map(|e| &*e.0)
    }

    pub fn contains_key(&self, key: &AttachmentKey) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces the endpoint under its key; returns the one it replaced.
    pub fn insert(&mut self, endpoint: Endpoint) -> Option<Endpoint> {
        // A key above every key goes to the last run.
        let at = self
            .run_of(&endpoint.key)
            .min(self.runs.len().saturating_sub(1));
        if self.runs.is_empty() {
            self.runs.push(Arc::default());
        }
        let run = Arc::make_mut(&mut self.runs[at]);
        let old = run.replace(ByKey(Arc::new(endpoint)));
        if run.len() > RUN_MAX {
            let middle = run.iter().nth(run.len() / 2).cloned().expect("a full run");
            let upper = run.split_off(&middle);
            self.runs.insert(at + 1, Arc::new(upper));
        }
        old.map(|old| Arc::unwrap_or_clone(old.0))
    }

    pub fn remove(&mut self, key: &AttachmentKey) -> Option<Endpoint> {
        let at = self.run_of(key);
        if !self.runs.get(at)?.contains(key) {
            return None;
        }
        let old = Arc::make_mut(&mut self.runs[at]).take(key)?;
        // A run that emptied goes; one that shrank to a quarter joins the next when
        // both fit in half a run, so that deletions never leave many small runs behind.
        let left = self.runs[at].len();
        if left == 0 {
            self.runs.remove(at);
        } else if left < RUN_MAX / 4
            && self
                .runs
                .get(at + 1)
                .is_some_and(|next| left + next.len() <= RUN_MAX / 2)
        {
            let next = self.runs.remove(at + 1);
            let run = Arc::make_mut(&mut self.runs[at]);
            run.extend(next.iter().cloned());
        }
        Some(Arc::unwrap_or_clone(old.0))
    }

    /// The endpoints in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Endpoint> + Clone {
        self.runs.iter().flat_map(|run| run.iter()).map(|e| &*e.0)
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &AttachmentKey> + Clone {
        self.values().map(|e| &e.key)
    }

    pub fn len(&self) -> usize {
        self.runs.iter().map(|run| run.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
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

    proptest::proptest! {
        /// Inserts and removals over many runs (splits, joins, emptied runs) keep
        /// exactly what a plain ordered map of the same changes holds, in its order,
        /// and a copy taken halfway keeps what it held.
        #[test]
        fn endpoints_in_runs_hold_what_one_ordered_map_holds(
            changes in proptest::collection::vec((proptest::bool::weighted(0.6), 0u32..3000, 0u8..4), 0..4000)
        ) {
            let mut endpoints = Endpoints::new();
            let mut model = std::collections::BTreeMap::new();
            let mut copy = None;
            for (at, &(insert, n, netns)) in changes.iter().enumerate() {
                let id = format!("{n:05}");
                let ep = endpoint(&id, &format!("/run/netns/{netns}"));
                if insert {
                    let old = endpoints.insert(ep.clone()).map(|e| e.netns);
                    proptest::prop_assert_eq!(old, model.insert(id, ep.netns));
                } else {
                    let old = endpoints.remove(&ep.key).map(|e| e.netns);
                    proptest::prop_assert_eq!(old, model.remove(&id));
                }
                if at == changes.len() / 2 {
                    copy = Some((endpoints.clone(), model.clone()));
                }
            }
            let held = |e: &Endpoints| -> Vec<(String, String)> {
                e.values().map(|e| (e.key.container_id.to_string(), e.netns.clone())).collect()
            };
            let want: Vec<(String, String)> = model.clone().into_iter().collect();
            proptest::prop_assert_eq!(held(&endpoints), want.clone());
            proptest::prop_assert_eq!(endpoints.len(), model.len());
            let backwards: Vec<_> = endpoints.keys().rev().map(|k| k.container_id.to_string()).collect();
            proptest::prop_assert!(backwards.iter().rev().eq(model.keys()));
            for id in model.keys() {
                let key = endpoint(id, "").key;
                proptest::prop_assert!(endpoints.contains_key(&key));
            }
            proptest::prop_assert!(endpoints.runs.iter().all(|run| !run.is_empty() && run.len() <= RUN_MAX));
            if let Some((copy, model)) = copy {
                proptest::prop_assert_eq!(held(&copy), model.into_iter().collect::<Vec<_>>());
            }
        }
    }
}
