//! The cluster store: the enforcer's state in a real etcd v3 cluster, shared by every
//! node (`--store etcd`).
//!
//! # Key layout
//! Under the prefix (`--etcd-prefix`, default `/zonewarden`), every value JSON:
//!
//! | key | value | written by |
//! |---|---|---|
//! | `zones/<zone>` | `{"id":N}` | the node that first saw the zone; created once, never changed |
//! | `zone-ids/<N>` | `{"zone":"<zone>"}` | the same transaction: no two zones ever share an id |
//! | `profiles/<zone>` | the profile (mode, quarantine, approved edges, version, history) | any node, on an operator's change |
//! | `endpoints/<node>/<hash>` | `{"version":1,"endpoint":{..}}` (hash: of network, container id, ifname) | the endpoint's node |
//! | `quarantined/<container id>` | `{}` | any node, on an operator's change |
//! | `learned/<node>` | the node's learned edges with its own evidence | that node, every few seconds |
//! | `reports/<node>` | the node's recent drops and violations | that node |
//! | `nodes/<node>` | [`NodeRecord`] on the node's lease | that node, kept alive while it runs |
//! | `pod-blocks/<network>_<prefix length>` | `{"node":"<name>"}` | the node that claimed the block of the pool (see [`blocks`]) |
//!
//! Beside the prefix, `<prefix>.audit/` holds the cluster-wide audit trail of policy
//! changes ([`trail`]): `entries/<seq>` (one `audit.log` line each) and `head`.
//!
//! # Changes
//! The saves of one registry change are staged in memory and written by
//! [`Store::commit`] as ONE etcd transaction: an ADD, an approval or an import is
//! all-or-nothing. The transaction compares the revision of every key it writes with
//! the revision this enforcer last saw (the zone keys: that they do not exist yet),
//! so a change made on another node in between refuses this one
//! ([`StoreError::Conflict`]: "changed on another node, retry") instead of being
//! overwritten, and no approval is ever lost. Learned edges and reports are per node
//! and written at once.
//!
//! # Layout
//! - [`keys`]: the key layout and its parse.
//! - [`bridge`]: the client's own runtime; blocking calls wait on it.
//! - [`staged`]: the writes of one change and the revisions they are checked against.
//! - [`decode`]: a listing of the prefix into the stored state.
//! - [`watch`]: the watch of every other node's changes, resumed and resynced.
//! - [`blocks`]: a node's pod block claimed from the cluster pool.
//! - [`node`]: [`NodeRecord`], published on a lease, and the live nodes.
//! - [`trail`]: the cluster-wide audit trail, chained in each change's transaction.
//! - [`unpublished`]: this node's endpoints added or deleted while etcd was away,
//!   enforced at once and queued in a local file until etcd holds them.

pub mod blocks;
pub mod bridge;
pub mod decode;
pub mod endpoint_keys;
pub mod keys;
pub mod node;
pub mod staged;
pub mod trail;
pub mod unpublished;
pub mod watch;

#[cfg(test)]
pub mod test_etcd;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, TlsOptions};
use zonewarden_profiles::event::Reports;
use zonewarden_profiles::learned::LearnedEdges;
use zonewarden_profiles::{AttachmentKey, Endpoint, Profile, ZoneName};

use super::{AuditHead, Store, StoreError, StoreHealth, StoreKind, StoredState, ZoneIds};
use bridge::Bridge;
pub use keys::Keys;
pub use node::{NodeMembership, NodeRecord};
use staged::{Cache, Guard, Staged};

/// The other nodes' learned edges by node, shared with the learning of this node.
pub type RemoteLearned = Arc<Mutex<std::collections::BTreeMap<String, LearnedEdges>>>;

/// How long one request may take before the store counts as unavailable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the readiness probe waits for etcd.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a listing of many pages may take in all (see `Shared::list_prefix`).
const LISTING_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a request is made when a member refuses the connection (one killed
/// member of three, then another try on the next).
const CONNECT_ATTEMPTS: usize = 3;

/// Whether a request failed before it reached any member: the connection itself was
/// refused or could not be made, so making it again cannot apply it twice.
fn never_sent(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() == tonic::Code::Unavailable && status.message().contains("connect error")
        }
        _ => false,
    }
}

/// Keys per answer of a listing. A listing is read in pages at one revision, as one
/// answer would be too large for a large cluster. Etcd walks its index over the rest
/// of the range for every page, so small pages make a large listing quadratic: pages
/// of 500 cost etcd 8.5 s of CPU for 100,000 endpoints, the most of the enforcer's
/// start. A page that is still too large for [`PAGE_BYTES`] (big profiles) is asked
/// for again with half as many keys.
const PAGE_KEYS: i64 = 5_000;
/// The largest page taken: 5,000 endpoint records are about 2 MB.
const PAGE_BYTES: usize = 64 << 20;

/// Every key under a prefix, sorted by key, at one revision.
#[derive(Debug, Default)]
pub struct Listing {
    pub kvs: Vec<etcd_client::KeyValue>,
    /// The store's revision the listing was read at.
    pub revision: i64,
}

impl Listing {
    pub fn kvs(&self) -> &[etcd_client::KeyValue] {
        &self.kvs
    }
}

/// Lists `prefix` in pages of at most [`PAGE_KEYS`], every page at the revision of
/// the first.
pub async fn list_paged(client: Client, prefix: String) -> Result<Listing, etcd_client::Error> {
    list_in_pages(client, prefix, PAGE_KEYS, PAGE_BYTES).await
}

/// [`list_paged`] in pages of at most `keys` keys and `bytes` bytes.
pub async fn list_in_pages(
    client: Client,
    prefix: String,
    keys: i64,
    bytes: usize,
) -> Result<Listing, etcd_client::Error> {
    let mut client = client.kv_client().max_decoding_message_size(bytes);
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.into_bytes();
    let mut listing = Listing::default();
    let mut limit = keys;
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(limit);
        if listing.revision > 0 {
            options = options.with_revision(listing.revision);
        }
        let mut page = match client.get(from.clone(), Some(options)).await {
            Ok(page) => page,
            Err(etcd_client::Error::GRpcStatus(status)) if too_large(&status) && limit > 1 => {
                limit /= 2;
                continue;
            }
            Err(err) => return Err(err),
        };
        if listing.revision == 0 {
            listing.revision = page.header().map_or(0, |h| h.revision());
        }
        let more = page.more();
        let kvs = page.take_kvs();
        if let Some(last) = kvs.last() {
            // The next page starts right after the last key of this one.
            from = last.key().to_vec();
            from.push(0);
        }
        listing.kvs.extend(kvs);
        if !more {
            return Ok(listing);
        }
    }
}

/// Whether the client refused an answer for its size.
fn too_large(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
    )
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Where the cluster store is and who this node is in it.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`, one per etcd member.
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// This node's name: its endpoints, learned edges and node record are its own.
    pub node: String,
    pub tls: Option<EtcdTls>,
    /// Where this node's endpoint changes wait while etcd is unreachable (a file under
    /// the state directory); `None`: such changes are refused.
    pub unpublished: Option<PathBuf>,
}

/// TLS towards etcd: the CA that signed the members' certificates and, optionally,
/// this node's client certificate and key.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub cert_key: Option<(PathBuf, PathBuf)>,
}

/// The cluster store (see the module doc). Cheap to clone: clones share the client,
/// the staged change and the revisions seen.
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub keys: Keys,
    pub node: String,
    /// The endpoints, for messages.
    pub endpoints: String,
    pub client: Client,
    pub bridge: Bridge,
    pub cache: Mutex<Cache>,
    staged: Mutex<Staged>,
    /// Whether the last request reached etcd.
    pub up: AtomicBool,
    pub last_error: Mutex<String>,
    /// The newest revision of the store this enforcer has heard of.
    pub head_revision: AtomicI64,
    /// The revision through which the watch's changes are applied.
    pub applied_revision: AtomicI64,
    /// The revision of the last full load.
    pub loaded_revision: AtomicI64,
    /// The live nodes, published to [`EtcdStore::nodes`].
    pub node_table: Mutex<node::NodeTable>,
    /// The attachment key of every endpoint record seen (a deleted key holds only a hash).
    pub endpoint_keys: Mutex<endpoint_keys::EndpointKeys>,
    /// Nodes whose endpoints are kept out of the registry because the node has no
    /// record (its lease expired: the node died, or lost etcd for longer than its
    /// lease). When its record returns, a full listing brings them back.
    pub withheld: Mutex<std::collections::BTreeSet<String>>,
    pub nodes: tokio::sync::watch::Sender<Vec<NodeRecord>>,
    /// The other nodes' learned edges (their own evidence), by node: what the
    /// cluster-wide view of learning adds to this node's ([`EtcdStore::remote_learned`]).
    pub remote_learned: RemoteLearned,
    /// This node's endpoint changes etcd has not seen yet.
    pub unpublished: Option<Mutex<unpublished::Unpublished>>,
}

impl EtcdStore {
    /// Connects to etcd (the connection itself is made lazily: an unreachable etcd is
    /// found by the first request, [`Store::load`]).
    pub fn connect(config: EtcdConfig) -> Result<Self, StoreError> {
        let keys = Keys::new(&config.prefix).map_err(|detail| StoreError::Refused {
            action: "use the prefix",
            detail,
        })?;
        keys::valid_node(&config.node).map_err(|detail| StoreError::Refused {
            action: "name this node",
            detail,
        })?;
        let endpoints = config.endpoints.join(",");
        if config.endpoints.is_empty() {
            return Err(StoreError::Refused {
                action: "connect",
                detail: "no etcd endpoint given; pass --etcd-endpoints http://HOST:2379[,...]"
                    .to_owned(),
            });
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            // A member cut off from the others (a network partition; its process and
            // client port fine) has no leader: its reads are stale and a watch on it
            // delivers nothing more, while its connection stays healthy. Asked to
            // require a leader, it refuses requests and cancels watches instead, so
            // the store says it is unavailable and the watch resumes, through another
            // member when one is given, rather than missing every change in silence.
            .with_require_leader(true);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let bridge = Bridge::start().map_err(|e| StoreError::Refused {
            action: "start the etcd client's runtime",
            detail: e.to_string(),
        })?;
        let unpublished = match &config.unpublished {
            Some(path) => Some(Mutex::new(unpublished::Unpublished::open(path)?)),
            None => None,
        };
        let targets = config.endpoints.clone();
        let connected = bridge
            .wait(REQUEST_TIMEOUT, async move {
                Client::connect(targets, Some(options)).await
            })
            .ok_or_else(|| StoreError::Unavailable {
                endpoints: endpoints.clone(),
                detail: "connecting timed out".to_owned(),
            })?;
        let client = connected.map_err(|e| StoreError::Refused {
            action: "accept the endpoints",
            detail: format!("{e} (endpoints: {endpoints})"),
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                keys,
                node: config.node,
                endpoints,
                client,
                bridge,
                cache: Mutex::default(),
                staged: Mutex::default(),
                up: AtomicBool::new(false),
                last_error: Mutex::new("not contacted yet".to_owned()),
                head_revision: AtomicI64::new(0),
                applied_revision: AtomicI64::new(0),
                loaded_revision: AtomicI64::new(0),
                node_table: Mutex::default(),
                endpoint_keys: Mutex::default(),
                withheld: Mutex::default(),
                nodes: tokio::sync::watch::Sender::new(Vec::new()),
                remote_learned: RemoteLearned::default(),
                unpublished,
            }),
        })
    }

    /// Publishes the endpoints queued while etcd was away, every second while there
    /// are any, until the store is dropped (a successful commit publishes them too).
    pub fn spawn_publisher(&self) {
        let shared = Arc::downgrade(&self.shared);
        self.shared.bridge.handle().spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let Some(shared) = shared.upgrade() else { return };
                let published =
                    tokio::task::spawn_blocking(move || staged::publish_queued(&shared)).await;
                match published {
                    Ok(Ok(0)) | Ok(Err(StoreError::Unavailable { .. })) => {}
                    Ok(Ok(count)) => tracing::info!(count, "endpoints queued while etcd was away are published"),
                    Ok(Err(err)) => tracing::error!(%err, "cannot publish the endpoints queued while etcd was away"),
                    Err(_) => return,
                }
            }
        });
    }

    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    /// The other nodes' learned edges, kept current by the watch: give it to this
    /// node's learning ([`crate::learning::Learning::with_remote`]) so that `get edges`,
    /// `approve --all` and the zone map see what every node learned.
    pub fn remote_learned(&self) -> RemoteLearned {
        self.shared.remote_learned.clone()
    }

    /// The cluster-wide audit trail, read whole (a blocking call).
    pub fn audit_trail(&self) -> Result<trail::Trail, StoreError> {
        trail::read(&self.shared)
    }

    pub fn node(&self) -> &str {
        &self.shared.node
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The revision the last [`Store::load`] read at; the watch starts after it.
    pub fn loaded_revision(&self) -> i64 {
        self.shared.loaded_revision.load(Ordering::Acquire)
    }

    /// Every key of the prefix with its value and revision, and the store's revision.
    pub(crate) fn list_all(&self) -> Result<(Vec<decode::Kv>, i64), StoreError> {
        let response = self
            .shared
            .list_prefix("list the cluster state", self.shared.keys.root())?;
        let revision = response.revision;
        self.shared.saw_revision(revision);
        let kvs = response
            .kvs()
            .iter()
            .map(|kv| decode::Kv {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            })
            .collect();
        Ok((kvs, revision))
    }

    /// Writes one key at once, outside any change (this node's own records).
    fn put_now(&self, key: String, value: Vec<u8>) -> Result<(), StoreError> {
        let response = self.shared.call("write", |mut client| {
            let (key, value) = (key.clone(), value.clone());
            async move { client.put(key, value, None).await }
        })?;
        self.shared
            .saw_revision(response.header().map_or(0, |h| h.revision()));
        Ok(())
    }

    fn stage(&self, key: String, value: Option<Vec<u8>>, guard: Guard) {
        self.shared
            .staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stage(key, value, guard);
    }
}

/// This node's endpoint changes that etcd has not seen yet, on top of what it holds.
fn overlay_unpublished(
    keys: &Keys,
    writes: &[(String, Option<Vec<u8>>)],
    state: &mut StoredState,
) -> Result<(), StoreError> {
    for (key, value) in writes {
        state
            .endpoints
            .retain(|e| keys.endpoint(&e.node, &e.key) != *key);
        if let Some(value) = value {
            let endpoint = decode::decode_endpoint(keys, key, value).map_err(|detail| {
                StoreError::CorruptKey {
                    key: format!("{key} (queued while etcd was away)"),
                    detail,
                }
            })?;
            state.endpoints.push(endpoint);
        }
    }
    state.endpoints.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(())
}

/// A record as the store holds it (JSON).
fn encode(action: &'static str, value: &impl serde::Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Refused {
        action,
        detail: e.to_string(),
    })
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, StoreError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| StoreError::Io {
            action: "read the etcd TLS file",
            path: path.clone(),
            source,
        })
    };
    let mut options = TlsOptions::new();
    if let Some(ca) = &tls.ca {
        options = options.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &tls.cert_key {
        options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}

impl Shared {
    /// Runs one request on the client's runtime; a failure to reach etcd is
    /// [`StoreError::Unavailable`], any other refusal [`StoreError::Refused`].
    /// `work` makes the request from a client; a request that could not even connect
    /// (a killed member refuses the connection) never reached etcd and is made again,
    /// so that the client's next try goes to another member.
    pub fn call<T, F, Fut>(&self, action: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        self.call_within(action, REQUEST_TIMEOUT, work)
    }

    /// [`Self::call`] for work of several requests, which may take up to `limit` in
    /// all (each of its requests still has [`REQUEST_TIMEOUT`]).
    pub fn call_within<T, F, Fut>(
        &self,
        action: &'static str,
        limit: Duration,
        work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let mut attempt = 1;
        let result = loop {
            match self.bridge.wait(limit, work(self.client.clone())) {
                None => {
                    break Err(self.unavailable(format!("{action}: no answer within {limit:?}")));
                }
                Some(Ok(value)) => break Ok(value),
                Some(Err(err)) if never_sent(&err) && attempt < CONNECT_ATTEMPTS => {
                    tracing::debug!(%err, action, attempt, "an etcd member refused the connection; trying again");
                    attempt += 1;
                }
                Some(Err(err)) => break Err(self.classify(action, err)),
            }
        };
        if result.is_ok() {
            self.mark_up();
        }
        result
    }

    /// Every key under `prefix`, sorted by key, at one revision (read in pages).
    /// Each page is one request with [`REQUEST_TIMEOUT`] (a member that stops answering
    /// fails the listing there); the whole listing may take [`LISTING_TIMEOUT`], so a
    /// large cluster's state (100,000 endpoints take about 10 s) is read, not refused.
    pub fn list_prefix(&self, action: &'static str, prefix: &str) -> Result<Listing, StoreError> {
        self.call_within(action, LISTING_TIMEOUT, |client| {
            list_paged(client, prefix.to_owned())
        })
    }

    pub fn classify(&self, action: &'static str, err: etcd_client::Error) -> StoreError {
        use etcd_client::Error;
        let unreachable = match &err {
            Error::TransportError(_) | Error::IoError(_) => true,
            Error::GRpcStatus(status) => matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
            ),
            _ => false,
        };
        if unreachable {
            self.unavailable(format!("{action}: {err}"))
        } else {
            StoreError::Refused {
                action,
                detail: err.to_string(),
            }
        }
    }

    pub fn unavailable(&self, detail: String) -> StoreError {
        self.up.store(false, Ordering::Release);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = detail.clone();
        StoreError::Unavailable {
            endpoints: self.endpoints.clone(),
            detail,
        }
    }

    /// Notes the attachment keys of endpoint records (record key, node, attachment
    /// key) the watch decoded, after [`Self::observed`], whose cache then holds each
    /// record key's text.
    pub fn note_endpoint_keys(&self, records: Vec<(String, String, AttachmentKey)>) {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let mut known = self
            .endpoint_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, node, attachment) in records {
            known.insert(cache.shared_key(&key), node, attachment);
        }
    }

    /// [`Self::note_endpoint_keys`] for the endpoints of a full load, decoded already:
    /// a record decodes only under the key its endpoint hashes to, so the key is
    /// computed instead of decoding every record a second time.
    fn note_loaded_endpoints(&self, endpoints: &[Endpoint]) {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let mut known = self
            .endpoint_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for endpoint in endpoints {
            let key = self.keys.endpoint(&endpoint.node, &endpoint.key);
            known.insert(
                cache.shared_key(&key),
                endpoint.node.clone(),
                endpoint.key.clone(),
            );
        }
    }

    /// Takes a change of a node record, made at `revision`, into the live nodes.
    pub fn node_changed(&self, name: &str, value: Option<&[u8]>, revision: i64) {
        let mut table = self
            .node_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if table.apply(name, value, revision) {
            self.nodes.send_replace(table.records());
        }
    }

    /// Whether `node` has a live record (this node always counts as live: its own
    /// endpoints are its own to keep).
    pub fn is_live(&self, node: &str) -> bool {
        node == self.node
            || self
                .node_table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(node)
    }

    /// A full listing without the endpoints of nodes that have no live record; those
    /// nodes are noted as withheld.
    pub fn without_withheld(&self, kvs: Vec<decode::Kv>) -> Vec<decode::Kv> {
        let mut withheld = self.withheld.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = Vec::with_capacity(kvs.len());
        for kv in kvs {
            if let Ok(keys::KeyKind::Endpoint { node }) = self.keys.parse(&kv.key)
                && !self.is_live(&node)
            {
                if withheld.insert(node.clone()) {
                    tracing::warn!(%node, "the endpoints of a node without a live record (its lease expired) are left out of the zones until it is back");
                }
                continue;
            }
            kept.push(kv);
        }
        kept
    }

    /// Forgets keys the registry no longer holds (endpoints of a node whose record is
    /// gone), so that a later listing brings them back.
    pub fn forget(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let mut known = self
            .endpoint_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in keys {
            cache.seen.remove(key.as_str());
            known.remove(key);
        }
    }

    /// Takes the other nodes' learned edges from a full listing (`full`: the listing
    /// of the whole prefix, which replaces what was known) or from watched changes.
    pub fn learned_changed(&self, changed: &[decode::Kv], deleted: &[(String, i64)], full: bool) {
        let mut remote = self
            .remote_learned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if full {
            remote.clear();
        }
        for kv in changed {
            if let Ok(keys::KeyKind::Learned { node }) = self.keys.parse(&kv.key)
                && node != self.node
            {
                match decode::decode_learned(&kv.value) {
                    Ok(learned) => {
                        remote.insert(node, learned);
                    }
                    Err(why) => {
                        tracing::warn!(key = %kv.key, %why, "another node's learned edges do not decode; they are left out of the cluster-wide view")
                    }
                }
            }
        }
        for (key, _) in deleted {
            if let Ok(keys::KeyKind::Learned { node }) = self.keys.parse(key) {
                remote.remove(&node);
            }
        }
    }

    /// Replaces the live nodes with those of a full listing.
    pub fn nodes_listed(&self, kvs: &[decode::Kv], revision: i64) {
        let mut table = self
            .node_table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        table.reset(&self.keys, kvs, revision);
        self.nodes.send_replace(table.records());
    }

    pub fn mark_up(&self) {
        self.up.store(true, Ordering::Release);
    }

    pub fn saw_revision(&self, revision: i64) {
        self.head_revision.fetch_max(revision, Ordering::AcqRel);
    }

    /// The decoded changes still due (`origins`: see [`watch::Decoded::origins`]): a
    /// change of a record this node has written again since it was decoded (the cache
    /// holds that revision or a newer one) is left out, or the older value would
    /// replace this node's newer one. Called under the registry's lock, which this
    /// node's own commits hold while they record their revisions.
    pub fn still_due(
        &self,
        changes: Vec<crate::registry::remote::RemoteChange>,
        origins: Vec<Option<(String, i64)>>,
    ) -> Vec<crate::registry::remote::RemoteChange> {
        debug_assert_eq!(changes.len(), origins.len(), "one origin per change");
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        changes
            .into_iter()
            .zip(origins)
            .filter(|(_, origin)| {
                origin
                    .as_ref()
                    .is_none_or(|(key, revision)| !cache.holds(key, *revision))
            })
            .map(|(change, _)| change)
            .collect()
    }

    /// Takes what the registry now holds (applied from the watch, or loaded) into the
    /// revisions later transactions compare with.
    pub fn observed(&self, changes: &[decode::Kv], deleted: &[(String, i64)]) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        for kv in changes {
            cache.observe(&self.keys, &kv.key, kv.mod_revision, Some(&kv.value));
        }
        for (key, revision) in deleted {
            cache.observe(&self.keys, key, *revision, None);
        }
    }
}

impl Store for EtcdStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        let (kvs, revision) = self.list_all()?;
        self.shared.nodes_listed(&kvs, revision);
        self.shared.learned_changed(&kvs, &[], true);
        let kvs = self.shared.without_withheld(kvs);
        let mut loaded = decode::decode(&self.shared.keys, &self.shared.node, &kvs)?;
        if let Some(queue) = &self.shared.unpublished {
            let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
            overlay_unpublished(&self.shared.keys, &queue.writes(), &mut loaded)?;
        }
        {
            let mut cache = self
                .shared
                .cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *cache = Cache::default();
            for kv in &kvs {
                cache.observe(&self.shared.keys, &kv.key, kv.mod_revision, Some(&kv.value));
            }
            for endpoint in &mut loaded.endpoints {
                cache.names.share(&mut endpoint.key);
            }
        }
        self.shared.note_loaded_endpoints(&loaded.endpoints);
        self.shared
            .loaded_revision
            .store(revision, Ordering::Release);
        self.shared
            .applied_revision
            .fetch_max(revision, Ordering::AcqRel);
        Ok(loaded)
    }

    fn save_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let key = self.shared.keys.endpoint(&endpoint.node, &endpoint.key);
        let value = decode::encode_endpoint(endpoint);
        self.stage(key, Some(value), Guard::AsSeen);
        Ok(())
    }

    fn delete_endpoint(&self, key: &AttachmentKey) -> Result<(), StoreError> {
        let key = self.shared.keys.endpoint(&self.shared.node, key);
        self.stage(key, None, Guard::AsSeen);
        Ok(())
    }

    fn save_zone_ids(&self, zone_ids: &ZoneIds) -> Result<(), StoreError> {
        // Ids are only ever added: a zone keeps its id cluster-wide for good.
        let known = self
            .shared
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .zone_ids
            .clone();
        for (zone, id) in zone_ids.iter() {
            if known.get(zone) == Some(&id) {
                continue;
            }
            let keys = &self.shared.keys;
            self.stage(
                keys.zone(zone),
                Some(decode::encode_zone(id)),
                Guard::Absent,
            );
            self.stage(
                keys.zone_id(id),
                Some(decode::encode_zone_id(zone)),
                Guard::Absent,
            );
        }
        Ok(())
    }

    fn save_profile(&self, profile: &Profile) -> Result<(), StoreError> {
        let value = encode("encode a profile", profile)?;
        self.stage(
            self.shared.keys.profile(&profile.zone),
            Some(value),
            Guard::AsSeen,
        );
        Ok(())
    }

    fn delete_profile(&self, zone: &ZoneName) -> Result<(), StoreError> {
        // Guarded like every write: the delete holds only if the profile is still the
        // version this node last saw (another node's approval in between refuses it).
        self.stage(self.shared.keys.profile(zone), None, Guard::AsSeen);
        Ok(())
    }

    fn save_quarantined(&self, container_ids: &BTreeSet<String>) -> Result<(), StoreError> {
        let known = self
            .shared
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .quarantined
            .clone();
        for added in container_ids.difference(&known) {
            let key = self.shared.keys.quarantined(added);
            self.stage(key, Some(b"{}".to_vec()), Guard::AsSeen);
        }
        for removed in known.difference(container_ids) {
            let key = self.shared.keys.quarantined(removed);
            self.stage(key, None, Guard::AsSeen);
        }
        Ok(())
    }

    fn save_learned(&self, learned: &LearnedEdges) -> Result<(), StoreError> {
        let value = encode("encode the learned edges", learned)?;
        self.put_now(self.shared.keys.learned(&self.shared.node), value)
    }

    fn save_reports(&self, reports: &Reports) -> Result<(), StoreError> {
        let value = encode("encode the reports", reports)?;
        self.put_now(self.shared.keys.reports(&self.shared.node), value)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let key = self.shared.keys.node(&self.shared.node);
        // A probe (readiness, `zwctl status`): it answers well within the callers'
        // own deadlines (zwctl's is 5 s) even when etcd does not answer at all. Its
        // revision is etcd's, which counts other applications' writes: not "seen".
        self.shared
            .call_within("reach etcd", PROBE_TIMEOUT, |mut client| {
                let key = key.clone();
                async move {
                    client
                        .get(key, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .map(drop)
    }

    fn commit(&self, _audit: Option<AuditHead>) -> Result<(), StoreError> {
        // The node's own log is not anchored in the cluster store; the policy changes'
        // entries go into the cluster-wide trail in the change's transaction.
        staged::commit(&self.shared, &self.shared.staged)
    }

    fn stage_audit(&self, record: &crate::audit::AuditRecord) {
        self.shared
            .staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stage_audit(record.clone());
    }

    fn end_change(&self) {
        let leftover = {
            let mut staged = self
                .shared
                .staged
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if staged.refused {
                staged.clear();
                false
            } else {
                !staged.is_empty()
            }
        };
        if leftover && let Err(err) = self.commit(None) {
            tracing::error!(%err, "cannot write the roll-back of a change the kernel refused to the cluster store; the next resync takes the store's state");
        }
    }

    fn retires_zone_ids(&self) -> bool {
        false
    }

    fn health(&self) -> StoreHealth {
        let up = self.shared.up.load(Ordering::Acquire);
        let head = self.shared.head_revision.load(Ordering::Acquire);
        let applied = self.shared.applied_revision.load(Ordering::Acquire);
        StoreHealth {
            kind: StoreKind::Etcd,
            up,
            detail: if up {
                format!("etcd at {}", self.shared.endpoints)
            } else {
                format!(
                    "etcd at {} unreachable: {}",
                    self.shared.endpoints,
                    self.shared
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                )
            },
            revision: head,
            watch_lag: (head - applied).max(0),
        }
    }
}
