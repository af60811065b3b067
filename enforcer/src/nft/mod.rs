//! The nftables data plane: the private table `inet zonewarden` and nothing else.
//!
//! The enforcer never touches another table and never flushes its own: the structure
//! is reconciled by diff ([`structure`]) and the map elements are changed one
//! endpoint at a time ([`elements`]), so enforcement continues while it restarts.
//!
//! # Layout
//! - [`schema`]: serde types for the subset of the nft JSON schema we write.
//! - [`listing`]: parsing of `nft -j list table inet zonewarden`.
//! - [`command`]: running the `nft` binary and capturing its stderr.
//! - [`structure`]: the desired table, maps and chains, and the missing-parts diff.
//! - [`elements`]: the [`Dataplane`] seam and its `nft`-backed implementation.

pub mod command;
pub mod elements;
pub mod listing;
pub mod ruleset;
pub mod schema;
pub mod structure;

pub use command::{NftCli, NftError};
pub use elements::{Dataplane, Element, ElementChange, NftDataplane};
pub use listing::TableListing;

/// The address family of our table: one table for IPv4 and IPv6.
pub const FAMILY: &str = "inet";
/// The name of our private table.
pub const TABLE: &str = "zonewarden";
/// The map from an IPv4 endpoint address to its zone id.
pub const ZONE_OF_V4: &str = "zone_of_v4";
/// The map from an IPv6 endpoint address to its zone id.
pub const ZONE_OF_V6: &str = "zone_of_v6";

/// The map that holds an address of this family.
pub fn zone_map_for(addr: std::net::IpAddr) -> &'static str {
    if addr.is_ipv4() {
        ZONE_OF_V4
    } else {
        ZONE_OF_V6
    }
}
