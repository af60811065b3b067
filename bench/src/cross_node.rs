//! Benchmark 8, the data plane across nodes: a client pod on node A and a server pod
//! on node B of the populated three-node cluster, both attached through the real
//! plugin with zonewarden IPAM (addresses from each node's block, host-gateway routes
//! over the underlay), both zones enforcing. A connection leaves through A's table
//! (the client zone's egress chain, the server resolved as a remote endpoint) and
//! enters through B's (the server zone's ingress chain). Measured against the same
//! pods and routes with neither table, interleaved round by round.

use std::time::{Duration, Instant};

use anyhow::Context;
use zonewarden_proto::v1;

use crate::cluster::wait_caught_up;
use crate::cluster_net::Etcd;
use crate::cni::{attach, zonewarden_ipam_conf};
use crate::dataplane::Figures;
use crate::netns::Netns;
use crate::node::Node;
use crate::report::{Section, verdict};
use crate::scale::{CONN_PORT, DISALLOWED_PORT, IPERF_PORT, approve_request};
use crate::stats::{fmt, ratio};
use crate::traffic::{
    Process, approved_conn_rate, conn_rate, iperf, start_iperf_server, start_server,
};

const CLIENT: &str = "cluster/xclient";
const SERVER: &str = "cluster/xserver";
const NETWORK: &str = "zwcluster";

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Rounds, each one repetition with the tables and one without.
    pub reps: usize,
    pub iperf_secs: u32,
    pub loop_secs: f64,
}

/// What the rounds measured.
pub struct CrossNode {
    pub zw: Figures,
    pub none: Figures,
    /// A connection to a port no edge approves, made with the tables in place: refused.
    pub unapproved_refused: bool,
    pub setup: Vec<(String, Duration)>,
}

struct Pods {
    client: Netns,
    server_ip: String,
    _server: Netns,
    _processes: Vec<Process>,
}

/// Attaches the two pods, approves their edge on A, enforces both zones, then runs
/// the interleaved rounds. `a` and `b` are nodes of the cluster whose store is `etcd`.
pub fn measure(a: &mut Node, b: &mut Node, etcd: &Etcd, cfg: &Config) -> anyhow::Result<CrossNode> {
    let mut setup = Vec::new();
    let t = Instant::now();
    let pods = pods(a, b, etcd)?;
    setup.push((
        "cross-node pods attached, their edge approved, both zones enforcing, both nodes caught up"
            .to_owned(),
        t.elapsed(),
    ));
    let disallowed = format!("{}:{DISALLOWED_PORT}", pods.server_ip);
    let unapproved_refused = conn_rate(&pods.client, &disallowed, 0.0)?.ok == 0;
    let (mut zw, mut none) = (Figures::default(), Figures::default());
    for round in 0..cfg.reps {
        one(&pods, cfg, &mut zw)?;
        for node in [&mut *a, &mut *b] {
            node.stop_enforcer(true);
            node.nft(&["delete", "table", "inet", "zonewarden"])?;
        }
        one(&pods, cfg, &mut none)?;
        let t = Instant::now();
        for node in [&mut *a, &mut *b] {
            node.start_enforcer()?;
        }
        let revision = etcd.status()?.revision;
        for node in [&*a, &*b] {
            wait_caught_up(node, revision, Duration::from_secs(600))?;
        }
        if round == 0 {
            setup.push((
                "restart A's and B's enforcers with no table (rebuilt from etcd) until caught up"
                    .to_owned(),
                t.elapsed(),
            ));
        }
    }
    Ok(CrossNode {
        zw,
        none,
        unapproved_refused,
        setup,
    })
}

fn pods(a: &Node, b: &Node, etcd: &Etcd) -> anyhow::Result<Pods> {
    let client = Netns::new("xclient")?;
    attach(a, &client, &zonewarden_ipam_conf(a, NETWORK), CLIENT)
        .context("attach the client pod on node A")?;
    let server = Netns::new("xserver")?;
    let server_ip = attach(b, &server, &zonewarden_ipam_conf(b, NETWORK), SERVER)
        .context("attach the server pod on node B")?;
    client.sysctl("net.ipv4.ip_local_port_range", "10000 65000");
    for node in [a, b] {
        node.netns
            .sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1");
    }
    let processes = vec![
        start_server(
            &server,
            &[&CONN_PORT.to_string(), &DISALLOWED_PORT.to_string()],
        )?,
        start_iperf_server(&server, IPERF_PORT)?,
    ];
    let mut rpc = a.client()?;
    let edges = [CONN_PORT, IPERF_PORT]
        .map(|port| format!("{CLIENT}->{SERVER}:{port}/tcp"))
        .to_vec();
    a.rt.block_on(rpc.approve_edges(approve_request(CLIENT, edges)))?;
    for zone in [CLIENT, SERVER] {
        a.rt.block_on(rpc.set_mode(v1::SetModeRequest {
            zone: zone.into(),
            mode: v1::Mode::Enforce.into(),
            comment: "zw-bench".into(),
            create: true,
        }))?;
    }
    let revision = etcd.status()?.revision;
    for node in [a, b] {
        wait_caught_up(node, revision, Duration::from_secs(600))?;
    }
    Ok(Pods {
        client,
        server_ip,
        _server: server,
        _processes: processes,
    })
}

/// One iperf3 run and one connect loop from the client pod to the server pod.
fn one(pods: &Pods, cfg: &Config, f: &mut Figures) -> anyhow::Result<()> {
    f.gbits
        .push(iperf(&pods.client, &pods.server_ip, IPERF_PORT, cfg.iperf_secs)? / 1e9);
    let target = format!("{}:{CONN_PORT}", pods.server_ip);
    let r = approved_conn_rate(&pods.client, &target, cfg.loop_secs)?;
    f.conns.push(r.ok as f64 / r.seconds);
    Ok(())
}

/// The rows and notes of the cross-node data plane, added to bench 8's section.
pub fn report(sec: &mut Section, x: &CrossNode, cfg: &Config) {
    let (t, tn) = (x.zw.gbits.p50(), x.none.gbits.p50());
    let spread = |s: &crate::stats::Samples, unit: &str| {
        format!("{} {unit} ({})", fmt(s.p50()), s.spread(unit))
    };
    sec.row([
        "TCP throughput, pod on A → pod on B, both tables vs no table".into(),
        spread(&x.zw.gbits, "Gbit/s"),
        spread(&x.none.gbits, "Gbit/s"),
        ratio(t, tn),
        "≥ 0.95×".into(),
        verdict(t >= 0.95 * tn, || format!("{} vs ≥ 0.95×", ratio(t, tn))),
    ]);
    let (c, cn) = (x.zw.conns.p50(), x.none.conns.p50());
    sec.row([
        "new connections/s, pod on A → pod on B, both tables vs no table".into(),
        spread(&x.zw.conns, "conn/s"),
        spread(&x.none.conns, "conn/s"),
        ratio(c, cn),
        "≥ 0.90×".into(),
        verdict(c >= 0.90 * cn, || format!("{} vs ≥ 0.90×", ratio(c, cn))),
    ]);
    sec.note(format!(
        "Cross-node data plane: a client pod on node A and a server pod on node B, attached through the plugin with zonewarden IPAM (each node's own block; B's block routed via B's underlay address and back), their zones enforcing with the edge approved on A. A new connection passes A's forward chain (the client zone's egress chain, the server found in `zone_of_v4` as a remote endpoint) and B's (the server zone's ingress chain). {} rounds, each: one `iperf3 -t {}` and one {}-s loop of new TCP connections with both tables; then both enforcers killed and both tables deleted (pods, addresses and routes stay), the same again with no table; then both enforcers restarted, rebuilding their tables from etcd. A connection to a port no edge approves, made with the tables in place, was {}.",
        cfg.reps,
        cfg.iperf_secs,
        cfg.loop_secs,
        if x.unapproved_refused { "dropped" } else { "NOT dropped" }
    ));
    for (what, took) in &x.setup {
        sec.note(format!("setup: {what}: {:.1} s", took.as_secs_f64()));
    }
}
