//! An edge's status is the present, its drops are history: what the table does NOW
//! with a new connection over the edge ([`EdgeStatus`], from the policy in force), and
//! the last time it was dropped ([`LastDrop`], from the reports), kept apart so that an
//! edge dropped once and approved since reads "approved", never "dropped".
//!
//! Quarantine is a state of a zone or an endpoint, not of an edge: a quarantined zone's
//! approved edges stay approved (the zone shows the quarantine), and the connections
//! quarantine drops are reports of their own kind, never an edge's last drop.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::edge::Edge;
use crate::event::{ReportKind, Reports};
use crate::policy::Policy;
use crate::profile::Mode;
use crate::zone::ZoneName;

/// What the table does now with a new connection over an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeStatus {
    /// A profile of either end approves it: it passes.
    Approved,
    /// Seen, approved by no profile, and no end enforces: it passes (reported as a
    /// violation where an end monitors).
    Observed,
    /// Approved by no profile and an end enforces: it is dropped.
    Dropped,
}

impl EdgeStatus {
    pub const ALL: [EdgeStatus; 3] = [Self::Approved, Self::Observed, Self::Dropped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Observed => "observed",
            Self::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for EdgeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Policy {
    /// What the table does now with a new connection over `edge`, whatever happened
    /// before and whatever is quarantined (see the module doc). Agrees with
    /// [`Policy::verdict`] wherever nothing is quarantined.
    pub fn edge_status(&self, edge: &Edge) -> EdgeStatus {
        if self.approved(edge) {
            return EdgeStatus::Approved;
        }
        // The node's own probes of its pods pass without approval.
        let probe = edge.src == ZoneName::host() && self.settings.allow_host_probes;
        let enforced = [&edge.src, &edge.dst]
            .into_iter()
            .any(|zone| self.mode(zone) == Mode::Enforce);
        if enforced && !probe {
            EdgeStatus::Dropped
        } else {
            EdgeStatus::Observed
        }
    }
}

/// The newest drop of an edge by an enforcing zone (quarantine and spoofing drops are
/// not an edge's: see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastDrop {
    pub at_unix_ms: i64,
    /// The version of the reporting zone's profile in force then.
    pub profile_version: u64,
    /// The zone whose rule dropped it.
    pub reported_by: String,
    /// Drops folded into that report.
    pub count: u64,
}

/// The newest drop of every edge among `reports`.
pub fn last_drops(reports: &Reports) -> BTreeMap<&Edge, LastDrop> {
    let mut drops = BTreeMap::new();
    for report in reports.newest().filter(|r| r.kind == ReportKind::Drop) {
        drops.entry(&report.edge).or_insert_with(|| LastDrop {
            at_unix_ms: report.at_unix_ms,
            profile_version: report.profile_version,
            reported_by: report.reported_by.clone(),
            count: report.count,
        });
    }
    drops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Report;
    use crate::policy::{End, Verdict};
    use crate::profile::Profile;

    fn zone(name: &str) -> ZoneName {
        ZoneName::parse_any(name).unwrap()
    }

    fn edge(text: &str) -> Edge {
        text.parse().unwrap()
    }

    fn policy(db_mode: Mode, approved: &[&str], quarantined: bool) -> Policy {
        let mut db = Profile::new(zone("shop/db"));
        db.mode = db_mode;
        db.quarantined = quarantined;
        db.approved = approved.iter().map(|e| edge(e)).collect();
        let mut policy = Policy::default();
        policy.profiles.insert(db.zone.clone(), db);
        policy
    }

    #[test]
    fn the_status_is_what_the_policy_does_now() {
        let web_db = edge("shop/web->shop/db:5432/tcp");
        for (mode, approved, want) in [
            (Mode::Learn, false, EdgeStatus::Observed),
            (Mode::Monitor, false, EdgeStatus::Observed),
            (Mode::Enforce, false, EdgeStatus::Dropped),
            (Mode::Enforce, true, EdgeStatus::Approved),
            (Mode::Learn, true, EdgeStatus::Approved),
        ] {
            let approved: &[&str] = if approved {
                &["shop/web->shop/db:5432/tcp"]
            } else {
                &[]
            };
            let p = policy(mode, approved, false);
            assert_eq!(p.edge_status(&web_db), want, "{mode:?} {approved:?}");
            // The oracle agrees where nothing is quarantined.
            let verdict = p.verdict(
                End {
                    zone: &web_db.src,
                    quarantined: false,
                },
                End {
                    zone: &web_db.dst,
                    quarantined: false,
                },
                web_db.proto,
                web_db.port,
            );
            assert_eq!(verdict == Verdict::Drop, want == EdgeStatus::Dropped);
        }
        // Host probes pass an enforcing zone without approval.
        let p = policy(Mode::Enforce, &[], false);
        assert_eq!(
            p.edge_status(&edge("host->shop/db:5432/tcp")),
            EdgeStatus::Observed
        );
    }

    #[test]
    fn quarantine_never_changes_an_edges_status() {
        let approved = policy(Mode::Enforce, &["shop/web->shop/db:5432/tcp"], true);
        assert_eq!(
            approved.edge_status(&edge("shop/web->shop/db:5432/tcp")),
            EdgeStatus::Approved
        );
        let learning = policy(Mode::Learn, &[], true);
        assert_eq!(
            learning.edge_status(&edge("shop/web->shop/db:22/tcp")),
            EdgeStatus::Observed
        );
    }

    #[test]
    fn the_last_drop_is_the_newest_drop_report_and_only_a_drop() {
        let mut reports = Reports::new(10);
        let report = |kind, at, version| Report {
            at_unix_ms: at,
            kind,
            edge: edge("shop/web->shop/db:5432/tcp"),
            src: "10.0.0.1".parse().unwrap(),
            src_port: 1,
            dst: "10.0.0.2".parse().unwrap(),
            node: "n".into(),
            reported_by: "shop/db".into(),
            profile_version: version,
            count: 1,
            response: None,
        };
        reports.push(report(ReportKind::Drop, 5, 2));
        reports.push(report(ReportKind::Drop, 7, 3));
        reports.push(report(ReportKind::Quarantine, 9, 4));
        reports.push(report(ReportKind::Violation, 11, 5));
        let drops = last_drops(&reports);
        let last = &drops[&edge("shop/web->shop/db:5432/tcp")];
        assert_eq!((last.at_unix_ms, last.profile_version), (7, 3));
        assert_eq!(last.reported_by, "shop/db");
        assert_eq!(
            EdgeStatus::ALL.map(EdgeStatus::as_str),
            ["approved", "observed", "dropped"]
        );
    }
}
