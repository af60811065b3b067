//! The policy half of the gRPC service: edges, profiles, approvals, modes,
//! quarantine and reports. Who changed a profile is taken from the unix socket's peer
//! credentials, never from the request.

use std::collections::BTreeSet;
use std::time::Duration;

use tonic::{Request, Status};
use zonewarden_profiles::diff::profile_diff;
use zonewarden_profiles::learned::{Evidence, LearnedEdges};
use zonewarden_profiles::profile::Actor;
use zonewarden_profiles::{Edge, Mode, Policy, Profile, ZoneName};
use zonewarden_proto::v1;

use crate::learning::Learning;
use crate::registry::{EndpointRegistry, now_unix_ms};

/// The window learning completeness is measured over.
pub const COMPLETENESS_WINDOW: Duration = Duration::from_secs(600);

pub fn zone_arg(zone: &str) -> Result<ZoneName, Status> {
    ZoneName::parse(zone).map_err(|e| Status::invalid_argument(format!("zone {zone:?}: {e}")))
}

pub fn edges_arg(edges: &[String]) -> Result<Vec<Edge>, Status> {
    edges
        .iter()
        .map(|e| {
            e.parse::<Edge>()
                .map_err(|err| Status::invalid_argument(err.to_string()))
        })
        .collect()
}

/// The user behind the request, from the socket's peer credentials.
pub fn who<T>(request: &Request<T>) -> String {
    let uid = request
        .extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map(|cred| cred.uid());
    match uid {
        Some(uid) => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |u| u.name),
        None => "unknown".to_owned(),
    }
}

pub fn actor<T>(request: &Request<T>, comment: &str) -> Actor {
    Actor {
        who: who(request),
        at_unix_ms: now_unix_ms(),
        comment: comment.to_owned(),
    }
}

fn evidence_to_proto(ev: &Evidence) -> v1::Evidence {
    let s = &ev.sample;
    v1::Evidence {
        first_seen_unix_ms: ev.first_seen_unix_ms,
        last_seen_unix_ms: ev.last_seen_unix_ms,
        count: ev.count,
        nodes: ev.nodes.iter().cloned().collect(),
        sample: s.to_string(),
    }
}

pub fn edge_info(edge: &Edge, learned: &LearnedEdges, policy: &Policy) -> v1::EdgeInfo {
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
        mode: profile.mode.to_string(),
        quarantined: profile.quarantined,
        version: profile.version,
        approved: profile.approved.iter().map(ToString::to_string).collect(),
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
    }
}

/// Every edge to show: learned and approved, touching `zone` when given.
pub fn list_edges(
    req: &v1::ListEdgesRequest,
    learning: &Learning,
    registry: &EndpointRegistry,
) -> Result<Vec<v1::EdgeInfo>, Status> {
    let zone = if req.zone.is_empty() {
        None
    } else {
        Some(ZoneName::parse_any(&req.zone).map_err(|e| Status::invalid_argument(e.to_string()))?)
    };
    let snapshot = registry.snapshot();
    let wanted = |e: &&Edge| zone.as_ref().is_none_or(|z| e.touches(z));
    Ok(learning.with_learned(|learned| {
        let mut edges: BTreeSet<&Edge> = learned.edges.keys().filter(wanted).collect();
        if !req.learned_only {
            edges.extend(snapshot.policy.approved_edges().into_iter().filter(wanted));
        }
        edges
            .into_iter()
            .map(|e| edge_info(e, learned, &snapshot.policy))
            .filter(|info| {
                (!req.learned_only || info.learned) && (!req.approved_only || info.approved)
            })
            .collect()
    }))
}

pub fn diff(
    zone: &ZoneName,
    learning: &Learning,
    registry: &EndpointRegistry,
) -> v1::DiffProfileResponse {
    let learned = learning.learned();
    let policy = registry.snapshot().policy.clone();
    let d = profile_diff(zone, &learned, &policy);
    let infos = |edges: &[Edge]| {
        edges
            .iter()
            .map(|e| edge_info(e, &learned, &policy))
            .collect()
    };
    v1::DiffProfileResponse {
        unapproved: infos(&d.unapproved),
        approved_seen: infos(&d.approved_seen),
        approved_unseen: infos(&d.approved_unseen),
    }
}

/// The learned, unapproved edges of a zone (what "approve --all" approves).
pub fn unapproved(zone: &ZoneName, learning: &Learning, registry: &EndpointRegistry) -> Vec<Edge> {
    profile_diff(zone, &learning.learned(), &registry.snapshot().policy).unapproved
}

pub fn mode_arg(mode: &str) -> Result<Mode, Status> {
    mode.parse().map_err(Status::invalid_argument)
}
