//! Changes other nodes made, as the cluster store's watch delivers them: taken into
//! the state, the compiled ruleset and the kernel as the same incremental element
//! batches as local changes, but neither written back to the store (it holds them
//! already) nor recorded a second time in the audit log (the node that made the
//! change recorded it). A batch the kernel refuses leaves the state as it was; the
//! watch then resyncs.

use std::collections::BTreeSet;

use tracing::{error, info, warn};
use zonewarden_profiles::incremental::Change;
use zonewarden_profiles::{AttachmentKey, Endpoint, Profile, ZoneName};

use super::state::RegistryState;
use super::{EndpointRegistry, RegistryError};

/// One change another node made, decoded from the cluster store.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteChange {
    /// An endpoint of another node, new or replaced.
    Endpoint(Box<Endpoint>),
    /// An endpoint of another node is gone.
    EndpointGone(AttachmentKey),
    /// A zone's profile (mode, approvals, quarantine) changed.
    Profile(Box<Profile>),
    /// A zone's profile was deleted from the store: the zone is back to the defaults.
    ProfileGone(ZoneName),
    /// A zone got its id (on another node, or by a change of this node the kernel refused).
    ZoneId { zone: ZoneName, id: u32 },
    /// An endpoint was quarantined (or released) one by one.
    Quarantine { container_id: String, on: bool },
}

/// What a batch replaced, to build the compiler's changes and to undo them.
#[derive(Default)]
struct Applied {
    endpoints: Vec<(AttachmentKey, Option<Endpoint>, Option<Endpoint>)>,
    profiles: Vec<(ZoneName, Option<Profile>)>,
    quarantine: Vec<(String, bool)>,
    zone_ids_before: Option<crate::store::ZoneIds>,
    /// A zone got an id while it already had members: the compiled ruleset is rebuilt.
    rebuild: bool,
}

impl RegistryState {
    /// Takes `changes` into the state and the kernel in one batch; returns how many
    /// took effect (a change the state already holds is none). Endpoints of this node
    /// are this node's to say: a remote change of one is ignored.
    pub fn apply_remote(&mut self, changes: &[RemoteChange]) -> Result<usize, RegistryError> {
        let mut applied = Applied::default();
        // Zone ids first: an endpoint of a zone without an id is not compiled.
        for change in changes {
            if let RemoteChange::ZoneId { zone, id } = change {
                let before = self.zone_ids.clone();
                match self.zone_ids.adopt(zone, *id) {
                    Ok(true) => {
                        applied.zone_ids_before.get_or_insert(before);
                        applied.rebuild |= self.endpoints.values().any(|e| &e.zone == zone);
                    }
                    Ok(false) => {}
                    Err(why) => {
                        error!(%zone, id, %why, "a zone id from the cluster store is refused; its zone's endpoints stay out of the maps")
                    }
                }
            }
        }
        for change in changes {
            match change {
                RemoteChange::Endpoint(endpoint) => {
                    if endpoint.node == self.node {
                        warn!(key = %endpoint.key, "a change of this node's endpoint in the cluster store is ignored: this node is its owner");
                        continue;
                    }
                    if self
                        .endpoints
                        .get(&endpoint.key)
                        .is_some_and(|o| o.node == self.node)
                    {
                        warn!(key = %endpoint.key, "another node publishes an endpoint under this node's key; this node's stays");
                        continue;
                    }
                    // An unchanged record (a resync lists every endpoint again) leaves
                    // the map alone: a map shared with the snapshot is not copied.
                    if self.endpoints.get(&endpoint.key) == Some(&**endpoint) {
                        continue;
                    }
                    let mut endpoint = (**endpoint).clone();
                    self.zone_ids.share_name(&mut endpoint.zone);
                    let old = self.endpoints_mut().insert(endpoint.clone());
                    applied
                        .endpoints
                        .push((endpoint.key.clone(), old, Some(endpoint)));
                }
                RemoteChange::EndpointGone(key) => match self.endpoints.get(key) {
                    Some(old) if old.node != self.node => {
                        let old = self.endpoints_mut().remove(key);
                        applied.endpoints.push((key.clone(), old, None));
                    }
                    _ => {}
                },
                RemoteChange::Profile(profile) => {
                    let old = self
                        .policy
                        .profiles
                        .insert(profile.zone.clone(), (**profile).clone());
                    if old.as_ref() == Some(&**profile) {
                        continue;
                    }
                    applied.profiles.push((profile.zone.clone(), old));
                }
                RemoteChange::ProfileGone(zone) => {
                    if let Some(old) = self.policy.profiles.remove(zone) {
                        applied.profiles.push((zone.clone(), Some(old)));
                    }
                }
                RemoteChange::Quarantine { container_id, on } => {
                    let changed = if *on {
                        self.quarantined.insert(container_id.clone())
                    } else {
                        self.quarantined.remove(container_id)
                    };
                    if changed {
                        applied.quarantine.push((container_id.clone(), *on));
                    }
                }
                RemoteChange::ZoneId { .. } => {}
            }
        }
        let count = applied.endpoints.len()
            + applied.profiles.len()
            + applied.quarantine.len()
            + usize::from(applied.zone_ids_before.is_some());
        if count == 0 {
            return Ok(0);
        }
        let result = if applied.rebuild {
            // Rare: members were known before their zone's id. Rebuild and reconcile.
            self.recompile();
            self.reconcile().map(drop)
        } else {
            let compiled = compiler_changes(&applied);
            self.apply(&compiled).map_err(RegistryError::Kernel)
        };
        if let Err(err) = result {
            self.restore_remote(applied);
            return Err(err);
        }
        info!(count, "changes of other nodes applied");
        Ok(count)
    }

    /// Puts the state back after the kernel refused a batch, and the compiled
    /// ruleset with it.
    fn restore_remote(&mut self, applied: Applied) {
        let mut new_profiles = Vec::new();
        for (zone, old) in applied.profiles.iter().rev() {
            let new = match old {
                Some(old) => self.policy.profiles.insert(zone.clone(), old.clone()),
                None => self.policy.profiles.remove(zone),
            };
            new_profiles.push((zone.clone(), new));
        }
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for (container_id, on) in &applied.quarantine {
            if *on {
                self.quarantined.remove(container_id);
            } else {
                self.quarantined.insert(container_id.clone());
            }
            touched.insert(container_id.clone());
        }
        for (key, old, _) in applied.endpoints.iter().rev() {
            match old {
                Some(old) => self.endpoints_mut().insert(old.clone()),
                None => self.endpoints_mut().remove(key),
            };
        }
        if let Some(before) = applied.zone_ids_before {
            self.zone_ids = before;
        }
        if applied.rebuild {
            self.recompile();
            return;
        }
        let mut inverse = Vec::new();
        for (_, _, new) in &applied.endpoints {
            if let Some(new) = new {
                inverse.push(Change::EndpointRemoved(new));
            }
        }
        for (_, old, _) in &applied.endpoints {
            if let Some(old) = old {
                inverse.push(Change::EndpointAdded(old));
            }
        }
        for (zone, new) in &new_profiles {
            inverse.push(Change::ProfileChanged {
                zone,
                old: new.as_ref(),
            });
        }
        for container_id in &touched {
            inverse.push(Change::EndpointQuarantine(container_id));
        }
        self.undo(&inverse);
    }
}

/// The compiler's view of a batch already made to the state.
fn compiler_changes(applied: &Applied) -> Vec<Change<'_>> {
    let mut out = Vec::new();
    for (_, old, new) in &applied.endpoints {
        if let Some(old) = old {
            out.push(Change::EndpointRemoved(old));
        }
        if let Some(new) = new {
            out.push(Change::EndpointAdded(new));
        }
    }
    for (zone, old) in &applied.profiles {
        out.push(Change::ProfileChanged {
            zone,
            old: old.as_ref(),
        });
    }
    for (container_id, _) in &applied.quarantine {
        out.push(Change::EndpointQuarantine(container_id));
    }
    out
}

impl EndpointRegistry {
    /// Applies changes other nodes made (see [`RegistryState::apply_remote`]). `due`
    /// runs first under the registry's lock and keeps the changes still due: one
    /// decoded before a local change committed a newer value of its record must not
    /// put the older value back. `then` runs under the lock once they took effect, so
    /// that the store learns what the registry now holds before any local change can
    /// be made on top of it.
    pub async fn apply_remote(
        &self,
        changes: Vec<RemoteChange>,
        due: impl FnOnce(Vec<RemoteChange>) -> Vec<RemoteChange> + Send + 'static,
        then: impl FnOnce() + Send + 'static,
    ) -> Result<usize, RegistryError> {
        self.mutate(move |state| {
            let changes = due(changes);
            let count = state.apply_remote(&changes)?;
            then();
            Ok(count)
        })
        .await
    }
}
