//! The mutable state of the registry and the order of every mutation: persist, then
//! change the kernel, then publish; when the kernel step fails the store is rolled
//! back, so a failed ADD leaves nothing behind.
//!
//! Only [`super::EndpointRegistry`] holds this, behind one lock: mutations never
//! interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use tracing::{error, info, warn};
use zonewarden_profiles::{AttachmentKey, Endpoint, ZoneName};

use super::RegistryError;
use super::elements::{change_between, change_from_kernel, wanted_elements};
use super::snapshot::Snapshot;
use crate::nft::{Dataplane, ElementChange};
use crate::store::{Store, StoredState, ZoneIds};

pub struct RegistryState {
    pub store: Arc<dyn Store>,
    pub dataplane: Arc<dyn Dataplane>,
    pub endpoints: BTreeMap<AttachmentKey, Endpoint>,
    pub zone_ids: ZoneIds,
}

impl RegistryState {
    /// Takes what the store loaded, giving an id to any zone that lacks one.
    pub fn from_stored(
        store: Arc<dyn Store>,
        dataplane: Arc<dyn Dataplane>,
        stored: StoredState,
    ) -> Result<Self, RegistryError> {
        let mut zone_ids = stored.zone_ids;
        let before = zone_ids.clone();
        for endpoint in &stored.endpoints {
            zone_ids.allocate(&endpoint.zone);
        }
        if zone_ids != before {
            store.save_zone_ids(&zone_ids)?;
        }
        let endpoints = stored
            .endpoints
            .into_iter()
            .map(|e| (e.key.clone(), e))
            .collect();
        Ok(Self {
            store,
            dataplane,
            endpoints,
            zone_ids,
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            endpoints: self.endpoints.clone(),
            zone_ids: self.zone_ids.clone(),
        }
    }

    /// Registers or replaces an endpoint.
    pub fn add(&mut self, endpoint: Endpoint) -> Result<(), RegistryError> {
        let key = endpoint.key.clone();
        let old = self.endpoints.get(&key).cloned();
        let zone_ids_before = self.zone_ids.clone();
        if self.zone_ids.get(&endpoint.zone).is_none() {
            self.zone_ids.allocate(&endpoint.zone);
            if let Err(err) = self.store.save_zone_ids(&self.zone_ids) {
                self.zone_ids = zone_ids_before;
                return Err(err.into());
            }
        }
        if let Err(err) = self.store.save_endpoint(&endpoint) {
            self.restore_zone_ids(zone_ids_before);
            return Err(err.into());
        }
        let affected = addrs_of(old.iter().chain([&endpoint]));
        let change = self.change_for(&affected, |endpoints| {
            endpoints.insert(key.clone(), endpoint.clone());
        });
        if let Err(source) = self.dataplane.apply(&change) {
            match &old {
                Some(old) => self.endpoints.insert(key.clone(), old.clone()),
                None => self.endpoints.remove(&key),
            };
            let restored = match &old {
                Some(old) => self.store.save_endpoint(old),
                None => self.store.delete_endpoint(&key),
            };
            if let Err(err) = restored {
                error!(%key, ?err, "cannot roll back the store after a failed ADD; the record is reconciled at the next start");
            }
            self.restore_zone_ids(zone_ids_before);
            return Err(RegistryError::Dataplane {
                key,
                source: Box::new(source),
            });
        }
        if let Some(old) = old.filter(|old| old.zone != endpoint.zone) {
            self.release_zone_if_empty(&old.zone);
        }
        Ok(())
    }

    /// Removes an endpoint; `None` when it was not registered.
    pub fn del(&mut self, key: &AttachmentKey) -> Result<Option<Endpoint>, RegistryError> {
        let Some(old) = self.endpoints.get(key).cloned() else {
            return Ok(None);
        };
        self.store.delete_endpoint(key)?;
        let change = self.change_for(&addrs_of([&old]), |endpoints| {
            endpoints.remove(key);
        });
        if let Err(source) = self.dataplane.apply(&change) {
            self.endpoints.insert(key.clone(), old.clone());
            if let Err(err) = self.store.save_endpoint(&old) {
                error!(%key, ?err, "cannot restore the record after a failed DEL; its elements are removed at the next start");
            }
            return Err(RegistryError::Dataplane {
                key: key.clone(),
                source: Box::new(source),
            });
        }
        self.release_zone_if_empty(&old.zone);
        Ok(Some(old))
    }

    /// Makes the kernel's zone maps match the registry: adds what is missing and
    /// deletes what no endpoint claims.
    pub fn reconcile(&self) -> Result<ElementChange, RegistryError> {
        let kernel = self
            .dataplane
            .list_elements()
            .map_err(RegistryError::Kernel)?;
        let wanted = wanted_elements(self.endpoints.values(), &self.zone_ids, None);
        let change = change_from_kernel(&kernel, &wanted);
        self.dataplane
            .apply(&change)
            .map_err(RegistryError::Kernel)?;
        Ok(change)
    }

    /// Applies `mutate` to the endpoints and returns the element change it implies
    /// for the `affected` addresses.
    fn change_for(
        &mut self,
        affected: &BTreeSet<IpAddr>,
        mutate: impl FnOnce(&mut BTreeMap<AttachmentKey, Endpoint>),
    ) -> ElementChange {
        let before = wanted_elements(self.endpoints.values(), &self.zone_ids, Some(affected));
        mutate(&mut self.endpoints);
        let after = wanted_elements(self.endpoints.values(), &self.zone_ids, Some(affected));
        change_between(&before, &after)
    }

    fn release_zone_if_empty(&mut self, zone: &ZoneName) {
        if self.endpoints.values().any(|e| &e.zone == zone) || !self.zone_ids.release(zone) {
            return;
        }
        match self.store.save_zone_ids(&self.zone_ids) {
            Ok(()) => info!(%zone, "zone has no members left; its id is retired"),
            Err(err) => {
                warn!(%zone, ?err, "cannot persist the retirement of an empty zone; it stays listed")
            }
        }
    }

    fn restore_zone_ids(&mut self, before: ZoneIds) {
        if self.zone_ids == before {
            return;
        }
        self.zone_ids = before;
        if let Err(err) = self.store.save_zone_ids(&self.zone_ids) {
            warn!(
                ?err,
                "cannot roll back a new zone id; the zone stays listed without members"
            );
        }
    }
}

fn addrs_of<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> BTreeSet<IpAddr> {
    endpoints.into_iter().flat_map(Endpoint::addrs).collect()
}
