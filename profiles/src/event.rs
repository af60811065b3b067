//! Reported connections: drops, monitor violations, quarantine and spoofing, each
//! naming the zones, the edge and the profile version in force. Bounded: the oldest
//! entry goes first, and a repeat of the newest entries is folded into a count.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::edge::Edge;

/// What the data plane did and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// Unapproved, and an enforcing end dropped it.
    Drop,
    /// Unapproved, allowed because no end enforces, reported by a monitoring end.
    Violation,
    /// An end is quarantined: dropped.
    Quarantine,
    /// The source address is not the pod's own: dropped.
    Spoof,
}

impl ReportKind {
    pub const ALL: [ReportKind; 4] = [
        ReportKind::Drop,
        ReportKind::Violation,
        ReportKind::Quarantine,
        ReportKind::Spoof,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Violation => "violation",
            Self::Quarantine => "quarantine",
            Self::Spoof => "spoof",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "drop" => Self::Drop,
            "violation" => Self::Violation,
            "quarantine" => Self::Quarantine,
            "spoof" => Self::Spoof,
            _ => return None,
        })
    }
}

/// What the data plane did with one connection that `zwctl flows watch` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowVerdict {
    /// Its edge is approved: passed without a report.
    Allow,
    /// Not approved; every end learns: passed and its edge recorded.
    Learn,
    /// Reported by a rule of the table.
    Reported(ReportKind),
}

impl FlowVerdict {
    pub const ALL: [FlowVerdict; 6] = [
        FlowVerdict::Allow,
        FlowVerdict::Learn,
        FlowVerdict::Reported(ReportKind::Violation),
        FlowVerdict::Reported(ReportKind::Drop),
        FlowVerdict::Reported(ReportKind::Quarantine),
        FlowVerdict::Reported(ReportKind::Spoof),
    ];

    /// A logged connection: `None` is one a learning zone let pass.
    pub fn logged(report: Option<ReportKind>) -> Self {
        report.map_or(Self::Learn, Self::Reported)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Learn => "learn",
            Self::Reported(kind) => kind.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub at_unix_ms: i64,
    pub kind: ReportKind,
    pub edge: Edge,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub node: String,
    /// The zone whose rule reported it (empty for quarantine and spoofing).
    pub reported_by: String,
    pub profile_version: u64,
    pub count: u64,
    /// The automatic response rule this report made quarantine its source
    /// (`response:shop/api:violations`); such a report is never folded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// The newest reports, bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reports {
    pub limit: usize,
    pub entries: VecDeque<Report>,
}

/// How many of the newest entries a repeat is folded into.
const FOLD_WINDOW: usize = 32;

impl Reports {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            entries: VecDeque::new(),
        }
    }

    /// Adds a report, folding it into a recent one with the same kind, edge and
    /// version; returns true when the oldest report was forgotten to make room.
    pub fn push(&mut self, report: Report) -> bool {
        let recent = self.entries.iter_mut().rev().take(FOLD_WINDOW).find(|r| {
            r.kind == report.kind
                && r.response.is_none()
                && report.response.is_none()
                && r.edge == report.edge
                && r.profile_version == report.profile_version
        });
        if let Some(r) = recent {
            r.count += report.count;
            r.at_unix_ms = r.at_unix_ms.max(report.at_unix_ms);
            r.src = report.src;
            r.src_port = report.src_port;
            r.dst = report.dst;
            return false;
        }
        let mut forgot = false;
        while self.entries.len() >= self.limit && self.entries.pop_front().is_some() {
            forgot = true;
        }
        self.entries.push_back(report);
        forgot
    }

    /// The newest first.
    pub fn newest(&self) -> impl Iterator<Item = &Report> {
        self.entries.iter().rev()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(port: u16, version: u64) -> Report {
        Report {
            at_unix_ms: 1,
            kind: ReportKind::Drop,
            edge: format!("a->b:{port}/tcp").parse().unwrap(),
            src: "10.0.0.1".parse().unwrap(),
            src_port: 1000,
            dst: "10.0.0.2".parse().unwrap(),
            node: "n".into(),
            reported_by: "b".into(),
            profile_version: version,
            count: 1,
            response: None,
        }
    }

    #[test]
    fn folds_repeats_and_stays_bounded() {
        let mut r = Reports::new(2);
        r.push(report(80, 1));
        r.push(report(80, 1));
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[0].count, 2);
        assert!(!r.push(report(80, 2)));
        assert!(r.push(report(81, 2)), "the oldest goes to make room");
        assert_eq!(r.entries.len(), 2, "bounded");
        assert_eq!(r.newest().next().unwrap().edge.port, 81);
    }

    #[test]
    fn a_report_that_fired_a_response_stands_alone() {
        let mut r = Reports::new(10);
        r.push(report(80, 1));
        let mut fired = report(80, 1);
        fired.response = Some("response:b:violations".into());
        r.push(fired);
        r.push(report(80, 1));
        assert_eq!(r.entries.len(), 2, "the marked one is not folded in");
        assert_eq!(r.entries[0].count, 2);
        assert_eq!(r.entries[1].count, 1);
        assert!(r.entries[1].response.is_some());
    }
}
