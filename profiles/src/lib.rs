//! zonewarden's pure core: the model of zones and endpoints and every decision made
//! on it. No I/O, no async runtime, no netlink: the enforcer and the CNI plugin apply
//! what this crate decides.
//!
//! # Layout
//! - [`zone`]: zone names, their validation and the built-in zones.
//! - [`derive`]: which zone a workload belongs to (annotation, CNI_ARGS, config, pod name).
//! - [`zone_kind`]: how a zone's members got it, as `zwctl get zones` shows it.
//! - [`claim`]: which zones a pod annotation may name (its own namespace, operator exceptions).
//! - [`endpoint`]: one attachment of a container to a network and its key.
//! - [`edge`]: `src zone -> dst zone, protocol, port`, the unit of learning and approval.
//! - [`ipam`]: zonewarden IPAM: the addresses of a node's pod CIDR blocks, leased per attachment.
//! - [`learned`]: learned edges with their evidence, bounded.
//! - [`event`]: reported drops, violations, quarantine and spoofing, bounded.
//! - [`export`]: exported profiles (YAML for GitOps, NetworkPolicy), their validation
//!   and import.
//! - [`profile`]: per-zone mode, quarantine and versioned approvals.
//! - [`response`]: automatic response rules (quarantine an endpoint after N reports
//!   within T, or on a drop to a port its zone never used) and their counting.
//! - [`policy`]: all profiles and the oracle that gives a connection its verdict.
//! - [`edge_status`]: an edge's status now (approved, observed, dropped) and its last
//!   drop (history).
//! - [`ruleset`]: the compiled data plane as a typed model.
//! - [`diff`]: ruleset differences (one kernel transaction) and learned-vs-approved.
//! - [`incremental`]: the ruleset kept up to date change by change, at the cost of the change.
//! - [`fuzzing`]: the fuzz targets of the edge grammar and the profile import.

pub mod claim;
pub mod derive;
pub mod diff;
pub mod edge;
pub mod edge_status;
pub mod endpoint;
pub mod event;
pub mod export;
pub mod fuzzing;
pub mod incremental;
pub mod ipam;
pub mod learned;
pub mod policy;
pub mod profile;
pub mod response;
pub mod ruleset;
pub mod zone;
pub mod zone_kind;

pub use claim::{ClaimException, ZoneClaims};
pub use derive::{ZoneHints, ZoneSource, derive_zone, workload_from_pod_name};
pub use edge::{Edge, Proto};
pub use edge_status::{EdgeStatus, LastDrop};
pub use endpoint::{AttachMode, AttachmentKey, Endpoint, Endpoints};
pub use policy::{Policy, Verdict};
pub use profile::{Mode, Profile};
pub use zone::{ZoneError, ZoneName};
pub use zone_kind::ZoneKind;
