//! The policy half of the gRPC service: edges, profiles, approvals, modes,
//! quarantine and reports. Who changed a profile is taken from the unix socket's peer
//! credentials, never from the request.

use std::collections::BTreeSet;
use std::time::Duration;

use tonic::{Request, Status};
use zonewarden_profiles::diff::profile_diff;
use zonewarden_profiles::edge_status::last_drops;
use zonewarden_profiles::profile::Actor;
use zonewarden_profiles::{Edge, ZoneName};
use zonewarden_proto::v1;

use crate::convert::edge_info;
use crate::learning::Learning;
use crate::registry::{EndpointRegistry, now_unix_ms};

/// The window learning completeness is measured over.
pub const COMPLETENESS_WINDOW: Duration = Duration::from_secs(600);

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
    let reports = learning.reports();
    let drops = last_drops(&reports);
    let existing = snapshot.existing_zones();
    let wanted = |e: &&Edge| zone.as_ref().is_none_or(|z| e.touches(z));
    Ok(learning.with_learned(|learned| {
        let mut edges: BTreeSet<&Edge> = learned.edges.keys().filter(wanted).collect();
        if !req.learned_only {
            edges.extend(snapshot.policy.approved_edges().into_iter().filter(wanted));
            // Dropped edges are never learned: the recent drops name them, while both
            // their zones exist.
            edges.extend(
                drops
                    .keys()
                    .copied()
                    .filter(wanted)
                    .filter(|e| existing.contains(&e.src) && existing.contains(&e.dst)),
            );
        }
        edges
            .into_iter()
            .map(|e| edge_info(e, learned, &snapshot.policy, &drops))
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
    let reports = learning.reports();
    let drops = last_drops(&reports);
    let policy = registry.snapshot().policy.clone();
    let d = profile_diff(zone, &learned, &policy);
    let infos = |edges: &[Edge]| {
        edges
            .iter()
            .map(|e| edge_info(e, &learned, &policy, &drops))
            .collect()
    };
    v1::DiffProfileResponse {
        unapproved: infos(&d.unapproved),
        approved_seen: infos(&d.approved_seen),
        approved_unseen: infos(&d.approved_unseen),
        rejected_seen: infos(&d.rejected_seen),
    }
}

/// The learned edges of a zone that no profile approves or rejects (what
/// "approve --all" approves).
pub fn unapproved(zone: &ZoneName, learning: &Learning, registry: &EndpointRegistry) -> Vec<Edge> {
    profile_diff(zone, &learning.learned(), &registry.snapshot().policy).unapproved
}
