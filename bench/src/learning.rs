//! Benchmarks 4 and 5: learning under load (distinct edges recorded vs generated, log
//! messages per connection) and the enforcer's footprint, idle and while learning.

use std::time::{Duration, Instant};

use anyhow::Context;
use zonewarden_proto::v1;

use crate::proc_stat::{cpu_seconds, memory_mib};
use crate::report::{Section, verdict};
use crate::scale::{LEARN_DST, LEARN_PORTS, LEARN_SRC, Scale};
use crate::stats::{Samples, fmt, ratio};
use crate::traffic::{finish_loop, spawn_loop};

pub struct Config {
    pub reps: usize,
    pub secs: f64,
    pub idle_secs: f64,
}

/// Learned edges learn-src -> learn-dst on `ports`: (distinct, sum of evidence counts).
fn learned(scale: &Scale, ports: (u16, u16)) -> anyhow::Result<(u64, u64)> {
    let mut c = scale.node.client()?;
    let edges = scale.node.rt.block_on(c.list_edges(v1::ListEdgesRequest {
        zone: LEARN_SRC.into(),
        learned_only: true,
        approved_only: false,
    }))?;
    let prefix = format!("{LEARN_SRC}->{LEARN_DST}:");
    let (mut n, mut count) = (0, 0);
    for e in &edges.get_ref().edges {
        let Some(port) = e
            .edge
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("/tcp"))
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        if (ports.0..=ports.1).contains(&port) {
            n += 1;
            count += e.evidence.as_ref().map_or(0, |ev| ev.count);
        }
    }
    Ok((n, count))
}

pub fn run(scale: &Scale, cfg: &Config) -> anyhow::Result<(Section, Section)> {
    let pid = scale.node.enforcer_pid().context("no enforcer")?;
    // Idle.
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    let mut idle_rss = Samples::default();
    while t0.elapsed().as_secs_f64() < cfg.idle_secs {
        idle_rss.push(memory_mib(pid)?.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    let idle_cpu = (cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64() * 100.0;

    let per = scale.size.learn_edges / cfg.reps as u16;
    let (mut missed_total, mut per_conn, mut per_edge, mut rates) = (
        0u64,
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let (mut learn_rss, mut learn_cpu) = (Samples::default(), Samples::default());
    let mut generated_total = 0;
    for r in 0..cfg.reps {
        let ports = (
            LEARN_PORTS + r as u16 * per,
            LEARN_PORTS + (r as u16 + 1) * per - 1,
        );
        let target = format!("{}:{}-{}", scale.ldst.ip, ports.0, ports.1);
        let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
        let p = spawn_loop(&scale.lsrc.netns, &target, cfg.secs, 1000, None)?;
        while t0.elapsed().as_secs_f64() < cfg.secs {
            learn_rss.push(memory_mib(pid)?.0);
            std::thread::sleep(Duration::from_millis(100));
        }
        let res = finish_loop(p)?;
        learn_cpu.push((cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64() * 100.0);
        rates.push(res.ok as f64 / res.seconds);
        let generated = res.ok.min(u64::from(per));
        generated_total += generated;
        // Wait until learning settles: the same answer for 1 s, at most 10 s.
        let (mut last, mut since, end) = (
            learned(scale, ports)?,
            Instant::now(),
            Instant::now() + Duration::from_secs(10),
        );
        while since.elapsed() < Duration::from_secs(1) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
            let now = learned(scale, ports)?;
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        let (distinct, messages) = last;
        missed_total += generated.saturating_sub(distinct);
        per_conn.push(messages as f64 / res.ok.max(1) as f64);
        per_edge.push(messages as f64 / distinct.max(1) as f64);
    }
    let (_, hwm) = memory_mib(pid)?;

    let mut learn = Section::new("4. Learning under load");
    learn.row([
        format!(
            "distinct edges missed ({} runs of {} s, {per} new distinct edges each)",
            cfg.reps, cfg.secs
        ),
        format!("{missed_total} missed of {generated_total} generated"),
        format!("{generated_total} generated"),
        ratio(
            (generated_total - missed_total) as f64,
            generated_total as f64,
        ),
        "0 missed".into(),
        verdict(missed_total == 0, || format!("{missed_total} missed")),
    ]);
    let ratio_edges_conns = per_edge.p50() / (rates.p50() * cfg.secs / f64::from(per));
    learn.row([
        "log messages per new connection".into(),
        format!("{} ({})", fmt(per_conn.p50()), per_conn.spread("")),
        format!("{} connections/s made", fmt(rates.p50())),
        "—".into(),
        "∝ distinct edges".into(),
        "—".into(),
    ]);
    learn.row([
        "log messages per distinct edge".into(),
        format!("{} ({})", fmt(per_edge.p50()), per_edge.spread("")),
        format!(
            "{} connections per distinct edge",
            fmt(rates.p50() * cfg.secs / f64::from(per))
        ),
        format!("{:.4}", ratio_edges_conns),
        "a constant, not ∝ connections".into(),
        verdict(per_edge.p50() <= 2.0, || {
            "messages grow with connections".into()
        }),
    ]);
    learn.note("The learning pair's zones are both in learn mode. A connect loop cycles through a fresh block of ports (each port is one distinct edge) as fast as one thread can; each run uses new ports, so the kernel's seen set has not met them yet.");
    learn.note("Log messages are counted as the evidence count the enforcer records per NFLOG message (`ListEdges`); the kernel's seen set (timeout 60 s) lets one message per distinct (source, destination, protocol, port) through, so the expected constant is 1 (at most 1 per end).");

    let mut foot = Section::new(&format!(
        "5. Enforcer footprint at scale ({} endpoints, {} edges)",
        scale.size.endpoints, scale.size.edges
    ));
    for (what, s) in [("RSS idle", &idle_rss), ("RSS while learning", &learn_rss)] {
        let m = s.max();
        foot.row([
            format!("{what} (VmRSS, max of samples)"),
            format!("{} MiB (samples {})", fmt(m), s.spread("MiB")),
            "50 MB goal".into(),
            ratio(m, 50.0),
            "≤ 50 MB".into(),
            verdict(m <= 50.0, || {
                format!("{:.0}% over", (m / 50.0 - 1.0) * 100.0)
            }),
        ]);
    }
    foot.row([
        "peak RSS since start (VmHWM, includes populating the node)".into(),
        format!("{} MiB", fmt(hwm)),
        "50 MB goal".into(),
        ratio(hwm, 50.0),
        "≤ 50 MB".into(),
        verdict(hwm <= 50.0, || {
            format!("{:.0}% over", (hwm / 50.0 - 1.0) * 100.0)
        }),
    ]);
    foot.row([
        format!("CPU idle (utime+stime over {} s)", cfg.idle_secs),
        format!("{}% of one CPU", fmt(idle_cpu)),
        "—".into(),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    foot.row([
        "CPU while learning".into(),
        format!(
            "{}% of one CPU ({})",
            fmt(learn_cpu.p50()),
            learn_cpu.spread("%")
        ),
        format!("{} new connections/s", fmt(rates.p50())),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    foot.note("MB here is MiB (VmRSS/VmHWM from /proc/PID/status, kB / 1024).");
    Ok((learn, foot))
}
