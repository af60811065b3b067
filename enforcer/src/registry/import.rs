//! Importing profiles: several zones' profiles set at once, in one kernel transaction.
//!
//! Every changed profile is written durably first, then one audit entry per changed
//! zone (naming the edges it added and removed), then the kernel moves to the new
//! ruleset in one transaction; when any step fails, every profile is restored on disk
//! and in memory, so an import applies to all its zones or to none.

use tracing::{error, info};
use zonewarden_profiles::export::{self, ProfileDelta, ProfileDocument};
use zonewarden_profiles::incremental::Change;
use zonewarden_profiles::profile::Actor;
use zonewarden_profiles::{Profile, ZoneName};

use super::state::RegistryState;
use super::{EndpointRegistry, RegistryError};
use crate::audit::AuditRecord;
use crate::audit::record::{self as audit_record, Note};

/// The entry of one zone an import changed: the edges it added and removed (and
/// rejected or forgot), by name, the first few of each when there are many.
fn import_record(note: &Note, z: &ZoneImport) -> AuditRecord {
    let mut what: Vec<String> = [
        ("added", &z.delta.added),
        ("removed", &z.delta.removed),
        ("rejected", &z.delta.rejected_added),
        ("forgot the rejection of", &z.delta.rejected_removed),
    ]
    .into_iter()
    .filter(|(_, edges)| !edges.is_empty())
    .map(|(verb, edges)| audit_record::named_edges(verb, edges))
    .collect();
    if let Some((before, after)) = &z.delta.mode {
        what.push(format!("mode {before} -> {after}"));
    }
    if what.is_empty() {
        what.push("profile replaced".to_owned());
    }
    audit_record::import(
        note,
        z.zone.as_str(),
        (z.version_before, z.version_after),
        what.join("; "),
    )
}

/// What importing one document did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneImport {
    pub zone: ZoneName,
    pub delta: ProfileDelta,
    pub version_before: u64,
    pub version_after: u64,
}

/// The changes `documents` make to `profiles`, without applying them.
pub fn plan<'a>(
    documents: &[ProfileDocument],
    current: impl Fn(&ZoneName) -> Option<&'a Profile>,
) -> Vec<ZoneImport> {
    documents
        .iter()
        .map(|doc| {
            let profile = current(&doc.zone);
            let version = profile.map_or(0, |p| p.version);
            ZoneImport {
                zone: doc.zone.clone(),
                delta: ProfileDelta::between(profile, doc),
                version_before: version,
                version_after: version,
            }
        })
        .collect()
}

impl RegistryState {
    /// Sets every zone's profile to its document, all or nothing.
    pub fn import_profiles(
        &mut self,
        documents: &[ProfileDocument],
        actor: &Actor,
    ) -> Result<Vec<ZoneImport>, RegistryError> {
        let mut outcome = plan(documents, |z| self.policy.profiles.get(z));
        let mut changed: Vec<(Option<Profile>, Profile)> = Vec::new();
        for (doc, result) in documents.iter().zip(&mut outcome) {
            let old = self.policy.profiles.get(&doc.zone).cloned();
            let mut profile = old
                .clone()
                .unwrap_or_else(|| Profile::new(doc.zone.clone()));
            if export::apply(&mut profile, doc, actor) > 0 {
                result.version_after = profile.version;
                changed.push((old, profile));
            }
        }
        if changed.is_empty() {
            return Ok(outcome);
        }
        for (index, (_, profile)) in changed.iter().enumerate() {
            if let Err(err) = self.store.save_profile(profile) {
                self.restore_profiles(&changed[..index]);
                return Err(err.into());
            }
        }
        let note = Note::from(actor);
        let records: Vec<AuditRecord> = outcome
            .iter()
            .filter(|z| z.version_after != z.version_before)
            .map(|z| import_record(&note, z))
            .collect();
        if let Err(err) = self.audit_first_all(&records) {
            self.restore_profiles(&changed);
            return Err(err);
        }
        for (_, profile) in &changed {
            self.policy
                .profiles
                .insert(profile.zone.clone(), profile.clone());
        }
        let changes: Vec<Change<'_>> = changed
            .iter()
            .map(|(old, new)| Change::ProfileChanged {
                zone: &new.zone,
                old: old.as_ref(),
            })
            .collect();
        if let Err(source) = self.apply(&changes) {
            self.restore_profiles(&changed);
            let inverse: Vec<Change<'_>> = changed
                .iter()
                .map(|(_, new)| Change::ProfileChanged {
                    zone: &new.zone,
                    old: Some(new),
                })
                .collect();
            self.undo(&inverse);
            self.audit_reverted_all(&records, &source);
            return Err(RegistryError::Kernel(source));
        }
        info!(zones = changed.len(), "profiles imported");
        Ok(outcome)
    }

    /// Puts back the profiles an import replaced, in memory and on disk.
    fn restore_profiles(&mut self, changed: &[(Option<Profile>, Profile)]) {
        for (old, new) in changed {
            let zone = &new.zone;
            let restored = match old {
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
                error!(%zone, ?err, "cannot restore a profile after a failed import; fix the state directory");
            }
        }
    }
}

impl EndpointRegistry {
    /// Imports validated documents: every zone's profile or none; see
    /// [`RegistryState::import_profiles`].
    pub async fn import_profiles(
        &self,
        documents: Vec<ProfileDocument>,
        actor: Actor,
    ) -> Result<Vec<ZoneImport>, RegistryError> {
        self.mutate(move |state| state.import_profiles(&documents, &actor))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use zonewarden_profiles::Mode;
    use zonewarden_profiles::policy::NodeSettings;

    use super::*;
    use crate::nft::ruleset::MemoryDataplane;
    use crate::store::{LocalStore, Store};

    fn actor() -> Actor {
        Actor {
            who: "test".into(),
            at_unix_ms: 1,
            comment: "import".into(),
        }
    }

    const DOCS: &str = "\
apiVersion: zonewarden.io/v1
kind: ZoneProfile
zone: a
mode: enforce
approved: [\"a->b:80/tcp\"]
---
apiVersion: zonewarden.io/v1
kind: ZoneProfile
zone: b
mode: monitor
approved: []
";

    #[tokio::test]
    async fn an_import_applies_to_every_zone_or_to_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::open(dir.path()).unwrap());
        let dataplane = Arc::new(MemoryDataplane::new());
        let registry = EndpointRegistry::open(
            "node-1".into(),
            store.clone(),
            dataplane.clone(),
            NodeSettings::default(),
            store.load().unwrap(),
        )
        .unwrap()
        .with_connection_flusher(|_| Ok(0));
        registry.sync_kernel().await.unwrap();
        let docs = export::parse(DOCS).unwrap();

        // The kernel step fails: nothing changes, on disk or in memory.
        dataplane.fail_next(1);
        let before = dataplane.ruleset();
        let err = registry
            .import_profiles(docs.clone(), actor())
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Kernel(_)), "{err}");
        assert!(registry.snapshot().policy.profiles.is_empty());
        assert!(
            store
                .load()
                .unwrap()
                .profiles
                .iter()
                .all(|p| p.version == 0),
            "nothing durable either"
        );
        assert_eq!(dataplane.ruleset(), before);

        let done = registry
            .import_profiles(docs.clone(), actor())
            .await
            .unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!((done[0].version_before, done[0].version_after), (0, 1));
        let policy = registry.snapshot().policy.clone();
        assert_eq!(policy.mode(&ZoneName::parse("a").unwrap()), Mode::Enforce);
        assert_eq!(policy.mode(&ZoneName::parse("b").unwrap()), Mode::Monitor);
        let stored = store.load().unwrap();
        assert_eq!(stored.profiles.len(), 2, "both written durably");

        // The same import again changes nothing and bumps no version.
        let again = registry.import_profiles(docs, actor()).await.unwrap();
        assert!(
            again
                .iter()
                .all(|z| z.delta.count() == 0 && z.version_after == 1)
        );
    }
}
