//! Cluster mode: what an enforcer does because other nodes exist.
//!
//! # Layout
//! - [`routes`]: host-gateway routing: every other node's pod blocks routed via that
//!   node's address on the shared network, as flannel's host-gw does.

pub mod routes;
