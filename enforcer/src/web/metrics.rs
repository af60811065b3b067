//! `/metrics`: the Prometheus (OpenMetrics text) exposition.
//!
//! Counters and the histogram live as long as the process and are fed where things
//! happen (learning, the store, the data plane, the NFLOG thread); gauges are
//! computed from the registry's snapshot and learning's totals at scrape time, the
//! same that `zwctl` shows.
//!
//! Two formats from one registry: OpenMetrics for scrapers that ask for it (Prometheus
//! does), the classic Prometheus text format (0.0.4) for everyone else (curl,
//! `promtool check metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use zonewarden_profiles::Mode;
use zonewarden_profiles::event::ReportKind;

use crate::learning::LearningTotals;
use crate::registry::Snapshot;

/// The labels of `zonewarden_connections_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub zone: String,
    /// `learn`, `violation`, `drop`, `quarantine` or `spoof`.
    pub verdict: &'static str,
}

/// Logged connections per zone and verdict, shared by [`crate::learning::Learning`]
/// (which counts) and the scrape (which reads).
#[derive(Debug, Clone, Default)]
pub struct VerdictCounters(Family<VerdictLabels, Counter>);

impl VerdictCounters {
    /// Counts one logged connection: `report` is `None` for a learned one.
    pub fn count(&self, zone: &str, report: Option<ReportKind>) {
        let verdict = report.map_or("learn", ReportKind::as_str);
        self.0
            .get_or_create(&VerdictLabels {
                zone: zone.to_owned(),
                verdict,
            })
            .inc();
    }

    /// The count of one (zone, verdict), for tests.
    pub fn get(&self, zone: &str, verdict: &'static str) -> u64 {
        self.0
            .get_or_create(&VerdictLabels {
                zone: zone.to_owned(),
                verdict,
            })
            .get()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

/// The labels of `zonewarden_nflog_dropped_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    /// `kernel`, `queue` or `unreadable`.
    cause: &'static str,
}

/// The process-long metrics that are not derived from a snapshot. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Latency of each kernel transaction that moves the table to a new ruleset.
    pub rule_sync: Histogram,
    /// Failed store operations.
    pub store_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            // 1 ms .. ~16 s: an nft transaction takes a few ms; a large ruleset, seconds.
            rule_sync: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            store_errors: Counter::default(),
        }
    }
}

/// What a scrape reads besides [`Metrics`].
pub struct ScrapeInput<'a> {
    pub snapshot: &'a Snapshot,
    pub learning: LearningTotals,
    pub verdicts: &'a VerdictCounters,
    /// Automatic response's quarantines (`None` when it is off).
    pub responses: Option<&'a crate::response::ResponseCounters>,
    pub readiness: &'a crate::readiness::Readiness,
    pub store: &'a crate::store::StoreHealth,
}

/// The exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    PrometheusText,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, the Prometheus text format
    /// otherwise.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => prometheus_text::CONTENT_TYPE,
        }
    }
}

impl Metrics {
    /// The exposition in `format`.
    pub fn render(&self, input: &ScrapeInput<'_>, format: Format) -> String {
        let registry = self.registry(input);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = match format {
            Format::OpenMetrics => text::encode(&mut out, &registry),
            Format::PrometheusText => prometheus_text::encode(&mut out, &registry),
        };
        out
    }

    fn registry(&self, input: &ScrapeInput<'_>) -> Registry {
        let snapshot = input.snapshot;
        let mut registry = Registry::with_prefix("zonewarden");

        registry.register(
            "endpoints",
            "Endpoints (pod attachments) registered on this node",
            gauge(snapshot.endpoints.len()),
        );
        let zones = Family::<ModeLabels, Gauge>::default();
        // Every mode appears, at 0 when no zone has it.
        for mode in [Mode::Learn, Mode::Monitor, Mode::Enforce] {
            let _ = zones.get_or_create(&ModeLabels {
                mode: mode.as_str(),
            });
        }
        for zone in snapshot.zone_names() {
            let mode = snapshot.policy.mode(&zone).as_str();
            zones.get_or_create(&ModeLabels { mode }).inc();
        }
        registry.register("zones", "Zones with members or a profile, by mode", zones);
        let quarantined = snapshot
            .zone_names()
            .iter()
            .filter(|z| snapshot.policy.zone_quarantined(z))
            .count();
        registry.register(
            "zones_quarantined",
            "Zones quarantined as a whole",
            gauge(quarantined),
        );
        registry.register(
            "endpoints_quarantined",
            "Endpoints quarantined one by one",
            gauge(snapshot.quarantined.len()),
        );
        registry.register(
            "edges_learned",
            "Distinct edges (src zone, dst zone, protocol, port) learned and kept",
            gauge(input.learning.edges_learned),
        );
        registry.register(
            "edges_learned_limit",
            "The most learned edges kept (--max-learned-edges); past it the stalest goes",
            gauge(input.learning.edges_limit),
        );
        registry.register(
            "edges_evicted",
            "Learned edges forgotten, the stalest first, to stay within \
             --max-learned-edges",
            counter(input.learning.edges_evicted),
        );
        registry.register(
            "reports_evicted",
            "Drop and violation reports forgotten, the oldest first, to stay within \
             --max-reports",
            counter(input.learning.reports_evicted),
        );
        registry.register(
            "edges_approved",
            "Distinct edges approved in at least one profile",
            gauge(snapshot.policy.approved_edges().len()),
        );
        registry.register(
            "connections",
            "New connections the table logged, by the zone whose rule logged them (the \
             source zone for quarantine and spoof) and verdict (learn, violation, drop, \
             quarantine, spoof). A repeat of the same source, destination, protocol and \
             port is logged once per seen-window, so this counts distinct flows per \
             window, not every connection",
            input.verdicts.0.clone(),
        );
        registry.register(
            "response_quarantines",
            "Endpoints quarantined by an automatic response rule of their zone's profile, \
             by zone and rule (violations, new-port); a quarantine an operator sets is not \
             counted here",
            input.responses.map(|r| r.0.clone()).unwrap_or_default(),
        );
        registry.register_with_unit(
            "rule_sync",
            "Latency of the kernel transactions that move table inet zonewarden to a \
             new ruleset",
            Unit::Seconds,
            self.rule_sync.clone(),
        );
        let nflog = input.learning.nflog;
        registry.register(
            "nflog_events",
            "NFLOG events the enforcer read and decoded (each then went to learning or \
             was dropped with cause=\"queue\")",
            counter(nflog.received),
        );
        registry.register(
            "nflog_ingested",
            "NFLOG events learning took in (learned edges and reports come from them)",
            counter(input.learning.ingested),
        );
        let dropped = Family::<CauseLabels, Counter>::default();
        for (cause, value) in [
            ("kernel", nflog.dropped_kernel),
            ("queue", nflog.dropped_queue),
            ("unreadable", nflog.unreadable),
        ] {
            dropped.get_or_create(&CauseLabels { cause }).inc_by(value);
        }
        registry.register(
            "nflog_dropped",
            "NFLOG events lost, so that learning and reports missed them, by cause: \
             kernel (the socket's receive buffer was full: the enforcer did not read in \
             time), queue (read, but the queue to learning was full: learning did not \
             keep up), unreadable (arrived but is no event the enforcer can read)",
            dropped,
        );
        let readiness = input.readiness;
        registry.register(
            "ready",
            "1 when the enforcer is ready: its table is intact and chained endpoints are \
             enforced (zwctl status says why when it is 0)",
            gauge(usize::from(readiness.not_ready().is_none())),
        );
        registry.register(
            "table_intact",
            "1 when table inet zonewarden is as the enforcer programmed it, 0 while it is \
             restored after someone else changed it or when it cannot be restored",
            gauge(usize::from(readiness.table_intact())),
        );
        registry.register(
            "table_restores",
            "Times the enforcer restored its table after someone else changed or deleted \
             it (nft flush ruleset, a firewall reload, nft delete ...)",
            counter(readiness.restores()),
        );
        registry.register(
            "bridge_netfilter",
            "1 unless chained endpoints exist and bridged traffic skips netfilter \
             (br_netfilter, bridge-nf-call-iptables / -ip6tables)",
            gauge(usize::from(readiness.bridge_problem().is_none())),
        );
        registry.register(
            "store_errors",
            "Store operations that failed (the enforcer keeps enforcing its last state)",
            self.store_errors.clone(),
        );
        registry.register(
            "store_up",
            "1 while the store takes writes; 0 while it does not (etcd unreachable: operator \
             changes are refused, enforcement of the last state goes on)",
            gauge(usize::from(input.store.up)),
        );
        register_events(&mut registry, crate::events::totals());
        let lag: Gauge = Gauge::default();
        lag.set(input.store.watch_lag);
        registry.register(
            "store_watch_lag_revisions",
            "Revisions of the cluster store the watch has seen but not yet applied (0 for \
             the local store)",
            lag,
        );
        registry
    }
}

/// The events log's counters (`--events-log`; all 0 without it).
fn register_events(registry: &mut Registry, totals: crate::events::Totals) {
    registry.register(
        "events_written",
        "Event lines written to --events-log",
        counter(totals.written),
    );
    registry.register(
        "events_lost",
        "Event lines lost: the queue to the events log's writer was full, or their write \
         failed (see zonewarden_events_write_errors_total and the enforcer's log)",
        counter(totals.lost),
    );
    registry.register(
        "events_write_errors",
        "Writes to --events-log that failed (the file is reopened at the next write)",
        counter(totals.write_errors),
    );
}

fn gauge(value: usize) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    gauge
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::endpoint;
    use zonewarden_profiles::{Profile, ZoneName};

    #[test]
    fn renders_gauges_counters_and_the_histogram() {
        let mut snapshot = Snapshot::default();
        for (id, zone) in [("c1", "shop/web"), ("c2", "shop/web"), ("c3", "shop/db")] {
            let e = endpoint(id, zone, &[]);
            std::sync::Arc::make_mut(&mut snapshot.endpoints).insert(e);
        }
        let db = ZoneName::parse("shop/db").unwrap();
        let mut profile = Profile::new(db.clone());
        profile.mode = Mode::Enforce;
        profile
            .approved
            .insert("shop/web->shop/db:5432/tcp".parse().unwrap());
        snapshot.policy.profiles.insert(db, profile);
        let metrics = Metrics::default();
        metrics.rule_sync.observe(0.004);
        metrics.store_errors.inc();
        let verdicts = VerdictCounters::default();
        verdicts.count("shop/db", Some(ReportKind::Drop));
        verdicts.count("shop/db", Some(ReportKind::Drop));
        verdicts.count("shop/web", None);
        let responses = crate::response::ResponseCounters::default();
        let api = zonewarden_profiles::ZoneName::parse("shop/api").unwrap();
        responses.count(&api, zonewarden_profiles::response::Rule::NewPort);
        let readiness = crate::readiness::Readiness::default();
        readiness.table_tampered("pid 7 (nft) deleted the table");
        readiness.table_restored("pid 7 (nft) deleted the table");
        readiness.set_bridge(Some("bridge-nf-call-iptables is 0".into()));
        let input = ScrapeInput {
            snapshot: &snapshot,
            learning: LearningTotals {
                nflog: crate::nflog::NflogTotals {
                    received: 12,
                    dropped_queue: 0,
                    dropped_kernel: 3,
                    unreadable: 1,
                },
                ingested: 9,
                edges_learned: 4,
                edges_limit: 10,
                edges_evicted: 2,
                reports_evicted: 0,
            },
            verdicts: &verdicts,
            responses: Some(&responses),
            readiness: &readiness,
            store: &crate::store::StoreHealth {
                kind: crate::store::StoreKind::Etcd,
                up: false,
                detail: String::new(),
                revision: 9,
                watch_lag: 3,
            },
        };
        let text = metrics.render(&input, Format::PrometheusText);
        for line in [
            "zonewarden_endpoints 3",
            "zonewarden_store_up 0",
            "zonewarden_store_watch_lag_revisions 3",
            "zonewarden_zones{mode=\"learn\"} 1",
            "zonewarden_zones{mode=\"monitor\"} 0",
            "zonewarden_zones{mode=\"enforce\"} 1",
            "zonewarden_edges_learned 4",
            "zonewarden_edges_approved 1",
            "zonewarden_connections_total{zone=\"shop/db\",verdict=\"drop\"} 2",
            "zonewarden_connections_total{zone=\"shop/web\",verdict=\"learn\"} 1",
            "zonewarden_rule_sync_seconds_count 1",
            "zonewarden_nflog_dropped_total{cause=\"kernel\"} 3",
            "zonewarden_nflog_dropped_total{cause=\"queue\"} 0",
            "zonewarden_nflog_dropped_total{cause=\"unreadable\"} 1",
            "zonewarden_nflog_events_total 12",
            "zonewarden_nflog_ingested_total 9",
            "zonewarden_edges_learned_limit 10",
            "zonewarden_edges_evicted_total 2",
            "zonewarden_reports_evicted_total 0",
            "zonewarden_store_errors_total 1",
            "zonewarden_table_intact 1",
            "zonewarden_table_restores_total 1",
            "zonewarden_bridge_netfilter 0",
            "zonewarden_ready 0",
            "zonewarden_response_quarantines_total{zone=\"shop/api\",rule=\"new-port\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE zonewarden_store_errors_total counter"),
            "classic counters are named with _total: {text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        let open = metrics.render(&input, Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(
            open.contains("# TYPE zonewarden_store_errors counter"),
            "{open}"
        );
        assert_eq!(verdicts.get("shop/db", "drop"), 2);
    }
}
