//! The mutable state of the registry and the order of every mutation: persist, write
//! its audit entry (fsynced), then change the kernel (one transaction from the ruleset
//! in force to the new one), then publish. When the audit entry cannot be written the
//! change is refused and the store put back, the kernel untouched: no change takes
//! effect without its entry. When the kernel step fails the store is rolled back and a
//! `reverted` entry follows, so a failed ADD or a failed approval leaves nothing
//! behind but the record of the attempt.
//!
//! The ruleset is kept compiled by [`Incremental`]: a change recompiles only what it
//! touches and yields the diff the kernel needs; a failed change is undone by telling
//! the compiler the inverse change.
//!
//! Only [`super::EndpointRegistry`] holds this, behind one lock: mutations never
//! interleave.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use tracing::{error, info, warn};
use zonewarden_profiles::diff::RulesetDiff;
use zonewarden_profiles::incremental::{Change, Incremental, State};
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::response::ResponseRules;
use zonewarden_profiles::ruleset::{CompileInput, Ruleset, compile};
use zonewarden_profiles::{AttachmentKey, Endpoint, Endpoints, Policy, Profile, Proto, ZoneName};

use super::RegistryError;
use super::snapshot::{Resolver, Snapshot};
use crate::audit::record::{self as audit_record, ChangeNote, Note};
use crate::audit::{Action, AuditLog, AuditRecord};
use crate::nft::NftError;
use crate::nft::ruleset::RulesetDataplane;
use crate::store::{Store, StoredState, ZoneIds};

pub struct RegistryState {
    pub node: String,
    pub store: Arc<dyn Store>,
    pub dataplane: Arc<dyn RulesetDataplane>,
    /// Shared with the last published snapshot until the next change of an endpoint
    /// (which copies it then, `Arc::make_mut`): a node at rest keeps one copy.
    pub endpoints: Arc<Endpoints>,
    pub zone_ids: ZoneIds,
    pub policy: Policy,
    pub quarantined: BTreeSet<String>,
    pub host_addrs: Vec<IpAddr>,
    /// The compiled ruleset of the current state. Once `synced`, the kernel holds it
    /// (as far as the last successful transaction knows).
    pub compiled: Incremental,
    /// Whether the kernel has been reconciled with `compiled` since the start.
    pub synced: bool,
    /// Whether the table is sealed with `compiled` (see [`crate::nft::ruleset::seal`]).
    pub sealed: bool,
    /// How many times the kernel was asked to change (whether it did or not).
    pub kernel_changes: u64,
    /// Cuts the open connections of an address that was just quarantined.
    pub flush_connections: ConnectionFlusher,
    /// Where every change is recorded before the kernel sees it.
    pub audit: AuditLog,
}

/// Cuts the open connections of an address; how many it cut.
pub type ConnectionFlusher = fn(IpAddr) -> Result<usize, crate::conntrack::ConntrackError>;

impl RegistryState {
    /// The endpoints to change: copied first if a snapshot still shares them.
    pub fn endpoints_mut(&mut self) -> &mut Endpoints {
        Arc::make_mut(&mut self.endpoints)
    }

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
        let state = Self {
            node,
            store,
            dataplane,
            // Each endpoint shares its zone's name with the zone ids (a large
            // cluster's records each bring a copy).
            endpoints: Arc::new(
                stored
                    .endpoints
                    .into_iter()
                    .map(|mut endpoint| {
                        zone_ids.share_name(&mut endpoint.zone);
                        endpoint
                    })
                    .collect(),
            ),
            zone_ids,
            policy: Policy {
                profiles,
                settings,
                cidr_zones: BTreeMap::new(),
            },
            quarantined: stored.quarantined,
            host_addrs: Vec::new(),
            compiled: Incremental::new(&State {
                node: "",
                policy: &Policy::default(),
                endpoints: &Endpoints::new(),
                zone_id: &|_| None,
                host_addrs: &[],
                quarantined_endpoints: &BTreeSet::new(),
            }),
            synced: false,
            sealed: false,
            kernel_changes: 0,
            flush_connections: crate::conntrack::flush,
            audit: AuditLog::disabled(),
        };
        // Compiled by the caller once the host's addresses are in (a compilation of
        // a large cluster's endpoints takes a second).
        Ok(state)
    }

    /// Compiles the whole state again: at the start and when what changes only with a
    /// rebuild (CIDR zones, node settings) changed.
    pub fn recompile(&mut self) {
        let zone_ids = &self.zone_ids;
        let zone_id = |z: &ZoneName| zone_ids.get(z);
        self.compiled = Incremental::new(&State {
            node: &self.node,
            policy: &self.policy,
            endpoints: &self.endpoints,
            zone_id: &zone_id,
            host_addrs: &self.host_addrs,
            quarantined_endpoints: &self.quarantined,
        });
    }

    /// Takes changes already made to the state into the compiled ruleset; returns the
    /// diff from the previous one.
    fn update(&mut self, changes: &[Change<'_>]) -> RulesetDiff {
        let zone_ids = &self.zone_ids;
        let zone_id = |z: &ZoneName| zone_ids.get(z);
        let state = State {
            node: &self.node,
            policy: &self.policy,
            endpoints: &self.endpoints,
            zone_id: &zone_id,
            host_addrs: &self.host_addrs,
            quarantined_endpoints: &self.quarantined,
        };
        self.compiled.update(&state, changes)
    }

    /// The ruleset in force.
    pub fn applied(&self) -> &Ruleset {
        self.compiled.ruleset()
    }

    /// The state for readers, with `resolver` (built from this same state: the
    /// registry shares one per change between the snapshot and the NFLOG path).
    pub fn snapshot(&self, resolver: Arc<Resolver>) -> Snapshot {
        Snapshot {
            endpoints: self.endpoints.clone(),
            zone_ids: self.zone_ids.clone(),
            policy: self.policy.clone(),
            quarantined: self.quarantined.clone(),
            host_addrs: self.host_addrs.clone(),
            resolver,
        }
    }

    /// What the NFLOG path needs to name zones (see [`Resolver`]).
    pub fn resolver(&self) -> Resolver {
        Resolver {
            addr_zone_ids: self.addr_zone_ids(),
            host_addrs: self.host_addrs.clone(),
            cidr_zones: self.policy.cidr_zones.clone(),
            zones_by_id: self
                .zone_ids
                .iter()
                .map(|(z, id)| (id, z.clone()))
                .collect(),
            versions: self
                .policy
                .profiles
                .iter()
                .map(|(z, p)| (z.clone(), p.version))
                .collect(),
            response: Arc::new(self.response_view()),
        }
    }

    /// See [`super::snapshot::ResponseView`].
    fn response_view(&self) -> super::snapshot::ResponseView {
        let rules: BTreeMap<ZoneName, ResponseRules> = self
            .policy
            .profiles
            .iter()
            .filter(|(_, p)| !p.response.is_empty())
            .map(|(z, p)| (z.clone(), p.response))
            .collect();
        if rules.is_empty() {
            return super::snapshot::ResponseView::default();
        }
        let mut endpoints: Vec<&Endpoint> = self
            .endpoints
            .values()
            .filter(|e| e.node == self.node && rules.contains_key(&e.zone))
            .collect();
        endpoints.sort_by_key(|e| e.created_unix_ms);
        let sources = endpoints
            .iter()
            .flat_map(|e| {
                let source = super::snapshot::ResponseSource {
                    container_id: e.key.container_id.to_string(),
                    zone: e.zone.clone(),
                    quarantined: self.quarantined.contains(&*e.key.container_id)
                        || self.policy.zone_quarantined(&e.zone),
                };
                e.addrs().map(move |a| (a, source.clone()))
            })
            .collect();
        let mut approved_ports: BTreeMap<ZoneName, BTreeSet<(Proto, u16)>> = BTreeMap::new();
        for edge in self.policy.approved_edges() {
            if rules.get(&edge.src).is_some_and(|r| r.new_port) {
                approved_ports
                    .entry(edge.src.clone())
                    .or_default()
                    .insert((edge.proto, edge.port));
            }
        }
        super::snapshot::ResponseView {
            rules,
            sources,
            approved_ports,
        }
    }

    /// Each endpoint address with the zone id of its newest claim: the compiled
    /// membership (what the kernel's `zone_of` maps hold), copied in address order.
    /// A node of a large cluster rebuilds this after every change a reader sees;
    /// sorting every endpoint by age took 20 ms at 100,000. An endpoint whose zone
    /// has no id yet (in cluster mode, until the id's record arrives) is in neither:
    /// its addresses are `world` to the kernel, and so to the learning and the flow
    /// checks.
    fn addr_zone_ids(&self) -> BTreeMap<IpAddr, u32> {
        self.compiled
            .ruleset()
            .members
            .iter()
            .map(|(addr, (id, _))| (*addr, *id))
            .collect()
    }

    /// The ruleset the current state wants in the kernel, compiled from scratch (the
    /// reference the incremental compiler is checked against). When two endpoints
    /// claim one address, the newest wins (a runtime may reuse it before the old DEL
    /// arrives).
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

    /// Makes the kernel hold the compiled ruleset, by difference from what it holds;
    /// returns how many endpoints and zones changed.
    pub fn reconcile(&mut self) -> Result<usize, RegistryError> {
        self.reconcile_kernel().map_err(RegistryError::Kernel)
    }

    fn reconcile_kernel(&mut self) -> Result<usize, NftError> {
        if self.dataplane.confirms(self.compiled.ruleset()) {
            info!(
                "the table is sealed with the ruleset compiled from the store, and nothing was committed since: nothing to read or write"
            );
            self.synced = true;
            self.sealed = true;
            return Ok(0);
        }
        let view = self.dataplane.ensure_base(&self.policy.settings)?;
        let changed = self.reconcile_from(view)?;
        // Sealed at once, so that the next start confirms the table even if it comes
        // before the registry's first quiet moment.
        if let Err(err) = self.seal() {
            tracing::debug!(%err, "cannot seal the table; a restart will read it");
        }
        Ok(changed)
    }

    /// Seals the table with the compiled ruleset, once per change (a restart then
    /// confirms it without reading it); `Ok(true)` when it sealed it now.
    pub fn seal(&mut self) -> Result<bool, NftError> {
        if !self.synced || self.sealed {
            return Ok(false);
        }
        self.sealed = self.dataplane.seal(self.compiled.ruleset())?;
        Ok(self.sealed)
    }

    /// Restores the table after someone else changed it: as [`Self::reconcile`], with
    /// the chains the change touched rewritten whatever their comments say.
    pub fn restore(&mut self, stale: &BTreeSet<String>) -> Result<usize, RegistryError> {
        let view = self
            .dataplane
            .ensure_base_stale(&self.policy.settings, stale)
            .map_err(RegistryError::Kernel)?;
        self.reconcile_from(view).map_err(RegistryError::Kernel)
    }

    fn reconcile_from(&mut self, view: crate::nft::ruleset::KernelView) -> Result<usize, NftError> {
        let started = std::time::Instant::now();
        let desired = self.compiled.ruleset();
        let changes = RulesetDiff::between(&view.ruleset, desired);
        tracing::debug!(
            diff_ms = started.elapsed().as_millis(),
            "compared the table with the compiled ruleset"
        );
        self.sealed = false;
        self.kernel_changes += 1;
        let count = changes.local.add.len()
            + changes.local.del.len()
            + changes.created.len()
            + changes.removed.len();
        self.dataplane.apply(&changes, desired)?;
        self.synced = true;
        if !view.obsolete_sets.is_empty() || !view.foreign_chains.is_empty() {
            let (chains, sets) = (&view.foreign_chains, &view.obsolete_sets);
            match self.dataplane.remove_objects(chains, sets) {
                Ok(()) => info!(
                    ?chains,
                    ?sets,
                    "deleted chains and sets that are not the enforcer's"
                ),
                Err(err) => warn!(
                    ?err,
                    ?chains,
                    ?sets,
                    "cannot delete chains and sets that are not the enforcer's"
                ),
            }
        }
        Ok(count)
    }

    /// Takes `changes` (already made to the state) into the compiled ruleset and the
    /// kernel. On failure the kernel is unchanged and the caller restores the state
    /// and calls [`Self::undo`] with the inverse changes.
    pub(super) fn apply(&mut self, changes: &[Change<'_>]) -> Result<(), NftError> {
        let diff = self.update(changes);
        if !self.synced {
            // Nothing was reconciled yet: the whole ruleset goes in.
            return self.reconcile_kernel().map(drop);
        }
        self.sealed = false;
        self.kernel_changes += 1;
        self.dataplane.apply(&diff, self.compiled.ruleset())?;
        let was_quarantined: BTreeSet<&IpAddr> = diff
            .local
            .del
            .iter()
            .filter(|(_, l)| l.quarantined)
            .map(|(a, _)| a)
            .collect();
        for (addr, local) in &diff.local.add {
            if local.quarantined
                && !was_quarantined.contains(addr)
                && let Err(err) = (self.flush_connections)(*addr)
            {
                error!(
                    %addr,
                    %err,
                    "the quarantine rules are in place, but the open connections of the address could not be cut and stay open until they close; check that the enforcer has CAP_NET_ADMIN and the kernel module nf_conntrack_netlink, then quarantine it again"
                );
            }
        }
        Ok(())
    }

    /// Takes the inverse of a failed change (the state is restored already) back into
    /// the compiled ruleset, which then equals what the kernel holds again.
    pub(super) fn undo(&mut self, inverse: &[Change<'_>]) {
        self.update(inverse);
    }

    /// Writes the entry of a change that is in the store but not yet in the kernel;
    /// `Err` means the caller must put the store back and refuse the change.
    fn audit_first(&self, record: Option<&AuditRecord>) -> Result<(), RegistryError> {
        self.audit_first_all(record.map(std::slice::from_ref).unwrap_or_default())
    }

    /// Writes the entries of a change that is in the store but not yet in the kernel,
    /// in this node's log, then commits the store: the store's index notes the files
    /// the change created or removed and the log's head after its entries, and the
    /// cluster store writes the policy changes' entries into the cluster-wide trail in
    /// the change's own transaction. `Err` means the caller must put the store back
    /// and refuse the change; whatever entries were written are marked reverted.
    pub(super) fn audit_first_all(&self, records: &[AuditRecord]) -> Result<(), RegistryError> {
        let mut head = None;
        for (index, record) in records.iter().enumerate() {
            match self.audit.append_now(record.clone()) {
                Ok(h) => head = h,
                Err(err) => {
                    self.revert_entries(&records[..index], "the audit log could not be written");
                    return Err(RegistryError::Audit(err));
                }
            }
        }
        for record in records.iter().filter(|r| r.action.is_policy()) {
            self.store.stage_audit(record);
        }
        if let Err(err) = self.store.commit(head) {
            let why = format!("the store could not be written: {err}");
            for record in records {
                let _ = self.audit.append_now(audit_record::reverted(record, &why));
            }
            return Err(err.into());
        }
        Ok(())
    }

    /// Marks written entries as reverted, in this node's log only: their change never
    /// reached the store.
    fn revert_entries(&self, records: &[AuditRecord], why: &str) {
        for record in records {
            let _ = self.audit.append_now(audit_record::reverted(record, why));
        }
    }

    /// The kernel refused a change whose entry is written: say it never took effect.
    fn audit_reverted(&self, record: Option<&AuditRecord>, err: &NftError) {
        self.audit_reverted_all(record.map(std::slice::from_ref).unwrap_or_default(), err);
    }

    /// The kernel refused a change whose entries are written and committed: say, in
    /// this node's log and in the cluster trail (with the roll-back's commit), that it
    /// never took effect.
    pub(super) fn audit_reverted_all(&self, records: &[AuditRecord], err: &NftError) {
        for record in records {
            let reverted = audit_record::reverted(record, &err.to_string());
            if record.action.is_policy() {
                self.store.stage_audit(&reverted);
            }
            if let Err(audit_err) = self.audit.append_now(reverted) {
                error!(%audit_err, "cannot record that a refused change was reverted; zwctl audit log shows the attempt only");
            }
        }
    }

    /// The entry of an endpoint added or removed.
    fn endpoint_record(
        &self,
        note: Option<&Note>,
        action: Action,
        ep: &Endpoint,
    ) -> Option<AuditRecord> {
        note.map(|note| {
            audit_record::endpoint(
                note,
                action,
                ep,
                self.policy.version(&ep.zone),
                audit_record::endpoint_detail(ep),
            )
        })
    }

    /// For a chained endpoint (whose addresses come from another plugin's result): an
    /// address that another endpoint of this node holds while that endpoint's network
    /// namespace still exists. A stale holder (its namespace is gone, its DEL not yet
    /// here) is not one: the newest owner takes the address, as after a reuse.
    fn live_holder(&self, endpoint: &Endpoint) -> Option<(IpAddr, &Endpoint)> {
        if endpoint.attach_mode != zonewarden_profiles::AttachMode::Chained {
            return None;
        }
        endpoint.addrs().find_map(|addr| {
            self.compiled
                .local_claimants(addr)
                .filter(|key| **key != endpoint.key)
                .filter_map(|key| self.endpoints.get(key))
                .filter(|other| other.netns != endpoint.netns)
                .find(|other| std::path::Path::new(&other.netns).exists())
                .map(|other| (addr, other))
        })
    }

    /// Registers or replaces an endpoint; `note` says who asked (recorded in the audit
    /// log before the kernel sees the endpoint; `None`: not recorded).
    pub fn add(&mut self, endpoint: Endpoint, note: Option<&Note>) -> Result<(), RegistryError> {
        if let Some((addr, holder)) = self.live_holder(&endpoint) {
            return Err(RegistryError::AddressInUse {
                addr,
                holder: holder.key.clone(),
                netns: holder.netns.clone(),
            });
        }
        let key = endpoint.key.clone();
        let old = self.endpoints.get(&key).cloned();
        // The ids as they were, kept only when this ADD gives its zone one (a node of a
        // large cluster knows thousands of zones: no copy for every ADD).
        let mut zone_ids_before = None;
        if self.zone_ids.get(&endpoint.zone).is_none() {
            let before = self.zone_ids.clone();
            self.zone_ids.allocate(&endpoint.zone);
            if let Err(err) = self.store.save_zone_ids(&self.zone_ids) {
                self.zone_ids = before;
                return Err(err.into());
            }
            zone_ids_before = Some(before);
        }
        if let Err(err) = self.store.save_endpoint(&endpoint) {
            if let Some(before) = zone_ids_before {
                self.restore_zone_ids(before);
            }
            return Err(err.into());
        }
        let restore_store = |state: &mut Self| {
            let restored = match &old {
                Some(old) => state.store.save_endpoint(old),
                None => state.store.delete_endpoint(&key),
            };
            if let Err(err) = restored {
                error!(%key, ?err, "cannot roll back the store after a failed ADD; the record is reconciled at the next start");
            }
            if let Some(before) = &zone_ids_before {
                state.restore_zone_ids(before.clone());
            }
        };
        let record = self.endpoint_record(note, Action::EndpointAdd, &endpoint);
        if let Err(err) = self.audit_first(record.as_ref()) {
            restore_store(self);
            return Err(err);
        }
        self.endpoints_mut().insert(endpoint.clone());
        let mut changes: Vec<Change<'_>> = old.iter().map(Change::EndpointRemoved).collect();
        changes.push(Change::EndpointAdded(&endpoint));
        if let Err(source) = self.apply(&changes) {
            match &old {
                Some(old) => self.endpoints_mut().insert(old.clone()),
                None => self.endpoints_mut().remove(&key),
            };
            let mut inverse = vec![Change::EndpointRemoved(&endpoint)];
            inverse.extend(old.iter().map(Change::EndpointAdded));
            self.undo(&inverse);
            restore_store(self);
            self.audit_reverted(record.as_ref(), &source);
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

    /// Removes an endpoint; `None` when it was not registered. `note`: as for [`Self::add`].
    pub fn del(
        &mut self,
        key: &AttachmentKey,
        note: Option<&Note>,
    ) -> Result<Option<Endpoint>, RegistryError> {
        let Some(old) = self.endpoints.get(key).cloned() else {
            return Ok(None);
        };
        self.store.delete_endpoint(key)?;
        let restore_store = |state: &Self| {
            if let Err(err) = state.store.save_endpoint(&old) {
                error!(%key, ?err, "cannot restore the record after a failed DEL; its elements are removed at the next start");
            }
        };
        let record = self.endpoint_record(note, Action::EndpointDel, &old);
        if let Err(err) = self.audit_first(record.as_ref()) {
            restore_store(self);
            return Err(err);
        }
        self.endpoints_mut().remove(key);
        if let Err(source) = self.apply(&[Change::EndpointRemoved(&old)]) {
            self.endpoints_mut().insert(old.clone());
            self.undo(&[Change::EndpointAdded(&old)]);
            restore_store(self);
            self.audit_reverted(record.as_ref(), &source);
            return Err(RegistryError::Dataplane {
                key: key.clone(),
                source: Box::new(source),
            });
        }
        self.release_zone_if_empty(&old.zone);
        Ok(Some(old))
    }

    /// Changes one zone's profile: written durably first, then its audit entry (from
    /// `noted`, when given), then put into the kernel in one transaction; on a failure
    /// the old profile is restored everywhere. `change` returns how many things it
    /// changed (0: nothing is written).
    pub fn change_profile<E>(
        &mut self,
        zone: &ZoneName,
        change: impl FnOnce(&mut Profile) -> Result<usize, E>,
        noted: Option<&ChangeNote>,
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
        let restore = |state: &mut Self| {
            let restored = match &old {
                Some(old) => {
                    state.policy.profiles.insert(zone.clone(), old.clone());
                    state.store.save_profile(old)
                }
                None => {
                    state.policy.profiles.remove(zone);
                    state.store.save_profile(&Profile::new(zone.clone()))
                }
            };
            if let Err(err) = restored {
                error!(%zone, ?err, "cannot restore the profile after a failed change; fix the state directory");
            }
        };
        let record = noted
            .map(|n| audit_record::profile_change(&n.note, n.action, &profile, n.target.clone()));
        if let Err(err) = self.audit_first(record.as_ref()) {
            restore(self);
            return Err(err);
        }
        self.policy.profiles.insert(zone.clone(), profile.clone());
        if let Err(source) = self.apply(&[Change::ProfileChanged {
            zone,
            old: old.as_ref(),
        }]) {
            restore(self);
            self.undo(&[Change::ProfileChanged {
                zone,
                old: Some(&profile),
            }]);
            self.audit_reverted(record.as_ref(), &source);
            return Err(RegistryError::Kernel(source));
        }
        info!(%zone, version = profile.version, changed, "profile changed");
        Ok((profile, changed))
    }

    /// Quarantines or releases one endpoint by container id; returns whether it
    /// changed. `note`: as for [`Self::add`].
    pub fn quarantine_endpoint(
        &mut self,
        container_id: &str,
        on: bool,
        note: Option<&Note>,
    ) -> Result<bool, RegistryError> {
        let Some(zone) = self
            .endpoints
            .values()
            .find(|e| *e.key.container_id == *container_id)
            .map(|e| e.zone.clone())
        else {
            return Err(RegistryError::UnknownEndpoint(container_id.to_owned()));
        };
        let before = self.quarantined.clone();
        let changed = if on {
            self.quarantined.insert(container_id.to_owned())
        } else {
            self.quarantined.remove(container_id)
        };
        if !changed {
            return Ok(false);
        }
        if let Err(err) = self.store.save_quarantined(&self.quarantined) {
            self.quarantined = before;
            return Err(err.into());
        }
        let restore = |state: &mut Self, before: BTreeSet<String>| {
            state.quarantined = before;
            if let Err(err) = state.store.save_quarantined(&state.quarantined) {
                error!(
                    ?err,
                    "cannot restore the quarantine list after a failed change"
                );
            }
        };
        let profile = self
            .policy
            .profiles
            .get(&zone)
            .cloned()
            .unwrap_or_else(|| Profile::new(zone.clone()));
        let record =
            note.map(|n| audit_record::endpoint_quarantine(n, on, container_id, Some(&profile)));
        if let Err(err) = self.audit_first(record.as_ref()) {
            restore(self, before);
            return Err(err);
        }
        if let Err(source) = self.apply(&[Change::EndpointQuarantine(container_id)]) {
            restore(self, before);
            self.undo(&[Change::EndpointQuarantine(container_id)]);
            self.audit_reverted(record.as_ref(), &source);
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
        if let Err(source) = self.apply(&[Change::HostAddrs { old: &before }]) {
            let wanted = std::mem::replace(&mut self.host_addrs, before);
            self.undo(&[Change::HostAddrs { old: &wanted }]);
            return Err(RegistryError::Kernel(source));
        }
        Ok(())
    }

    fn release_zone_if_empty(&mut self, zone: &ZoneName) {
        if !self.store.retires_zone_ids()
            || self.endpoints.values().any(|e| &e.zone == zone)
            || !self.zone_ids.release(zone)
        {
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
