//! The cluster pod-CIDR pool: a node started with `--pod-cidr-pool` instead of
//! `--pod-cidr` claims a block of the pool for itself.
//!
//! A claim is the key `pod-blocks/<network>_<prefix length>` holding
//! `{"node":"<name>"}`, created in one transaction that succeeds only when the key does
//! not exist (create-if-absent), so two nodes never claim one block. The key has no
//! lease: a node that restarts finds its block and takes it again. A block whose owner
//! has no node record (its lease expired: the node is gone) is taken over only when the
//! pool has no block nobody ever claimed, in a transaction that checks the block is
//! still the old owner's and the old owner's record is still absent.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::EtcdStore;
use crate::store::StoreError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockClaim {
    node: String,
}

/// Why a block of the pool cannot be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "--pod-block-size {size} does not fit pod CIDR pool {pool}: give a prefix length from {} to {} for this pool",
        pool.prefix_len(),
        pool.max_prefix_len()
    )]
    BadSize { pool: IpNet, size: u8 },
    #[error(
        "pod CIDR pool {pool} has no /{size} block left: every block is claimed by a live node; give the pool more room (--pod-cidr-pool), smaller blocks (--pod-block-size), or remove claims of nodes that left for good (etcdctl del {prefix}pod-blocks/...)"
    )]
    Exhausted {
        pool: IpNet,
        size: u8,
        prefix: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key name of `block` under `pod-blocks/`: `10.244.3.0_24`.
pub fn block_name(block: &IpNet) -> String {
    format!("{}_{}", block.network(), block.prefix_len())
}

impl EtcdStore {
    /// This node's block of `pool` with prefix length `size`: the one it claimed
    /// before, or a new one (see the module doc). Blocks.
    pub fn claim_pod_block(&self, pool: IpNet, size: u8) -> Result<IpNet, ClaimError> {
        let pool = pool.trunc();
        let candidates = pool
            .subnets(size)
            .map_err(|_| ClaimError::BadSize { pool, size })?;
        let shared = self.shared().clone();
        let root = format!("{}pod-blocks/", shared.keys.root());
        let key_of = |block: &IpNet| format!("{root}{}", block_name(block));
        let listed = shared.list_prefix("list the claimed pod blocks", &root)?;
        let mut owners = std::collections::BTreeMap::new();
        for kv in listed.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let claim: BlockClaim =
                serde_json::from_slice(kv.value()).map_err(|e| StoreError::CorruptKey {
                    key: key.clone(),
                    detail: e.to_string(),
                })?;
            owners.insert(key, claim.node);
        }
        let me = shared.node.clone();
        let value = serde_json::to_vec(&BlockClaim { node: me.clone() }).expect("encodes");
        // A block this node claimed before (a restart): its own again.
        for block in pool.subnets(size).expect("checked above") {
            if owners.get(&key_of(&block)) == Some(&me) {
                tracing::info!(%block, %pool, "pod block: this node's claim of it is kept");
                return Ok(block);
            }
        }
        // A block nobody claimed: create-if-absent.
        for block in candidates {
            let key = key_of(&block);
            if owners.contains_key(&key) {
                continue;
            }
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
            let done = shared.call("claim a pod block", |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })?;
            if done.succeeded() {
                tracing::info!(%block, %pool, "pod block claimed");
                return Ok(block);
            }
        }
        // Blocks of nodes that are gone (no node record): taken over.
        for block in pool.subnets(size).expect("checked above") {
            let key = key_of(&block);
            let Some(owner) = owners.get(&key) else {
                continue;
            };
            let owner_record = shared.keys.node(owner);
            let live = shared.call("read a node record", |mut client| {
                let record = owner_record.clone();
                async move { client.get(record, None).await }
            })?;
            if !live.kvs().is_empty() {
                continue;
            }
            let old = serde_json::to_vec(&BlockClaim {
                node: owner.clone(),
            })
            .expect("encodes");
            let txn = Txn::new()
                .when([
                    Compare::value(key.as_str(), CompareOp::Equal, old),
                    Compare::create_revision(owner_record.as_str(), CompareOp::Equal, 0),
                ])
                .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
            let done = shared.call("take over a pod block", |mut client| {
                let txn = txn.clone();
                async move { client.txn(txn).await }
            })?;
            if done.succeeded() {
                tracing::warn!(%block, %pool, previous = %owner, "pod block of a node that is gone taken over");
                return Ok(block);
            }
        }
        Err(ClaimError::Exhausted {
            pool,
            size,
            prefix: shared.keys.root().to_owned(),
        })
    }
}
