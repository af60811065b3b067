//! The watch of the cluster store: every change another node makes reaches this
//! node's registry as [`RemoteChange`]s.
//!
//! One task on the client's runtime watches the whole prefix from the revision of the
//! load. After a disconnect it resumes from the revision after the last one it
//! delivered; when that revision was compacted away (or the watch was cancelled for
//! any other reason) it lists the whole prefix again and delivers it as a resync,
//! which the consumer turns into the difference from what the registry holds.
//! Nothing is flushed: a resync changes only what differs.
//!
//! The consumer ([`follow_forever`]) skips what the registry holds already: this
//! node's own commits (the store noted their revisions) and anything older than what
//! it has. Node records go to [`super::EtcdStore::nodes`], not to the registry.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;
use tracing::{error, info, warn};
use zonewarden_profiles::AttachmentKey;

use super::decode::{self, Kv};
use super::keys::KeyKind;
use super::{EtcdStore, Shared};
use crate::registry::EndpointRegistry;
use crate::registry::remote::RemoteChange;

/// Changes of the prefix, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUpdate {
    /// Keys written, with their new values.
    pub changed: Vec<Kv>,
    /// Keys deleted, with the revision of the deletion.
    pub deleted: Vec<(String, i64)>,
    /// Everything up to this revision is in this update or an earlier one.
    pub revision: i64,
    /// A full listing after a gap: `changed` holds every key, and a key the registry
    /// holds that is not in it was deleted.
    pub resync: bool,
}

/// The largest watch answer taken. A watch that catches up (after a pause, or behind
/// a burst of writes) gets up to 1,000 revisions in one answer, each as large as a
/// transaction of etcd's `--max-request-bytes`: megabytes for a large cluster's
/// writes. gRPC's default of 4 MiB refused such an answer, and the watch, resumed at
/// the same revision, was refused it again without end.
const WATCH_MESSAGE_LIMIT: usize = 1 << 30;

impl ClusterUpdate {
    /// A progress notification: no change, only the revision everything before it
    /// reaches.
    pub fn is_progress(&self) -> bool {
        !self.resync && self.changed.is_empty() && self.deleted.is_empty()
    }
}

/// Why one watch ended.
enum Ended {
    /// The stream broke (etcd away): resume from the same revision.
    Broken(String),
    /// The revision to resume from is gone (compacted) or the watch was cancelled.
    Gap(String),
    /// Nobody listens any more.
    Closed,
}

impl EtcdStore {
    /// Starts watching from the revision after the last [`crate::store::Store::load`];
    /// the updates arrive in order on the returned channel, for [`follow_forever`].
    pub fn watch(&self) -> mpsc::Receiver<ClusterUpdate> {
        let (tx, rx) = mpsc::channel(256);
        let shared = self.shared().clone();
        let from = self.loaded_revision() + 1;
        shared.bridge.handle().spawn(pump(shared.clone(), from, tx));
        rx
    }
}

async fn pump(shared: Arc<Shared>, mut next: i64, tx: mpsc::Sender<ClusterUpdate>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match watch_once(&shared, &mut next, &tx, &mut backoff).await {
            Ended::Closed => return,
            Ended::Broken(why) => {
                let _ = shared.unavailable(format!("watch: {why}"));
                warn!(%why, resume_at = next, "the watch of the cluster store broke; resuming");
            }
            Ended::Gap(why) => {
                warn!(%why, "the watch cannot resume where it left off; resyncing from a full listing");
                match list(&shared).await {
                    Ok((changed, revision)) => {
                        shared.nodes_listed(&changed, revision);
                        let update = ClusterUpdate {
                            changed,
                            deleted: Vec::new(),
                            revision,
                            resync: true,
                        };
                        if tx.send(update).await.is_err() {
                            return;
                        }
                        next = revision + 1;
                        backoff = Duration::from_millis(200);
                        continue;
                    }
                    Err(err) => {
                        let _ = shared.unavailable(format!("resync: {err}"));
                        // Still a gap: the next round lists again.
                        next = 0;
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn list(shared: &Shared) -> Result<(Vec<Kv>, i64), etcd_client::Error> {
    let response = super::list_paged(shared.client.clone(), shared.keys.root().to_owned()).await?;
    let revision = response.revision;
    shared.saw_revision(revision);
    shared.mark_up();
    let kvs = response
        .kvs()
        .iter()
        .map(|kv| Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        })
        .collect();
    Ok((kvs, revision))
}

async fn watch_once(
    shared: &Shared,
    next: &mut i64,
    tx: &mpsc::Sender<ClusterUpdate>,
    backoff: &mut Duration,
) -> Ended {
    if *next <= 0 {
        return Ended::Gap("no revision to resume from".to_owned());
    }
    let mut client = shared
        .client
        .watch_client()
        .max_decoding_message_size(WATCH_MESSAGE_LIMIT);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(*next)
        .with_progress_notify();
    let mut stream = match client.watch(shared.keys.root(), Some(options)).await {
        Ok(stream) => stream,
        Err(err) => return Ended::Broken(err.to_string()),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Ended::Broken("the watch stream ended".to_owned()),
            Err(err) => return Ended::Broken(err.to_string()),
        };
        shared.mark_up();
        *backoff = Duration::from_millis(200);
        if response.compact_revision() > 0 {
            return Ended::Gap(format!(
                "revision {next} is compacted (oldest kept: {})",
                response.compact_revision()
            ));
        }
        if response.canceled() {
            return Ended::Gap(format!(
                "the watch was cancelled: {}",
                response.cancel_reason()
            ));
        }
        // The header is etcd's revision now, which counts every write to the whole
        // store (other applications' too): only the revisions this stream delivers
        // count as seen, so the watch lag is changes of the cluster's keys not yet
        // applied, never anyone else's writes.
        let header = response.header().map_or(0, |h| h.revision());
        if response.created() && response.events().is_empty() {
            // The answer to the watch request: its header is etcd's revision now, not
            // the end of what this stream delivered. A watch resumed from an older
            // revision gets the changes in between after it, so counting the header
            // as applied (or resuming after it, were the stream to break now) would
            // claim, or skip, changes this node never took.
            continue;
        }
        let mut update = ClusterUpdate {
            changed: Vec::new(),
            deleted: Vec::new(),
            revision: 0,
            resync: false,
        };
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let revision = kv.mod_revision();
            update.revision = update.revision.max(revision);
            let value = match event.event_type() {
                EventType::Put => Some(kv.value()),
                EventType::Delete => None,
            };
            if let Ok(KeyKind::Node(name)) = shared.keys.parse(&key) {
                shared.node_changed(&name, value, revision);
            }
            match value {
                Some(value) => update.changed.push(Kv {
                    key,
                    value: value.to_vec(),
                    mod_revision: revision,
                }),
                None => update.deleted.push((key, revision)),
            }
        }
        if update.changed.is_empty() && update.deleted.is_empty() {
            // A progress notification: everything up to the header is delivered. It
            // goes down the channel like a change: the revision counts as applied once
            // the updates queued before it are, not while they wait.
            if header >= *next {
                *next = header + 1;
                shared.saw_revision(header);
                update.revision = header;
                if tx.send(update).await.is_err() {
                    return Ended::Closed;
                }
            }
            continue;
        }
        *next = update.revision + 1;
        shared.saw_revision(update.revision);
        if tx.send(update).await.is_err() {
            return Ended::Closed;
        }
    }
}

/// What an update means for the registry: the changes to apply, and the keys (with
/// their revisions) the registry holds once they are applied.
#[derive(Debug, Default)]
pub struct Decoded {
    pub changes: Vec<RemoteChange>,
    /// For each change, the record and the revision it comes from; `None`: due
    /// whatever this node wrote since (a zone id, the endpoints of a dead node).
    pub origins: Vec<Option<(String, i64)>>,
    pub observed: Vec<Kv>,
    pub deleted: Vec<(String, i64)>,
    /// Endpoint keys the registry gives up because their node's record is gone.
    pub forgotten: Vec<String>,
    /// Other nodes' endpoint records among the changes: record key, node and
    /// attachment key (sharing its text with the registry's endpoint).
    pub endpoint_keys: Vec<(String, String, AttachmentKey)>,
    /// Nodes whose endpoints were withheld and that have a record again. They stay
    /// withheld until their endpoints are applied ([`apply_update`]): a failed
    /// attempt finds them again.
    pub returned: Vec<String>,
    /// A node among `returned`, and this update is not a full listing: a full
    /// listing brings the node's endpoints back.
    pub relist: bool,
}

/// Turns an update into registry changes, leaving out what the registry holds
/// already. A record that does not decode is logged and left out (the registry keeps
/// what it had).
pub fn decode_update(store: &EtcdStore, update: &ClusterUpdate) -> Decoded {
    let shared = store.shared();
    let keys = &shared.keys;
    if update.resync {
        // Changes of node records the watch took since the listing stay.
        shared.nodes_listed(&update.changed, update.revision);
    }
    shared.learned_changed(&update.changed, &update.deleted, update.resync);
    let mut out = Decoded::default();
    // Nodes whose record came back: their endpoints return with a full listing.
    out.returned = shared
        .withheld
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|node| shared.is_live(node))
        .cloned()
        .collect();
    out.relist = !update.resync && !out.returned.is_empty();
    let nodes_changed = update.resync
        || update
            .deleted
            .iter()
            .any(|(key, _)| matches!(keys.parse(key), Ok(KeyKind::Node(_))));
    if nodes_changed {
        forget_dead_nodes(shared, &mut out);
    }
    let mut cache = shared.cache.lock().unwrap_or_else(PoisonError::into_inner);
    let mut deleted = update.deleted.clone();
    if update.resync {
        let listed: BTreeSet<&str> = update.changed.iter().map(|kv| kv.key.as_str()).collect();
        for (key, seen) in &cache.seen {
            if seen.exists && seen.revision <= update.revision && !listed.contains(&**key) {
                deleted.push((key.to_string(), update.revision));
            }
        }
        deleted.sort();
    }
    for kv in &update.changed {
        let kind = match keys.parse(&kv.key) {
            Ok(kind) => kind,
            Err(why) => {
                warn!(key = %kv.key, %why, "a key of the cluster prefix that is not zonewarden's is ignored");
                continue;
            }
        };
        // Zone ids are taken even when this node wrote them: a change the kernel
        // refused may have put the zone's id back out of the registry.
        let zone_id = matches!(kind, KeyKind::Zone(_));
        if !zone_id && cache.holds(&kv.key, kv.mod_revision) {
            continue;
        }
        let change = match kind {
            KeyKind::Zone(zone) => {
                decode::decode_zone(&kv.value).map(|id| Some(RemoteChange::ZoneId { zone, id }))
            }
            KeyKind::Profile(zone) => decode::decode_profile(&zone, &kv.value)
                .map(|p| Some(RemoteChange::Profile(Box::new(p)))),
            KeyKind::Endpoint { node } if node == shared.node => Ok(None),
            KeyKind::Endpoint { node } if !shared.is_live(&node) => {
                // A record of a node that is gone (or not yet announced): left out
                // until the node's record is there, never a zone member meanwhile.
                withhold(shared, &node);
                continue;
            }
            KeyKind::Endpoint { node } => {
                decode::decode_endpoint(keys, &kv.key, &kv.value).map(|mut e| {
                    cache.names.share(&mut e.key);
                    out.endpoint_keys
                        .push((kv.key.clone(), node, e.key.clone()));
                    Some(RemoteChange::Endpoint(Box::new(e)))
                })
            }
            KeyKind::Quarantined(container_id) => Ok(Some(RemoteChange::Quarantine {
                container_id,
                on: true,
            })),
            KeyKind::ZoneId(_)
            | KeyKind::Learned { .. }
            | KeyKind::Reports { .. }
            | KeyKind::Node(_)
            | KeyKind::PodBlock => Ok(None),
        };
        match change {
            Ok(change) => {
                if let Some(change) = change {
                    out.changes.push(change);
                    out.origins
                        .push((!zone_id).then(|| (kv.key.clone(), kv.mod_revision)));
                }
                out.observed.push(kv.clone());
            }
            Err(why) => {
                error!(key = %kv.key, %why, "a record of the cluster store does not decode; this node keeps what it had")
            }
        }
    }
    for (key, revision) in deleted {
        if cache.holds(&key, revision) {
            continue;
        }
        let change = match keys.parse(&key) {
            Ok(KeyKind::Profile(zone)) => Some(RemoteChange::ProfileGone(zone)),
            Ok(KeyKind::Endpoint { node }) if node != shared.node => {
                cache_endpoint_key(store, &key).map(RemoteChange::EndpointGone)
            }
            Ok(KeyKind::Quarantined(container_id)) => Some(RemoteChange::Quarantine {
                container_id,
                on: false,
            }),
            _ => None,
        };
        if let Some(change) = change {
            out.changes.push(change);
            out.origins.push(Some((key.clone(), revision)));
        }
        out.deleted.push((key, revision));
    }
    out
}

/// Notes that `node`'s endpoints are kept out of the registry until its record is back.
fn withhold(shared: &super::Shared, node: &str) {
    let mut withheld = shared
        .withheld
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if withheld.insert(node.to_owned()) {
        warn!(%node, "the endpoints of a node without a live record (its lease expired) leave their zones until it is back");
    }
}

/// The endpoints the registry holds of nodes that have no live record any more: they
/// leave their zones (an address the node held may be reused by a pod of another
/// node, which must not inherit the old pod's zone) and are forgotten, so that the
/// node's return brings them back.
fn forget_dead_nodes(shared: &super::Shared, out: &mut Decoded) {
    let dead = shared
        .endpoint_keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .of_nodes(|node| !shared.is_live(node));
    for (key, node, attachment) in dead {
        withhold(shared, &node);
        out.changes.push(RemoteChange::EndpointGone(attachment));
        out.origins.push(None);
        out.forgotten.push(key);
    }
}

/// The attachment key of an endpoint record that was deleted: the key holds only its
/// hash, so it is looked up among the endpoints the store saw.
fn cache_endpoint_key(store: &EtcdStore, key: &str) -> Option<AttachmentKey> {
    store
        .shared()
        .endpoint_keys
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(key)
        .cloned()
}

/// At most this many keys in one batch of queued updates (see [`take_queued`]): the
/// batch stays well inside one netlink datagram.
const MERGED_KEYS: usize = 2_000;

/// Merges the updates queued behind `update` into it, up to [`MERGED_KEYS`] keys;
/// returns a resync it met (which is applied on its own, after). One batch costs the
/// kernel about what one update does (it looks up each set of a batch's messages
/// among all the table's sets: thousands for a thousand zones), so a watch that
/// falls behind catches up in larger batches instead of falling further behind.
fn take_queued(
    updates: &mut mpsc::Receiver<ClusterUpdate>,
    update: &mut ClusterUpdate,
) -> Option<ClusterUpdate> {
    let mut held = None;
    while update.changed.len() + update.deleted.len() < MERGED_KEYS {
        match updates.try_recv() {
            Ok(next) if next.resync => {
                held = Some(next);
                break;
            }
            Ok(next) => {
                update.changed.extend(next.changed);
                update.deleted.extend(next.deleted);
                update.revision = update.revision.max(next.revision);
            }
            Err(_) => break,
        }
    }
    // Also when nothing was merged: one answer of etcd may hold several events of a
    // key (a watch catching up gets up to a thousand revisions at once).
    keep_latest(update);
    held
}

/// Keeps each key's latest event only: a put then a delete of a key is its delete,
/// a delete then a put its put. The registry applies an update's puts before its
/// deletions, so a key deleted and written again (a quarantine lifted and set again,
/// a profile deleted and made again) would otherwise end deleted.
fn keep_latest(update: &mut ClusterUpdate) {
    let mut latest: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let events = update
        .changed
        .iter()
        .map(|kv| (&kv.key, kv.mod_revision))
        .chain(update.deleted.iter().map(|(key, rev)| (key, *rev)));
    for (key, revision) in events {
        let at = latest.entry(key.clone()).or_insert(revision);
        *at = (*at).max(revision);
    }
    update
        .changed
        .retain(|kv| latest.get(&kv.key) == Some(&kv.mod_revision));
    update
        .deleted
        .retain(|(key, revision)| latest.get(key) == Some(revision));
}

/// Applies every update to the registry, in order, until the watch ends. A batch the
/// kernel refuses is retried from a full listing.
pub async fn follow_forever(
    store: EtcdStore,
    registry: EndpointRegistry,
    mut updates: mpsc::Receiver<ClusterUpdate>,
) {
    let mut held: Option<ClusterUpdate> = None;
    loop {
        let update = match held.take() {
            Some(update) => update,
            None => match updates.recv().await {
                Some(update) => update,
                None => return,
            },
        };
        if update.is_progress() {
            store
                .shared()
                .applied_revision
                .fetch_max(update.revision, Ordering::AcqRel);
            continue;
        }
        let mut update = update;
        if !update.resync {
            held = take_queued(&mut updates, &mut update);
        }
        loop {
            match apply_update(&store, &registry, &update).await {
                Ok(count) => {
                    if update.resync {
                        info!(
                            count,
                            revision = update.revision,
                            "resynced with the cluster store"
                        );
                    }
                    break;
                }
                Err(err) => {
                    error!(%err, "cannot apply changes of other nodes; retrying from a full listing");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let listed = {
                        let store = store.clone();
                        tokio::task::spawn_blocking(move || store.list_all()).await
                    };
                    if let Ok(Ok((changed, revision))) = listed {
                        update = ClusterUpdate {
                            changed,
                            deleted: Vec::new(),
                            revision: revision.max(update.revision),
                            resync: true,
                        };
                    }
                }
            }
        }
    }
}

/// Applies one update; returns how many changes took effect.
pub async fn apply_update(
    store: &EtcdStore,
    registry: &EndpointRegistry,
    update: &ClusterUpdate,
) -> Result<usize, crate::registry::RegistryError> {
    let (mut count, relist, mut returned) = apply_decoded(store, registry, update).await?;
    if relist {
        let listed = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.list_all()).await
        };
        let (changed, revision) = listed
            .map_err(|e| crate::registry::RegistryError::Task(e.to_string()))?
            .map_err(crate::registry::RegistryError::Store)?;
        let relisted = ClusterUpdate {
            changed,
            deleted: Vec::new(),
            revision: revision.max(update.revision),
            resync: true,
        };
        let (relisted_count, _, also_returned) = apply_decoded(store, registry, &relisted).await?;
        count += relisted_count;
        returned.extend(also_returned);
    }
    if !returned.is_empty() {
        let shared = store.shared();
        let mut withheld = shared
            .withheld
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for node in returned {
            // A node that left again meanwhile (the listing found its records of a
            // dead node, and withheld them) stays withheld, so that its next return
            // brings them back.
            if shared.is_live(&node) && withheld.remove(&node) {
                info!(%node, "a node's record is back; its endpoints rejoined their zones");
            }
        }
    }
    Ok(count)
}

/// Applies one update as it is; returns how many changes took effect, whether a
/// full listing must follow (a node with withheld endpoints is back) and those nodes.
async fn apply_decoded(
    store: &EtcdStore,
    registry: &EndpointRegistry,
    update: &ClusterUpdate,
) -> Result<(usize, bool, Vec<String>), crate::registry::RegistryError> {
    apply_taken(
        store,
        registry,
        decode_update(store, update),
        update.revision,
    )
    .await
}

/// [`apply_decoded`] for an update decoded already, through `revision`.
pub(crate) async fn apply_taken(
    store: &EtcdStore,
    registry: &EndpointRegistry,
    decoded: Decoded,
    revision: i64,
) -> Result<(usize, bool, Vec<String>), crate::registry::RegistryError> {
    let Decoded {
        changes,
        origins,
        observed,
        deleted,
        forgotten,
        endpoint_keys,
        returned,
        relist,
    } = decoded;
    let shared = store.shared().clone();
    let count = registry
        .apply_remote(
            changes,
            {
                let shared = shared.clone();
                move |changes| shared.still_due(changes, origins)
            },
            move || {
                shared.observed(&observed, &deleted);
                shared.note_endpoint_keys(endpoint_keys);
                shared.forget(&forgotten);
            },
        )
        .await?;
    store
        .shared()
        .applied_revision
        .fetch_max(revision, Ordering::AcqRel);
    Ok((count, relist, returned))
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn put(key: &str, revision: i64) -> Kv {
        Kv {
            key: key.to_owned(),
            value: format!("v{revision}").into_bytes(),
            mod_revision: revision,
        }
    }

    fn update(changed: Vec<Kv>, deleted: Vec<(&str, i64)>, revision: i64) -> ClusterUpdate {
        ClusterUpdate {
            changed,
            deleted: deleted
                .into_iter()
                .map(|(k, r)| (k.to_owned(), r))
                .collect(),
            revision,
            resync: false,
        }
    }

    #[test]
    fn queued_updates_merge_into_each_keys_latest_event() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut first = update(vec![put("/a", 10), put("/b", 10)], vec![("/c", 10)], 10);
        // /a deleted later, /c back later, /b written again, a progress to 14.
        tx.try_send(update(vec![], vec![("/a", 11)], 11)).unwrap();
        tx.try_send(update(vec![put("/c", 12), put("/b", 12)], vec![], 12))
            .unwrap();
        tx.try_send(update(vec![], vec![], 14)).unwrap();
        assert!(take_queued(&mut rx, &mut first).is_none());
        assert_eq!(first.revision, 14);
        let changed: Vec<(&str, i64)> = first
            .changed
            .iter()
            .map(|kv| (kv.key.as_str(), kv.mod_revision))
            .collect();
        assert_eq!(changed, [("/c", 12), ("/b", 12)]);
        assert_eq!(first.deleted, [("/a".to_owned(), 11)]);
        assert!(rx.try_recv().is_err(), "every queued update was taken");
    }

    /// One answer of etcd can hold a key's deletion and its new value: the new value
    /// is what counts, with nothing queued behind it too.
    #[test]
    fn one_update_keeps_each_keys_latest_event() {
        let (_tx, mut rx) = mpsc::channel(1);
        let mut only = update(vec![put("/q", 12)], vec![("/q", 11), ("/gone", 12)], 12);
        assert!(take_queued(&mut rx, &mut only).is_none());
        assert_eq!(only.changed.len(), 1, "the put after the deletion stays");
        assert_eq!(only.deleted, [("/gone".to_owned(), 12)]);
    }

    #[test]
    fn a_resync_is_not_merged_and_ends_the_batch() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut first = update(vec![put("/a", 10)], vec![], 10);
        tx.try_send(update(vec![put("/b", 11)], vec![], 11))
            .unwrap();
        let resync = ClusterUpdate {
            resync: true,
            ..update(vec![put("/a", 10)], vec![], 20)
        };
        tx.try_send(resync.clone()).unwrap();
        tx.try_send(update(vec![put("/z", 21)], vec![], 21))
            .unwrap();
        assert_eq!(take_queued(&mut rx, &mut first), Some(resync));
        assert_eq!(first.revision, 11);
        assert_eq!(first.changed.len(), 2);
        assert_eq!(
            rx.try_recv().unwrap().revision,
            21,
            "left for after the resync"
        );
    }

    #[test]
    fn a_batch_stops_growing_at_its_key_limit() {
        let (tx, mut rx) = mpsc::channel(4);
        let many = |base: i64| {
            (0..MERGED_KEYS as i64)
                .map(|i| put(&format!("/k{}", base + i), base + i))
                .collect()
        };
        let mut first = update(many(0), vec![], MERGED_KEYS as i64);
        tx.try_send(update(many(100_000), vec![], 200_000)).unwrap();
        assert!(take_queued(&mut rx, &mut first).is_none());
        assert_eq!(first.changed.len(), MERGED_KEYS, "nothing merged");
        assert!(rx.try_recv().is_ok(), "the next update waits its turn");
    }
}
