//! Events for machines (`--events-log`): every violation, drop, learned edge,
//! quarantine and audited policy change as one JSON line, for log collectors and
//! SIEMs (Fluent Bit, Vector, Splunk forwarders).
//!
//! The schema is `docs/events.schema.json` (version [`SCHEMA_VERSION`]): camelCase
//! fields, a `kind` discriminator, an RFC 3339 UTC `time`. Emitting never blocks:
//! each event goes into a bounded queue to one writer thread; when the queue is
//! full the event is lost and counted ([`totals`]). Without `--events-log`,
//! emitting does nothing.
//!
//! # Layout
//! - this file: the events, their JSON shape and the process-wide sink.
//! - [`writer`]: the writer thread: append mode, reopen on SIGHUP or rotation.

pub mod writer;

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use zonewarden_profiles::event::ReportKind;
use zonewarden_profiles::learned::Sample;
use zonewarden_profiles::{Edge, ZoneName};

use crate::audit::{Action, AuditEntry};

pub use writer::{Destination, EventsLog};

/// The `schemaVersion` of every line; raised only when a field changes meaning or
/// goes away (new optional fields and new kinds keep it).
pub const SCHEMA_VERSION: u32 = 1;

/// One event, as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    pub schema_version: u32,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub node: String,
    #[serde(flatten)]
    pub event: Event,
}

/// What happened; `kind` names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Event {
    /// A monitoring end saw an unapproved connection (allowed).
    Violation(Flow),
    /// A connection was dropped: unapproved in an enforcing zone, quarantined, spoofed.
    Drop(Flow),
    /// A learning zone's connection showed an edge not learned before.
    EdgeLearned(Flow),
    /// A zone or an endpoint was quarantined or released.
    Quarantine(Quarantine),
    /// Any other audited change (approve, reject, mode, import, ...).
    PolicyChange(PolicyChange),
}

/// A logged connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    /// `SRC->DST:PORT/PROTO`, as `zwctl` writes edges.
    pub edge: String,
    pub src_zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_namespace: Option<String>,
    /// `NAMESPACE/NAME` of the source's pod, when the address is a pod of this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_pod: Option<String>,
    pub dst_zone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_pod: Option<String>,
    pub src_address: IpAddr,
    pub src_port: u16,
    pub dst_address: IpAddr,
    pub dst_port: u16,
    pub protocol: String,
    /// Drops only: `unapproved`, `quarantine` or `spoof`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The zone whose rule reported it (violations and drops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
    /// That zone's profile version when it was reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_version: Option<u64>,
}

/// A quarantine set or lifted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantine {
    /// `set` or `lifted`.
    pub action: &'static str,
    /// `zone` or `endpoint`.
    pub scope: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    #[serde(flatten)]
    pub audit: Audited,
}

/// An audited change other than a quarantine.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyChange {
    /// The audit action: `approve`, `reject`, `mode`, `import`, ...
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_after: Option<u64>,
    #[serde(flatten)]
    pub audit: Audited,
}

/// Who changed what, as the audit log has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audited {
    /// The entry's `seq` in the audit log (`zwctl audit log`).
    pub audit_seq: u64,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Counters of the events log, process-wide.
#[derive(Debug, Default)]
pub struct Counters {
    pub written: AtomicU64,
    /// Events lost: the queue was full, or their write failed.
    pub lost: AtomicU64,
    pub write_errors: AtomicU64,
}

/// What `/metrics` shows of the events log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub enabled: bool,
    pub written: u64,
    pub lost: u64,
    pub write_errors: u64,
}

static SINK: OnceLock<EventsLog> = OnceLock::new();

/// Makes `log` the process's events log; a second one is refused.
pub fn install(log: EventsLog) -> Result<(), EventsLog> {
    SINK.set(log)
}

pub fn totals() -> Totals {
    SINK.get().map(EventsLog::totals).unwrap_or_default()
}

/// The events log as `zwctl status` shows it; `None` without `--events-log`.
pub fn status_to_proto() -> Option<zonewarden_proto::v1::EventsLogStatus> {
    let log = SINK.get()?;
    let totals = log.totals();
    Some(zonewarden_proto::v1::EventsLogStatus {
        destination: log.destination().to_string(),
        written: totals.written,
        lost: totals.lost,
        write_errors: totals.write_errors,
    })
}

/// Asks the writer to reopen its file before its next line (SIGHUP).
pub fn reopen() {
    if let Some(log) = SINK.get() {
        log.reopen();
    }
}

fn enabled() -> bool {
    SINK.get().is_some()
}

fn emit(at_unix_ms: i64, event: Event) {
    if let Some(log) = SINK.get() {
        log.send(at_unix_ms, event);
    }
}

/// A logged connection that was reported (a violation or a drop).
pub fn reported(kind: ReportKind, flow: impl FnOnce() -> Flow, at_unix_ms: i64) {
    if !enabled() {
        return;
    }
    let mut flow = flow();
    let event = match kind {
        ReportKind::Violation => Event::Violation(flow),
        ReportKind::Drop | ReportKind::Quarantine | ReportKind::Spoof => {
            flow.reason = Some(match kind {
                ReportKind::Quarantine => "quarantine",
                ReportKind::Spoof => "spoof",
                _ => "unapproved",
            });
            Event::Drop(flow)
        }
    };
    emit(at_unix_ms, event);
}

/// An edge learned for the first time, with the connection that showed it.
pub fn learned(edge: &Edge, sample: &Sample, at_unix_ms: i64) {
    if !enabled() {
        return;
    }
    emit(
        at_unix_ms,
        Event::EdgeLearned(Flow::new(edge, sample.src, sample.src_port, sample.dst)),
    );
}

/// An entry the audit log now holds.
pub fn audited(entry: &AuditEntry) {
    if enabled() {
        emit(entry.at_unix_ms, event_of_audit(entry));
    }
}

/// The event of one audit entry: a quarantine, or a policy change.
pub fn event_of_audit(entry: &AuditEntry) -> Event {
    let zone = entry.zone.clone();
    let namespace = zone.as_deref().and_then(namespace_of);
    let audit = Audited {
        audit_seq: entry.seq,
        user: entry.who.clone(),
        reason: entry.reason.clone(),
    };
    match entry.action {
        Action::Quarantine | Action::Unquarantine => {
            // A zone's quarantine names the zone as its target; an endpoint's, its
            // container id.
            let endpoint = entry.target.is_some() && entry.target != entry.zone;
            Event::Quarantine(Quarantine {
                action: if entry.action == Action::Quarantine {
                    "set"
                } else {
                    "lifted"
                },
                scope: if endpoint { "endpoint" } else { "zone" },
                zone,
                namespace,
                container_id: entry.target.clone().filter(|_| endpoint),
                pod: None,
                addresses: Vec::new(),
                audit,
            })
        }
        action => Event::PolicyChange(PolicyChange {
            action: action.as_str().to_owned(),
            zone,
            namespace,
            target: entry.target.clone(),
            detail: entry.detail.clone(),
            version_before: entry.version_before,
            version_after: entry.version_after,
            audit,
        }),
    }
}

fn namespace_of(zone: &str) -> Option<String> {
    ZoneName::parse_any(zone)
        .ok()
        .and_then(|z| z.namespace().map(str::to_owned))
}

impl Flow {
    /// A flow of `edge` between two addresses; pods, reason and reporter unset.
    pub fn new(edge: &Edge, src: IpAddr, src_port: u16, dst: IpAddr) -> Self {
        Self {
            edge: edge.to_string(),
            src_zone: edge.src.to_string(),
            src_namespace: edge.src.namespace().map(str::to_owned),
            src_pod: None,
            dst_zone: edge.dst.to_string(),
            dst_namespace: edge.dst.namespace().map(str::to_owned),
            dst_pod: None,
            src_address: src,
            src_port,
            dst_address: dst,
            dst_port: edge.port,
            protocol: edge.proto.to_string(),
            reason: None,
            reported_by: None,
            profile_version: None,
        }
    }
}

/// `2026-11-30T15:41:21.123Z` for a time in milliseconds since the epoch.
pub fn rfc3339_utc(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl Counters {
    fn lose(&self, n: u64) {
        self.lost.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
