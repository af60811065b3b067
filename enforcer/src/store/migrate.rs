//! `--migrate-local-store`: a node's local store moved into the cluster store at
//! start, with its pods still enforced (no drain).
//!
//! What moves: the node's endpoints (as this node's), the zones' profiles, the
//! endpoints quarantined one by one, the learned edges and the recent reports. What
//! stays: the node's own `audit.log`, whose chain simply continues in cluster mode,
//! and the DEL queue. The move is written in etcd transactions small enough for
//! etcd's default `--max-txn-ops`, each guarded like any change (another node's
//! change in between refuses it), and it can be run again: a profile the cluster
//! already holds identically, an endpoint already written, learned edges already
//! taken in change nothing. Only when everything is in etcd are the local files moved
//! aside (never deleted) into `local-store-migrated-<unix ms>/`, with the node's
//! profiles as a `zwctl profile import` document beside them.
//!
//! A zone whose profile differs between the node and the cluster (other approvals,
//! another mode) is never merged silently: by default nothing at all is written and
//! every difference is listed; [`OnConflict::Cluster`] keeps the cluster's profile and
//! names the zone in the audit entry (the node's version stays in the moved files).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use zonewarden_profiles::export::{ProfileDelta, ProfileDocument, render};
use zonewarden_profiles::learned::LearnedEdges;
use zonewarden_profiles::{Profile, ZoneName};

use super::{LocalStore, Store, StoreError, StoredState};
use crate::audit::{Action, AuditLog, AuditRecord};

/// The directory the local files are moved into, with the time of the move.
pub const MOVED_PREFIX: &str = "local-store-migrated-";

/// Files of the local store beside its two directories. The index goes first when
/// they are moved: a move cut short then leaves a store without an index, which the
/// next start indexes anew (an index naming files that are gone would be refused as
/// tampering).
const FILES: [&str; 5] = [
    super::index::FILE_NAME,
    "zones.json",
    "quarantine.json",
    "learned.json",
    "reports.json",
];

/// How many records one transaction writes: well under etcd's default
/// `--max-txn-ops` (128), with room for a zone's two keys and the audit trail's.
const BATCH: usize = 40;

/// What `--migrate-local-store` does with a zone whose profile differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Nothing is written; every difference is listed.
    #[default]
    Refuse,
    /// The cluster's profile stays; the node's is kept with the moved files.
    Cluster,
}

/// What a state directory still holds of a local store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub endpoints: usize,
    pub profiles: usize,
    /// Which of the other files of the local store are there.
    pub files: Vec<&'static str>,
}

impl Leftovers {
    pub fn of(state_dir: &Path) -> Self {
        let records = |dir: &str| {
            std::fs::read_dir(state_dir.join(dir)).map_or(0, |entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
        };
        Self {
            endpoints: records("endpoints"),
            profiles: records("profiles"),
            files: FILES
                .into_iter()
                .filter(|f| state_dir.join(f).exists())
                .collect(),
        }
    }

    /// Whether the local store holds records a pod or an operator depends on.
    pub fn holds_records(&self) -> bool {
        self.endpoints > 0 || self.profiles > 0
    }

    fn is_empty(&self) -> bool {
        !self.holds_records() && self.files.is_empty()
    }
}

/// What a migration wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrated {
    pub endpoints: usize,
    /// Profiles the cluster did not hold.
    pub profiles_added: usize,
    /// Profiles the cluster already held as they were.
    pub profiles_same: usize,
    /// Zones whose differing profile stayed the cluster's ([`OnConflict::Cluster`]).
    pub kept_cluster: Vec<ZoneName>,
    pub quarantined: usize,
    pub learned_edges: usize,
    pub moved_to: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "--migrate-local-store: {} zone(s) have a profile here that differs from the cluster's, \
         and zonewarden never merges two policies silently; nothing was written to etcd and the \
         local store is untouched. {}. Either make them agree first (change the cluster's profile \
         with zwctl on a cluster node, or this node's with the local store), or start with \
         --migrate-conflicts cluster to keep the cluster's profiles (this node's versions are then \
         kept, for review, in profiles.yaml of the moved local store)",
        .0.len(),
        .0.join("; ")
    )]
    Conflicts(Vec<String>),
    #[error(
        "--migrate-local-store: {} zone(s) are quarantined on this node and not in the cluster \
         ({}), and --migrate-conflicts cluster never lifts a quarantine; nothing was written to \
         etcd and the local store is untouched. Quarantine them in the cluster first (zwctl \
         quarantine --zone Z on a cluster node), or lift them here (zwctl unquarantine --zone Z \
         with the local store) if the incident is over",
        .0.len(),
        .0.join(", ")
    )]
    WouldLiftQuarantine(Vec<String>),
    #[error(
        "--migrate-local-store: etcd refused a write after part of this node's local store was \
         written ({written} of its batches): {source}. Nothing is lost and the local store is \
         untouched; start again with --migrate-local-store once etcd answers: what etcd holds \
         already is not written twice"
    )]
    Partial {
        written: usize,
        #[source]
        source: StoreError,
    },
    #[error(
        "--migrate-local-store: everything is in etcd, but {path} could not be moved into {to}: \
         {source}; move it there by hand (nothing is lost: etcd holds its records) and restart"
    )]
    Move {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--migrate-local-store: everything is in etcd and in the cluster-wide audit trail, but \
         this node's audit.log refused the entry: {0}; check the state directory's disk"
    )]
    Audit(String),
}

/// Moves the local store of `state_dir` into `cluster` as node `node`'s; `None` when
/// there is no local store to move. `audit` is the node's own log.
pub fn migrate(
    state_dir: &Path,
    cluster: &dyn Store,
    node: &str,
    on_conflict: OnConflict,
    audit: &AuditLog,
) -> Result<Option<Migrated>, MigrateError> {
    if Leftovers::of(state_dir).is_empty() {
        return Ok(None);
    }
    // The local store is read as its own enforcer would: a damaged one is refused
    // with the same error, before anything is written.
    let local = LocalStore::open(state_dir)?.load()?;
    let held = cluster.load()?;
    let plan = Plan::new(&local, &held, on_conflict)?;
    let mut migrated = plan.write(state_dir, cluster, node, &local, held)?;
    migrated.moved_to = state_dir.join(format!("{MOVED_PREFIX}{}", crate::registry::now_unix_ms()));
    // The entry goes first: a move cut short is migrated again (and audited again)
    // at the next start, never left unaudited.
    let record = record(state_dir, migrated.describe());
    commit_batch(cluster, &std::cell::Cell::new(0), || {
        cluster.stage_audit(&record);
        Ok(())
    })?;
    audit
        .append_now(record)
        .map_err(|err| MigrateError::Audit(err.to_string()))?;
    move_aside(state_dir, &migrated.moved_to, &local.profiles)?;
    Ok(Some(migrated))
}

/// An audit entry of the move, by the enforcer, with `detail`.
fn record(state_dir: &Path, detail: String) -> AuditRecord {
    AuditRecord {
        at_unix_ms: crate::registry::now_unix_ms(),
        who: crate::audit::log::ENFORCER.to_owned(),
        action: Action::StoreMigrated,
        zone: None,
        target: Some(state_dir.display().to_string()),
        detail,
        version_before: None,
        version_after: None,
        reason: Some("--migrate-local-store".to_owned()),
    }
}

impl Migrated {
    /// The audit entry's detail.
    pub fn describe(&self) -> String {
        let mut what = format!(
            "this node's local store moved into the cluster store: {} endpoint(s), {} profile(s) \
             added ({} already identical), {} endpoint quarantine(s), {} learned edge(s); the local \
             files are kept in {}",
            self.endpoints,
            self.profiles_added,
            self.profiles_same,
            self.quarantined,
            self.learned_edges,
            self.moved_to.display()
        );
        if !self.kept_cluster.is_empty() {
            let zones: Vec<&str> = self.kept_cluster.iter().map(ZoneName::as_str).collect();
            what.push_str(&format!(
                "; the cluster's profile was kept for {} (this node's differed; it is in \
                 profiles.yaml there)",
                zones.join(", ")
            ));
        }
        what
    }
}

/// What the cluster lacks, decided before anything is written.
struct Plan<'a> {
    add: Vec<&'a Profile>,
    same: usize,
    kept_cluster: Vec<ZoneName>,
}

impl<'a> Plan<'a> {
    fn new(
        local: &'a StoredState,
        held: &StoredState,
        on_conflict: OnConflict,
    ) -> Result<Self, MigrateError> {
        let cluster: BTreeMap<&ZoneName, &Profile> =
            held.profiles.iter().map(|p| (&p.zone, p)).collect();
        let mut plan = Plan {
            add: Vec::new(),
            same: 0,
            kept_cluster: Vec::new(),
        };
        let mut conflicts = Vec::new();
        let mut would_lift = Vec::new();
        for ours in &local.profiles {
            let Some(theirs) = cluster.get(&ours.zone) else {
                plan.add.push(ours);
                continue;
            };
            match difference(theirs, ours) {
                None => plan.same += 1,
                Some(words) => {
                    conflicts.push(format!("zone {}: {words}", ours.zone));
                    plan.kept_cluster.push(ours.zone.clone());
                    if ours.quarantined && !theirs.quarantined {
                        would_lift.push(ours.zone.to_string());
                    }
                }
            }
        }
        if !conflicts.is_empty() && on_conflict == OnConflict::Refuse {
            return Err(MigrateError::Conflicts(conflicts));
        }
        // Keeping the cluster's profile must never release a zone held in quarantine.
        if !would_lift.is_empty() {
            return Err(MigrateError::WouldLiftQuarantine(would_lift));
        }
        Ok(plan)
    }

    /// Writes what the cluster lacks, in guarded transactions of [`BATCH`] records.
    fn write(
        self,
        state_dir: &Path,
        cluster: &dyn Store,
        node: &str,
        local: &StoredState,
        held: StoredState,
    ) -> Result<Migrated, MigrateError> {
        // Batches written so far: a failure after the first is a partial move.
        let written = std::cell::Cell::new(0);
        let partial = |source: StoreError| match written.get() {
            0 => MigrateError::Store(source),
            written => MigrateError::Partial { written, source },
        };
        // Zone ids first: the cluster's allocation, extended for the zones of this
        // node's endpoints (their ids on this node do not matter; the table is
        // reconciled with the cluster's at start).
        let mut ids = held.zone_ids;
        let missing: BTreeSet<&ZoneName> = local
            .endpoints
            .iter()
            .map(|e| &e.zone)
            .filter(|z| ids.get(z).is_none())
            .collect();
        for chunk in missing.into_iter().collect::<Vec<_>>().chunks(BATCH / 2) {
            for zone in chunk {
                ids.allocate(zone);
            }
            commit_batch(cluster, &written, || cluster.save_zone_ids(&ids)).map_err(&partial)?;
        }
        // Policy goes in with its audit entry, batch by batch: a move cut short leaves
        // no profile or quarantine in the cluster that the trail does not name.
        for chunk in self.add.chunks(BATCH) {
            let zones: Vec<&str> = chunk.iter().map(|p| p.zone.as_str()).collect();
            let entry = record(
                state_dir,
                format!(
                    "profiles moved from this node's local store: {}",
                    zones.join(", ")
                ),
            );
            commit_batch(cluster, &written, || {
                chunk.iter().try_for_each(|p| cluster.save_profile(p))?;
                cluster.stage_audit(&entry);
                Ok(())
            })
            .map_err(&partial)?;
        }
        let wanted: Vec<&String> = local.quarantined.difference(&held.quarantined).collect();
        let mut quarantined = held.quarantined.clone();
        for chunk in wanted.chunks(BATCH) {
            quarantined.extend(chunk.iter().map(|c| (*c).clone()));
            let ids: Vec<&str> = chunk.iter().map(|c| c.as_str()).collect();
            let entry = record(
                state_dir,
                format!(
                    "endpoint quarantines moved from this node's local store: {}",
                    ids.join(", ")
                ),
            );
            commit_batch(cluster, &written, || {
                cluster.save_quarantined(&quarantined)?;
                cluster.stage_audit(&entry);
                Ok(())
            })
            .map_err(&partial)?;
        }
        for chunk in local.endpoints.chunks(BATCH) {
            commit_batch(cluster, &written, || {
                chunk.iter().try_for_each(|endpoint| {
                    let mut endpoint = endpoint.clone();
                    endpoint.node = node.to_owned();
                    cluster.save_endpoint(&endpoint)
                })
            })
            .map_err(&partial)?;
        }
        let mut learned_edges = 0;
        if let Some(ours) = &local.learned {
            let mut learned = held
                .learned
                .unwrap_or_else(|| LearnedEdges::new(ours.limit));
            learned.absorb(ours);
            learned_edges = ours.edges.len();
            cluster.save_learned(&learned).map_err(&partial)?;
        }
        if let (None, Some(reports)) = (&held.reports, &local.reports) {
            cluster.save_reports(reports).map_err(&partial)?;
        }
        Ok(Migrated {
            endpoints: local.endpoints.len(),
            profiles_added: self.add.len(),
            profiles_same: self.same,
            kept_cluster: self.kept_cluster,
            quarantined: wanted.len(),
            learned_edges,
            moved_to: PathBuf::new(),
        })
    }
}

/// How this node's profile differs from the cluster's, in words; `None` when it
/// does not (versions and histories aside).
fn difference(cluster: &Profile, ours: &Profile) -> Option<String> {
    let delta = ProfileDelta::between(Some(cluster), &ProfileDocument::of(ours));
    let mut words = Vec::new();
    if !delta.added.is_empty() {
        words.push(format!(
            "this node approves {} edge(s) the cluster does not ({})",
            delta.added.len(),
            list(&delta.added)
        ));
    }
    if !delta.removed.is_empty() {
        words.push(format!(
            "the cluster approves {} edge(s) this node does not ({})",
            delta.removed.len(),
            list(&delta.removed)
        ));
    }
    if !delta.rejected_added.is_empty() || !delta.rejected_removed.is_empty() {
        words.push("the rejected edges differ".to_owned());
    }
    if let Some((theirs, ours)) = delta.mode {
        words.push(format!("mode {ours} here, {theirs} in the cluster"));
    }
    if delta.response.is_some() {
        words.push("the response rules differ".to_owned());
    }
    if cluster.quarantined != ours.quarantined {
        words.push(format!(
            "the zone is {} here and {} in the cluster",
            quarantine_word(ours.quarantined),
            quarantine_word(cluster.quarantined)
        ));
    }
    (!words.is_empty()).then(|| words.join(", "))
}

fn quarantine_word(on: bool) -> &'static str {
    if on { "quarantined" } else { "not quarantined" }
}

/// The first few edges, then how many more.
fn list(edges: &[zonewarden_profiles::Edge]) -> String {
    const SHOWN: usize = 3;
    let mut words: Vec<String> = edges.iter().take(SHOWN).map(ToString::to_string).collect();
    if edges.len() > SHOWN {
        words.push(format!("and {} more", edges.len() - SHOWN));
    }
    words.join(", ")
}

/// Stages one batch and commits it as one transaction; a refused one is dropped.
fn commit_batch(
    cluster: &dyn Store,
    written: &std::cell::Cell<usize>,
    stage: impl FnOnce() -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let result = stage().and_then(|()| cluster.commit(None));
    cluster.end_change();
    if result.is_ok() {
        written.set(written.get() + 1);
    }
    result
}

/// Moves the local store's files into `to` (a new directory beside them), with
/// `profiles.yaml`. The directories of records go last: a move cut short leaves a
/// local store that the next start migrates again (which changes nothing in etcd).
fn move_aside(state_dir: &Path, to: &Path, profiles: &[Profile]) -> Result<(), MigrateError> {
    let failed = |path: &Path, to: &Path| {
        let (path, to) = (path.to_path_buf(), to.to_path_buf());
        move |source| MigrateError::Move { path, to, source }
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(failed(to, to))?;
    let documents: Vec<ProfileDocument> = profiles.iter().map(ProfileDocument::of).collect();
    let yaml = to.join("profiles.yaml");
    std::fs::write(&yaml, render(&documents))
        .and_then(|()| std::fs::File::open(&yaml)?.sync_all())
        .map_err(failed(&yaml, to))?;
    let sync = |dir: &Path| std::fs::File::open(dir).and_then(|d| d.sync_all());
    let names = FILES.into_iter().chain(["profiles", "endpoints"]);
    for (i, name) in names.enumerate() {
        let path = state_dir.join(name);
        if !path.exists() {
            continue;
        }
        std::fs::rename(&path, to.join(name)).map_err(failed(&path, to))?;
        if i == 0 {
            // The index is gone for good before anything it names moves.
            sync(state_dir).map_err(failed(state_dir, to))?;
        }
    }
    sync(to).map_err(failed(to, to))?;
    sync(state_dir).map_err(failed(state_dir, to))
}

#[cfg(test)]
mod tests {
    use zonewarden_profiles::learned::Sample;
    use zonewarden_profiles::{Mode, Proto};

    use super::*;
    use crate::store::etcd::test_etcd::EtcdProcess;
    use crate::store::etcd::{EtcdConfig, EtcdStore};
    use crate::test_support::endpoint;

    fn cluster(etcd: &EtcdProcess, node: &str) -> EtcdStore {
        EtcdStore::connect(EtcdConfig {
            endpoints: vec![etcd.endpoint()],
            prefix: "/zw-migrate".into(),
            node: node.into(),
            tls: None,
            unpublished: None,
        })
        .unwrap()
    }

    fn zone(name: &str) -> ZoneName {
        ZoneName::parse(name).unwrap()
    }

    fn profile(name: &str, mode: Mode, edges: &[&str]) -> Profile {
        let mut profile = Profile::new(zone(name));
        profile.mode = mode;
        profile.version = 3;
        profile.approved = edges.iter().map(|e| e.parse().unwrap()).collect();
        profile
    }

    /// A local store of `count` endpoints in three zones, two profiles, one endpoint
    /// quarantine and two learned edges.
    fn local_store(dir: &Path, count: usize) -> StoredState {
        let store = LocalStore::open(dir).unwrap();
        let mut ids = crate::store::ZoneIds::default();
        for i in 0..count {
            let zone_name = ["shop/web", "shop/db", "shop/cache"][i % 3];
            let ip = format!("10.20.{}.{}", i / 256, i % 256 + 1) + "/32";
            let ep = endpoint(&format!("c{i}"), zone_name, &[&ip]);
            ids.allocate(&ep.zone);
            store.save_endpoint(&ep).unwrap();
        }
        store.save_zone_ids(&ids).unwrap();
        let web_db = "shop/web->shop/db:5432/tcp";
        store
            .save_profile(&profile("shop/db", Mode::Enforce, &[web_db]))
            .unwrap();
        store
            .save_profile(&profile("shop/web", Mode::Learn, &[web_db]))
            .unwrap();
        store
            .save_quarantined(&BTreeSet::from(["c1".to_owned()]))
            .unwrap();
        let mut learned = LearnedEdges::new(100);
        for port in [5432, 22] {
            learned.record(
                format!("shop/web->shop/db:{port}/tcp").parse().unwrap(),
                Sample {
                    src: "10.20.0.0".parse().unwrap(),
                    src_port: 40000,
                    dst: "10.20.0.1".parse().unwrap(),
                    dst_port: port,
                    proto: Proto::Tcp,
                },
                "node-1",
                1_000,
            );
        }
        store.save_learned(&learned).unwrap();
        store.commit(None).unwrap();
        store.load().unwrap()
    }

    #[test]
    fn a_differing_profile_refuses_the_move_until_told_to_keep_the_clusters() {
        let etcd = EtcdProcess::start();
        let dir = tempfile::tempdir().unwrap();
        // More endpoints than etcd takes in one transaction (--max-txn-ops 128).
        let local = local_store(dir.path(), 150);
        // Another node already put shop/db into the cluster, in monitor.
        let other = cluster(&etcd, "node-2");
        other.load().unwrap();
        other
            .save_profile(&profile("shop/db", Mode::Monitor, &[]))
            .unwrap();
        other.commit(None).unwrap();
        other.end_change();

        let here = cluster(&etcd, "node-1");
        let err = migrate(
            dir.path(),
            &here,
            "node-1",
            OnConflict::Refuse,
            &AuditLog::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("zone shop/db: this node approves 1 edge(s) the cluster does not (shop/web->shop/db:5432/tcp), mode enforce here, monitor in the cluster")
                && err.contains("nothing was written")
                && err.contains("--migrate-conflicts cluster"),
            "{err}"
        );
        // Nothing was written, nothing moved. (Read as node-1: other nodes leave out
        // the endpoints of a node that has no live record yet.)
        let held = cluster(&etcd, "node-1").load().unwrap();
        assert!(held.endpoints.is_empty() && held.quarantined.is_empty());
        assert_eq!(held.profiles.len(), 1);
        assert_eq!(Leftovers::of(dir.path()).endpoints, 150);

        let done = migrate(
            dir.path(),
            &here,
            "node-1",
            OnConflict::Cluster,
            &AuditLog::default(),
        )
        .unwrap()
        .expect("a local store to move");
        assert_eq!(
            (
                done.endpoints,
                done.profiles_added,
                done.profiles_same,
                done.quarantined,
                done.learned_edges
            ),
            (150, 1, 0, 1, 2)
        );
        assert_eq!(done.kept_cluster, vec![zone("shop/db")]);

        // Every record is in etcd, as node-1's.
        let held = cluster(&etcd, "node-1").load().unwrap();
        assert_eq!(held.endpoints.len(), 150);
        assert!(held.endpoints.iter().all(|e| e.node == "node-1"));
        let mut wanted = local.endpoints.clone();
        for e in &mut wanted {
            e.node = "node-1".into();
        }
        let mut got = held.endpoints.clone();
        got.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(got, wanted);
        for z in ["shop/web", "shop/db", "shop/cache"] {
            assert!(held.zone_ids.get(&zone(z)).is_some(), "{z} has no id");
        }
        let by_zone: BTreeMap<&str, &Profile> =
            held.profiles.iter().map(|p| (p.zone.as_str(), p)).collect();
        assert_eq!(by_zone["shop/db"].mode, Mode::Monitor, "the cluster's kept");
        assert_eq!(by_zone["shop/web"], &local.profiles[1]);
        assert_eq!(held.quarantined, BTreeSet::from(["c1".to_owned()]));
        let learned = here
            .load()
            .unwrap()
            .learned
            .expect("node-1's learned edges");
        assert_eq!(learned.edges.len(), 2);
        let trail = String::from_utf8(here.audit_trail().unwrap().bytes).unwrap();
        assert!(
            trail.contains("\"store-migrated\"") && trail.contains("shop/db"),
            "{trail}"
        );
        assert!(
            trail.contains("profiles moved from this node's local store: shop/web")
                && trail.contains("endpoint quarantines moved from this node's local store: c1"),
            "the policy it added has its entries, batch by batch: {trail}"
        );

        // The local files are aside, with the node's profiles as an import document.
        assert_eq!(Leftovers::of(dir.path()), Leftovers::default());
        let moved = &done.moved_to;
        assert_eq!(
            std::fs::read_dir(moved.join("endpoints")).unwrap().count(),
            150
        );
        let yaml = std::fs::read_to_string(moved.join("profiles.yaml")).unwrap();
        let documents = zonewarden_profiles::export::parse(&yaml).unwrap();
        assert_eq!(documents.len(), 2);

        // Run again: nothing to move.
        let again = migrate(
            dir.path(),
            &here,
            "node-1",
            OnConflict::Refuse,
            &AuditLog::default(),
        )
        .unwrap();
        assert_eq!(again, None);
    }

    #[test]
    fn keeping_the_clusters_profile_never_lifts_a_quarantine_held_here() {
        let etcd = EtcdProcess::start();
        let dir = tempfile::tempdir().unwrap();
        local_store(dir.path(), 3);
        let web_db = "shop/web->shop/db:5432/tcp";
        let local = LocalStore::open(dir.path()).unwrap();
        let mut held_here = profile("shop/db", Mode::Enforce, &[web_db]);
        held_here.quarantined = true;
        local.save_profile(&held_here).unwrap();
        local.commit(None).unwrap();
        let here = cluster(&etcd, "node-1");
        here.load().unwrap();
        here.save_profile(&profile("shop/db", Mode::Enforce, &[web_db]))
            .unwrap();
        here.commit(None).unwrap();
        here.end_change();

        let err = migrate(
            dir.path(),
            &here,
            "node-1",
            OnConflict::Cluster,
            &AuditLog::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("quarantined on this node and not in the cluster (shop/db)")
                && err.contains("nothing was written"),
            "{err}"
        );
        let held = here.load().unwrap();
        assert!(held.endpoints.is_empty(), "nothing was written");
        assert!(!held.profiles[0].quarantined);
        assert_eq!(Leftovers::of(dir.path()).endpoints, 3);
    }
}
