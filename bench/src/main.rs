#![allow(clippy::print_stdout)]
//! `zw-bench`: the benchmark harness of zonewarden. `zw-bench all` runs every
//! benchmark against its baseline in the same run and writes `bench/RESULTS.md`.
//! Everything it makes (namespaces, processes) is its own, uniquely named, and removed
//! on exit, failure or Ctrl-C; nothing touches the machine's own network namespace.
//!
//! # Layout
//! - [`cleanup`], [`netns`], [`node`]: namespaces, processes and a node with its enforcer.
//! - [`cni`]: the plugin driver; [`traffic`]: servers, connect loops, iperf3.
//! - [`scale`]: the 1,000-zone node of benchmarks 2–6.
//! - one module per benchmark: [`cni_latency`], [`dataplane`], [`update`],
//!   [`learning`] (4 and 5), [`restart`], [`flows`] (7, on a small node of its own).
//! - [`cluster`] (8): three nodes in cluster mode on one etcd, and [`membership`]
//!   (8): one enforcer knowing the endpoints of a large cluster, written into etcd by
//!   [`etcd_load`]; [`cluster_net`]: their underlay and etcd cluster.
//! - [`stats`], [`report`], [`proc_stat`]: figures and `RESULTS.md`.

mod cleanup;
mod cluster;
mod cluster_net;
mod cni;
mod cni_latency;
mod cross_node;
mod dataplane;
mod etcd_load;
mod flows;
mod learning;
mod membership;
mod netns;
mod node;
mod proc_stat;
mod report;
mod restart;
mod scale;
mod stats;
mod traffic;
mod update;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use report::{Report, Section};
use scale::{Scale, Size};

/// The zonewarden benchmark harness.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs every benchmark and writes the results (needs root).
    All {
        /// A smoke run: small scale, few repetitions (figures not to be quoted).
        #[arg(long)]
        quick: bool,
        /// Where to write the results.
        #[arg(long, default_value = "bench/RESULTS.md")]
        out: PathBuf,
        /// The node of benchmarks 2–6 at this fraction of 1,000 zones, 5,000 endpoints and
        /// 10,000 edges (populating it goes through the enforcer's API and is slow).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Only these benchmarks: cni, scale (2–6), flows (7), cluster (8: both halves);
        /// membership runs only benchmark 8's second half (one enforcer knowing a large
        /// cluster).
        #[arg(
            long,
            value_delimiter = ',',
            default_values = SECTIONS,
            value_parser = clap::builder::PossibleValuesParser::new(ONLY_CHOICES)
        )]
        only: Vec<String>,
    },
    /// Runs benchmark 8 only (cluster mode), like `all --only cluster` (needs root).
    Cluster {
        /// A smoke run: small scale, few repetitions (figures not to be quoted).
        #[arg(long)]
        quick: bool,
        /// Where to write the results (the other sections of the file are kept).
        #[arg(long, default_value = "bench/RESULTS.md")]
        out: PathBuf,
        /// Benchmark 8 at this fraction of its full size (three nodes: 1,000 zones,
        /// 5,000 endpoints, 10,000 edges; one enforcer: 100,000 remote endpoints).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// Internal: TCP servers that close each connection at once (PORT or FROM-TO).
    Serve { specs: Vec<String> },
    /// Internal: new TCP connections one after another; prints JSON.
    ConnectLoop {
        /// ADDR:PORT or ADDR:FROM-TO (cycled).
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1000)]
        timeout_ms: u64,
        #[arg(long)]
        until_file: Option<PathBuf>,
    },
    /// Internal: runs a batch of CNI calls (JSON on stdin) inside the node namespace.
    CniDriver,
    /// Internal: writes other nodes' records and endpoints into etcd (or churns them).
    EtcdLoad(etcd_load::Args),
}

/// Every benchmark `--only` knows.
const SECTIONS: [&str; 4] = ["cni", "scale", "flows", "cluster"];
/// What `--only` takes: the sections, and benchmark 8's second half alone.
const ONLY_CHOICES: [&str; 5] = ["cni", "scale", "flows", "cluster", "membership"];

struct Plan {
    cni: cni_latency::Config,
    cluster: cluster::Config,
    membership: membership::Config,
    size: Size,
    dataplane: dataplane::Config,
    update_reps: usize,
    learning: learning::Config,
    restart_reps: usize,
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            cni: cni_latency::Config {
                seq_per_round: 10,
                seq_rounds: 2,
                concurrency: 10,
                conc_rounds: 2,
            },
            cluster: cluster::Config {
                samples: 10,
                cross: cross_node::Config {
                    reps: 2,
                    iperf_secs: 1,
                    loop_secs: 1.0,
                },
            },
            membership: membership::Config {
                nodes: 20,
                zones: 20,
                churn_rate: 1000.0,
                churn_secs: 3.0,
            },
            size: Size {
                zones: 100,
                endpoints: 500,
                edges: 1000,
                learn_edges: 40,
            },
            dataplane: dataplane::Config {
                reps: 2,
                iperf_secs: 1,
                loop_secs: 1.0,
            },
            update_reps: 5,
            learning: learning::Config {
                reps: 2,
                secs: 2.0,
                idle_secs: 2.0,
            },
            restart_reps: 2,
        }
    } else {
        Plan {
            cni: cni_latency::Config {
                seq_per_round: 40,
                seq_rounds: 5,
                concurrency: 50,
                conc_rounds: 5,
            },
            cluster: cluster::Config {
                samples: 50,
                cross: cross_node::Config {
                    reps: 5,
                    iperf_secs: 3,
                    loop_secs: 2.0,
                },
            },
            membership: membership::Config {
                nodes: 1000,
                zones: 1000,
                churn_rate: 1000.0,
                churn_secs: 10.0,
            },
            size: Size {
                zones: 1000,
                endpoints: 5000,
                edges: 10_000,
                learn_edges: 300,
            },
            dataplane: dataplane::Config {
                reps: 5,
                iperf_secs: 3,
                loop_secs: 2.0,
            },
            update_reps: 30,
            learning: learning::Config {
                reps: 5,
                secs: 4.0,
                idle_secs: 5.0,
            },
            restart_reps: 5,
        }
    }
}

fn step<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    eprintln!("zw-bench: {what} ...");
    let t = Instant::now();
    let r = f();
    eprintln!(
        "zw-bench: {what}: {} in {:.1} s",
        if r.is_ok() { "done" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    r
}

/// Benchmarks 2–6 on one scale node; each finished section is kept even if a later one fails.
fn scale_benchmarks(p: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let mut scale = step("2. build the scale node (10 edges)", || {
        Scale::build(p.size)
    })?;
    let mut ten = dataplane::Figures::default();
    step("2. data plane at 10 edges", || {
        scale.node.wait_idle(std::time::Duration::from_secs(30))?;
        dataplane::measure(&scale, &p.dataplane, p.dataplane.reps, &mut ten)
    })?;
    step("2. approve every edge", || scale.approve_rest())?;
    scale.table_summary = scale.table_size();
    // 5 (idle) and 4 share one run; 3 and 6 change the node, so they come after.
    let (learn, foot) = step("4+5. learning and footprint", || {
        learning::run(&scale, &p.learning)
    })?;
    let update = step("3. update latency", || update::run(&scale, p.update_reps));
    let restart = step("6. restart", || restart::run(&mut scale, p.restart_reps));
    let rounds = step(
        "2. zonewarden, no table and linear ruleset, interleaved (IPv4 and IPv6)",
        || dataplane::interleaved(&mut scale, &p.dataplane),
    );
    match rounds {
        Ok(rounds) => report.add(dataplane::section(&scale, &ten, &rounds, &p.dataplane)),
        Err(err) => report.add_failure("2. Data plane at scale", &err),
    }
    match update {
        Ok(s) => report.add(s),
        Err(err) => report.add_failure("3. Update latency", &err),
    }
    report.add(learn);
    report.add(foot);
    match restart {
        Ok(s) => report.add(s),
        Err(err) => report.add_failure("6. Restart", &err),
    }
    Ok(())
}

fn all(quick: bool, fraction: f64, out: &PathBuf, only: &[String]) -> anyhow::Result<()> {
    anyhow::ensure!(
        std::process::Command::new("id")
            .arg("-u")
            .output()?
            .stdout
            .starts_with(b"0"),
        "zw-bench needs root to create network namespaces: run it with sudo"
    );
    cleanup::install_signal_handler();
    cleanup::remove_stale_netns();
    let started = Instant::now();
    let mut p = plan(quick);
    if fraction != 1.0 {
        let f = |n: usize| ((n as f64 * fraction).round() as usize).max(10);
        p.size.zones = f(p.size.zones);
        p.size.endpoints = f(p.size.endpoints).max(p.size.zones);
        p.size.edges = f(p.size.edges);
        p.membership.nodes = f(p.membership.nodes);
        p.membership.zones = f(p.membership.zones);
    }
    let mut report = Report::default();
    if only.iter().any(|o| o == "cni") {
        match step("1. CNI latency", || cni_latency::run(&p.cni)) {
            Ok(s) => report.add(s),
            Err(err) => report.add_failure("1. CNI latency", &err),
        }
    }
    if only.iter().any(|o| o == "scale")
        && let Err(err) = scale_benchmarks(&p, &mut report)
    {
        report.add_failure("2–6. Benchmarks at scale", &err);
    }
    if only.iter().any(|o| o == "flows") {
        match step("7. watching flows", || flows::run(&p.dataplane)) {
            Ok(s) => report.add(s),
            Err(err) => report.add_failure("7. Watching flows", &err),
        }
    }
    if only.iter().any(|o| o == "cluster") {
        match step("8. cluster mode, three nodes", || {
            cluster::run(p.size, &p.cluster)
        }) {
            Ok(s) => report.add(s),
            Err(err) => report.add_failure("8. Cluster mode: three nodes", &err),
        }
    }
    if only.iter().any(|o| o == "cluster" || o == "membership") {
        match step(
            "8. cluster mode, one enforcer knowing a large cluster",
            || membership::run(&p.membership),
        ) {
            Ok(s) => report.add(s),
            Err(err) => report.add_failure(
                "8. Cluster mode: one enforcer knowing remote endpoints (of a large cluster)",
                &err,
            ),
        }
    }
    let mut command = String::from("sudo bench/run");
    if quick {
        command.push_str(" --quick");
    }
    if fraction != 1.0 {
        command.push_str(&format!(" --scale {fraction}"));
    }
    let partial = !SECTIONS.iter().all(|s| only.iter().any(|o| o == s));
    if partial {
        command.push_str(&format!(" --only {}", only.join(",")));
    }
    let seconds = started.elapsed().as_secs_f64();
    // A partial run keeps the other sections of the report it writes into.
    let text = match std::fs::read_to_string(out) {
        Ok(earlier) if partial => report.merge_into(&earlier, &command, quick, seconds),
        _ => report.render(&command, quick, seconds),
    };
    std::fs::write(out, &text).with_context(|| format!("write {}", out.display()))?;
    eprintln!(
        "zw-bench: wrote {} in {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    let _: Option<Section> = None;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::All {
            quick,
            out,
            only,
            scale,
        } => {
            let r = all(quick, scale, &out, &only);
            cleanup::remove_all();
            r
        }
        Cmd::Cluster { quick, out, scale } => {
            let r = all(quick, scale, &out, &["cluster".to_owned()]);
            cleanup::remove_all();
            r
        }
        Cmd::Serve { specs } => traffic::serve(&specs),
        Cmd::ConnectLoop {
            target,
            seconds,
            timeout_ms,
            until_file,
        } => {
            let (addr, ports) = target
                .rsplit_once(':')
                .context("--target ADDR:PORT[-PORT]")?;
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            let args = traffic::LoopArgs {
                addr: addr.parse()?,
                ports: traffic::port_range(ports)?,
                seconds,
                timeout: Duration::from_millis(timeout_ms),
                until_file,
            };
            println!("{}", serde_json::to_string(&traffic::connect_loop(&args))?);
            Ok(())
        }
        Cmd::CniDriver => cni::driver(),
        Cmd::EtcdLoad(args) => etcd_load::run(&args),
    }
}
