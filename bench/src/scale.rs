//! The topology of benchmarks 2–6: one node holding `zones` zones, `endpoints`
//! endpoints and `edges` approved edges, with four real pods attached through the
//! plugin (client and server enforcing; a learning pair) and the rest registered
//! through the enforcer's gRPC API as chained endpoints with addresses that need no
//! interface. Approvals go through `ApproveEdges`: the real compile and nft path.

use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::Channel;
use zonewarden_proto::v1;
use zonewarden_proto::v1::enforcer_client::EnforcerClient;

use crate::cni::{attach, zonewarden_conf_ranges};
use crate::netns::Netns;
use crate::node::Node;
use crate::traffic::{Process, start_iperf_server, start_server};

pub const CLIENT_ZONE: &str = "bench/client";
pub const SERVER_ZONE: &str = "bench/server";
pub const LEARN_SRC: &str = "bench/learn-src";
pub const LEARN_DST: &str = "bench/learn-dst";
pub const IPERF_PORT: u16 = 5201;
/// The connect loop's port (approved).
pub const CONN_PORT: u16 = 5202;
/// A port the server listens on but no edge approves.
pub const DISALLOWED_PORT: u16 = 9999;
/// Ports the update benchmark approves one by one.
pub const UPDATE_PORTS: (u16, u16) = (7000, 7099);
/// Ports of distinct learned edges.
pub const LEARN_PORTS: u16 = 10000;

#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub zones: usize,
    pub endpoints: usize,
    pub edges: usize,
    pub learn_edges: u16,
}

pub struct Pod {
    pub netns: Netns,
    pub ip: String,
    /// The pod's IPv6 address (the scale pods are dual-stack).
    pub ip6: String,
}

pub struct Scale {
    pub size: Size,
    pub node: Node,
    pub client: Pod,
    pub server: Pod,
    pub lsrc: Pod,
    pub ldst: Pod,
    /// Kept to keep the servers alive (killed on drop).
    pub _servers: Vec<Process>,
    /// Approved edges of the scale zones not yet sent (grouped by source zone).
    rest: Vec<(String, Vec<String>)>,
    /// Every scale edge as (source zone index, destination zone index, port).
    edges_idx: Vec<(usize, usize, u16)>,
    fake_zones: usize,
    /// Setup durations, for the report.
    pub setup: Vec<(String, Duration)>,
    /// What the table held when measured.
    pub table_summary: String,
}

fn scale_zone(i: usize) -> String {
    format!("scale/z{i:04}")
}

fn fake_addr(i: usize) -> String {
    format!("10.60.{}.{}", i / 250, i % 250 + 1)
}

/// The IPv6 address of fake endpoint `i`: every scale endpoint is dual-stack.
fn fake_addr6(i: usize) -> String {
    format!("fd7b:60::{:x}", i + 1)
}

/// Runs `f` on every item with up to `width` requests in flight.
pub fn fan_out<T: Send + 'static>(
    node: &Node,
    client: &EnforcerClient<Channel>,
    items: Vec<T>,
    width: usize,
    f: fn(EnforcerClient<Channel>, T) -> futures_lite::BoxFuture<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    node.rt.block_on(async {
        let (total, mut done, start) = (items.len(), 0usize, Instant::now());
        let mut items = items.into_iter();
        loop {
            let wave: Vec<_> = items
                .by_ref()
                .take(width)
                .map(|it| tokio::spawn(f(client.clone(), it)))
                .collect();
            if wave.is_empty() {
                return Ok(());
            }
            for h in wave {
                h.await??;
                done += 1;
                if done.is_multiple_of(500) {
                    eprintln!(
                        "zw-bench:   {done}/{total} in {:.0} s",
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        }
    })
}

pub mod futures_lite {
    pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
}

/// An AddEndpoint of a chained endpoint with `addr` (and `addr6`, when given).
pub fn add_request(container_id: &str, zone: &str, addr: &str) -> v1::AddEndpointRequest {
    add_request_dual(container_id, zone, addr, None)
}

pub fn add_request_dual(
    container_id: &str,
    zone: &str,
    addr: &str,
    addr6: Option<&str>,
) -> v1::AddEndpointRequest {
    let mut ips = vec![format!("{addr}/32")];
    ips.extend(addr6.map(|a| format!("{a}/128")));
    v1::AddEndpointRequest {
        key: Some(v1::AttachmentKey {
            network: "zwbench-scale".into(),
            container_id: container_id.into(),
            ifname: "eth0".into(),
        }),
        // A pod with a routed host interface of its own, named as the plugin names it
        // (the most common shape: the zonewarden plugin, or chained after ptp). No
        // such link exists on the bench node: the enforcer's setting of its group
        // finds none and goes on, so each ADD here is one route netlink request
        // short of a real one.
        host_ifname: zonewarden_cni::link::host_ifname("zwbench-scale", container_id, "eth0"),
        hints: Some(v1::ZoneHints {
            explicit_zone: zone.into(),
            explicit_source: v1::ZoneSource::CniArgs.into(),
            ..Default::default()
        }),
        ips,
        attach_mode: v1::AttachMode::Chained.into(),
        ..Default::default()
    }
}

pub fn approve_request(zone: &str, edges: Vec<String>) -> v1::ApproveEdgesRequest {
    v1::ApproveEdgesRequest {
        zone: zone.into(),
        edges,
        all: false,
        comment: "zw-bench".into(),
        // The harness makes its zones: approving into one before its pods is meant.
        create: true,
    }
}

impl Scale {
    /// The node with every endpoint and the first ten edges; the pods' zones enforce.
    pub fn build(size: Size) -> anyhow::Result<Self> {
        let mut setup = Vec::new();
        let mut node = Node::new("10.130.255.1")?;
        node.start_enforcer()?;
        let conf = zonewarden_conf_ranges(&node, "zwscale", &["10.131.0.0/24", "fd7b:131::/64"]);
        let pod = |role: &str, zone: &str| -> anyhow::Result<Pod> {
            let netns = Netns::new(role)?;
            let ip = attach(&node, &netns, &conf, zone)?;
            let ip6 = netns.ipv6_of("eth0")?;
            Ok(Pod { netns, ip, ip6 })
        };
        let (client, server) = (pod("client", CLIENT_ZONE)?, pod("server", SERVER_ZONE)?);
        let (lsrc, ldst) = (pod("lsrc", LEARN_SRC)?, pod("ldst", LEARN_DST)?);
        // Many short connections: keep the client's ports and conntrack's TIME_WAIT short.
        client
            .netns
            .sysctl("net.ipv4.ip_local_port_range", "10000 65000");
        lsrc.netns
            .sysctl("net.ipv4.ip_local_port_range", "20000 65000");
        node.netns
            .sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1");
        node.netns
            .sysctl("net.netfilter.nf_conntrack_max", "1048576");

        let update_ports = format!("{}-{}", UPDATE_PORTS.0, UPDATE_PORTS.1);
        let learn_ports = format!("{}-{}", LEARN_PORTS, LEARN_PORTS + size.learn_edges - 1);
        let servers = vec![
            start_server(
                &server.netns,
                &[
                    &CONN_PORT.to_string(),
                    &DISALLOWED_PORT.to_string(),
                    &update_ports,
                ],
            )?,
            start_iperf_server(&server.netns, IPERF_PORT)?,
            start_server(&ldst.netns, &[&learn_ports])?,
        ];

        let client_rpc = node.client()?;
        let fake_zones = size.zones - 4;
        let fakes: Vec<(String, String, String, String)> = (0..size.endpoints - 4)
            .map(|i| {
                (
                    format!("scale-{i}"),
                    scale_zone(i % fake_zones),
                    fake_addr(i),
                    fake_addr6(i),
                )
            })
            .collect();
        let t = Instant::now();
        fan_out(
            &node,
            &client_rpc,
            fakes,
            16,
            |mut c, (id, zone, addr, addr6)| {
                Box::pin(async move {
                    c.add_endpoint(add_request_dual(&id, &zone, &addr, Some(&addr6)))
                        .await?;
                    Ok(())
                })
            },
        )
        .context("register the scale endpoints")?;
        setup.push((
            format!(
                "register {} endpoints through AddEndpoint (16 in flight)",
                size.endpoints - 4
            ),
            t.elapsed(),
        ));

        // Edges: the pods' two, then src z_i -> z_(i+k) on port 8000+k.
        let edges_idx: Vec<(usize, usize, u16)> = (0..size.edges - 2)
            .map(|n| {
                let (src, k) = (n % fake_zones, n / fake_zones + 1);
                (src, (src + k) % fake_zones, 8000 + k as u16)
            })
            .collect();
        let scale_edges: Vec<(String, String)> = edges_idx
            .iter()
            .map(|&(src, dst, port)| {
                (
                    scale_zone(src),
                    format!("{}->{}:{port}/tcp", scale_zone(src), scale_zone(dst)),
                )
            })
            .collect();
        let (first, rest) = scale_edges.split_at(8.min(scale_edges.len()));
        let mut c = client_rpc.clone();
        node.rt.block_on(async {
            c.approve_edges(approve_request(
                CLIENT_ZONE,
                [IPERF_PORT, CONN_PORT]
                    .iter()
                    .map(|p| format!("{CLIENT_ZONE}->{SERVER_ZONE}:{p}/tcp"))
                    .collect(),
            ))
            .await?;
            for (zone, edge) in first {
                c.approve_edges(approve_request(zone, vec![edge.clone()]))
                    .await?;
            }
            for zone in [CLIENT_ZONE, SERVER_ZONE] {
                c.set_mode(v1::SetModeRequest {
                    zone: zone.into(),
                    mode: v1::Mode::Enforce.into(),
                    comment: "zw-bench".into(),
                    create: true,
                })
                .await?;
            }
            anyhow::Ok(())
        })?;
        let mut grouped: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (zone, edge) in rest {
            grouped.entry(zone.clone()).or_default().push(edge.clone());
        }
        Ok(Self {
            size,
            node,
            client,
            server,
            lsrc,
            ldst,
            _servers: servers,
            rest: grouped.into_iter().collect(),
            edges_idx,
            fake_zones,
            setup,
            table_summary: String::new(),
        })
    }

    /// Approves every remaining edge (one ApproveEdges per zone, 16 in flight).
    pub fn approve_rest(&mut self) -> anyhow::Result<()> {
        let rest = std::mem::take(&mut self.rest);
        let (calls, edges) = (rest.len(), rest.iter().map(|(_, e)| e.len()).sum::<usize>());
        let c = self.node.client()?;
        let t = Instant::now();
        fan_out(&self.node, &c, rest, 16, |mut c, (zone, edges)| {
            Box::pin(async move {
                c.approve_edges(approve_request(&zone, edges)).await?;
                Ok(())
            })
        })
        .context("approve the scale edges")?;
        self.setup.push((
            format!("approve {edges} more edges through {calls} ApproveEdges calls (16 in flight)"),
            t.elapsed(),
        ));
        Ok(())
    }

    /// The addresses of the two zones and the port of every scale edge.
    pub fn edge_addrs(&self) -> Vec<(Vec<String>, Vec<String>, u16)> {
        let members = |zone: usize| -> Vec<String> {
            (0..self.size.endpoints - 4)
                .filter(|i| i % self.fake_zones == zone)
                .map(fake_addr)
                .collect()
        };
        let by_zone: Vec<Vec<String>> = (0..self.fake_zones).map(members).collect();
        self.edges_idx
            .iter()
            .map(|&(s, d, p)| (by_zone[s].clone(), by_zone[d].clone(), p))
            .collect()
    }

    /// Elements in the table's sets and maps, and its chains (for the report).
    pub fn table_size(&self) -> String {
        let Ok(out) = self
            .node
            .nft(&["-j", "list", "table", "inet", "zonewarden"])
        else {
            return "table inet zonewarden: not readable".into();
        };
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let (mut chains, mut rules, mut sets, mut elems) = (0, 0, 0, 0);
        for item in v["nftables"].as_array().into_iter().flatten() {
            if item.get("chain").is_some() {
                chains += 1;
            } else if item.get("rule").is_some() {
                rules += 1;
            } else if let Some(s) = item.get("set").or_else(|| item.get("map")) {
                sets += 1;
                elems += s["elem"].as_array().map_or(0, Vec::len);
            }
        }
        format!(
            "table inet zonewarden: {chains} chains, {rules} rules, {sets} sets/maps holding {elems} elements"
        )
    }
}
