//! The nftables data plane: the private table `inet zonewarden` and nothing else.
//!
//! The enforcer never touches another table and never flushes its own: it reads back
//! what the kernel holds and applies the difference to the compiled ruleset in one
//! atomic `nft -j -f -` transaction, so enforcement continues while it restarts.
//!
//! # Layout
//! - [`netlink`]: set-element changes as netlink batches (endpoints, approvals).
//! - [`objects`]: zone sets, chains and rules as messages of the same batches.
//! - [`process`]: the deadline of every `nft` process.
//! - [`ruleset`]: rendering of compiled rulesets and their differences to nft JSON,
//!   the read-back of the kernel's table, and the [`ruleset::RulesetDataplane`] seam.

pub mod netlink;
pub mod objects;
pub mod process;
pub mod ruleset;
pub mod table_read;

/// The address family of our table: one table for IPv4 and IPv6.
pub const FAMILY: &str = "inet";
/// The name of our private table.
pub const TABLE: &str = "zonewarden";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {binary}: {source}; is the nftables package installed and on PATH?")]
    Spawn {
        binary: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nft failed to {action} ({status}): {stderr}")]
    Failed {
        action: String,
        status: String,
        stderr: String,
    },
    #[error("the kernel refused to {action}: {source}")]
    Kernel {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "nft did not finish within {secs} s and was stopped, so the enforcer could not {action} (`{command}`); check what holds nft (an overloaded node, another nft waiting on the same lock) and retry"
    )]
    TimedOut {
        action: String,
        command: String,
        secs: f64,
    },
    #[error("cannot parse the output of nft {action}: {detail}")]
    Parse { action: String, detail: String },
}
