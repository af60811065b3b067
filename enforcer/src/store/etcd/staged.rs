//! The writes of one registry change, staged until its commit, and the revisions of
//! the keys as this enforcer last saw them (what the commit's transaction compares).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use zonewarden_profiles::{AttachmentKey, ZoneName};

use super::keys::{KeyKind, Keys};
use super::{Shared, StoreError, decode, trail};
use crate::audit::AuditRecord;

/// What a staged write requires of its key when it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// The key is as this enforcer last saw it (absent if it never saw it).
    AsSeen,
    /// The key does not exist: it is created once and never changed (zone ids).
    Absent,
    /// No condition: this node's own records queued while etcd was away.
    Unconditional,
}

/// One key as this enforcer last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The revision of its last change (put or delete) that the registry holds.
    pub revision: i64,
    pub exists: bool,
}

/// What the registry holds of the cluster store, by key.
#[derive(Debug, Default)]
pub struct Cache {
    /// By record key, held as shared text: the store's index of endpoint records
    /// ([`super::endpoint_keys`]) holds the same keys, one per remote endpoint.
    pub seen: HashMap<Arc<str>, Seen>,
    /// The zone ids the store holds (a zone's id is written once).
    pub zone_ids: BTreeMap<ZoneName, u32>,
    /// The endpoints quarantined one by one, as the store holds them.
    pub quarantined: BTreeSet<String>,
    /// Network and interface names of the endpoints decoded, shared.
    pub names: Names,
}

/// At most this many distinct names are shared: a cluster has a few networks and
/// interface names, and a node that publishes a new one with every endpoint only
/// keeps its own copies.
const SHARED_NAMES: usize = 256;

/// The network and interface names of decoded endpoint keys, held once: every
/// endpoint record brings its own copy of the same few names ("eth0", the
/// network's), and a node that knows a large cluster keeps one key per endpoint.
#[derive(Debug, Default)]
pub struct Names(HashSet<Arc<str>>);

impl Names {
    /// Gives the key's network and interface name the text held already.
    pub fn share(&mut self, key: &mut AttachmentKey) {
        for name in [&mut key.network, &mut key.ifname] {
            match self.0.get(&**name) {
                Some(shared) => *name = shared.clone(),
                None if self.0.len() < SHARED_NAMES => {
                    self.0.insert(name.clone());
                }
                None => {}
            }
        }
    }
}

impl Cache {
    /// Takes one key at `revision` (`value` `None`: deleted). Revisions only move
    /// forward: an older event or listing of a key changes nothing.
    pub fn observe(&mut self, keys: &Keys, key: &str, revision: i64, value: Option<&[u8]>) {
        let seen = Seen {
            revision,
            exists: value.is_some(),
        };
        match self.seen.get_mut(key) {
            Some(old) if old.revision > revision => return,
            Some(old) => *old = seen,
            None => {
                self.seen.insert(Arc::from(key), seen);
            }
        }
        match keys.parse(key) {
            Ok(KeyKind::Zone(zone)) => match value.map(decode::decode_zone) {
                Some(Ok(id)) => {
                    self.zone_ids.insert(zone, id);
                }
                Some(Err(_)) => {}
                None => {
                    self.zone_ids.remove(&zone);
                }
            },
            Ok(KeyKind::Quarantined(container_id)) => {
                if value.is_some() {
                    self.quarantined.insert(container_id);
                } else {
                    self.quarantined.remove(&container_id);
                }
            }
            _ => {}
        }
    }

    /// `key` as the shared text [`Self::seen`] holds (a new copy if it holds none).
    pub fn shared_key(&self, key: &str) -> Arc<str> {
        match self.seen.get_key_value(key) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(key),
        }
    }

    /// Whether the registry already holds this change of `key` (or a newer one).
    pub fn holds(&self, key: &str, revision: i64) -> bool {
        self.seen.get(key).is_some_and(|s| s.revision >= revision)
    }

    fn compare(&self, key: &str, guard: Guard) -> Option<Compare> {
        Some(match (guard, self.seen.get(key)) {
            (Guard::Unconditional, _) => return None,
            (Guard::AsSeen, Some(seen)) if seen.exists => {
                Compare::mod_revision(key, CompareOp::Equal, seen.revision)
            }
            _ => Compare::version(key, CompareOp::Equal, 0),
        })
    }
}

/// The writes of the change in progress: key → value (`None`: delete).
#[derive(Debug, Default)]
pub struct Staged {
    writes: BTreeMap<String, (Option<Vec<u8>>, Guard)>,
    /// The change's policy entries for the cluster-wide audit trail.
    audit: Vec<AuditRecord>,
    /// The change's commit was refused: what it stages next (its roll-back) is dropped
    /// when the change ends.
    pub refused: bool,
}

impl Staged {
    pub fn stage(&mut self, key: String, value: Option<Vec<u8>>, guard: Guard) {
        let guard = match self.writes.get(&key) {
            Some((_, Guard::Absent)) => Guard::Absent,
            _ => guard,
        };
        self.writes.insert(key, (value, guard));
    }

    pub fn stage_audit(&mut self, record: AuditRecord) {
        self.audit.push(record);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.audit.is_empty()
    }

    pub fn clear(&mut self) {
        self.writes.clear();
        self.audit.clear();
        self.refused = false;
    }
}

/// Writes what is staged as one transaction that holds only if every key is as this
/// enforcer last saw it, with the change's entries in the cluster-wide audit trail.
/// Nothing staged: nothing is written.
pub(crate) fn commit(shared: &Shared, staged: &Mutex<Staged>) -> Result<(), StoreError> {
    let (staged_writes, audit) = {
        let mut staged = staged.lock().unwrap_or_else(PoisonError::into_inner);
        (
            std::mem::take(&mut staged.writes),
            std::mem::take(&mut staged.audit),
        )
    };
    // Endpoints queued while etcd was away go first, in the same transaction; what
    // this change writes of the same key wins.
    let mut queue = shared
        .unpublished
        .as_ref()
        .map(|q| q.lock().unwrap_or_else(PoisonError::into_inner));
    let mut writes: BTreeMap<String, (Option<Vec<u8>>, Guard)> = queue
        .as_ref()
        .map(|q| {
            q.writes()
                .into_iter()
                .map(|(key, value)| (key, (value, Guard::Unconditional)))
                .collect()
        })
        .unwrap_or_default();
    writes.extend(staged_writes.clone());
    if writes.is_empty() && audit.is_empty() {
        return Ok(());
    }
    let (compares, ops, checks): (Vec<Compare>, Vec<TxnOp>, Vec<TxnOp>) = {
        let cache = shared.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        let mut checks = Vec::new();
        for (key, (value, guard)) in &writes {
            compares.extend(cache.compare(key, *guard));
            ops.push(match value {
                Some(value) => TxnOp::put(key.as_str(), value.clone(), None),
                None => TxnOp::delete(key.as_str(), None),
            });
            checks.push(TxnOp::get(
                key.as_str(),
                Some(GetOptions::new().with_keys_only()),
            ));
        }
        (compares, ops, checks)
    };
    let refuse = |err: StoreError| {
        staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused = true;
        err
    };
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        let mut compares = compares.clone();
        let mut ops = ops.clone();
        if !audit.is_empty() {
            // The trail's head as it is now: the entries are chained after it, and the
            // transaction requires it unchanged.
            let head = trail::read_head(shared).map_err(refuse)?;
            compares.push(head.compare(&shared.keys));
            ops.extend(
                head.chain(&shared.keys, &shared.node, &audit)
                    .map_err(refuse)?,
            );
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(ops)
            .or_else(checks.clone());
        match shared.call("commit the change", |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        }) {
            Ok(response)
                if !response.succeeded()
                    && !audit.is_empty()
                    && attempt < trail::ATTEMPTS
                    && conflicts(shared, &writes, &response).is_empty() =>
            {
                // Only the trail's head moved (another node's policy change): chain again.
                std::thread::sleep(trail::backoff(attempt));
                continue;
            }
            other => break other,
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(StoreError::Unavailable { endpoints, detail }) => {
            // Only this node's endpoints can wait for etcd: enforced now, published later.
            let own = audit.is_empty() && staged_writes.keys().all(|key| {
                matches!(shared.keys.parse(key), Ok(KeyKind::Endpoint { node }) if node == shared.node)
            });
            if let Some(queue) = queue.as_mut().filter(|_| own) {
                let queued: Vec<(String, Option<Vec<u8>>)> = staged_writes
                    .into_iter()
                    .map(|(key, (value, _))| (key, value))
                    .collect();
                queue.push(&queued).map_err(refuse)?;
                tracing::warn!(endpoints, %detail, queued = queued.len(), "etcd is unreachable: this node's endpoint change is enforced now and published when etcd is back");
                return Ok(());
            }
            return Err(refuse(StoreError::Unavailable { endpoints, detail }));
        }
        Err(err) => return Err(refuse(err)),
    };
    let revision = response.header().map_or(0, |h| h.revision());
    if response.succeeded() {
        // A refused transaction wrote nothing: its revision is etcd's, not ours.
        shared.saw_revision(revision);
    } else {
        let changed = conflicts(shared, &writes, &response);
        let what = if !changed.is_empty() {
            changed.join(", ")
        } else if !audit.is_empty() {
            format!(
                "the cluster-wide audit trail (other nodes' changes moved its head {} times in a row)",
                trail::ATTEMPTS
            )
        } else {
            "a record this change writes".to_owned()
        };
        return Err(refuse(StoreError::Conflict { what }));
    }
    let mut cache = shared.cache.lock().unwrap_or_else(PoisonError::into_inner);
    for (key, (value, _)) in &writes {
        cache.observe(&shared.keys, key, revision, value.as_deref());
    }
    if let Some(queue) = queue.as_mut()
        && let Err(err) = queue.clear()
    {
        tracing::error!(%err, "etcd holds the queued endpoints but the queue file could not be emptied; they are written again later (harmless)");
    }
    Ok(())
}

/// The keys of `writes` whose revision a failed transaction found changed, as an
/// operator reads them (empty: only the audit trail's head moved).
fn conflicts(
    shared: &Shared,
    writes: &BTreeMap<String, (Option<Vec<u8>>, Guard)>,
    response: &etcd_client::TxnResponse,
) -> Vec<String> {
    let current: Vec<Option<i64>> = response
        .op_responses()
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map_or(0, |kv| kv.mod_revision())),
            _ => None,
        })
        .collect();
    let cache = shared.cache.lock().unwrap_or_else(PoisonError::into_inner);
    writes
        .iter()
        .zip(current)
        .filter(|((key, (_, guard)), now)| {
            if *guard == Guard::Unconditional {
                return false;
            }
            let expected = match (guard, cache.seen.get(key.as_str())) {
                (Guard::AsSeen, Some(seen)) if seen.exists => seen.revision,
                _ => 0,
            };
            now.is_none_or(|now| now != expected)
        })
        .map(|((key, _), _)| describe(&shared.keys, key))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Writes the endpoints queued while etcd was away, if any (the publisher task).
pub(crate) fn publish_queued(shared: &Shared) -> Result<usize, StoreError> {
    let Some(queue) = shared.unpublished.as_ref() else {
        return Ok(0);
    };
    let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
    let writes = queue.writes();
    if writes.is_empty() {
        return Ok(0);
    }
    let ops: Vec<TxnOp> = writes
        .iter()
        .map(|(key, value)| match value {
            Some(value) => TxnOp::put(key.as_str(), value.clone(), None),
            None => TxnOp::delete(key.as_str(), None),
        })
        .collect();
    let txn = Txn::new().and_then(ops);
    let response = shared.call("publish the queued endpoints", |mut client| {
        let txn = txn.clone();
        async move { client.txn(txn).await }
    })?;
    let revision = response.header().map_or(0, |h| h.revision());
    shared.saw_revision(revision);
    {
        let mut cache = shared.cache.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, value) in &writes {
            cache.observe(&shared.keys, key, revision, value.as_deref());
        }
    }
    queue.clear()?;
    Ok(writes.len())
}

/// A key as an operator reads it in a refusal.
pub fn describe(keys: &Keys, key: &str) -> String {
    match keys.parse(key) {
        Ok(KeyKind::Profile(zone)) => format!("the profile of zone {zone}"),
        Ok(KeyKind::Zone(zone)) => format!("the id of zone {zone} (another node gave it one)"),
        Ok(KeyKind::ZoneId(id)) => format!("zone id {id} (another node took it)"),
        Ok(KeyKind::Endpoint { node }) => format!("an endpoint record of node {node}"),
        Ok(KeyKind::Quarantined(id)) => format!("the quarantine of endpoint {id}"),
        _ => format!("etcd key {key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(network: &str, container_id: &str, ifname: &str) -> AttachmentKey {
        AttachmentKey {
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn decoded_keys_share_their_network_and_interface_names() {
        let mut names = Names::default();
        let mut first = key("podnet", "c1", "eth0");
        let mut second = key("podnet", "c2", "eth0");
        names.share(&mut first);
        names.share(&mut second);
        assert!(Arc::ptr_eq(&first.network, &second.network));
        assert!(Arc::ptr_eq(&first.ifname, &second.ifname));
        assert!(!Arc::ptr_eq(&first.container_id, &second.container_id));
        assert_eq!(second, key("podnet", "c2", "eth0"), "the key is unchanged");
    }

    #[test]
    fn shared_names_are_bounded() {
        let mut names = Names::default();
        for i in 0..SHARED_NAMES * 2 {
            names.share(&mut key("podnet", "c", &format!("if{i}")));
        }
        assert_eq!(names.0.len(), SHARED_NAMES);
        // A name held already is still shared.
        let (mut a, mut b) = (key("podnet", "c1", "if0"), key("podnet", "c2", "if0"));
        names.share(&mut a);
        names.share(&mut b);
        assert!(Arc::ptr_eq(&a.ifname, &b.ifname));
    }
}
