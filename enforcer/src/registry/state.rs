//! The mutable state of the registry and the order of every mutation: persist, then
//! change the kernel (one transaction from the ruleset in force to the new one), then
//! publish. When the kernel step fails the store is rolled back, so a failed ADD or a
//! failed approval leaves nothing behind.
//!
//! Only [`super::EndpointRegistry`] holds this, behind one lock: mutations never
//! interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use tracing::{error, info, warn};
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::ruleset::{CompileInput, Ruleset, compile};
use zonewarden_profiles::{AttachmentKey, Endpoint, Policy, Profile, ZoneName};

use super::RegistryError;
use super::snapshot::Snapshot;
use crate::nft::ruleset::RulesetDataplane;
use crate::store::{Store, StoredState, ZoneIds};

pub struct RegistryState {
    pub node: String,
    pub store: Arc<dyn Store>,
    pub dataplane: Arc<dyn RulesetDataplane>,
    pub endpoints: BTreeMap<AttachmentKey, Endpoint>,
    pub zone_ids: ZoneIds,
    pub policy: Policy,
    pub quarantined: BTreeSet<String>,
    pub host_addrs: Vec<IpAddr>,
    /// The ruleset the kernel holds (as far as the last successful transaction knows).
    pub applied: Ruleset,
    /// Cuts the open connections of an address that was just quarantined.
    pub flush_connections: fn(IpAddr) -> usize,
}

impl RegistryState {
    /// Takes what the store loaded, giving an id to any zone that lacks one.
    pub fn from_stored(
        node: String,
        store: Arc<dyn Store>,
        dataplane: Arc<dyn RulesetDataplane>,
        stored: StoredState,
        settings: NodeSettings,
    ) -> Result<Self, RegistryError> {
        let mut zone_ids = stored.zone_ids;
        let before = zone_ids.clone();
        for endpoint in &stored.endpoints {
            zone_ids.allocate(&endpoint.zone);
        }
        if zone_ids != before {
            store.save_zone_ids(&zone_ids)?;
        }
        let profiles = stored
            .profiles
            .into_iter()
            .map(|p| (p.zone.clone(), p))
            .collect();
        Ok(Self {
            node,
            store,
            dataplane,
            endpoints: stored
                .endpoints
                .into_iter()
                .map(|e| (e.key.clone(), e))
                .collect(),
            zone_ids,
            policy: Policy {
                profiles,
                settings,
                cidr_zones: BTreeMap::new(),
            },
            quarantined: stored.quarantined,
            host_addrs: Vec::new(),
            applied: Ruleset::default(),
            flush_connections: crate::conntrack::flush,
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            endpoints: self.endpoints.clone(),
            zone_ids: self.zone_ids.clone(),
            policy: self.policy.clone(),
            quarantined: self.quarantined.clone(),
            host_addrs: self.host_addrs.clone(),
            addr_zones: self.addr_zones(),
        }
    }

    fn addr_zones(&self) -> BTreeMap<IpAddr, ZoneName> {
        let mut endpoints: Vec<&Endpoint> = self.endpoints.values().collect();
        endpoints.sort_by_key(|e| e.created_unix_ms);
        endpoints
            .iter()
            .flat_map(|e| e.addrs().map(|a| (a, e.zone.clone())))
            .collect()
    }

    /// The ruleset the current state wants in the kernel. When two endpoints claim one
    /// address, the newest wins (a runtime may reuse it before the old DEL arrives).
    pub fn desired(&self) -> Ruleset {
        let mut endpoints: Vec<Endpoint> = self.endpoints.values().cloned().collect();
        endpoints.sort_by_key(|e| e.created_unix_ms);
        let zone_ids: BTreeMap<ZoneName, u32> = self
            .zone_ids
            .iter()
            .map(|(z, id)| (z.clone(), id))
            .collect();
        compile(&CompileInput {
            policy: &self.policy,
            endpoints: &endpoints,
            node: &self.node,
            zone_ids: &zone_ids,
            host_addrs: &self.host_addrs,
            quarantined_endpoints: &self.quarantined,
        })
    }

    /// Makes the kernel hold the desired ruleset, by difference from what it holds.
    pub fn reconcile(&mut self) -> Result<usize, RegistryError> {
        let view = self
            .dataplane
            .ensure_base(&self.policy.settings)
            .map_err(RegistryError::Kernel)?;
        let desired = self.desired();
        let changes = RulesetDiff::between(&view.ruleset, &desired);
        let count = changes.local.add.len()
            + changes.local.del.len()
            + changes.created.len()
            + changes.removed.len();
        self.dataplane
            .apply(&changes, &desired)
            .map_err(RegistryError::Kernel)?;
        self.applied = desired;
        Ok(count)
    }

    /// Moves the kernel to the current state's ruleset; on failure nothing changed.
    fn apply(&mut self) -> Result<(), crate::nft::NftError> {
        let desired = self.desired();
        let diff = RulesetDiff::between(&self.applied, &desired);
        self.dataplane.apply(&diff, &desired)?;
        let newly_quarantined: Vec<IpAddr> = desired
            .local
            .iter()
            .filter(|(addr, l)| {
                l.quarantined
                    && !self
                        .applied
                        .local
                        .get(addr)
                        .is_some_and(|old| old.quarantined)
            })
            .map(|(addr, _)| *addr)
            .collect();
        self.applied = desired;
        for addr in newly_quarantined {
            (self.flush_connections)(addr);
        }
        Ok(())
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
        self.endpoints.insert(key.clone(), endpoint.clone());
        if let Err(source) = self.apply() {
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
        self.endpoints.remove(key);
        if let Err(source) = self.apply() {
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

    /// Changes one zone's profile: written durably first, then put into the kernel in
    /// one transaction; on a kernel failure the old profile is restored everywhere.
    /// `change` returns how many things it changed (0: nothing is written).
    pub fn change_profile<E>(
        &mut self,
        zone: &ZoneName,
        change: impl FnOnce(&mut Profile) -> Result<usize, E>,
    ) -> Result<(Profile, usize), RegistryError>
    where
        RegistryError: From<E>,
    {
        let old = self.policy.profiles.get(zone).cloned();
        let mut profile = old.clone().unwrap_or_else(|| Profile::new(zone.clone()));
        let changed = change(&mut profile)?;
        if changed == 0 {
            return Ok((profile, 0));
        }
        self.store.save_profile(&profile)?;
        self.policy.profiles.insert(zone.clone(), profile.clone());
        if let Err(source) = self.apply() {
            let restored = match &old {
                Some(old) => {
                    self.policy.profiles.insert(zone.clone(), old.clone());
                    self.store.save_profile(old)
                }
                None => {
                    self.policy.profiles.remove(zone);
                    self.store.save_profile(&Profile::new(zone.clone()))
                }
            };
            if let Err(err) = restored {
                error!(%zone, ?err, "cannot restore the profile after a failed change; fix the state directory");
            }
            return Err(RegistryError::Kernel(source));
        }
        info!(%zone, version = profile.version, changed, "profile changed");
        Ok((profile, changed))
    }

    /// Quarantines or releases one endpoint by container id; returns whether it changed.
    pub fn quarantine_endpoint(
        &mut self,
        container_id: &str,
        on: bool,
    ) -> Result<bool, RegistryError> {
        if !self
            .endpoints
            .values()
            .any(|e| e.key.container_id == container_id)
        {
            return Err(RegistryError::UnknownEndpoint(container_id.to_owned()));
        }
        let before = self.quarantined.clone();
        let changed = if on {
            self.quarantined.insert(container_id.to_owned())
        } else {
            self.quarantined.remove(container_id)
        };
        if !changed {
            return Ok(false);
        }
        self.store.save_quarantined(&self.quarantined)?;
        if let Err(source) = self.apply() {
            self.quarantined = before;
            if let Err(err) = self.store.save_quarantined(&self.quarantined) {
                error!(
                    ?err,
                    "cannot restore the quarantine list after a failed change"
                );
            }
            return Err(RegistryError::Kernel(source));
        }
        Ok(true)
    }

    /// The node's own addresses changed: the `host` zone follows.
    pub fn set_host_addrs(&mut self, addrs: Vec<IpAddr>) -> Result<(), RegistryError> {
        if addrs == self.host_addrs {
            return Ok(());
        }
        let before = std::mem::replace(&mut self.host_addrs, addrs);
        if let Err(source) = self.apply() {
            self.host_addrs = before;
            return Err(RegistryError::Kernel(source));
        }
        Ok(())
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
