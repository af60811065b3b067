//! The zonewarden node enforcer: it keeps the registry of the node's endpoints, gives
//! every zone a numeric id, programs the private nftables table `inet zonewarden`
//! and serves the `zonewarden.v1.Enforcer` gRPC API on a root-only unix socket.
//!
//! # Layout
//! - [`store`]: the [`store::Store`] interface and its local backend (atomic JSON
//!   files under the state directory), plus zone-id allocation.
//! - [`nft`]: the data plane: the table's structure (one atomic `nft -j -f -`
//!   transaction, reconciled by diff), its map elements behind the
//!   [`nft::Dataplane`] seam, and the read-back of the kernel's state.
//! - [`registry`]: [`registry::EndpointRegistry`], the single owner of every
//!   mutation (store, then kernel, with rollback) and the snapshots readers use.
//! - [`server`] and [`convert`]: the tonic service and the proto <-> model mapping.
//! - [`pending_del`]: the replay of DELs the CNI plugin queued while we were away.
//! - [`nflog`]: the NFLOG listener the table's log rules report to.
//! - [`learning`]: logged connections become learned edges and reports.
//! - [`response`]: automatic response: the zones' rules counted on the NFLOG path,
//!   and the task that quarantines the endpoints they name.
//! - [`policy_api`]: the policy half of the gRPC service (edges, profiles, modes).
//! - [`host`]: the node's own addresses, the `host` zone.
//! - [`cluster`]: cluster mode: host-gateway routes to the other nodes' pod blocks.
//! - [`sidecar`]: sidecar mode: the enforcer inside one pod's network namespace.
//! - [`hostlink`]: host veths of deleted routed endpoints, retired off the DEL path.
//! - [`conntrack`]: cutting the open connections of quarantined addresses.
//! - [`import`]: `ImportProfiles`: exported YAML validated, then applied atomically.
//! - [`flows`]: the live stream of logged connections (`WatchFlows`).
//! - [`events`]: `--events-log`: every violation, drop, learned edge, quarantine and
//!   policy change as one JSON line for log collectors.
//! - [`socket`]: the unix socket: stale-socket detection, permissions, clean-up.
//! - [`audit`]: the hash-chained audit log of every change, and its gRPC service.
//! - [`web`]: the read-only HTTP endpoint: the zone-map page, `/api/map`, `/metrics`.
//! - [`fuzzing`]: the fuzz targets of what it reads from outside (nft listings, NFLOG,
//!   the audit log), for `fuzz/` and the corpus replay.

pub mod audit;
pub mod bridge_nf;
pub mod cluster;
pub mod conntrack;
pub mod convert;
pub mod events;
pub mod flows;
pub mod fuzzing;
pub mod guard;
pub mod host;
pub mod hostlink;
pub mod import;
pub mod learning;
pub mod nflog;
pub mod nft;
pub mod pending_del;
pub mod policy_api;
pub mod readiness;
pub mod registry;
pub mod response;
pub mod server;
pub mod sidecar;
pub mod socket;
pub mod store;
#[cfg(test)]
mod test_support;
pub mod web;
