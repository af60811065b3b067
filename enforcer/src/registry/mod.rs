//! The endpoint registry: every attachment on this node, its zone and zone id.
//!
//! One lock serializes mutations (persist → kernel → publish); readers take the
//! latest [`Snapshot`] from an `arc-swap`. A mutation only marks the snapshot stale:
//! the first reader after it builds the new one (so a burst of changes costs one
//! copy of the state, not one per change, and a caller reads its own writes).
//! Mutations run on blocking threads because the store and the data plane block
//! (fsync, `nft` processes).
//!
//! # Layout
//! - [`state`]: the mutation order and its rollback.
//! - [`elements`]: the wanted map elements and the change between two states.
//! - [`snapshot`]: the read side: listings and zone summaries.
//! - [`import`]: several zones' profiles set at once (`zwctl profile import`).
//! - [`known`]: whether the zone a profile change names exists.
//! - [`delete`]: deleting a zone's profile (`zwctl profile delete`).
//! - [`remote`]: changes other nodes made, from the cluster store's watch.

pub mod delete;
pub mod import;
pub mod known;
pub mod remote;
pub mod snapshot;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use zonewarden_profiles::derive::DeriveError;
use zonewarden_profiles::ipam::{IpamError, Pool};
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::profile::ProfileError;
use zonewarden_profiles::{
    AttachMode, AttachmentKey, Endpoint, Profile, ZoneClaims, ZoneHints, ZoneName, derive_zone,
};

use crate::audit::{ChangeNote, Note};
use crate::nft::NftError;
use crate::nft::ruleset::RulesetDataplane;
use crate::store::{Store, StoreError, StoredState};
pub use delete::ProfileDeleted;
pub use known::IfMissing;
pub use snapshot::{Resolver, ResponseSource, ResponseView, Snapshot, ZoneSummary};
use state::RegistryState;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    InvalidZone(#[from] DeriveError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(
        "no endpoint with container id {0:?} is registered on this node; see zwctl get endpoints"
    )]
    UnknownEndpoint(String),
    #[error(
        "zone {:?} does not exist (no endpoints, no profile);{} pass --create to make it",
        .zone.as_str(),
        known::did_you_mean(.nearest.as_ref())
    )]
    UnknownZone {
        zone: ZoneName,
        /// The existing zone nearest to it, when it looks like a typo of one.
        nearest: Option<ZoneName>,
    },
    #[error(
        "zone {:?} does not exist (no endpoints, no profile);{} nothing was deleted",
        .zone.as_str(),
        known::did_you_mean(.nearest.as_ref())
    )]
    NoSuchZone {
        zone: ZoneName,
        nearest: Option<ZoneName>,
    },
    #[error("the profile of zone {zone} is not deleted: {why}")]
    NotDeletable { zone: ZoneName, why: String },
    #[error("cannot persist the enforcer's state: {0}")]
    Store(#[from] StoreError),
    #[error(
        "cannot program table inet zonewarden for {key}, nothing was kept: {source}; retry the ADD or DEL"
    )]
    Dataplane {
        key: AttachmentKey,
        #[source]
        source: Box<NftError>,
    },
    #[error("cannot read or change table inet zonewarden, nothing was changed: {0}")]
    Kernel(#[source] NftError),
    #[error(
        "the change was refused and nothing was changed, because its audit entry cannot be written: {0}"
    )]
    Audit(#[source] crate::audit::AuditError),
    #[error(
        "chained endpoints after a bridge cannot be enforced on this node: {0}; nothing was registered"
    )]
    BridgeNetfilter(String),
    #[error(
        "address {addr} belongs to endpoint {holder} in {netns}, which still exists: the previous plugin's result claims another pod's address; DEL that endpoint first if the address was moved"
    )]
    AddressInUse {
        addr: IpAddr,
        holder: AttachmentKey,
        netns: String,
    },
    #[error("a registry task failed: {0}; this is a bug, please report it")]
    Task(String),
}

/// Why an ADD's addresses cannot be registered (zonewarden IPAM).
#[derive(Debug, thiserror::Error)]
pub enum LeaseProblem {
    #[error(
        "address {addr} is not leased to this attachment by zonewarden IPAM (the enforcer restarted during the ADD, or the lease was released); nothing was registered, retry the ADD"
    )]
    NotHeld { addr: IpAddr },
    #[error(
        "address {addr} is leased by zonewarden IPAM to attachment {holder}; nothing was registered. Do not give another IPAM plugin a range inside this node's --pod-cidr block"
    )]
    LeasedToOther { addr: IpAddr, holder: AttachmentKey },
}

/// An ADD as the registry receives it, already validated.
#[derive(Debug, Clone)]
pub struct AddRequest {
    pub key: AttachmentKey,
    pub hints: ZoneHints,
    pub netns: String,
    pub host_ifname: Option<String>,
    pub ips: Vec<IpNet>,
    pub mac: Option<String>,
    pub attach_mode: AttachMode,
    /// Chained after a bridge: the bridge `host_ifname` is a port of.
    pub bridge: Option<String>,
}

#[derive(Clone)]
pub struct EndpointRegistry {
    node: String,
    state: Arc<Mutex<RegistryState>>,
    /// Mutations so far (bumped under the state lock).
    generation: Arc<AtomicU64>,
    /// The number of endpoints after the last mutation (set under the state lock), so
    /// that a status poll neither builds a snapshot nor waits for a mutation.
    endpoint_count: Arc<AtomicUsize>,
    snapshot: Arc<Published<Snapshot>>,
    resolver: Arc<Published<Resolver>>,
    store: Arc<dyn Store>,
    dataplane: Arc<dyn RulesetDataplane>,
    /// Whether the table is intact and chained endpoints are enforced.
    readiness: Arc<crate::readiness::Readiness>,
    /// The operator's exceptions to "an annotation names a zone of its own namespace".
    claims: Arc<ZoneClaims>,
    /// zonewarden IPAM: the leases of this node's pod blocks. A lease is durable with
    /// its endpoint's record (taken back from the stored endpoints at start); between
    /// AllocateAddresses and AddEndpoint it lives here only, and AddEndpoint registers
    /// an address only while its lease is held (see [`Self::check_lease`]).
    ipam: Arc<Mutex<Pool>>,
}

impl EndpointRegistry {
    /// Takes what the store loaded and the node's own addresses; the kernel is
    /// untouched until [`Self::sync_kernel`].
    pub fn open(
        node: String,
        store: Arc<dyn Store>,
        dataplane: Arc<dyn RulesetDataplane>,
        settings: NodeSettings,
        stored: StoredState,
    ) -> Result<Self, RegistryError> {
        Self::open_with_host(node, store, dataplane, settings, stored, Vec::new())
    }

    /// [`Self::open`] knowing the node's addresses (the `host` zone) from the start.
    pub fn open_with_host(
        node: String,
        store: Arc<dyn Store>,
        dataplane: Arc<dyn RulesetDataplane>,
        settings: NodeSettings,
        stored: StoredState,
        host_addrs: Vec<IpAddr>,
    ) -> Result<Self, RegistryError> {
        let mut state = RegistryState::from_stored(
            node.clone(),
            store.clone(),
            dataplane.clone(),
            stored,
            settings,
        )?;
        state.host_addrs = host_addrs;
        state.recompile();
        let first = Arc::new(state.resolver());
        let snapshot = Arc::new(Published::new(state.snapshot(first.clone())));
        let resolver = Arc::new(Published::from_shared(first));
        let endpoint_count = Arc::new(AtomicUsize::new(state.endpoints.len()));
        Ok(Self {
            node,
            state: Arc::new(Mutex::new(state)),
            generation: Arc::new(AtomicU64::new(0)),
            endpoint_count,
            snapshot,
            resolver,
            store,
            dataplane,
            readiness: Arc::default(),
            claims: Arc::default(),
            ipam: Arc::default(),
        })
    }

    /// Leases addresses of `blocks` (`--pod-cidr`) to zonewarden IPAM's attachments.
    /// The addresses of this node's stored endpoints inside the blocks stay theirs.
    pub fn with_pod_blocks(self, blocks: &[IpNet]) -> Result<Self, IpamError> {
        let mut pool = Pool::new(blocks)?;
        {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            for endpoint in state.endpoints.values().filter(|e| e.node == self.node) {
                pool.adopt(&endpoint.key, endpoint.addrs());
            }
        }
        *self.ipam.lock().unwrap_or_else(PoisonError::into_inner) = pool;
        Ok(self)
    }

    /// zonewarden IPAM: the addresses leased to `key`, one of each pod block (the same
    /// ones again when it holds a lease).
    pub fn allocate_addresses(&self, key: &AttachmentKey) -> Result<Vec<IpNet>, IpamError> {
        self.ipam
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allocate(key)
    }

    /// Releases the lease of `key` (nothing when it holds none); what it held.
    pub fn release_addresses(&self, key: &AttachmentKey) -> Vec<IpNet> {
        self.ipam
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(key)
    }

    /// Releases every lease of `network` whose attachment is not registered and not
    /// in `keep` (CNI GC); what went, by attachment.
    pub fn release_unregistered(
        &self,
        network: &str,
        keep: &std::collections::BTreeSet<AttachmentKey>,
    ) -> Vec<(AttachmentKey, Vec<IpNet>)> {
        let registered: std::collections::BTreeSet<AttachmentKey> = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.endpoints.keys().cloned().collect()
        };
        let mut pool = self.ipam.lock().unwrap_or_else(PoisonError::into_inner);
        let orphans: Vec<AttachmentKey> = pool
            .leases()
            .map(|(key, _)| key)
            .filter(|k| *k.network == *network && !registered.contains(*k) && !keep.contains(*k))
            .cloned()
            .collect();
        orphans
            .into_iter()
            .map(|key| {
                let lease = pool.release(&key);
                (key, lease)
            })
            .collect()
    }

    /// Takes the addresses of a registered endpoint inside the pod blocks as its lease
    /// (an address another IPAM plugin gave it is never leased again).
    pub fn hold_addresses(&self, key: &AttachmentKey, ips: &[IpNet]) {
        self.ipam
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .adopt(key, ips.iter().map(IpNet::addr));
    }

    /// Whether an ADD of `key` with `ips` may be registered: addresses the plugin says
    /// zonewarden IPAM leased (`leased`) must be leased to `key` now, and no address may
    /// be one leased to another attachment.
    pub fn check_lease(
        &self,
        key: &AttachmentKey,
        ips: &[IpNet],
        leased: bool,
    ) -> Result<(), LeaseProblem> {
        let pool = self.ipam.lock().unwrap_or_else(PoisonError::into_inner);
        let own = pool.lease(key).unwrap_or_default();
        for ip in ips {
            if own.iter().any(|l| l.addr() == ip.addr()) {
                continue;
            }
            if let Some((holder, _)) = pool
                .leases()
                .find(|(_, lease)| lease.iter().any(|l| l.addr() == ip.addr()))
            {
                return Err(LeaseProblem::LeasedToOther {
                    addr: ip.addr(),
                    holder: holder.clone(),
                });
            }
            if leased {
                return Err(LeaseProblem::NotHeld { addr: ip.addr() });
            }
        }
        Ok(())
    }

    /// What the guard and the chained-mode check know (see [`crate::readiness`]).
    pub fn readiness(&self) -> &Arc<crate::readiness::Readiness> {
        &self.readiness
    }

    /// Sets the zones pods may claim by annotation outside their own namespace
    /// (`--allow-zone-claim`); none by default.
    pub fn with_zone_claims(mut self, claims: ZoneClaims) -> Self {
        self.claims = Arc::new(claims);
        self
    }

    /// Replaces how open connections of newly quarantined addresses are cut (tests
    /// that run outside a namespace of their own must not touch the machine's conntrack).
    pub fn with_connection_flusher(self, flush: state::ConnectionFlusher) -> Self {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush_connections = flush;
        self
    }

    /// Records every change in `audit` after the store and before the kernel: a change
    /// whose entry cannot be written is refused.
    pub fn with_audit(self, audit: crate::audit::AuditLog) -> Self {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .audit = audit;
        self
    }

    /// Sets the operator-defined CIDR zones (before [`Self::sync_kernel`]).
    pub fn with_cidr_zones(self, zones: BTreeMap<ZoneName, Vec<IpNet>>) -> Self {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            // Nothing to compile again when they are the same (most nodes have none).
            if state.policy.cidr_zones != zones {
                state.policy.cidr_zones = zones;
                state.recompile();
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Creates what is missing in the table and reconciles it with the registry by
    /// difference; returns how many endpoint addresses and zones it changed.
    pub async fn sync_kernel(&self) -> Result<usize, RegistryError> {
        self.mutate(RegistryState::reconcile).await
    }

    /// Seals the table with the compiled ruleset if the kernel has not been changed
    /// since `quiet_since` (what the previous call returned) and the table is not
    /// sealed yet (see [`crate::nft::ruleset::seal`]); returns the count of kernel
    /// changes to pass next time. A busy node is sealed once its table is quiet for
    /// one call's interval; changes that leave the kernel alone (learned edges) do not
    /// delay it.
    pub async fn seal_when_quiet(&self, quiet_since: u64) -> u64 {
        let state = self.state.clone();
        let sealed = blocking(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = state.kernel_changes;
            if now != quiet_since {
                return Ok((now, false));
            }
            match state.seal() {
                Ok(sealed) => Ok((now, sealed)),
                Err(err) => {
                    tracing::debug!(%err, "cannot seal the table; a restart will read it");
                    Ok((now, false))
                }
            }
        })
        .await;
        match sealed {
            Ok((now, sealed)) => {
                if sealed {
                    tracing::debug!("sealed the table with the compiled ruleset");
                }
                now
            }
            Err(_) => quiet_since,
        }
    }

    /// Whether every routed local endpoint's host interface still carries its zone id
    /// as its group. The interfaces are listed after the registry's lock is let go:
    /// the lock is held only to copy the names.
    pub async fn interface_groups_hold(&self) -> bool {
        let state = self.state.clone();
        blocking(move || {
            let (routed, dataplane) = {
                let state = state.lock().unwrap_or_else(PoisonError::into_inner);
                (
                    crate::nft::ruleset::dataplane::routed_groups(state.compiled.ruleset()),
                    state.dataplane.clone(),
                )
            };
            Ok(dataplane.groups_hold(&routed))
        })
        .await
        .unwrap_or(true)
    }

    /// Restores the table after someone else changed it (see [`RegistryState::restore`]);
    /// returns how many endpoint addresses and zones it re-added.
    pub async fn restore_table(
        &self,
        stale: std::collections::BTreeSet<String>,
    ) -> Result<usize, RegistryError> {
        self.mutate(move |state| state.restore(&stale)).await
    }

    /// Derives the zone, then registers (or replaces) the endpoint; returns once its
    /// rules are in the kernel. `note` says who asked, for the audit log.
    ///
    /// Two nodes that create one zone at the same moment both try to give it an id;
    /// the cluster store takes one, and the other node's attempt finds it changed. The
    /// winner's id reaches this node through its watch within milliseconds: the ADD is
    /// made again on top of it (after each of [`CONFLICT_WAITS`]), so neither a runtime
    /// nor a sidecar sees "try again later" for that race.
    pub async fn add(&self, request: AddRequest, note: Note) -> Result<Endpoint, RegistryError> {
        let mut waits = CONFLICT_WAITS.iter();
        loop {
            let err = match self.add_once(request.clone(), note.clone()).await {
                Ok(endpoint) => return Ok(endpoint),
                Err(err) => err,
            };
            match (&err, waits.next()) {
                (RegistryError::Store(StoreError::Conflict { what }), Some(wait)) => {
                    tracing::info!(key = %request.key, %what, ?wait, "ADD met another node's change; made again once the watch brought it");
                    tokio::time::sleep(*wait).await;
                }
                _ => return Err(err),
            }
        }
    }

    async fn add_once(&self, request: AddRequest, note: Note) -> Result<Endpoint, RegistryError> {
        let (zone, zone_source) = derive_zone(&request.hints, &self.claims)?;
        if request.bridge.is_some() {
            // Bridged traffic must reach netfilter, or the port is not enforced.
            let checked =
                blocking(|| crate::bridge_nf::ensure().map_err(RegistryError::BridgeNetfilter))
                    .await;
            self.readiness
                .set_bridge(checked.as_ref().err().map(ToString::to_string));
            checked?;
        }
        let endpoint = Endpoint {
            key: request.key,
            zone,
            zone_source,
            netns: request.netns,
            host_ifname: request.host_ifname,
            ips: request.ips,
            mac: request.mac,
            node: self.node.clone(),
            pod_namespace: request.hints.pod_namespace.filter(|s| !s.is_empty()),
            pod_name: request.hints.pod_name.filter(|s| !s.is_empty()),
            attach_mode: request.attach_mode,
            created_unix_ms: now_unix_ms(),
            bridge: request.bridge,
        };
        let added = endpoint.clone();
        self.mutate(move |state| state.add(endpoint, Some(&note)))
            .await?;
        Ok(added)
    }

    /// Removes an endpoint; `None` (and success) when it is unknown.
    pub async fn del(
        &self,
        key: AttachmentKey,
        note: Note,
    ) -> Result<Option<Endpoint>, RegistryError> {
        let released = key.clone();
        let removed = self
            .mutate(move |state| state.del(&key, Some(&note)))
            .await?;
        let lease = self.release_addresses(&released);
        if !lease.is_empty() {
            tracing::info!(key = %released, ?lease, "zonewarden IPAM: lease released");
        }
        Ok(removed)
    }

    /// Changes one zone's profile (durably, its audit entry, then in the kernel); see
    /// [`RegistryState::change_profile`]. A zone that does not exist is refused before
    /// anything happens unless `if_missing` says to create it; the check and the change
    /// are one mutation, so no zone appears or goes in between.
    pub async fn change_profile(
        &self,
        zone: ZoneName,
        if_missing: IfMissing,
        change: impl FnOnce(&mut Profile) -> Result<usize, ProfileError> + Send + 'static,
        noted: ChangeNote,
    ) -> Result<(Profile, usize), RegistryError> {
        self.mutate(move |state| {
            if if_missing == IfMissing::Refuse {
                known::require(state, &zone)?;
            }
            state.change_profile(&zone, change, Some(&noted))
        })
        .await
    }

    /// Quarantines or releases one endpoint by container id.
    pub async fn quarantine_endpoint(
        &self,
        container_id: String,
        on: bool,
        note: Note,
    ) -> Result<bool, RegistryError> {
        self.mutate(move |state| state.quarantine_endpoint(&container_id, on, Some(&note)))
            .await
    }

    /// The node's own addresses (the `host` zone) changed.
    pub async fn set_host_addrs(&self, addrs: Vec<IpAddr>) -> Result<(), RegistryError> {
        self.mutate(move |state| state.set_host_addrs(addrs)).await
    }

    /// The state as of the last completed mutation.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // Built with the resolver of the same generation, which the NFLOG path may
        // have built already: a node of a large cluster builds it once per change.
        self.snapshot.get(&self.generation, &self.state, |state| {
            let resolver =
                self.resolver
                    .get_locked(&self.generation, state, RegistryState::resolver);
            state.snapshot(resolver)
        })
    }

    /// Addresses and zone ids to zones, as of the last completed mutation: what the
    /// NFLOG path needs, without building a whole snapshot.
    pub fn resolver(&self) -> Arc<Resolver> {
        self.resolver
            .get(&self.generation, &self.state, RegistryState::resolver)
    }

    /// How many endpoints (of this node and, in cluster mode, of the others) the
    /// registry holds, as of the last completed mutation: without a lock or a snapshot.
    pub fn endpoint_count(&self) -> usize {
        self.endpoint_count.load(Ordering::Acquire)
    }

    pub fn get(&self, key: &AttachmentKey) -> Option<Endpoint> {
        self.snapshot().endpoints.get(key).cloned()
    }

    /// One endpoint as of the last completed mutation, without building a snapshot
    /// (a repeated ADD asks this before it touches anything).
    pub fn lookup(&self, key: &AttachmentKey) -> Option<Endpoint> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.endpoints.get(key).cloned()
    }

    /// The version of `zone`'s profile (0: none), without building a snapshot.
    pub fn profile_version(&self, zone: &ZoneName) -> u64 {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.policy.version(zone)
    }

    /// The number of endpoints of `zone`, without building a snapshot.
    pub fn member_count(&self, zone: &ZoneName) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.endpoints.values().filter(|e| &e.zone == zone).count()
    }

    /// The endpoint and every difference between the kernel and what its addresses
    /// should have there; `None` when it is unknown.
    pub async fn check(
        &self,
        key: AttachmentKey,
    ) -> Result<Option<(Endpoint, Vec<String>)>, RegistryError> {
        let Some(endpoint) = self.get(&key) else {
            return Ok(None);
        };
        let state = self.state.clone();
        let dataplane = self.dataplane.clone();
        let checked = endpoint.clone();
        let problems = blocking(move || {
            let wanted = state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .applied()
                .clone();
            let kernel = dataplane.read().map_err(RegistryError::Kernel)?.ruleset;
            Ok(check::problems(&checked, &wanted, &kernel))
        })
        .await?;
        Ok(Some((endpoint, problems)))
    }

    /// Whether ADDs can be served and what the kernel holds is what the enforcer
    /// programmed: the store takes writes, nft answers, the table is intact (the guard
    /// says when someone else changed it) and chained endpoints are enforced.
    pub async fn health(&self) -> Result<(), String> {
        if let Some(why) = self.readiness.not_ready() {
            return Err(why);
        }
        let (store, dataplane) = (self.store.clone(), self.dataplane.clone());
        blocking(move || {
            store.check_writable().map_err(RegistryError::Store)?;
            dataplane.probe().map_err(RegistryError::Kernel)
        })
        .await
        .map(drop)
        .map_err(|err| err.to_string())
    }

    /// The store's health (a request to etcd in cluster mode: made off the workers).
    pub async fn store_health(&self) -> crate::store::StoreHealth {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.health()).await {
            Ok(health) => health,
            Err(err) => crate::store::StoreHealth {
                kind: crate::store::StoreKind::Local,
                up: false,
                detail: format!("the store's health could not be read: {err}"),
                revision: 0,
                watch_lag: 0,
            },
        }
    }

    async fn mutate<T: Send + 'static>(
        &self,
        mutation: impl FnOnce(&mut RegistryState) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let state = self.state.clone();
        let generation = self.generation.clone();
        let endpoint_count = self.endpoint_count.clone();
        blocking(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let result = mutation(&mut state);
            // A store that stages writes drops what a refused change staged, and
            // writes what a change saved after its commit (see Store::end_change).
            state.store.end_change();
            endpoint_count.store(state.endpoints.len(), Ordering::Release);
            generation.fetch_add(1, Ordering::AcqRel);
            result
        })
        .await
    }
}

mod check;

/// How long an ADD that met another node's change waits before each new attempt
/// (about a second in all, well inside the plugin's call deadline).
const CONFLICT_WAITS: [std::time::Duration; 4] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(250),
    std::time::Duration::from_millis(500),
];

/// A value built from the state on demand, at most once per generation of the state.
struct Published<T> {
    value: ArcSwap<T>,
    /// The generation `value` reflects.
    generation: AtomicU64,
}

impl<T> Published<T> {
    fn new(value: T) -> Self {
        Self::from_shared(Arc::new(value))
    }

    fn from_shared(value: Arc<T>) -> Self {
        Self {
            value: ArcSwap::new(value),
            generation: AtomicU64::new(0),
        }
    }

    fn get(
        &self,
        generation: &AtomicU64,
        state: &Mutex<RegistryState>,
        build: impl FnOnce(&RegistryState) -> T,
    ) -> Arc<T> {
        if self.generation.load(Ordering::Acquire) == generation.load(Ordering::Acquire) {
            return self.value.load_full();
        }
        let state = state.lock().unwrap_or_else(PoisonError::into_inner);
        self.get_locked(generation, &state, build)
    }

    /// [`Self::get`] for a caller that holds the state's lock (every value is built
    /// and stored under it).
    fn get_locked(
        &self,
        generation: &AtomicU64,
        state: &RegistryState,
        build: impl FnOnce(&RegistryState) -> T,
    ) -> Arc<T> {
        // Stable while the lock is held: mutations bump it under the lock.
        let current = generation.load(Ordering::Acquire);
        if self.generation.load(Ordering::Acquire) != current {
            self.value.store(Arc::new(build(state)));
            self.generation.store(current, Ordering::Release);
        }
        self.value.load_full()
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| RegistryError::Task(err.to_string()))?
}

/// Seals the table whenever its kernel changes paused for `every` (see
/// [`EndpointRegistry::seal_when_quiet`]): a restart over an intact table is then
/// ready without reading it.
pub async fn seal_forever(registry: EndpointRegistry, every: std::time::Duration) {
    let mut quiet_since = u64::MAX;
    loop {
        tokio::time::sleep(every).await;
        quiet_since = registry.seal_when_quiet(quiet_since).await;
    }
}

pub fn now_unix_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
