//! Audit records of what the gRPC service changed: who asked, why, and what it did.

use zonewarden_profiles::{Endpoint, Profile};

use super::entry::{Action, AuditRecord};
use super::log::AuditLog;
use crate::registry::now_unix_ms;

/// Who asked for a change (peer credentials) and why (the request's comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub who: String,
    pub reason: String,
}

impl Note {
    pub fn new(who: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            who: who.into(),
            reason: reason.into(),
        }
    }
}

impl From<&zonewarden_profiles::profile::Actor> for Note {
    fn from(actor: &zonewarden_profiles::profile::Actor) -> Self {
        Self::new(actor.who.clone(), actor.comment.clone())
    }
}

/// How a profile change is recorded: who asked and why, what the log calls it, and
/// what it named (edges, a mode, a zone). The registry writes the entry as part of the
/// change, before the kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeNote {
    pub note: Note,
    pub action: Action,
    pub target: Option<String>,
}

impl ChangeNote {
    pub fn new(note: Note, action: Action, target: Option<String>) -> Self {
        Self {
            note,
            action,
            target,
        }
    }
}

/// The entry saying that the change of `record` never took effect: the kernel refused
/// it (`why`), and the store was put back.
pub fn reverted(record: &AuditRecord, why: &str) -> AuditRecord {
    AuditRecord {
        at_unix_ms: now_unix_ms(),
        who: record.who.clone(),
        action: Action::Reverted,
        zone: record.zone.clone(),
        target: record.target.clone(),
        detail: format!("{} not applied: {why}", record.action),
        version_before: record.version_after,
        version_after: record.version_before,
        reason: record.reason.clone(),
    }
}

/// A change of `profile` that bumped its version once (`changed > 0`); the detail
/// is the profile history's own words ("mode learn -> enforce").
pub fn profile_change(
    note: &Note,
    action: Action,
    profile: &Profile,
    target: Option<String>,
) -> AuditRecord {
    AuditRecord {
        at_unix_ms: now_unix_ms(),
        who: note.who.clone(),
        action,
        zone: Some(profile.zone.to_string()),
        target,
        detail: profile
            .history
            .last()
            .map(|h| h.what.clone())
            .unwrap_or_default(),
        version_before: Some(profile.version.saturating_sub(1)),
        version_after: Some(profile.version),
        reason: Some(note.reason.clone()),
    }
}

/// An endpoint added, removed or quarantined; `version` is its zone's profile
/// version in force (unchanged by the action).
pub fn endpoint(
    note: &Note,
    action: Action,
    ep: &Endpoint,
    version: u64,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        at_unix_ms: now_unix_ms(),
        who: note.who.clone(),
        action,
        zone: Some(ep.zone.to_string()),
        target: Some(ep.key.container_id.to_string()),
        detail,
        version_before: Some(version),
        version_after: Some(version),
        reason: Some(note.reason.clone()),
    }
}

/// One zone of an import that changed it (`ImportProfiles`, one entry per zone).
pub fn import(note: &Note, zone: &str, versions: (u64, u64), detail: String) -> AuditRecord {
    AuditRecord {
        at_unix_ms: now_unix_ms(),
        who: note.who.clone(),
        action: Action::Import,
        zone: Some(zone.to_owned()),
        target: Some(zone.to_owned()),
        detail,
        version_before: Some(versions.0),
        version_after: Some(versions.1),
        reason: Some(note.reason.clone()),
    }
}

/// How many edges an import entry names before it only counts the rest.
pub const EDGES_NAMED: usize = 5;

/// `added 2 edge(s): a->b:80/tcp, a->c:53/udp`; past [`EDGES_NAMED`] edges, the
/// first ones and `and N more`.
pub fn named_edges(verb: &str, edges: &[impl std::fmt::Display]) -> String {
    let shown = edges
        .iter()
        .take(EDGES_NAMED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    match edges.len().saturating_sub(EDGES_NAMED) {
        0 => format!("{verb} {} edge(s): {shown}", edges.len()),
        more => format!("{verb} {} edge(s): {shown} and {more} more", edges.len()),
    }
}

/// One endpoint quarantined or released; `profile` is its zone's, when known.
pub fn endpoint_quarantine(
    note: &Note,
    on: bool,
    container_id: &str,
    profile: Option<&Profile>,
) -> AuditRecord {
    AuditRecord {
        at_unix_ms: now_unix_ms(),
        who: note.who.clone(),
        action: if on {
            Action::Quarantine
        } else {
            Action::Unquarantine
        },
        zone: profile.map(|p| p.zone.to_string()),
        target: Some(container_id.to_owned()),
        detail: if on {
            "endpoint quarantined".into()
        } else {
            "endpoint quarantine lifted".into()
        },
        version_before: profile.map(|p| p.version),
        version_after: profile.map(|p| p.version),
        reason: Some(note.reason.clone()),
    }
}

/// `network podnet, ifname eth0, pod shop/web-1, 10.0.0.5/24`.
pub fn endpoint_detail(ep: &Endpoint) -> String {
    let mut parts = vec![
        format!("network {}", ep.key.network),
        format!("ifname {}", ep.key.ifname),
    ];
    if let Some(pod) = &ep.pod_name {
        match &ep.pod_namespace {
            Some(ns) => parts.push(format!("pod {ns}/{pod}")),
            None => parts.push(format!("pod {pod}")),
        }
    }
    parts.extend(ep.ips.iter().map(ToString::to_string));
    parts.join(", ")
}

/// Comma-separated edges, for `target`.
pub fn edges_target<T: std::fmt::Display>(edges: &[T]) -> Option<String> {
    (!edges.is_empty()).then(|| {
        edges
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

impl AuditLog {
    /// Records an endpoint added or removed, with its zone's profile version in force.
    pub async fn endpoint_changed(
        &self,
        note: &Note,
        action: Action,
        ep: &Endpoint,
        profile_version: u64,
    ) {
        self.append(endpoint(
            note,
            action,
            ep,
            profile_version,
            endpoint_detail(ep),
        ))
        .await;
    }

    /// Records a profile change when it changed something.
    pub async fn profile_changed(
        &self,
        note: &Note,
        action: Action,
        profile: &Profile,
        changed: usize,
        target: Option<String>,
    ) {
        if changed > 0 {
            self.append(profile_change(note, action, profile, target))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_entry_names_its_edges_up_to_a_bound() {
        let edges: Vec<String> = (1..=7).map(|p| format!("a->b:{p}/tcp")).collect();
        assert_eq!(
            named_edges("added", &edges[..1]),
            "added 1 edge(s): a->b:1/tcp"
        );
        assert_eq!(
            named_edges("removed", &edges),
            "removed 7 edge(s): a->b:1/tcp, a->b:2/tcp, a->b:3/tcp, a->b:4/tcp, a->b:5/tcp and 2 more"
        );
    }
}
