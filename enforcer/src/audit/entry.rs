//! One audit entry: what is written as one JSON line, and how it is hashed.
//!
//! `hash` is the SHA-256 of the entry's canonical JSON without `hash` (keys sorted,
//! no whitespace); `prev` is the SHA-256 of the previous line's bytes (without its
//! newline), or [`GENESIS`] for the first line. A line is exactly
//! [`AuditEntry::to_line`] of its entry: any other bytes mean it was edited.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev` of the first entry of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Approve,
    Reject,
    Remove,
    Import,
    Mode,
    Quarantine,
    Unquarantine,
    EndpointAdd,
    EndpointDel,
    /// The kernel refused the change of the entry before (same zone and target): it
    /// never took effect, and the store was put back.
    Reverted,
    /// The enforcer found its table changed or removed by someone else and restored it.
    TableRestored,
    /// The operator started the enforcer with `--accept-store-as-is`: the state
    /// directory was taken as it was (the detail says what differed).
    StoreAccepted,
    /// The log's tail was corrupt when the enforcer started; the chain continues
    /// from the last good entry (`prev` is that line's hash).
    ChainRestart,
    /// A zone's profile was deleted (`zwctl profile delete`).
    ProfileDelete,
    /// A zone's automatic response rules were set or cleared (`zwctl response`).
    Response,
    /// The enforcer moved the node's local store into the cluster store
    /// (`--migrate-local-store`); the detail says what it wrote.
    StoreMigrated,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Remove => "remove",
            Self::Import => "import",
            Self::Mode => "mode",
            Self::Quarantine => "quarantine",
            Self::Unquarantine => "unquarantine",
            Self::EndpointAdd => "endpoint-add",
            Self::EndpointDel => "endpoint-del",
            Self::Reverted => "reverted",
            Self::TableRestored => "table-restored",
            Self::StoreAccepted => "store-accepted",
            Self::ChainRestart => "chain-restart",
            Self::ProfileDelete => "profile-delete",
            Self::Response => "response",
            Self::StoreMigrated => "store-migrated",
        }
    }
}

impl Action {
    /// Whether the action is a change of policy (an operator's or an import's), which
    /// the cluster store records in its cluster-wide trail; endpoint changes and the
    /// enforcer's own entries stay in the node's log.
    pub fn is_policy(self) -> bool {
        match self {
            Self::Approve
            | Self::Reject
            | Self::Remove
            | Self::Import
            | Self::Mode
            | Self::Quarantine
            | Self::Unquarantine
            | Self::ProfileDelete
            | Self::Response
            | Self::StoreMigrated
            | Self::Reverted => true,
            Self::EndpointAdd
            | Self::EndpointDel
            | Self::TableRestored
            | Self::StoreAccepted
            | Self::ChainRestart => false,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a change is, before it is numbered and chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at_unix_ms: i64,
    pub who: String,
    pub action: Action,
    pub zone: Option<String>,
    pub target: Option<String>,
    pub detail: String,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    pub reason: Option<String>,
}

/// One line of `audit.log`. Field order is the order on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_unix_ms: i64,
    pub who: String,
    /// The node whose enforcer made the change: set in the cluster trail (etcd), absent
    /// from a node's own `audit.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub action: Action,
    pub zone: Option<String>,
    pub target: Option<String>,
    pub detail: String,
    pub version_before: Option<u64>,
    pub version_after: Option<u64>,
    pub reason: Option<String>,
    pub prev: String,
    pub hash: String,
}

impl AuditEntry {
    /// Numbers and chains a record after the line whose hash is `prev`.
    pub fn chain(record: AuditRecord, seq: u64, prev: String) -> Self {
        Self::chain_on(record, seq, prev, None)
    }

    /// [`Self::chain`] for the cluster trail: the entry names the node that made it.
    pub fn chain_on(record: AuditRecord, seq: u64, prev: String, node: Option<String>) -> Self {
        let mut entry = Self {
            seq,
            at_unix_ms: record.at_unix_ms,
            who: record.who,
            node,
            action: record.action,
            zone: record.zone,
            target: record.target,
            detail: record.detail,
            version_before: record.version_before,
            version_after: record.version_after,
            reason: record.reason.filter(|r| !r.is_empty()),
            prev,
            hash: String::new(),
        };
        entry.hash = entry.content_hash();
        entry
    }

    /// The hex SHA-256 of the canonical JSON of every field but `hash`.
    pub fn content_hash(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let serde_json::Value::Object(fields) = value else {
            return String::new();
        };
        let canonical: BTreeMap<String, serde_json::Value> =
            fields.into_iter().filter(|(k, _)| k != "hash").collect();
        let text = serde_json::to_string(&canonical).unwrap_or_default();
        hex_sha256(text.as_bytes())
    }

    /// The line as the enforcer writes it, without the newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Lowercase hex of the SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first 12 hex digits of a hash, as `git` shortens commits.
pub fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            at_unix_ms: 1_700_000_000_000,
            who: "alice".into(),
            action: Action::Mode,
            zone: Some("shop/db".into()),
            target: Some("enforce".into()),
            detail: "mode learn -> enforce".into(),
            version_before: Some(3),
            version_after: Some(4),
            reason: Some("INC-42".into()),
        }
    }

    #[test]
    fn a_line_has_the_documented_fields_in_order_and_round_trips() {
        let entry = AuditEntry::chain(record(), 1, GENESIS.into());
        let line = entry.to_line();
        assert!(
            line.starts_with(r#"{"seq":1,"at_unix_ms":1700000000000,"who":"alice","action":"mode","zone":"shop/db","target":"enforce","detail":"mode learn -> enforce","version_before":3,"version_after":4,"reason":"INC-42","prev":"0000"#),
            "{line}"
        );
        let back: AuditEntry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.content_hash(), entry.hash);
    }

    #[test]
    fn the_hash_covers_every_field_but_itself() {
        let entry = AuditEntry::chain(record(), 1, GENESIS.into());
        let mut other = entry.clone();
        other.who = "mallory".into();
        assert_ne!(other.content_hash(), entry.hash);
        let mut other = entry.clone();
        other.prev = hex_sha256(b"x");
        assert_ne!(other.content_hash(), entry.hash);
        let mut other = entry.clone();
        other.hash = "f".repeat(64);
        assert_eq!(other.content_hash(), entry.hash);
    }

    #[test]
    fn a_cluster_entry_names_its_node_and_a_local_line_does_not() {
        let local = AuditEntry::chain(record(), 1, GENESIS.into());
        assert!(!local.to_line().contains("node"), "{}", local.to_line());
        let cluster = AuditEntry::chain_on(record(), 1, GENESIS.into(), Some("node-a".into()));
        assert!(
            cluster
                .to_line()
                .contains(r#""who":"alice","node":"node-a","action""#),
            "{}",
            cluster.to_line()
        );
        assert_ne!(cluster.hash, local.hash);
        let back: AuditEntry = serde_json::from_str(&cluster.to_line()).unwrap();
        assert_eq!(back.content_hash(), cluster.hash);
    }

    #[test]
    fn an_empty_reason_is_recorded_as_none() {
        let mut r = record();
        r.reason = Some(String::new());
        assert_eq!(AuditEntry::chain(r, 1, GENESIS.into()).reason, None);
    }
}
