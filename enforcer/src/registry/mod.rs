//! The endpoint registry: every attachment on this node, its zone and zone id.
//!
//! One lock serializes mutations (persist → kernel → publish); readers take the
//! latest [`Snapshot`] from an `arc-swap` and never wait. Mutations run on blocking
//! threads because the store and the data plane block (fsync, `nft` processes).
//!
//! # Layout
//! - [`state`]: the mutation order and its rollback.
//! - [`elements`]: the wanted map elements and the change between two states.
//! - [`snapshot`]: the read side: listings and zone summaries.

pub mod elements;
pub mod snapshot;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use zonewarden_profiles::derive::DeriveError;
use zonewarden_profiles::{AttachMode, AttachmentKey, Endpoint, ZoneHints, derive_zone};

use crate::nft::{Dataplane, ElementChange, NftError};
use crate::store::{Store, StoreError};
pub use snapshot::{Snapshot, ZoneSummary};
use state::RegistryState;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    InvalidZone(#[from] DeriveError),
    #[error("cannot persist the endpoint state: {0}")]
    Store(#[from] StoreError),
    #[error(
        "cannot program the zone maps for {key}, nothing was kept: {source}; retry the ADD or DEL"
    )]
    Dataplane {
        key: AttachmentKey,
        #[source]
        source: Box<NftError>,
    },
    #[error("cannot read or change the zone maps: {0}")]
    Kernel(#[source] NftError),
    #[error("a registry task failed: {0}; this is a bug, please report it")]
    Task(String),
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
}

#[derive(Clone)]
pub struct EndpointRegistry {
    node: String,
    state: Arc<Mutex<RegistryState>>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    store: Arc<dyn Store>,
    dataplane: Arc<dyn Dataplane>,
}

impl EndpointRegistry {
    /// Loads the store; the kernel is untouched until [`Self::sync_kernel`].
    pub fn open(
        node: String,
        store: Arc<dyn Store>,
        dataplane: Arc<dyn Dataplane>,
    ) -> Result<Self, RegistryError> {
        let stored = store.load()?;
        let state = RegistryState::from_stored(store.clone(), dataplane.clone(), stored)?;
        let snapshot = Arc::new(ArcSwap::from_pointee(state.snapshot()));
        Ok(Self {
            node,
            state: Arc::new(Mutex::new(state)),
            snapshot,
            store,
            dataplane,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Adds the missing parts of the table, then reconciles the zone maps.
    pub async fn sync_kernel(&self) -> Result<ElementChange, RegistryError> {
        self.mutate(|state| {
            state
                .dataplane
                .ensure_structure()
                .map_err(RegistryError::Kernel)?;
            state.reconcile()
        })
        .await
    }

    /// Derives the zone, then registers (or replaces) the endpoint; returns once its
    /// elements are in the kernel.
    pub async fn add(&self, request: AddRequest) -> Result<Endpoint, RegistryError> {
        let (zone, zone_source) = derive_zone(&request.hints)?;
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
        };
        let added = endpoint.clone();
        self.mutate(move |state| state.add(endpoint)).await?;
        Ok(added)
    }

    /// Removes an endpoint; `None` (and success) when it is unknown.
    pub async fn del(&self, key: AttachmentKey) -> Result<Option<Endpoint>, RegistryError> {
        self.mutate(move |state| state.del(&key)).await
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn get(&self, key: &AttachmentKey) -> Option<Endpoint> {
        self.snapshot.load().endpoints.get(key).cloned()
    }

    /// The endpoint and every problem with its kernel state; `None` when unknown.
    pub async fn check(
        &self,
        key: AttachmentKey,
    ) -> Result<Option<(Endpoint, Vec<String>)>, RegistryError> {
        let snapshot = self.snapshot();
        let Some(endpoint) = snapshot.endpoints.get(&key).cloned() else {
            return Ok(None);
        };
        let dataplane = self.dataplane.clone();
        let kernel =
            blocking(move || dataplane.list_elements().map_err(RegistryError::Kernel)).await?;
        let addrs: BTreeSet<_> = endpoint.addrs().collect();
        let wanted = elements::wanted_elements(
            snapshot.endpoints.values(),
            &snapshot.zone_ids,
            Some(&addrs),
        );
        let problems = endpoint
            .addrs()
            .filter_map(|addr| {
                let map = crate::nft::zone_map_for(addr);
                let Some(want) = wanted.get(&addr) else {
                    return Some(format!(
                        "zone {} has no id, so {addr} has no element",
                        endpoint.zone
                    ));
                };
                match kernel.get(&addr) {
                    None => Some(format!("{map} has no element for {addr}")),
                    Some(have) if have.zone_id != want.zone_id => Some(format!(
                        "{map} maps {addr} to zone id {} instead of {}",
                        have.zone_id, want.zone_id
                    )),
                    Some(_) if want.comment != elements::element_comment(&endpoint) => {
                        Some(format!(
                            "{addr} belongs to a newer endpoint ({}), not to this one",
                            want.comment
                        ))
                    }
                    Some(_) => None,
                }
            })
            .collect();
        Ok(Some((endpoint, problems)))
    }

    /// Whether ADDs can be served: the store takes writes and nft answers.
    pub async fn health(&self) -> Result<(), String> {
        let (store, dataplane) = (self.store.clone(), self.dataplane.clone());
        blocking(move || {
            store.check_writable().map_err(RegistryError::Store)?;
            dataplane.list_elements().map_err(RegistryError::Kernel)
        })
        .await
        .map(drop)
        .map_err(|err| err.to_string())
    }

    async fn mutate<T: Send + 'static>(
        &self,
        mutation: impl FnOnce(&mut RegistryState) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let state = self.state.clone();
        let snapshot = self.snapshot.clone();
        blocking(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let result = mutation(&mut state);
            snapshot.store(Arc::new(state.snapshot()));
            result
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| RegistryError::Task(err.to_string()))?
}

fn now_unix_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
