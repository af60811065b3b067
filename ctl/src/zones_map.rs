//! `zwctl zones map`: the zone map, as an adjacency table, JSON or YAML, Graphviz
//! `dot`, or a Mermaid `graph LR`.
//!
//! Zones are nodes (with their mode, member count and quarantine); an edge is drawn
//! by its status now: approved edges are solid arrows, edges seen that no profile
//! approves and that pass now (observed) are dashed, edges an enforcing zone drops
//! now are red and dotted (a quarantine shows on the zone, never on its edges).
//! Arrows between the same two zones with the same status are merged into one,
//! labelled with every port. In `dot`, each namespace is a `cluster_<namespace>`
//! subgraph; built-in, CIDR and plain zones stand outside; a zone's fill is its mode.

use std::collections::{BTreeMap, BTreeSet};

use clap::{Args, Subcommand};
use serde::Serialize;
use zonewarden_profiles::Edge;
use zonewarden_proto::v1;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::client::Enforcer;
use crate::render;
use crate::view::{EdgeDropView, EdgeView, mode_word, zone_kind_word};

pub const EXAMPLES: &str = "\
Examples:
  # Who talks to whom, as a table (approved and learned-but-unapproved edges)
  zwctl zones map

  # Draw it with Graphviz: one box per namespace, zones filled by mode (blue learn,
  # amber monitor, green enforce), quarantined zones with a thick red border
  zwctl zones map -o dot | dot -Tsvg > zones.svg

  # Paste it into a Markdown document that renders Mermaid
  zwctl zones map -o mermaid

  # Zones and edges as JSON: what is dropped now, and what was dropped before
  zwctl zones map -o json | jq '.edges[] | select(.status == \"dropped\")'
  zwctl zones map -o json | jq '.edges[] | select(.lastDrop) | {edge, status, lastDrop}'

An edge's status is what the table does now (approved, observed: passes without
approval, dropped: an enforcing end drops it); lastDrop is history: when it was last
dropped and the reporting zone's profile version then.";

#[derive(Debug, Subcommand)]
pub enum ZonesCommand {
    /// Show the zone map: zones, approved edges and learned, unapproved edges.
    #[command(after_help = EXAMPLES)]
    Map(MapArgs),
}

#[derive(Debug, Args)]
pub struct MapArgs {}

/// One zone of the map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapZone {
    pub zone: String,
    /// workload, config, builtin, ...; empty when only edges name the zone.
    pub kind: String,
    /// learn, monitor or enforce; empty for built-in zones.
    pub mode: String,
    pub quarantined: bool,
    pub endpoint_count: u32,
}

/// One edge of the map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapEdge {
    pub edge: String,
    pub src: String,
    pub dst: String,
    /// `8080/tcp`, or `icmp`.
    pub service: String,
    pub approved: bool,
    pub learned: bool,
    /// What the table does now: `approved`, `observed` or `dropped`.
    pub status: String,
    /// History: the newest drop by an enforcing zone among the recent reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_drop: Option<EdgeDropView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZoneMap {
    pub kind: &'static str,
    pub zones: Vec<MapZone>,
    pub edges: Vec<MapEdge>,
}

pub async fn run(command: &ZonesCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    let ZonesCommand::Map(MapArgs {}) = command;
    let mut enforcer = Enforcer::connect(global).await?;
    let zones = enforcer.list_zones().await?;
    let profiles = enforcer
        .list_profiles(v1::ListProfilesRequest::default())
        .await?;
    let edges = enforcer.list_edges(v1::ListEdgesRequest::default()).await?;
    let map = build(zones, profiles, edges);
    render_map(&map, global.output)
}

pub fn build(
    zones: v1::ListZonesResponse,
    profiles: v1::ListProfilesResponse,
    edges: v1::ListEdgesResponse,
) -> ZoneMap {
    let mut nodes: BTreeMap<String, MapZone> = BTreeMap::new();
    for z in zones.zones {
        nodes.insert(
            z.name.clone(),
            MapZone {
                zone: z.name,
                kind: zone_kind_word(z.kind),
                endpoint_count: z.endpoint_count,
                ..Default::default()
            },
        );
    }
    for p in profiles.profiles {
        let node = nodes.entry(p.zone.clone()).or_insert_with(|| MapZone {
            zone: p.zone.clone(),
            ..Default::default()
        });
        node.mode = mode_word(p.mode);
        node.quarantined = p.quarantined;
        node.endpoint_count = node.endpoint_count.max(p.endpoint_count);
    }
    let mut map_edges = Vec::new();
    for e in edges.edges {
        let Ok(edge) = e.edge.parse::<Edge>() else {
            continue;
        };
        for zone in [&edge.src, &edge.dst] {
            nodes.entry(zone.to_string()).or_insert_with(|| MapZone {
                zone: zone.to_string(),
                kind: if zone.is_builtin() {
                    "builtin".to_owned()
                } else {
                    String::new()
                },
                ..Default::default()
            });
        }
        let e = EdgeView::from(e);
        // An enforcer that says no status: what its approval flag says.
        let status = match (e.status.as_str(), e.approved) {
            ("", true) => "approved".to_owned(),
            ("", false) => "observed".to_owned(),
            (status, _) => status.to_owned(),
        };
        map_edges.push(MapEdge {
            src: edge.src.to_string(),
            dst: edge.dst.to_string(),
            service: edge.service(),
            edge: e.edge,
            approved: e.approved,
            learned: e.learned,
            status,
            last_drop: e.last_drop,
        });
    }
    map_edges.sort_by(|a, b| a.edge.cmp(&b.edge));
    ZoneMap {
        kind: "ZoneMap",
        zones: nodes.into_values().collect(),
        edges: map_edges,
    }
}

pub fn render_map(map: &ZoneMap, format: OutputFormat) -> anyhow::Result<String> {
    match format {
        OutputFormat::Table | OutputFormat::Wide => Ok(table(map)),
        OutputFormat::Json | OutputFormat::Yaml => {
            render::render_text_or_object(String::new, map, format)
        }
        OutputFormat::Dot => Ok(dot(map)),
        OutputFormat::Mermaid => Ok(mermaid(map)),
    }
}

/// Arrows between the same zones with the same status, merged: (src, dst, status) → services.
fn arrows(map: &ZoneMap) -> BTreeMap<(&str, &str, &str), BTreeSet<&str>> {
    let mut arrows: BTreeMap<(&str, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    for e in &map.edges {
        arrows
            .entry((&e.src, &e.dst, &e.status))
            .or_default()
            .insert(&e.service);
    }
    arrows
}

fn node_label(n: &MapZone) -> String {
    let mut facts = Vec::new();
    if !n.mode.is_empty() {
        facts.push(n.mode.clone());
    }
    if n.quarantined {
        facts.push("QUARANTINED".to_owned());
    }
    if n.kind != "builtin" {
        facts.push(format!(
            "{} endpoint{}",
            n.endpoint_count,
            if n.endpoint_count == 1 { "" } else { "s" }
        ));
    }
    facts.join(", ")
}

/// One row per zone: what it may reach (approved), what it was seen reaching without
/// approval that passes now (observed), and what is dropped now.
fn table(map: &ZoneMap) -> String {
    let arrows = arrows(map);
    let rows = map.zones.iter().map(|n| {
        let to = |status: &str| {
            arrows
                .iter()
                .filter(|((src, _, s), _)| *src == n.zone && *s == status)
                .map(|((_, dst, _), services)| {
                    format!(
                        "{dst}:{}",
                        services.iter().copied().collect::<Vec<_>>().join("+")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            n.zone.clone(),
            n.mode.clone(),
            if n.kind == "builtin" {
                String::new()
            } else {
                n.endpoint_count.to_string()
            },
            render::yes_no(n.quarantined),
            to("approved"),
            to("observed"),
            to("dropped"),
        ]
    });
    render::table(
        &[
            "ZONE",
            "MODE",
            "ENDPOINTS",
            "QUARANTINED",
            "APPROVED-TO",
            "OBSERVED-TO (NOT APPROVED)",
            "DROPPED-TO",
        ],
        rows,
    )
}

fn dot_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The fill of a zone's box by mode (the page's colours, lightened so labels read).
fn mode_fill(mode: &str) -> Option<&'static str> {
    match mode {
        "learn" => Some("#dbeafe"),
        "monitor" => Some("#fde68a"),
        "enforce" => Some("#bbf7d0"),
        _ => None,
    }
}

/// The namespace whose cluster a zone is drawn in; `None` for built-in, CIDR and
/// plain zones, which stand outside every cluster.
fn cluster_of(n: &MapZone) -> Option<&str> {
    if n.kind == "builtin" || n.kind == "cidr" {
        return None;
    }
    n.zone.split_once('/').map(|(namespace, _)| namespace)
}

fn dot_node(n: &MapZone, indent: &str) -> String {
    let facts = node_label(n);
    let label = if facts.is_empty() {
        n.zone.clone()
    } else {
        format!("{}\\n{facts}", n.zone)
    };
    let mut attrs = format!("label=\"{}\"", label.replace('"', "\\\""));
    if n.kind == "builtin" {
        attrs.push_str(", shape=ellipse");
    }
    if let Some(fill) = mode_fill(&n.mode) {
        attrs.push_str(&format!(", style=\"rounded,filled\", fillcolor=\"{fill}\""));
    }
    if n.quarantined {
        attrs.push_str(", color=red, penwidth=3");
    }
    format!("{indent}{} [{attrs}];\n", dot_quote(&n.zone))
}

fn dot(map: &ZoneMap) -> String {
    let mut out = String::from(
        "// zonewarden zone map: solid = approved, dashed = observed, not approved, red dotted = dropped now;\n\
         // fill: blue = learn, amber = monitor, green = enforce; thick red border = quarantined\n\
         digraph zonewarden {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
    );
    let mut clusters: BTreeMap<&str, Vec<&MapZone>> = BTreeMap::new();
    for n in &map.zones {
        match cluster_of(n) {
            Some(namespace) => clusters.entry(namespace).or_default().push(n),
            None => out.push_str(&dot_node(n, "  ")),
        }
    }
    for (namespace, zones) in clusters {
        out.push_str(&format!(
            "  subgraph {} {{\n    label={};\n    style=rounded;\n",
            dot_quote(&format!("cluster_{namespace}")),
            dot_quote(namespace)
        ));
        for n in zones {
            out.push_str(&dot_node(n, "    "));
        }
        out.push_str("  }\n");
    }
    for ((src, dst, status), services) in arrows(map) {
        let label = services.into_iter().collect::<Vec<_>>().join(", ");
        let style = match status {
            "approved" => "",
            "dropped" => ", style=dotted, color=red",
            _ => ", style=dashed",
        };
        out.push_str(&format!(
            "  {} -> {} [label={}{style}];\n",
            dot_quote(src),
            dot_quote(dst),
            dot_quote(&label)
        ));
    }
    out.push_str("}\n");
    out
}

fn mermaid_text(text: &str) -> String {
    text.replace('"', "#quot;")
}

fn mermaid(map: &ZoneMap) -> String {
    let ids: BTreeMap<&str, String> = map
        .zones
        .iter()
        .enumerate()
        .map(|(i, n)| (n.zone.as_str(), format!("z{i}")))
        .collect();
    let mut out = String::from(
        "%% zonewarden zone map: solid = approved, dashed = observed, not approved, x = dropped now\ngraph LR\n",
    );
    for n in &map.zones {
        let facts = node_label(n);
        let label = if facts.is_empty() {
            mermaid_text(&n.zone)
        } else {
            format!("{}<br/>{}", mermaid_text(&n.zone), mermaid_text(&facts))
        };
        let (open, close) = if n.kind == "builtin" {
            ("([", "])")
        } else {
            ("[", "]")
        };
        out.push_str(&format!(
            "  {}{open}\"{label}\"{close}\n",
            ids[n.zone.as_str()]
        ));
    }
    for ((src, dst, status), services) in arrows(map) {
        let label = services.into_iter().collect::<Vec<_>>().join(", ");
        let arrow = match status {
            "approved" => "-->",
            "dropped" => "--x",
            _ => "-.->",
        };
        out.push_str(&format!(
            "  {} {arrow}|\"{}\"| {}\n",
            ids[src],
            mermaid_text(&label),
            ids[dst]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ZoneMap {
        let zones = v1::ListZonesResponse {
            zones: vec![
                v1::Zone {
                    name: "shop/api".into(),
                    id: 2,
                    kind: v1::ZoneKind::Workload.into(),
                    endpoint_count: 2,
                    members: vec![],
                    ..Default::default()
                },
                v1::Zone {
                    name: "shop/web".into(),
                    id: 1,
                    kind: v1::ZoneKind::Workload.into(),
                    endpoint_count: 1,
                    members: vec![],
                    ..Default::default()
                },
            ],
        };
        let profiles = v1::ListProfilesResponse {
            profiles: vec![
                v1::Profile {
                    zone: "shop/api".into(),
                    mode: v1::Mode::Enforce.into(),
                    endpoint_count: 2,
                    ..Default::default()
                },
                v1::Profile {
                    zone: "shop/web".into(),
                    mode: v1::Mode::Learn.into(),
                    quarantined: true,
                    endpoint_count: 1,
                    ..Default::default()
                },
            ],
        };
        let edge = |e: &str, approved: bool, status: v1::EdgeStatus| v1::EdgeInfo {
            edge: e.into(),
            learned: true,
            approved,
            status: status.into(),
            ..Default::default()
        };
        let mut approved_after_a_drop = edge(
            "shop/web->shop/api:9090/tcp",
            true,
            v1::EdgeStatus::Approved,
        );
        approved_after_a_drop.last_drop = Some(v1::EdgeDrop {
            at_unix_ms: 5,
            profile_version: 1,
            reported_by: "shop/api".into(),
            count: 1,
        });
        let edges = v1::ListEdgesResponse {
            edges: vec![
                edge(
                    "shop/web->shop/api:8080/tcp",
                    true,
                    v1::EdgeStatus::Approved,
                ),
                approved_after_a_drop,
                edge("shop/api->world:443/tcp", false, v1::EdgeStatus::Dropped),
                edge("shop/web->world:53/udp", false, v1::EdgeStatus::Observed),
            ],
        };
        build(zones, profiles, edges)
    }

    #[test]
    fn the_map_has_every_zone_and_edge() {
        let map = sample();
        let names: Vec<&str> = map.zones.iter().map(|n| n.zone.as_str()).collect();
        assert_eq!(names, ["shop/api", "shop/web", "world"]);
        assert_eq!(map.zones[2].kind, "builtin");
        assert_eq!(map.edges.len(), 4);
        assert_eq!(map.edges[0].service, "443/tcp");
    }

    #[test]
    fn table_is_an_adjacency_list() {
        assert_eq!(
            render_map(&sample(), OutputFormat::Table).unwrap(),
            "\
ZONE       MODE      ENDPOINTS   QUARANTINED   APPROVED-TO                  OBSERVED-TO (NOT APPROVED)   DROPPED-TO
shop/api   enforce   2           no            <none>                       <none>                       world:443/tcp
shop/web   learn     1           yes           shop/api:8080/tcp+9090/tcp   world:53/udp                 <none>
world      <none>    <none>      no            <none>                       <none>                       <none>
"
        );
    }

    #[test]
    fn dot_draws_approved_solid_observed_dashed_and_dropped_red() {
        assert_eq!(
            render_map(&sample(), OutputFormat::Dot).unwrap(),
            r##"// zonewarden zone map: solid = approved, dashed = observed, not approved, red dotted = dropped now;
// fill: blue = learn, amber = monitor, green = enforce; thick red border = quarantined
digraph zonewarden {
  rankdir=LR;
  node [shape=box, style=rounded];
  "world" [label="world", shape=ellipse];
  subgraph "cluster_shop" {
    label="shop";
    style=rounded;
    "shop/api" [label="shop/api\nenforce, 2 endpoints", style="rounded,filled", fillcolor="#bbf7d0"];
    "shop/web" [label="shop/web\nlearn, QUARANTINED, 1 endpoint", style="rounded,filled", fillcolor="#dbeafe", color=red, penwidth=3];
  }
  "shop/api" -> "world" [label="443/tcp", style=dotted, color=red];
  "shop/web" -> "shop/api" [label="8080/tcp, 9090/tcp"];
  "shop/web" -> "world" [label="53/udp", style=dashed];
}
"##
        );
    }

    #[test]
    fn dot_draws_a_cluster_per_namespace_and_built_in_zones_outside() {
        let zone = |name: &str, kind: &str, mode: &str| MapZone {
            zone: name.into(),
            kind: kind.into(),
            mode: mode.into(),
            ..Default::default()
        };
        let map = ZoneMap {
            zones: vec![
                zone("billing/api", "workload", "monitor"),
                zone("corp-dns", "cidr", ""),
                zone("host", "builtin", ""),
                zone("shop/db", "workload", "enforce"),
                zone("shop/web", "workload", "learn"),
                zone("solo", "config", "learn"),
            ],
            ..Default::default()
        };
        let out = render_map(&map, OutputFormat::Dot).unwrap();
        let cluster = |ns: &str| {
            let start = out
                .find(&format!("subgraph \"cluster_{ns}\" {{"))
                .unwrap_or_else(|| panic!("no cluster {ns}:\n{out}"));
            out[start..].split("  }\n").next().unwrap().to_owned()
        };
        let shop = cluster("shop");
        assert!(shop.contains("label=\"shop\";"), "{shop}");
        assert!(shop.contains("\"shop/db\" [") && shop.contains("\"shop/web\" ["));
        assert!(
            shop.contains("fillcolor=\"#bbf7d0\""),
            "enforce is green: {shop}"
        );
        assert!(!shop.contains("billing/api"));
        assert!(cluster("billing").contains("fillcolor=\"#fde68a\""));
        assert_eq!(out.matches("subgraph").count(), 2, "{out}");
        for outside in ["corp-dns", "host", "solo"] {
            assert!(
                out.contains(&format!("\n  \"{outside}\" [")),
                "{outside} stands outside the clusters:\n{out}"
            );
        }
    }

    #[test]
    fn mermaid_is_a_graph_lr() {
        assert_eq!(
            render_map(&sample(), OutputFormat::Mermaid).unwrap(),
            "\
%% zonewarden zone map: solid = approved, dashed = observed, not approved, x = dropped now
graph LR
  z0[\"shop/api<br/>enforce, 2 endpoints\"]
  z1[\"shop/web<br/>learn, QUARANTINED, 1 endpoint\"]
  z2([\"world\"])
  z0 --x|\"443/tcp\"| z2
  z1 -->|\"8080/tcp, 9090/tcp\"| z0
  z1 -.->|\"53/udp\"| z2
"
        );
    }

    #[test]
    fn json_has_zones_and_edges() {
        let text = render_map(&sample(), OutputFormat::Json).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["kind"], "ZoneMap");
        assert_eq!(json["zones"][0]["endpointCount"], 2);
        assert_eq!(json["zones"][0]["zone"], "shop/api");
        assert_eq!(json["edges"][0]["approved"], false);
        assert_eq!(json["edges"][0]["status"], "dropped");
        assert!(json["edges"][0].get("lastDrop").is_none());
        // Approved after a drop: approved now, the drop is history.
        let healed = &json["edges"][2];
        assert_eq!(healed["edge"], "shop/web->shop/api:9090/tcp");
        assert_eq!(healed["status"], "approved");
        assert_eq!(healed["lastDrop"]["profileVersion"], 1);
    }
}
