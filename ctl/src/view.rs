//! Plain serde views of the enforcer's messages: what `-o json|yaml` prints.
//!
//! They mirror the proto messages field by field, with the proto3 JSON names
//! (lowerCamelCase), so a script sees the same shape the API documents. The
//! generated prost types stay free of serde; every view converts `From` its message.
//! Enums print as the model's lowercase words (`enforce`, `cni-args`, `drop`), the
//! words zwctl printed when the API carried them as text: scripts keep working.

use serde::Serialize;
use zonewarden_profiles::event::ReportKind;
use zonewarden_profiles::{AttachMode, EdgeStatus, Mode, ZoneKind, ZoneSource};
use zonewarden_proto::model::{self, EnumError};
use zonewarden_proto::v1;

/// The word printed for a received enum value: the model's word; empty when the
/// enforcer left it unspecified; `unknown (N)` for a value this zwctl does not know.
pub fn word<M>(decoded: Result<M, EnumError>, name: impl FnOnce(M) -> &'static str) -> String {
    match decoded {
        Ok(value) => name(value).to_owned(),
        Err(EnumError::Unspecified { .. }) => String::new(),
        Err(EnumError::Unknown { value, .. }) => format!("unknown ({value})"),
    }
}

/// The word of an enum of the contract that has no model type outside the enforcer
/// (the audit's): its name's word (`AUDIT_ACTION_ENDPOINT_ADD`: `endpoint-add`), the
/// word audit.log holds; empty for UNSPECIFIED (0), `unknown (N)` for a newer value.
pub fn named_word<E: TryFrom<i32>>(
    raw: i32,
    name: impl FnOnce(E) -> &'static str,
    prefix: &str,
) -> String {
    if raw == 0 {
        return String::new();
    }
    match E::try_from(raw) {
        Ok(value) => model::name_word(name(value), prefix),
        Err(_) => format!("unknown ({raw})"),
    }
}

/// `learn`, `monitor` or `enforce`.
pub fn mode_word(raw: i32) -> String {
    word(model::mode("mode", raw), Mode::as_str)
}

/// `approved`, `observed` or `dropped`: what the table does now with the edge.
pub fn edge_status_word(raw: i32) -> String {
    word(model::edge_status("status", raw), EdgeStatus::as_str)
}

/// `workload`, `config`, ..., `mixed`, `empty` or `cidr`.
pub fn zone_kind_word(raw: i32) -> String {
    word(model::zone_kind("kind", raw), ZoneKind::as_str)
}

/// `drop`, `violation`, `quarantine` or `spoof` (`learn` for a learned flow).
pub fn verdict_word(raw: i32) -> String {
    word(model::verdict("verdict", raw), |v| {
        v.map_or("learn", ReportKind::as_str)
    })
}

/// The identity of one attachment (`AttachmentKey`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentKeyView {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl From<v1::AttachmentKey> for AttachmentKeyView {
    fn from(key: v1::AttachmentKey) -> Self {
        Self {
            network: key.network,
            container_id: key.container_id,
            ifname: key.ifname,
        }
    }
}

/// One container attachment (`Endpoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub key: AttachmentKeyView,
    pub zone: String,
    pub zone_source: String,
    pub netns: String,
    pub host_ifname: String,
    pub ips: Vec<String>,
    pub mac: String,
    pub node: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub attach_mode: String,
    pub created_unix_ms: i64,
    /// Chained after a bridge: the bridge the host interface is a port of.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bridge: String,
    /// Quarantined one by one (`zwctl quarantine --endpoint`).
    pub quarantined: bool,
    /// Its zone is quarantined: cut off as well.
    pub zone_quarantined: bool,
    /// Why, when an automatic response rule quarantined it
    /// (`response:shop/api:violations: 5 reports ...`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub quarantine_reason: String,
}

impl EndpointView {
    /// What cuts the endpoint off: `endpoint`, `zone`, both, or `no`; an endpoint
    /// a response rule quarantined says which (`endpoint (violations)`).
    pub fn quarantine_word(&self) -> String {
        let word = match (self.quarantined, self.zone_quarantined) {
            (true, true) => "endpoint,zone",
            (true, false) => "endpoint",
            (false, true) => "zone",
            (false, false) => "no",
        };
        match response_rule(&self.quarantine_reason) {
            Some(rule) if self.quarantined => format!("{word} ({rule})"),
            _ => word.to_owned(),
        }
    }
}

/// The rule of a response author (`response:shop/api:violations[: why]` →
/// `violations`).
pub fn response_rule(author: &str) -> Option<&str> {
    let rest = author.strip_prefix("response:")?;
    let author = rest.split(": ").next().unwrap_or(rest);
    author.rsplit(':').next().filter(|r| !r.is_empty())
}

impl From<v1::Endpoint> for EndpointView {
    fn from(ep: v1::Endpoint) -> Self {
        Self {
            key: ep.key.map(AttachmentKeyView::from).unwrap_or_default(),
            zone: ep.zone,
            zone_source: word(
                model::zone_source("zone_source", ep.zone_source),
                ZoneSource::as_str,
            ),
            netns: ep.netns,
            host_ifname: ep.host_ifname,
            ips: ep.ips,
            mac: ep.mac,
            node: ep.node,
            pod_namespace: ep.pod_namespace,
            pod_name: ep.pod_name,
            attach_mode: word(
                model::attach_mode("attach_mode", ep.attach_mode),
                AttachMode::as_str,
            ),
            created_unix_ms: ep.created_unix_ms,
            bridge: ep.bridge,
            quarantined: ep.quarantined,
            zone_quarantined: ep.zone_quarantined,
            quarantine_reason: ep.quarantine_reason,
        }
    }
}

impl EndpointView {
    /// `namespace/name`, or just the name when the namespace is unknown; empty when
    /// the attachment is not a Kubernetes pod.
    pub fn pod(&self) -> String {
        match (self.pod_namespace.as_str(), self.pod_name.as_str()) {
            (_, "") => String::new(),
            ("", name) => name.to_owned(),
            (ns, name) => format!("{ns}/{name}"),
        }
    }
}

/// One zone and its members (`Zone`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneView {
    pub zone: String,
    pub id: u32,
    pub kind: String,
    /// learn, monitor or enforce (from the zone's profile); empty when the zone has
    /// no profile (built-in and CIDR zones).
    pub mode: String,
    pub endpoint_count: u32,
    pub members: Vec<String>,
}

impl From<v1::Zone> for ZoneView {
    fn from(zone: v1::Zone) -> Self {
        Self {
            zone: zone.name,
            id: zone.id,
            kind: zone_kind_word(zone.kind),
            mode: String::new(),
            endpoint_count: zone.endpoint_count,
            members: zone.members,
        }
    }
}

/// Whether the enforcer can serve ADD now (`StatusResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub ready: bool,
    pub message: String,
    pub node: String,
    pub endpoint_count: u32,
    pub version: String,
    pub learning: LearningView,
    pub store: StoreView,
    /// `--events-log`: absent when the enforcer writes none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_log: Option<EventsLogView>,
}

/// The enforcer's events log (`EventsLogStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsLogView {
    /// A file path, or `stdout`.
    pub destination: String,
    pub written: u64,
    /// Lines lost: the queue to the writer was full, or their write failed.
    pub lost: u64,
    pub write_errors: u64,
}

/// Where the enforcer's state lives and whether it takes writes (`StoreStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreView {
    /// `local` or `etcd`.
    pub kind: String,
    pub up: bool,
    pub detail: String,
    pub revision: i64,
    pub watch_lag: i64,
}

impl StoreView {
    /// One cell: `local`, `etcd up (lag 0)`, `etcd DOWN`.
    pub fn summary(&self) -> String {
        match (self.kind.as_str(), self.up) {
            ("etcd", true) => format!("etcd up (rev {}, lag {})", self.revision, self.watch_lag),
            (kind, true) => kind.to_owned(),
            (kind, false) => format!("{kind} DOWN"),
        }
    }
}

impl From<v1::StatusResponse> for StatusView {
    fn from(status: v1::StatusResponse) -> Self {
        let store = status.store.unwrap_or_default();
        let kind = match store.kind() {
            v1::StoreKind::Etcd => "etcd",
            v1::StoreKind::Local => "local",
            v1::StoreKind::Unspecified => "unknown",
        };
        Self {
            ready: status.ready,
            message: status.message,
            node: status.node,
            endpoint_count: status.endpoint_count,
            version: status.version,
            store: StoreView {
                kind: kind.to_owned(),
                up: store.up,
                detail: store.detail,
                revision: store.revision,
                watch_lag: store.watch_lag,
            },
            learning: status.learning.unwrap_or_default().into(),
            events_log: status.events_log.map(|e| EventsLogView {
                destination: e.destination,
                written: e.written,
                lost: e.lost,
                write_errors: e.write_errors,
            }),
        }
    }
}

/// What became of the logged connections, and how full learning is (`LearningStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LearningView {
    /// Events read from NFLOG.
    pub events: u64,
    /// Events learning took in.
    pub ingested: u64,
    pub dropped: DroppedView,
    pub edges_learned: u64,
    pub edges_limit: u64,
    pub edges_evicted: u64,
    pub reports_evicted: u64,
}

/// Logged connections lost, by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DroppedView {
    /// The kernel's buffer was full.
    pub kernel: u64,
    /// The queue to learning was full.
    pub queue: u64,
    /// Arrived but not readable.
    pub unreadable: u64,
}

impl DroppedView {
    pub fn total(&self) -> u64 {
        self.kernel
            .saturating_add(self.queue)
            .saturating_add(self.unreadable)
    }
}

impl From<v1::LearningStatus> for LearningView {
    fn from(l: v1::LearningStatus) -> Self {
        Self {
            events: l.events,
            ingested: l.ingested,
            dropped: DroppedView {
                kernel: l.dropped_kernel,
                queue: l.dropped_queue,
                unreadable: l.dropped_unreadable,
            },
            edges_learned: l.edges_learned,
            edges_limit: l.edges_limit,
            edges_evicted: l.edges_evicted,
            reports_evicted: l.reports_evicted,
        }
    }
}

/// The evidence of a learned edge (`Evidence`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceView {
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    pub count: u64,
    pub nodes: Vec<String>,
    pub sample: String,
}

impl From<v1::Evidence> for EvidenceView {
    fn from(evidence: v1::Evidence) -> Self {
        Self {
            first_seen_unix_ms: evidence.first_seen_unix_ms,
            last_seen_unix_ms: evidence.last_seen_unix_ms,
            count: evidence.count,
            nodes: evidence.nodes,
            sample: evidence.sample,
        }
    }
}

/// One learned and/or approved edge (`EdgeInfo`), e.g. `shop/web->shop/api:8080/tcp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeView {
    pub edge: String,
    pub learned: bool,
    pub approved: bool,
    /// Absent (as in proto3 JSON) when the edge was never learned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceView>,
    pub approved_in: Vec<String>,
    /// What the table does now: `approved`, `observed` or `dropped`.
    pub status: String,
    /// History: the newest drop by an enforcing zone among the recent reports; absent
    /// when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drop: Option<EdgeDropView>,
}

/// The newest drop of an edge (`EdgeDrop`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EdgeDropView {
    pub at_unix_ms: i64,
    /// The reporting zone's profile version then.
    pub profile_version: u64,
    pub reported_by: String,
    pub count: u64,
}

impl From<v1::EdgeInfo> for EdgeView {
    fn from(edge: v1::EdgeInfo) -> Self {
        Self {
            edge: edge.edge,
            learned: edge.learned,
            approved: edge.approved,
            evidence: edge.evidence.map(EvidenceView::from),
            approved_in: edge.approved_in,
            status: edge_status_word(edge.status),
            last_drop: edge.last_drop.map(|d| EdgeDropView {
                at_unix_ms: d.at_unix_ms,
                profile_version: d.profile_version,
                reported_by: d.reported_by,
                count: d.count,
            }),
        }
    }
}

impl EdgeView {
    /// `5m (v3)`: when the edge was last dropped, and the reporting zone's profile
    /// version then; empty (`<none>`) when it was not.
    pub fn last_drop_cell(&self, now_unix_ms: i64) -> String {
        self.last_drop.as_ref().map_or_else(String::new, |d| {
            format!(
                "{} (v{})",
                crate::render::format_age(d.at_unix_ms, now_unix_ms),
                d.profile_version
            )
        })
    }
}

/// Edges in a stable order: by their text.
pub fn edge_views(edges: Vec<v1::EdgeInfo>) -> Vec<EdgeView> {
    let mut views: Vec<EdgeView> = edges.into_iter().map(EdgeView::from).collect();
    views.sort_by(|a, b| a.edge.cmp(&b.edge));
    views
}

/// One entry of a profile's history (`ProfileChange`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileChangeView {
    pub version: u64,
    pub who: String,
    pub at_unix_ms: i64,
    pub what: String,
    pub comment: String,
}

impl From<v1::ProfileChange> for ProfileChangeView {
    fn from(change: v1::ProfileChange) -> Self {
        Self {
            version: change.version,
            who: change.who,
            at_unix_ms: change.at_unix_ms,
            what: change.what,
            comment: change.comment,
        }
    }
}

/// How settled a zone's learning is (`Completeness`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletenessView {
    /// Milliseconds since the zone's newest edge was first seen; -1 without edges.
    pub since_last_new_edge_ms: i64,
    pub new_in_window: u32,
    pub seen_in_window: u32,
    pub window_seconds: u32,
}

impl From<v1::Completeness> for CompletenessView {
    fn from(completeness: v1::Completeness) -> Self {
        Self {
            since_last_new_edge_ms: completeness.since_last_new_edge_ms,
            new_in_window: completeness.new_in_window,
            seen_in_window: completeness.seen_in_window,
            window_seconds: completeness.window_seconds,
        }
    }
}

/// A zone's profile: mode, quarantine, approved edges and history (`Profile`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileView {
    pub zone: String,
    pub mode: String,
    pub quarantined: bool,
    pub version: u64,
    /// The edges this profile approves (`approved` is a yes/no everywhere else).
    #[serde(rename = "approvedEdges")]
    pub approved: Vec<String>,
    /// Edges an operator rejected: never approved by `approve --all`.
    #[serde(rename = "rejectedEdges")]
    pub rejected: Vec<String>,
    /// Automatic response rules; left out when the zone has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ResponseView>,
    pub history: Vec<ProfileChangeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completeness: Option<CompletenessView>,
    pub endpoint_count: u32,
}

/// A zone's automatic response rules (`ResponseRules`), named as in the export.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<ViolationsRuleView>,
    pub new_port: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationsRuleView {
    pub count: u32,
    pub within_seconds: u32,
}

impl From<v1::ResponseRules> for ResponseView {
    fn from(rules: v1::ResponseRules) -> Self {
        Self {
            violations: (rules.violations > 0).then_some(ViolationsRuleView {
                count: rules.violations,
                within_seconds: rules.within_seconds,
            }),
            new_port: rules.new_port,
        }
    }
}

impl ResponseView {
    /// `5 violations within 60s, new port`, or `none`.
    pub fn words(rules: Option<&Self>) -> String {
        let mut parts = Vec::new();
        if let Some(v) = rules.and_then(|r| r.violations.as_ref()) {
            parts.push(format!(
                "{} violations within {}s",
                v.count, v.within_seconds
            ));
        }
        if rules.is_some_and(|r| r.new_port) {
            parts.push("new port".to_owned());
        }
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

impl From<v1::Profile> for ProfileView {
    fn from(profile: v1::Profile) -> Self {
        Self {
            zone: profile.zone,
            mode: mode_word(profile.mode),
            quarantined: profile.quarantined,
            version: profile.version,
            approved: profile.approved,
            rejected: profile.rejected,
            response: profile.response.map(ResponseView::from),
            history: profile
                .history
                .into_iter()
                .map(ProfileChangeView::from)
                .collect(),
            completeness: profile.completeness.map(CompletenessView::from),
            endpoint_count: profile.endpoint_count,
        }
    }
}

/// A zone's learned edges against its approved ones (`DiffProfileResponse`),
/// plus the zone that was asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileDiffView {
    pub zone: String,
    pub unapproved: Vec<EdgeView>,
    pub rejected_seen: Vec<EdgeView>,
    pub approved_seen: Vec<EdgeView>,
    pub approved_unseen: Vec<EdgeView>,
}

impl ProfileDiffView {
    pub fn new(zone: &str, diff: v1::DiffProfileResponse) -> Self {
        Self {
            zone: zone.to_owned(),
            unapproved: edge_views(diff.unapproved),
            rejected_seen: edge_views(diff.rejected_seen),
            approved_seen: edge_views(diff.approved_seen),
            approved_unseen: edge_views(diff.approved_unseen),
        }
    }
}

/// The result of a policy change (`ProfileChangeResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileChangeResultView {
    /// How many edges (or flags) the request changed; 0 when it changed nothing.
    pub changed: u32,
    pub profile: ProfileView,
}

impl From<v1::ProfileChangeResponse> for ProfileChangeResultView {
    fn from(response: v1::ProfileChangeResponse) -> Self {
        Self {
            changed: response.changed,
            profile: response.profile.map(ProfileView::from).unwrap_or_default(),
        }
    }
}

/// The result of `zwctl profile delete` (`DeleteProfileResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileDeleteView {
    pub zone: String,
    /// The version the deleted profile had.
    pub version: u64,
    /// Edges of the zone removed from other zones' profiles (--force).
    pub removed_edges: Vec<String>,
    /// Those zones' profiles as they are now.
    pub changed_profiles: Vec<ProfileView>,
    /// This node's learned edges of the zone that were forgotten.
    pub forgotten_edges: u32,
}

impl From<v1::DeleteProfileResponse> for ProfileDeleteView {
    fn from(response: v1::DeleteProfileResponse) -> Self {
        Self {
            zone: response.zone,
            version: response.version,
            removed_edges: response.removed_edges,
            changed_profiles: response
                .changed_profiles
                .into_iter()
                .map(ProfileView::from)
                .collect(),
            forgotten_edges: response.forgotten_edges,
        }
    }
}

/// One recent drop or monitor violation (`Violation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ViolationView {
    pub at_unix_ms: i64,
    pub verdict: String,
    pub edge: String,
    pub src: String,
    pub dst: String,
    pub src_port: u32,
    pub node: String,
    /// The zone whose rule reported it (drops and monitor violations); left out for
    /// a quarantine or a spoofed address, which no profile's rule reports.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reported_by: String,
    /// That zone's profile version then; left out with `reportedBy`.
    #[serde(skip_serializing_if = "is_zero")]
    pub profile_version: u64,
    pub count: u64,
    /// The automatic response rule this report made quarantine its source
    /// (`response:shop/api:violations`); left out for every other report.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub response: String,
}

/// For `skip_serializing_if`: a count or version that is not set.
pub fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<v1::Violation> for ViolationView {
    fn from(violation: v1::Violation) -> Self {
        Self {
            at_unix_ms: violation.at_unix_ms,
            verdict: verdict_word(violation.verdict),
            edge: violation.edge,
            src: violation.src,
            dst: violation.dst,
            src_port: violation.src_port,
            node: violation.node,
            reported_by: violation.reported_by,
            profile_version: violation.profile_version,
            count: violation.count,
            response: violation.response,
        }
    }
}

impl ViolationView {
    /// The source as `addr:port` (`[addr]:port` for IPv6); just the address
    /// without a port (ICMP).
    pub fn src_with_port(&self) -> String {
        match (self.src.as_str(), self.src_port) {
            ("", _) => String::new(),
            (src, 0) => src.to_owned(),
            (src, port) if src.contains(':') && !src.starts_with('[') => format!("[{src}]:{port}"),
            (src, port) => format!("{src}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_without_key_converts_to_an_empty_key() {
        let view = EndpointView::from(v1::Endpoint {
            zone: "z".into(),
            ..Default::default()
        });
        assert_eq!(view.key, AttachmentKeyView::default());
        assert_eq!(view.zone, "z");
    }

    #[test]
    fn pod_is_namespace_slash_name_or_what_is_known() {
        let mut ep = EndpointView {
            pod_namespace: "shop".into(),
            pod_name: "web-0".into(),
            ..Default::default()
        };
        assert_eq!(ep.pod(), "shop/web-0");
        ep.pod_namespace.clear();
        assert_eq!(ep.pod(), "web-0");
        ep.pod_name.clear();
        ep.pod_namespace = "shop".into();
        assert_eq!(ep.pod(), "", "a namespace without a pod name is no pod");
    }

    #[test]
    fn source_is_addr_port_with_brackets_for_ipv6_and_no_port_for_icmp() {
        let mut v = ViolationView {
            src: "10.0.0.1".into(),
            src_port: 40312,
            ..Default::default()
        };
        assert_eq!(v.src_with_port(), "10.0.0.1:40312");
        v.src = "fd00::5".into();
        assert_eq!(v.src_with_port(), "[fd00::5]:40312");
        v.src_port = 0;
        assert_eq!(v.src_with_port(), "fd00::5");
        v.src.clear();
        assert_eq!(v.src_with_port(), "");
    }

    #[test]
    fn missing_evidence_and_profile_convert_to_absent_and_empty() {
        let edge = EdgeView::from(v1::EdgeInfo {
            edge: "a->b:80/tcp".into(),
            approved: true,
            ..Default::default()
        });
        assert_eq!(edge.evidence, None);
        let json = serde_json::to_value(&edge).unwrap();
        assert!(json.get("evidence").is_none(), "{json}");
        assert_eq!(json["approvedIn"], serde_json::json!([]));
        let result = ProfileChangeResultView::from(v1::ProfileChangeResponse {
            profile: None,
            changed: 2,
        });
        assert_eq!(result.profile, ProfileView::default());
    }

    /// Operators' scripts read these words: they are the ones zwctl printed when the
    /// API carried them as text, and must not change.
    #[test]
    fn json_prints_the_same_lowercase_words_as_before() {
        let endpoint = EndpointView::from(v1::Endpoint {
            zone_source: v1::ZoneSource::CniArgs.into(),
            attach_mode: v1::AttachMode::Chained.into(),
            ..Default::default()
        });
        let json = serde_json::to_value(&endpoint).unwrap();
        assert_eq!(
            (&json["zoneSource"], &json["attachMode"]),
            (
                &serde_json::json!("cni-args"),
                &serde_json::json!("chained")
            )
        );
        let sources = [
            (v1::ZoneSource::Annotation, "annotation"),
            (v1::ZoneSource::CniArgs, "cni-args"),
            (v1::ZoneSource::Config, "config"),
            (v1::ZoneSource::Workload, "workload"),
            (v1::ZoneSource::Pod, "pod"),
            (v1::ZoneSource::Default, "default"),
        ];
        for (source, text) in sources {
            let view = EndpointView::from(v1::Endpoint {
                zone_source: source.into(),
                attach_mode: v1::AttachMode::Routed.into(),
                ..Default::default()
            });
            assert_eq!(
                (view.zone_source.as_str(), view.attach_mode.as_str()),
                (text, "routed")
            );
        }
        let kinds = [
            (v1::ZoneKind::Annotation, "annotation"),
            (v1::ZoneKind::CniArgs, "cni-args"),
            (v1::ZoneKind::Config, "config"),
            (v1::ZoneKind::Workload, "workload"),
            (v1::ZoneKind::Pod, "pod"),
            (v1::ZoneKind::Default, "default"),
            (v1::ZoneKind::Mixed, "mixed"),
            (v1::ZoneKind::Empty, "empty"),
            (v1::ZoneKind::Cidr, "cidr"),
        ];
        for (kind, text) in kinds {
            let view = ZoneView::from(v1::Zone {
                kind: kind.into(),
                ..Default::default()
            });
            let json = serde_json::to_value(&view).unwrap();
            assert_eq!(json["kind"], text);
        }
        for (mode, text) in [
            (v1::Mode::Learn, "learn"),
            (v1::Mode::Monitor, "monitor"),
            (v1::Mode::Enforce, "enforce"),
        ] {
            let view = ProfileView::from(v1::Profile {
                mode: mode.into(),
                ..Default::default()
            });
            let json = serde_json::to_value(&view).unwrap();
            assert_eq!(json["mode"], text);
        }
        for (verdict, text) in [
            (v1::Verdict::Drop, "drop"),
            (v1::Verdict::Violation, "violation"),
            (v1::Verdict::Quarantine, "quarantine"),
            (v1::Verdict::Spoof, "spoof"),
        ] {
            let view = ViolationView::from(v1::Violation {
                verdict: verdict.into(),
                ..Default::default()
            });
            let json = serde_json::to_value(&view).unwrap();
            assert_eq!(json["verdict"], text);
        }
    }

    #[test]
    fn unspecified_prints_empty_and_unknown_says_so() {
        assert_eq!(mode_word(0), "");
        assert_eq!(mode_word(17), "unknown (17)");
        assert_eq!(verdict_word(0), "");
        assert_eq!(ProfileView::from(v1::Profile::default()).mode, "");
    }

    #[test]
    fn edges_are_sorted_by_their_text() {
        let edges = ["b->a:80/tcp", "a->b:80/tcp"]
            .map(|e| v1::EdgeInfo {
                edge: e.into(),
                ..Default::default()
            })
            .to_vec();
        let views = edge_views(edges);
        assert_eq!(views[0].edge, "a->b:80/tcp");
    }
}
