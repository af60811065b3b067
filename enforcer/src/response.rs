//! Automatic response: the zones' response rules (see
//! [`zonewarden_profiles::response`]) applied to this node's endpoints.
//!
//! Counting happens on the NFLOG path ([`Responder::consider`], called by learning for
//! every drop and violation it records): a look-up in the resolver's
//! [`ResponseView`](crate::registry::ResponseView) and, for a counted report, one
//! bounded window per endpoint. It never waits for the registry. A rule that fires
//! hands a [`Firing`] to [`run`], a task that quarantines the endpoint through the
//! registry exactly as `zwctl quarantine --endpoint` does (store, audit entry with the
//! rule as its author, table elements, open connections cut).
//!
//! An endpoint fires once: while its quarantine is on its way or in force, its reports
//! are not counted, and its window starts from zero again once an operator lifts it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;
use tracing::{error, info, warn};
use zonewarden_profiles::event::{Report, ReportKind};
use zonewarden_profiles::response::{Rule, Window};
use zonewarden_profiles::{Proto, ZoneName};

use crate::audit::Note;
use crate::registry::{EndpointRegistry, Resolver, Snapshot};

/// A rule fired for one endpoint: what [`run`] quarantines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    pub container_id: String,
    pub zone: ZoneName,
    pub rule: Rule,
    /// Why, with the counts: "5 violations within 60s (rule: 5 within 60s); last:
    /// shop/api->shop/db:22/tcp from 10.0.0.5".
    pub reason: String,
}

impl Firing {
    /// `response:shop/api:violations`: the author of the quarantine in the audit log.
    pub fn author(&self) -> String {
        self.rule.author(&self.zone)
    }
}

/// The labels of `zonewarden_response_quarantines_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub zone: String,
    /// `violations` or `new-port`.
    pub rule: &'static str,
}

/// Endpoints quarantined by a response rule, per zone and rule (for `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct ResponseCounters(pub Family<ResponseLabels, Counter>);

impl ResponseCounters {
    pub fn count(&self, zone: &ZoneName, rule: Rule) {
        self.0
            .get_or_create(&ResponseLabels {
                zone: zone.to_string(),
                rule: rule.as_str(),
            })
            .inc();
    }

    pub fn get(&self, zone: &str, rule: Rule) -> u64 {
        self.0
            .get_or_create(&ResponseLabels {
                zone: zone.to_owned(),
                rule: rule.as_str(),
            })
            .get()
    }
}

#[derive(Debug, Default)]
struct Counting {
    /// Per endpoint (container id): its recent counted reports.
    windows: HashMap<String, Window>,
    /// Endpoints whose quarantine is on its way to the registry.
    pending: BTreeSet<String>,
}

/// The counting side (on the NFLOG path) and the hand-off to [`run`]. Cloning shares it.
#[derive(Clone)]
pub struct Responder {
    counting: Arc<Mutex<Counting>>,
    fire: mpsc::UnboundedSender<Firing>,
    counters: ResponseCounters,
    /// Why each endpoint that a rule quarantined is quarantined, until it is lifted
    /// (this process's memory: after a restart the audit log says it).
    reasons: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Responder {
    /// A responder and the queue [`run`] takes its firings from.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Firing>) {
        let (fire, fired) = mpsc::unbounded_channel();
        let responder = Self {
            counting: Arc::default(),
            fire,
            counters: ResponseCounters::default(),
            reasons: Arc::default(),
        };
        (responder, fired)
    }

    pub fn counters(&self) -> &ResponseCounters {
        &self.counters
    }

    fn counting(&self) -> std::sync::MutexGuard<'_, Counting> {
        self.counting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one report of this node against its source's zone's rules; returns the
    /// rule that fired (and queues the quarantine). `port_learned` says whether the
    /// zone has a learned edge from it with that (protocol, port); it is asked only
    /// for a `newPort` zone's report.
    ///
    /// Counted: drops and violations reported by the zone's own rules whose source
    /// is an endpoint of this node in that zone, not quarantined already.
    pub fn consider(
        &self,
        report: &Report,
        resolver: &Resolver,
        port_learned: impl FnOnce(&ZoneName, Proto, u16) -> bool,
    ) -> Option<Rule> {
        let view = &resolver.response;
        if view.rules.is_empty() || !matches!(report.kind, ReportKind::Drop | ReportKind::Violation)
        {
            return None;
        }
        let source = view.sources.get(&report.src)?;
        if report.reported_by != source.zone.as_str() || report.edge.src != source.zone {
            return None;
        }
        let rules = view.rules.get(&source.zone)?;
        let mut counting = self.counting();
        if source.quarantined {
            counting.windows.remove(&source.container_id);
            return None;
        }
        if counting.pending.contains(&source.container_id) {
            return None;
        }
        let edge = &report.edge;
        let mut fired = None;
        if rules.new_port {
            let approved = view
                .approved_ports
                .get(&source.zone)
                .is_some_and(|ports| ports.contains(&(edge.proto, edge.port)));
            if !approved && !port_learned(&source.zone, edge.proto, edge.port) {
                fired = Some((
                    Rule::NewPort,
                    format!(
                        "{} {} to {}, a port zone {} never used (no approved or learned edge from it)",
                        report.kind.as_str(),
                        edge,
                        report.dst,
                        source.zone
                    ),
                ));
            }
        }
        if let Some(rule) = rules.violations {
            if counting.windows.len() > view.sources.len() + 64 {
                // Endpoints that left: forget their windows.
                let alive: BTreeSet<&String> =
                    view.sources.values().map(|s| &s.container_id).collect();
                counting.windows.retain(|cid, _| alive.contains(cid));
            }
            let window = counting
                .windows
                .entry(source.container_id.clone())
                .or_default();
            if let Some(n) = window.record(rule, report.at_unix_ms)
                && fired.is_none()
            {
                fired = Some((
                    Rule::Violations,
                    format!(
                        "{n} reports (drops or violations) within {}s (rule: {} within {}s); last: {} {} to {}",
                        rule.within_secs,
                        rule.count,
                        rule.within_secs,
                        report.kind.as_str(),
                        edge,
                        report.dst
                    ),
                ));
            }
        }
        let (rule, reason) = fired?;
        counting.windows.remove(&source.container_id);
        counting.pending.insert(source.container_id.clone());
        drop(counting);
        let firing = Firing {
            container_id: source.container_id.clone(),
            zone: source.zone.clone(),
            rule,
            reason,
        };
        warn!(container = %firing.container_id, zone = %firing.zone, rule = %rule, reason = %firing.reason, "automatic response: quarantining the endpoint");
        if self.fire.send(firing).is_err() {
            // No task takes firings (the enforcer is stopping): count again later.
            self.counting().pending.remove(&source.container_id);
            return None;
        }
        Some(rule)
    }

    /// Why `container_id` is quarantined, when a rule quarantined it.
    pub fn reason(&self, container_id: &str) -> Option<String> {
        self.reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(container_id)
            .cloned()
    }

    /// Names, on the zone map, the members a rule quarantined and why.
    pub fn annotate_map(&self, map: &mut crate::web::map::ZoneMap, snapshot: &Snapshot) {
        let reasons = self.reasons.lock().unwrap_or_else(PoisonError::into_inner);
        if reasons.is_empty() {
            return;
        }
        for endpoint in snapshot.endpoints.values() {
            let cid: &str = &endpoint.key.container_id;
            let Some(reason) = reasons
                .get(cid)
                .filter(|_| snapshot.quarantined.contains(cid))
            else {
                continue;
            };
            let zone = endpoint.zone.as_str();
            if let Some(z) = map.zones.iter_mut().find(|z| z.zone == zone) {
                z.quarantine_reasons.insert(
                    crate::registry::snapshot::member_name(endpoint),
                    reason.clone(),
                );
            }
        }
    }

    /// An operator quarantined `container_id` or lifted its quarantine: a rule's reason
    /// goes (the quarantine is the operator's now), and its reports count from zero.
    pub fn lifted(&self, container_id: &str) {
        self.reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(container_id);
        let mut counting = self.counting();
        counting.windows.remove(container_id);
        counting.pending.remove(container_id);
    }

    /// The quarantine of `firing` is in force (`applied`) or failed: the endpoint may
    /// be counted again once it is lifted.
    fn done(&self, firing: &Firing, applied: bool) {
        if applied {
            self.counters.count(&firing.zone, firing.rule);
            self.reasons
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    firing.container_id.clone(),
                    format!("{}: {}", firing.author(), firing.reason),
                );
        }
        let mut counting = self.counting();
        counting.pending.remove(&firing.container_id);
        counting.windows.remove(&firing.container_id);
    }
}

/// Quarantines the endpoint of every firing, one after the other, through the
/// registry (the same path as `zwctl quarantine --endpoint`), until the responder
/// goes away.
pub async fn run(
    mut fired: mpsc::UnboundedReceiver<Firing>,
    responder: Responder,
    registry: EndpointRegistry,
) {
    while let Some(firing) = fired.recv().await {
        let note = Note::new(firing.author(), firing.reason.clone());
        match registry
            .quarantine_endpoint(firing.container_id.clone(), true, note)
            .await
        {
            Ok(true) => {
                warn!(container = %firing.container_id, zone = %firing.zone, rule = %firing.rule, "automatic response: endpoint quarantined");
                responder.done(&firing, true);
            }
            Ok(false) => {
                info!(container = %firing.container_id, "automatic response: the endpoint was quarantined already");
                responder.done(&firing, false);
            }
            Err(err) => {
                error!(container = %firing.container_id, zone = %firing.zone, rule = %firing.rule, %err, "automatic response: cannot quarantine the endpoint; its reports count again");
                responder.done(&firing, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ResponseSource, ResponseView};
    use zonewarden_profiles::response::{ResponseRules, ViolationsRule};

    fn zone() -> ZoneName {
        ZoneName::parse("shop/api").unwrap()
    }

    /// 10.0.0.5 is c1 of shop/api, whose rules are `rules`; 5432/tcp is approved.
    fn resolver(rules: ResponseRules, quarantined: bool) -> Resolver {
        let mut view = ResponseView::default();
        view.rules.insert(zone(), rules);
        view.sources.insert(
            "10.0.0.5".parse().unwrap(),
            ResponseSource {
                container_id: "c1".into(),
                zone: zone(),
                quarantined,
            },
        );
        view.approved_ports
            .insert(zone(), [(Proto::Tcp, 5432)].into());
        Resolver {
            response: Arc::new(view),
            ..Resolver::default()
        }
    }

    fn report(kind: ReportKind, src: &str, port: u16, at: i64) -> Report {
        Report {
            at_unix_ms: at,
            kind,
            edge: format!("shop/api->shop/db:{port}/tcp").parse().unwrap(),
            src: src.parse().unwrap(),
            src_port: 40_000,
            dst: "10.0.0.9".parse().unwrap(),
            node: "n1".into(),
            reported_by: "shop/api".into(),
            profile_version: 1,
            count: 1,
            response: None,
        }
    }

    fn violations(count: u32, within_secs: u32) -> ResponseRules {
        ResponseRules {
            violations: Some(ViolationsRule { count, within_secs }),
            new_port: false,
        }
    }

    #[test]
    fn the_violations_rule_fires_once_at_its_count_and_counts_again_after_a_lift() {
        let (responder, mut fired) = Responder::new();
        let r = resolver(violations(3, 60), false);
        let never = |_: &ZoneName, _, _| panic!("only newPort asks");
        for at in [1_000, 2_000] {
            assert_eq!(
                responder.consider(
                    &report(ReportKind::Violation, "10.0.0.5", 22, at),
                    &r,
                    never
                ),
                None
            );
        }
        assert_eq!(
            responder.consider(&report(ReportKind::Drop, "10.0.0.5", 23, 3_000), &r, never),
            Some(Rule::Violations)
        );
        let firing = fired.try_recv().unwrap();
        assert_eq!(firing.author(), "response:shop/api:violations");
        assert!(
            firing
                .reason
                .starts_with("3 reports (drops or violations) within 60s"),
            "{}",
            firing.reason
        );
        // Pending: never fired twice.
        for at in 4_000..4_010 {
            assert_eq!(
                responder.consider(&report(ReportKind::Drop, "10.0.0.5", 24, at), &r, never),
                None
            );
        }
        responder.done(&firing, true);
        assert_eq!(responder.counters().get("shop/api", Rule::Violations), 1);
        assert!(
            responder
                .reason("c1")
                .unwrap()
                .starts_with("response:shop/api:violations: 3 reports")
        );
        // In force: never counted.
        let quarantined = resolver(violations(3, 60), true);
        for at in 5_000..5_010 {
            assert_eq!(
                responder.consider(
                    &report(ReportKind::Drop, "10.0.0.5", 24, at),
                    &quarantined,
                    never
                ),
                None
            );
        }
        responder.lifted("c1");
        assert_eq!(responder.reason("c1"), None);
        assert_eq!(
            responder.consider(&report(ReportKind::Drop, "10.0.0.5", 24, 6_000), &r, never),
            None,
            "after the lift the count starts from zero"
        );
        assert!(fired.try_recv().is_err());
    }

    #[test]
    fn the_zone_map_names_the_members_a_rule_quarantined() {
        let (responder, _fired) = Responder::new();
        let mut snapshot = Snapshot::default();
        let mut ep = crate::test_support::endpoint("c1", "shop/api", &["10.0.0.5/24"]);
        ep.pod_name = Some("api-0".into());
        std::sync::Arc::make_mut(&mut snapshot.endpoints).insert(ep);
        let mut map = crate::web::map::zone_map(
            &snapshot,
            &zonewarden_profiles::learned::LearnedEdges::new(1),
            &zonewarden_profiles::event::Reports::new(1),
            "n1",
            1,
        );
        let firing = Firing {
            container_id: "c1".into(),
            zone: zone(),
            rule: Rule::NewPort,
            reason: "drop to 22/tcp".into(),
        };
        responder.done(&firing, true);
        responder.annotate_map(&mut map, &snapshot);
        assert!(
            map.zones[0].quarantine_reasons.is_empty(),
            "not quarantined (lifted meanwhile): no reason"
        );
        snapshot.quarantined.insert("c1".into());
        responder.annotate_map(&mut map, &snapshot);
        assert_eq!(
            map.zones[0].quarantine_reasons["api-0"],
            "response:shop/api:new-port: drop to 22/tcp"
        );
    }

    #[test]
    fn only_the_zones_own_reports_of_its_own_endpoints_count() {
        let (responder, mut fired) = Responder::new();
        let r = resolver(violations(1, 60), false);
        let never = |_: &ZoneName, _, _| false;
        let mut by_other_zone = report(ReportKind::Drop, "10.0.0.5", 22, 1);
        by_other_zone.reported_by = "shop/db".into();
        let other_source = report(ReportKind::Drop, "10.0.0.6", 22, 1);
        let quarantine = report(ReportKind::Quarantine, "10.0.0.5", 22, 1);
        for r2 in [by_other_zone, other_source, quarantine] {
            assert_eq!(responder.consider(&r2, &r, never), None, "{r2:?}");
        }
        assert!(fired.try_recv().is_err());
        let without_rules = Resolver::default();
        assert_eq!(
            responder.consider(
                &report(ReportKind::Drop, "10.0.0.5", 22, 1),
                &without_rules,
                never
            ),
            None
        );
    }

    #[test]
    fn the_new_port_rule_fires_on_a_port_neither_approved_nor_learned() {
        let (responder, mut fired) = Responder::new();
        let rules = ResponseRules {
            violations: None,
            new_port: true,
        };
        let r = resolver(rules, false);
        let learned =
            |z: &ZoneName, proto, port| z == &zone() && proto == Proto::Tcp && port == 6379;
        assert_eq!(
            responder.consider(&report(ReportKind::Drop, "10.0.0.5", 5432, 1), &r, learned),
            None,
            "approved port"
        );
        assert_eq!(
            responder.consider(&report(ReportKind::Drop, "10.0.0.5", 6379, 2), &r, learned),
            None,
            "learned port"
        );
        assert_eq!(
            responder.consider(
                &report(ReportKind::Violation, "10.0.0.5", 22, 3),
                &r,
                learned
            ),
            Some(Rule::NewPort)
        );
        let firing = fired.try_recv().unwrap();
        assert_eq!(firing.author(), "response:shop/api:new-port");
        assert!(
            firing.reason.contains("shop/api->shop/db:22/tcp"),
            "{}",
            firing.reason
        );
    }
}
