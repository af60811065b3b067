//! Learning: what the table's NFLOG rules report becomes learned edges (with their
//! evidence) and reports of drops, violations, quarantine and spoofing.
//!
//! The rules log the first packet of a connection only once per (source, destination,
//! protocol, port) and window (a kernel "seen" set with a timeout), so the volume here
//! follows distinct edges, not connections. Addresses are resolved to zones from the
//! registry's resolver: an endpoint's zone, `host` for the node, `world` otherwise.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};
use zonewarden_profiles::event::{Report, ReportKind, Reports};
use zonewarden_profiles::learned::{LearnedEdges, Sample};
use zonewarden_profiles::{Edge, Proto};

use crate::nflog::packet::L4Proto;
use crate::nflog::{LogEvent, NflogCounters, NflogTotals};
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

/// How many queued events learning takes under one lock: reads wait at most for one
/// batch, and a flood pays one lock per batch, not per event.
const BATCH: usize = 64;

/// Process-long totals of learning, read without the lock.
#[derive(Debug, Default)]
struct Counters {
    ingested: AtomicU64,
    edges_evicted: AtomicU64,
    reports_evicted: AtomicU64,
    edges_learned: AtomicUsize,
}

/// Learning's totals at one moment (for `/metrics` and `zwctl status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearningTotals {
    /// What became of the NFLOG events before learning.
    pub nflog: NflogTotals,
    /// Events taken from the NFLOG queue and accounted for.
    pub ingested: u64,
    /// Learned edges kept now, and the most that are kept.
    pub edges_learned: usize,
    pub edges_limit: usize,
    /// Learned edges forgotten (the stalest first) to stay within the limit.
    pub edges_evicted: u64,
    /// Reports forgotten (the oldest first) to stay within the limit.
    pub reports_evicted: u64,
}

/// The learned edges and reports of this node, shared by the learning thread, the
/// persistence task and the gRPC service.
///
/// Memory is bounded by the limits: at most `limits.0` learned edges (under 2 KiB
/// each, see [`LearnedEdges`]) and `limits.1` reports (under 1 KiB each), plus a
/// transient copy of both while they are persisted.
#[derive(Clone)]
pub struct Learning {
    state: Arc<Mutex<State>>,
    /// Cluster mode: the other nodes' learned edges, merged into every view.
    remote: Option<crate::store::etcd::RemoteLearned>,
    node: String,
    limits: (usize, usize),
    counters: Arc<Counters>,
    nflog: Arc<NflogCounters>,
    verdicts: crate::web::VerdictCounters,
    /// Automatic response: counts this node's reports against the zones' rules.
    responder: Option<crate::response::Responder>,
}

/// One event, resolved outside the lock.
struct Resolved {
    edge: Edge,
    sample: Sample,
    learn: bool,
    report: Option<Report>,
}

impl Learning {
    pub fn new(
        node: String,
        learned: Option<LearnedEdges>,
        reports: Option<Reports>,
        limits: (usize, usize),
    ) -> Self {
        let limits = (limits.0.max(1), limits.1.max(1));
        let mut learned = learned.unwrap_or_else(|| LearnedEdges::new(limits.0));
        learned.limit = limits.0;
        let mut reports = reports.unwrap_or_else(|| Reports::new(limits.1));
        reports.limit = limits.1;
        let counters = Counters::default();
        counters
            .edges_learned
            .store(learned.edges.len(), Ordering::Relaxed);
        let state = State {
            learned,
            reports,
            dirty: false,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
            remote: None,
            node,
            limits,
            counters: Arc::new(counters),
            nflog: Arc::default(),
            verdicts: crate::web::VerdictCounters::default(),
            responder: None,
        }
    }

    /// Counts every drop and violation against the zones' response rules (see
    /// [`crate::response`]).
    pub fn with_responder(mut self, responder: crate::response::Responder) -> Self {
        self.responder = Some(responder);
        self
    }

    /// The automatic response, when it is on.
    pub fn responder(&self) -> Option<&crate::response::Responder> {
        self.responder.as_ref()
    }

    /// Whether `zone` has a learned edge from it with `(proto, port)`, on this node or
    /// (cluster mode) on another. The locks are taken one after the other, never nested.
    fn port_learned(&self, zone: &zonewarden_profiles::ZoneName, proto: Proto, port: u16) -> bool {
        use zonewarden_profiles::response::port_known;
        if port_known(zone, proto, port, self.lock().learned.edges.keys()) {
            return true;
        }
        self.remote.as_ref().is_some_and(|remote| {
            remote
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .any(|l| port_known(zone, proto, port, l.edges.keys()))
        })
    }

    /// The counters the NFLOG thread that feeds this learning keeps.
    pub fn nflog_counters(&self) -> Arc<NflogCounters> {
        self.nflog.clone()
    }

    /// Logged connections per zone and verdict, for `/metrics`.
    pub fn verdicts(&self) -> &crate::web::VerdictCounters {
        &self.verdicts
    }

    /// The totals, read without waiting for ingestion.
    pub fn totals(&self) -> LearningTotals {
        let c = &self.counters;
        LearningTotals {
            nflog: self.nflog.totals(),
            ingested: c.ingested.load(Ordering::Relaxed),
            edges_learned: c.edges_learned.load(Ordering::Relaxed),
            edges_limit: self.limits.0,
            edges_evicted: c.edges_evicted.load(Ordering::Relaxed),
            reports_evicted: c.reports_evicted.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one logged packet into account.
    pub fn ingest(&self, event: &LogEvent, resolver: &Resolver, now_ms: i64) {
        self.ingest_batch(std::slice::from_ref(event), resolver, now_ms);
    }

    /// Takes logged packets into account: each is resolved to its edge without the
    /// lock, then all are recorded under one.
    pub fn ingest_batch(&self, events: &[LogEvent], resolver: &Resolver, now_ms: i64) {
        let mut resolved: Vec<Resolved> = events
            .iter()
            .filter_map(|event| self.resolve(event, resolver, now_ms))
            .collect();
        if let Some(responder) = &self.responder {
            // Before this batch is recorded: a new port is one learning has not seen.
            for report in resolved.iter_mut().filter_map(|r| r.report.as_mut()) {
                if let Some(rule) = responder.consider(report, resolver, |z, proto, port| {
                    self.port_learned(z, proto, port)
                }) {
                    report.response = Some(rule.author(&report.edge.src));
                }
            }
        }
        if !resolved.is_empty() {
            let (mut evicted_edges, mut evicted_reports) = (0, 0);
            let mut new_edges = Vec::new();
            let mut state = self.lock();
            state.dirty = true;
            for r in resolved {
                if r.learn {
                    let (edge, sample) = (r.edge.clone(), r.sample.clone());
                    let recorded = state.learned.record(r.edge, r.sample, &self.node, now_ms);
                    evicted_edges += recorded.evicted() as u64;
                    if recorded.is_new() {
                        new_edges.push((edge, sample));
                    }
                }
                if let Some(report) = r.report {
                    evicted_reports += u64::from(state.reports.push(report));
                }
            }
            let c = &self.counters;
            c.edges_learned
                .store(state.learned.edges.len(), Ordering::Relaxed);
            drop(state);
            for (edge, sample) in new_edges {
                debug!(%edge, "new edge learned");
                crate::events::learned(&edge, &sample, now_ms);
            }
            c.edges_evicted.fetch_add(evicted_edges, Ordering::Relaxed);
            c.reports_evicted
                .fetch_add(evicted_reports, Ordering::Relaxed);
        }
        self.counters
            .ingested
            .fetch_add(events.len() as u64, Ordering::Relaxed);
    }

    /// What one event means: its edge, whether it is learned, its report. Counts its
    /// verdict and hands it to `zwctl flows watch`.
    fn resolve(&self, event: &LogEvent, resolver: &Resolver, now_ms: i64) -> Option<Resolved> {
        let Some(mut prefix) = parse_prefix(&event.prefix) else {
            debug!(prefix = %event.prefix, "log event of another rule ignored");
            return None;
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
        let learn = matches!(prefix.report, None | Some(ReportKind::Violation));
        let report = prefix.report.map(|kind| {
            let reported_by = logged_by.map(|z| z.to_string()).unwrap_or_default();
            crate::events::reported(
                kind,
                || {
                    let mut flow =
                        crate::events::Flow::new(&edge, event.src, event.src_port, event.dst);
                    flow.reported_by = Some(reported_by.clone()).filter(|r| !r.is_empty());
                    flow.profile_version = Some(prefix.version);
                    flow
                },
                now_ms,
            );
            warn!(kind = kind.as_str(), %edge, reported_by, version = prefix.version, src = %event.src, dst = %event.dst, "connection reported");
            Report {
                at_unix_ms: now_ms,
                kind,
                edge: edge.clone(),
                src: event.src,
                src_port: event.src_port,
                dst: event.dst,
                node: self.node.clone(),
                reported_by,
                profile_version: prefix.version,
                count: 1,
                response: None,
            }
        });
        Some(Resolved {
            edge,
            sample,
            learn,
            report,
        })
    }

    /// Cluster mode: every view of the learned edges ([`Self::learned`],
    /// [`Self::with_learned`]) is the cluster-wide one, this node's evidence merged with
    /// the other nodes' (counts summed, nodes united). What this node saves and
    /// forgets stays its own.
    pub fn with_remote(mut self, remote: crate::store::etcd::RemoteLearned) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The learned edges: this node's, and in cluster mode every node's, merged.
    pub fn learned(&self) -> LearnedEdges {
        self.with_learned(LearnedEdges::clone)
    }

    /// Reads the learned edges (in place on one node; `read` must be quick, ingestion
    /// waits); in cluster mode, the merged view.
    pub fn with_learned<R>(&self, read: impl FnOnce(&LearnedEdges) -> R) -> R {
        let Some(remote) = &self.remote else {
            return read(&self.lock().learned);
        };
        let merged = {
            let remote = remote.lock().unwrap_or_else(PoisonError::into_inner);
            if remote.is_empty() {
                drop(remote);
                return read(&self.lock().learned);
            }
            // This node's edges are copied out at once: ingestion never waits for the
            // merge, and `read` runs under no lock.
            let own = self.lock().learned.clone();
            crate::store::etcd::decode::merge_learned(std::iter::once(&own).chain(remote.values()))
        };
        read(&merged)
    }

    pub fn reports(&self) -> Reports {
        self.lock().reports.clone()
    }

    /// How many of `edges` are learned (what [`Self::forget`] would forget).
    pub fn known(&self, edges: &[Edge]) -> usize {
        let state = self.lock();
        edges
            .iter()
            .filter(|e| state.learned.edges.contains_key(e))
            .count()
    }

    /// Forgets learned edges an operator rejected; returns how many were known.
    pub fn forget(&self, edges: &[Edge]) -> usize {
        let mut state = self.lock();
        state.dirty = true;
        let known = state.learned.forget(edges);
        self.counters
            .edges_learned
            .store(state.learned.edges.len(), Ordering::Relaxed);
        known
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

/// Feeds NFLOG events into `learning` from a thread of its own (ingestion is CPU
/// work: on a tokio worker a flood would delay the gRPC reads), in batches of up to
/// [`BATCH`], until the queue's sender goes away.
pub fn spawn_ingest(
    mut events: mpsc::Receiver<LogEvent>,
    learning: Learning,
    registry: EndpointRegistry,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("learning".to_owned())
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = events.blocking_recv() {
                batch.push(first);
                while batch.len() < BATCH
                    && let Ok(event) = events.try_recv()
                {
                    batch.push(event);
                }
                learning.ingest_batch(&batch, &registry.resolver(), now_unix_ms());
                batch.clear();
            }
        })
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
    use crate::test_support::log_event;

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

    /// 10.0.0.1 is shop/web, zone id 1.
    fn web_resolver() -> Resolver {
        let mut resolver = Resolver::default();
        let web = zonewarden_profiles::ZoneName::parse("shop/web").unwrap();
        resolver
            .addr_zone_ids
            .insert("10.0.0.1".parse().unwrap(), 1);
        resolver.zones_by_id.insert(1, web);
        resolver
    }

    #[test]
    fn a_batch_is_learned_within_the_limits_and_every_event_is_counted() {
        let learning = Learning::new("n1".into(), None, None, (3, 2));
        let resolver = web_resolver();
        let mut events: Vec<LogEvent> = (1..=5).map(|p| log_event("zw learn z1 out", p)).collect();
        events.push(log_event("zw learn z1 out", 5));
        events.extend((7..=9).map(|p| log_event("zw drop z1 out", p)));
        events.push(log_event("not ours", 10));
        learning.ingest_batch(&events, &resolver, 1_000);

        let totals = learning.totals();
        assert_eq!(totals.ingested, 10, "every event taken from the queue");
        assert_eq!(
            (
                totals.edges_learned,
                totals.edges_limit,
                totals.edges_evicted
            ),
            (3, 3, 2),
            "five distinct edges learned into room for three"
        );
        assert_eq!(totals.reports_evicted, 1, "three drops into room for two");
        let ports: Vec<u16> = learning.learned().edges.keys().map(|e| e.port).collect();
        assert_eq!(ports, [3, 4, 5]);
        assert_eq!(learning.learned().edges.values().last().unwrap().count, 2);
        assert_eq!(learning.reports().entries.len(), 2);
        assert_eq!(learning.verdicts().get("shop/web", "learn"), 6);
        assert_eq!(
            learning.forget(&learning.learned().edges.keys().cloned().collect::<Vec<_>>()),
            3
        );
        assert_eq!(learning.totals().edges_learned, 0);
    }

    #[test]
    fn in_cluster_mode_every_view_merges_the_other_nodes_learning_and_saves_only_its_own() {
        let learning = Learning::new("n1".into(), None, None, (10, 10));
        let resolver = web_resolver();
        learning.ingest_batch(&[log_event("zw learn z1 out", 80)], &resolver, 1_000);
        let own = learning.learned();
        let (edge, evidence) = own.edges.iter().next().unwrap();
        let mut on_n2 = LearnedEdges::new(10);
        let mut theirs = evidence.clone();
        theirs.count = 4;
        theirs.nodes = ["n2".to_owned()].into();
        on_n2.edges.insert(edge.clone(), theirs);

        let remote = crate::store::etcd::RemoteLearned::default();
        let learning = learning.with_remote(remote.clone());
        assert_eq!(
            learning.learned(),
            own,
            "no other node has learned anything yet"
        );
        remote.lock().unwrap().insert("n2".into(), on_n2);
        let merged = learning.learned();
        assert_eq!(merged.edges[edge].count, evidence.count + 4);
        assert_eq!(
            merged.edges[edge].nodes.iter().collect::<Vec<_>>(),
            ["n1", "n2"]
        );
        assert_eq!(learning.with_learned(|l| l.edges.len()), 1);

        // What the node saves is its own evidence only.
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::open(dir.path()).unwrap();
        learning.flush(&store);
        let saved = crate::store::Store::load(&store).unwrap().learned.unwrap();
        assert_eq!(saved.edges[edge].count, evidence.count);
    }
}
