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

use super::{Store, StoreError, StoredState, ZoneIds};

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
        })
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
        Self::write_json(&self.endpoint_path(&endpoint.key), &record)
    }

    fn delete_endpoint(&self, key: &AttachmentKey) -> Result<(), StoreError> {
        let path = self.endpoint_path(key);
        match fs::remove_file(&path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(io_error("remove", &path))?,
        }
        let dir = &self.endpoints_dir;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync", dir))
    }

    fn save_zone_ids(&self, zone_ids: &ZoneIds) -> Result<(), StoreError> {
        Self::write_json(&self.zones_file, zone_ids)
    }

    fn save_profile(&self, profile: &zonewarden_profiles::Profile) -> Result<(), StoreError> {
        Self::write_json(&self.profile_path(&profile.zone), profile)
    }

    fn save_quarantined(
        &self,
        container_ids: &std::collections::BTreeSet<String>,
    ) -> Result<(), StoreError> {
        Self::write_json(&self.quarantine_file(), container_ids)
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
}
