//! Where endpoints and zone ids live across restarts.
//!
//! # Layout
//! - [`Store`]: the interface every backend implements (local files now, etcd later).
//! - [`local`]: [`LocalStore`], JSON files under the state directory, written
//!   atomically (temporary file, fsync, rename, directory fsync).
//! - [`zone_ids`]: [`ZoneIds`], the allocation of numeric zone ids.

pub mod local;
mod local_policy;
pub mod zone_ids;

use std::collections::BTreeSet;
use std::path::PathBuf;

use zonewarden_profiles::event::Reports;
use zonewarden_profiles::learned::LearnedEdges;
use zonewarden_profiles::{AttachmentKey, Endpoint, Profile};

pub use local::LocalStore;
pub use zone_ids::ZoneIds;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot {action} {path}: {source}; check that the state directory exists, is writable by root and the disk is not full"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is corrupt: {detail}; move it out of the state directory (the enforcer \
         does not start while it is there), then re-run the affected containers' CNI ADD \
         or restore the file from a backup"
    )]
    Corrupt { path: PathBuf, detail: String },
}

/// Everything a backend holds, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredState {
    pub endpoints: Vec<Endpoint>,
    pub zone_ids: ZoneIds,
    pub profiles: Vec<Profile>,
    /// Container ids of endpoints quarantined one by one.
    pub quarantined: BTreeSet<String>,
    /// `None` when nothing was learned yet.
    pub learned: Option<LearnedEdges>,
    pub reports: Option<Reports>,
}

/// A backend of the enforcer's state. Calls block; the registry makes them from
/// blocking threads, one mutation at a time.
pub trait Store: Send + Sync + 'static {
    /// Loads every endpoint and the zone ids; a corrupt record is an error, never
    /// silently dropped.
    fn load(&self) -> Result<StoredState, StoreError>;
    /// Creates or replaces the record of `endpoint.key`.
    fn save_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;
    /// Removes the record of `key`; succeeds when there is none.
    fn delete_endpoint(&self, key: &AttachmentKey) -> Result<(), StoreError>;
    /// Replaces the zone-id table.
    fn save_zone_ids(&self, zone_ids: &ZoneIds) -> Result<(), StoreError>;
    /// Creates or replaces a zone's profile, durably: an approval is on disk before it
    /// takes effect.
    fn save_profile(&self, profile: &Profile) -> Result<(), StoreError>;
    /// Replaces the set of endpoints quarantined one by one.
    fn save_quarantined(&self, container_ids: &BTreeSet<String>) -> Result<(), StoreError>;
    /// Replaces the learned edges.
    fn save_learned(&self, learned: &LearnedEdges) -> Result<(), StoreError>;
    /// Replaces the recent drops and violations.
    fn save_reports(&self, reports: &Reports) -> Result<(), StoreError>;
    /// Whether the backend can take writes now, for the Status call.
    fn check_writable(&self) -> Result<(), StoreError>;
}
