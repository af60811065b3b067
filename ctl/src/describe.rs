//! `zwctl describe zone Z`: everything about one zone on one page, as
//! `kubectl describe` shows a resource: members, mode and quarantine, profile
//! version and history, learning completeness, approved and unapproved edges with
//! their status now, their last drop and their evidence, recent violations.
//!
//! Composed from the list calls (profiles, zones, endpoints, edges, violations);
//! `-o json|yaml` gives the same facts as one object.

use clap::{Args, Subcommand};
use serde::Serialize;
use zonewarden_proto::v1;

use crate::cli::GlobalArgs;
use crate::client::Enforcer;
use crate::get;
use crate::render::{self, RenderContext};
use crate::view::{self, EdgeView, EndpointView, ProfileView, ViolationView};

pub const EXAMPLES: &str = "\
Examples:
  # Everything about one zone: members, mode, edges with evidence, recent drops
  zwctl describe zone shop/frontend

  # The same as one JSON object, for scripts
  zwctl describe zone shop/frontend -o json | jq '.learned[].edge'";

/// How many recent violations `describe` shows.
const RECENT_VIOLATIONS: u32 = 10;

#[derive(Debug, Subcommand)]
pub enum DescribeCommand {
    /// Show one zone in detail: members, profile, edges with evidence, recent violations.
    #[command(after_help = EXAMPLES)]
    Zone(DescribeZoneArgs),
}

#[derive(Debug, Args)]
pub struct DescribeZoneArgs {
    /// The zone (e.g. shop/frontend).
    #[arg(value_name = "ZONE")]
    pub zone: String,
}

/// One zone in detail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneDetailView {
    pub zone: String,
    /// The data-plane id; 0 when the zone has no members on this node.
    pub id: u32,
    pub kind: String,
    pub profile: ProfileView,
    pub members: Vec<EndpointView>,
    /// Edges some profile approves, seen or not.
    #[serde(rename = "approvedEdges")]
    pub approved: Vec<EdgeView>,
    /// Edges seen in traffic (or dropped) that no profile approves; each one's
    /// `status` says whether it passes (`observed`) or is dropped now (`dropped`).
    #[serde(rename = "learnedEdges")]
    pub learned: Vec<EdgeView>,
    pub recent_violations: Vec<ViolationView>,
}

pub async fn run(command: &DescribeCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    let DescribeCommand::Zone(args) = command;
    let mut enforcer = Enforcer::connect(global).await?;
    let zone = args.zone.clone();
    let profiles = enforcer
        .list_profiles(v1::ListProfilesRequest { zone: zone.clone() })
        .await?;
    let Some(profile) = profiles.profiles.into_iter().next() else {
        anyhow::bail!(
            "zone {zone:?} has no profile and no endpoints on this node \
             (zwctl get zones lists the zones that have)"
        );
    };
    let summary = enforcer
        .list_zones()
        .await?
        .zones
        .into_iter()
        .find(|z| z.name == zone);
    let members = enforcer
        .list_endpoints(v1::ListEndpointsRequest {
            network: String::new(),
            zone: zone.clone(),
            node: String::new(),
        })
        .await?;
    let edges = enforcer
        .list_edges(v1::ListEdgesRequest {
            zone: zone.clone(),
            learned_only: false,
            approved_only: false,
        })
        .await?;
    let violations = enforcer
        .list_violations(v1::ListViolationsRequest {
            zone: zone.clone(),
            limit: RECENT_VIOLATIONS,
            verdict: None,
        })
        .await?;
    let (approved, learned) = view::edge_views(edges.edges)
        .into_iter()
        .partition(|e| e.approved);
    let mut members: Vec<EndpointView> = members
        .endpoints
        .into_iter()
        .map(EndpointView::from)
        .collect();
    members.sort_by(|a, b| (a.pod(), &a.key).cmp(&(b.pod(), &b.key)));
    let detail = ZoneDetailView {
        zone,
        id: summary.as_ref().map_or(0, |z| z.id),
        kind: summary
            .map(|z| view::zone_kind_word(z.kind))
            .unwrap_or_default(),
        profile: ProfileView::from(profile),
        members,
        approved,
        learned,
        recent_violations: violations
            .violations
            .into_iter()
            .map(ViolationView::from)
            .collect(),
    };
    let ctx = RenderContext::now();
    render::render_text_or_object(|| describe_text(&detail, &ctx), &detail, global.output)
}

/// `Key:  value` lines, then titled, indented tables.
pub fn describe_text(d: &ZoneDetailView, ctx: &RenderContext) -> String {
    let p = &d.profile;
    let learning = match &p.completeness {
        Some(c) if c.since_last_new_edge_ms >= 0 => format!(
            "newest edge first seen {} ago; {} new and {} seen in the last {}",
            render::format_duration_ms(c.since_last_new_edge_ms),
            c.new_in_window,
            c.seen_in_window,
            render::format_window(c.window_seconds)
        ),
        _ => "no edges seen yet".to_owned(),
    };
    let fields = [
        ("Name", d.zone.clone()),
        (
            "Id",
            if d.id == 0 {
                String::new()
            } else {
                d.id.to_string()
            },
        ),
        ("Kind", d.kind.clone()),
        ("Mode", p.mode.clone()),
        ("Quarantined", render::yes_no(p.quarantined)),
        (
            "Response",
            crate::view::ResponseView::words(p.response.as_ref()),
        ),
        ("Profile version", p.version.to_string()),
        ("Endpoints", p.endpoint_count.to_string()),
        ("Learning", learning),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 3;
    let mut out = String::new();
    for (key, value) in fields {
        let value = if value.is_empty() {
            render::NONE.to_owned()
        } else {
            value
        };
        out.push_str(&format!("{:<width$}{value}\n", format!("{key}:")));
    }
    section(
        &mut out,
        "Members",
        &[
            "POD",
            "CONTAINER",
            "IPS",
            "HOST-IF",
            "NETWORK",
            "QUARANTINED",
        ],
        d.members.iter().map(|m| {
            vec![
                m.pod(),
                render::truncate_chars(&m.key.container_id, 12),
                m.ips.join(","),
                m.host_ifname.clone(),
                m.key.network.clone(),
                m.quarantine_word(),
            ]
        }),
    );
    let edge_headers = [
        "EDGE",
        "STATUS",
        "APPROVED-IN",
        "LAST-DROP",
        "COUNT",
        "FIRST-SEEN",
        "LAST-SEEN",
        "NODES",
        "SAMPLE",
    ];
    let edge_row = |e: &EdgeView| {
        let mut cells = vec![
            e.edge.clone(),
            e.status.clone(),
            e.approved_in.join(","),
            e.last_drop_cell(ctx.now_unix_ms),
        ];
        cells.extend(get::evidence_cells(e, ctx));
        cells
    };
    section(
        &mut out,
        "Approved edges",
        &edge_headers,
        d.approved.iter().map(edge_row),
    );
    section(
        &mut out,
        "Not approved (observed: passes now; dropped: dropped now)",
        &edge_headers,
        d.learned.iter().map(edge_row),
    );
    section(
        &mut out,
        "Rejected edges (approved only by name)",
        &["EDGE"],
        p.rejected.iter().map(|e| vec![e.clone()]),
    );
    section(
        &mut out,
        "History",
        &["VERSION", "AGE", "WHO", "WHAT", "COMMENT"],
        p.history.iter().rev().map(|h| {
            vec![
                h.version.to_string(),
                render::format_age(h.at_unix_ms, ctx.now_unix_ms),
                h.who.clone(),
                h.what.clone(),
                h.comment.clone(),
            ]
        }),
    );
    let (headers, rows) = crate::get::violation_table(&d.recent_violations, ctx);
    section(&mut out, "Recent violations", &headers, rows.into_iter());
    out
}

/// Columns of the sections shown only with `-o wide`.
const WIDE_ONLY: &[&str] = &["HOST-IF", "NETWORK", "FIRST-SEEN", "NODES", "SAMPLE"];

fn section(
    out: &mut String,
    title: &str,
    headers: &[&str],
    rows: impl Iterator<Item = Vec<String>>,
) {
    let (headers, rows) = render::without_wide_only(headers, WIDE_ONLY, rows);
    let headers = &headers;
    out.push_str(&format!("{title}: {}\n", rows.len()));
    if rows.is_empty() {
        out.push_str(&format!("  {}\n", render::NONE));
        return;
    }
    for line in render::nested_table(headers, rows).lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn describe_reads_like_kubectl_describe() {
        let detail = ZoneDetailView {
            zone: "shop/api".into(),
            id: 3,
            kind: "workload".into(),
            profile: ProfileView {
                zone: "shop/api".into(),
                mode: "enforce".into(),
                version: 2,
                endpoint_count: 1,
                history: vec![view::ProfileChangeView {
                    version: 2,
                    who: "root".into(),
                    at_unix_ms: NOW - 120_000,
                    what: "mode learn -> enforce".into(),
                    comment: "go".into(),
                }],
                ..Default::default()
            },
            members: vec![EndpointView {
                pod_namespace: "shop".into(),
                pod_name: "api-0".into(),
                ips: vec!["10.0.0.2/32".into()],
                ..Default::default()
            }],
            // Dropped under version 1, approved in version 2: approved now.
            approved: vec![EdgeView {
                edge: "shop/web->shop/api:8080/tcp".into(),
                approved: true,
                approved_in: vec!["shop/api".into()],
                status: "approved".into(),
                last_drop: Some(view::EdgeDropView {
                    at_unix_ms: NOW - 300_000,
                    profile_version: 1,
                    reported_by: "shop/api".into(),
                    count: 1,
                }),
                ..Default::default()
            }],
            learned: vec![EdgeView {
                edge: "shop/job->shop/api:22/tcp".into(),
                status: "dropped".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = describe_text(&detail, &RenderContext { now_unix_ms: NOW });
        let expected = "\
Name:             shop/api
Id:               3
Kind:             workload
Mode:             enforce
Quarantined:      no
Response:         none
Profile version:  2
Endpoints:        1
Learning:         no edges seen yet
Members: 1
  POD          CONTAINER   IPS           QUARANTINED
  shop/api-0   <none>      10.0.0.2/32   no
Approved edges: 1
  EDGE                          STATUS     APPROVED-IN   LAST-DROP   COUNT    LAST-SEEN
  shop/web->shop/api:8080/tcp   approved   shop/api      5m (v1)     <none>   <none>
Not approved (observed: passes now; dropped: dropped now): 1
  EDGE                        STATUS    APPROVED-IN   LAST-DROP   COUNT    LAST-SEEN
  shop/job->shop/api:22/tcp   dropped   <none>        <none>      <none>   <none>
Rejected edges (approved only by name): 0
  <none>
History: 1
  VERSION   AGE   WHO    WHAT                    COMMENT
  2         2m    root   mode learn -> enforce   go
Recent violations: 0
  <none>
";
        assert_eq!(text, expected);
    }
}
