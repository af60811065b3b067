//! Learning: what the table's NFLOG rules report becomes learned edges (with their
//! evidence) and reports of drops, violations, quarantine and spoofing.
//!
//! The rules log the first packet of a connection only once per (source, destination,
//! protocol, port) and window (a kernel "seen" set with a timeout), so the volume here
//! follows distinct edges, not connections. Addresses are resolved to zones from the
//! registry's resolver: an endpoint's zone, `host` for the node, `world` otherwise.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};
use zonewarden_profiles::event::{Report, ReportKind, Reports};
use zonewarden_profiles::learned::{LearnedEdges, Sample};
use zonewarden_profiles::{Edge, Proto};

use crate::nflog::LogEvent;
use crate::nflog::packet::L4Proto;
use crate::registry::{EndpointRegistry, Resolver, now_unix_ms};
use crate::store::Store;

/// What the log prefix of a rule says: `zw <kind> z<id> <out|in>`, or `zw quarantine` /
/// `zw spoof`. Tables written by earlier versions also name the profile version
/// (`zw <kind> z<id> v<version> <out|in>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    /// `None` for learn.
    pub report: Option<ReportKind>,
    pub zone_id: Option<u32>,
    pub version: u64,
}

pub fn parse_prefix(prefix: &str) -> Option<Prefix> {
    let mut words = prefix.split_whitespace();
    if words.next()? != "zw" {
        return None;
    }
    let report = match words.next()? {
        "learn" => None,
        other => Some(ReportKind::parse(other)?),
    };
    let zone_id = words.next().and_then(|w| w.strip_prefix('z')?.parse().ok());
    let version = words
        .next()
        .and_then(|w| w.strip_prefix('v')?.parse().ok())
        .unwrap_or(0);
    // The version, when the prefix names none, is the one in force (see `ingest`).
    Some(Prefix {
        report,
        zone_id,
        version,
    })
}

/// Every protocol makes an edge: ICMP and ICMPv6 are `icmp`, any other protocol
/// without ports is `proto-N`, so that a drop of anything is reported with its edge.
fn proto_of(p: L4Proto) -> Proto {
    Proto::from_number(p.number())
}

struct State {
    learned: LearnedEdges,
    reports: Reports,
    dirty: bool,
}

/// The learned edges and reports of this node, shared by the NFLOG task, the
/// persistence task and the gRPC service.
#[derive(Clone)]
pub struct Learning {
    state: Arc<Mutex<State>>,
    node: String,
    verdicts: crate::web::VerdictCounters,
}

impl Learning {
    pub fn new(
        node: String,
        learned: Option<LearnedEdges>,
        reports: Option<Reports>,
        limits: (usize, usize),
    ) -> Self {
        let mut learned = learned.unwrap_or_else(|| LearnedEdges::new(limits.0));
        learned.limit = limits.0.max(1);
        let mut reports = reports.unwrap_or_else(|| Reports::new(limits.1));
        reports.limit = limits.1.max(1);
        let state = State {
            learned,
            reports,
            dirty: false,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            node,
            verdicts: crate::web::VerdictCounters::default(),
        }
    }

    /// Logged connections per zone and verdict, for `/metrics`.
    pub fn verdicts(&self) -> &crate::web::VerdictCounters {
        &self.verdicts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one logged packet into account.
    pub fn ingest(&self, event: &LogEvent, resolver: &Resolver, now_ms: i64) {
        let Some(mut prefix) = parse_prefix(&event.prefix) else {
            debug!(prefix = %event.prefix, "log event of another rule ignored");
            return;
        };
        let proto = proto_of(event.proto);
        let port = if proto.has_ports() { event.dst_port } else { 0 };
        let edge = Edge::new(
            resolver.zone_of(event.src),
            resolver.zone_of(event.dst),
            proto,
            port,
        );
        let sample = Sample {
            src: event.src,
            src_port: event.src_port,
            dst: event.dst,
            dst_port: port,
            proto,
        };
        let logged_by = prefix.zone_id.and_then(|id| resolver.zone_by_id(id));
        // The rules name no profile version: the report carries the one in force now,
        // microseconds after the kernel logged the packet.
        if let Some(zone) = &logged_by {
            prefix.version = resolver.version(zone);
        }
        let counted_zone = logged_by.as_ref().unwrap_or(&edge.src);
        self.verdicts.count(counted_zone.as_str(), prefix.report);
        crate::flows::publish_logged(event, &prefix, &edge, resolver, &self.node, now_ms);
        let mut state = self.lock();
        state.dirty = true;
        match prefix.report {
            None | Some(ReportKind::Violation) => {
                if state
                    .learned
                    .record(edge.clone(), sample, &self.node, now_ms)
                {
                    debug!(%edge, "new edge learned");
                }
            }
            Some(_) => {}
        }
        if let Some(kind) = prefix.report {
            let reported_by = prefix
                .zone_id
                .and_then(|id| resolver.zone_by_id(id))
                .map(|z| z.to_string())
                .unwrap_or_default();
            warn!(kind = kind.as_str(), %edge, reported_by, version = prefix.version, src = %event.src, dst = %event.dst, "connection reported");
            state.reports.push(Report {
                at_unix_ms: now_ms,
                kind,
                edge,
                src: event.src,
                src_port: event.src_port,
                dst: event.dst,
                node: self.node.clone(),
                reported_by,
                profile_version: prefix.version,
                count: 1,
            });
        }
    }

    pub fn learned(&self) -> LearnedEdges {
        self.lock().learned.clone()
    }

    /// Reads the learned edges in place (no copy); `read` must be quick, ingestion waits.
    pub fn with_learned<R>(&self, read: impl FnOnce(&LearnedEdges) -> R) -> R {
        read(&self.lock().learned)
    }

    pub fn reports(&self) -> Reports {
        self.lock().reports.clone()
    }

    /// Forgets learned edges an operator rejected; returns how many were known.
    /// How many of `edges` are learned (what [`Self::forget`] would forget).
    pub fn known(&self, edges: &[Edge]) -> usize {
        let state = self.lock();
        edges
            .iter()
            .filter(|e| state.learned.edges.contains_key(e))
            .count()
    }

    pub fn forget(&self, edges: &[Edge]) -> usize {
        let mut state = self.lock();
        state.dirty = true;
        state.learned.forget(edges)
    }

    /// Forgets every learned edge touching `zone` (its profile was deleted); returns
    /// how many there were.
    pub fn forget_zone(&self, zone: &zonewarden_profiles::ZoneName) -> usize {
        let mut state = self.lock();
        let edges: Vec<Edge> = state
            .learned
            .of_zone(zone)
            .map(|(e, _)| e.clone())
            .collect();
        state.dirty = true;
        state.learned.forget(&edges)
    }

    /// Writes the learned edges and reports when they changed since the last flush.
    pub fn flush(&self, store: &dyn Store) {
        let (learned, reports) = {
            let mut state = self.lock();
            if !state.dirty {
                return;
            }
            state.dirty = false;
            (state.learned.clone(), state.reports.clone())
        };
        if let Err(err) = store
            .save_learned(&learned)
            .and_then(|()| store.save_reports(&reports))
        {
            warn!(%err, "cannot persist the learned edges; retrying at the next flush");
            self.lock().dirty = true;
        }
    }
}

/// Feeds NFLOG events into `learning` until the channel closes.
pub async fn ingest_forever(
    mut events: mpsc::Receiver<LogEvent>,
    learning: Learning,
    registry: EndpointRegistry,
) {
    while let Some(event) = events.recv().await {
        learning.ingest(&event, &registry.resolver(), now_unix_ms());
    }
}

/// Persists learning every `every` (and never loses more than that on a crash).
pub async fn persist_forever(learning: Learning, store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let (learning, store) = (learning.clone(), store.clone());
        let _ = tokio::task::spawn_blocking(move || learning.flush(store.as_ref())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("zw learn z3 v0 out"),
            Some(Prefix {
                report: None,
                zone_id: Some(3),
                version: 0
            })
        );
        assert_eq!(
            parse_prefix("zw drop z12 v7 in"),
            Some(Prefix {
                report: Some(ReportKind::Drop),
                zone_id: Some(12),
                version: 7
            })
        );
        assert_eq!(
            parse_prefix("zw violation z4 out"),
            Some(Prefix {
                report: Some(ReportKind::Violation),
                zone_id: Some(4),
                version: 0
            })
        );
        assert_eq!(
            parse_prefix("zw spoof"),
            Some(Prefix {
                report: Some(ReportKind::Spoof),
                zone_id: None,
                version: 0
            })
        );
        assert_eq!(parse_prefix("other rule"), None);
        assert_eq!(parse_prefix("zw bogus z1"), None);
    }
}
