//! The mapping between the gRPC messages and the model: every field is validated
//! here, and bad input becomes `invalid_argument` naming the field and its value.
//! Enums go through [`zonewarden_proto::model`], the mapping the plugin and zwctl use
//! too; an unspecified or unknown value is refused naming its field.

use ipnet::IpNet;
use std::collections::BTreeMap;
use tonic::Status;
use zonewarden_profiles::event::{FlowVerdict, Report, ReportKind};

use zonewarden_profiles::LastDrop;
use zonewarden_profiles::learned::{Evidence, LearnedEdges};
use zonewarden_profiles::response::{ResponseRules, ViolationsRule};
use zonewarden_profiles::{
    AttachMode, AttachmentKey, Edge, Endpoint, Mode, Policy, Profile, ZoneHints, ZoneKind,
    ZoneName, ZoneSource,
};
use zonewarden_proto::model::{self, EnumError};
use zonewarden_proto::v1;

use crate::audit::Action;
use crate::audit::chain::ProblemKind;
use crate::flows::FlowEvent;
use crate::learning::LearningTotals;
use crate::policy_api::COMPLETENESS_WINDOW;
use crate::registry::import::ZoneImport;
use crate::registry::{AddRequest, ZoneSummary, now_unix_ms};

fn enum_arg<T>(decoded: Result<T, EnumError>) -> Result<T, Status> {
    decoded.map_err(|err| Status::invalid_argument(err.to_string()))
}

fn non_empty(field: &str, value: String) -> Result<String, Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} is empty; the runtime must pass it"
        )));
    }
    Ok(value)
}

fn optional(value: String) -> Option<String> {
    Some(value).filter(|v| !v.is_empty())
}

pub fn key_from_proto(key: Option<v1::AttachmentKey>) -> Result<AttachmentKey, Status> {
    let key = key.ok_or_else(|| Status::invalid_argument("key is missing"))?;
    Ok(AttachmentKey {
        network: non_empty("key.network", key.network)?.into(),
        container_id: non_empty("key.container_id", key.container_id)?.into(),
        ifname: non_empty("key.ifname", key.ifname)?.into(),
    })
}

pub fn hints_from_proto(hints: v1::ZoneHints) -> Result<ZoneHints, Status> {
    let mut model = ZoneHints {
        pod_namespace: optional(hints.pod_namespace),
        pod_name: optional(hints.pod_name),
        pod_annotations: hints.pod_annotations.into_iter().collect(),
        ..ZoneHints::default()
    };
    if !hints.explicit_zone.is_empty() {
        let field = "hints.explicit_source";
        match enum_arg(model::zone_source(field, hints.explicit_source))? {
            ZoneSource::CniArgs => model.cni_args_zone = Some(hints.explicit_zone),
            ZoneSource::Config => model.config_zone = Some(hints.explicit_zone),
            other => {
                return Err(Status::invalid_argument(format!(
                    "{field} {other} is neither cni-args nor config: only these name a zone explicitly"
                )));
            }
        }
    }
    Ok(model)
}

pub fn add_request_from_proto(request: v1::AddEndpointRequest) -> Result<AddRequest, Status> {
    let ips = request
        .ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            ip.parse::<IpNet>().map_err(|err| {
                Status::invalid_argument(format!(
                    "ips[{i}] {ip:?} is not an address in CIDR notation: {err}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let attach_mode = enum_arg(model::attach_mode("attach_mode", request.attach_mode))?;
    if attach_mode == AttachMode::Sidecar {
        return Err(Status::invalid_argument(
            "attach_mode sidecar is registered by zonewarden-enforcer --sidecar itself, never \
             through the plugin API: use routed or chained",
        ));
    }
    let bridge = optional(request.bridge);
    let host_ifname = optional(request.host_ifname);
    let mac = optional(request.mac);
    if let Some(bridge) = &bridge {
        let problem = if attach_mode != AttachMode::Chained {
            Some("a bridge port is only registered in chained mode")
        } else if host_ifname.is_none() {
            Some("a bridge port needs its host_ifname")
        } else if !mac.as_deref().is_some_and(is_mac) {
            Some("a bridge port needs the pod's MAC address (aa:bb:cc:dd:ee:ff)")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Status::invalid_argument(format!(
                "bridge {bridge:?}: {problem}"
            )));
        }
    }
    for (what, name) in [("host_ifname", &host_ifname), ("bridge", &bridge)] {
        if let Some(name) = name
            && !is_ifname(name)
        {
            return Err(Status::invalid_argument(format!(
                "{what} {name:?} is not an interface name (1-15 characters, no '/', ':' or spaces)"
            )));
        }
    }
    Ok(AddRequest {
        key: key_from_proto(request.key)?,
        hints: hints_from_proto(request.hints.unwrap_or_default())?,
        netns: request.netns,
        host_ifname,
        ips,
        mac,
        attach_mode,
        bridge,
    })
}

/// `aa:bb:cc:dd:ee:ff` in lowercase or uppercase hex.
fn is_mac(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A Linux interface name: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
fn is_ifname(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.contains(char::is_whitespace)
}

/// An optional filter: empty means none.
pub fn zone_filter(zone: &str) -> Result<Option<ZoneName>, Status> {
    if zone.is_empty() {
        return Ok(None);
    }
    ZoneName::parse_any(zone)
        .map(Some)
        .map_err(|err| Status::invalid_argument(format!("zone filter: {err}")))
}

pub fn key_to_proto(key: &AttachmentKey) -> v1::AttachmentKey {
    v1::AttachmentKey {
        network: key.network.to_string(),
        container_id: key.container_id.to_string(),
        ifname: key.ifname.to_string(),
    }
}

/// The endpoint's record; its quarantine flags are the listing's to fill in (they
/// live in the registry, not in the record).
pub fn endpoint_to_proto(endpoint: &Endpoint) -> v1::Endpoint {
    v1::Endpoint {
        key: Some(key_to_proto(&endpoint.key)),
        zone: endpoint.zone.to_string(),
        zone_source: v1::ZoneSource::from(endpoint.zone_source).into(),
        netns: endpoint.netns.clone(),
        host_ifname: endpoint.host_ifname.clone().unwrap_or_default(),
        ips: endpoint.ips.iter().map(ToString::to_string).collect(),
        mac: endpoint.mac.clone().unwrap_or_default(),
        node: endpoint.node.clone(),
        pod_namespace: endpoint.pod_namespace.clone().unwrap_or_default(),
        pod_name: endpoint.pod_name.clone().unwrap_or_default(),
        attach_mode: v1::AttachMode::from(endpoint.attach_mode).into(),
        created_unix_ms: endpoint.created_unix_ms,
        bridge: endpoint.bridge.clone().unwrap_or_default(),
        quarantined: false,
        zone_quarantined: false,
        quarantine_reason: String::new(),
    }
}

pub fn zone_to_proto(zone: ZoneSummary) -> v1::Zone {
    v1::Zone {
        name: zone.name.to_string(),
        id: zone.id,
        kind: v1::ZoneKind::from(zone.kind).into(),
        endpoint_count: u32::try_from(zone.members.len()).unwrap_or(u32::MAX),
        members: zone.members,
        cidrs: Vec::new(),
    }
}

/// An operator-defined CIDR zone: no id (it has no chains), no members.
pub fn cidr_zone_to_proto(name: &ZoneName, nets: &[IpNet]) -> v1::Zone {
    v1::Zone {
        name: name.to_string(),
        kind: v1::ZoneKind::from(ZoneKind::Cidr).into(),
        cidrs: nets.iter().map(ToString::to_string).collect(),
        ..v1::Zone::default()
    }
}

/// The zone a request changes or asks about: built-in zones are refused.
pub fn zone_arg(zone: &str) -> Result<ZoneName, Status> {
    ZoneName::parse(zone).map_err(|e| Status::invalid_argument(format!("zone {zone:?}: {e}")))
}

/// Edges in the one edge grammar (`Edge`).
pub fn edges_arg(edges: &[String]) -> Result<Vec<Edge>, Status> {
    edges
        .iter()
        .map(|e| {
            e.parse::<Edge>()
                .map_err(|err| Status::invalid_argument(err.to_string()))
        })
        .collect()
}

pub fn mode_arg(raw: i32) -> Result<Mode, Status> {
    enum_arg(model::mode("mode", raw))
}

/// A verdict filter: absent is every verdict. Reports are never `learn`.
pub fn report_filter(raw: Option<i32>) -> Result<Option<ReportKind>, Status> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw == i32::from(v1::Verdict::Allow) {
        return Err(Status::invalid_argument(
            "verdict allow: approved connections are not reports (see WatchFlows); ask \
             for drop, violation, quarantine or spoof",
        ));
    }
    match enum_arg(model::verdict("verdict", raw))? {
        Some(kind) => Ok(Some(kind)),
        None => Err(Status::invalid_argument(
            "verdict learn: connections a learning zone lets pass are learned edges, not \
             reports (see ListEdges); ask for drop, violation, quarantine or spoof",
        )),
    }
}

/// A verdict filter of flows: absent is every verdict.
pub fn flow_filter(raw: Option<i32>) -> Result<Option<FlowVerdict>, Status> {
    raw.map(|raw| enum_arg(model::flow_verdict("verdict", raw)))
        .transpose()
}

fn evidence_to_proto(ev: &Evidence) -> v1::Evidence {
    v1::Evidence {
        first_seen_unix_ms: ev.first_seen_unix_ms,
        last_seen_unix_ms: ev.last_seen_unix_ms,
        count: ev.count,
        nodes: ev.nodes.iter().cloned().collect(),
        sample: ev.sample.to_string(),
    }
}

/// An edge with its evidence, its status now and its last drop (from `drops`, see
/// [`zonewarden_profiles::edge_status::last_drops`]).
pub fn edge_info(
    edge: &Edge,
    learned: &LearnedEdges,
    policy: &Policy,
    drops: &BTreeMap<&Edge, LastDrop>,
) -> v1::EdgeInfo {
    let evidence = learned.edges.get(edge);
    let approved_in: Vec<String> = policy
        .approved_in(edge)
        .into_iter()
        .map(ToString::to_string)
        .collect();
    v1::EdgeInfo {
        edge: edge.to_string(),
        learned: evidence.is_some(),
        approved: !approved_in.is_empty(),
        evidence: evidence.map(evidence_to_proto),
        approved_in,
        status: v1::EdgeStatus::from(policy.edge_status(edge)).into(),
        last_drop: drops.get(edge).map(|d| v1::EdgeDrop {
            at_unix_ms: d.at_unix_ms,
            profile_version: d.profile_version,
            reported_by: d.reported_by.clone(),
            count: d.count,
        }),
    }
}

/// A profile as the API shows it; `endpoint_count` is the number of its zone's members.
pub fn profile_to_proto(
    profile: &Profile,
    learned: &LearnedEdges,
    endpoint_count: usize,
) -> v1::Profile {
    let c = learned.completeness(&profile.zone, now_unix_ms(), COMPLETENESS_WINDOW);
    v1::Profile {
        zone: profile.zone.to_string(),
        mode: v1::Mode::from(profile.mode).into(),
        quarantined: profile.quarantined,
        version: profile.version,
        approved: profile.approved.iter().map(ToString::to_string).collect(),
        rejected: profile.rejected.iter().map(ToString::to_string).collect(),
        history: profile
            .history
            .iter()
            .map(|h| v1::ProfileChange {
                version: h.version,
                who: h.who.clone(),
                at_unix_ms: h.at_unix_ms,
                what: h.what.clone(),
                comment: h.comment.clone(),
            })
            .collect(),
        completeness: Some(v1::Completeness {
            since_last_new_edge_ms: c.since_last_new_edge_ms.unwrap_or(-1),
            new_in_window: u32::try_from(c.new_in_window).unwrap_or(u32::MAX),
            seen_in_window: u32::try_from(c.seen_in_window).unwrap_or(u32::MAX),
            window_seconds: u32::try_from(COMPLETENESS_WINDOW.as_secs()).unwrap_or(u32::MAX),
        }),
        endpoint_count: u32::try_from(endpoint_count).unwrap_or(u32::MAX),
        response: response_to_proto(&profile.response),
    }
}

pub fn learning_to_proto(totals: &LearningTotals) -> v1::LearningStatus {
    let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    v1::LearningStatus {
        events: totals.nflog.received,
        ingested: totals.ingested,
        dropped_kernel: totals.nflog.dropped_kernel,
        dropped_queue: totals.nflog.dropped_queue,
        dropped_unreadable: totals.nflog.unreadable,
        edges_learned: wide(totals.edges_learned),
        edges_limit: wide(totals.edges_limit),
        edges_evicted: totals.edges_evicted,
        reports_evicted: totals.reports_evicted,
    }
}

pub fn violation_to_proto(report: &Report) -> v1::Violation {
    v1::Violation {
        at_unix_ms: report.at_unix_ms,
        verdict: model::verdict_to_proto(Some(report.kind)).into(),
        edge: report.edge.to_string(),
        src: report.src.to_string(),
        dst: report.dst.to_string(),
        src_port: u32::from(report.src_port),
        node: report.node.clone(),
        reported_by: report.reported_by.clone(),
        profile_version: report.profile_version,
        count: report.count,
        response: report.response.clone().unwrap_or_default(),
    }
}

pub fn response_to_proto(rules: &ResponseRules) -> Option<v1::ResponseRules> {
    (!rules.is_empty()).then(|| v1::ResponseRules {
        violations: rules.violations.map_or(0, |v| v.count),
        within_seconds: rules.violations.map_or(0, |v| v.within_secs),
        new_port: rules.new_port,
    })
}

/// The rules a request asks for, validated (`violations` 0: no such rule).
pub fn response_from_proto(rules: Option<&v1::ResponseRules>) -> Result<ResponseRules, String> {
    let Some(rules) = rules else {
        return Ok(ResponseRules::default());
    };
    let violations = match (rules.violations, rules.within_seconds) {
        (0, 0) => None,
        (0, _) => {
            return Err("a window without a count of violations: give both, or neither".to_owned());
        }
        (n, t) => {
            Some(ViolationsRule::new(u64::from(n), u64::from(t)).map_err(|err| err.to_string())?)
        }
    };
    Ok(ResponseRules {
        violations,
        new_port: rules.new_port,
    })
}

/// One logged connection, as `WatchFlows` streams it.
pub fn flow_to_proto(event: &FlowEvent<'_>) -> v1::Flow {
    v1::Flow {
        at_unix_ms: event.at_unix_ms,
        verdict: model::flow_verdict_to_proto(event.verdict).into(),
        edge: event.edge.to_string(),
        src: event.src.to_string(),
        dst: event.dst.to_string(),
        src_port: u32::from(event.src_port),
        reported_by: event
            .reported_by
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        profile_version: event.profile_version,
        node: event.node.to_owned(),
        src_zone: event.edge.src.to_string(),
        dst_zone: event.edge.dst.to_string(),
        protocol: event.edge.proto.to_string(),
        dst_port: u32::from(event.edge.port),
    }
}

pub fn audit_action_to_proto(action: Action) -> v1::AuditAction {
    match action {
        Action::Approve => v1::AuditAction::Approve,
        Action::Reject => v1::AuditAction::Reject,
        Action::Remove => v1::AuditAction::Remove,
        Action::Import => v1::AuditAction::Import,
        Action::Mode => v1::AuditAction::Mode,
        Action::Quarantine => v1::AuditAction::Quarantine,
        Action::Unquarantine => v1::AuditAction::Unquarantine,
        Action::EndpointAdd => v1::AuditAction::EndpointAdd,
        Action::EndpointDel => v1::AuditAction::EndpointDel,
        Action::Reverted => v1::AuditAction::Reverted,
        Action::TableRestored => v1::AuditAction::TableRestored,
        Action::StoreAccepted => v1::AuditAction::StoreAccepted,
        Action::ChainRestart => v1::AuditAction::ChainRestart,
        Action::ProfileDelete => v1::AuditAction::ProfileDelete,
        Action::Response => v1::AuditAction::Response,
        Action::StoreMigrated => v1::AuditAction::StoreMigrated,
    }
}

pub fn problem_kind_to_proto(kind: ProblemKind) -> v1::AuditProblemKind {
    match kind {
        ProblemKind::Unreadable => v1::AuditProblemKind::Unreadable,
        ProblemKind::Truncated => v1::AuditProblemKind::Truncated,
        ProblemKind::Edited => v1::AuditProblemKind::Edited,
        ProblemKind::Dropped => v1::AuditProblemKind::Dropped,
        ProblemKind::Reordered => v1::AuditProblemKind::Reordered,
        ProblemKind::Restarted => v1::AuditProblemKind::Restarted,
    }
}

/// What an import changes in one zone; both modes unspecified when the mode stays.
pub fn zone_import_to_proto(z: &ZoneImport) -> v1::ZoneImport {
    let (mode_before, mode_after) = z.delta.mode.map_or((0, 0), |(before, after)| {
        (v1::Mode::from(before).into(), v1::Mode::from(after).into())
    });
    v1::ZoneImport {
        zone: z.zone.to_string(),
        added: z.delta.added.iter().map(ToString::to_string).collect(),
        removed: z.delta.removed.iter().map(ToString::to_string).collect(),
        mode_before,
        mode_after,
        version_before: z.version_before,
        version_after: z.version_after,
        response_before: z
            .delta
            .response
            .map(|(before, _)| before.to_string())
            .unwrap_or_default(),
        response_after: z
            .delta
            .response
            .map(|(_, after)| after.to_string())
            .unwrap_or_default(),
    }
}

/// The store's health as `zwctl status` shows it.
pub fn store_status_to_proto(health: &crate::store::StoreHealth) -> v1::StoreStatus {
    let kind = match health.kind {
        crate::store::StoreKind::Local => v1::StoreKind::Local,
        crate::store::StoreKind::Etcd => v1::StoreKind::Etcd,
    };
    v1::StoreStatus {
        kind: kind.into(),
        up: health.up,
        detail: health.detail.clone(),
        revision: health.revision,
        watch_lag: health.watch_lag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(ips: &[&str], source: v1::ZoneSource) -> v1::AddEndpointRequest {
        v1::AddEndpointRequest {
            key: Some(v1::AttachmentKey {
                network: "n".into(),
                container_id: "c".into(),
                ifname: "eth0".into(),
            }),
            hints: Some(v1::ZoneHints {
                explicit_zone: "shop/web".into(),
                explicit_source: source.into(),
                ..Default::default()
            }),
            ips: ips.iter().map(|s| (*s).to_owned()).collect(),
            attach_mode: v1::AttachMode::Routed.into(),
            ..Default::default()
        }
    }

    #[test]
    fn explicit_zones_go_where_their_source_says() {
        let request =
            add_request_from_proto(add(&["10.0.0.5/24"], v1::ZoneSource::CniArgs)).unwrap();
        assert_eq!(request.hints.cni_args_zone.as_deref(), Some("shop/web"));
        let request = add_request_from_proto(add(&[], v1::ZoneSource::Config)).unwrap();
        assert_eq!(request.hints.config_zone.as_deref(), Some("shop/web"));
        for (source, needle) in [
            (
                v1::ZoneSource::Workload,
                "hints.explicit_source workload is neither cni-args nor config",
            ),
            (
                v1::ZoneSource::Unspecified,
                "hints.explicit_source is unspecified",
            ),
        ] {
            let err = add_request_from_proto(add(&[], source)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with(needle), "{err}");
        }
        let mut request = add(&[], v1::ZoneSource::Config);
        request.hints.as_mut().unwrap().explicit_zone.clear();
        request.hints.as_mut().unwrap().explicit_source = 0;
        let request = add_request_from_proto(request).unwrap();
        assert_eq!(
            request.hints,
            ZoneHints::default(),
            "no explicit zone, no source"
        );
    }

    #[test]
    fn attach_modes_unspecified_or_unknown_are_refused_naming_the_field() {
        for (raw, needle) in [
            (
                0,
                "attach_mode is unspecified: set it to one of routed, chained",
            ),
            (7, "attach_mode has the unknown value 7"),
        ] {
            let mut request = add(&[], v1::ZoneSource::Config);
            request.attach_mode = raw;
            let err = add_request_from_proto(request).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with(needle), "{err}");
        }
        let mut request = add(&[], v1::ZoneSource::Config);
        request.attach_mode = v1::AttachMode::Chained.into();
        assert_eq!(
            add_request_from_proto(request).unwrap().attach_mode,
            AttachMode::Chained
        );
        // Only the sidecar registers its own pod: the plugin API never takes it.
        let mut request = add(&[], v1::ZoneSource::Config);
        request.attach_mode = v1::AttachMode::Sidecar.into();
        let err = add_request_from_proto(request).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("--sidecar itself"), "{err}");
    }

    #[test]
    fn endpoints_carry_their_source_and_mode_as_enums() {
        let mut endpoint = crate::test_support::endpoint("c1", "shop/web", &["10.0.0.5/32"]);
        endpoint.zone_source = ZoneSource::CniArgs;
        endpoint.attach_mode = AttachMode::Chained;
        let proto = endpoint_to_proto(&endpoint);
        assert_eq!(proto.zone_source(), v1::ZoneSource::CniArgs);
        assert_eq!(proto.attach_mode(), v1::AttachMode::Chained);
        let zone = cidr_zone_to_proto(
            &ZoneName::parse("corp-dns").unwrap(),
            &["10.1.2.0/24".parse().unwrap()],
        );
        assert_eq!((zone.kind(), zone.id), (v1::ZoneKind::Cidr, 0));
        assert_eq!(zone.cidrs, ["10.1.2.0/24"]);
    }

    #[test]
    fn response_rules_from_the_api_are_validated() {
        let rules = |violations, within_seconds, new_port| v1::ResponseRules {
            violations,
            within_seconds,
            new_port,
        };
        assert_eq!(response_from_proto(None), Ok(ResponseRules::default()));
        let both = response_from_proto(Some(&rules(5, 60, true))).unwrap();
        assert_eq!(both.violations, ViolationsRule::new(5, 60).ok());
        assert!(both.new_port);
        assert_eq!(response_to_proto(&both), Some(rules(5, 60, true)));
        assert_eq!(response_to_proto(&ResponseRules::default()), None);
        assert!(
            response_from_proto(Some(&rules(0, 60, false)))
                .unwrap_err()
                .contains("give both, or neither")
        );
        assert!(
            response_from_proto(Some(&rules(5, 0, false)))
                .unwrap_err()
                .contains("at least 1 second")
        );
        assert!(
            response_from_proto(Some(&rules(5, 90_000, false)))
                .unwrap_err()
                .contains("one day")
        );
        assert!(
            response_from_proto(Some(&rules(20_000, 60, false)))
                .unwrap_err()
                .contains("at most 10000")
        );
    }

    /// zwctl prints an audit enum as the word of its name; audit.log holds the same.
    #[test]
    fn audit_enums_carry_the_words_of_the_log() {
        use zonewarden_proto::model::name_word;
        let actions = [
            Action::Approve,
            Action::Reject,
            Action::Remove,
            Action::Import,
            Action::Mode,
            Action::Quarantine,
            Action::Unquarantine,
            Action::EndpointAdd,
            Action::EndpointDel,
            Action::Reverted,
            Action::TableRestored,
            Action::StoreAccepted,
            Action::ChainRestart,
            Action::ProfileDelete,
            Action::Response,
            Action::StoreMigrated,
        ];
        let mut seen = std::collections::BTreeSet::new();
        for action in actions {
            let proto = audit_action_to_proto(action);
            assert!(seen.insert(proto), "{action:?} shares {proto:?}");
            assert_eq!(
                name_word(proto.as_str_name(), "AUDIT_ACTION_"),
                action.as_str()
            );
        }
        assert_eq!(seen.len(), 16, "every action but UNSPECIFIED");
        let kinds = [
            ProblemKind::Unreadable,
            ProblemKind::Truncated,
            ProblemKind::Edited,
            ProblemKind::Dropped,
            ProblemKind::Reordered,
            ProblemKind::Restarted,
        ];
        for kind in kinds {
            let name = problem_kind_to_proto(kind).as_str_name();
            assert_eq!(name_word(name, "AUDIT_PROBLEM_KIND_"), kind.as_str());
        }
        let unwritten = v1::AuditProblemKind::Unwritten.as_str_name();
        assert_eq!(name_word(unwritten, "AUDIT_PROBLEM_KIND_"), "unwritten");
    }

    #[test]
    fn modes_and_verdicts_are_refused_unspecified_or_unknown() {
        assert_eq!(mode_arg(v1::Mode::Monitor.into()).unwrap(), Mode::Monitor);
        for raw in [0, 4, -2] {
            let err = mode_arg(raw).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with("mode "), "{err}");
        }
        assert_eq!(report_filter(None).unwrap(), None);
        assert_eq!(
            report_filter(Some(v1::Verdict::Spoof.into())).unwrap(),
            Some(ReportKind::Spoof)
        );
        for raw in [0, 1, 42] {
            let err = report_filter(Some(raw)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().starts_with("verdict "), "{err}");
        }
        assert_eq!(flow_filter(None).unwrap(), None);
        assert_eq!(
            flow_filter(Some(v1::Verdict::Learn.into())).unwrap(),
            Some(FlowVerdict::Learn)
        );
        assert_eq!(
            flow_filter(Some(v1::Verdict::Allow.into())).unwrap(),
            Some(FlowVerdict::Allow)
        );
        let err = report_filter(Some(v1::Verdict::Allow.into())).unwrap_err();
        assert!(err.message().starts_with("verdict allow: "), "{err}");
        assert!(flow_filter(Some(0)).is_err());
    }

    #[test]
    fn bad_input_names_the_field_and_value() {
        let err = add_request_from_proto(add(
            &["10.0.0.5/24", "10.0.0.300/24"],
            v1::ZoneSource::Config,
        ))
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().starts_with("ips[1] \"10.0.0.300/24\""),
            "{err}"
        );
        let mut request = add(&[], v1::ZoneSource::Config);
        request.key.as_mut().unwrap().container_id.clear();
        let err = add_request_from_proto(request).unwrap_err();
        assert!(err.message().contains("key.container_id is empty"), "{err}");
    }
}
