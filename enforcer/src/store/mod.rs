//! Where endpoints and zone ids live across restarts.
//!
//! # Layout
//! - [`Store`]: the interface every backend implements.
//! - [`local`]: [`LocalStore`], JSON files under the state directory, written
//!   atomically (temporary file, fsync, rename, directory fsync).
//! - [`etcd`]: [`etcd::EtcdStore`], the cluster store: one etcd transaction per
//!   change, optimistic concurrency, a watch of every other node's changes.
//! - [`zone_ids`]: [`ZoneIds`], the allocation of numeric zone ids.
//! - [`migrate`]: a node's local store moved into the cluster store
//!   (`--migrate-local-store`).

pub mod etcd;
pub mod index;
pub mod local;
mod local_policy;
pub mod migrate;
pub mod zone_ids;

use std::collections::BTreeSet;
use std::path::PathBuf;

use zonewarden_profiles::event::Reports;
use zonewarden_profiles::learned::LearnedEdges;
use zonewarden_profiles::{AttachmentKey, Endpoint, Profile, ZoneName};

pub use index::AuditHead;
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
    #[error(
        "{} of the store is missing: {}; the store's index (index.log) says it was written and never removed. \
         Restore it from a backup, or, to accept the state directory as it is, start the enforcer once with \
         --accept-store-as-is (recorded in the audit log)",
        if paths.len() == 1 { "a file" } else { "files" },
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Missing { paths: Vec<PathBuf> },
    #[error(
        "the cluster store (etcd at {endpoints}) is unavailable: {detail}; nothing was changed and \
         the enforcer keeps enforcing its last state. Check that etcd is running and reachable \
         from this node (and its TLS certificates), then retry"
    )]
    Unavailable { endpoints: String, detail: String },
    #[error(
        "{what} changed on another node since this node last saw it; nothing was changed here. \
         Retry: the other node's change reaches this node through its watch of the store first"
    )]
    Conflict { what: String },
    #[error(
        "etcd key {key} is corrupt: {detail}; fix or delete it with etcdctl (it is never silently dropped)"
    )]
    CorruptKey { key: String, detail: String },
    #[error("etcd refused to {action}: {detail}")]
    Refused {
        action: &'static str,
        detail: String,
    },
    #[error(
        "{path} no longer holds entry {seq} (line hash {line_hash}) that the store's index saw written: \
         the audit log was truncated, emptied or replaced; keep the file for the investigation, then \
         restore it from a backup or start the enforcer once with --accept-store-as-is"
    )]
    AuditBehind {
        path: PathBuf,
        seq: u64,
        line_hash: String,
    },
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
    /// Removes a zone's profile (`zwctl profile delete`); succeeds when there is none.
    /// Like every write of a change, it holds once [`Self::commit`] returns.
    fn delete_profile(&self, zone: &ZoneName) -> Result<(), StoreError>;
    /// Replaces the set of endpoints quarantined one by one.
    fn save_quarantined(&self, container_ids: &BTreeSet<String>) -> Result<(), StoreError>;
    /// Replaces the learned edges.
    fn save_learned(&self, learned: &LearnedEdges) -> Result<(), StoreError>;
    /// Replaces the recent drops and violations.
    fn save_reports(&self, reports: &Reports) -> Result<(), StoreError>;
    /// Whether the backend can take writes now, for the Status call.
    fn check_writable(&self) -> Result<(), StoreError>;
    /// Records what the changes since the last commit created and removed, with the
    /// audit log's head after them (`None`: no entry was written), durably: called
    /// after a change's audit entry and before the kernel sees the change.
    fn commit(&self, audit: Option<AuditHead>) -> Result<(), StoreError>;
    /// Takes the audit record of a policy change in progress into the cluster-wide
    /// trail, which [`Self::commit`] writes in the change's own transaction (the cluster
    /// store). A node's own `audit.log` is written by the registry; the local store has
    /// no other trail.
    fn stage_audit(&self, _record: &crate::audit::AuditRecord) {}
    /// Closes one mutation of the registry, whatever its outcome. A backend that
    /// stages writes until [`Self::commit`] drops what a refused change staged (its
    /// roll-back saves), and writes what a change saved after its commit (the
    /// roll-back of a change the kernel refused). The local store writes at once.
    fn end_change(&self) {}
    /// Whether a zone's id is retired with its last member. The cluster store keeps
    /// every id for good: another node may still hold (or be adding) members.
    fn retires_zone_ids(&self) -> bool {
        true
    }
    /// What `zwctl status` and `/metrics` show about the store.
    fn health(&self) -> StoreHealth {
        StoreHealth {
            kind: StoreKind::Local,
            up: self.check_writable().is_ok(),
            detail: String::new(),
            revision: 0,
            watch_lag: 0,
        }
    }
}

/// Which backend holds the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    Etcd,
}

/// The store's health as `zwctl status` and `/metrics` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub kind: StoreKind,
    /// Whether the store takes writes now.
    pub up: bool,
    /// Why it does not (empty when it does), or where it is.
    pub detail: String,
    /// The newest revision of the cluster store the watch delivered, or this node
    /// wrote under the prefix (0: local); writes outside the prefix do not count.
    pub revision: i64,
    /// Revisions the watch has seen but not yet applied (0: caught up, or local).
    pub watch_lag: i64,
}
