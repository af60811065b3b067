//! Where endpoints and zone ids live across restarts.
//!
//! # Layout
//! - [`Store`]: the interface every backend implements (local files now, etcd later).
//! - [`local`]: [`LocalStore`], JSON files under the state directory, written
//!   atomically (temporary file, fsync, rename, directory fsync).
//! - [`zone_ids`]: [`ZoneIds`], the allocation of numeric zone ids.

pub mod local;
pub mod zone_ids;

use std::path::PathBuf;

use zonewarden_profiles::{AttachmentKey, Endpoint};

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
    /// Whether the backend can take writes now, for the Status call.
    fn check_writable(&self) -> Result<(), StoreError>;
}
