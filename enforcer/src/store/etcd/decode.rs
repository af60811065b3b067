//! Values of the cluster store: a listing of the prefix into the stored state, and the
//! encoding of each record. A record that does not decode is an error naming its key,
//! never silently dropped; the one exception is another node's endpoint record, which
//! is left out with an error in the log (see [`decode`]).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zonewarden_profiles::learned::LearnedEdges;
use zonewarden_profiles::{Endpoint, Profile, ZoneName};

use super::keys::{KeyKind, Keys};
use crate::store::{StoreError, StoredState, ZoneIds};

const RECORD_VERSION: u32 = 1;
/// How many of the other nodes' records that do not decode a load names in the log (a
/// cluster upgraded to a newer format may hold thousands).
const SKIPPED_LOGGED: usize = 10;

/// One key of a listing or a watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointRecord {
    version: u32,
    endpoint: Endpoint,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneRecord {
    id: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneIdRecord {
    zone: ZoneName,
}

pub fn encode_endpoint(endpoint: &Endpoint) -> Vec<u8> {
    let record = EndpointRecord {
        version: RECORD_VERSION,
        endpoint: endpoint.clone(),
    };
    serde_json::to_vec(&record).expect("an endpoint always encodes")
}

pub fn encode_zone(id: u32) -> Vec<u8> {
    serde_json::to_vec(&ZoneRecord { id }).expect("a zone id always encodes")
}

pub fn encode_zone_id(zone: &ZoneName) -> Vec<u8> {
    serde_json::to_vec(&ZoneIdRecord { zone: zone.clone() }).expect("a zone name always encodes")
}

pub fn decode_zone(value: &[u8]) -> Result<u32, String> {
    let record: ZoneRecord = json(value)?;
    if record.id == 0 {
        return Err("zone id 0 is never assigned".to_owned());
    }
    Ok(record.id)
}

fn json<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    serde_json::from_slice(value).map_err(|e| e.to_string())
}

/// The endpoint a key holds, checked against the key.
pub fn decode_endpoint(keys: &Keys, key: &str, value: &[u8]) -> Result<Endpoint, String> {
    let record: EndpointRecord = json(value)?;
    if record.version != RECORD_VERSION {
        return Err(format!(
            "record version {} is not {RECORD_VERSION}",
            record.version
        ));
    }
    let endpoint = record.endpoint;
    if keys.endpoint(&endpoint.node, &endpoint.key) != key {
        return Err(format!(
            "it holds endpoint {} of node {}, which belongs under another key",
            endpoint.key, endpoint.node
        ));
    }
    Ok(endpoint)
}

/// The profile a key holds, checked against the key.
/// A node's learned edges (`learned/<node>`).
pub fn decode_learned(value: &[u8]) -> Result<LearnedEdges, String> {
    json(value)
}

pub fn decode_profile(zone: &ZoneName, value: &[u8]) -> Result<Profile, String> {
    let profile: Profile = json(value)?;
    if &profile.zone != zone {
        return Err(format!("it holds the profile of zone {}", profile.zone));
    }
    Ok(profile)
}

/// Everything a listing of the prefix holds, as the registry takes it: the
/// endpoints of every node, every zone id, profile and quarantined endpoint, and this
/// node's own learned edges and reports.
pub fn decode(keys: &Keys, node: &str, kvs: &[Kv]) -> Result<StoredState, StoreError> {
    let mut state = StoredState::default();
    let mut zones: BTreeMap<ZoneName, u32> = BTreeMap::new();
    let mut ids: BTreeMap<u32, ZoneName> = BTreeMap::new();
    let mut skipped = 0usize;
    for kv in kvs {
        let corrupt = |detail: String| StoreError::CorruptKey {
            key: kv.key.clone(),
            detail,
        };
        let kind = keys.parse(&kv.key).map_err(corrupt)?;
        match kind {
            KeyKind::Zone(zone) => {
                zones.insert(zone, decode_zone(&kv.value).map_err(corrupt)?);
            }
            KeyKind::ZoneId(id) => {
                let record: ZoneIdRecord = json(&kv.value).map_err(corrupt)?;
                ids.insert(id, record.zone);
            }
            KeyKind::Profile(zone) => state
                .profiles
                .push(decode_profile(&zone, &kv.value).map_err(corrupt)?),
            KeyKind::Endpoint { node: of } => match decode_endpoint(keys, &kv.key, &kv.value) {
                Ok(endpoint) => state.endpoints.push(endpoint),
                // Another node's record that this version cannot read (written by a
                // newer version during a rolling upgrade, or damaged): left out, as
                // the watch leaves out such a change, so that one record cannot keep
                // every node of the cluster from starting. Its address is `world`
                // here (as that of a node whose lease expired) until a record this
                // node reads replaces it. This node's own records are its pods: they
                // must decode.
                Err(detail) if of != node => {
                    if skipped < SKIPPED_LOGGED {
                        tracing::error!(key = %kv.key, %detail, "another node's endpoint record does not decode; its address is world on this node until a record this version reads replaces it");
                    }
                    skipped += 1;
                }
                Err(detail) => return Err(corrupt(detail)),
            },
            KeyKind::Quarantined(container_id) => {
                state.quarantined.insert(container_id);
            }
            KeyKind::Learned { node: of } if of == node => {
                state.learned = Some(json(&kv.value).map_err(corrupt)?);
            }
            KeyKind::Reports { node: of } if of == node => {
                state.reports = Some(json(&kv.value).map_err(corrupt)?);
            }
            KeyKind::Learned { .. }
            | KeyKind::Reports { .. }
            | KeyKind::Node(_)
            | KeyKind::PodBlock => {}
        }
    }
    for (zone, id) in &zones {
        if ids.get(id) != Some(zone) {
            return Err(StoreError::CorruptKey {
                key: keys.zone(zone),
                detail: format!(
                    "zone id {id} is not recorded as taken by {zone} under {}",
                    keys.zone_id(*id)
                ),
            });
        }
    }
    state.zone_ids = ZoneIds::from_assigned(zones).map_err(|detail| StoreError::CorruptKey {
        key: format!("{}zones/", keys.root()),
        detail,
    })?;
    if skipped > 0 {
        tracing::error!(
            skipped,
            "endpoint records of other nodes that this version does not decode were left out (the first {SKIPPED_LOGGED} are logged above); upgrade this node's enforcer to the version the other nodes run"
        );
    }
    state.endpoints.sort_by(|a, b| a.key.cmp(&b.key));
    state.profiles.sort_by(|a, b| a.zone.cmp(&b.zone));
    Ok(state)
}

/// The cluster-wide view of learned edges: every node's evidence of an edge merged
/// (counts summed, first and last seen widened, nodes united, the newest sample).
pub fn merge_learned<'a>(per_node: impl IntoIterator<Item = &'a LearnedEdges>) -> LearnedEdges {
    let mut merged = LearnedEdges::new(1);
    let mut limit = 0;
    for learned in per_node {
        limit += learned.limit;
        for (edge, evidence) in &learned.edges {
            match merged.edges.get_mut(edge) {
                None => {
                    merged.edges.insert(edge.clone(), evidence.clone());
                }
                Some(seen) => {
                    seen.count += evidence.count;
                    seen.widen(evidence);
                }
            }
        }
    }
    merged.limit = limit.max(1);
    merged
}

/// Every node's learned edges in a listing.
pub fn learned_by_node(
    keys: &Keys,
    kvs: &[Kv],
) -> Result<BTreeMap<String, LearnedEdges>, StoreError> {
    let mut out = BTreeMap::new();
    for kv in kvs {
        if let Ok(KeyKind::Learned { node }) = keys.parse(&kv.key) {
            let learned = json(&kv.value).map_err(|detail| StoreError::CorruptKey {
                key: kv.key.clone(),
                detail,
            })?;
            out.insert(node, learned);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::endpoint;

    fn kv(key: String, value: Vec<u8>) -> Kv {
        Kv {
            key,
            value,
            mod_revision: 1,
        }
    }

    #[test]
    fn a_listing_decodes_and_damage_names_the_key() {
        let keys = Keys::new("/zw").unwrap();
        let web = ZoneName::parse("shop/web").unwrap();
        let mut ep = endpoint("c1", "shop/web", &["10.0.0.5/24"]);
        ep.node = "node-b".into();
        let listing = vec![
            kv(keys.zone(&web), encode_zone(3)),
            kv(keys.zone_id(3), encode_zone_id(&web)),
            kv(keys.endpoint("node-b", &ep.key), encode_endpoint(&ep)),
            kv(keys.quarantined("c1"), b"{}".to_vec()),
            kv(
                keys.learned("node-b"),
                serde_json::to_vec(&LearnedEdges::new(5)).unwrap(),
            ),
        ];
        let state = decode(&keys, "node-a", &listing).unwrap();
        assert_eq!(state.endpoints, vec![ep.clone()]);
        assert_eq!(state.zone_ids.get(&web), Some(3));
        assert!(state.quarantined.contains("c1"));
        assert_eq!(
            state.learned, None,
            "another node's evidence is not this node's"
        );

        // A record under another node's key than its own: left out by every other
        // node, an error naming the key for the node the key names.
        let mut moved = listing.clone();
        moved[2].key = keys.endpoint("node-c", &ep.key);
        let state = decode(&keys, "node-a", &moved).unwrap();
        assert!(state.endpoints.is_empty(), "{:?}", state.endpoints);
        assert_eq!(state.zone_ids.get(&web), Some(3));
        let err = decode(&keys, "node-c", &moved).unwrap_err().to_string();
        assert!(err.contains("/zw/endpoints/node-c/"), "{err}");

        let mut unclaimed = listing.clone();
        unclaimed.remove(1);
        let err = decode(&keys, "node-a", &unclaimed).unwrap_err().to_string();
        assert!(err.contains("zone id 3 is not recorded"), "{err}");
    }

    #[test]
    fn merged_evidence_sums_counts_and_unites_nodes() {
        let edge: zonewarden_profiles::Edge = "a->b:80/tcp".parse().unwrap();
        let sample = zonewarden_profiles::learned::Sample {
            src: "10.0.0.1".parse().unwrap(),
            src_port: 1000,
            dst: "10.0.0.2".parse().unwrap(),
            dst_port: 80,
            proto: zonewarden_profiles::Proto::Tcp,
        };
        let mut on_a = LearnedEdges::new(10);
        on_a.record(edge.clone(), sample.clone(), "node-a", 100);
        on_a.record(edge.clone(), sample.clone(), "node-a", 150);
        let mut on_b = LearnedEdges::new(10);
        on_b.record(edge.clone(), sample, "node-b", 50);
        let merged = merge_learned([&on_a, &on_b]);
        let evidence = &merged.edges[&edge];
        assert_eq!(evidence.count, 3);
        assert_eq!(evidence.first_seen_unix_ms, 50);
        assert_eq!(evidence.last_seen_unix_ms, 150);
        assert_eq!(evidence.nodes.len(), 2);
    }
}
