//! Benchmark 1: CNI ADD and DEL latency of zonewarden (routed, enforcer running; with
//! host-local, and with zonewarden IPAM) against Debian's `bridge` + `host-local`,
//! sequential and concurrent. The three alternate round by round so that the
//! machine's noise hits all of them.

use std::collections::BTreeMap;

use crate::cni::{Batch, Call, bridge_conf, run_batch, zonewarden_conf, zonewarden_ipam_conf};
use crate::netns::Netns;
use crate::node::Node;
use crate::report::{Section, verdict};
use crate::stats::{Samples, fmt, ratio};

pub struct Config {
    pub seq_per_round: usize,
    pub seq_rounds: usize,
    pub concurrency: usize,
    pub conc_rounds: usize,
}

/// Latencies of one (plugin, mode, command): every call, and each round's median.
#[derive(Default)]
struct Series {
    all: Samples,
    round_p50: Samples,
}

pub fn run(cfg: &Config) -> anyhow::Result<Section> {
    let mut node = Node::new("10.120.255.1")?;
    // zonewarden IPAM's block: as large as host-local's range.
    node.extra_args = vec!["--pod-cidr".into(), "10.123.0.0/16".into()];
    node.start_enforcer()?;
    // (series name, plugin type, network config)
    let plugins = [
        (
            "zonewarden",
            "zonewarden",
            zonewarden_conf(&node, "zwbench", "10.121.0.0/16"),
        ),
        (
            "zonewarden-ipam",
            "zonewarden",
            zonewarden_ipam_conf(&node, "zwipam"),
        ),
        (
            "bridge",
            "bridge",
            bridge_conf(&node, "refbench", "10.122.0.0/16"),
        ),
    ];
    let pool: Vec<Netns> = (0..cfg.seq_per_round.max(cfg.concurrency))
        .map(|i| Netns::new(&format!("cni{i}")))
        .collect::<anyhow::Result<_>>()?;
    let mut series: BTreeMap<(&'static str, &'static str, &'static str), Series> = BTreeMap::new();
    let mut retired = Samples::default();

    let mut round = |tag: &'static str,
                     n: usize,
                     concurrency: usize,
                     r: usize,
                     timed: bool|
     -> anyhow::Result<()> {
        // Each variant goes first, second and last in turn.
        let order = (0..plugins.len()).map(|k| (k + r) % plugins.len());
        for i in order {
            let (series_name, plugin, conf) = &plugins[i];
            let calls: Vec<Call> = pool[..n]
                .iter()
                .enumerate()
                .map(|(k, ns)| Call {
                    container_id: format!("{tag}{r}-{k}-{series_name}"),
                    netns: ns.path().display().to_string(),
                    args: format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=cni-{k}"),
                })
                .collect();
            for command in ["ADD", "DEL"] {
                let batch = Batch {
                    bin_dir: node.bin_dir(),
                    plugin: (*plugin).to_owned(),
                    command: command.into(),
                    conf: conf.clone(),
                    calls: calls.clone(),
                    concurrency,
                };
                let outcomes = run_batch(&node, &batch)?;
                if *plugin == "zonewarden" && command == "DEL" {
                    // The enforcer deletes the host veths in the background; the pods'
                    // netns are used again next round (by either plugin), so the round
                    // ends when they are gone. Not in any figure; reported below.
                    let ms = wait_veths_retired(&node)?;
                    if timed {
                        retired.push(ms);
                    }
                }
                if timed {
                    let s = series.entry((series_name, tag, command)).or_default();
                    let round = Samples(outcomes.iter().map(|o| o.ms).collect());
                    s.round_p50.push(round.p50());
                    s.all.0.extend(round.0);
                }
            }
        }
        Ok(())
    };
    // Warm-up (not timed): the bridge, the IPAM directories, the page cache.
    round("warm", 2, 1, 0, false)?;
    for r in 0..cfg.seq_rounds {
        round("seq", cfg.seq_per_round, 1, r, true)?;
    }
    for r in 0..cfg.conc_rounds {
        round("conc", cfg.concurrency, cfg.concurrency, r, true)?;
    }
    node.stop_enforcer(false);

    let mut sec = Section::new(
        "1. CNI latency: zonewarden (routed, enforcer running; host-local or zonewarden IPAM) vs bridge + host-local",
    );
    let empty = Series::default();
    for (ours, ipam) in [
        ("zonewarden", "host-local"),
        ("zonewarden-ipam", "zonewarden IPAM"),
    ] {
        for (tag, label, n) in [
            ("seq", "sequential", cfg.seq_per_round * cfg.seq_rounds),
            (
                "conc",
                &format!("{} concurrent", cfg.concurrency),
                cfg.concurrency * cfg.conc_rounds,
            ),
        ] {
            for command in ["ADD", "DEL"] {
                let zw = series.get(&(ours, tag, command)).unwrap_or(&empty);
                let rf = series.get(&("bridge", tag, command)).unwrap_or(&empty);
                for (q, goal) in [(50.0, Some(0.5)), (99.0, (tag == "conc").then_some(1.0))] {
                    let (a, b) = (zw.all.pct(q), rf.all.pct(q));
                    let measured = if q == 50.0 {
                        format!(
                            "{} ms (round medians {})",
                            fmt(a),
                            zw.round_p50.spread("ms")
                        )
                    } else {
                        format!("{} ms", fmt(a))
                    };
                    let (goal_text, v) = match goal {
                        Some(g) => (
                            format!("≤ {g}×"),
                            verdict(a <= g * b, || {
                                format!(
                                    "{} vs ≤ {g}×: {:.0}% over",
                                    ratio(a, b),
                                    (a / (g * b) - 1.0) * 100.0
                                )
                            }),
                        ),
                        None => ("—".into(), "—".into()),
                    };
                    sec.row([
                        format!("{command} p{q:.0}, {label}, {ipam} (n={n} each)"),
                        measured,
                        format!("{} ms", fmt(b)),
                        ratio(a, b),
                        goal_text,
                        v,
                    ]);
                }
            }
        }
    }
    sec.note("Each figure is the wall time of one plugin process as a runtime runs it (fork, exec, stdin config, result), measured by a driver inside the node namespace; zonewarden with host-local, zonewarden with zonewarden IPAM and the bridge take turns round by round, each in every position. The baseline of every row is bridge + host-local.");
    sec.note(format!(
        "zonewarden's DEL returns once the enforcer has removed the endpoint's rules and the routes to its addresses; the enforcer deletes the host veth in the background (deleting a veth waits for RCU grace periods). Before the next round used the same pod namespaces, the benchmark waited until every host veth of the round was gone: {} ms after the batch's last DEL returned (median over rounds; spread {}).",
        fmt(retired.p50()),
        retired.spread("ms")
    ));
    sec.note("zonewarden's ADD returns only after the enforcer has put the endpoint into the kernel (one netlink batch: the endpoint's set elements, and a new zone's sets, chains and rules): that is inside every zonewarden figure. With host-local, both plugins run Debian's host-local as a separate program (about 3 ms of each figure); with zonewarden IPAM (`\"ipam\": {\"type\": \"zonewarden\"}`, the enforcer started with `--pod-cidr 10.123.0.0/16`) the plugin asks the enforcer for the address over its socket (one RPC, while it makes the veth pair) and no IPAM program runs.");
    Ok(sec)
}

/// Waits until the node has no zonewarden host veth left; returns how long it took.
fn wait_veths_retired(node: &Node) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    loop {
        let links = node.netns.ip(&["-o", "link", "show"])?;
        let left = links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .filter(|n| {
                // zonewarden's host ends: "zw" and 11 hex digits (not the bridge "zwb-br0").
                n.len() == 13
                    && n.starts_with("zw")
                    && n[2..].chars().all(|c| c.is_ascii_hexdigit())
            })
            .count();
        if left == 0 {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{left} host veths were still there 60 s after DEL"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
