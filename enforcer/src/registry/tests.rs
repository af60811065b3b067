//! Registry tests against a fake data plane that is as strict as nft.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use zonewarden_profiles::{AttachMode, AttachmentKey, ZoneHints};

use super::{AddRequest, EndpointRegistry, RegistryError};
use crate::nft::Dataplane;
use crate::nft::listing::ListedElement;
use crate::store::{LocalStore, Store};
use crate::test_support::{FakeDataplane, key};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<LocalStore>,
    dataplane: Arc<FakeDataplane>,
    registry: EndpointRegistry,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalStore::open(dir.path()).unwrap());
    let dataplane = Arc::new(FakeDataplane::default());
    let registry =
        EndpointRegistry::open("node-1".into(), store.clone(), dataplane.clone()).unwrap();
    Fixture {
        _dir: dir,
        store,
        dataplane,
        registry,
    }
}

fn request(container_id: &str, zone: &str, ips: &[&str]) -> AddRequest {
    AddRequest {
        key: key(container_id),
        hints: ZoneHints {
            config_zone: Some(zone.into()),
            ..ZoneHints::default()
        },
        netns: "/var/run/netns/x".into(),
        host_ifname: None,
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        mac: None,
        attach_mode: AttachMode::Routed,
    }
}

fn kernel(f: &Fixture) -> BTreeMap<String, u32> {
    let elements = f.dataplane.list_elements().unwrap();
    elements
        .into_iter()
        .map(|(addr, e)| (addr.to_string(), e.zone_id))
        .collect()
}

#[tokio::test]
async fn add_persists_programs_and_publishes() {
    let f = fixture();
    let endpoint = f
        .registry
        .add(request("c1", "shop/web", &["10.0.0.5/24", "fd00::5/64"]))
        .await
        .unwrap();
    assert_eq!(endpoint.zone.as_str(), "shop/web");
    assert_eq!(
        kernel(&f),
        BTreeMap::from([("10.0.0.5".into(), 1), ("fd00::5".into(), 1)])
    );
    assert_eq!(f.store.load().unwrap().endpoints, vec![endpoint.clone()]);
    assert_eq!(f.registry.get(&key("c1")), Some(endpoint));
    let (_, problems) = f.registry.check(key("c1")).await.unwrap().unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn a_repeated_add_replaces_the_old_elements() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]))
        .await
        .unwrap();
    f.registry
        .add(request("c1", "shop/db", &["10.0.0.6/24"]))
        .await
        .unwrap();
    assert_eq!(kernel(&f), BTreeMap::from([("10.0.0.6".into(), 2)]));
    let zones = f.registry.snapshot().zones();
    assert_eq!(zones.len(), 1, "the emptied zone is retired: {zones:?}");
    assert_eq!(f.store.load().unwrap().endpoints.len(), 1);
}

#[tokio::test]
async fn a_failed_kernel_step_leaves_nothing() {
    let f = fixture();
    f.dataplane.fail_next.store(true, Ordering::SeqCst);
    let err = f
        .registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]))
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
async fn a_failed_replace_keeps_the_old_record() {
    let f = fixture();
    let old = f
        .registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]))
        .await
        .unwrap();
    f.dataplane.fail_next.store(true, Ordering::SeqCst);
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.7/24"]))
        .await
        .unwrap_err();
    assert_eq!(f.store.load().unwrap().endpoints, vec![old.clone()]);
    assert_eq!(f.registry.get(&key("c1")), Some(old));
    assert_eq!(kernel(&f), BTreeMap::from([("10.0.0.5".into(), 1)]));
}

#[tokio::test]
async fn del_is_idempotent_and_spares_a_newer_owner() {
    let f = fixture();
    f.registry
        .add(request("old", "shop/web", &["10.0.0.5/24"]))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    f.registry
        .add(request("new", "shop/db", &["10.0.0.5/24"]))
        .await
        .unwrap();
    assert!(f.registry.del(key("old")).await.unwrap().is_some());
    assert!(f.registry.del(key("old")).await.unwrap().is_none());
    assert_eq!(kernel(&f), BTreeMap::from([("10.0.0.5".into(), 2)]));
    f.registry.del(key("new")).await.unwrap();
    assert!(kernel(&f).is_empty());
    assert!(f.store.load().unwrap().endpoints.is_empty());
}

#[tokio::test]
async fn an_invalid_zone_is_refused_before_any_side_effect() {
    let f = fixture();
    let err = f
        .registry
        .add(request("c1", "Not Valid", &["10.0.0.5/24"]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("zone name \"Not Valid\" is invalid"),
        "{err}"
    );
    assert!(kernel(&f).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_all_succeed() {
    let f = fixture();
    let adds = (0..50).map(|i| {
        let registry = f.registry.clone();
        let ip = format!("10.0.{}.{}/16", i / 200, i % 200 + 1);
        tokio::spawn(async move {
            registry
                .add(request(
                    &format!("c{i}"),
                    &format!("zone-{}", i % 5),
                    &[&ip],
                ))
                .await
        })
    });
    for add in futures_join(adds).await {
        add.unwrap().unwrap();
    }
    assert_eq!(kernel(&f).len(), 50);
    assert_eq!(f.store.load().unwrap().endpoints.len(), 50);
    assert_eq!(f.registry.snapshot().zones().len(), 5);
}

#[tokio::test]
async fn restart_reconciles_the_kernel_with_the_store() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]))
        .await
        .unwrap();
    f.registry
        .add(request("c2", "shop/web", &["10.0.0.6/24"]))
        .await
        .unwrap();
    {
        let mut elements = f.dataplane.elements.lock().unwrap();
        elements.remove(&"10.0.0.5".parse().unwrap());
        elements.insert(
            "10.9.9.9".parse().unwrap(),
            ListedElement {
                zone_id: 9,
                comment: None,
            },
        );
    }
    let restarted =
        EndpointRegistry::open("node-1".into(), f.store.clone(), f.dataplane.clone()).unwrap();
    let change = restarted.sync_kernel().await.unwrap();
    assert_eq!(
        (change.add.len(), change.delete.len()),
        (1, 1),
        "{change:?}"
    );
    assert_eq!(
        kernel(&f),
        BTreeMap::from([("10.0.0.5".into(), 1), ("10.0.0.6".into(), 1)])
    );
    let (_, problems) = restarted
        .check(AttachmentKey { ..key("c1") })
        .await
        .unwrap()
        .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn check_reports_a_missing_element() {
    let f = fixture();
    f.registry
        .add(request("c1", "shop/web", &["10.0.0.5/24"]))
        .await
        .unwrap();
    f.dataplane.elements.lock().unwrap().clear();
    let (_, problems) = f.registry.check(key("c1")).await.unwrap().unwrap();
    assert_eq!(
        problems,
        vec!["zone_of_v4 has no element for 10.0.0.5".to_owned()]
    );
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        results.push(handle.await);
    }
    results
}
