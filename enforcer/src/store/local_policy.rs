//! The policy half of the local store: one file per zone profile under `profiles/`,
//! and single files for the quarantined endpoints, the learned edges and the recent
//! reports. Every write is atomic (temporary file, fsync, rename, directory fsync).

use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use zonewarden_profiles::{Profile, ZoneName};

use super::StoreError;
use super::local::{LocalStore, io_error};

impl LocalStore {
    fn profiles_dir(&self) -> PathBuf {
        self.state_dir.join("profiles")
    }

    pub fn profile_path(&self, zone: &ZoneName) -> PathBuf {
        let hex: String = Sha256::digest(zone.as_str().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.profiles_dir().join(format!("{}.json", &hex[..32]))
    }

    pub(super) fn quarantine_file(&self) -> PathBuf {
        self.state_dir.join("quarantine.json")
    }

    pub(super) fn learned_file(&self) -> PathBuf {
        self.state_dir.join("learned.json")
    }

    pub(super) fn reports_file(&self) -> PathBuf {
        self.state_dir.join("reports.json")
    }

    /// A whole file as `T`; `None` when it does not exist, an error naming it when corrupt.
    pub(super) fn load_optional<T: DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, StoreError> {
        let text = match fs::read_to_string(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other.map_err(io_error("read", path))?,
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
    }

    pub(super) fn load_profiles(&self) -> Result<Vec<Profile>, StoreError> {
        let dir = self.profiles_dir();
        let mut profiles = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(profiles),
            other => other.map_err(io_error("list", &dir))?,
        };
        for entry in entries {
            let path = entry.map_err(io_error("list", &dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let profile: Profile =
                self.load_optional(&path)?
                    .ok_or_else(|| StoreError::Corrupt {
                        path: path.clone(),
                        detail: "it vanished while being read".into(),
                    })?;
            if self.profile_path(&profile.zone) != path {
                return Err(StoreError::Corrupt {
                    path,
                    detail: format!("its name does not match the zone {} it holds", profile.zone),
                });
            }
            profiles.push(profile);
        }
        profiles.sort_by(|a, b| a.zone.cmp(&b.zone));
        Ok(profiles)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use zonewarden_profiles::learned::LearnedEdges;
    use zonewarden_profiles::profile::Actor;

    use super::*;
    use crate::store::Store;

    #[test]
    fn policy_round_trips_and_corruption_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let zone = ZoneName::parse("shop/db").unwrap();
        let mut profile = Profile::new(zone.clone());
        let actor = Actor {
            who: "root".into(),
            at_unix_ms: 5,
            comment: "reviewed".into(),
        };
        profile
            .approve(["shop/api->shop/db:5432/tcp".parse().unwrap()], &actor)
            .unwrap();
        store.save_profile(&profile).unwrap();
        store
            .save_quarantined(&BTreeSet::from(["c1".to_owned()]))
            .unwrap();
        store.save_learned(&LearnedEdges::new(10)).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.profiles, vec![profile.clone()]);
        assert!(loaded.quarantined.contains("c1"));
        assert_eq!(loaded.learned, Some(LearnedEdges::new(10)));

        // Deleted durably, and through the index: a restart does not miss the file.
        store.delete_profile(&zone).unwrap();
        store.delete_profile(&zone).unwrap();
        store.commit(None).unwrap();
        assert!(!store.profile_path(&zone).exists());
        let reopened = LocalStore::open(dir.path()).unwrap();
        assert_eq!(reopened.load().unwrap().profiles, vec![]);
        store.save_profile(&profile).unwrap();

        std::fs::write(store.profile_path(&zone), "{ not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains(&store.profile_path(&zone).display().to_string()),
            "{err}"
        );
    }
}
