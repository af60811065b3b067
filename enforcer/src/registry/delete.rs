//! Deleting a zone's profile (`zwctl profile delete`): the zone's mode, approved and
//! rejected edges and history go, and with them the zone, which then has neither
//! endpoints nor a profile.
//!
//! Refused while the zone has endpoints (on any node the registry knows), and while
//! other zones' profiles approve or reject its edges, unless forced: then those edges
//! are removed from their profiles in the same change. The order is every change's:
//! the store (the profile removed, the other profiles saved, one commit), the audit
//! entries (one `remove` per other zone, then the `profile-delete`), then the kernel
//! (one incremental batch, no flush); a failure puts everything back.

use std::collections::BTreeMap;

use tracing::{error, info};
use zonewarden_profiles::incremental::Change;
use zonewarden_profiles::profile::Actor;
use zonewarden_profiles::zone::nearest;
use zonewarden_profiles::{Edge, Profile, ZoneName};

use super::state::RegistryState;
use super::{EndpointRegistry, RegistryError};
use crate::audit::record::{self as audit_record, Note};
use crate::audit::{Action, AuditRecord};
use crate::registry::now_unix_ms;

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileDeleted {
    /// The profile as it was before it was deleted.
    pub profile: Profile,
    /// Other zones' profiles that `force` changed, as they are now.
    pub changed: Vec<Profile>,
    /// The zone's edges removed from those profiles.
    pub removed_edges: Vec<Edge>,
}

/// At most this many edges or endpoints are named in a refusal.
const NAMED: usize = 5;

/// `a, b, c (and 4 more)`.
fn some_of(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        text.push_str(&format!(" (and {} more)", items.len() - NAMED));
    }
    text
}

impl RegistryState {
    /// Why `zone`'s profile cannot be deleted, if it cannot (see the module doc);
    /// otherwise the edges other profiles hold with it, by profile.
    fn deletable(
        &self,
        zone: &ZoneName,
        force: bool,
    ) -> Result<BTreeMap<ZoneName, Vec<Edge>>, RegistryError> {
        if zone.is_builtin() || self.policy.cidr_zones.contains_key(zone) {
            return Err(RegistryError::NotDeletable {
                zone: zone.clone(),
                why: "it is built in (host, world) or a CIDR zone of --cidr-zone; withdraw \
                      its approvals with zwctl profile remove ZONE --all instead"
                    .to_owned(),
            });
        }
        let members: Vec<&zonewarden_profiles::Endpoint> = self
            .endpoints
            .values()
            .filter(|e| &e.zone == zone)
            .collect();
        if !members.is_empty() {
            let mut nodes: Vec<String> = members.iter().map(|e| e.node.clone()).collect();
            nodes.sort();
            nodes.dedup();
            let names: Vec<String> = members
                .iter()
                .map(|e| match (&e.pod_namespace, &e.pod_name) {
                    (Some(ns), Some(pod)) => format!("pod {ns}/{pod}"),
                    (None, Some(pod)) => format!("pod {pod}"),
                    _ => format!("container {}", e.key.container_id),
                })
                .collect();
            return Err(RegistryError::NotDeletable {
                zone: zone.clone(),
                why: format!(
                    "it has {} endpoint(s) on node(s) {}: {}; a zone keeps its profile while \
                     workloads are in it: delete or move them first (zwctl get endpoints --zone {zone})",
                    members.len(),
                    nodes.join(", "),
                    some_of(&names)
                ),
            });
        }
        if !self.policy.profiles.contains_key(zone) {
            let known = self
                .policy
                .profiles
                .keys()
                .chain(self.policy.cidr_zones.keys())
                .chain(self.endpoints.values().map(|e| &e.zone));
            return Err(RegistryError::NoSuchZone {
                zone: zone.clone(),
                nearest: nearest(zone.as_str(), known).cloned(),
            });
        }
        let held: BTreeMap<ZoneName, Vec<Edge>> = self
            .policy
            .profiles
            .values()
            .filter(|p| &p.zone != zone)
            .filter_map(|p| {
                let edges: Vec<Edge> = p
                    .approved
                    .iter()
                    .chain(&p.rejected)
                    .filter(|e| e.touches(zone))
                    .cloned()
                    .collect();
                (!edges.is_empty()).then(|| (p.zone.clone(), edges))
            })
            .collect();
        if !held.is_empty() && !force {
            let named: Vec<String> = held
                .iter()
                .flat_map(|(owner, edges)| edges.iter().map(move |e| format!("{owner}: {e}")))
                .collect();
            let (owner, edges) = held.iter().next().expect("not empty");
            return Err(RegistryError::NotDeletable {
                zone: zone.clone(),
                why: format!(
                    "other zones' profiles hold its edges ({}); remove them first \
                     (e.g. zwctl profile remove {owner} --edge '{}'), or pass --force to \
                     remove them in the same change",
                    some_of(&named),
                    edges[0]
                ),
            });
        }
        Ok(held)
    }

    /// Deletes `zone`'s profile (see the module doc).
    pub fn delete_profile(
        &mut self,
        zone: &ZoneName,
        force: bool,
        actor: &Actor,
    ) -> Result<ProfileDeleted, RegistryError> {
        let held = self.deletable(zone, force)?;
        let deleted = self.policy.profiles[zone].clone();
        // The other zones' profiles without the zone's edges: (old, new).
        let mut changed: Vec<(Profile, Profile)> = Vec::new();
        let mut removed_edges = Vec::new();
        for (owner, edges) in &held {
            let old = self.policy.profiles[owner].clone();
            let mut new = old.clone();
            new.remove(edges, actor);
            removed_edges.extend(edges.iter().cloned());
            changed.push((old, new));
        }
        let restore_store = |state: &Self, upto: usize| {
            let mut restored = state.store.save_profile(&deleted);
            for (old, _) in &changed[..upto] {
                restored = restored.and_then(|()| state.store.save_profile(old));
            }
            if let Err(err) = restored {
                error!(%zone, ?err, "cannot restore the profiles after a failed deletion; fix the state directory");
            }
        };
        self.store.delete_profile(zone)?;
        for (index, (_, new)) in changed.iter().enumerate() {
            if let Err(err) = self.store.save_profile(new) {
                restore_store(self, index);
                return Err(err.into());
            }
        }
        let note = Note::from(actor);
        let mut records: Vec<AuditRecord> = changed
            .iter()
            .map(|(_, new)| {
                let edges = &held[&new.zone];
                let target = crate::audit::record::edges_target(edges);
                let mut record = audit_record::profile_change(&note, Action::Remove, new, target);
                record.detail = format!(
                    "{} (edges of zone {zone}, deleted with --force)",
                    record.detail
                );
                record
            })
            .collect();
        records.push(AuditRecord {
            at_unix_ms: now_unix_ms(),
            who: note.who.clone(),
            action: Action::ProfileDelete,
            zone: Some(zone.to_string()),
            target: Some(zone.to_string()),
            detail: delete_detail(&deleted, &removed_edges),
            version_before: Some(deleted.version),
            version_after: None,
            reason: Some(note.reason.clone()),
        });
        if let Err(err) = self.audit_first_all(&records) {
            restore_store(self, changed.len());
            return Err(err);
        }
        self.policy.profiles.remove(zone);
        for (_, new) in &changed {
            self.policy.profiles.insert(new.zone.clone(), new.clone());
        }
        let mut changes = vec![Change::ProfileChanged {
            zone,
            old: Some(&deleted),
        }];
        changes.extend(changed.iter().map(|(old, new)| Change::ProfileChanged {
            zone: &new.zone,
            old: Some(old),
        }));
        if let Err(source) = self.apply(&changes) {
            self.policy.profiles.insert(zone.clone(), deleted.clone());
            for (old, _) in &changed {
                self.policy.profiles.insert(old.zone.clone(), old.clone());
            }
            let mut inverse = vec![Change::ProfileChanged { zone, old: None }];
            inverse.extend(changed.iter().map(|(_, new)| Change::ProfileChanged {
                zone: &new.zone,
                old: Some(new),
            }));
            self.undo(&inverse);
            restore_store(self, changed.len());
            self.audit_reverted_all(&records, &source);
            return Err(RegistryError::Kernel(source));
        }
        info!(%zone, version = deleted.version, others = changed.len(), "profile deleted");
        Ok(ProfileDeleted {
            profile: deleted,
            changed: changed.into_iter().map(|(_, new)| new).collect(),
            removed_edges,
        })
    }
}

/// `mode enforce, 3 approved, 1 rejected edge(s); removed from other zones: a->b:80/tcp`.
fn delete_detail(deleted: &Profile, removed: &[Edge]) -> String {
    let mut detail = format!(
        "mode {}, {} approved, {} rejected edge(s)",
        deleted.mode,
        deleted.approved.len(),
        deleted.rejected.len()
    );
    if !removed.is_empty() {
        let names: Vec<String> = removed.iter().map(ToString::to_string).collect();
        detail.push_str(&format!("; removed from other zones: {}", names.join(", ")));
    }
    detail
}

impl EndpointRegistry {
    /// Deletes a zone's profile; see [`RegistryState::delete_profile`].
    pub async fn delete_profile(
        &self,
        zone: ZoneName,
        force: bool,
        actor: Actor,
    ) -> Result<ProfileDeleted, RegistryError> {
        self.mutate(move |state| state.delete_profile(&zone, force, &actor))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use zonewarden_profiles::Mode;

    use super::*;
    use crate::audit::AuditLog;
    use crate::nft::ruleset::MemoryDataplane;
    use crate::registry::IfMissing;
    use crate::store::{LocalStore, Store};
    use crate::test_support::{add_request, key, note, noted, registry_over};

    fn zone(name: &str) -> ZoneName {
        ZoneName::parse_any(name).unwrap()
    }

    fn actor() -> Actor {
        Actor {
            who: "test".into(),
            at_unix_ms: 1,
            comment: "retired".into(),
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        store: Arc<LocalStore>,
        dataplane: Arc<MemoryDataplane>,
        registry: EndpointRegistry,
    }

    /// shop/web (10.0.0.5) approves shop/web->shop/old:80/tcp; shop/old (10.0.0.6)
    /// enforces and rejects shop/old->world:22/tcp.
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(dir.path()).unwrap());
        let dataplane = Arc::new(MemoryDataplane::new());
        let registry = registry_over(store.clone(), dataplane.clone())
            .with_audit(AuditLog::open(dir.path().join(crate::audit::FILE_NAME)));
        registry.sync_kernel().await.unwrap();
        for (cid, z, ip) in [
            ("c1", "shop/web", "10.0.0.5/24"),
            ("c2", "shop/old", "10.0.0.6/24"),
        ] {
            registry
                .add(add_request(cid, z, &[ip]), note())
                .await
                .unwrap();
        }
        let a = actor();
        registry
            .change_profile(
                zone("shop/web"),
                IfMissing::Refuse,
                move |p| p.approve(["shop/web->shop/old:80/tcp".parse().unwrap()], &a),
                noted(),
            )
            .await
            .unwrap();
        let a = actor();
        registry
            .change_profile(
                zone("shop/old"),
                IfMissing::Refuse,
                move |p| {
                    p.set_mode(Mode::Enforce, &a);
                    p.reject(&["shop/old->world:22/tcp".parse().unwrap()], &a)
                },
                noted(),
            )
            .await
            .unwrap();
        Fixture {
            dir,
            store,
            dataplane,
            registry,
        }
    }

    fn audit_actions(f: &Fixture) -> Vec<(String, Option<String>)> {
        let bytes = std::fs::read(f.dir.path().join(crate::audit::FILE_NAME)).unwrap();
        crate::audit::chain::entries(&bytes)
            .0
            .into_iter()
            .map(|(_, e)| (e.action.to_string(), e.zone))
            .collect()
    }

    #[tokio::test]
    async fn refusals_name_what_keeps_the_zone_and_change_nothing() {
        let f = fixture().await;
        let delete = |z: &str, force: bool| f.registry.delete_profile(zone(z), force, actor());

        let err = delete("shop/old", true).await.unwrap_err().to_string();
        assert!(
            err.contains("has 1 endpoint(s) on node(s) node-1") && err.contains("container c2"),
            "{err}"
        );
        f.registry.del(key("c2"), note()).await.unwrap();

        let err = delete("shop/oldd", false).await.unwrap_err();
        assert!(matches!(err, RegistryError::NoSuchZone { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "zone \"shop/oldd\" does not exist (no endpoints, no profile); did you mean \
             \"shop/old\"? nothing was deleted"
        );
        let err = delete("world", true).await.unwrap_err().to_string();
        assert!(err.contains("built in"), "{err}");

        let err = delete("shop/old", false).await.unwrap_err().to_string();
        assert!(
            err.contains("shop/web: shop/web->shop/old:80/tcp")
                && err.contains("zwctl profile remove shop/web --edge 'shop/web->shop/old:80/tcp'")
                && err.contains("--force"),
            "{err}"
        );
        let snapshot = f.registry.snapshot();
        assert!(snapshot.policy.profiles.contains_key(&zone("shop/old")));
        assert_eq!(
            snapshot.policy.profiles[&zone("shop/web")].approved.len(),
            1
        );
        assert!(
            !audit_actions(&f).iter().any(|(a, _)| a == "profile-delete"),
            "a refusal writes no entry"
        );
    }

    #[tokio::test]
    async fn force_removes_the_held_edges_in_the_same_change() {
        let f = fixture().await;
        f.registry.del(key("c2"), note()).await.unwrap();
        let web_version = f.registry.profile_version(&zone("shop/web"));
        let deleted = f
            .registry
            .delete_profile(zone("shop/old"), true, actor())
            .await
            .unwrap();
        assert_eq!(deleted.profile.mode, Mode::Enforce);
        assert_eq!(
            deleted.removed_edges,
            vec!["shop/web->shop/old:80/tcp".parse::<Edge>().unwrap()]
        );
        assert_eq!(deleted.changed.len(), 1);
        assert_eq!(deleted.changed[0].version, web_version + 1);
        assert!(deleted.changed[0].approved.is_empty());

        let snapshot = f.registry.snapshot();
        assert!(!snapshot.zone_names().contains(&zone("shop/old")));
        assert!(
            snapshot.policy.profiles[&zone("shop/web")]
                .approved
                .is_empty()
        );
        // Durable: a restart loads neither the profile nor the removed edge.
        let stored = f.store.load().unwrap();
        assert_eq!(
            stored
                .profiles
                .iter()
                .map(|p| p.zone.as_str())
                .collect::<Vec<_>>(),
            vec!["shop/web"]
        );
        assert!(stored.profiles[0].approved.is_empty());
        assert!(!f.store.profile_path(&zone("shop/old")).exists());
        // The kernel follows: shop/web's egress set has no address of shop/old left.
        let kernel = f.dataplane.ruleset();
        assert!(
            kernel.zones.values().all(|z| z.allow_out.is_empty()),
            "{kernel:?}"
        );
        assert_eq!(kernel, snapshot_desired(&f));
        // The other zone's removal, then the deletion, each with its entry.
        let actions = audit_actions(&f);
        let tail: Vec<_> = actions[actions.len() - 2..].to_vec();
        assert_eq!(
            tail,
            vec![
                ("remove".to_owned(), Some("shop/web".to_owned())),
                ("profile-delete".to_owned(), Some("shop/old".to_owned())),
            ]
        );
        // Deleted once: a second delete is a zone that does not exist.
        let err = f
            .registry
            .delete_profile(zone("shop/old"), true, actor())
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::NoSuchZone { .. }), "{err:?}");
    }

    fn snapshot_desired(f: &Fixture) -> zonewarden_profiles::ruleset::Ruleset {
        f.registry
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .desired()
    }

    #[tokio::test]
    async fn a_kernel_refusal_puts_every_profile_back() {
        let f = fixture().await;
        f.registry.del(key("c2"), note()).await.unwrap();
        let before = f.registry.snapshot().policy.clone();
        f.dataplane.fail_next(1);
        let err = f
            .registry
            .delete_profile(zone("shop/old"), true, actor())
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Kernel(_)), "{err:?}");
        assert_eq!(f.registry.snapshot().policy.profiles, before.profiles);
        let stored = f.store.load().unwrap();
        assert_eq!(stored.profiles.len(), 2, "both profiles are back on disk");
        let actions = audit_actions(&f);
        assert_eq!(
            actions[actions.len() - 2..]
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>(),
            vec!["reverted", "reverted"]
        );
    }
}
