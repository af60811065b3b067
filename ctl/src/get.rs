//! `zwctl get ...`: list resources known to the enforcer.
//!
//! A resource is one variant of [`GetCommand`], one arm of [`run`] and one
//! [`TableRow`] impl.

use clap::{Args, Subcommand};
use zonewarden_profiles::event::ReportKind;
use zonewarden_proto::v1;

use crate::choice;
use crate::cli::GlobalArgs;
use crate::client::Enforcer;
use crate::render::{self, RenderContext, TableRow};
use crate::view::{self, EdgeView, EndpointView, ProfileView, ViolationView, ZoneView};
use zonewarden_proto::model::verdict_to_proto;

pub const EXAMPLES: &str = "\
Examples:
  # Every container attachment on this node
  zwctl get endpoints

  # Every zone and its members
  zwctl get zones

  # What each zone talks to, learned and approved
  zwctl get edges --zone shop/frontend

  # Each zone's mode, approved edges and how settled its learning is
  zwctl get profiles

  # What was dropped or reported lately
  zwctl get violations --verdict drop

  # As JSON or YAML, for scripts
  zwctl get zones -o yaml";

const ENDPOINTS_EXAMPLES: &str = "\
Columns:
  ZONE       the zone the container is in (its workload identity)
  POD        namespace/name of the Kubernetes pod, <none> outside Kubernetes
  CONTAINER  the first 12 characters of the container (sandbox) id
  IFNAME     the interface name inside the container
  IPS        the container's addresses
  HOST-IF    the host side of the container's interface
  MODE       routed (zonewarden made the interface), chained (after another plugin)
             or sidecar (zonewarden-enforcer --sidecar inside the pod)
  NETWORK    the CNI network name
  NODE       the node the container runs on (cluster mode lists every live node's)
  QUARANTINED  no, endpoint (quarantined one by one), zone (its zone is), or both
  AGE        how long ago the attachment was made

Examples:
  # Every endpoint on this node
  zwctl get endpoints

  # Only the pods of one workload
  zwctl get endpoints --zone shop/checkout

  # Only one CNI network, as JSON
  zwctl get endpoints --network zonewarden -o json

  # Only the pods of one node (cluster mode)
  zwctl get endpoints --node node-b

  # Container ids and addresses, for scripts
  zwctl get endpoints -o json | jq -r '.items[] | [.key.containerId, .ips[]] | @tsv'";

const ZONES_EXAMPLES: &str = "\
Columns:
  ZONE       the zone name: namespace/workload in Kubernetes, or a built-in (host, world)
  ID         the number the nftables rules use for this zone
  KIND       workload, config, builtin, ...
  ENDPOINTS  how many container attachments on this node are in the zone
  MEMBERS    the first members of the zone, then how many more

Examples:
  # Every zone on this node
  zwctl get zones

  # All members of every zone, not just the first three
  zwctl get zones -o yaml";

const EDGES_EXAMPLES: &str = "\
An edge is SRC->DST:PORT/PROTO (e.g. shop/frontend->shop/api:8080/tcp) or SRC->DST:icmp:
the source zone opens connections to the destination zone on that port. The enforcer
learns edges from traffic; an operator approves them into a zone's profile.

Columns:
  EDGE        the edge
  STATUS      what the table does NOW with a new connection over the edge:
                approved  a profile of either end approves it: it passes
                observed  seen, approved by no profile, no end enforces: it passes
                dropped   approved by no profile, an end enforces: it is dropped
              (a quarantine shows on the zone and its endpoints, not here)
  APPROVED    the zones whose profiles approve the edge, or no
  LAST-DROP   history: when an enforcing zone last dropped it, and that zone's
              profile version then (e.g. 5m (v3): dropped before approval v4)
  COUNT       how many new connections were seen (<none>: never seen)
  FIRST-SEEN  how long ago the first connection was seen
  LAST-SEEN   how long ago the last connection was seen
  NODES       the nodes that saw it
  SAMPLE      one connection of the edge: source address:port -> destination address:port/protocol

Examples:
  # Every edge on this node
  zwctl get edges

  # What one zone talks to and is talked to by
  zwctl get edges --zone shop/frontend

  # Learned edges (approved or not), or only approved ones
  zwctl get edges --zone shop/frontend --learned
  zwctl get edges --approved

  # Learned edges nobody approved yet, for scripts
  zwctl get edges --learned -o json | jq -r '.items[] | select(.approved | not) | .edge'";

const PROFILES_EXAMPLES: &str = "\
Columns:
  ZONE           the zone
  MODE           learn (allow and record), monitor (allow, report unapproved edges)
                 or enforce (drop unapproved edges)
  QUARANTINED    yes when the whole zone is cut off (everything but the host zone is dropped)
  VERSION        the profile version; every approval, removal or mode change adds one
  APPROVED       how many edges the profile approves
  ENDPOINTS      how many of the zone's containers run on this node
  LAST-NEW-EDGE  how long ago the zone's newest edge was first seen (<none>: no edges yet)
  NEW/WINDOW     how many new edges appeared in the learning window, e.g. \"0 in 1h\":
                 when it stays 0 for long enough, learning has seen the zone's traffic

Examples:
  # Every profile: which zones are still learning, which are enforced
  zwctl get profiles

  # One zone, with its approved edges and history (who changed what, when, why)
  zwctl get profiles shop/frontend -o yaml

  # Zones still in learn mode, for scripts
  zwctl get profiles -o json | jq -r '.items[] | select(.mode == \"learn\") | .zone'";

const VIOLATIONS_EXAMPLES: &str = "\
Verdicts:
  drop        an enforcing zone dropped a connection over an unapproved edge
  violation   a zone in monitor mode saw an unapproved edge (the connection passed)
  quarantine  a quarantined zone or endpoint tried to talk to something but the host
  spoof       a container sent from an address that is not its own

Columns:
  AGE              how long ago it happened (the newest of the repeats)
  VERDICT          drop, violation, quarantine or spoof
  EDGE             the edge of the connection
  SRC              source address:port
  DST              destination
  COUNT            repeats of the same verdict and edge folded into this line
  REPORTED-BY      the zone whose rule reported it
  PROFILE-VERSION  that zone's profile version in force at the time
  RESPONSE         the automatic response rule (violations, new-port) of the source's
                   zone that this report made quarantine the source (shown when a line
                   has one; -o json names it in full: response:ZONE:RULE)

Examples:
  # The newest 100 drops and violations on this node
  zwctl get violations

  # What the enforcer dropped for one zone
  zwctl get violations --zone shop/db --verdict drop

  # The last 10, as JSON
  zwctl get violations --limit 10 -o json

  # The reports that made a response rule quarantine their source
  zwctl get violations -o json | jq '.items[] | select(.response)'";

/// The resources `get` lists.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List container attachments (endpoints) and the zone of each.
    #[command(visible_aliases = ["endpoint", "ep"], after_help = ENDPOINTS_EXAMPLES)]
    Endpoints(EndpointsArgs),

    /// List zones, their data-plane ids and members.
    #[command(visible_alias = "zone", after_help = ZONES_EXAMPLES)]
    Zones(ZonesArgs),

    /// List learned and approved edges (zone -> zone, port, protocol) with their evidence.
    #[command(visible_alias = "edge", after_help = EDGES_EXAMPLES)]
    Edges(EdgesArgs),

    /// List zone profiles: mode, quarantine, approved edges, learning progress.
    #[command(visible_aliases = ["profile", "prof"], after_help = PROFILES_EXAMPLES)]
    Profiles(ProfilesArgs),

    /// List recent drops and monitor-mode violations, newest first.
    #[command(visible_aliases = ["violation", "vio"], after_help = VIOLATIONS_EXAMPLES)]
    Violations(ViolationsArgs),
}

#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// Only endpoints of this CNI network (the "name" of the network config).
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,

    /// Only endpoints in this zone (e.g. shop/checkout).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// Only endpoints of this node (the name its enforcer runs with: --node, the
    /// hostname by default; in cluster mode every node lists every live node's).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
}

#[derive(Debug, Args)]
pub struct ZonesArgs {}

#[derive(Debug, Args)]
pub struct EdgesArgs {
    /// Only edges from or to this zone (e.g. shop/frontend).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// Only edges the enforcer learned from traffic (approved or not).
    #[arg(long, conflicts_with = "approved")]
    pub learned: bool,

    /// Only edges some profile approves (seen or not).
    #[arg(long)]
    pub approved: bool,
}

#[derive(Debug, Args)]
pub struct ProfilesArgs {
    /// Only this zone's profile (e.g. shop/frontend); every zone without it.
    #[arg(value_name = "ZONE")]
    pub zone: Option<String>,
}

#[derive(Debug, Args)]
pub struct ViolationsArgs {
    /// Only violations from or to this zone (e.g. shop/db).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,

    /// Only this kind of verdict.
    #[arg(
        long,
        value_name = "VERDICT",
        value_parser = choice::parser(&ReportKind::ALL, ReportKind::as_str, verdict_help)
    )]
    pub verdict: Option<ReportKind>,

    /// At most this many entries (the enforcer's default: 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// What happened to a reported connection, for `--help` and completions.
fn verdict_help(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Drop => "An enforcing zone dropped it",
        ReportKind::Violation => "A zone in monitor mode reported it and let it pass",
        ReportKind::Quarantine => "A quarantined zone or endpoint was cut off",
        ReportKind::Spoof => "The source address was not the container's own",
    }
}

/// Runs one `get` command and returns what to print on stdout.
pub async fn run(command: &GetCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    let mut enforcer = Enforcer::connect(global).await?;
    let ctx = RenderContext::now();
    match command {
        GetCommand::Endpoints(args) => {
            let request = v1::ListEndpointsRequest {
                network: args.network.clone().unwrap_or_default(),
                zone: args.zone.clone().unwrap_or_default(),
                node: args.node.clone().unwrap_or_default(),
            };
            let endpoints = endpoint_views(enforcer.list_endpoints(request).await?);
            if endpoints.is_empty() && global.output.is_table() {
                match &args.node {
                    Some(node) => eprintln!(
                        "No endpoints found on node {node:?} (zwctl get endpoints lists the nodes that have some)."
                    ),
                    None => eprintln!("No endpoints found."),
                }
            }
            render::render_list("EndpointList", &endpoints, global.output, &ctx)
        }
        GetCommand::Zones(ZonesArgs {}) => {
            let mut zones = zone_views(enforcer.list_zones().await?);
            let profiles = enforcer
                .list_profiles(v1::ListProfilesRequest::default())
                .await?;
            set_modes(&mut zones, &profiles);
            if zones.is_empty() && global.output.is_table() {
                eprintln!("No zones found.");
            }
            render::render_list("ZoneList", &zones, global.output, &ctx)
        }
        GetCommand::Edges(args) => {
            let request = v1::ListEdgesRequest {
                zone: args.zone.clone().unwrap_or_default(),
                learned_only: args.learned,
                approved_only: args.approved,
            };
            let edges = view::edge_views(enforcer.list_edges(request).await?.edges);
            if edges.is_empty() && global.output.is_table() {
                eprintln!("No edges found.");
            }
            render::render_list("EdgeList", &edges, global.output, &ctx)
        }
        GetCommand::Profiles(args) => {
            let zone = args.zone.clone().unwrap_or_default();
            let request = v1::ListProfilesRequest { zone: zone.clone() };
            let profiles = profile_views(enforcer.list_profiles(request).await?);
            if profiles.is_empty() {
                if !zone.is_empty() {
                    anyhow::bail!(
                        "zone {zone:?} has no profile and no endpoints on this node \
                         (zwctl get profiles lists every zone that has)"
                    );
                }
                if global.output.is_table() {
                    eprintln!("No profiles found.");
                }
            }
            render::render_list("ProfileList", &profiles, global.output, &ctx)
        }
        GetCommand::Violations(args) => {
            let request = v1::ListViolationsRequest {
                zone: args.zone.clone().unwrap_or_default(),
                limit: args.limit.unwrap_or(0),
                verdict: args.verdict.map(|kind| verdict_to_proto(Some(kind)).into()),
            };
            let violations = violation_views(enforcer.list_violations(request).await?);
            if violations.is_empty() && global.output.is_table() {
                eprintln!("No violations found.");
            }
            if global.output.is_table() {
                if violations.is_empty() {
                    return Ok(String::new());
                }
                let (headers, rows) = violation_table(&violations, &ctx);
                return Ok(render::table(&headers, rows));
            }
            render::render_list("ViolationList", &violations, global.output, &ctx)
        }
    }
}

/// Views in a stable order: by zone, then pod, then attachment.
fn endpoint_views(response: v1::ListEndpointsResponse) -> Vec<EndpointView> {
    let mut views: Vec<EndpointView> = response
        .endpoints
        .into_iter()
        .map(EndpointView::from)
        .collect();
    views.sort_by(|a, b| {
        (&a.zone, &a.pod_namespace, &a.pod_name, &a.key).cmp(&(
            &b.zone,
            &b.pod_namespace,
            &b.pod_name,
            &b.key,
        ))
    });
    views
}

fn zone_views(response: v1::ListZonesResponse) -> Vec<ZoneView> {
    let mut views: Vec<ZoneView> = response.zones.into_iter().map(ZoneView::from).collect();
    views.sort_by(|a, b| a.zone.cmp(&b.zone));
    views
}

/// Each zone's mode, from its profile.
fn set_modes(zones: &mut [ZoneView], profiles: &v1::ListProfilesResponse) {
    let modes: std::collections::BTreeMap<&str, i32> = profiles
        .profiles
        .iter()
        .map(|p| (p.zone.as_str(), p.mode))
        .collect();
    for zone in zones {
        if let Some(mode) = modes.get(zone.zone.as_str()) {
            zone.mode = view::mode_word(*mode);
        }
    }
}

impl TableRow for EndpointView {
    const HEADERS: &'static [&'static str] = &[
        "ZONE",
        "POD",
        "CONTAINER",
        "IFNAME",
        "IPS",
        "HOST-IF",
        "MODE",
        "NETWORK",
        "NODE",
        "QUARANTINED",
        "AGE",
    ];
    const WIDE_ONLY: &'static [&'static str] = &["HOST-IF", "NETWORK", "NODE"];

    fn cells(&self, ctx: &RenderContext) -> Vec<String> {
        vec![
            self.zone.clone(),
            self.pod(),
            render::truncate_chars(&self.key.container_id, 12),
            self.key.ifname.clone(),
            self.ips.join(","),
            self.host_ifname.clone(),
            self.attach_mode.clone(),
            self.key.network.clone(),
            self.node.clone(),
            self.quarantine_word(),
            render::format_age(self.created_unix_ms, ctx.now_unix_ms),
        ]
    }
}

fn profile_views(response: v1::ListProfilesResponse) -> Vec<ProfileView> {
    let mut views: Vec<ProfileView> = response
        .profiles
        .into_iter()
        .map(ProfileView::from)
        .collect();
    views.sort_by(|a, b| a.zone.cmp(&b.zone));
    views
}

/// Newest first, as the enforcer sends them (kept when it does not).
fn violation_views(response: v1::ListViolationsResponse) -> Vec<ViolationView> {
    let mut views: Vec<ViolationView> = response
        .violations
        .into_iter()
        .map(ViolationView::from)
        .collect();
    views.sort_by_key(|v| std::cmp::Reverse(v.at_unix_ms));
    views
}

/// How many nodes the NODES column shows before "+N more".
pub const NODES_SHOWN: usize = 2;

impl TableRow for EdgeView {
    const HEADERS: &'static [&'static str] = &[
        "EDGE",
        "STATUS",
        "APPROVED",
        "LAST-DROP",
        "COUNT",
        "FIRST-SEEN",
        "LAST-SEEN",
        "NODES",
        "SAMPLE",
    ];
    const WIDE_ONLY: &'static [&'static str] = &["FIRST-SEEN", "NODES", "SAMPLE"];

    fn cells(&self, ctx: &RenderContext) -> Vec<String> {
        let approved = match (self.approved, self.approved_in.is_empty()) {
            (_, false) => self.approved_in.join(","),
            (approved, true) => render::yes_no(approved),
        };
        let mut cells = vec![
            self.edge.clone(),
            self.status.clone(),
            approved,
            self.last_drop_cell(ctx.now_unix_ms),
        ];
        cells.extend(evidence_cells(self, ctx));
        cells
    }
}

/// COUNT, FIRST-SEEN, LAST-SEEN, NODES and SAMPLE of an edge; empty (`<none>`)
/// for an edge that was never seen.
pub fn evidence_cells(edge: &EdgeView, ctx: &RenderContext) -> [String; 5] {
    match &edge.evidence {
        None => Default::default(),
        Some(evidence) => [
            evidence.count.to_string(),
            render::age_or_none(evidence.first_seen_unix_ms, ctx.now_unix_ms),
            render::age_or_none(evidence.last_seen_unix_ms, ctx.now_unix_ms),
            render::abbreviate_list(&evidence.nodes, NODES_SHOWN),
            evidence.sample.clone(),
        ],
    }
}

impl TableRow for ProfileView {
    const HEADERS: &'static [&'static str] = &[
        "ZONE",
        "MODE",
        "QUARANTINED",
        "VERSION",
        "APPROVED",
        "ENDPOINTS",
        "LAST-NEW-EDGE",
        "NEW/WINDOW",
    ];

    fn cells(&self, _: &RenderContext) -> Vec<String> {
        let (last_new_edge, new_in_window) = match &self.completeness {
            None => (String::new(), String::new()),
            Some(c) => (
                if c.since_last_new_edge_ms < 0 {
                    String::new()
                } else {
                    render::format_duration_ms(c.since_last_new_edge_ms)
                },
                if c.window_seconds == 0 {
                    String::new()
                } else {
                    format!(
                        "{} in {}",
                        c.new_in_window,
                        render::format_window(c.window_seconds)
                    )
                },
            ),
        };
        vec![
            self.zone.clone(),
            self.mode.clone(),
            render::yes_no(self.quarantined),
            self.version.to_string(),
            self.approved.len().to_string(),
            self.endpoint_count.to_string(),
            last_new_edge,
            new_in_window,
        ]
    }
}

impl TableRow for ViolationView {
    const HEADERS: &'static [&'static str] = &[
        "AGE",
        "VERDICT",
        "EDGE",
        "SRC",
        "DST",
        "COUNT",
        "REPORTED-BY",
        "PROFILE-VERSION",
    ];

    fn cells(&self, ctx: &RenderContext) -> Vec<String> {
        vec![
            render::format_age(self.at_unix_ms, ctx.now_unix_ms),
            self.verdict.clone(),
            self.edge.clone(),
            self.src_with_port(),
            self.dst.clone(),
            self.count.to_string(),
            self.reported_by.clone(),
            self.profile_version.to_string(),
        ]
    }
}

/// The columns of a list of violations: REPORTED-BY and PROFILE-VERSION only when
/// some row has a reporting zone (drops and monitor violations; a quarantine or a
/// spoofed address is cut by no profile's rule), and `-` in the rows that have none.
pub fn violation_table(
    violations: &[ViolationView],
    ctx: &RenderContext,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let reported = violations.iter().any(|v| !v.reported_by.is_empty());
    let mut headers = ViolationView::HEADERS.to_vec();
    let reporter_columns = headers.len() - 2;
    if !reported {
        headers.truncate(reporter_columns);
    }
    // RESPONSE only when an automatic response rule quarantined some source.
    let responded = violations.iter().any(|v| !v.response.is_empty());
    if responded {
        headers.push("RESPONSE");
    }
    let rows = violations
        .iter()
        .map(|v| {
            let mut cells = v.cells(ctx);
            if !reported {
                cells.truncate(reporter_columns);
            } else if v.reported_by.is_empty() {
                cells[reporter_columns..].fill("-".to_owned());
            }
            if responded {
                cells.push(match view::response_rule(&v.response) {
                    Some(rule) => rule.to_owned(),
                    None => "-".to_owned(),
                });
            }
            cells
        })
        .collect();
    (headers, rows)
}

/// How many members the MEMBERS column shows before "+N more".
const MEMBERS_SHOWN: usize = 3;

impl TableRow for ZoneView {
    const HEADERS: &'static [&'static str] =
        &["ZONE", "ID", "KIND", "MODE", "ENDPOINTS", "MEMBERS"];

    fn cells(&self, _: &RenderContext) -> Vec<String> {
        let shown = if render::is_wide() {
            self.members.len()
        } else {
            MEMBERS_SHOWN
        };
        vec![
            self.zone.clone(),
            self.id.to_string(),
            self.kind.clone(),
            self.mode.clone(),
            self.endpoint_count.to_string(),
            render::abbreviate_list(&self.members, shown),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OutputFormat;
    use crate::view;

    const NOW: i64 = 1_800_000_000_000;
    const CTX: RenderContext = RenderContext { now_unix_ms: NOW };

    fn endpoint(zone: &str, pod: (&str, &str), container: &str, age_secs: i64) -> v1::Endpoint {
        v1::Endpoint {
            key: Some(v1::AttachmentKey {
                network: "zonewarden".into(),
                container_id: container.into(),
                ifname: "eth0".into(),
            }),
            zone: zone.into(),
            zone_source: v1::ZoneSource::Workload.into(),
            netns: "/var/run/netns/cni-1".into(),
            host_ifname: "zw1234abcd".into(),
            ips: vec!["10.244.0.5/24".into(), "fd00::5/64".into()],
            mac: "0a:58:0a:f4:00:05".into(),
            node: "node-a".into(),
            pod_namespace: pod.0.into(),
            pod_name: pod.1.into(),
            attach_mode: v1::AttachMode::Routed.into(),
            created_unix_ms: NOW - age_secs * 1000,
            bridge: String::new(),
            quarantined: container.starts_with("fedc"),
            quarantine_reason: String::new(),
            zone_quarantined: false,
        }
    }

    #[test]
    fn endpoints_table_has_the_documented_columns_sorted_by_zone() {
        let response = v1::ListEndpointsResponse {
            endpoints: vec![
                endpoint(
                    "shop/web",
                    ("shop", "web-7d9f"),
                    "0123456789abcdef0123",
                    300,
                ),
                endpoint("build", ("", ""), "fedcba9876543210", 5),
            ],
        };
        let response_again = response.clone();
        let text = render::render_list(
            "EndpointList",
            &endpoint_views(response),
            OutputFormat::Table,
            &CTX,
        )
        .unwrap();
        let expected = "\
ZONE       POD             CONTAINER      IFNAME   IPS                        MODE     QUARANTINED   AGE
build      <none>          fedcba987654   eth0     10.244.0.5/24,fd00::5/64   routed   endpoint      5s
shop/web   shop/web-7d9f   0123456789ab   eth0     10.244.0.5/24,fd00::5/64   routed   no            5m
";
        assert_eq!(text, expected);
        let views = endpoint_views(response_again);
        let wide = render::fit_table(
            EndpointView::HEADERS,
            views.iter().map(|v| v.cells(&CTX)),
            None,
        );
        assert_eq!(
            wide.lines().next().unwrap(),
            "ZONE       POD             CONTAINER      IFNAME   IPS                        HOST-IF      MODE     NETWORK      NODE     QUARANTINED   AGE",
            "-o wide has every column"
        );
    }

    #[test]
    fn endpoints_json_mirrors_the_proto_message() {
        let response = v1::ListEndpointsResponse {
            endpoints: vec![endpoint("z", ("ns", "p"), "c1", 1)],
        };
        let text = render::render_list(
            "EndpointList",
            &endpoint_views(response),
            OutputFormat::Json,
            &CTX,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let item = &json["items"][0];
        assert_eq!(json["kind"], "EndpointList");
        assert_eq!(
            item["key"],
            serde_json::json!({"network": "zonewarden", "containerId": "c1", "ifname": "eth0"})
        );
        assert_eq!(item["hostIfname"], "zw1234abcd");
        assert_eq!(item["attachMode"], "routed");
        assert_eq!(item["createdUnixMs"], NOW - 1000);
        assert_eq!(item["ips"][1], "fd00::5/64");
    }

    #[test]
    fn zones_table_abbreviates_members_after_three() {
        let response = v1::ListZonesResponse {
            zones: vec![
                v1::Zone {
                    name: "shop/web".into(),
                    id: 12,
                    kind: v1::ZoneKind::Workload.into(),
                    endpoint_count: 5,
                    members: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
                    ..Default::default()
                },
                v1::Zone {
                    name: "shop/old".into(),
                    id: 1,
                    kind: v1::ZoneKind::Empty.into(),
                    endpoint_count: 0,
                    members: vec![],
                    ..Default::default()
                },
            ],
        };
        let text =
            render::render_list("ZoneList", &zone_views(response), OutputFormat::Table, &CTX)
                .unwrap();
        let expected = "\
ZONE       ID   KIND       MODE     ENDPOINTS   MEMBERS
shop/old   1    empty      <none>   0           <none>
shop/web   12   workload   <none>   5           a,b,c +2 more
";
        assert_eq!(text, expected);
    }

    #[test]
    fn zones_yaml_lists_every_member() {
        let response = v1::ListZonesResponse {
            zones: vec![v1::Zone {
                name: "shop/web".into(),
                id: 12,
                kind: v1::ZoneKind::Workload.into(),
                endpoint_count: 4,
                members: ["a", "b", "c", "d"].map(String::from).to_vec(),
                ..Default::default()
            }],
        };
        let text = render::render_list("ZoneList", &zone_views(response), OutputFormat::Yaml, &CTX)
            .unwrap();
        assert!(text.starts_with("kind: ZoneList\nitems:\n"), "{text}");
        assert!(text.contains("endpointCount: 4"), "{text}");
        for member in ["a", "b", "c", "d"] {
            assert!(
                text.contains(&format!("- {member}\n")),
                "member {member} missing from {text}"
            );
        }
    }

    fn edge(text: &str, learned: bool, approved_in: &[&str]) -> v1::EdgeInfo {
        v1::EdgeInfo {
            edge: text.into(),
            learned,
            approved: !approved_in.is_empty(),
            evidence: learned.then(|| v1::Evidence {
                first_seen_unix_ms: NOW - 2 * 3600 * 1000,
                last_seen_unix_ms: NOW - 5 * 60 * 1000,
                count: 1234,
                nodes: vec!["node-a".into(), "node-b".into(), "node-c".into()],
                sample: "10.244.0.5:40312 -> 10.244.1.7:8080/tcp".into(),
            }),
            approved_in: approved_in.iter().map(ToString::to_string).collect(),
            status: if approved_in.is_empty() {
                v1::EdgeStatus::Observed
            } else {
                v1::EdgeStatus::Approved
            }
            .into(),
            last_drop: None,
        }
    }

    #[test]
    fn edges_table_shows_evidence_ages_and_none_for_unseen_edges() {
        let edges = view::edge_views(vec![
            edge(
                "shop/web->shop/api:8080/tcp",
                true,
                &["shop/web", "shop/api"],
            ),
            edge("shop/web->shop/legacy:80/tcp", false, &["shop/web"]),
            edge("host->shop/web:icmp", true, &[]),
            v1::EdgeInfo {
                edge: "a->b:1/udp".into(),
                approved: true,
                status: v1::EdgeStatus::Approved.into(),
                ..Default::default()
            },
            // Dropped 10 minutes ago under shop/db's version 3, and still dropped.
            v1::EdgeInfo {
                edge: "shop/job->shop/db:5432/tcp".into(),
                status: v1::EdgeStatus::Dropped.into(),
                last_drop: Some(v1::EdgeDrop {
                    at_unix_ms: NOW - 600_000,
                    profile_version: 3,
                    reported_by: "shop/db".into(),
                    count: 2,
                }),
                ..Default::default()
            },
        ]);
        let text = render::render_list("EdgeList", &edges, OutputFormat::Table, &CTX).unwrap();
        let wide_expected = "\
EDGE                           STATUS     APPROVED            LAST-DROP   COUNT    FIRST-SEEN   LAST-SEEN   NODES                   SAMPLE
a->b:1/udp                     approved   yes                 <none>      <none>   <none>       <none>      <none>                  <none>
host->shop/web:icmp            observed   no                  <none>      1234     2h           5m          node-a,node-b +1 more   10.244.0.5:40312 -> 10.244.1.7:8080/tcp
shop/job->shop/db:5432/tcp     dropped    no                  10m (v3)    <none>   <none>       <none>      <none>                  <none>
shop/web->shop/api:8080/tcp    approved   shop/web,shop/api   <none>      1234     2h           5m          node-a,node-b +1 more   10.244.0.5:40312 -> 10.244.1.7:8080/tcp
shop/web->shop/legacy:80/tcp   approved   shop/web            <none>      <none>   <none>       <none>      <none>                  <none>
";
        let wide = render::fit_table(EdgeView::HEADERS, edges.iter().map(|e| e.cells(&CTX)), None);
        assert_eq!(wide, wide_expected, "-o wide has every column");
        let expected = "\
EDGE                           STATUS     APPROVED            LAST-DROP   COUNT    LAST-SEEN
a->b:1/udp                     approved   yes                 <none>      <none>   <none>
host->shop/web:icmp            observed   no                  <none>      1234     5m
shop/job->shop/db:5432/tcp     dropped    no                  10m (v3)    <none>   <none>
shop/web->shop/api:8080/tcp    approved   shop/web,shop/api   <none>      1234     5m
shop/web->shop/legacy:80/tcp   approved   shop/web            <none>      <none>   <none>
";
        assert_eq!(text, expected);
    }

    #[test]
    fn edges_json_and_yaml_mirror_the_proto_message() {
        let edges = view::edge_views(vec![
            edge("shop/web->shop/api:8080/tcp", true, &["shop/api"]),
            edge("shop/web->shop/legacy:80/tcp", false, &["shop/web"]),
        ]);
        let text = render::render_list("EdgeList", &edges, OutputFormat::Json, &CTX).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["kind"], "EdgeList");
        assert_eq!(
            json["items"][0],
            serde_json::json!({
                "edge": "shop/web->shop/api:8080/tcp",
                "learned": true,
                "approved": true,
                "evidence": {
                    "firstSeenUnixMs": NOW - 7_200_000,
                    "lastSeenUnixMs": NOW - 300_000,
                    "count": 1234,
                    "nodes": ["node-a", "node-b", "node-c"],
                    "sample": "10.244.0.5:40312 -> 10.244.1.7:8080/tcp",
                },
                "approvedIn": ["shop/api"],
                "status": "approved",
            })
        );
        assert!(json["items"][1].get("evidence").is_none(), "{json}");
        let yaml = render::render_list("EdgeList", &edges, OutputFormat::Yaml, &CTX).unwrap();
        assert!(yaml.starts_with("kind: EdgeList\nitems:\n"), "{yaml}");
        assert!(
            yaml.contains("- edge: shop/web->shop/api:8080/tcp\n"),
            "{yaml}"
        );
        assert!(yaml.contains("firstSeenUnixMs: "), "{yaml}");
    }

    fn profile(zone: &str, completeness: Option<v1::Completeness>) -> v1::Profile {
        v1::Profile {
            zone: zone.into(),
            mode: v1::Mode::Monitor.into(),
            quarantined: false,
            version: 4,
            approved: vec!["a->b:80/tcp".into(), "a->c:53/udp".into()],
            rejected: vec![],
            history: vec![v1::ProfileChange {
                version: 4,
                who: "uid 0".into(),
                at_unix_ms: NOW - 60_000,
                what: "mode monitor".into(),
                comment: "CHG-1".into(),
            }],
            completeness,
            endpoint_count: 3,
            response: None,
        }
    }

    #[test]
    fn profiles_table_shows_learning_progress_and_none_without_edges() {
        let response = v1::ListProfilesResponse {
            profiles: vec![
                profile(
                    "shop/web",
                    Some(v1::Completeness {
                        since_last_new_edge_ms: 90 * 60 * 1000,
                        new_in_window: 3,
                        seen_in_window: 9,
                        window_seconds: 600,
                    }),
                ),
                v1::Profile {
                    zone: "shop/db".into(),
                    mode: v1::Mode::Enforce.into(),
                    quarantined: true,
                    version: 7,
                    completeness: Some(v1::Completeness {
                        since_last_new_edge_ms: -1,
                        new_in_window: 0,
                        seen_in_window: 0,
                        window_seconds: 3600,
                    }),
                    ..Default::default()
                },
                profile("build", None),
            ],
        };
        let text = render::render_list(
            "ProfileList",
            &profile_views(response),
            OutputFormat::Table,
            &CTX,
        )
        .unwrap();
        let expected = "\
ZONE       MODE      QUARANTINED   VERSION   APPROVED   ENDPOINTS   LAST-NEW-EDGE   NEW/WINDOW
build      monitor   no            4         2          3           <none>          <none>
shop/db    enforce   yes           7         0          0           <none>          0 in 1h
shop/web   monitor   no            4         2          3           1h              3 in 10m
";
        assert_eq!(text, expected);
    }

    #[test]
    fn profiles_json_and_yaml_carry_history_and_completeness() {
        let response = v1::ListProfilesResponse {
            profiles: vec![profile(
                "shop/web",
                Some(v1::Completeness {
                    since_last_new_edge_ms: 1000,
                    new_in_window: 1,
                    seen_in_window: 2,
                    window_seconds: 600,
                }),
            )],
        };
        let views = profile_views(response);
        let text = render::render_list("ProfileList", &views, OutputFormat::Json, &CTX).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["kind"], "ProfileList");
        let item = &json["items"][0];
        assert_eq!(item["mode"], "monitor");
        assert_eq!(item["quarantined"], false);
        assert_eq!(item["approvedEdges"][1], "a->c:53/udp");
        assert_eq!(item["endpointCount"], 3);
        assert_eq!(
            item["history"][0],
            serde_json::json!({
                "version": 4, "who": "uid 0", "atUnixMs": NOW - 60_000,
                "what": "mode monitor", "comment": "CHG-1",
            })
        );
        assert_eq!(
            item["completeness"],
            serde_json::json!({
                "sinceLastNewEdgeMs": 1000, "newInWindow": 1, "seenInWindow": 2, "windowSeconds": 600,
            })
        );
        let yaml = render::render_list("ProfileList", &views, OutputFormat::Yaml, &CTX).unwrap();
        assert!(yaml.starts_with("kind: ProfileList\nitems:\n"), "{yaml}");
        assert!(yaml.contains("- zone: shop/web\n"), "{yaml}");
        assert!(yaml.contains("windowSeconds: 600"), "{yaml}");
    }

    fn violation(verdict: v1::Verdict, age_secs: i64, src: &str, src_port: u32) -> v1::Violation {
        v1::Violation {
            at_unix_ms: NOW - age_secs * 1000,
            verdict: verdict.into(),
            edge: "shop/web->shop/db:5432/tcp".into(),
            src: src.into(),
            dst: "10.244.1.9".into(),
            src_port,
            node: "node-a".into(),
            reported_by: "shop/db".into(),
            profile_version: 5,
            count: 17,
            response: String::new(),
        }
    }

    #[test]
    fn a_report_that_fired_a_response_rule_says_so_in_its_own_column() {
        let plain = violation_views(v1::ListViolationsResponse {
            violations: vec![violation(v1::Verdict::Drop, 5, "10.244.0.5", 40000)],
        });
        let (headers, _) = violation_table(&plain, &CTX);
        assert!(!headers.contains(&"RESPONSE"), "{headers:?}");
        let mut fired = violation(v1::Verdict::Violation, 3, "10.244.0.5", 40001);
        fired.response = "response:shop/web:violations".into();
        let views = violation_views(v1::ListViolationsResponse {
            violations: vec![fired, violation(v1::Verdict::Drop, 5, "10.244.0.5", 40000)],
        });
        let (headers, rows) = violation_table(&views, &CTX);
        assert_eq!(headers.last(), Some(&"RESPONSE"));
        assert_eq!(rows[0].last().unwrap(), "violations");
        assert_eq!(rows[1].last().unwrap(), "-");
        let json = serde_json::to_value(&views).unwrap();
        assert_eq!(json[0]["response"], "response:shop/web:violations");
        assert!(json[1].get("response").is_none(), "{json}");
    }

    #[test]
    fn violations_table_is_newest_first_with_source_ports() {
        let response = v1::ListViolationsResponse {
            violations: vec![
                violation(v1::Verdict::Violation, 3 * 3600, "fd00::5", 40312),
                violation(v1::Verdict::Drop, 30, "10.244.0.5", 40312),
                v1::Violation {
                    reported_by: String::new(),
                    edge: "host->shop/db:icmp".into(),
                    ..violation(v1::Verdict::Quarantine, 120, "10.0.0.1", 0)
                },
            ],
        };
        let text = render::render_list(
            "ViolationList",
            &violation_views(response),
            OutputFormat::Table,
            &CTX,
        )
        .unwrap();
        let expected = "\
AGE   VERDICT      EDGE                         SRC                DST          COUNT   REPORTED-BY   PROFILE-VERSION
30s   drop         shop/web->shop/db:5432/tcp   10.244.0.5:40312   10.244.1.9   17      shop/db       5
2m    quarantine   host->shop/db:icmp           10.0.0.1           10.244.1.9   17      <none>        5
3h    violation    shop/web->shop/db:5432/tcp   [fd00::5]:40312    10.244.1.9   17      shop/db       5
";
        assert_eq!(text, expected);
    }

    #[test]
    fn violations_json_mirrors_the_proto_message() {
        let response = v1::ListViolationsResponse {
            violations: vec![violation(v1::Verdict::Drop, 30, "10.244.0.5", 40312)],
        };
        let text = render::render_list(
            "ViolationList",
            &violation_views(response),
            OutputFormat::Json,
            &CTX,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "ViolationList", "items": [{
                "atUnixMs": NOW - 30_000,
                "verdict": "drop",
                "edge": "shop/web->shop/db:5432/tcp",
                "src": "10.244.0.5",
                "dst": "10.244.1.9",
                "srcPort": 40312,
                "node": "node-a",
                "reportedBy": "shop/db",
                "profileVersion": 5,
                "count": 17,
            }]})
        );
    }
}
