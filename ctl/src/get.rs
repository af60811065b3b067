//! `zwctl get ...`: list resources known to the enforcer.
//!
//! Later resources (`edges`, `profiles`, `violations`) are one more variant of
//! [`GetCommand`], one `run_*` function and one [`TableRow`] impl each.

use clap::{Args, Subcommand};
use zonewarden_proto::v1;

use crate::cli::{GlobalArgs, OutputFormat};
use crate::client::Enforcer;
use crate::render::{self, RenderContext, TableRow};
use crate::view::{EndpointView, ZoneView};

pub const EXAMPLES: &str = "\
Examples:
  # Every container attachment on this node
  zwctl get endpoints

  # Every zone and its members
  zwctl get zones

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
  MODE       routed (zonewarden made the interface) or chained (after another plugin)
  NETWORK    the CNI network name
  NODE       the node the enforcer runs on
  AGE        how long ago the attachment was made

Examples:
  # Every endpoint on this node
  zwctl get endpoints

  # Only the pods of one workload
  zwctl get endpoints --zone shop/checkout

  # Only one CNI network, as JSON
  zwctl get endpoints --network zonewarden -o json

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

/// The resources `get` lists.
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List container attachments (endpoints) and the zone of each.
    #[command(visible_aliases = ["endpoint", "ep"], after_help = ENDPOINTS_EXAMPLES)]
    Endpoints(EndpointsArgs),

    /// List zones, their data-plane ids and members.
    #[command(visible_alias = "zone", after_help = ZONES_EXAMPLES)]
    Zones(ZonesArgs),
}

#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// Only endpoints of this CNI network (the "name" of the network config).
    #[arg(long, value_name = "NETWORK")]
    pub network: Option<String>,

    /// Only endpoints in this zone (e.g. shop/checkout).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
}

#[derive(Debug, Args)]
pub struct ZonesArgs {}

/// Runs one `get` command and returns what to print on stdout.
pub async fn run(command: &GetCommand, global: &GlobalArgs) -> anyhow::Result<String> {
    let mut enforcer = Enforcer::connect(global).await?;
    let ctx = RenderContext::now();
    match command {
        GetCommand::Endpoints(args) => {
            let request = v1::ListEndpointsRequest {
                network: args.network.clone().unwrap_or_default(),
                zone: args.zone.clone().unwrap_or_default(),
            };
            let endpoints = endpoint_views(enforcer.list_endpoints(request).await?);
            if endpoints.is_empty() && global.output == OutputFormat::Table {
                eprintln!("No endpoints found.");
            }
            render::render_list("EndpointList", &endpoints, global.output, &ctx)
        }
        GetCommand::Zones(ZonesArgs {}) => {
            let zones = zone_views(enforcer.list_zones().await?);
            if zones.is_empty() && global.output == OutputFormat::Table {
                eprintln!("No zones found.");
            }
            render::render_list("ZoneList", &zones, global.output, &ctx)
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
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
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
        "AGE",
    ];

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
            render::format_age(self.created_unix_ms, ctx.now_unix_ms),
        ]
    }
}

/// How many members the MEMBERS column shows before "+N more".
const MEMBERS_SHOWN: usize = 3;

impl TableRow for ZoneView {
    const HEADERS: &'static [&'static str] = &["ZONE", "ID", "KIND", "ENDPOINTS", "MEMBERS"];

    fn cells(&self, _: &RenderContext) -> Vec<String> {
        vec![
            self.name.clone(),
            self.id.to_string(),
            self.kind.clone(),
            self.endpoint_count.to_string(),
            render::abbreviate_list(&self.members, MEMBERS_SHOWN),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            zone_source: "workload".into(),
            netns: "/var/run/netns/cni-1".into(),
            host_ifname: "zw1234abcd".into(),
            ips: vec!["10.244.0.5/24".into(), "fd00::5/64".into()],
            mac: "0a:58:0a:f4:00:05".into(),
            node: "node-a".into(),
            pod_namespace: pod.0.into(),
            pod_name: pod.1.into(),
            attach_mode: "routed".into(),
            created_unix_ms: NOW - age_secs * 1000,
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
        let text = render::render_list(
            "EndpointList",
            &endpoint_views(response),
            OutputFormat::Table,
            &CTX,
        )
        .unwrap();
        let expected = "\
ZONE       POD             CONTAINER      IFNAME   IPS                        HOST-IF      MODE     NETWORK      NODE     AGE
build      <none>          fedcba987654   eth0     10.244.0.5/24,fd00::5/64   zw1234abcd   routed   zonewarden   node-a   5s
shop/web   shop/web-7d9f   0123456789ab   eth0     10.244.0.5/24,fd00::5/64   zw1234abcd   routed   zonewarden   node-a   5m
";
        assert_eq!(text, expected);
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
                    kind: "workload".into(),
                    endpoint_count: 5,
                    members: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
                },
                v1::Zone {
                    name: "host".into(),
                    id: 1,
                    kind: "builtin".into(),
                    endpoint_count: 0,
                    members: vec![],
                },
            ],
        };
        let text =
            render::render_list("ZoneList", &zone_views(response), OutputFormat::Table, &CTX)
                .unwrap();
        let expected = "\
ZONE       ID   KIND       ENDPOINTS   MEMBERS
host       1    builtin    0           <none>
shop/web   12   workload   5           a,b,c +2 more
";
        assert_eq!(text, expected);
    }

    #[test]
    fn zones_yaml_lists_every_member() {
        let response = v1::ListZonesResponse {
            zones: vec![v1::Zone {
                name: "shop/web".into(),
                id: 12,
                kind: "workload".into(),
                endpoint_count: 4,
                members: ["a", "b", "c", "d"].map(String::from).to_vec(),
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
}
