//! The cluster-wide audit trail: every policy change of every node, in one order,
//! hash-chained exactly as a node's `audit.log` is.
//!
//! Each entry is written by the transaction of the change it records, together with
//! the trail's head (`<prefix>.audit/head`), and that transaction also requires the
//! head to be as this node read it just before. Two nodes that change policy at the
//! same moment both read head N: one commits entry N+1, the other's transaction fails
//! on the head alone and is chained again after N+1 (its own keys are still compared
//! as before, so an approval is never lost and never overwrites another). The trail
//! holds no endpoint changes: those stay in each node's own log.

use serde::{Deserialize, Serialize};

use super::{Shared, StoreError};
use crate::audit::entry::{AuditEntry, AuditRecord, GENESIS, hex_sha256};
use etcd_client::{Compare, CompareOp, TxnOp};

/// How often a change is chained again after other nodes moved the head.
pub const ATTEMPTS: usize = 8;

/// The pause before chaining again after the `attempt`th lost race: random within a
/// window that doubles each time (4 ms, 8 ms, ... at most 128 ms), so that two nodes
/// committing in lockstep stop colliding instead of losing together every time.
pub fn backoff(attempt: usize) -> std::time::Duration {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    let window_us = 4_000u64 << attempt.saturating_sub(1).min(5);
    std::time::Duration::from_micros(random % window_us)
}

/// `<prefix>.audit/head`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub seq: u64,
    /// The last entry's `hash`.
    pub hash: String,
    /// The SHA-256 of the last entry's line: the next entry's `prev`.
    pub line_hash: String,
}

/// The head as read, with what a transaction compares it against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadHead {
    /// `None`: the trail has no entry yet.
    pub head: Option<Head>,
    /// The head key's mod revision (0: absent).
    pub revision: i64,
}

impl ReadHead {
    /// The transaction's condition: the head is still the one read.
    pub fn compare(&self, keys: &super::Keys) -> Compare {
        let key = keys.audit_head();
        if self.revision == 0 {
            Compare::version(key, CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key, CompareOp::Equal, self.revision)
        }
    }

    /// Numbers and chains `records` after this head, as written by `node`: the
    /// entries' puts and the new head's.
    pub fn chain(
        &self,
        keys: &super::Keys,
        node: &str,
        records: &[AuditRecord],
    ) -> Result<Vec<TxnOp>, StoreError> {
        let (mut seq, mut prev) = self
            .head
            .as_ref()
            .map_or((0, GENESIS.to_owned()), |h| (h.seq, h.line_hash.clone()));
        let mut ops = Vec::with_capacity(records.len() + 1);
        let mut last = None;
        for record in records {
            seq += 1;
            let entry = AuditEntry::chain_on(record.clone(), seq, prev, Some(node.to_owned()));
            let line = entry.to_line();
            prev = hex_sha256(line.as_bytes());
            ops.push(TxnOp::put(keys.audit_entry(seq), line, None));
            last = Some(Head {
                seq,
                hash: entry.hash,
                line_hash: prev.clone(),
            });
        }
        if let Some(head) = last {
            let value = serde_json::to_vec(&head).map_err(|err| StoreError::Refused {
                action: "encode the audit trail's head",
                detail: err.to_string(),
            })?;
            ops.push(TxnOp::put(keys.audit_head(), value, None));
        }
        Ok(ops)
    }
}

/// Reads the trail's head.
pub(crate) fn read_head(shared: &Shared) -> Result<ReadHead, StoreError> {
    let key = shared.keys.audit_head();
    let response = shared.call("read the audit trail's head", |mut client| {
        let key = key.clone();
        async move { client.get(key, None).await }
    })?;
    let Some(kv) = response.kvs().first() else {
        return Ok(ReadHead {
            head: None,
            revision: 0,
        });
    };
    let head = serde_json::from_slice(kv.value()).map_err(|err| StoreError::CorruptKey {
        key: shared.keys.audit_head(),
        detail: err.to_string(),
    })?;
    Ok(ReadHead {
        head: Some(head),
        revision: kv.mod_revision(),
    })
}

/// The whole trail as `audit.log`'s bytes (one line per entry, in seq order), with
/// the head the trail records.
#[derive(Debug, Clone, Default)]
pub struct Trail {
    pub bytes: Vec<u8>,
    pub head: Option<Head>,
    /// Where it is, for operators.
    pub source: String,
}

/// Reads every entry and the head at one revision.
pub(crate) fn read(shared: &Shared) -> Result<Trail, StoreError> {
    let response = shared.list_prefix("read the audit trail", &shared.keys.audit_root())?;
    let head_key = shared.keys.audit_head();
    let entries = shared.keys.audit_entries();
    let mut trail = Trail {
        source: format!(
            "the cluster-wide trail {} in etcd ({})",
            shared.keys.audit_root(),
            shared.endpoints
        ),
        ..Trail::default()
    };
    // Keys come sorted: the zero-padded seqs keep the trail's order.
    for kv in response.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        if key == head_key {
            trail.head =
                Some(
                    serde_json::from_slice(kv.value()).map_err(|err| StoreError::CorruptKey {
                        key: head_key.clone(),
                        detail: err.to_string(),
                    })?,
                );
        } else if key.starts_with(&entries) {
            trail.bytes.extend_from_slice(kv.value());
            trail.bytes.push(b'\n');
        }
    }
    Ok(trail)
}
