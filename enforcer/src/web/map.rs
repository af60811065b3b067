//! `/api/map`: the zone map as the page draws it, built from one registry snapshot,
//! the learned edges and the recent reports. Pure: no I/O, tested without root.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use zonewarden_profiles::edge_status::last_drops;
use zonewarden_profiles::event::{ReportKind, Reports};
use zonewarden_profiles::learned::{Evidence, LearnedEdges};
use zonewarden_profiles::{Edge, ZoneName};

use super::layout::{self, MapGroup};
use crate::registry::Snapshot;

/// How many of the newest reports the page gets.
pub const RECENT_REPORTS: usize = 200;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneMap {
    pub node: String,
    pub generated_unix_ms: i64,
    pub zones: Vec<MapZone>,
    /// The zones grouped by namespace, the built-in zones first (see [`layout`]).
    pub groups: Vec<MapGroup>,
    pub edges: Vec<MapEdge>,
    /// The newest first.
    pub reports: Vec<MapReport>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MapZone {
    pub zone: String,
    /// `host`, `world` and the CIDR zones are built in.
    pub builtin: bool,
    /// `learn`, `monitor` or `enforce` (built-in zones: the default, `learn`).
    pub mode: String,
    pub quarantined: bool,
    pub version: u64,
    pub members: Vec<String>,
    /// Members quarantined one by one.
    pub quarantined_members: usize,
    /// Members an automatic response rule quarantined, with why (the member as in
    /// `members` → `response:ZONE:RULE: ...`); left out when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub quarantine_reasons: BTreeMap<String, String>,
    /// Members enforced by a sidecar in their own pod (`zonewarden-enforcer --sidecar`),
    /// as in `members`; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sidecar_members: Vec<String>,
    /// Its namespace, or `(built-in)` / `(no namespace)`.
    pub group: String,
    /// What the page writes under the circle: the name within the namespace (cut to
    /// [`layout::LABEL_CHARS`]) and the mode line.
    pub label: String,
    pub sublabel: String,
    /// The circle's center and radius in its group's box.
    pub x: i32,
    pub y: i32,
    pub r: i32,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MapEdge {
    /// `src->dst:port/proto`, as zwctl prints it.
    pub edge: String,
    pub src: String,
    pub dst: String,
    pub proto: String,
    pub port: u16,
    /// What follows the `:` of the edge (`8080/tcp`, `icmp`): the arrow's label.
    pub service: String,
    pub approved: bool,
    /// The zones whose profile approves it.
    pub approved_in: Vec<String>,
    pub learned: bool,
    pub evidence: Option<MapEvidence>,
    /// What the table does now: `approved`, `observed` or `dropped` (what the page
    /// draws; quarantine is drawn on the zones, never as an edge's status).
    pub status: &'static str,
    /// History: the newest drop by an enforcing zone among the recent reports.
    pub last_drop: Option<MapDrop>,
    /// History: reported connections of this edge among the recent reports, by kind
    /// (drops by an enforcing zone, and monitor violations).
    pub drops: u64,
    pub violations: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MapDrop {
    pub at_unix_ms: i64,
    /// The reporting zone's profile version then.
    pub profile_version: u64,
    pub reported_by: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MapEvidence {
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    pub count: u64,
    pub nodes: Vec<String>,
    pub sample: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MapReport {
    pub at_unix_ms: i64,
    /// drop, violation, quarantine or spoof (as `zwctl get violations` says it).
    pub verdict: &'static str,
    pub edge: String,
    pub src_zone: String,
    pub dst_zone: String,
    pub src: String,
    pub dst: String,
    /// The zone whose rule reported it, and its profile version then; both left out
    /// for a quarantine or a spoofed address, which no profile's rule reports.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reported_by: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub profile_version: u64,
    pub count: u64,
    /// The automatic response rule this report made quarantine its source
    /// (`response:shop/api:violations`); left out for every other report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn evidence(ev: &Evidence) -> MapEvidence {
    let s = &ev.sample;
    MapEvidence {
        first_seen_unix_ms: ev.first_seen_unix_ms,
        last_seen_unix_ms: ev.last_seen_unix_ms,
        count: ev.count,
        nodes: ev.nodes.iter().cloned().collect(),
        sample: s.to_string(),
    }
}

/// The whole map: every zone with members or a profile, every edge that is approved,
/// learned or reported, and the newest reports.
pub fn zone_map(
    snapshot: &Snapshot,
    learned: &LearnedEdges,
    reports: &Reports,
    node: &str,
    now_unix_ms: i64,
) -> ZoneMap {
    let policy = &snapshot.policy;
    let mut members: BTreeMap<&ZoneName, Vec<String>> = BTreeMap::new();
    let mut quarantined_members: BTreeMap<&ZoneName, usize> = BTreeMap::new();
    let summaries = snapshot.zones();
    for summary in &summaries {
        members.insert(&summary.name, summary.members.clone());
    }
    let mut sidecar_members: BTreeMap<&ZoneName, Vec<String>> = BTreeMap::new();
    for endpoint in snapshot.endpoints.values() {
        if snapshot.quarantined.contains(&*endpoint.key.container_id) {
            *quarantined_members.entry(&endpoint.zone).or_default() += 1;
        }
        if endpoint.attach_mode == zonewarden_profiles::AttachMode::Sidecar {
            sidecar_members
                .entry(&endpoint.zone)
                .or_default()
                .push(crate::registry::snapshot::member_name(endpoint));
        }
    }

    // Quarantine and spoofing drops are the zones' and endpoints' story, not the edges'.
    let mut reported: BTreeMap<&Edge, (u64, u64)> = BTreeMap::new();
    for report in &reports.entries {
        let counts = reported.entry(&report.edge).or_default();
        match report.kind {
            ReportKind::Drop => counts.0 += report.count,
            ReportKind::Violation => counts.1 += report.count,
            ReportKind::Quarantine | ReportKind::Spoof => {}
        }
    }
    let drops_of = last_drops(reports);
    let mut zone_names = snapshot.zone_names();
    // A report is history: an edge known only from reports is drawn while both its
    // zones exist (a zone whose workloads left and whose profile was deleted is gone).
    let existing = snapshot.existing_zones();
    let mut edges: BTreeSet<&Edge> = learned.edges.keys().collect();
    edges.extend(policy.approved_edges());
    edges.extend(
        reported
            .iter()
            .filter(|(_, (drops, violations))| drops + violations > 0)
            .map(|(e, _)| *e)
            .filter(|e| existing.contains(&e.src) && existing.contains(&e.dst)),
    );

    let workload_zones = zone_names.clone();
    for edge in &edges {
        zone_names.insert(edge.src.clone());
        zone_names.insert(edge.dst.clone());
    }
    let mut zones: Vec<MapZone> = zone_names
        .iter()
        .map(|zone| {
            let profile = policy.profiles.get(zone);
            MapZone {
                zone: zone.to_string(),
                // A namespaced zone seen only as an edge's end (no members, the default
                // profile) is still a workload's zone, drawn in its namespace.
                builtin: !workload_zones.contains(zone)
                    && (zone.is_builtin() || policy.cidr_zones.contains_key(zone)),
                mode: policy.mode(zone).to_string(),
                quarantined: policy.zone_quarantined(zone),
                version: profile.map_or(0, |p| p.version),
                members: members.get(zone).cloned().unwrap_or_default(),
                quarantined_members: quarantined_members.get(zone).copied().unwrap_or(0),
                sidecar_members: sidecar_members.get(zone).cloned().unwrap_or_default(),
                // The reasons, and the group and place that `layout::lay_out` gives.
                ..MapZone::default()
            }
        })
        .collect();
    let groups = layout::lay_out(&mut zones);

    let edges = edges
        .into_iter()
        .map(|edge| {
            let approved_in: Vec<String> = policy
                .approved_in(edge)
                .into_iter()
                .map(ToString::to_string)
                .collect();
            let (drops, violations) = reported.get(edge).copied().unwrap_or_default();
            let learned_ev = learned.edges.get(edge);
            MapEdge {
                edge: edge.to_string(),
                src: edge.src.to_string(),
                dst: edge.dst.to_string(),
                proto: edge.proto.to_string(),
                port: edge.port,
                service: edge.service(),
                approved: !approved_in.is_empty(),
                approved_in,
                learned: learned_ev.is_some(),
                evidence: learned_ev.map(evidence),
                status: policy.edge_status(edge).as_str(),
                last_drop: drops_of.get(edge).map(|d| MapDrop {
                    at_unix_ms: d.at_unix_ms,
                    profile_version: d.profile_version,
                    reported_by: d.reported_by.clone(),
                }),
                drops,
                violations,
            }
        })
        .collect();

    let reports = reports
        .newest()
        .take(RECENT_REPORTS)
        .map(|r| MapReport {
            at_unix_ms: r.at_unix_ms,
            verdict: r.kind.as_str(),
            edge: r.edge.to_string(),
            src_zone: r.edge.src.to_string(),
            dst_zone: r.edge.dst.to_string(),
            src: format!("{}:{}", r.src, r.src_port),
            dst: r.dst.to_string(),
            reported_by: r.reported_by.clone(),
            profile_version: r.profile_version,
            count: r.count,
            response: r.response.clone(),
        })
        .collect();

    ZoneMap {
        node: node.to_owned(),
        generated_unix_ms: now_unix_ms,
        zones,
        groups,
        edges,
        reports,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::endpoint;
    use zonewarden_profiles::event::Report;
    use zonewarden_profiles::learned::Sample;
    use zonewarden_profiles::{Endpoint, Mode, Profile, Proto};

    fn sample() -> Sample {
        Sample {
            src: "10.0.0.1".parse().unwrap(),
            src_port: 40000,
            dst: "10.0.0.2".parse().unwrap(),
            dst_port: 5432,
            proto: Proto::Tcp,
        }
    }

    /// shop/web (c1, 10.0.0.1) and shop/db (c2, 10.0.0.2), each with an id.
    fn web_and_db() -> (Snapshot, Endpoint) {
        let mut snapshot = Snapshot::default();
        let web = endpoint("c1", "shop/web", &["10.0.0.1/32"]);
        let db = endpoint("c2", "shop/db", &["10.0.0.2/32"]);
        for e in [&web, &db] {
            snapshot.zone_ids.allocate(&e.zone);
            std::sync::Arc::make_mut(&mut snapshot.endpoints).insert(e.clone());
        }
        (snapshot, db)
    }

    /// A sidecar's pod is a member like any other, named among the zone's sidecar
    /// members; a zone without one leaves the field out of /api/map.
    #[test]
    fn sidecar_members_are_named() {
        let (mut snapshot, _) = web_and_db();
        let mut side = endpoint("shop/web-0", "shop/web", &["10.0.0.3/32"]);
        side.attach_mode = zonewarden_profiles::AttachMode::Sidecar;
        std::sync::Arc::make_mut(&mut snapshot.endpoints).insert(side);
        let map = zone_map(&snapshot, &LearnedEdges::new(1), &Reports::new(1), "n1", 9);
        let web = map
            .zones
            .iter()
            .find(|z| z.zone == "shop/web")
            .expect("web");
        assert_eq!(web.members.len(), 2, "{web:?}");
        assert_eq!(web.sidecar_members, vec!["shop/web-0"]);
        let db = map.zones.iter().find(|z| z.zone == "shop/db").expect("db");
        let json = serde_json::to_value(db).expect("json");
        assert!(json.get("sidecarMembers").is_none(), "{json}");
        assert_eq!(
            serde_json::to_value(web).expect("json")["sidecarMembers"],
            serde_json::json!(["shop/web-0"])
        );
    }

    #[test]
    fn approved_learned_and_dropped_edges_with_their_zones() {
        let (mut snapshot, db) = web_and_db();
        snapshot.quarantined.insert("c2".into());
        let approved: Edge = "shop/web->shop/db:5432/tcp".parse().unwrap();
        let unapproved: Edge = "shop/web->world:443/tcp".parse().unwrap();
        let dropped: Edge = "shop/db->shop/web:22/tcp".parse().unwrap();
        let mut profile = Profile::new(db.zone.clone());
        profile.mode = Mode::Enforce;
        profile.version = 3;
        profile.approved.insert(approved.clone());
        snapshot.policy.profiles.insert(db.zone.clone(), profile);

        let mut learned = LearnedEdges::new(10);
        learned.record(approved.clone(), sample(), "n1", 5);
        learned.record(unapproved.clone(), sample(), "n1", 6);
        let mut reports = Reports::new(10);
        reports.push(Report {
            at_unix_ms: 7,
            kind: ReportKind::Drop,
            edge: dropped.clone(),
            src: "10.0.0.2".parse().unwrap(),
            src_port: 1234,
            dst: "10.0.0.1".parse().unwrap(),
            node: "n1".into(),
            reported_by: "shop/web".into(),
            profile_version: 3,
            count: 2,
            response: None,
        });

        let map = zone_map(&snapshot, &learned, &reports, "n1", 9);
        let zones: Vec<(&str, bool, &str)> = map
            .zones
            .iter()
            .map(|z| (z.zone.as_str(), z.builtin, z.mode.as_str()))
            .collect();
        assert_eq!(
            zones,
            vec![
                ("shop/db", false, "enforce"),
                ("shop/web", false, "learn"),
                ("world", true, "learn")
            ]
        );
        assert_eq!(map.zones[0].quarantined_members, 1);
        assert_eq!(map.zones[0].version, 3);
        assert_eq!(map.zones[1].members, vec!["c1"]);
        let by_edge: BTreeMap<&str, &MapEdge> =
            map.edges.iter().map(|e| (e.edge.as_str(), e)).collect();
        let a = by_edge["shop/web->shop/db:5432/tcp"];
        assert!(a.approved && a.learned, "{a:?}");
        assert_eq!(a.service, "5432/tcp", "the page labels arrows with it");
        assert_eq!(a.approved_in, vec!["shop/db"]);
        assert_eq!(a.evidence.as_ref().unwrap().count, 1);
        let u = by_edge["shop/web->world:443/tcp"];
        assert!(!u.approved && u.learned, "{u:?}");
        assert_eq!(a.status, "approved");
        assert_eq!(u.status, "observed", "web learns, world never enforces");
        let d = by_edge["shop/db->shop/web:22/tcp"];
        assert!(!d.approved && !d.learned && d.drops == 2, "{d:?}");
        assert_eq!(d.status, "dropped", "shop/db enforces");
        assert_eq!(
            d.last_drop,
            Some(MapDrop {
                at_unix_ms: 7,
                profile_version: 3,
                reported_by: "shop/web".into()
            })
        );
        assert_eq!(map.reports.len(), 1);
        assert_eq!(map.reports[0].verdict, "drop");
        let json = serde_json::to_value(&map).unwrap();
        assert_eq!(json["zones"][0]["zone"], "shop/db");
    }

    #[test]
    fn a_zone_known_only_from_old_reports_is_not_drawn() {
        let mut snapshot = Snapshot::default();
        let web = endpoint("c1", "shop/web", &["10.0.0.1/32"]);
        snapshot.zone_ids.allocate(&web.zone);
        std::sync::Arc::make_mut(&mut snapshot.endpoints).insert(web.clone());
        let mut reports = Reports::new(10);
        for (edge, at) in [
            ("shop/web->shop/old:80/tcp", 1),
            ("shop/web->world:22/tcp", 2),
        ] {
            reports.push(Report {
                at_unix_ms: at,
                kind: ReportKind::Drop,
                edge: edge.parse().unwrap(),
                src: "10.0.0.1".parse().unwrap(),
                src_port: 1234,
                dst: "10.0.0.9".parse().unwrap(),
                node: "n1".into(),
                reported_by: "shop/web".into(),
                profile_version: 1,
                count: 1,
                response: None,
            });
        }
        // shop/old's pods left and its profile was deleted: its drops are history.
        let map = zone_map(&snapshot, &LearnedEdges::new(10), &reports, "n1", 9);
        let zones: Vec<&str> = map.zones.iter().map(|z| z.zone.as_str()).collect();
        assert_eq!(zones, vec!["shop/web", "world"]);
        let edges: Vec<&str> = map.edges.iter().map(|e| e.edge.as_str()).collect();
        assert_eq!(edges, vec!["shop/web->world:22/tcp"]);
        assert_eq!(map.reports.len(), 2, "the reports themselves stay listed");
    }

    /// The two incidents: an edge dropped, then approved, is drawn approved (its
    /// drop is history); a zone quarantined and released keeps its approved edges
    /// approved, and during the quarantine the zone shows it, not the edges.
    #[test]
    fn status_is_the_present_and_drops_are_history() {
        let (mut snapshot, db) = web_and_db();
        let edge: Edge = "shop/web->shop/db:5432/tcp".parse().unwrap();
        let mut profile = Profile::new(db.zone.clone());
        profile.mode = Mode::Enforce;
        profile.version = 4;
        profile.approved.insert(edge.clone());
        profile.quarantined = true;
        snapshot.policy.profiles.insert(db.zone.clone(), profile);
        let report = |kind, at, version| Report {
            at_unix_ms: at,
            kind,
            edge: edge.clone(),
            src: "10.0.0.1".parse().unwrap(),
            src_port: 1234,
            dst: "10.0.0.2".parse().unwrap(),
            node: "n1".into(),
            reported_by: "shop/db".into(),
            profile_version: version,
            count: 1,
            response: None,
        };
        let mut reports = Reports::new(10);
        reports.push(report(ReportKind::Drop, 5, 2));
        reports.push(report(ReportKind::Quarantine, 8, 4));

        let map = zone_map(&snapshot, &LearnedEdges::new(10), &reports, "n1", 9);
        let e = &map.edges[0];
        assert_eq!(e.status, "approved", "{e:?}");
        assert_eq!(e.drops, 1, "quarantine drops are not the edge's");
        let last = e.last_drop.as_ref().expect("the drop before approval");
        assert_eq!((last.at_unix_ms, last.profile_version), (5, 2));
        let db_zone = map.zones.iter().find(|z| z.zone == "shop/db").unwrap();
        assert!(db_zone.quarantined, "the zone shows the quarantine");

        // Released: still approved.
        snapshot
            .policy
            .profiles
            .get_mut(&db.zone)
            .unwrap()
            .quarantined = false;
        let map = zone_map(&snapshot, &LearnedEdges::new(10), &reports, "n1", 10);
        assert_eq!(map.edges[0].status, "approved");
        let json = serde_json::to_value(&map).unwrap();
        assert_eq!(json["edges"][0]["status"], "approved");
        assert_eq!(json["edges"][0]["lastDrop"]["profileVersion"], 2);
    }
}
