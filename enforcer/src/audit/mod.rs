//! The audit trail: every approval, rejection, removal, import, mode change,
//! quarantine and endpoint add or remove, appended to `<state-dir>/audit.log` as
//! one JSON line, hash-chained so that an edited, dropped or reordered entry shows.
//!
//! # Layout
//! - [`entry`]: one entry, its line and its hash.
//! - [`chain`]: the pure check of a whole log and of its tail.
//! - [`log`]: [`AuditLog`], the appender (`O_APPEND` + fsync) and its readers.
//! - [`record`]: the records the gRPC service writes: who, what, versions, reason.
//! - [`service`]: the `zonewarden.v1.Audit` service (`List`, `Verify`).

pub mod chain;
pub mod entry;
pub mod log;
pub mod record;
pub mod service;

pub use entry::{Action, AuditEntry, AuditRecord};
pub use log::{AuditError, AuditLog};
pub use record::{ChangeNote, Note};
pub use service::AuditService;

/// The log's file name in the state directory.
pub const FILE_NAME: &str = "audit.log";
