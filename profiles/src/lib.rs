//! zonewarden's pure core: the model of zones and endpoints and every decision made
//! on it. No I/O, no async runtime, no netlink: the enforcer and the CNI plugin apply
//! what this crate decides.
//!
//! # Layout
//! - [`zone`]: zone names, their validation and the built-in zones.
//! - [`derive`]: which zone a workload belongs to (annotation, CNI_ARGS, config, pod name).
//! - [`endpoint`]: one attachment of a container to a network and its key.

pub mod derive;
pub mod endpoint;
pub mod zone;

pub use derive::{ZoneHints, ZoneSource, derive_zone, workload_from_pod_name};
pub use endpoint::{AttachMode, AttachmentKey, Endpoint};
pub use zone::{ZoneError, ZoneName};
