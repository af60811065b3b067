//! Exported profiles: the YAML documents operators keep in git and import again.
//!
//! One document per zone, in a multi-document stream (`---` before each):
//!
//! ```yaml
//! ---
//! apiVersion: zonewarden.io/v1
//! kind: ZoneProfile
//! zone: "shop/api"
//! mode: enforce
//! approvedEdges:
//!   - "shop/api->shop/db:5432/tcp"
//!   - "shop/frontend->shop/api:8080/tcp"
//! rejectedEdges:
//!   - "shop/api->world:25/tcp"
//! response:
//!   violations:
//!     count: 5
//!     withinSeconds: 60
//!   newPort: true
//! ```
//!
//! `rejectedEdges` (edges an operator rejected: never approved in bulk) is written
//! only when the profile has some, and may be left out of a document. So is
//! `response` (the automatic response rules, see [`crate::response`]): a document
//! without it imports as a zone without rules.
//!
//! [`render`] writes documents in a stable order (zones sorted, edges sorted) and
//! without the profile's version (the enforcer numbers versions itself, and every
//! import that changes a profile bumps it), so an export that is imported and
//! exported again is byte for byte the same. [`parse`] validates a whole stream before
//! anything is applied: unknown fields, a wrong `apiVersion` or `kind`, bad zones,
//! modes and edges, edges that do not touch their zone, duplicates; each problem names
//! its line and column. Files written by earlier versions still import: `approved`
//! and `rejected` are read as `approvedEdges` and `rejectedEdges`, and a `version`
//! line is accepted and ignored. `comment` is recorded in the profile's history when
//! the import changes it.
//!
//! [`apply`] sets a profile to what a document says (the approved and rejected sets
//! exactly, and the mode) as one versioned change; [`ProfileDelta`] is what a dry run shows.
//! [`netpol`] renders the same profiles as Kubernetes NetworkPolicies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::edge::Edge;
use crate::profile::{Actor, Mode, Profile, ProfileChange};
use crate::response::{ResponseRules, ViolationsRule};
use crate::zone::ZoneName;

pub mod netpol;

pub const API_VERSION: &str = "zonewarden.io/v1";
pub const KIND: &str = "ZoneProfile";

/// One exported profile, as written and as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileDocument {
    pub zone: ZoneName,
    pub mode: Mode,
    /// The profile version when exported (informational).
    pub version: u64,
    pub approved: BTreeSet<Edge>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub rejected: BTreeSet<Edge>,
    #[serde(skip_serializing_if = "ResponseRules::is_empty")]
    pub response: ResponseRules,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl ProfileDocument {
    pub fn of(profile: &Profile) -> Self {
        Self {
            zone: profile.zone.clone(),
            mode: profile.mode,
            version: profile.version,
            approved: profile.approved.clone(),
            rejected: profile.rejected.clone(),
            response: profile.response,
            comment: None,
        }
    }
}

/// Writes documents as a multi-document YAML stream, sorted by zone.
pub fn render(documents: &[ProfileDocument]) -> String {
    let mut sorted: Vec<&ProfileDocument> = documents.iter().collect();
    sorted.sort_by(|a, b| a.zone.cmp(&b.zone));
    let mut out = String::new();
    for doc in sorted {
        out.push_str("---\n");
        let _ = writeln!(out, "apiVersion: {API_VERSION}");
        let _ = writeln!(out, "kind: {KIND}");
        let _ = writeln!(out, "zone: {}", quote(doc.zone.as_str()));
        let _ = writeln!(out, "mode: {}", doc.mode);
        if let Some(comment) = &doc.comment {
            let _ = writeln!(out, "comment: {}", quote(comment));
        }
        if doc.approved.is_empty() {
            out.push_str("approvedEdges: []\n");
        } else {
            render_edges(&mut out, "approvedEdges", &doc.approved);
        }
        if !doc.rejected.is_empty() {
            render_edges(&mut out, "rejectedEdges", &doc.rejected);
        }
        render_response(&mut out, &doc.response);
    }
    out
}

fn render_response(out: &mut String, rules: &ResponseRules) {
    if rules.is_empty() {
        return;
    }
    out.push_str("response:\n");
    if let Some(v) = rules.violations {
        out.push_str("  violations:\n");
        let _ = writeln!(out, "    count: {}", v.count);
        let _ = writeln!(out, "    withinSeconds: {}", v.within_secs);
    }
    if rules.new_port {
        out.push_str("  newPort: true\n");
    }
}

fn render_edges(out: &mut String, key: &str, edges: &BTreeSet<Edge>) {
    let _ = writeln!(out, "{key}:");
    for edge in edges {
        let _ = writeln!(out, "  - {}", quote(&edge.to_string()));
    }
}

/// A double-quoted YAML scalar (JSON string escaping is valid YAML).
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One problem of an imported file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportIssue {
    /// 1-based; 0 when the parser could not tell.
    pub line: u64,
    pub column: u64,
    pub reason: String,
}

impl std::fmt::Display for ImportIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.reason)
        } else {
            write!(
                f,
                "line {} column {}: {}",
                self.line, self.column, self.reason
            )
        }
    }
}

/// Why an import was refused; nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the file holds no {KIND} document; export one with `zwctl profile export ZONE`")]
    Empty,
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ImportIssue>),
}

impl ImportError {
    pub fn issues(&self) -> &[ImportIssue] {
        match self {
            Self::Empty => &[],
            Self::Invalid(issues) => issues,
        }
    }
}

/// A document as the file spells it, with where each value is.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDocument {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    zone: Spanned<String>,
    mode: Spanned<String>,
    /// Written by earlier versions; informational.
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(alias = "approved")]
    approved_edges: Spanned<Vec<Spanned<String>>>,
    #[serde(default, alias = "rejected")]
    rejected_edges: Vec<Spanned<String>>,
    #[serde(default)]
    response: Option<RawResponse>,
}

/// `response:` as the file spells it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawResponse {
    #[serde(default)]
    violations: Option<Spanned<RawViolations>>,
    #[serde(default)]
    new_port: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawViolations {
    count: Spanned<u64>,
    within_seconds: Spanned<u64>,
}

fn issue<T>(at: &Spanned<T>, reason: String) -> ImportIssue {
    ImportIssue {
        line: at.referenced.line(),
        column: at.referenced.column(),
        reason,
    }
}

/// Parses and validates a whole stream; every problem is reported, none applied.
pub fn parse(text: &str) -> Result<Vec<ProfileDocument>, ImportError> {
    let raw: Vec<RawDocument> = serde_saphyr::from_multiple(text).map_err(|err| {
        let plain = err.without_snippet().to_string();
        let issue = match err.location() {
            Some(at) => ImportIssue {
                line: at.line(),
                column: at.column(),
                reason: plain
                    .strip_suffix(&format!(" at line {}, column {}", at.line(), at.column()))
                    .unwrap_or(&plain)
                    .to_owned(),
            },
            None => ImportIssue {
                line: 0,
                column: 0,
                reason: plain,
            },
        };
        ImportError::Invalid(vec![issue])
    })?;
    if raw.is_empty() {
        return Err(ImportError::Empty);
    }
    let mut issues = Vec::new();
    let mut documents = Vec::new();
    let mut seen_zones: BTreeMap<ZoneName, u64> = BTreeMap::new();
    for doc in raw {
        if let Some(d) = validate(doc, &mut issues, &mut seen_zones) {
            documents.push(d);
        }
    }
    if issues.is_empty() {
        Ok(documents)
    } else {
        Err(ImportError::Invalid(issues))
    }
}

fn validate(
    doc: RawDocument,
    issues: &mut Vec<ImportIssue>,
    seen_zones: &mut BTreeMap<ZoneName, u64>,
) -> Option<ProfileDocument> {
    let before = issues.len();
    if doc.api_version.value != API_VERSION {
        issues.push(issue(
            &doc.api_version,
            format!(
                "apiVersion {:?} is not {API_VERSION}",
                doc.api_version.value
            ),
        ));
    }
    if doc.kind.value != KIND {
        issues.push(issue(
            &doc.kind,
            format!("kind {:?} is not {KIND}", doc.kind.value),
        ));
    }
    let zone = match ZoneName::parse(&doc.zone.value) {
        Ok(zone) => Some(zone),
        Err(err) => {
            issues.push(issue(&doc.zone, err.to_string()));
            None
        }
    };
    if let Some(zone) = &zone {
        let line = doc.zone.referenced.line();
        if let Some(first) = seen_zones.insert(zone.clone(), line) {
            issues.push(issue(
                &doc.zone,
                format!("zone {zone} already has a document (line {first}); keep one per zone"),
            ));
        }
    }
    let mode = match doc.mode.value.parse::<Mode>() {
        Ok(mode) => Some(mode),
        Err(err) => {
            issues.push(issue(&doc.mode, err));
            None
        }
    };
    let mut approved = BTreeSet::new();
    edge_list(
        &doc.approved_edges.value,
        zone.as_ref(),
        &mut approved,
        issues,
    );
    let mut rejected = BTreeSet::new();
    edge_list(&doc.rejected_edges, zone.as_ref(), &mut rejected, issues);
    for text in &doc.rejected_edges {
        if let Some(edge) = text
            .value
            .parse::<Edge>()
            .ok()
            .filter(|e| approved.contains(e))
        {
            issues.push(issue(
                text,
                format!("edge {edge} is both approved and rejected: keep it in one list"),
            ));
        }
    }
    let response = response_rules(doc.response.as_ref(), issues);
    if issues.len() > before {
        return None;
    }
    Some(ProfileDocument {
        zone: zone?,
        mode: mode?,
        version: doc.version.unwrap_or(0),
        approved,
        rejected,
        response,
        comment: doc.comment.filter(|c| !c.is_empty()),
    })
}

/// Validates a document's `response:` (each problem with its line).
fn response_rules(raw: Option<&RawResponse>, issues: &mut Vec<ImportIssue>) -> ResponseRules {
    let Some(raw) = raw else {
        return ResponseRules::default();
    };
    let violations = raw.violations.as_ref().and_then(|v| {
        let v = &v.value;
        ViolationsRule::new(v.count.value, v.within_seconds.value)
            .map_err(|err| {
                let at = match err {
                    crate::response::RuleError::CountZero(_)
                    | crate::response::RuleError::CountTooHigh(_) => {
                        issue(&v.count, format!("response.violations.count: {err}"))
                    }
                    _ => issue(
                        &v.within_seconds,
                        format!("response.violations.withinSeconds: {err}"),
                    ),
                };
                issues.push(at);
            })
            .ok()
    });
    ResponseRules {
        violations,
        new_port: raw.new_port,
    }
}

/// Validates one list of edges of a document into `into`.
fn edge_list(
    texts: &[Spanned<String>],
    zone: Option<&ZoneName>,
    into: &mut BTreeSet<Edge>,
    issues: &mut Vec<ImportIssue>,
) {
    for text in texts {
        match text.value.parse::<Edge>() {
            Ok(edge) => {
                if let Some(zone) = zone.filter(|z| !edge.touches(z)) {
                    issues.push(issue(
                        text,
                        format!(
                            "edge {edge} does not touch zone {zone}: list it in the profile of one of its ends"
                        ),
                    ));
                } else if !into.insert(edge.clone()) {
                    issues.push(issue(text, format!("edge {edge} is listed twice")));
                }
            }
            Err(err) => issues.push(issue(text, err.to_string())),
        }
    }
}

/// What importing a document changes in a zone's profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileDelta {
    pub added: Vec<Edge>,
    pub removed: Vec<Edge>,
    /// Rejections the document adds and lifts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_added: Vec<Edge>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_removed: Vec<Edge>,
    /// `(before, after)` when the mode changes.
    pub mode: Option<(Mode, Mode)>,
    /// `(before, after)` when the response rules change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<(ResponseRules, ResponseRules)>,
}

impl ProfileDelta {
    pub fn between(current: Option<&Profile>, doc: &ProfileDocument) -> Self {
        let empty = BTreeSet::new();
        let approved = current.map_or(&empty, |p| &p.approved);
        let rejected = current.map_or(&empty, |p| &p.rejected);
        let mode = current.map_or(Mode::default(), |p| p.mode);
        let response = current.map_or(ResponseRules::default(), |p| p.response);
        Self {
            added: doc.approved.difference(approved).cloned().collect(),
            removed: approved.difference(&doc.approved).cloned().collect(),
            rejected_added: doc.rejected.difference(rejected).cloned().collect(),
            rejected_removed: rejected.difference(&doc.rejected).cloned().collect(),
            mode: (mode != doc.mode).then_some((mode, doc.mode)),
            response: (response != doc.response).then_some((response, doc.response)),
        }
    }

    /// How many things change (0: the import leaves the profile alone).
    pub fn count(&self) -> usize {
        self.added.len()
            + self.removed.len()
            + self.rejected_added.len()
            + self.rejected_removed.len()
            + usize::from(self.mode.is_some())
            + usize::from(self.response.is_some())
    }

    /// "imported: +2 -1 edge(s), mode learn -> enforce".
    pub fn describe(&self) -> String {
        let mut what = format!(
            "imported: +{} -{} edge(s)",
            self.added.len(),
            self.removed.len()
        );
        if !self.rejected_added.is_empty() || !self.rejected_removed.is_empty() {
            let _ = write!(
                what,
                ", rejected +{} -{}",
                self.rejected_added.len(),
                self.rejected_removed.len()
            );
        }
        if let Some((from, to)) = self.mode {
            let _ = write!(what, ", mode {from} -> {to}");
        }
        if let Some((from, to)) = self.response {
            let _ = write!(what, ", response {from} -> {to}");
        }
        what
    }
}

/// Sets `profile` to what `doc` says, as one versioned change; returns how many
/// things changed (0: nothing was recorded).
pub fn apply(profile: &mut Profile, doc: &ProfileDocument, actor: &Actor) -> usize {
    let delta = ProfileDelta::between(Some(profile), doc);
    let count = delta.count();
    if count == 0 {
        return 0;
    }
    profile.approved = doc.approved.clone();
    profile.rejected = doc.rejected.clone();
    profile.mode = doc.mode;
    profile.response = doc.response;
    profile.version += 1;
    profile.history.push(ProfileChange {
        version: profile.version,
        who: actor.who.clone(),
        at_unix_ms: actor.at_unix_ms,
        what: delta.describe(),
        comment: doc.comment.clone().unwrap_or_else(|| actor.comment.clone()),
    });
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> ZoneName {
        ZoneName::parse(name).unwrap()
    }

    fn profile(name: &str, mode: Mode, edges: &[&str]) -> Profile {
        let mut p = Profile::new(zone(name));
        p.mode = mode;
        p.version = 3;
        p.approved = edges.iter().map(|e| e.parse().unwrap()).collect();
        p
    }

    fn actor() -> Actor {
        Actor {
            who: "root".into(),
            at_unix_ms: 1,
            comment: "from git".into(),
        }
    }

    const TWO: &str = "\
---
apiVersion: zonewarden.io/v1
kind: ZoneProfile
zone: \"shop/api\"
mode: enforce
approvedEdges:
  - \"shop/api->shop/db:5432/tcp\"
  - \"shop/frontend->shop/api:8080/tcp\"
---
apiVersion: zonewarden.io/v1
kind: ZoneProfile
zone: \"shop/db\"
mode: learn
approvedEdges: []
";

    /// [`TWO`] as earlier versions wrote it: `version` lines, `approved`, `rejected`.
    const TWO_BEFORE: &str = "\
---
apiVersion: zonewarden.io/v1
kind: ZoneProfile
zone: \"shop/api\"
mode: enforce
version: 3
approved:
  - \"shop/api->shop/db:5432/tcp\"
  - \"shop/frontend->shop/api:8080/tcp\"
---
apiVersion: zonewarden.io/v1
kind: ZoneProfile
zone: \"shop/db\"
mode: learn
version: 0
approved: []
rejected: []
";

    #[test]
    fn files_of_earlier_versions_import_and_export_without_versions() {
        let parsed = parse(TWO_BEFORE).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].approved.len(), 2);
        assert_eq!(
            render(&parsed),
            TWO,
            "old names are read, the new ones written"
        );
        let both = "apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: a\nmode: learn\n\
                    approved: []\napprovedEdges: []\n";
        let issues = issues_of(both);
        assert!(issues[0].contains("duplicate field"), "{issues:?}");
    }

    #[test]
    fn rejections_are_exported_imported_and_applied() {
        let mut api = profile("shop/api", Mode::Enforce, &["shop/api->shop/db:5432/tcp"]);
        api.rejected = ["shop/api->world:25/tcp".parse().unwrap()].into();
        let text = render(&[ProfileDocument::of(&api)]);
        assert!(
            text.ends_with("rejectedEdges:\n  - \"shop/api->world:25/tcp\"\n"),
            "{text}"
        );
        let parsed = parse(&text).unwrap();
        assert_eq!(render(&parsed), text, "round trip");
        let mut fresh = profile("shop/api", Mode::Enforce, &["shop/api->shop/db:5432/tcp"]);
        let delta = ProfileDelta::between(Some(&fresh), &parsed[0]);
        assert_eq!(delta.rejected_added.len(), 1);
        assert_eq!(delta.describe(), "imported: +0 -0 edge(s), rejected +1 -0");
        assert_eq!(apply(&mut fresh, &parsed[0], &actor()), 1);
        assert_eq!(fresh.rejected, api.rejected);

        let both = "apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: shop/api\nmode: learn\n\
                    approved: [\"shop/api->world:25/tcp\"]\nrejected: [\"shop/api->world:25/tcp\"]\n";
        let ImportError::Invalid(issues) = parse(both).unwrap_err() else {
            panic!("an edge both approved and rejected is invalid")
        };
        assert!(
            issues[0].reason.contains("both approved and rejected"),
            "{issues:?}"
        );
    }

    #[test]
    fn response_rules_are_exported_imported_and_applied() {
        let mut api = profile("shop/api", Mode::Monitor, &["shop/api->shop/db:5432/tcp"]);
        api.response = ResponseRules {
            violations: Some(ViolationsRule::new(5, 60).unwrap()),
            new_port: true,
        };
        let text = render(&[ProfileDocument::of(&api)]);
        assert!(
            text.ends_with(
                "response:\n  violations:\n    count: 5\n    withinSeconds: 60\n  newPort: true\n"
            ),
            "{text}"
        );
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed[0].response, api.response);
        assert_eq!(render(&parsed), text, "export -> import -> export");

        let mut fresh = profile("shop/api", Mode::Monitor, &["shop/api->shop/db:5432/tcp"]);
        let delta = ProfileDelta::between(Some(&fresh), &parsed[0]);
        assert_eq!(
            delta.describe(),
            "imported: +0 -0 edge(s), response none -> 5 violations within 60s, new port"
        );
        assert_eq!(apply(&mut fresh, &parsed[0], &actor()), 1);
        assert_eq!(fresh.response, api.response);

        // Only one rule, and a document without `response` clears them.
        let port_only = text.replace("  violations:\n    count: 5\n    withinSeconds: 60\n", "");
        let parsed = parse(&port_only).unwrap();
        assert_eq!(parsed[0].response.violations, None);
        assert!(parsed[0].response.new_port);
        let none = parse(&text.replace(
            "response:\n  violations:\n    count: 5\n    withinSeconds: 60\n  newPort: true\n",
            "",
        ))
        .unwrap();
        assert_eq!(apply(&mut fresh, &none[0], &actor()), 1);
        assert!(fresh.response.is_empty());
    }

    #[test]
    fn bad_response_rules_are_refused_with_their_line() {
        let base = "apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: a\nmode: learn\napprovedEdges: []\n";
        let zero = issues_of(&format!(
            "{base}response:\n  violations:\n    count: 0\n    withinSeconds: 60\n"
        ));
        assert_eq!(
            zero,
            [
                "line 8 column 12: response.violations.count: violations must be at least 1 (got 0); clear the rule to turn it off"
            ]
        );
        let long = issues_of(&format!(
            "{base}response:\n  violations:\n    count: 3\n    withinSeconds: 100000\n"
        ));
        assert!(
            long[0].starts_with("line 9 column 20: response.violations.withinSeconds:"),
            "{long:?}"
        );
        let missing = issues_of(&format!("{base}response:\n  violations:\n    count: 3\n"));
        assert!(missing[0].contains("withinSeconds"), "{missing:?}");
        let unknown = issues_of(&format!("{base}response:\n  newport: true\n"));
        assert!(
            unknown[0].contains("unknown field `newport`"),
            "{unknown:?}"
        );
    }

    #[test]
    fn renders_sorted_and_round_trips_byte_for_byte() {
        let docs = vec![
            ProfileDocument::of(&profile("shop/db", Mode::Learn, &[])),
            ProfileDocument::of(&profile(
                "shop/api",
                Mode::Enforce,
                &[
                    "shop/frontend->shop/api:8080/tcp",
                    "shop/api->shop/db:5432/tcp",
                ],
            )),
        ];
        let mut docs = docs;
        docs[1].version = 3;
        docs[0].version = 0;
        let text = render(&docs);
        assert_eq!(text, TWO);
        let parsed = parse(&text).unwrap();
        assert_eq!(
            render(&parsed),
            text,
            "export -> parse -> export is identical"
        );
    }

    #[test]
    fn comments_are_quoted_and_survive() {
        let mut doc = ProfileDocument::of(&profile("a", Mode::Monitor, &["a->world:443/tcp"]));
        doc.comment = Some("CHG-1: \"quoted\"\nsecond line".into());
        // The version is not exported: the import reads none.
        doc.version = 0;
        let text = render(std::slice::from_ref(&doc));
        assert_eq!(parse(&text).unwrap(), vec![doc]);
    }

    fn issues_of(text: &str) -> Vec<String> {
        parse(text)
            .unwrap_err()
            .issues()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn unknown_fields_are_refused_with_line_and_column() {
        let text = TWO.replace("mode: learn\n", "mode: learn\nquarantined: true\n");
        let issues = issues_of(&text);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].starts_with("line 14 column 1: unknown field `quarantined`"),
            "{issues:?}"
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_with_its_line() {
        let text = "\
apiVersion: zonewarden.io/v2
kind: ZoneProfile
zone: \"shop/api\"
mode: lockdown
approved:
  - \"shop/api->shop/db:5432\"
  - \"a->b:80/tcp\"
  - \"shop/api->world:443/tcp\"
  - \"shop/api->world:443/tcp\"
";
        let issues = issues_of(text);
        assert_eq!(
            issues,
            [
                "line 1 column 13: apiVersion \"zonewarden.io/v2\" is not zonewarden.io/v1",
                "line 4 column 7: mode \"lockdown\" is not one of learn, monitor, enforce",
                "line 6 column 5: edge \"shop/api->shop/db:5432\" has no protocol: write 5432/tcp, 5432/udp or 5432/sctp",
                "line 7 column 5: edge a->b:80/tcp does not touch zone shop/api: list it in the profile of one of its ends",
                "line 9 column 5: edge shop/api->world:443/tcp is listed twice",
            ]
        );
    }

    #[test]
    fn missing_fields_duplicate_zones_and_builtin_zones_are_refused() {
        let missing =
            issues_of("apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: a\nmode: learn\n");
        assert!(
            missing[0].contains("missing field `approvedEdges`"),
            "{missing:?}"
        );
        let twice = format!(
            "{TWO}{}",
            TWO.lines().skip(8).collect::<Vec<_>>().join("\n")
        );
        let issues = issues_of(&twice);
        assert!(
            issues[0]
                .starts_with("line 18 column 7: zone shop/db already has a document (line 12)"),
            "{issues:?}"
        );
        let host = issues_of(
            "apiVersion: zonewarden.io/v1\nkind: ZoneProfile\nzone: host\nmode: learn\napproved: []\n",
        );
        assert!(
            host[0].starts_with("line 3 column 7:") && host[0].contains("reserved"),
            "{host:?}"
        );
        assert_eq!(parse("").unwrap_err(), ImportError::Empty);
        let syntax = issues_of("zone: [\n");
        assert!(syntax[0].starts_with("line 1 column 7:"), "{syntax:?}");
    }

    #[test]
    fn apply_sets_the_approved_set_exactly_and_the_mode_in_one_version() {
        let mut p = profile("shop/api", Mode::Learn, &["shop/api->world:443/tcp"]);
        let docs = parse(TWO).unwrap();
        let delta = ProfileDelta::between(Some(&p), &docs[0]);
        assert_eq!(delta.added.len(), 2);
        assert_eq!(delta.removed, ["shop/api->world:443/tcp".parse().unwrap()]);
        assert_eq!(delta.mode, Some((Mode::Learn, Mode::Enforce)));
        assert_eq!(apply(&mut p, &docs[0], &actor()), 4);
        assert_eq!(p.approved, docs[0].approved);
        assert_eq!((p.mode, p.version), (Mode::Enforce, 4));
        let last = p.history.last().unwrap();
        assert_eq!(last.what, "imported: +2 -1 edge(s), mode learn -> enforce");
        assert_eq!(last.comment, "from git");
        assert_eq!(
            apply(&mut p, &docs[0], &actor()),
            0,
            "a second import is a no-op"
        );
        assert_eq!(p.version, 4);
    }
}
