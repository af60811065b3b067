//! Benchmark 2: TCP throughput and new connections per second between two pods of the
//! scale node, with zonewarden's table (at 10 and at all edges), with a linear ruleset
//! of the same edges (one rule per edge in a table of our own), and with no table.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;

use crate::report::{Section, verdict};
use crate::scale::{CONN_PORT, IPERF_PORT, Scale};
use crate::stats::{Samples, fmt, ratio};
use crate::traffic::{approved_conn_rate, iperf};

pub struct Config {
    pub reps: usize,
    pub iperf_secs: u32,
    pub loop_secs: f64,
}

/// Throughput (Gbit/s) and connection rate (per s) of repeated runs.
#[derive(Default)]
pub struct Figures {
    pub gbits: Samples,
    pub conns: Samples,
}

/// Alternates iperf3 and the connect loop `reps` times over IPv4, adding to `f`.
pub fn measure(scale: &Scale, cfg: &Config, reps: usize, f: &mut Figures) -> anyhow::Result<()> {
    measure_to(scale, &scale.server.ip, cfg, reps, f)
}

/// [`measure`] over IPv6, between the same two pods.
pub fn measure_v6(scale: &Scale, cfg: &Config, reps: usize, f: &mut Figures) -> anyhow::Result<()> {
    measure_to(scale, &scale.server.ip6, cfg, reps, f)
}

fn measure_to(
    scale: &Scale,
    server: &str,
    cfg: &Config,
    reps: usize,
    f: &mut Figures,
) -> anyhow::Result<()> {
    let addr: std::net::IpAddr = server.parse()?;
    let target = std::net::SocketAddr::new(addr, CONN_PORT).to_string();
    for _ in 0..reps {
        f.gbits
            .push(iperf(&scale.client.netns, server, IPERF_PORT, cfg.iperf_secs)? / 1e9);
        let r = approved_conn_rate(&scale.client.netns, &target, cfg.loop_secs)
            .with_context(|| format!("new connections to {target}"))?;
        f.conns.push(r.ok as f64 / r.seconds);
    }
    Ok(())
}

/// The figures of the interleaved rounds.
#[derive(Default)]
pub struct Rounds {
    pub zw: Figures,
    pub none: Figures,
    pub linear: Figures,
    /// zonewarden's table and no table, over IPv6 between the same pods.
    pub zw6: Figures,
    pub none6: Figures,
}

/// Rounds of zonewarden's full table, no table, and the linear ruleset, interleaved so
/// that the machine's drift hits all three: each round kills the enforcer and deletes
/// its table, loads and removes the linear table, and restarts the enforcer, which
/// rebuilds its table from its store. zonewarden and no table are measured over IPv4
/// and over IPv6.
pub fn interleaved(scale: &mut Scale, cfg: &Config) -> anyhow::Result<Rounds> {
    let mut r = Rounds::default();
    let file = scale.node.dir.path().join("linear.nft");
    std::fs::write(&file, linear_ruleset(scale))?;
    for round in 0..cfg.reps {
        let at = |what: &str| format!("round {}, {what}", round + 1);
        // Right after the restart (or the setup's API calls) the enforcer is still
        // busy for a moment: measured then, the first figure of the round paid for it.
        scale.node.wait_idle(Duration::from_secs(30))?;
        measure(scale, cfg, 1, &mut r.zw).with_context(|| at("zonewarden's table"))?;
        measure_v6(scale, cfg, 1, &mut r.zw6).with_context(|| at("zonewarden's table"))?;
        scale.node.stop_enforcer(true);
        scale.node.nft(&["delete", "table", "inet", "zonewarden"])?;
        measure(scale, cfg, 1, &mut r.none).with_context(|| at("no table"))?;
        measure_v6(scale, cfg, 1, &mut r.none6).with_context(|| at("no table"))?;
        let t = std::time::Instant::now();
        scale.node.nft_file(&file)?;
        if round == 0 {
            scale
                .setup
                .push(("load the linear ruleset with `nft -f`".into(), t.elapsed()));
        }
        measure(scale, cfg, 1, &mut r.linear).with_context(|| at("the linear ruleset"))?;
        scale
            .node
            .nft(&["delete", "table", "inet", "zwbench_linear"])?;
        let took = scale.node.start_enforcer()?;
        if round == 0 {
            scale.setup.push((
                "restart the enforcer with no table in the kernel (rebuilds it from its store)"
                    .into(),
                took,
            ));
        }
    }
    Ok(r)
}

/// The linear ruleset: one rule per approved edge (zone addresses as anonymous sets),
/// the pods' edge last, in a table of its own; written for `nft -f`.
pub fn linear_ruleset(scale: &Scale) -> String {
    let mut s = String::from(
        "table inet zwbench_linear {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n  ct state established,related accept\n",
    );
    for (src, dst, port) in scale.edge_addrs() {
        let _ = writeln!(
            s,
            "  ip saddr {{ {} }} ip daddr {{ {} }} tcp dport {port} accept",
            src.join(", "),
            dst.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "  ip saddr {} ip daddr {} tcp dport {{ {IPERF_PORT}, {CONN_PORT} }} accept\n }}\n}}",
        scale.client.ip, scale.server.ip
    );
    s
}

pub fn section(scale: &Scale, ten: &Figures, rounds: &Rounds, cfg: &Config) -> Section {
    let (full, linear, none) = (&rounds.zw, &rounds.linear, &rounds.none);
    let n = scale.size.edges;
    let mut sec = Section::new(&format!(
        "2. Data plane at scale: {} zones, {} dual-stack endpoints, {n} approved edges; two pods, both zones enforcing",
        scale.size.zones, scale.size.endpoints
    ));
    let gb = |f: &Figures| {
        format!(
            "{} Gbit/s ({})",
            fmt(f.gbits.p50()),
            f.gbits.spread("Gbit/s")
        )
    };
    let cr = |f: &Figures| {
        format!(
            "{} conn/s ({})",
            fmt(f.conns.p50()),
            f.conns.spread("conn/s")
        )
    };
    let (t, tn) = (full.gbits.p50(), none.gbits.p50());
    sec.row([
        format!("TCP throughput, zonewarden at {n} edges vs no table"),
        gb(full),
        gb(none),
        ratio(t, tn),
        "≥ 0.95×".into(),
        verdict(t >= 0.95 * tn, || format!("{} vs ≥ 0.95×", ratio(t, tn))),
    ]);
    let (c, cn) = (full.conns.p50(), none.conns.p50());
    sec.row([
        format!("new connections/s, zonewarden at {n} edges vs no table"),
        cr(full),
        cr(none),
        ratio(c, cn),
        "≥ 0.90×".into(),
        verdict(c >= 0.90 * cn, || format!("{} vs ≥ 0.90×", ratio(c, cn))),
    ]);
    let c10 = ten.conns.p50();
    let dev = (c / c10 - 1.0).abs();
    sec.row([
        format!("new connections/s, zonewarden at {n} edges vs at 10 edges"),
        cr(full),
        cr(ten),
        ratio(c, c10),
        "within 5%".into(),
        verdict(dev <= 0.05, || format!("{:.1}% apart", dev * 100.0)),
    ]);
    let (t6, tn6) = (rounds.zw6.gbits.p50(), rounds.none6.gbits.p50());
    sec.row([
        format!("TCP throughput over IPv6, zonewarden at {n} edges vs no table"),
        gb(&rounds.zw6),
        gb(&rounds.none6),
        ratio(t6, tn6),
        "≥ 0.95×".into(),
        verdict(t6 >= 0.95 * tn6, || {
            format!("{} vs ≥ 0.95×", ratio(t6, tn6))
        }),
    ]);
    let (c6, cn6) = (rounds.zw6.conns.p50(), rounds.none6.conns.p50());
    sec.row([
        format!("new connections/s over IPv6, zonewarden at {n} edges vs no table"),
        cr(&rounds.zw6),
        cr(&rounds.none6),
        ratio(c6, cn6),
        "≥ 0.90×".into(),
        verdict(c6 >= 0.90 * cn6, || {
            format!("{} vs ≥ 0.90×", ratio(c6, cn6))
        }),
    ]);
    sec.row([
        "TCP throughput, zonewarden at 10 edges vs no table".into(),
        gb(ten),
        gb(none),
        ratio(ten.gbits.p50(), tn),
        "—".into(),
        "—".into(),
    ]);
    {
        let lin = linear;
        sec.row([
            format!("TCP throughput, linear ruleset ({n} rules) vs no table"),
            gb(lin),
            gb(none),
            ratio(lin.gbits.p50(), tn),
            "—".into(),
            "—".into(),
        ]);
        sec.row([
            format!("new connections/s, linear ruleset ({n} rules) vs no table"),
            cr(lin),
            cr(none),
            ratio(lin.conns.p50(), cn),
            "—".into(),
            "—".into(),
        ]);
        sec.row([
            format!("new connections/s, zonewarden vs linear ruleset at {n} edges"),
            cr(full),
            cr(lin),
            ratio(c, lin.conns.p50()),
            "—".into(),
            "—".into(),
        ]);
    }
    sec.note("Every endpoint has an IPv4 and an IPv6 address, so every approved edge is in the IPv4 and the IPv6 sets; the IPv6 rows measure the same two pods over their IPv6 addresses (the IPv6 rules of the same chains).".to_owned());
    sec.note(format!(
        "Each repetition: one `iperf3 -t {}` (one stream) and one {}-s loop of new TCP connections (connect, wait for the server's close, close) from the client pod to the server pod, through the node's forward path.",
        cfg.iperf_secs, cfg.loop_secs
    ));
    sec.note("The linear ruleset is a table `inet zwbench_linear` in the node namespace: `ct state established,related accept`, then one rule per approved edge (`ip saddr {zone's addresses} ip daddr {zone's addresses} tcp dport P accept`), the pods' edge last, policy drop; zonewarden's table was deleted first. \"No table\" is the same node with neither table.");
    sec.note("zonewarden at every edge, no table and the linear ruleset are interleaved round by round (the enforcer is killed, its table deleted, the linear table loaded and removed, and the enforcer restarted to rebuild its table from its store). The 10-edge figures were measured earlier, before the other edges were approved, so machine drift between the two shows in that ratio; the spreads say how much. Each round, and the 10-edge figures, start once the enforcer is idle (at most 20 ms of CPU in half a second): right after its restart it rebuilds and seals its table, and a figure taken then shared the two cores with that work.");
    sec.note(scale.table_summary.clone());
    for (what, took) in &scale.setup {
        sec.note(format!("setup: {what}: {:.1} s", took.as_secs_f64()));
    }
    sec
}
