//! `zwctl zones map`: the zone map, as an adjacency table, JSON or YAML, Graphviz
//! `dot`, or a Mermaid `graph LR`.
//!
//! Zones are nodes (with their mode and member count); approved edges are solid
//! arrows, edges learned from traffic that no profile approves are dashed. Arrows
//! between the same two zones with the same state are merged into one, labelled
//! with every port.

use std::collections::{BTreeMap, BTreeSet};

use clap::{Args, Subcommand};
use serde::Serialize;
use zonewarden_profiles::Edge;
use zonewarden_proto::v1;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::client::Enforcer;
use crate::render;
use crate::view::{mode_word, zone_kind_word};

pub const EXAMPLES: &str = "\
Examples:
  # Who talks to whom, as a table (approved and learned-but-unapproved edges)
  zwctl zones map

  # Draw it with Graphviz
  zwctl zones map -o dot | dot -Tsvg > zones.svg

  # Paste it into a Markdown document that renders Mermaid
  zwctl zones map -o mermaid

  # Nodes and edges as JSON
  zwctl zones map -o json | jq '.edges[] | select(.approved | not)'";

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
pub struct MapNode {
    pub name: String,
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZoneMap {
    pub kind: &'static str,
    pub nodes: Vec<MapNode>,
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
    let mut nodes: BTreeMap<String, MapNode> = BTreeMap::new();
    for z in zones.zones {
        nodes.insert(
            z.name.clone(),
            MapNode {
                name: z.name,
                kind: zone_kind_word(z.kind),
                endpoint_count: z.endpoint_count,
                ..Default::default()
            },
        );
    }
    for p in profiles.profiles {
        let node = nodes.entry(p.zone.clone()).or_insert_with(|| MapNode {
            name: p.zone.clone(),
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
            nodes.entry(zone.to_string()).or_insert_with(|| MapNode {
                name: zone.to_string(),
                kind: if zone.is_builtin() {
                    "builtin".to_owned()
                } else {
                    String::new()
                },
                ..Default::default()
            });
        }
        map_edges.push(MapEdge {
            src: edge.src.to_string(),
            dst: edge.dst.to_string(),
            service: edge.service(),
            edge: e.edge,
            approved: e.approved,
            learned: e.learned,
        });
    }
    map_edges.sort_by(|a, b| a.edge.cmp(&b.edge));
    ZoneMap {
        kind: "ZoneMap",
        nodes: nodes.into_values().collect(),
        edges: map_edges,
    }
}

pub fn render_map(map: &ZoneMap, format: OutputFormat) -> anyhow::Result<String> {
    match format {
        OutputFormat::Table => Ok(table(map)),
        OutputFormat::Json | OutputFormat::Yaml => {
            render::render_text_or_object(String::new, map, format)
        }
        OutputFormat::Dot => Ok(dot(map)),
        OutputFormat::Mermaid => Ok(mermaid(map)),
    }
}

/// Arrows between the same zones with the same state, merged: (src, dst, approved) → services.
fn arrows(map: &ZoneMap) -> BTreeMap<(&str, &str, bool), BTreeSet<&str>> {
    let mut arrows: BTreeMap<(&str, &str, bool), BTreeSet<&str>> = BTreeMap::new();
    for e in &map.edges {
        arrows
            .entry((&e.src, &e.dst, e.approved))
            .or_default()
            .insert(&e.service);
    }
    arrows
}

fn node_label(n: &MapNode) -> String {
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

/// One row per zone: what it may reach (approved) and what it was seen reaching
/// without approval.
fn table(map: &ZoneMap) -> String {
    let arrows = arrows(map);
    let rows = map.nodes.iter().map(|n| {
        let to = |approved: bool| {
            arrows
                .iter()
                .filter(|((src, _, a), _)| *src == n.name && *a == approved)
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
            n.name.clone(),
            n.mode.clone(),
            if n.kind == "builtin" {
                String::new()
            } else {
                n.endpoint_count.to_string()
            },
            render::yes_no(n.quarantined),
            to(true),
            to(false),
        ]
    });
    render::table(
        &[
            "ZONE",
            "MODE",
            "ENDPOINTS",
            "QUARANTINED",
            "APPROVED-TO",
            "LEARNED-TO (NOT APPROVED)",
        ],
        rows,
    )
}

fn dot_quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot(map: &ZoneMap) -> String {
    let mut out = String::from(
        "// zonewarden zone map: solid = approved, dashed = learned, not approved\n\
         digraph zonewarden {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
    );
    for n in &map.nodes {
        let facts = node_label(n);
        let label = if facts.is_empty() {
            n.name.clone()
        } else {
            format!("{}\\n{facts}", n.name)
        };
        let mut attrs = format!("label=\"{}\"", label.replace('"', "\\\""));
        if n.kind == "builtin" {
            attrs.push_str(", shape=ellipse");
        }
        if n.quarantined {
            attrs.push_str(", color=red");
        }
        out.push_str(&format!("  {} [{attrs}];\n", dot_quote(&n.name)));
    }
    for ((src, dst, approved), services) in arrows(map) {
        let label = services.into_iter().collect::<Vec<_>>().join(", ");
        let style = if approved { "" } else { ", style=dashed" };
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
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), format!("z{i}")))
        .collect();
    let mut out = String::from(
        "%% zonewarden zone map: solid = approved, dashed = learned, not approved\ngraph LR\n",
    );
    for n in &map.nodes {
        let facts = node_label(n);
        let label = if facts.is_empty() {
            mermaid_text(&n.name)
        } else {
            format!("{}<br/>{}", mermaid_text(&n.name), mermaid_text(&facts))
        };
        let (open, close) = if n.kind == "builtin" {
            ("([", "])")
        } else {
            ("[", "]")
        };
        out.push_str(&format!(
            "  {}{open}\"{label}\"{close}\n",
            ids[n.name.as_str()]
        ));
    }
    for ((src, dst, approved), services) in arrows(map) {
        let label = services.into_iter().collect::<Vec<_>>().join(", ");
        let arrow = if approved { "-->" } else { "-.->" };
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
        let edge = |e: &str, approved: bool| v1::EdgeInfo {
            edge: e.into(),
            learned: true,
            approved,
            ..Default::default()
        };
        let edges = v1::ListEdgesResponse {
            edges: vec![
                edge("shop/web->shop/api:8080/tcp", true),
                edge("shop/web->shop/api:9090/tcp", true),
                edge("shop/api->world:443/tcp", false),
            ],
        };
        build(zones, profiles, edges)
    }

    #[test]
    fn the_map_has_every_zone_and_edge() {
        let map = sample();
        let names: Vec<&str> = map.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["shop/api", "shop/web", "world"]);
        assert_eq!(map.nodes[2].kind, "builtin");
        assert_eq!(map.edges.len(), 3);
        assert_eq!(map.edges[0].service, "443/tcp");
    }

    #[test]
    fn table_is_an_adjacency_list() {
        assert_eq!(
            render_map(&sample(), OutputFormat::Table).unwrap(),
            "\
ZONE       MODE      ENDPOINTS   QUARANTINED   APPROVED-TO                  LEARNED-TO (NOT APPROVED)
shop/api   enforce   2           no            <none>                       world:443/tcp
shop/web   learn     1           yes           shop/api:8080/tcp+9090/tcp   <none>
world      <none>    <none>      no            <none>                       <none>
"
        );
    }

    #[test]
    fn dot_draws_approved_solid_and_learned_dashed() {
        assert_eq!(
            render_map(&sample(), OutputFormat::Dot).unwrap(),
            r#"// zonewarden zone map: solid = approved, dashed = learned, not approved
digraph zonewarden {
  rankdir=LR;
  node [shape=box, style=rounded];
  "shop/api" [label="shop/api\nenforce, 2 endpoints"];
  "shop/web" [label="shop/web\nlearn, QUARANTINED, 1 endpoint", color=red];
  "world" [label="world", shape=ellipse];
  "shop/api" -> "world" [label="443/tcp", style=dashed];
  "shop/web" -> "shop/api" [label="8080/tcp, 9090/tcp"];
}
"#
        );
    }

    #[test]
    fn mermaid_is_a_graph_lr() {
        assert_eq!(
            render_map(&sample(), OutputFormat::Mermaid).unwrap(),
            "\
%% zonewarden zone map: solid = approved, dashed = learned, not approved
graph LR
  z0[\"shop/api<br/>enforce, 2 endpoints\"]
  z1[\"shop/web<br/>learn, QUARANTINED, 1 endpoint\"]
  z2([\"world\"])
  z0 -.->|\"443/tcp\"| z2
  z1 -->|\"8080/tcp, 9090/tcp\"| z0
"
        );
    }

    #[test]
    fn json_has_nodes_and_edges() {
        let text = render_map(&sample(), OutputFormat::Json).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["kind"], "ZoneMap");
        assert_eq!(json["nodes"][0]["endpointCount"], 2);
        assert_eq!(json["edges"][0]["approved"], false);
    }
}
