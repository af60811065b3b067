//! The cluster store against a real etcd (see [`super::test_etcd`]): records, the
//! optimistic concurrency of two nodes, the watch, its resume and its resync.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zonewarden_profiles::event::Reports;
use zonewarden_profiles::learned::LearnedEdges;
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::profile::Actor;
use zonewarden_profiles::{Mode, Profile, ZoneName};

use super::test_etcd::EtcdProcess;
use super::*;
use crate::nft::ruleset::MemoryDataplane;
use crate::registry::{EndpointRegistry, IfMissing, RegistryError};
use crate::test_support::{endpoint, key, note, noted};

fn store(etcd: &EtcdProcess, node: &str) -> EtcdStore {
    EtcdStore::connect(EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: "/zw-test".into(),
        node: node.into(),
        tls: None,
        unpublished: None,
    })
    .unwrap()
}

/// One node: its store, its registry over an in-memory data plane, and its record on
/// a lease (as every enforcer in cluster mode publishes it).
struct Node {
    store: EtcdStore,
    registry: EndpointRegistry,
    dataplane: Arc<MemoryDataplane>,
    membership: Option<NodeMembership>,
}

/// Publishes `store`'s node record on a lease, as the enforcer does at start.
fn publish(store: &EtcdStore) -> NodeMembership {
    let record = NodeRecord {
        name: store.node().to_owned(),
        address: "192.0.2.1".parse().unwrap(),
        second_address: None,
        pod_cidrs: Vec::new(),
        enforcer_version: "test".into(),
    };
    store.publish_node(record, Duration::from_secs(30))
}

async fn node(etcd: &EtcdProcess, name: &str) -> Node {
    node_over(store(etcd, name)).await
}

/// A node over `store` (its node name is the store's).
async fn node_over(store: EtcdStore) -> Node {
    let name = store.node().to_owned();
    let membership = Some(publish(&store));
    let loaded = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load())
            .await
            .unwrap()
            .unwrap()
    };
    let dataplane = Arc::new(MemoryDataplane::new());
    let registry = EndpointRegistry::open(
        name,
        Arc::new(store.clone()),
        dataplane.clone(),
        NodeSettings::default(),
        loaded,
    )
    .unwrap()
    .with_connection_flusher(|_| Ok(0));
    registry.sync_kernel().await.unwrap();
    Node {
        store,
        registry,
        dataplane,
        membership,
    }
}

impl Node {
    /// Starts following the other nodes' changes.
    fn follow(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(watch::follow_forever(
            self.store.clone(),
            self.registry.clone(),
            self.store.watch(),
        ))
    }

    /// The registry's compiled ruleset equals a compilation from scratch, and the
    /// "kernel" holds it.
    fn assert_kernel_consistent(&self) {
        let snapshot = self.registry.snapshot();
        let kernel = self.dataplane.ruleset();
        for endpoint in snapshot.endpoints.values() {
            let id = snapshot.zone_ids.get(&endpoint.zone).unwrap();
            for addr in endpoint.addrs() {
                assert_eq!(
                    kernel.members.get(&addr).map(|m| m.0),
                    Some(id),
                    "{addr} of {} is a member of its zone in the kernel",
                    endpoint.key
                );
            }
        }
        assert_eq!(
            kernel.members.len(),
            snapshot
                .endpoints
                .values()
                .map(|e| e.addrs().count())
                .sum::<usize>(),
            "no stale member in the kernel"
        );
    }
}

use crate::test_support::add_request as request;

/// Node A with one endpoint, a1, in `shop/web`.
async fn node_with_a1(etcd: &EtcdProcess) -> Node {
    let a = node(etcd, "node-a").await;
    a.registry
        .add(request("a1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    a
}

/// The node revokes its record's lease, as an enforcer that stops does.
async fn leave(node: &mut Node) {
    let membership = node.membership.take().unwrap();
    tokio::task::spawn_blocking(move || membership.leave())
        .await
        .unwrap();
}

fn actor(who: &str) -> Actor {
    Actor {
        who: who.into(),
        at_unix_ms: 1,
        comment: String::new(),
    }
}

fn zone(name: &str) -> ZoneName {
    ZoneName::parse(name).unwrap()
}

/// Waits for `what` to hold, at most a generous deadline (a failure bound, not a
/// measurement).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn approve(node: &Node, zone_name: &str, edge: &str) -> Result<(), RegistryError> {
    let edge: zonewarden_profiles::Edge = edge.parse().unwrap();
    let who = node.registry.node().to_owned();
    node.registry
        .change_profile(
            zone(zone_name),
            IfMissing::Create,
            move |p: &mut Profile| p.approve([edge], &actor(&who)),
            noted(),
        )
        .await
        .map(drop)
}

#[test]
fn a_listing_larger_than_one_answer_comes_whole_at_one_revision() {
    let etcd = EtcdProcess::start();
    let a = store(&etcd, "node-a");
    // 1,200 small keys (more than two pages) and twelve values of 500 KB: 6 MB, more
    // than the client takes in one answer.
    let written = a
        .shared()
        .call("fill", |mut client| async move {
            let small: Vec<String> = (0..1200).map(|i| format!("/zw-big/small/{i:05}")).collect();
            for batch in small.chunks(100) {
                let ops: Vec<etcd_client::TxnOp> = batch
                    .iter()
                    .map(|k| etcd_client::TxnOp::put(k.as_str(), vec![b'x'; 10], None))
                    .collect();
                client.txn(etcd_client::Txn::new().and_then(ops)).await?;
            }
            // One at a time: etcd takes requests of a few MB at most.
            let mut revision = 0;
            for i in 0..12 {
                let done = client
                    .put(format!("/zw-big/large/{i:02}"), vec![b'y'; 500_000], None)
                    .await?;
                revision = done.header().map_or(0, |h| h.revision());
            }
            Ok(revision)
        })
        .unwrap();
    // As the enforcer lists (one page here), and in pages of 500 keys and 4 MiB
    // (three pages of small keys, then pages halved until the large values fit).
    let listings = [
        a.shared().list_prefix("list", "/zw-big/").unwrap(),
        a.shared()
            .call("list in small pages", |client| {
                list_in_pages(client, "/zw-big/".to_owned(), 500, 4 << 20)
            })
            .unwrap(),
    ];
    for listing in listings {
        assert_eq!(listing.revision, written);
        let keys: Vec<String> = listing
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        assert_eq!(keys.len(), 1212);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted, none twice");
        let bytes: usize = listing.kvs().iter().map(|kv| kv.value().len()).sum();
        assert_eq!(bytes, 1200 * 10 + 12 * 500_000);
    }
    assert_eq!(prefix_end(b"/zw-big/"), b"/zw-big0");
    assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
}

#[test]
fn every_record_type_round_trips() {
    let etcd = EtcdProcess::start();
    let a = store(&etcd, "node-a");
    assert_eq!(a.load().unwrap(), StoredState::default());
    // node-a is alive: other nodes take its endpoints.
    let _alive = publish(&a);
    let mut ep = endpoint("c1", "shop/web", &["10.0.0.5/24", "fd00::5/64"]);
    ep.node = "node-a".into();
    let mut ids = ZoneIds::default();
    ids.allocate(&ep.zone);
    let mut profile = Profile::new(ep.zone.clone());
    profile
        .approve(
            ["shop/api->shop/web:80/tcp".parse().unwrap()],
            &actor("root"),
        )
        .unwrap();
    profile.set_mode(Mode::Enforce, &actor("root"));
    a.save_zone_ids(&ids).unwrap();
    a.save_endpoint(&ep).unwrap();
    a.save_profile(&profile).unwrap();
    a.save_quarantined(&BTreeSet::from(["c1".to_owned()]))
        .unwrap();
    a.commit(None).unwrap();
    a.end_change();
    let mut learned = LearnedEdges::new(10);
    learned.record(
        "shop/api->shop/web:80/tcp".parse().unwrap(),
        zonewarden_profiles::learned::Sample {
            src: "10.0.0.4".parse().unwrap(),
            src_port: 4000,
            dst: "10.0.0.5".parse().unwrap(),
            dst_port: 80,
            proto: zonewarden_profiles::Proto::Tcp,
        },
        "node-a",
        5,
    );
    a.save_learned(&learned).unwrap();
    a.save_reports(&Reports::new(7)).unwrap();

    let again = store(&etcd, "node-a").load().unwrap();
    assert_eq!(again.endpoints, vec![ep.clone()]);
    assert_eq!(again.zone_ids, ids);
    assert_eq!(again.profiles, vec![profile.clone()]);
    assert!(again.quarantined.contains("c1"));
    assert_eq!(again.learned, Some(learned));
    assert_eq!(again.reports, Some(Reports::new(7)));

    // Another node sees the cluster's records, and has no evidence of its own yet.
    let b = store(&etcd, "node-b").load().unwrap();
    assert_eq!(b.endpoints, vec![ep.clone()]);
    assert_eq!(b.profiles, vec![profile]);
    assert_eq!(b.learned, None);

    // A deletion, and a change with nothing staged writes nothing.
    a.delete_endpoint(&ep.key).unwrap();
    a.commit(None).unwrap();
    a.commit(None).unwrap();
    assert!(store(&etcd, "node-a").load().unwrap().endpoints.is_empty());
    assert_eq!(a.health().kind, StoreKind::Etcd);
    assert!(a.health().up);
}

/// A rolling upgrade: another node's endpoint record in a format this version does not
/// read (here one field more, as a newer version may write) is left out at start, as
/// the watch leaves such a change out, and every other record loads: one record never
/// keeps the other nodes from starting. The same record of the node's own pods is an
/// error naming its key.
#[test]
fn another_nodes_record_this_version_cannot_read_is_left_out_at_start() {
    let etcd = EtcdProcess::start();
    let b = store(&etcd, "node-b");
    let _alive = publish(&b);
    let mut readable = endpoint("c1", "shop/web", &["10.0.0.5/24"]);
    readable.node = "node-b".into();
    b.save_endpoint(&readable).unwrap();
    b.commit(None).unwrap();
    b.end_change();
    let mut newer = endpoint("c2", "shop/web", &["10.0.0.6/24"]);
    newer.node = "node-b".into();
    let mut record: serde_json::Value =
        serde_json::from_slice(&decode::encode_endpoint(&newer)).unwrap();
    record["endpoint"]["priority_class"] = "high".into();
    let newer_key = b.keys().endpoint("node-b", &newer.key);
    etcd.ctl(&["put", &newer_key, &record.to_string()]).unwrap();

    let a = store(&etcd, "node-a").load().expect("node-a starts");
    assert_eq!(a.endpoints, vec![readable]);
    match store(&etcd, "node-b").load() {
        Err(StoreError::CorruptKey { key, detail }) => {
            assert_eq!(key, newer_key);
            assert!(detail.contains("priority_class"), "{detail}");
        }
        other => panic!("node-b's own record that does not decode: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_approvals_on_two_nodes_never_lose_an_edge() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    approve(&a, "shop/db", "shop/api->shop/db:5432/tcp")
        .await
        .unwrap();
    // B has not seen A's approval yet: its own is refused, not written over A's.
    let err = approve(&b, "shop/db", "shop/job->shop/db:5432/tcp")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::Store(StoreError::Conflict { .. }))
            && text.contains("changed on another node")
            && text.contains("the profile of zone shop/db"),
        "{text}"
    );
    assert!(
        !b.registry
            .snapshot()
            .policy
            .profiles
            .contains_key(&zone("shop/db")),
        "the refused change is rolled back in memory"
    );
    // Once B has A's approval, the retry holds both.
    let _follow = b.follow();
    eventually("node-b sees node-a's approval", || {
        b.registry.profile_version(&zone("shop/db")) == 1
    })
    .await;
    approve(&b, "shop/db", "shop/job->shop/db:5432/tcp")
        .await
        .unwrap();
    let stored = store(&etcd, "node-c").load().unwrap();
    let approved: Vec<String> = stored.profiles[0]
        .approved
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        approved,
        ["shop/api->shop/db:5432/tcp", "shop/job->shop/db:5432/tcp"]
    );
    assert_eq!(stored.profiles[0].version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_takes_another_nodes_endpoints_and_profile_changes() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    let _follow = b.follow();
    b.registry
        .add(request("b1", "shop/api", &["10.0.1.7/24"]), note())
        .await
        .unwrap();
    // node-a has not seen node-b's new zone: its id is taken, the ADD is refused
    // (the runtime retries) and nothing is left behind.
    let err = a
        .registry
        .add(request("a1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("zone id 1 (another node took it)"),
        "{err}"
    );
    assert!(a.registry.get(&key("a1")).is_none());
    assert!(a.dataplane.ruleset().members.is_empty());
    let _follow_a = a.follow();
    eventually("node-a knows node-b's zone", || {
        a.registry
            .snapshot()
            .zone_ids
            .get(&zone("shop/api"))
            .is_some()
    })
    .await;
    a.registry
        .add(request("a1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    eventually("node-a knows node-b's endpoint", || {
        a.registry.get(&key("b1")).is_some()
    })
    .await;
    a.assert_kernel_consistent();
    eventually("node-b knows node-a's endpoint", || {
        b.registry.get(&key("a1")).is_some()
    })
    .await;
    let remote = b.registry.get(&key("a1")).unwrap();
    assert_eq!(remote.node, "node-a");
    let snapshot = b.registry.snapshot();
    let web_id = snapshot.zone_ids.get(&zone("shop/web")).unwrap();
    assert_ne!(
        Some(web_id),
        snapshot.zone_ids.get(&zone("shop/api")),
        "ids are cluster-wide"
    );
    let kernel = b.dataplane.ruleset();
    assert_eq!(
        kernel
            .members
            .get(&"10.0.0.5".parse().unwrap())
            .map(|m| m.0),
        Some(web_id),
        "the remote endpoint is a member of its zone on node-b"
    );
    assert!(
        !kernel.local.contains_key(&"10.0.0.5".parse().unwrap()),
        "only local endpoints get jumps"
    );
    b.assert_kernel_consistent();

    // An approval and a mode change made on node-a, of node-b's local zone.
    let api_id = snapshot.zone_ids.get(&zone("shop/api")).unwrap();
    a.registry
        .change_profile(
            zone("shop/api"),
            IfMissing::Refuse,
            |p: &mut Profile| {
                let who = actor("root");
                let approved = p.approve(["shop/web->shop/api:80/tcp".parse().unwrap()], &who)?;
                Ok::<usize, zonewarden_profiles::profile::ProfileError>(
                    approved + usize::from(p.set_mode(Mode::Enforce, &who)),
                )
            },
            noted(),
        )
        .await
        .unwrap();
    eventually("node-b takes node-a's approval", || {
        b.registry.snapshot().policy.mode(&zone("shop/api")) == Mode::Enforce
    })
    .await;
    let rules = b.dataplane.ruleset().zones[&api_id].clone();
    assert_eq!(
        rules.mode,
        Mode::Enforce,
        "the mode reached node-b's kernel"
    );
    assert_eq!(
        rules.allow_in.len(),
        1,
        "the approved edge reached node-b's kernel"
    );

    a.registry.del(key("a1"), note()).await.unwrap();
    eventually("node-b forgets node-a's endpoint", || {
        b.registry.get(&key("a1")).is_none()
    })
    .await;
    b.assert_kernel_consistent();
    assert_eq!(
        b.registry.get(&key("b1")).unwrap().node,
        "node-b",
        "its own endpoint stays"
    );
}

/// Status's watch lag is what operators and the benchmarks trust: zero means the
/// kernel holds everything up to the revision shown. A progress notification from
/// etcd while updates still wait to be applied must not make it zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_lag_is_zero_only_once_every_change_before_is_applied() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    let _follow_a = a.follow();
    let _follow = b.follow();
    a.registry
        .add(request("a0", "shop/web", &["10.0.0.10/24"]), note())
        .await
        .unwrap();
    eventually("node-b knows a0", || b.registry.get(&key("a0")).is_some()).await;
    // Node b's kernel now takes 300 ms per change: node a's five endpoints queue up
    // on b while etcd sends progress notifications every 100 ms (the test member's
    // interval).
    b.dataplane.slow_down(Duration::from_millis(300));
    for i in 1..=5 {
        a.registry
            .add(
                request(
                    &format!("a{i}"),
                    "shop/web",
                    &[&format!("10.0.0.{}/24", 10 + i)],
                ),
                note(),
            )
            .await
            .unwrap();
    }
    // A write outside the prefix moves etcd's revision past node a's last change:
    // the next progress notification tells node-b "everything up to here".
    let store = a.store.clone();
    let written = tokio::task::spawn_blocking(move || {
        store
            .shared()
            .call("write outside the prefix", |mut client| async move {
                let done = client.put("/zw-elsewhere/x", "1", None).await?;
                Ok(done.header().map_or(0, |h| h.revision()))
            })
    })
    .await
    .unwrap()
    .unwrap();
    eventually("node-b says it caught up", || {
        let health = b.store.health();
        health.revision >= written && health.watch_lag == 0
    })
    .await;
    let held = b.dataplane.ruleset();
    for i in 1..=5 {
        let addr: std::net::IpAddr = format!("10.0.0.{}", 10 + i).parse().unwrap();
        assert!(
            held.members.contains_key(&addr),
            "node-b said it caught up with revision {written} but its kernel lacks a{i} ({addr})"
        );
    }
}

/// The watch lag counts changes of the cluster's keys this node has not applied, as
/// the status says, never other applications' writes to the same etcd: etcd numbers
/// every write of the whole store, and the readiness probe's answer carries that
/// number. A lag that other users' writes (Kubernetes' own, on a shared etcd) held
/// above zero would send operators after a node that is caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_prefix_are_no_watch_lag() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let _follow = a.follow();
    a.registry
        .add(request("a0", "shop/web", &["10.0.0.10/24"]), note())
        .await
        .unwrap();
    eventually("node-a caught up", || a.store.health().watch_lag == 0).await;
    let store = a.store.clone();
    let health = tokio::task::spawn_blocking(move || {
        for i in 0..20 {
            store
                .shared()
                .call("write outside the prefix", |mut client| async move {
                    client.put(format!("/zw-elsewhere/{i}"), "1", None).await
                })
                .unwrap();
        }
        store.check_writable().unwrap();
        store.health()
    })
    .await
    .unwrap();
    assert!(health.up);
    assert_eq!(
        health.watch_lag, 0,
        "twenty writes outside the prefix, then a readiness probe: {health:?}"
    );
}

/// A node that watches from a revision far behind gets the changes since in answers
/// of up to 1,000 revisions: here 200 transactions of 100 endpoints, about 7 MB in
/// one answer, more than gRPC's default limit of 4 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_catches_up_through_an_answer_larger_than_four_mib() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    a.registry
        .add(request("a0", "shop/web", &["10.1.0.1/16"]), note())
        .await
        .unwrap();
    let b = node(&etcd, "node-b").await;
    // Written straight into etcd, as node-a's registry writes them, before node-b
    // watches: its watch starts at its load, before all of them.
    let template = a.registry.get(&key("a0")).unwrap();
    let store = a.store.clone();
    let written = tokio::task::spawn_blocking(move || {
        let keys = store.shared().keys.clone();
        store.shared().call("write 20,000 endpoints", |mut client| {
            let (template, keys) = (template.clone(), keys.clone());
            async move {
                let mut bytes = 0;
                for t in 0..200u32 {
                    let ops: Vec<etcd_client::TxnOp> = (0..100u32)
                        .map(|i| {
                            let mut e = template.clone();
                            e.key.container_id = format!("bulk-{t}-{i}").into();
                            let n = 256 + t * 100 + i;
                            e.ips =
                                vec![format!("10.1.{}.{}/16", n / 256, n % 256).parse().unwrap()];
                            let value = decode::encode_endpoint(&e);
                            bytes += value.len();
                            etcd_client::TxnOp::put(keys.endpoint(&e.node, &e.key), value, None)
                        })
                        .collect();
                    client.txn(etcd_client::Txn::new().and_then(ops)).await?;
                }
                Ok(bytes)
            }
        })
    })
    .await
    .unwrap()
    .unwrap();
    assert!(written > 4 << 20, "{written} bytes: more than 4 MiB");
    let _follow = b.follow();
    eventually("node-b knows all 20,001 endpoints of node-a", || {
        b.registry.snapshot().endpoints.len() == 20_001
    })
    .await;
    b.assert_kernel_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_resumes_after_etcd_restarts_and_changes_are_refused_meanwhile() {
    let mut etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    let _follow = b.follow();
    a.registry
        .add(request("a1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    eventually("node-b knows a1", || b.registry.get(&key("a1")).is_some()).await;

    etcd.stop();
    let err = approve(&a, "shop/web", "shop/api->shop/web:80/tcp")
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Store(StoreError::Unavailable { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("keeps enforcing its last state"),
        "{err}"
    );
    assert_eq!(
        a.registry.profile_version(&zone("shop/web")),
        0,
        "nothing half-applied"
    );
    assert!(!a.store.health().up);
    assert!(
        b.registry.get(&key("a1")).is_some(),
        "node-b keeps its state"
    );

    etcd.restart();
    eventually("node-a's store answers again", || {
        let store = a.store.clone();
        store.check_writable().is_ok()
    })
    .await;
    approve(&a, "shop/web", "shop/api->shop/web:80/tcp")
        .await
        .unwrap();
    a.registry
        .add(request("a2", "shop/web", &["10.0.0.6/24"]), note())
        .await
        .unwrap();
    eventually("node-b's watch resumed", || {
        b.registry.get(&key("a2")).is_some() && b.registry.profile_version(&zone("shop/web")) == 1
    })
    .await;
    b.assert_kernel_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_after_compaction_applies_the_difference() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    for (id, ip) in [("a1", "10.0.0.5/24"), ("a2", "10.0.0.6/24")] {
        a.registry
            .add(request(id, "shop/web", &[ip]), note())
            .await
            .unwrap();
    }
    // node-b loads now and watches only later, from that revision.
    let b = node(&etcd, "node-b").await;
    assert_eq!(b.registry.snapshot().endpoints.len(), 2);
    a.registry.del(key("a1"), note()).await.unwrap();
    a.registry
        .add(request("a3", "shop/db", &["10.0.0.7/24"]), note())
        .await
        .unwrap();
    approve(&a, "shop/db", "shop/web->shop/db:5432/tcp")
        .await
        .unwrap();
    let compacted = etcd.compact();
    assert!(compacted > b.store.loaded_revision());

    let _follow = b.follow();
    eventually("node-b resynced", || {
        let s = b.registry.snapshot();
        s.endpoints.contains_key(&key("a3"))
            && !s.endpoints.contains_key(&key("a1"))
            && b.registry.profile_version(&zone("shop/db")) == 1
    })
    .await;
    assert!(
        b.registry.get(&key("a2")).is_some(),
        "what did not change stays"
    );
    b.assert_kernel_consistent();
    eventually("the watch caught up", || b.store.health().watch_lag == 0).await;

    // After the resync the watch goes on from the listing's revision.
    a.registry
        .add(request("a4", "shop/db", &["10.0.0.8/24"]), note())
        .await
        .unwrap();
    eventually("node-b sees a change after the resync", || {
        b.registry.get(&key("a4")).is_some()
    })
    .await;
}

/// etcd answers a new watch with its current revision before it sends the changes
/// since the revision the watch starts from. A watch that resumes (after a break, or
/// at a node's start) must not take that answer as progress: the node would say it
/// applied changes it has not seen yet, and resume after them if the stream broke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_watch_counts_no_revision_before_its_changes_arrive() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    // node-b loads now and watches only after node-a's changes.
    let b = node(&etcd, "node-b").await;
    let loaded = b.store.loaded_revision();
    for (id, ip) in [("a1", "10.0.0.5/24"), ("a2", "10.0.0.6/24")] {
        a.registry
            .add(request(id, "shop/web", &[ip]), note())
            .await
            .unwrap();
    }
    let mut updates = b.store.watch();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), updates.recv())
        .await
        .expect("an update within 10 s")
        .expect("the watch runs");
    assert!(
        !first.is_progress(),
        "the first update after the load must bring node-a's changes, not a revision: {first:?}"
    );
    assert!(
        first.changed.iter().all(|kv| kv.mod_revision > loaded),
        "only changes after the load: {first:?}"
    );
    assert!(
        first
            .changed
            .iter()
            .any(|kv| kv.key.contains("/endpoints/node-a/")),
        "node-a's endpoints: {first:?}"
    );
}

/// A watch that catches up gets many revisions in one answer, a key's deletion and
/// its new value among them: the node ends with the new value. An endpoint released
/// from quarantine and quarantined again stays quarantined on the other nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_and_written_again_while_a_node_catches_up_keeps_its_value() {
    let etcd = EtcdProcess::start();
    let a = node_with_a1(&etcd).await;
    a.registry
        .quarantine_endpoint("a1".into(), true, note())
        .await
        .unwrap();
    // node-b loads the quarantine, then misses its release and its return.
    let b = node(&etcd, "node-b").await;
    assert!(b.registry.snapshot().quarantined.contains("a1"));
    for on in [false, true] {
        a.registry
            .quarantine_endpoint("a1".into(), on, note())
            .await
            .unwrap();
    }
    let _follow = b.follow();
    eventually("node-b caught up", || b.store.health().watch_lag == 0).await;
    assert!(
        b.registry.snapshot().quarantined.contains("a1"),
        "quarantined again on node-a, so on node-b too"
    );
    b.assert_kernel_consistent();
}

/// A node whose record is gone (its lease ran out: dead, or cut off from etcd) has its
/// endpoints leave every other node's zones, at once for a watching node and at load
/// for a starting one; when its record is back, they return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_endpoints_leave_the_zones_and_return_with_it() {
    let etcd = EtcdProcess::start();
    let mut a = node_with_a1(&etcd).await;
    let b = node(&etcd, "node-b").await;
    let _follow_b = b.follow();
    assert!(b.registry.get(&key("a1")).is_some());

    leave(&mut a).await;
    eventually("node-a's endpoint leaves node-b's zones", || {
        b.registry.get(&key("a1")).is_none()
    })
    .await;
    b.assert_kernel_consistent();
    assert!(b.dataplane.ruleset().members.is_empty());

    // While node-a has no record, what it writes stays out too, and a node that
    // starts meanwhile leaves its endpoints out from the start.
    a.registry
        .add(request("a2", "shop/web", &["10.0.0.6/24"]), note())
        .await
        .unwrap();
    let c = node(&etcd, "node-c").await;
    let _follow_c = c.follow();
    assert!(c.registry.get(&key("a1")).is_none());
    eventually("node-b's watch caught up", || {
        b.store.health().watch_lag == 0
    })
    .await;
    assert!(b.registry.get(&key("a2")).is_none());

    a.membership = Some(publish(&a.store));
    for (name, n) in [("node-b", &b), ("node-c", &c)] {
        eventually(&format!("node-a's endpoints rejoin on {name}"), || {
            n.registry.get(&key("a1")).is_some() && n.registry.get(&key("a2")).is_some()
        })
        .await;
        n.assert_kernel_consistent();
    }
}

/// The next update of `updates` that changes or deletes a key ending in `suffix`
/// (other updates, such as a node's own record or a bare revision, are passed over).
async fn next_change(
    updates: &mut tokio::sync::mpsc::Receiver<watch::ClusterUpdate>,
    suffix: &str,
) -> watch::ClusterUpdate {
    loop {
        let update = tokio::time::timeout(Duration::from_secs(10), updates.recv())
            .await
            .unwrap_or_else(|_| panic!("no update of a key ending in {suffix} within 10 s"))
            .expect("the watch runs");
        let keys = update
            .changed
            .iter()
            .map(|kv| kv.key.as_str())
            .chain(update.deleted.iter().map(|(key, _)| key.as_str()));
        if keys.into_iter().any(|key| key.ends_with(suffix)) {
            return update;
        }
    }
}

/// A node's return brings its endpoints back even when a first attempt to apply it
/// went nowhere (the full listing it needs failed): the node stays withheld until its
/// endpoints are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_nodes_endpoints_come_back_after_a_lost_attempt() {
    let etcd = EtcdProcess::start();
    let mut a = node_with_a1(&etcd).await;
    let b = node(&etcd, "node-b").await;
    let mut updates = b.store.watch();
    leave(&mut a).await;
    let gone = next_change(&mut updates, "/nodes/node-a").await;
    watch::apply_update(&b.store, &b.registry, &gone)
        .await
        .unwrap();
    assert!(b.registry.get(&key("a1")).is_none(), "node-a left");

    a.membership = Some(publish(&a.store));
    let back = next_change(&mut updates, "/nodes/node-a").await;
    // A first attempt that decoded the update and was lost before its listing.
    drop(watch::decode_update(&b.store, &back));
    watch::apply_update(&b.store, &b.registry, &back)
        .await
        .unwrap();
    assert!(
        b.registry.get(&key("a1")).is_some(),
        "node-a's endpoint rejoined its zone"
    );
    b.assert_kernel_consistent();
}

/// The watch may decode this node's own write (its echo) before that write has
/// recorded its revision; if another local change then commits a newer value of the
/// record, applying the echo would put the older value back in the registry and the
/// kernel. It is left out under the registry's lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_decoded_before_a_newer_local_change_does_not_undo_it() {
    let etcd = EtcdProcess::start();
    let a = node_with_a1(&etcd).await;
    let mut updates = a.store.watch();
    approve(&a, "shop/web", "shop/api->shop/web:80/tcp")
        .await
        .unwrap();
    let echo = next_change(&mut updates, "/profiles/shop/web").await;
    let record = echo
        .changed
        .iter()
        .find(|kv| kv.key.ends_with("/profiles/shop/web"))
        .expect("the profile's record in the echo")
        .clone();
    let older = decode::decode_profile(&zone("shop/web"), &record.value).unwrap();
    assert_eq!(older.version, 1);
    approve(&a, "shop/web", "shop/api->shop/web:81/tcp")
        .await
        .unwrap();
    assert_eq!(a.registry.profile_version(&zone("shop/web")), 2);

    // The echo as the watch decoded it before change 1 recorded its revision, applied
    // the way the watch applies what it decoded.
    let decoded = watch::Decoded {
        changes: vec![crate::registry::remote::RemoteChange::Profile(Box::new(
            older,
        ))],
        origins: vec![Some((record.key.clone(), record.mod_revision))],
        observed: vec![record.clone()],
        ..Default::default()
    };
    watch::apply_taken(&a.store, &a.registry, decoded, record.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        a.registry.profile_version(&zone("shop/web")),
        2,
        "the newer local approval stays"
    );
    a.assert_kernel_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_records_live_on_a_lease() {
    let etcd = EtcdProcess::start();
    let a = store(&etcd, "node-a");
    let b = node(&etcd, "node-b").await;
    let _follow = b.follow();
    let mut nodes = b.store.nodes();
    let record = NodeRecord {
        name: "node-a".into(),
        address: "192.0.2.10".parse().unwrap(),
        second_address: Some("2001:db8::10".parse().unwrap()),
        pod_cidrs: vec![
            "10.244.1.0/24".parse().unwrap(),
            "fd00:1::/64".parse().unwrap(),
        ],
        enforcer_version: "test".into(),
    };
    let membership = a.publish_node(record.clone(), Duration::from_secs(5));
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        nodes.wait_for(|n| n.iter().any(|r| r.name == "node-a")),
    )
    .await
    .expect("node-b learns of node-a")
    .unwrap()
    .clone();
    assert!(seen.contains(&record), "{seen:?}");
    // Leaving revokes the lease: the record goes at once.
    tokio::task::spawn_blocking(move || membership.leave())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        nodes.wait_for(|n| n.iter().all(|r| r.name != "node-a")),
    )
    .await
    .expect("node-a's record goes with its lease")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_on_a_stale_node_is_refused_whole() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    approve(&a, "shop/db", "shop/api->shop/db:5432/tcp")
        .await
        .unwrap();
    let docs = zonewarden_profiles::export::parse(
        "apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/web\nmode: enforce\napproved: []\n---\n\
         apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/db\nmode: monitor\napproved: []\n",
    )
    .unwrap();
    // node-b has not seen node-a's approval of shop/db: the import touches it, so the
    // whole import is refused, shop/web included, in memory and in etcd.
    let err = b
        .registry
        .import_profiles(docs.clone(), actor("gitops"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the profile of zone shop/db"),
        "{err}"
    );
    assert!(b.registry.snapshot().policy.profiles.is_empty());
    let stored = store(&etcd, "node-c").load().unwrap();
    assert_eq!(stored.profiles.len(), 1, "only node-a's approval is stored");
    assert_eq!(stored.profiles[0].mode, Mode::Learn);
    // Staged writes of the refused import are gone: the next change writes only itself.
    let _follow = b.follow();
    eventually("node-b sees node-a's approval", || {
        b.registry.profile_version(&zone("shop/db")) == 1
    })
    .await;
    approve(&b, "shop/web", "shop/api->shop/web:80/tcp")
        .await
        .unwrap();
    let stored = store(&etcd, "node-c").load().unwrap();
    let modes: Vec<(String, Mode)> = stored
        .profiles
        .iter()
        .map(|p| (p.zone.to_string(), p.mode))
        .collect();
    assert_eq!(
        modes,
        [
            ("shop/db".to_owned(), Mode::Learn),
            ("shop/web".to_owned(), Mode::Learn)
        ]
    );
    // The retried import now applies to both zones.
    b.registry
        .import_profiles(docs, actor("gitops"))
        .await
        .unwrap();
    let stored = store(&etcd, "node-c").load().unwrap();
    assert!(stored.profiles.iter().all(|p| p.mode != Mode::Learn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_while_etcd_is_down_is_enforced_now_and_published_later() {
    let mut etcd = EtcdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("etcd-unpublished.json");
    let endpoint = etcd.endpoint();
    let queued_store = || {
        EtcdStore::connect(EtcdConfig {
            endpoints: vec![endpoint.clone()],
            prefix: "/zw-test".into(),
            node: "node-a".into(),
            tls: None,
            unpublished: Some(queue.clone()),
        })
        .unwrap()
    };
    let Node {
        store: a_store,
        registry: a,
        dataplane,
        membership: _membership,
    } = node_over(queued_store()).await;
    a.add(request("a1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    let b = node(&etcd, "node-b").await;
    let _follow = b.follow();

    etcd.stop();
    // The zone has its id: the ADD is enforced at once and queued.
    a.add(request("a2", "shop/web", &["10.0.0.6/24"]), note())
        .await
        .unwrap();
    assert!(
        dataplane
            .ruleset()
            .members
            .contains_key(&"10.0.0.6".parse().unwrap()),
        "enforced while etcd is down"
    );
    a.del(key("a1"), note()).await.unwrap();
    // A new zone needs a cluster-wide id: refused, nothing left behind.
    let err = a
        .add(request("a3", "shop/new", &["10.0.0.7/24"]), note())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Store(StoreError::Unavailable { .. })),
        "{err}"
    );
    assert!(a.get(&key("a3")).is_none());
    // A restart while etcd is away keeps the queue (the load overlays it).
    let queued = unpublished::Unpublished::open(&queue).unwrap().writes();
    assert_eq!(queued.len(), 2, "a2 added, a1 deleted: {queued:?}");

    etcd.restart();
    let again = queued_store().load().unwrap();
    let keys: Vec<String> = again
        .endpoints
        .iter()
        .filter(|e| e.node == "node-a")
        .map(|e| e.key.container_id.to_string())
        .collect();
    assert_eq!(keys, ["a2"], "the load overlays the queue");
    a_store.spawn_publisher();
    eventually("node-b learns what node-a did while etcd was away", || {
        b.registry.get(&key("a2")).is_some() && b.registry.get(&key("a1")).is_none()
    })
    .await;
    eventually("the queue is empty", || {
        unpublished::Unpublished::open(&queue)
            .unwrap()
            .writes()
            .is_empty()
    })
    .await;
    b.assert_kernel_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_deletion_is_one_guarded_transaction_that_other_nodes_follow() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    approve(&a, "shop/old", "shop/old->shop/db:5432/tcp")
        .await
        .unwrap();
    approve(&a, "shop/web", "shop/web->shop/old:80/tcp")
        .await
        .unwrap();
    let _follow_b = b.follow();
    eventually("node-b sees both profiles", || {
        b.registry.profile_version(&zone("shop/web")) == 1
            && b.registry.profile_version(&zone("shop/old")) == 1
    })
    .await;
    // node-b changes the profile after node-a last saw it: node-a's delete is refused
    // whole (neither the profile nor the edge held by shop/web goes).
    approve(&b, "shop/old", "shop/old->shop/cache:6379/tcp")
        .await
        .unwrap();
    let err = a
        .registry
        .delete_profile(zone("shop/old"), true, actor("root"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Store(StoreError::Conflict { .. }))
            && err.to_string().contains("the profile of zone shop/old"),
        "{err}"
    );
    let stored = store(&etcd, "node-c").load().unwrap();
    assert_eq!(stored.profiles.len(), 2, "nothing was deleted");
    assert_eq!(
        stored.profiles[1].approved.len(),
        1,
        "shop/web keeps its edge"
    );
    assert!(
        a.registry
            .snapshot()
            .policy
            .profiles
            .contains_key(&zone("shop/old")),
        "rolled back in memory"
    );

    // Once node-a has seen the change, the retry deletes the profile and removes the
    // held edge in one transaction; node-b follows.
    let _follow_a = a.follow();
    eventually("node-a sees node-b's approval", || {
        a.registry.profile_version(&zone("shop/old")) == 2
    })
    .await;
    let deleted = a
        .registry
        .delete_profile(zone("shop/old"), true, actor("root"))
        .await
        .unwrap();
    assert_eq!(deleted.profile.version, 2);
    let stored = store(&etcd, "node-c").load().unwrap();
    assert_eq!(
        stored
            .profiles
            .iter()
            .map(|p| (p.zone.as_str(), p.approved.len(), p.version))
            .collect::<Vec<_>>(),
        vec![("shop/web", 0, 2)]
    );
    eventually("node-b follows the deletion", || {
        let snapshot = b.registry.snapshot();
        !snapshot.policy.profiles.contains_key(&zone("shop/old"))
            && snapshot.policy.profiles[&zone("shop/web")]
                .approved
                .is_empty()
    })
    .await;
    b.assert_kernel_consistent();
}

/// The cluster-wide trail, verified as `zwctl audit verify` does.
fn verified_trail(store: &EtcdStore) -> (Vec<crate::audit::AuditEntry>, bool, String) {
    let trail = store.audit_trail().unwrap();
    let head = trail.head.as_ref().map(|h| (h.seq, h.hash.as_str()));
    let verification = crate::audit::chain::verify(&trail.bytes, head);
    let problems = format!("{:?}", verification.problems);
    let (entries, _) = crate::audit::chain::entries(&trail.bytes);
    (
        entries.into_iter().map(|(_, e)| e).collect(),
        verification.intact(),
        problems,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_of_every_node_form_one_chained_trail() {
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    // An endpoint change stays in the node's own log.
    a.registry
        .add(request("a1", "shop/api", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    let _follow_a = a.follow();
    let _follow_b = b.follow();
    eventually("node-b knows node-a's zone", || {
        b.registry
            .snapshot()
            .zone_ids
            .get(&zone("shop/api"))
            .is_some()
    })
    .await;
    // Both nodes change policy at the same time, each on its own zones: every change
    // holds (the head moving under one is chained again, never refused) and the trail
    // has them all, in one order.
    const EACH: usize = 12;
    let run = |node: &Node, prefix: &'static str| {
        let registry = node.registry.clone();
        async move {
            for i in 0..EACH {
                let edge: zonewarden_profiles::Edge =
                    format!("shop/api->{prefix}/z{i}:80/tcp").parse().unwrap();
                registry
                    .change_profile(
                        zone(&format!("{prefix}/z{i}")),
                        IfMissing::Create,
                        move |p: &mut Profile| p.approve([edge], &actor("ops")),
                        noted(),
                    )
                    .await
                    .unwrap();
            }
        }
    };
    tokio::join!(run(&a, "team-a"), run(&b, "team-b"));
    let (entries, intact, problems) = verified_trail(&a.store);
    assert!(intact, "{problems}");
    assert_eq!(entries.len(), 2 * EACH, "{entries:#?}");
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, i as u64 + 1);
        assert_eq!(entry.action, crate::audit::Action::Approve);
        let node = entry.node.as_deref().unwrap();
        let team = entry.zone.as_deref().unwrap().split('/').next().unwrap();
        assert_eq!(
            (node, team),
            if team == "team-a" {
                ("node-a", "team-a")
            } else {
                ("node-b", "team-b")
            },
            "each entry names the node that made it"
        );
    }

    // A change refused for a conflict writes no entry.
    let c = node(&etcd, "node-c").await;
    approve(&a, "team-a/z0", "shop/api->team-a/z0:443/tcp")
        .await
        .unwrap();
    approve(&c, "team-a/z0", "shop/api->team-a/z0:8443/tcp")
        .await
        .unwrap_err();
    let (entries, intact, problems) = verified_trail(&c.store);
    assert!(intact, "{problems}");
    assert_eq!(entries.len(), 2 * EACH + 1);
    assert_eq!(entries.last().unwrap().node.as_deref(), Some("node-a"));

    // An entry edited in etcd, or dropped from the end, shows.
    let keys = a.store.keys().clone();
    let third = keys.audit_entry(3);
    let original = etcd
        .ctl(&["get", &third, "--print-value-only"])
        .unwrap()
        .trim_end()
        .to_owned();
    let edited = original.replace(r#""who":"test""#, r#""who":"eve""#);
    assert_ne!(edited, original);
    etcd.ctl(&["put", &third, &edited]).unwrap();
    let (_, intact, problems) = verified_trail(&a.store);
    assert!(!intact && problems.contains("Edited"), "{problems}");
    etcd.ctl(&["put", &third, &original]).unwrap();
    let last = keys.audit_entry(2 * EACH as u64 + 1);
    etcd.ctl(&["del", &last]).unwrap();
    let (_, intact, problems) = verified_trail(&a.store);
    assert!(!intact && problems.contains("Dropped"), "{problems}");
}

/// Publishes `store`'s record and waits until etcd holds it (the publication runs in
/// the background).
fn published(etcd: &EtcdProcess, store: &EtcdStore) -> NodeMembership {
    let membership = publish(store);
    let key = format!("/zw-test/nodes/{}", store.node());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !etcd
        .ctl(&["get", "--print-value-only", &key])
        .is_ok_and(|v| !v.trim().is_empty())
    {
        assert!(Instant::now() < deadline, "{key} was never published");
        std::thread::sleep(Duration::from_millis(20));
    }
    membership
}

#[test]
fn a_pod_block_is_claimed_once_kept_across_restarts_and_taken_over_only_when_its_node_is_gone() {
    let etcd = EtcdProcess::start();
    // Room for two /26 blocks.
    let pool: ipnet::IpNet = "10.250.0.0/25".parse().unwrap();
    let a = store(&etcd, "node-a");
    let block_a = a.claim_pod_block(pool, 26).unwrap();
    let alive_a = published(&etcd, &a);
    assert_eq!(
        a.claim_pod_block(pool, 26).unwrap(),
        block_a,
        "a restarted node gets its own block back"
    );
    let b = store(&etcd, "node-b");
    let block_b = b.claim_pod_block(pool, 26).unwrap();
    let _alive_b = published(&etcd, &b);
    assert_ne!(block_a, block_b, "two nodes never share a block");

    // The pool is full and both owners are live: a third node gets none.
    let c = store(&etcd, "node-c");
    let err = c.claim_pod_block(pool, 26).unwrap_err().to_string();
    assert!(
        err.contains("10.250.0.0/25") && err.contains("no /26 block left"),
        "{err}"
    );

    // node-a is gone (its record went with its lease): its block is taken over.
    alive_a.leave();
    assert_eq!(c.claim_pod_block(pool, 26).unwrap(), block_a);
    let _alive_c = published(&etcd, &c);
    let back = a.claim_pod_block(pool, 26).unwrap_err().to_string();
    assert!(
        back.contains("no /26 block left"),
        "node-a's block is node-c's now: {back}"
    );
    assert!(
        a.load().is_ok(),
        "the claims are keys a load of the prefix accepts"
    );
}

/// Response rules are part of the profile: they round-trip through etcd, replicate to
/// every node, and each node counts only its own endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rules_replicate_with_the_profile_and_each_node_acts_on_its_own_endpoints() {
    use zonewarden_profiles::response::{ResponseRules, ViolationsRule};
    let etcd = EtcdProcess::start();
    let a = node(&etcd, "node-a").await;
    let b = node(&etcd, "node-b").await;
    let _follow_b = b.follow();
    let _follow_a = a.follow();
    a.registry
        .add(request("a1", "shop/api", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    let rules = ResponseRules {
        violations: Some(ViolationsRule::new(5, 60).unwrap()),
        new_port: true,
    };
    a.registry
        .change_profile(
            zone("shop/api"),
            IfMissing::Refuse,
            move |p: &mut Profile| Ok(usize::from(p.set_response(rules, &actor("root")))),
            noted(),
        )
        .await
        .unwrap();
    let stored = store(&etcd, "node-c").load().unwrap();
    assert_eq!(stored.profiles[0].response, rules, "stored in etcd");
    eventually("node-b has the rules", || {
        b.registry.resolver().response.rules.get(&zone("shop/api")) == Some(&rules)
    })
    .await;
    eventually("node-b knows node-a's endpoint", || {
        b.registry.get(&key("a1")).is_some()
    })
    .await;
    let on_b = b.registry.resolver();
    assert!(
        on_b.response.sources.is_empty(),
        "node-b counts no endpoint of node-a"
    );
    let on_a = a.registry.resolver();
    let source = &on_a.response.sources[&"10.0.0.5".parse().unwrap()];
    assert_eq!(
        (source.container_id.as_str(), source.quarantined),
        ("a1", false)
    );
}

/// A listing of many pages may take longer than one request's limit in all: each page
/// is its own request. A node that knows a large cluster (100,000 endpoints take about
/// 10 s to list) must read its state, not find the store "unavailable" after 5 s.
#[test]
fn work_of_many_requests_may_outlast_one_requests_limit() {
    let etcd = EtcdProcess::start();
    let a = store(&etcd, "node-a");
    let pages = |mut client: etcd_client::Client| async move {
        for _ in 0..6 {
            client.get("/zw-slow/", None).await?;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        Ok(())
    };
    let limit = std::time::Duration::from_secs(30);
    a.shared()
        .call_within("six slow pages", limit, pages)
        .expect("six requests of a second each, within 30 s in all");
    let err = a
        .shared()
        .call("six slow pages", pages)
        .expect_err("a single request's 5 s limit is not enough for six seconds");
    assert!(err.to_string().contains("no answer within 5s"), "{err}");
}
