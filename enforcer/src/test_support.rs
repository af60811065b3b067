//! Builders shared by the unit tests.

use zonewarden_profiles::{AttachMode, AttachmentKey, Endpoint, ZoneName, ZoneSource};

pub fn key(container_id: &str) -> AttachmentKey {
    AttachmentKey {
        network: "podnet".into(),
        container_id: container_id.into(),
        ifname: "eth0".into(),
    }
}

pub fn endpoint(container_id: &str, zone: &str, ips: &[&str]) -> Endpoint {
    Endpoint {
        key: key(container_id),
        zone: ZoneName::parse(zone).unwrap(),
        zone_source: ZoneSource::Config,
        netns: format!("/var/run/netns/{container_id}"),
        host_ifname: Some(format!("zw{container_id}")),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        mac: None,
        node: "node-1".into(),
        pod_namespace: None,
        pod_name: None,
        attach_mode: AttachMode::Routed,
        created_unix_ms: 1_700_000_000_000,
        bridge: None,
    }
}

/// A registry over `store` and an in-memory data plane, as the enforcer opens it.
pub fn memory_registry(
    store: std::sync::Arc<dyn crate::store::Store>,
) -> crate::registry::EndpointRegistry {
    let stored = store.load().unwrap();
    let dataplane = std::sync::Arc::new(crate::nft::ruleset::MemoryDataplane::new());
    crate::registry::EndpointRegistry::open(
        "node-1".into(),
        store,
        dataplane,
        zonewarden_profiles::policy::NodeSettings::default(),
        stored,
    )
    .unwrap()
    .with_connection_flusher(|_| 0)
}

/// Runs `f` on a new thread that has entered the network namespace `name` (under
/// `/run/netns`); the thread ends with `f`, so it never switches back. Sockets opened
/// in `f` stay bound to that namespace.
pub fn run_in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let netns =
            std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        // Test-only namespace switch on a throwaway thread (clippy.toml bans setns
        // elsewhere; the enforcer itself never switches).
        #[allow(clippy::disallowed_methods)]
        nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("cannot enter {path}: {e}"));
        f()
    })
    .join()
    .expect("the thread inside the test namespace panicked")
}

/// Who asks for a change in a unit test, for the audit log.
pub fn note() -> crate::audit::Note {
    crate::audit::Note::new("test", "unit test")
}

/// How a profile change of a unit test is recorded.
pub fn noted() -> crate::audit::ChangeNote {
    crate::audit::ChangeNote::new(note(), crate::audit::Action::Approve, None)
}

/// A UDP packet 10.0.0.1:40000 -> 10.0.0.2:`port` logged with `prefix`.
pub fn log_event(prefix: &str, port: u16) -> crate::nflog::LogEvent {
    crate::nflog::LogEvent {
        prefix: prefix.into(),
        src: "10.0.0.1".parse().unwrap(),
        dst: "10.0.0.2".parse().unwrap(),
        proto: crate::nflog::L4Proto::Udp,
        src_port: 40000,
        dst_port: port,
        icmp_type: None,
        icmp_code: None,
        in_ifindex: None,
        out_ifindex: None,
    }
}
