//! Approved connections for `zwctl flows watch`: the table accepts them without a log
//! rule (logging each would cost every approved connection an NFLOG message), so
//! they come from connection tracking's new-connection events instead, and only
//! while someone watches.
//!
//! The first watcher starts one reader thread; it binds the event group, names each
//! new connection's zones and publishes those the policy allows because their edge
//! is approved (or exempt, like host probes). Connections a learning or monitoring
//! zone let pass are skipped here: the table's log rules report them already, as
//! `learn` and `violation`. Like those rules, it shows each (source, destination,
//! protocol, port) once per window. When the last watcher goes, the thread unbinds
//! and ends, and the kernel stops announcing connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use zonewarden_profiles::event::FlowVerdict;
use zonewarden_profiles::policy::{End, Verdict};
use zonewarden_profiles::{Edge, Proto};

use super::ctnetlink::{CtEvents, NewConnection};
use super::{FlowEvent, publish, watchers};
use crate::registry::{EndpointRegistry, Snapshot};

/// How often the reader looks whether anyone still watches.
const POLL: Duration = Duration::from_millis(500);
/// Distinct connections remembered for the window, at most: a scan of many
/// destinations forgets the oldest, and is shown again, rather than grow memory.
const REMEMBERED: usize = 65_536;

/// The window of [`AllowedFlows`] unless the enforcer sets its own.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Whether a reader thread runs (one per process, as there is one flow bus).
static RUNNING: AtomicBool = AtomicBool::new(false);

/// What the reader needs: the zones and the policy, and how long a connection is
/// shown only once.
#[derive(Clone)]
pub struct AllowedFlows {
    pub registry: EndpointRegistry,
    pub window: Duration,
}

impl AllowedFlows {
    /// Starts the reader unless one runs. Call after subscribing to the bus.
    pub fn ensure_running(&self) {
        if RUNNING.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("zw-allowed-flows".into())
            .spawn(move || this.run());
        if let Err(err) = spawned {
            RUNNING.store(false, Ordering::SeqCst);
            warn!(%err, "cannot start the reader of approved connections; flows watch shows reported flows only");
        }
    }

    fn run(self) {
        let mut events = match CtEvents::bind(POLL) {
            Ok(events) => events,
            Err(err) => {
                RUNNING.store(false, Ordering::SeqCst);
                warn!(%err, "cannot bind connection tracking's new-connection events; flows watch shows reported flows only (is nf_conntrack_netlink available?)");
                return;
            }
        };
        info!("approved connections are read from connection tracking while flows are watched");
        let mut shown = Shown::new(self.window);
        loop {
            if watchers() == 0 {
                RUNNING.store(false, Ordering::SeqCst);
                // A watcher that came in between saw a reader running and started
                // none: keep going for it, unless it already started another.
                if watchers() == 0 || RUNNING.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
            let connections = match events.recv() {
                Ok(c) => c,
                Err(err) => {
                    RUNNING.store(false, Ordering::SeqCst);
                    warn!(%err, "reading connection tracking's events failed; approved connections are no longer shown");
                    return;
                }
            };
            if connections.is_empty() {
                continue;
            }
            let snapshot = self.registry.snapshot();
            let node = self.registry.node();
            let now = Instant::now();
            let now_ms = crate::registry::now_unix_ms();
            for conn in connections {
                if let Some(allowed) = allowed(&snapshot, &conn)
                    && shown.first(&conn, now)
                {
                    publish(&FlowEvent {
                        at_unix_ms: now_ms,
                        verdict: FlowVerdict::Allow,
                        edge: &allowed.edge,
                        src: conn.src,
                        src_port: conn.src_port,
                        dst: conn.dst,
                        reported_by: allowed.by.clone(),
                        profile_version: allowed.version,
                        node,
                    });
                }
            }
        }
        if events.overruns > 0 {
            warn!(
                overruns = events.overruns,
                "connection tracking dropped events while flows were watched; some approved connections were not shown"
            );
        }
    }
}

/// A connection the policy allows, with the zone whose approval lets it pass.
#[derive(Debug, PartialEq, Eq)]
pub struct Allowed {
    pub edge: Edge,
    pub by: Option<zonewarden_profiles::ZoneName>,
    pub version: u64,
}

/// The edge of a new connection, when it touches an endpoint and the policy allows
/// it without a report; `None` for what the log rules report (learn, violation),
/// and for traffic of the node alone.
pub fn allowed(snapshot: &Snapshot, conn: &NewConnection) -> Option<Allowed> {
    let resolver = &snapshot.resolver;
    let endpoint = |addr: &IpAddr| resolver.addr_zone_ids.contains_key(addr);
    if !endpoint(&conn.src) && !endpoint(&conn.dst) {
        return None;
    }
    let proto = Proto::from_number(conn.proto);
    let port = if proto.has_ports() { conn.dst_port } else { 0 };
    let edge = Edge::new(
        snapshot.zone_of(conn.src),
        snapshot.zone_of(conn.dst),
        proto,
        port,
    );
    let end = |zone| End {
        zone,
        quarantined: false,
    };
    let policy = &snapshot.policy;
    if policy.verdict(end(&edge.src), end(&edge.dst), proto, port) != Verdict::Allow {
        return None;
    }
    let by = policy.approved_in(&edge).first().map(|z| (*z).clone());
    let version = by.as_ref().map_or(0, |z| policy.version(z));
    Some(Allowed { edge, by, version })
}

/// When each (source, destination, protocol, port) was last shown.
struct Shown {
    window: Duration,
    at: HashMap<(IpAddr, IpAddr, u8, u16), Instant>,
}

impl Shown {
    fn new(window: Duration) -> Self {
        Self {
            window,
            at: HashMap::new(),
        }
    }

    /// Whether `conn` is the first of its kind in the window (and remembers it).
    fn first(&mut self, conn: &NewConnection, now: Instant) -> bool {
        let key = (conn.src, conn.dst, conn.proto, conn.dst_port);
        if self
            .at
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < self.window)
        {
            return false;
        }
        if self.at.len() >= REMEMBERED {
            let window = self.window;
            self.at.retain(|_, at| now.duration_since(*at) < window);
            if self.at.len() >= REMEMBERED {
                self.at.clear();
            }
        }
        self.at.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use zonewarden_profiles::{Mode, Profile, ZoneName};

    use super::*;
    use crate::registry::Resolver;

    fn conn(src: &str, dst: &str, proto: u8, port: u16) -> NewConnection {
        NewConnection {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            src_port: 40000,
            dst_port: port,
        }
    }

    fn snapshot() -> Snapshot {
        let zone = |z: &str| ZoneName::parse(z).unwrap();
        let mut snapshot = Snapshot::default();
        let resolver = Resolver {
            addr_zone_ids: [
                ("10.0.0.1".parse().unwrap(), 1),
                ("10.0.0.2".parse().unwrap(), 2),
                ("fd00::2".parse().unwrap(), 2),
            ]
            .into(),
            zones_by_id: [(1, zone("shop/web")), (2, zone("shop/db"))].into(),
            host_addrs: vec!["10.0.0.254".parse().unwrap()],
            ..Default::default()
        };
        snapshot.resolver = Arc::new(resolver);
        let approved: Edge = "shop/web->shop/db:5432/tcp".parse().unwrap();
        let ping: Edge = "shop/web->shop/db:icmp".parse().unwrap();
        let mut db = Profile::new(zone("shop/db"));
        db.mode = Mode::Enforce;
        db.version = 3;
        db.approved = BTreeSet::from([approved, ping]);
        snapshot.policy.profiles.insert(zone("shop/db"), db);
        snapshot
    }

    #[test]
    fn approved_and_exempt_connections_are_shown_reported_ones_are_not() {
        let s = snapshot();
        let shown = allowed(&s, &conn("10.0.0.1", "10.0.0.2", 6, 5432)).unwrap();
        assert_eq!(shown.edge.to_string(), "shop/web->shop/db:5432/tcp");
        assert_eq!(shown.by.unwrap().as_str(), "shop/db");
        assert_eq!(shown.version, 3);
        // The same edge over IPv6, and ICMPv6 as `icmp`.
        assert!(allowed(&s, &conn("10.0.0.1", "fd00::2", 6, 5432)).is_some());
        let ping = allowed(&s, &conn("10.0.0.1", "10.0.0.2", 58, 0)).unwrap();
        assert_eq!(ping.edge.to_string(), "shop/web->shop/db:icmp");
        // Not approved: the log rules report it (a drop here), not this reader.
        assert_eq!(allowed(&s, &conn("10.0.0.1", "10.0.0.2", 6, 22)), None);
        // Host probes are exempt: allowed, by no profile.
        let probe = allowed(&s, &conn("10.0.0.254", "10.0.0.2", 6, 8080)).unwrap();
        assert_eq!((probe.by, probe.version), (None, 0));
        // The node's own traffic touches no endpoint.
        assert_eq!(allowed(&s, &conn("10.0.0.254", "192.0.2.9", 6, 443)), None);
    }

    #[test]
    fn each_connection_kind_is_shown_once_per_window() {
        let mut shown = Shown::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let a = conn("10.0.0.1", "10.0.0.2", 6, 5432);
        assert!(shown.first(&a, t0));
        // Another source port of the same kind: not again.
        assert!(!shown.first(&NewConnection { src_port: 1, ..a }, t0));
        assert!(shown.first(&conn("10.0.0.1", "10.0.0.2", 6, 5433), t0));
        assert!(shown.first(&a, t0 + Duration::from_secs(61)));
        // A flood of distinct connections does not grow memory past the bound.
        for i in 0..(REMEMBERED as u32 + 10) {
            let dst = std::net::Ipv4Addr::from(0x0a01_0000 + i).to_string();
            shown.first(&conn("10.0.0.1", &dst, 6, 80), t0);
        }
        assert!(shown.at.len() <= REMEMBERED);
    }
}
