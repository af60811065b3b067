//! The zonewarden CNI plugin: env + stdin → typed request → the enforcer → result JSON.
//!
//! # Layout
//! - [`plugin`]: one invocation end to end; the only place errors become error JSON.
//! - [`env`], [`args`], [`config`], [`runtime_config`]: the runtime's input, validated.
//! - [`cmd`]: ADD, DEL, CHECK, GC, STATUS.
//! - [`result`], [`version`], [`error`]: results per cniVersion and CNI error codes.
//! - [`ipam`]: IPAM delegation; [`client`]: the enforcer; [`delqueue`]: DELs that wait.
//! - [`attach_lock`]: ADD and GC exclude each other.
//! - [`netns`], [`link`]: netns switching and the routed-veth link layer.
//! - [`fuzzing`]: the fuzz targets of the input parsers (`fuzz/` and the corpus replay).
pub mod link;
pub mod netns;

pub mod args;
pub mod attach_lock;
pub mod client;
pub mod cmd;
pub mod config;
pub mod delqueue;
pub mod env;
pub mod error;
pub mod fuzzing;
pub mod ipam;
pub mod logging;
pub mod plugin;
pub mod result;
pub mod runtime_config;
pub mod version;
