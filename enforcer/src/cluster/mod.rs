//! Cluster mode: what an enforcer does because other nodes exist.
//!
//! # Layout
//! - [`routes`]: host-gateway routing: every other node's pod blocks routed via that
//!   node's address on the shared network, as flannel's host-gw does: the pure plan
//!   and the task that follows the node list.
//! - `route_table`: the main routing table read and changed through rtnetlink.

mod route_table;
pub mod routes;
