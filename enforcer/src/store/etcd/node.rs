//! This node's record in the cluster store, kept alive on a lease, and the records of
//! every live node.
//!
//! The enforcer publishes `{name, address, second_address, pod_cidrs, enforcer_version}` under
//! `nodes/<name>`, attached to a lease of `--node-lease-ttl` seconds that it keeps
//! alive; when the enforcer stops (or its node dies) the lease expires and the record
//! goes. [`EtcdStore::nodes`] gives every live node's record, kept current by the
//! watch.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::decode::Kv;
use super::keys::KeyKind;
use super::{EtcdStore, Shared};

/// One node of the cluster as it published itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    pub name: String,
    /// The node's address on the network the nodes share.
    pub address: IpAddr,
    /// Its address of the other family on that network, when it has one (a
    /// dual-stack node: the next hop of its block of that family). Left out of the
    /// record otherwise, so that enforcers of every version read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_address: Option<IpAddr>,
    /// The node's pod address blocks (one per family at most, usually).
    pub pod_cidrs: Vec<IpNet>,
    pub enforcer_version: String,
}

impl NodeRecord {
    /// The node's address of `block`'s family, the next hop of that block.
    pub fn address_for(&self, block: &IpNet) -> Option<IpAddr> {
        [Some(self.address), self.second_address]
            .into_iter()
            .flatten()
            .find(|a| a.is_ipv4() == block.addr().is_ipv4())
    }
}

/// The live nodes, by name, as the watch keeps them.
///
/// Each name remembers the revision of the last change the table took of it (a
/// deletion too): the watch takes node changes as they arrive, ahead of the registry,
/// so a full listing applied later (a resync queued behind them) must not take the
/// table back to before them, bringing a dead node back to life or dropping a node
/// that just joined.
#[derive(Debug, Default)]
pub struct NodeTable {
    records: std::collections::BTreeMap<String, NodeRecord>,
    revisions: std::collections::HashMap<String, i64>,
}

impl NodeTable {
    /// Takes a change of `nodes/<name>` at `revision` (`None`: the record is gone);
    /// returns whether the table changed. A change older than the one the table took
    /// of that name changes nothing. A record that does not decode is logged and
    /// left out.
    pub fn apply(&mut self, name: &str, value: Option<&[u8]>, revision: i64) -> bool {
        match self.revisions.get_mut(name) {
            Some(seen) if *seen > revision => return false,
            Some(seen) => *seen = revision,
            None => {
                self.revisions.insert(name.to_owned(), revision);
            }
        }
        let Some(value) = value else {
            return self.records.remove(name).is_some();
        };
        match serde_json::from_slice::<NodeRecord>(value) {
            Ok(record) if record.name == name => {
                self.records.insert(name.to_owned(), record.clone()) != Some(record)
            }
            Ok(record) => {
                tracing::error!(key = name, holds = %record.name, "a node record under another node's name is ignored");
                self.records.remove(name).is_some()
            }
            Err(err) => {
                tracing::error!(node = name, %err, "a node record that does not decode is ignored");
                self.records.remove(name).is_some()
            }
        }
    }

    /// Takes the node records of a full listing at `revision`: a node it lacks was
    /// gone by then, unless the table took a newer change of it.
    pub fn reset(&mut self, keys: &super::Keys, kvs: &[Kv], revision: i64) {
        let mut listed = std::collections::HashSet::new();
        for kv in kvs {
            if let Ok(KeyKind::Node(name)) = keys.parse(&kv.key) {
                self.apply(&name, Some(&kv.value), kv.mod_revision);
                listed.insert(name);
            }
        }
        let gone: Vec<String> = self
            .records
            .keys()
            .filter(|name| !listed.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.apply(&name, None, revision);
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.records.contains_key(name)
    }

    pub fn records(&self) -> Vec<NodeRecord> {
        self.records.values().cloned().collect()
    }
}

/// This node's publication: the lease is kept alive (and the record put again after
/// a lease expired during a partition) until this is dropped.
pub struct NodeMembership {
    task: tokio::task::JoinHandle<()>,
    lease: Arc<AtomicI64>,
    shared: Arc<Shared>,
}

impl NodeMembership {
    /// Revokes the lease (the record goes at once) and stops keeping it alive.
    pub fn leave(self) {
        self.task.abort();
        let lease = self.lease.load(Ordering::Acquire);
        if lease != 0 {
            let revoked = self
                .shared
                .call("revoke this node's lease", |mut client| async move {
                    client.lease_revoke(lease).await
                });
            if let Err(err) = revoked {
                tracing::warn!(%err, "cannot revoke this node's lease; its record expires with the lease");
            }
        }
    }
}

impl Drop for NodeMembership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EtcdStore {
    /// Every live node's record, sorted by name; changes as nodes come and go.
    pub fn nodes(&self) -> watch::Receiver<Vec<NodeRecord>> {
        self.shared().nodes.subscribe()
    }

    /// Publishes `record` under `nodes/<name>` on a lease of `ttl` kept alive from the
    /// client's runtime; returns once the record is written (or the first attempt
    /// failed: the task keeps trying while etcd is away).
    pub fn publish_node(&self, record: NodeRecord, ttl: Duration) -> NodeMembership {
        let shared = self.shared().clone();
        let lease = Arc::new(AtomicI64::new(0));
        let key = shared.keys.node(&record.name);
        let value = serde_json::to_vec(&record).expect("a node record always encodes");
        let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
        let task = shared.bridge.handle().spawn(keep_alive_forever(
            shared.clone(),
            key,
            value,
            ttl_secs,
            lease.clone(),
        ));
        NodeMembership {
            task,
            lease,
            shared,
        }
    }
}

async fn keep_alive_forever(
    shared: Arc<Shared>,
    key: String,
    value: Vec<u8>,
    ttl_secs: i64,
    lease: Arc<AtomicI64>,
) {
    let interval = Duration::from_secs(u64::try_from(ttl_secs / 3).unwrap_or(1).max(1));
    loop {
        match publish_once(&shared, &key, &value, ttl_secs, &lease, interval).await {
            Ok(()) => {
                tracing::warn!(%key, "this node's lease expired; publishing the node record again")
            }
            Err(err) => {
                let _ = shared.unavailable(format!("keep this node's record alive: {err}"));
                tracing::warn!(%err, %key, "cannot keep this node's record alive; retrying");
            }
        }
        lease.store(0, Ordering::Release);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Grants a lease, puts the record on it and keeps the lease alive; returns `Ok` when
/// the lease expired (etcd answered with a TTL of 0).
async fn publish_once(
    shared: &Shared,
    key: &str,
    value: &[u8],
    ttl_secs: i64,
    lease: &AtomicI64,
    interval: Duration,
) -> Result<(), etcd_client::Error> {
    let mut client = shared.client.clone();
    let granted = client.lease_grant(ttl_secs, None).await?;
    lease.store(granted.id(), Ordering::Release);
    let options = etcd_client::PutOptions::new().with_lease(granted.id());
    let put = client.put(key, value.to_vec(), Some(options)).await?;
    shared.saw_revision(put.header().map_or(0, |h| h.revision()));
    shared.mark_up();
    tracing::info!(%key, lease = granted.id(), ttl_secs, "this node's record is published");
    let (mut keeper, mut answers) = client.lease_keep_alive(granted.id()).await?;
    loop {
        tokio::time::sleep(interval).await;
        keeper.keep_alive().await?;
        match answers.message().await? {
            Some(answer) if answer.ttl() > 0 => shared.mark_up(),
            Some(_) => return Ok(()),
            None => {
                return Err(etcd_client::Error::LeaseKeepAliveError(
                    "the keep-alive stream ended".to_owned(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, revision: i64) -> Kv {
        let record = NodeRecord {
            name: name.into(),
            address: "10.240.0.1".parse().unwrap(),
            second_address: None,
            pod_cidrs: Vec::new(),
            enforcer_version: "0.1.0".into(),
        };
        Kv {
            key: format!("/zw/nodes/{name}"),
            value: serde_json::to_vec(&record).unwrap(),
            mod_revision: revision,
        }
    }

    /// A resync's listing is applied after the changes the watch took since: it
    /// never takes the table back to before them.
    #[test]
    fn a_listing_never_takes_the_table_back_to_before_a_change_it_took() {
        let keys = super::super::Keys::new("/zw").unwrap();
        let mut table = NodeTable::default();
        let at_10 = [listed("a", 5), listed("b", 6)];
        table.reset(&keys, &at_10, 10);
        assert!(table.contains("a") && table.contains("b"));
        // The watch: b leaves at 11, c joins at 12.
        assert!(table.apply("b", None, 11));
        assert!(table.apply("c", Some(&listed("c", 12).value), 12));
        // The listing at 10, applied now, changes nothing of that.
        table.reset(&keys, &at_10, 10);
        assert!(table.contains("a"), "a was there at 10 and since");
        assert!(!table.contains("b"), "b left at 11: it stays gone");
        assert!(table.contains("c"), "c joined at 12: it stays");
        // A listing at 20 without a: a left at or before 20.
        table.reset(&keys, &[listed("c", 12)], 20);
        assert!(!table.contains("a") && table.contains("c"));
        // An older event of a name changes nothing either.
        assert!(!table.apply("a", Some(&listed("a", 15).value), 15));
        assert!(!table.contains("a"));
        // A name first seen deleted: an older listing of it does not bring it back.
        assert!(!table.apply("d", None, 30));
        table.reset(&keys, &[listed("c", 12), listed("d", 25)], 28);
        assert!(!table.contains("d"));
        // A record that does not decode is left out, and its name's revision kept.
        assert!(table.apply("c", Some(b"not json"), 31));
        assert!(!table.contains("c"));
        table.reset(&keys, &[listed("c", 12)], 28);
        assert!(
            !table.contains("c"),
            "the listing is older than the bad record"
        );
    }

    #[test]
    fn a_single_stack_record_reads_as_before_and_a_dual_stack_one_names_both() {
        let mut record = NodeRecord {
            name: "n1".into(),
            address: "10.240.0.1".parse().unwrap(),
            second_address: None,
            pod_cidrs: vec!["10.241.1.0/24".parse().unwrap()],
            enforcer_version: "0.1.0".into(),
        };
        // Enforcers that know no second address read the record of one that has none.
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("second_address"), "{json}");
        let v4: IpNet = "10.241.1.0/24".parse().unwrap();
        let v6: IpNet = "fd00:241:0:1::/64".parse().unwrap();
        assert_eq!(record.address_for(&v4), Some(record.address));
        assert_eq!(record.address_for(&v6), None);
        record.second_address = Some("fd00:240::1".parse().unwrap());
        let back: NodeRecord =
            serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.address_for(&v6), record.second_address);
    }
}
