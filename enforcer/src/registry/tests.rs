//! Registry tests against the in-memory data plane (what a kernel would read back).

use std::collections::BTreeMap;
use std::sync::Arc;

use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::profile::Actor;
use zonewarden_profiles::{Mode, ZoneName};

use super::{EndpointRegistry, IfMissing, RegistryError};
use crate::nft::ruleset::MemoryDataplane;
use crate::store::{LocalStore, Store};
use crate::test_support::{key, note, noted};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<LocalStore>,
    dataplane: Arc<MemoryDataplane>,
    registry: EndpointRegistry,
}

fn open(store: &Arc<LocalStore>, dataplane: &Arc<MemoryDataplane>) -> EndpointRegistry {
    let stored = store.load().unwrap();
    EndpointRegistry::open(
        "node-1".into(),
        store.clone(),
        dataplane.clone(),
        NodeSettings::default(),
        stored,
    )
    .unwrap()
    .with_connection_flusher(|_| Ok(0))
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let dataplane = Arc::new(MemoryDataplane::new());
    let registry = open(&store, &dataplane);
    Fixture {
        _dir: dir,
        store,
        dataplane,
        registry,
    }
}

use crate::test_support::add_request as request;

/// Address → zone id in the "kernel"'s membership map.
fn kernel(f: &Fixture) -> BTreeMap<String, u32> {
    f.dataplane
        .ruleset()
        .members
        .into_iter()
        .map(|(addr, (id, _))| (addr.to_string(), id))
        .collect()
}

fn actor() -> Actor {
    Actor {
        who: "test".into(),
        at_unix_ms: 1,
        comment: String::new(),
    }
}

#[tokio::test]
async fn add_persists_programs_and_publishes() {
    let f = fixture();
    let endpoint = f
        .registry
        .add(
            request("c1", "shop/web", &["10.0.0.5/24", "fd00::5/64"]),
            note(),
        )
        .await
        .unwrap();
    assert_eq!(endpoint.zone.as_str(), "shop/web");
    assert_eq!(
        kernel(&f),
        BTreeMap::from([("10.0.0.5".into(), 1), ("fd00::5".into(), 1)])
    );
    assert!(
        f.dataplane.ruleset().zones.contains_key(&1),
        "the zone's chains exist"
    );
    assert_eq!(f.store.load().unwrap().endpoints, vec![endpoint.clone()]);
    assert_eq!(f.registry.get(&key("c1")), Some(endpoint));
    let (_, problems) = f.registry.check(key("c1")).await.unwrap().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn a_repeated_add_replaces_the_old_record() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    f.registry
        .add(request("c1", "shop/db", &["10.0.0.6/24"]), note())
        .await
        .unwrap();
    assert_eq!(kernel(&f), BTreeMap::from([("10.0.0.6".into(), 2)]));
    assert_eq!(
        f.registry.snapshot().zones().len(),
        1,
        "the emptied zone is retired"
    );
    assert_eq!(f.store.load().unwrap().endpoints.len(), 1);
}

#[tokio::test]
async fn a_failed_kernel_step_leaves_nothing() {
    let f = fixture();
    // The data plane retries once from a fresh read: fail both attempts.
    f.dataplane.fail_next(2);
    let err = f
        .registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Dataplane { .. }), "{err}");
    assert!(kernel(&f).is_empty());
    let stored = f.store.load().unwrap();
    assert!(
        stored.endpoints.is_empty(),
        "the store entry must be rolled back"
    );
    assert_eq!(
        stored.zone_ids.iter().count(),
        0,
        "the new zone id must be rolled back"
    );
    assert!(f.registry.get(&key("c1")).is_none());
}

#[tokio::test]
async fn del_is_idempotent_and_spares_a_newer_owner() {
    let f = fixture();
    f.registry
        .add(request("old", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    f.registry
        .add(request("new", "shop/db", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    assert!(f.registry.del(key("old"), note()).await.unwrap().is_some());
    assert!(f.registry.del(key("old"), note()).await.unwrap().is_none());
    assert_eq!(kernel(&f), BTreeMap::from([("10.0.0.5".into(), 2)]));
    f.registry.del(key("new"), note()).await.unwrap();
    assert!(kernel(&f).is_empty());
    assert!(
        f.dataplane.ruleset().zones.is_empty(),
        "zone chains go with their last member"
    );
}

#[tokio::test]
async fn an_invalid_zone_is_refused_before_any_side_effect() {
    let f = fixture();
    let err = f
        .registry
        .add(request("c1", "Not Valid", &["10.0.0.5/24"]), note())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("zone name \"Not Valid\" is invalid"),
        "{err}"
    );
    assert!(kernel(&f).is_empty());
    assert_eq!(f.dataplane.applies(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_all_succeed() {
    let f = fixture();
    let adds: Vec<_> = (0..50)
        .map(|i| {
            let registry = f.registry.clone();
            let ip = format!("10.0.{}.{}/16", i / 200, i % 200 + 1);
            tokio::spawn(async move {
                registry
                    .add(
                        request(&format!("c{i}"), &format!("zone-{}", i % 5), &[&ip]),
                        note(),
                    )
                    .await
            })
        })
        .collect();
    for add in adds {
        add.await.unwrap().unwrap();
    }
    assert_eq!(kernel(&f).len(), 50);
    assert_eq!(f.store.load().unwrap().endpoints.len(), 50);
    assert_eq!(f.registry.snapshot().zones().len(), 5);
}

#[tokio::test]
async fn restart_reconciles_the_kernel_with_the_store() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    f.registry
        .add(request("c2", "shop/web", &["10.0.0.6/24"]), note())
        .await
        .unwrap();
    let wanted = f.dataplane.ruleset();
    f.dataplane.tamper(|rs| {
        rs.members.remove(&"10.0.0.5".parse().unwrap());
        rs.local.remove(&"10.0.0.5".parse().unwrap());
        rs.members
            .insert("10.9.9.9".parse().unwrap(), (9, "stray".into()));
    });
    let restarted = open(&f.store, &f.dataplane);
    restarted.sync_kernel().await.unwrap();
    assert_eq!(
        f.dataplane.ruleset(),
        wanted,
        "the kernel is back to what the store says"
    );
    let (_, problems) = restarted.check(key("c1")).await.unwrap().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn check_reports_what_the_kernel_lacks() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    f.dataplane.tamper(|rs| {
        rs.members.clear();
        rs.local.clear();
    });
    let (_, problems) = f.registry.check(key("c1")).await.unwrap().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("no element for 10.0.0.5"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn approvals_and_modes_are_durable_and_reach_the_kernel() {
    let f = fixture();
    f.registry
        .add(request("fe", "shop/frontend", &["10.0.0.5/32"]), note())
        .await
        .unwrap();
    f.registry
        .add(request("api", "shop/api", &["10.0.0.6/32"]), note())
        .await
        .unwrap();
    let zone = ZoneName::parse("shop/frontend").unwrap();
    let edge = "shop/frontend->shop/api:8080/tcp".parse().unwrap();
    let (profile, changed) = f
        .registry
        .change_profile(
            zone.clone(),
            IfMissing::Create,
            move |p| p.approve([edge], &actor()),
            noted(),
        )
        .await
        .unwrap();
    assert_eq!((changed, profile.version), (1, 1));
    let fe_rules = f.dataplane.ruleset().zones[&1].clone();
    assert!(fe_rules.allow_out.contains(&(
        "10.0.0.6".parse().unwrap(),
        zonewarden_profiles::Proto::Tcp,
        8080
    )));
    assert!(
        f.dataplane.ruleset().zones[&2].allow_in.contains(&(
            "10.0.0.5".parse().unwrap(),
            zonewarden_profiles::Proto::Tcp,
            8080
        )),
        "one approval allows at both ends"
    );
    assert_eq!(f.store.load().unwrap().profiles, vec![profile]);

    // A failed kernel step restores the profile on disk and in memory.
    f.dataplane.fail_next(2);
    let err = f
        .registry
        .change_profile(
            zone.clone(),
            IfMissing::Create,
            |p| Ok(usize::from(p.set_mode(Mode::Enforce, &actor()))),
            noted(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Kernel(_)), "{err}");
    assert_eq!(f.store.load().unwrap().profiles[0].mode, Mode::Learn);
    assert_eq!(f.registry.snapshot().policy.mode(&zone), Mode::Learn);
    assert_eq!(f.dataplane.ruleset().zones[&1].mode, Mode::Learn);
}

#[tokio::test]
async fn quarantine_of_an_endpoint_and_its_undo() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/32"]), note())
        .await
        .unwrap();
    let before = f.dataplane.ruleset();
    assert!(
        f.registry
            .quarantine_endpoint("c1".into(), true, note())
            .await
            .unwrap()
    );
    assert!(f.dataplane.ruleset().local[&"10.0.0.5".parse().unwrap()].quarantined);
    assert!(f.store.load().unwrap().quarantined.contains("c1"));
    assert!(
        f.registry
            .quarantine_endpoint("c1".into(), false, note())
            .await
            .unwrap()
    );
    assert_eq!(
        f.dataplane.ruleset(),
        before,
        "lifting restores the state before"
    );
    let err = f
        .registry
        .quarantine_endpoint("nope".into(), true, note())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::UnknownEndpoint(_)), "{err}");
}

/// The incrementally compiled ruleset equals a compile from scratch after every change,
/// successful or refused by the kernel, and the kernel holds it.
#[tokio::test]
async fn incremental_compilation_follows_every_change_and_every_undo() {
    let f = fixture();
    f.registry.sync_kernel().await.unwrap();
    let check = |what: &str| {
        let state = f.registry.state.lock().unwrap();
        let desired = state.desired();
        assert_eq!(
            state.applied(),
            &desired,
            "{what}: compiled vs from scratch"
        );
        assert_eq!(
            f.dataplane.ruleset(),
            crate::nft::ruleset::representable(&desired),
            "{what}: the kernel holds it"
        );
    };
    let edge = |e: &str| e.parse::<zonewarden_profiles::Edge>().unwrap();
    for (i, zone) in ["shop/web", "shop/db", "shop/web"].into_iter().enumerate() {
        let ip = format!("10.0.0.{}/32", i + 2);
        f.registry
            .add(request(&format!("c{i}"), zone, &[&ip]), note())
            .await
            .unwrap();
        check("add");
    }
    let web = ZoneName::parse("shop/web").unwrap();
    let approve = |edges: Vec<zonewarden_profiles::Edge>| {
        let zone = web.clone();
        f.registry.change_profile(
            zone,
            IfMissing::Create,
            move |p| p.approve(edges, &actor()),
            noted(),
        )
    };
    approve(vec![
        edge("shop/web->shop/db:5432/tcp"),
        edge("shop/db->shop/web:80/tcp"),
    ])
    .await
    .unwrap();
    check("approve");
    f.dataplane.fail_next(1);
    approve(vec![edge("shop/web->world:443/tcp")])
        .await
        .unwrap_err();
    check("a refused approval");
    f.dataplane.fail_next(1);
    f.registry
        .add(request("c9", "shop/cache", &["10.0.0.9/32"]), note())
        .await
        .unwrap_err();
    check("a refused add of a new zone");
    f.dataplane.fail_next(1);
    f.registry.del(key("c1"), note()).await.unwrap_err();
    check("a refused del");
    f.registry
        .add(request("c0", "shop/db", &["10.0.0.2/32"]), note())
        .await
        .unwrap();
    check("an endpoint replaced into another zone");
    f.registry
        .quarantine_endpoint("c2".into(), true, note())
        .await
        .unwrap();
    check("quarantine");
    f.registry
        .set_host_addrs(vec!["192.0.2.1".parse().unwrap()])
        .await
        .unwrap();
    check("host addresses");
    f.registry.del(key("c1"), note()).await.unwrap();
    f.registry.del(key("c2"), note()).await.unwrap();
    check("del");
}

/// A data plane that, whenever the kernel is asked to change, records how many lines
/// the audit log holds at that moment (to prove the entry comes first).
struct AuditWitness {
    inner: MemoryDataplane,
    log: std::path::PathBuf,
    lines_at_apply: std::sync::Mutex<Vec<usize>>,
}

impl crate::nft::ruleset::RulesetDataplane for AuditWitness {
    fn ensure_base(
        &self,
        settings: &NodeSettings,
    ) -> Result<crate::nft::ruleset::KernelView, crate::nft::NftError> {
        self.inner.ensure_base(settings)
    }
    fn apply(
        &self,
        diff: &zonewarden_profiles::diff::RulesetDiff,
        new: &zonewarden_profiles::ruleset::Ruleset,
    ) -> Result<(), crate::nft::NftError> {
        let lines = std::fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        self.lines_at_apply.lock().unwrap().push(lines);
        self.inner.apply(diff, new)
    }
    fn read(&self) -> Result<crate::nft::ruleset::KernelView, crate::nft::NftError> {
        self.inner.read()
    }
    fn confirms(&self, ruleset: &zonewarden_profiles::ruleset::Ruleset) -> bool {
        self.inner.confirms(ruleset)
    }
    fn seal(
        &self,
        ruleset: &zonewarden_profiles::ruleset::Ruleset,
    ) -> Result<bool, crate::nft::NftError> {
        self.inner.seal(ruleset)
    }
    fn ensure_base_stale(
        &self,
        settings: &NodeSettings,
        stale: &std::collections::BTreeSet<String>,
    ) -> Result<crate::nft::ruleset::KernelView, crate::nft::NftError> {
        self.inner.ensure_base_stale(settings, stale)
    }
    fn remove_objects(
        &self,
        chains: &[String],
        sets: &[String],
    ) -> Result<(), crate::nft::NftError> {
        self.inner.remove_objects(chains, sets)
    }
}

fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn every_change_is_in_the_audit_log_before_the_kernel_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let log = dir.path().join("audit.log");
    let dataplane = Arc::new(AuditWitness {
        inner: MemoryDataplane::new(),
        log: log.clone(),
        lines_at_apply: std::sync::Mutex::new(Vec::new()),
    });
    let registry = EndpointRegistry::open(
        "node-1".into(),
        store.clone(),
        dataplane.clone(),
        NodeSettings::default(),
        store.load().unwrap(),
    )
    .unwrap()
    .with_connection_flusher(|_| Ok(0))
    .with_audit(crate::audit::AuditLog::open(log.clone()));
    registry.sync_kernel().await.unwrap();
    let zone = ZoneName::parse("shop/web").unwrap();

    registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    let edge: zonewarden_profiles::Edge = "shop/web->world:443/tcp".parse().unwrap();
    let a = actor();
    registry
        .change_profile(
            zone.clone(),
            IfMissing::Create,
            move |p| p.approve([edge], &a),
            noted(),
        )
        .await
        .unwrap();
    registry
        .quarantine_endpoint("c1".into(), true, note())
        .await
        .unwrap();
    registry.del(key("c1"), note()).await.unwrap();

    let entries = audit_lines(&log);
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["endpoint-add", "approve", "quarantine", "endpoint-del"],
        "one entry per change: {entries:?}"
    );
    // The kernel saw each change only once its entry was on disk: the first change
    // (sync_kernel) found no entry, then 1, 2, 3, 4.
    assert_eq!(*dataplane.lines_at_apply.lock().unwrap(), [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_change_whose_audit_entry_cannot_be_written_is_refused() {
    let f = fixture();
    // The log's path is a directory: every append fails.
    let blocked = f._dir.path().join("audit-blocked");
    std::fs::create_dir(&blocked).unwrap();
    let registry = f
        .registry
        .clone()
        .with_audit(crate::audit::AuditLog::open(blocked));
    registry.sync_kernel().await.unwrap();
    let before = f.dataplane.applies();
    let err = registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Audit(_)), "{err}");
    assert!(
        err.to_string().contains("refused") && err.to_string().contains("audit"),
        "{err}"
    );
    assert_eq!(f.dataplane.applies(), before, "the kernel is untouched");
    assert!(kernel(&f).is_empty());
    let stored = f.store.load().unwrap();
    assert!(stored.endpoints.is_empty(), "the store is put back");
    assert_eq!(stored.zone_ids.iter().count(), 0);
    assert!(registry.get(&key("c1")).is_none());

    let zone = ZoneName::parse("shop/web").unwrap();
    let a = actor();
    let err = registry
        .change_profile(
            zone.clone(),
            IfMissing::Create,
            move |p| Ok(usize::from(p.set_mode(Mode::Enforce, &a))),
            noted(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Audit(_)), "{err}");
    assert!(!registry.snapshot().policy.profiles.contains_key(&zone));
    assert!(
        f.store
            .load()
            .unwrap()
            .profiles
            .iter()
            .all(|p| p.version == 0),
        "no profile version was saved"
    );
}

#[tokio::test]
async fn a_change_the_kernel_refuses_is_recorded_as_reverted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let dataplane = Arc::new(MemoryDataplane::new());
    let log = dir.path().join("audit.log");
    let registry = open(&store, &dataplane).with_audit(crate::audit::AuditLog::open(log.clone()));
    registry.sync_kernel().await.unwrap();
    dataplane.fail_next(2);
    registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap_err();
    let entries = audit_lines(&log);
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["endpoint-add", "reverted"], "{entries:?}");
    assert!(
        entries[1]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("endpoint-add not applied")),
        "{entries:?}"
    );
}

/// A published snapshot shares the registry's endpoint map until an endpoint
/// changes: a node at rest keeps one copy of its endpoints, and a snapshot taken
/// before a change still shows the state it was taken from.
#[tokio::test]
async fn a_snapshot_shares_the_endpoints_until_one_changes() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]), note())
        .await
        .unwrap();
    let before = f.registry.snapshot();
    let shared = |snapshot: &super::Snapshot| {
        let state = f.registry.state.lock().unwrap();
        Arc::ptr_eq(&state.endpoints, &snapshot.endpoints)
    };
    assert!(shared(&before), "the snapshot copied the endpoint map");
    assert_eq!(f.registry.endpoint_count(), 1);

    f.registry
        .add(request("c2", "shop/api", &["10.0.0.6/24"]), note())
        .await
        .unwrap();
    assert!(!shared(&before));
    assert_eq!(before.endpoints.len(), 1, "an earlier snapshot changed");
    assert_eq!(f.registry.endpoint_count(), 2);
    let after = f.registry.snapshot();
    assert_eq!(after.endpoints.len(), 2);
    assert!(shared(&after));

    f.registry.del(key("c1"), note()).await.unwrap();
    assert_eq!(f.registry.endpoint_count(), 1);
    assert_eq!(after.endpoints.len(), 2, "an earlier snapshot changed");
}

/// A chained ADD whose addresses another pod of this node holds, in a namespace that
/// still exists, is refused naming that pod; an address held by a pod of another
/// node, or by a pod whose namespace is gone, goes to the newest owner.
#[tokio::test]
async fn a_chained_add_is_refused_only_an_address_a_live_pod_of_this_node_holds() {
    use super::remote::RemoteChange;
    use zonewarden_profiles::AttachMode;

    let f = fixture();
    let routed = |id: &str, ip: &str, netns: &str| {
        let mut req = request(id, "shop/web", &[ip]);
        req.netns = netns.into();
        req
    };
    let chained = |id: &str, ip: &str| {
        let mut req = request(id, "shop/liar", &[ip]);
        req.netns = format!("/var/run/netns/liar-{id}");
        req.attach_mode = AttachMode::Chained;
        req
    };
    // A live pod (its namespace path exists) and one whose namespace is gone.
    let live = "/proc/self/ns/net";
    f.registry
        .add(routed("victim", "10.0.0.5/24", live), note())
        .await
        .unwrap();
    f.registry
        .add(
            routed("gone", "10.0.0.9/24", "/var/run/netns/zw-test-gone"),
            note(),
        )
        .await
        .unwrap();
    // A pod of another node.
    let mut remote = crate::test_support::endpoint("elsewhere", "shop/web", &["10.0.0.7/24"]);
    remote.node = "node-2".into();
    remote.netns = live.into();
    f.registry
        .apply_remote(
            vec![RemoteChange::Endpoint(Box::new(remote))],
            |due| due,
            || {},
        )
        .await
        .unwrap();

    match f
        .registry
        .add(chained("liar1", "10.0.0.5/24"), note())
        .await
    {
        Err(RegistryError::AddressInUse {
            addr,
            holder,
            netns,
        }) => {
            assert_eq!(addr.to_string(), "10.0.0.5");
            assert_eq!(holder, key("victim"));
            assert_eq!(netns, live);
        }
        other => panic!("the live victim keeps its address: {other:?}"),
    }
    assert!(
        f.registry.get(&key("liar1")).is_none(),
        "nothing registered"
    );
    for (id, ip) in [("liar2", "10.0.0.7/24"), ("liar3", "10.0.0.9/24")] {
        f.registry
            .add(chained(id, ip), note())
            .await
            .unwrap_or_else(|e| panic!("{ip} goes to the newest owner: {e}"));
    }
    let snapshot = f.registry.snapshot();
    let zone_of = |ip: &str| snapshot.zone_of(ip.parse().unwrap()).to_string();
    assert_eq!(zone_of("10.0.0.7"), "shop/liar");
    assert_eq!(zone_of("10.0.0.9"), "shop/liar");
    assert_eq!(zone_of("10.0.0.5"), "shop/web");
    assert_eq!(
        kernel(&f).len(),
        3,
        "one member per address: {:?}",
        kernel(&f)
    );
    // The newest owner gone, the address is the older claimant's again.
    f.registry.del(key("liar3"), note()).await.unwrap();
    assert_eq!(
        f.registry
            .resolver()
            .zone_of("10.0.0.9".parse().unwrap())
            .as_str(),
        "shop/web"
    );
}

/// Events name the pod of the newest endpoint claiming an address, as the kernel's
/// maps do, when a runtime reused the address before the old pod's DEL came.
#[tokio::test]
async fn events_name_the_newest_pod_claiming_an_address() {
    use super::remote::RemoteChange;
    use crate::events::writer::EndpointLookup;

    let f = fixture();
    // Pods of another node, whose ages the test sets (this node's get the clock's).
    let pod = |id: &str, name: &str, created_unix_ms: i64| {
        let mut ep = crate::test_support::endpoint(id, "shop/web", &["10.0.0.5/24"]);
        ep.node = "node-2".into();
        ep.pod_namespace = Some("shop".into());
        ep.pod_name = Some(name.into());
        ep.created_unix_ms = created_unix_ms;
        RemoteChange::Endpoint(Box::new(ep))
    };
    let apply = |change: RemoteChange| f.registry.apply_remote(vec![change], |due| due, || {});
    let pod_at = || f.registry.pod_at("10.0.0.5".parse().unwrap());
    // The zone's id, as another node's change brings it.
    apply(RemoteChange::ZoneId {
        zone: ZoneName::parse("shop/web").unwrap(),
        id: 1,
    })
    .await
    .unwrap();
    // The older pod's key sorts first: a walk in key order that stops at the first
    // match names it.
    apply(pod("aa-old", "old", 1_000)).await.unwrap();
    assert_eq!(pod_at().as_deref(), Some("shop/old"));
    apply(pod("zz-new", "new", 2_000)).await.unwrap();
    assert_eq!(pod_at().as_deref(), Some("shop/new"));
    assert_eq!(f.registry.pod_at("192.0.2.1".parse().unwrap()), None);
    apply(RemoteChange::EndpointGone(key("zz-new")))
        .await
        .unwrap();
    assert_eq!(pod_at().as_deref(), Some("shop/old"));
}
