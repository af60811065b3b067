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

/// An ADD of a routed endpoint in `zone` with `ips`, as the plugin sends it.
pub fn add_request(container_id: &str, zone: &str, ips: &[&str]) -> crate::registry::AddRequest {
    crate::registry::AddRequest {
        key: key(container_id),
        hints: zonewarden_profiles::ZoneHints {
            config_zone: Some(zone.into()),
            ..Default::default()
        },
        netns: "/var/run/netns/x".into(),
        host_ifname: Some(format!("zw{container_id}")),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        mac: None,
        attach_mode: AttachMode::Routed,
        bridge: None,
    }
}

/// A registry over `store` and an in-memory data plane, as the enforcer opens it.
pub fn memory_registry(
    store: std::sync::Arc<dyn crate::store::Store>,
) -> crate::registry::EndpointRegistry {
    let dataplane = std::sync::Arc::new(crate::nft::ruleset::MemoryDataplane::new());
    registry_over(store, dataplane)
}

/// A registry over `store` and `dataplane`, as the enforcer opens it.
pub fn registry_over(
    store: std::sync::Arc<dyn crate::store::Store>,
    dataplane: std::sync::Arc<crate::nft::ruleset::MemoryDataplane>,
) -> crate::registry::EndpointRegistry {
    let stored = store.load().unwrap();
    crate::registry::EndpointRegistry::open(
        "node-1".into(),
        store,
        dataplane,
        zonewarden_profiles::policy::NodeSettings::default(),
        stored,
    )
    .unwrap()
    .with_connection_flusher(|_| Ok(0))
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

/// Whether a root test runs: root runs, others skip loudly, except under CI, where
/// root is required (a skip must never read as a pass there).
pub fn root_or_skip() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the root tests are not running as root"
    );
    eprintln!("skipped: needs root");
    false
}

/// A network namespace of a unit test's own, `<prefix>-<pid>-<n>`; deleted on drop,
/// even when the test panics.
pub struct TestNetns(pub String);

impl TestNetns {
    pub fn new(prefix: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ns = Self(format!("{prefix}-{}-{n}", std::process::id()));
        ip(&["netns", "add", &ns.0]);
        ns
    }

    /// `ip -n <ns> ...`, which must succeed; its output.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// `ip ARGS`, which must succeed; its output.
pub fn ip(args: &[&str]) -> String {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
