//! The local backend: one JSON file per endpoint under `<state-dir>/endpoints/`,
//! named by the SHA-256 of its attachment key, and `<state-dir>/zones.json` for the
//! zone ids. Every write is atomic (temporary file, fsync, rename, directory fsync).

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use atomic_write_file::AtomicWriteFile;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zonewarden_profiles::{AttachmentKey, Endpoint};

use super::index::StoreIndex;
use super::{AuditHead, Store, StoreError, StoredState, ZoneIds};

const RECORD_VERSION: u32 = 1;

/// The file format of one endpoint, versioned for later migrations.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointRecord {
    version: u32,
    endpoint: Endpoint,
}

/// Files under a state directory such as `/var/lib/zonewarden`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    endpoints_dir: PathBuf,
    zones_file: PathBuf,
    pub(super) state_dir: PathBuf,
    /// What the store holds, journaled apart from the files (see [`super::index`]).
    index: std::sync::Arc<std::sync::Mutex<StoreIndex>>,
}

pub(super) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

impl LocalStore {
    /// Opens the store, creating its directories (mode 0700) when missing.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let endpoints_dir = state_dir.join("endpoints");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&endpoints_dir)
            .map_err(io_error("create directory", &endpoints_dir))?;
        let profiles_dir = state_dir.join("profiles");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&profiles_dir)
            .map_err(io_error("create directory", &profiles_dir))?;
        Ok(Self {
            endpoints_dir,
            zones_file: state_dir.join("zones.json"),
            state_dir: state_dir.to_path_buf(),
            index: std::sync::Arc::new(std::sync::Mutex::new(StoreIndex::open(state_dir)?)),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, StoreIndex> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `path` relative to the state directory, as the index names it.
    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.state_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Writes `value` to `path`, noting in the index a file that did not exist.
    pub(super) fn write_indexed(
        &self,
        path: &Path,
        value: &impl Serialize,
    ) -> Result<(), StoreError> {
        let existed = path.exists();
        Self::write_json(path, value)?;
        if !existed {
            self.index().created(self.relative(path));
        }
        Ok(())
    }

    /// Removes `path` (nothing when it does not exist), the index first: a crash
    /// between the two leaves a file the index does not list (taken in at start),
    /// never a missing one. The directory is fsynced: the removal is durable.
    fn remove_indexed(&self, path: &Path) -> Result<(), StoreError> {
        if !path.exists() {
            return Ok(());
        }
        {
            let mut index = self.index();
            index.removed(self.relative(path));
            index.commit(None)?;
        }
        match fs::remove_file(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(io_error("remove", path))?,
        }
        let dir = path.parent().unwrap_or(&self.state_dir);
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync", dir))
    }

    /// Every file of the store on disk (the ones the index keeps track of).
    fn files_on_disk(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut files = std::collections::BTreeSet::new();
        for dir in [self.endpoints_dir.clone(), self.state_dir.join("profiles")] {
            for entry in fs::read_dir(&dir).map_err(io_error("list", &dir))? {
                let path = entry.map_err(io_error("list", &dir))?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if !name.starts_with('.') && name.ends_with(".json") {
                    files.insert(self.relative(&path));
                }
            }
        }
        for path in [self.zones_file.clone(), self.quarantine_file()] {
            if path.exists() {
                files.insert(self.relative(&path));
            }
        }
        Ok(files)
    }

    /// The audit log's bytes (empty when it does not exist).
    fn audit_bytes(&self) -> Result<(PathBuf, Vec<u8>), StoreError> {
        let path = self.state_dir.join(crate::audit::FILE_NAME);
        match fs::read(&path) {
            Ok(bytes) => Ok((path, bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok((path, Vec::new())),
            Err(err) => Err(io_error("read", &path)(err)),
        }
    }

    /// Compares the disk and the audit log with the index: a missing file or an audit
    /// log behind the index is an error; files the index does not know are taken in.
    fn check_index(&self) -> Result<(), StoreError> {
        let on_disk = self.files_on_disk()?;
        let (audit_path, audit) = self.audit_bytes()?;
        let head = crate::audit::chain::last_head(&audit)
            .map(|(seq, line_hash)| AuditHead { seq, line_hash });
        let mut index = self.index();
        if !index.existed {
            tracing::info!(
                files = on_disk.len(),
                "the store has no index yet: indexing what it holds"
            );
            return index.reset(on_disk, head);
        }
        let expected = index.files();
        let missing: Vec<PathBuf> = expected
            .difference(&on_disk)
            .map(|name| self.state_dir.join(name))
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::Missing { paths: missing });
        }
        if let Some(anchor) = index.anchor()
            && !crate::audit::chain::holds(&audit, anchor.seq, &anchor.line_hash)
        {
            return Err(StoreError::AuditBehind {
                path: audit_path,
                seq: anchor.seq,
                line_hash: anchor.line_hash.clone(),
            });
        }
        let unknown: Vec<String> = on_disk.difference(&expected).cloned().collect();
        if !unknown.is_empty() {
            tracing::warn!(
                ?unknown,
                "files the store's index does not know (written just before a crash?): taken in"
            );
            for name in unknown {
                index.created(name);
            }
            index.commit(None)?;
        }
        Ok(())
    }

    /// Takes the state directory as it is: the index is rebuilt from the files on disk
    /// and the audit log's current head. Returns what differed from the old index, for
    /// the audit entry that records the decision.
    pub fn accept_as_is(&self) -> Result<String, StoreError> {
        let on_disk = self.files_on_disk()?;
        let (_, audit) = self.audit_bytes()?;
        let head = crate::audit::chain::last_head(&audit)
            .map(|(seq, line_hash)| AuditHead { seq, line_hash });
        let mut index = self.index();
        let missing: Vec<String> = index.files().difference(&on_disk).cloned().collect();
        let anchor = index.anchor().cloned();
        let behind = anchor
            .as_ref()
            .is_some_and(|a| !crate::audit::chain::holds(&audit, a.seq, &a.line_hash));
        index.reset(on_disk, head)?;
        let mut what = Vec::new();
        if !missing.is_empty() {
            what.push(format!("missing files accepted: {}", missing.join(", ")));
        }
        if behind && let Some(a) = anchor {
            what.push(format!(
                "audit log no longer holds entry {} it held (chain head {})",
                a.seq,
                a.line_hash.get(..12).unwrap_or(&a.line_hash)
            ));
        }
        if what.is_empty() {
            what.push("the store matched its index".to_owned());
        }
        Ok(what.join("; "))
    }

    /// The file that holds the record of `key`.
    pub fn endpoint_path(&self, key: &AttachmentKey) -> PathBuf {
        let mut hash = Sha256::new();
        for part in [&key.network, &key.container_id, &key.ifname] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.endpoints_dir.join(format!("{hex}.json"))
    }

    fn load_endpoint(&self, path: &Path) -> Result<Endpoint, StoreError> {
        let text = fs::read_to_string(path).map_err(io_error("read", path))?;
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let record: EndpointRecord =
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if record.version != RECORD_VERSION {
            return Err(corrupt(format!(
                "record version {} is not {RECORD_VERSION}",
                record.version
            )));
        }
        if self.endpoint_path(&record.endpoint.key) != path {
            let key = &record.endpoint.key;
            return Err(corrupt(format!(
                "its name does not match the attachment {key} it holds"
            )));
        }
        Ok(record.endpoint)
    }

    fn load_zone_ids(&self) -> Result<ZoneIds, StoreError> {
        let path = &self.zones_file;
        let text = match fs::read_to_string(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(ZoneIds::default()),
            other => other.map_err(io_error("read", path))?,
        };
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.clone(),
            detail,
        };
        let ids: ZoneIds = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        ids.validate().map_err(corrupt)?;
        Ok(ids)
    }

    pub(super) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(value).map_err(|e| {
            io_error("encode", path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        json.push(b'\n');
        let mut file = AtomicWriteFile::open(path).map_err(io_error("open for writing", path))?;
        file.write_all(&json).map_err(io_error("write", path))?;
        file.commit().map_err(io_error("commit", path))
    }
}

impl Store for LocalStore {
    fn load(&self) -> Result<StoredState, StoreError> {
        self.check_index()?;
        let dir = &self.endpoints_dir;
        let mut endpoints = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
            let path = entry.map_err(io_error("list", dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // Leftover temporary files of an interrupted write start with a dot.
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            endpoints.push(self.load_endpoint(&path)?);
        }
        endpoints.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(StoredState {
            endpoints,
            zone_ids: self.load_zone_ids()?,
            profiles: self.load_profiles()?,
            quarantined: self
                .load_optional(&self.quarantine_file())?
                .unwrap_or_default(),
            learned: self.load_optional(&self.learned_file())?,
            reports: self.load_optional(&self.reports_file())?,
        })
    }

    fn save_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let record = EndpointRecord {
            version: RECORD_VERSION,
            endpoint: endpoint.clone(),
        };
        self.write_indexed(&self.endpoint_path(&endpoint.key), &record)
    }

    fn delete_endpoint(&self, key: &AttachmentKey) -> Result<(), StoreError> {
        self.remove_indexed(&self.endpoint_path(key))
    }

    fn save_zone_ids(&self, zone_ids: &ZoneIds) -> Result<(), StoreError> {
        self.write_indexed(&self.zones_file, zone_ids)
    }

    fn save_profile(&self, profile: &zonewarden_profiles::Profile) -> Result<(), StoreError> {
        self.write_indexed(&self.profile_path(&profile.zone), profile)
    }

    fn delete_profile(&self, zone: &zonewarden_profiles::ZoneName) -> Result<(), StoreError> {
        self.remove_indexed(&self.profile_path(zone))
    }

    fn save_quarantined(
        &self,
        container_ids: &std::collections::BTreeSet<String>,
    ) -> Result<(), StoreError> {
        self.write_indexed(&self.quarantine_file(), container_ids)
    }

    fn save_learned(
        &self,
        learned: &zonewarden_profiles::learned::LearnedEdges,
    ) -> Result<(), StoreError> {
        Self::write_json(&self.learned_file(), learned)
    }

    fn save_reports(
        &self,
        reports: &zonewarden_profiles::event::Reports,
    ) -> Result<(), StoreError> {
        Self::write_json(&self.reports_file(), reports)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        let dir = &self.endpoints_dir;
        nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
            .map_err(|errno| io_error("write into", dir)(errno.into()))
    }

    fn commit(&self, audit: Option<AuditHead>) -> Result<(), StoreError> {
        self.index().commit(audit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::endpoint;

    fn store() -> (tempfile::TempDir, LocalStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn endpoints_and_zone_ids_round_trip() {
        let (_dir, store) = store();
        assert_eq!(store.load().unwrap(), StoredState::default());
        let (a, b) = (
            endpoint("c1", "shop/web", &["10.0.0.5/24"]),
            endpoint("c2", "shop/db", &["fd00::2/64"]),
        );
        store.save_endpoint(&a).unwrap();
        store.save_endpoint(&b).unwrap();
        let mut ids = ZoneIds::default();
        ids.allocate(&a.zone);
        store.save_zone_ids(&ids).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.endpoints, vec![a.clone(), b.clone()]);
        assert_eq!(loaded.zone_ids, ids);

        store.delete_endpoint(&a.key).unwrap();
        store.delete_endpoint(&a.key).unwrap();
        assert_eq!(store.load().unwrap().endpoints, vec![b]);
    }

    #[test]
    fn file_names_are_hashes_of_the_whole_key() {
        let (_dir, store) = store();
        let a = endpoint("c1", "z", &[]).key;
        let mut b = a.clone();
        b.ifname = "eth1".into();
        let name = store
            .endpoint_path(&a)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(name.len(), 64 + ".json".len());
        assert_ne!(store.endpoint_path(&a), store.endpoint_path(&b));
    }

    #[test]
    fn a_corrupt_endpoint_file_is_named_and_never_dropped() {
        let (_dir, store) = store();
        let a = endpoint("c1", "shop/web", &["10.0.0.5/24"]);
        store.save_endpoint(&a).unwrap();
        let path = store.endpoint_path(&a.key);
        fs::write(&path, "{\"version\": 1, \"endpoint\": {").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains(path.to_str().unwrap()),
            "the error must name the file: {err}"
        );
        assert!(
            err.contains("move it out"),
            "the error must say what to do: {err}"
        );
    }

    #[test]
    fn a_record_under_the_wrong_name_is_corrupt() {
        let (_dir, store) = store();
        let a = endpoint("c1", "shop/web", &[]);
        store.save_endpoint(&a).unwrap();
        let wrong = store.endpoints_dir.join("0000.json");
        fs::rename(store.endpoint_path(&a.key), &wrong).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("does not match the attachment"), "{err}");
    }

    #[test]
    fn a_damaged_zone_table_is_corrupt_and_temp_files_are_ignored() {
        let (dir, store) = store();
        fs::write(store.endpoints_dir.join(".abc.json.tmp"), "garbage").unwrap();
        assert!(
            store.load().is_ok(),
            "leftover temporary files must be skipped"
        );
        fs::write(
            dir.path().join("zones.json"),
            r#"{"next_id":2,"zones":{"a":1,"b":1}}"#,
        )
        .unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains("zones.json") && err.contains("share id"),
            "{err}"
        );
    }

    #[test]
    fn a_profile_keeps_its_response_rules() {
        use zonewarden_profiles::response::{ResponseRules, ViolationsRule};
        let (dir, store) = store();
        let mut profile = zonewarden_profiles::Profile::new(
            zonewarden_profiles::ZoneName::parse("shop/api").unwrap(),
        );
        profile.response = ResponseRules {
            violations: Some(ViolationsRule::new(3, 600).unwrap()),
            new_port: true,
        };
        store.save_profile(&profile).unwrap();
        store.commit(None).unwrap();
        let loaded = LocalStore::open(dir.path()).unwrap().load().unwrap();
        assert_eq!(loaded.profiles, vec![profile]);
    }

    #[test]
    fn a_deleted_file_is_named_at_start() {
        let (dir, store) = store();
        let a = endpoint("c1", "shop/web", &["10.0.0.5/24"]);
        store.save_endpoint(&a).unwrap();
        let profile = zonewarden_profiles::Profile::new(a.zone.clone());
        store.save_profile(&profile).unwrap();
        store
            .save_quarantined(&std::collections::BTreeSet::from(["c1".to_owned()]))
            .unwrap();
        store.commit(None).unwrap();
        for victim in [
            store.endpoint_path(&a.key),
            store.profile_path(&a.zone),
            store.quarantine_file(),
        ] {
            let kept = fs::read(&victim).unwrap();
            fs::remove_file(&victim).unwrap();
            let reopened = LocalStore::open(dir.path()).unwrap();
            let err = reopened.load().unwrap_err().to_string();
            assert!(
                err.contains(victim.to_str().unwrap()) && err.contains("missing"),
                "{err}"
            );
            assert!(
                err.contains("--accept-store-as-is"),
                "says what to do: {err}"
            );
            fs::write(&victim, kept).unwrap();
        }
        assert!(LocalStore::open(dir.path()).unwrap().load().is_ok());
    }

    #[test]
    fn removals_through_the_store_are_not_missing() {
        let (dir, store) = store();
        let a = endpoint("c1", "shop/web", &[]);
        store.save_endpoint(&a).unwrap();
        store.commit(None).unwrap();
        store.delete_endpoint(&a.key).unwrap();
        store.commit(None).unwrap();
        assert!(LocalStore::open(dir.path()).unwrap().load().is_ok());
    }

    #[test]
    fn an_emptied_audit_log_is_detected_and_can_be_accepted() {
        let (dir, store) = store();
        let log = crate::audit::AuditLog::open(dir.path().join(crate::audit::FILE_NAME));
        let record = |n: u64| crate::audit::AuditRecord {
            at_unix_ms: i64::try_from(n).unwrap(),
            who: "test".into(),
            action: crate::audit::Action::Approve,
            zone: None,
            target: None,
            detail: String::new(),
            version_before: None,
            version_after: None,
            reason: None,
        };
        for n in 0..3 {
            let head = log.append_now(record(n)).unwrap();
            store.commit(head).unwrap();
        }
        assert!(LocalStore::open(dir.path()).unwrap().load().is_ok());
        let audit = dir.path().join(crate::audit::FILE_NAME);
        fs::write(&audit, "").unwrap();
        let reopened = LocalStore::open(dir.path()).unwrap();
        let err = reopened.load().unwrap_err().to_string();
        assert!(err.contains("no longer holds entry 3"), "{err}");
        let what = reopened.accept_as_is().unwrap();
        assert!(what.contains("no longer holds entry 3"), "{what}");
        assert!(reopened.load().is_ok(), "accepted as it is");
    }

    #[test]
    fn an_old_store_is_indexed_and_unknown_files_are_taken_in() {
        let (dir, store) = store();
        let a = endpoint("c1", "shop/web", &[]);
        store.save_endpoint(&a).unwrap();
        // A store of an older version: no index at all.
        fs::remove_file(dir.path().join(super::super::index::FILE_NAME)).ok();
        let reopened = LocalStore::open(dir.path()).unwrap();
        assert_eq!(reopened.load().unwrap().endpoints, vec![a.clone()]);
        // A file written just before a crash, before its index line.
        let b = endpoint("c2", "shop/web", &[]);
        write_unindexed(&reopened, &b);
        reopened.commit(None).unwrap();
        let again = LocalStore::open(dir.path()).unwrap();
        assert_eq!(again.load().unwrap().endpoints.len(), 2);
        let path = again.endpoint_path(&b.key);
        fs::remove_file(&path).unwrap();
        let err = LocalStore::open(dir.path()).unwrap().load().unwrap_err();
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    }

    /// Writes an endpoint record without telling the index (a crash between the two).
    fn write_unindexed(store: &LocalStore, ep: &Endpoint) {
        let record = EndpointRecord {
            version: RECORD_VERSION,
            endpoint: ep.clone(),
        };
        LocalStore::write_json(&store.endpoint_path(&ep.key), &record).unwrap();
    }
}
