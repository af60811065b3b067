//! Benchmark 8, second half: the membership a large cluster puts on every node. One
//! enforcer in cluster mode; its zones made through its own API; the node records and
//! endpoints of `nodes` other nodes written into etcd in the enforcer's format
//! ([`crate::etcd_load`], run inside the etcd member's namespace). Measured: the time
//! from the enforcer's start to ready and to every remote endpoint in its table, its
//! RSS, and a churn of remote endpoint changes with its watch lag sampled.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use zonewarden_proto::v1;

use crate::cluster::{cluster_node, node_addr, wait_caught_up};
use crate::cluster_net::{Etcd, Underlay};
use crate::etcd_load::{Done, zone};
use crate::node::{Node, bin};
use crate::proc_stat::memory_mib;
use crate::report::{Section, verdict};
use crate::scale::{add_request, approve_request, fan_out};
use crate::stats::{Samples, fmt, ratio};

const PREFIX: &str = "/zwbig";
const PER_NODE: usize = 100;
const RSS_GOAL_MIB: f64 = 100.0;
/// How long the enforcer idles before its settled resident memory is read: the
/// allocator returns freed pages to the kernel as they age (about ten seconds).
const SETTLE: Duration = Duration::from_secs(20);
const RESYNC_GOAL_S: f64 = 5.0;
/// Local AddEndpoint round trips timed with and without the remote endpoints known.
const LOCAL_ADDS: usize = 50;

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Other nodes (1,000 at full size), each with [`PER_NODE`] endpoints.
    pub nodes: usize,
    pub zones: usize,
    pub churn_rate: f64,
    pub churn_secs: f64,
}

struct Figures {
    populate: Done,
    live_catch_up: Duration,
    /// The restart of an enforcer killed right after it applied the last change.
    after_change: Restart,
    /// The restart of an enforcer killed, after which another table of the node's
    /// namespace changed (its table must be read back).
    after_other: Restart,
    members_counted: usize,
    churn: Done,
    lag: Vec<(f64, i64)>,
    catch_up: Duration,
    rss_after_churn: f64,
    rss_settled: f64,
    zones_setup: Duration,
    /// Local AddEndpoint round trips (ms) while the node knew no remote endpoint, and
    /// the ListEndpoints of one zone before each (the first read after a change).
    adds_alone: (Samples, Samples),
    /// The same once it knew every remote endpoint.
    adds_known: (Samples, Samples),
}

pub fn run(cfg: &Config) -> anyhow::Result<Section> {
    let underlay = Underlay::new()?;
    let etcd = Etcd::start(&underlay, 1)?;
    let mut node = cluster_node(&underlay, &etcd, PREFIX, 1)?;
    let f = measure(&mut node, &etcd, cfg);
    drop(node);
    drop(etcd);
    drop(underlay);
    Ok(section(cfg, &f?))
}

fn load(etcd: &Etcd, cfg: &Config, churn: bool) -> anyhow::Result<std::process::Child> {
    let mut cmd = etcd
        .netns()
        .exec(bin("zw-bench")?.to_str().context("utf-8 path")?);
    cmd.args(["etcd-load", "--endpoint", &etcd.url(), "--prefix", PREFIX])
        .args(["--nodes", &cfg.nodes.to_string()])
        .args(["--per-node", &PER_NODE.to_string()])
        .args(["--zones", &cfg.zones.to_string()]);
    if churn {
        cmd.args(["--churn-rate", &cfg.churn_rate.to_string()])
            .args(["--churn-secs", &cfg.churn_secs.to_string()]);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("start zw-bench etcd-load")?;
    crate::cleanup::register_pid(child.id());
    Ok(child)
}

fn finish(child: std::process::Child) -> anyhow::Result<Done> {
    let pid = child.id();
    let out = child.wait_with_output()?;
    crate::cleanup::forget_pid(pid);
    if !out.status.success() {
        bail!("zw-bench etcd-load failed ({})", out.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("etcd-load JSON")?;
    Ok(Done {
        seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
        writes: v["writes"].as_u64().unwrap_or(0) as usize,
        revision: v["revision"].as_i64().unwrap_or(0),
        last_addr: v["last_addr"].as_str().unwrap_or("").to_owned(),
    })
}

fn wait_in_table(node: &Node, addr: &str, within: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + within;
    while !node.has_element("zone_of_v4", addr)? {
        if Instant::now() > end {
            bail!(
                "{addr} was not in the enforcer's table within {within:?}; its log ends: {}",
                node.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn watch_lag(node: &Node) -> anyhow::Result<i64> {
    let mut c = node.client()?;
    let status = node
        .rt
        .block_on(c.status(v1::StatusRequest {}))?
        .into_inner();
    Ok(status.store.map_or(0, |s| s.watch_lag))
}

fn measure(node: &mut Node, etcd: &Etcd, cfg: &Config) -> anyhow::Result<Figures> {
    // The zones, through the enforcer's API: one local endpoint in each (which gives
    // the zone its id in etcd) and one edge each, z_i -> z_(i+1).
    let t = Instant::now();
    let client = node.client()?;
    let n = cfg.zones;
    let locals: Vec<(String, String, String)> = (0..n)
        .map(|i| (format!("big-{i}"), zone(i), node_addr(1, i)))
        .collect();
    fan_out(node, &client, locals, 16, |mut c, (id, zone, addr)| {
        Box::pin(async move {
            c.add_endpoint(add_request(&id, &zone, &addr)).await?;
            Ok(())
        })
    })
    .context("make the zones")?;
    let edges: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                zone(i),
                format!("{}->{}:80/tcp", zone(i), zone((i + 1) % n)),
            )
        })
        .collect();
    fan_out(node, &client, edges, 16, |mut c, (zone, edge)| {
        Box::pin(async move {
            c.approve_edges(approve_request(&zone, vec![edge])).await?;
            Ok(())
        })
    })
    .context("approve the zones' edges")?;
    let zones_setup = t.elapsed();
    let adds_alone = local_adds(node, "alone", n)?;

    // The other nodes, written while the enforcer runs: it takes them from its watch.
    let t = Instant::now();
    let populate = finish(load(etcd, cfg, false)?)?;
    wait_caught_up(node, populate.revision, Duration::from_secs(600))?;
    wait_in_table(node, &populate.last_addr, Duration::from_secs(60))?;
    let live_catch_up = t.elapsed();

    // A full resync: the enforcer killed right after it applied the last change (as
    // on a node of a busy cluster), and started again on the populated store; then
    // the same with a commit to another table of the node's namespace after the kill
    // (as kube-proxy makes all the time), so that the table must be read back.
    let after_change = restart(node, &populate, None)?;
    let after_other = restart(
        node,
        &populate,
        Some(&["add", "table", "ip", "zwbench_other"]),
    )?;
    anyhow::ensure!(
        !after_other.sealed_at_kill,
        "the table still counted as sealed after another table's commit"
    );
    let listing = node.nft(&["list", "map", "inet", "zonewarden", "zone_of_v4"])?;
    let members_counted = listing.matches(" : 0x").count();
    let adds_known = local_adds(node, "known", n)?;
    let pid = node.enforcer_pid().context("enforcer pid")?;

    // The churn, with the watch lag sampled every 100 ms.
    let start = Instant::now();
    let mut child = load(etcd, cfg, true)?;
    let mut lag = Vec::new();
    while child.try_wait()?.is_none() {
        lag.push((start.elapsed().as_secs_f64(), watch_lag(node)?));
        std::thread::sleep(Duration::from_millis(100));
    }
    let churn = finish(child)?;
    let t = Instant::now();
    wait_caught_up(node, churn.revision, Duration::from_secs(120))?;
    let catch_up = t.elapsed();
    wait_in_table(node, &churn.last_addr, Duration::from_secs(60))?;
    let rss_after_churn = memory_mib(pid)?.0;
    // Idle for a while: what an allocator gives back as freed pages age is gone by then.
    std::thread::sleep(SETTLE);
    let rss_settled = memory_mib(pid)?.0;
    Ok(Figures {
        populate,
        live_catch_up,
        after_change,
        after_other,
        members_counted,
        churn,
        lag,
        catch_up,
        rss_after_churn,
        rss_settled,
        zones_setup,
        adds_alone,
        adds_known,
    })
}

/// [`LOCAL_ADDS`] local AddEndpoint round trips into the node's existing zones, each
/// after a ListEndpoints of its zone (a reader, as `zwctl get endpoints`, the web page
/// or the event log are: the registry then publishes a snapshot that shares what the
/// ADD changes) and a GetEndpoint of its key (as the plugin asks before an ADD), and
/// each followed by its DelEndpoint (not timed).
fn local_adds(node: &Node, tag: &str, zones: usize) -> anyhow::Result<(Samples, Samples)> {
    let mut c = node.client()?;
    let (mut times, mut reads) = (Samples::default(), Samples::default());
    for i in 0..LOCAL_ADDS {
        let req = add_request(&format!("{tag}-{i}"), &zone(i % zones), &node_addr(2, i));
        let key = req.key.clone();
        let t = Instant::now();
        node.rt
            .block_on(c.list_endpoints(v1::ListEndpointsRequest {
                zone: zone(i % zones),
                ..Default::default()
            }))?;
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
        node.rt
            .block_on(c.get_endpoint(v1::GetEndpointRequest { key: key.clone() }))?;
        let t = Instant::now();
        node.rt.block_on(c.add_endpoint(req))?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        node.rt.block_on(c.del_endpoint(v1::DelEndpointRequest {
            key,
            retire_host_link: false,
        }))?;
    }
    Ok((times, reads))
}

/// One restart on the populated store: from the enforcer's start until it is ready,
/// and until it applied the store through the last revision written; its RSS (and
/// peak) right after.
struct Restart {
    /// Whether the table was sealed once the enforcer was dead (nothing changes it
    /// then): whether the restart could confirm it instead of reading it back.
    sealed_at_kill: bool,
    ready: Duration,
    all_in_table: Duration,
    rss: (f64, f64),
}

/// Kills the enforcer (SIGKILL), runs `nft ARGS` in its namespace if given, starts it
/// again and times its resync.
fn restart(node: &mut Node, populate: &Done, nft: Option<&[&str]>) -> anyhow::Result<Restart> {
    node.stop_enforcer(true);
    if let Some(args) = nft {
        node.nft(args)?;
    }
    let sealed_at_kill = node.table_sealed()?;
    let t = Instant::now();
    node.spawn_enforcer()?;
    node.wait_ready(Duration::from_secs(600))?;
    let ready = t.elapsed();
    wait_caught_up(node, populate.revision, Duration::from_secs(600))?;
    let all_in_table = t.elapsed();
    anyhow::ensure!(
        node.has_element("zone_of_v4", &populate.last_addr)?,
        "the enforcer says it applied the store but its table lacks {}; its log ends: {}",
        populate.last_addr,
        node.log_tail()
    );
    let pid = node.enforcer_pid().context("enforcer pid")?;
    Ok(Restart {
        sealed_at_kill,
        ready,
        all_in_table,
        rss: memory_mib(pid)?,
    })
}

/// Mean lag of the first and of the last third of the churn.
fn thirds(lag: &[(f64, i64)]) -> (f64, f64) {
    let third = (lag.len() / 3).max(1);
    let mean = |s: &[(f64, i64)]| {
        if s.is_empty() {
            f64::NAN
        } else {
            s.iter().map(|(_, l)| *l as f64).sum::<f64>() / s.len() as f64
        }
    };
    let last = lag.len().saturating_sub(third);
    (mean(&lag[..third.min(lag.len())]), mean(&lag[last..]))
}

fn section(cfg: &Config, f: &Figures) -> Section {
    let endpoints = cfg.nodes * PER_NODE;
    let mut sec = Section::new(&format!(
        "8. Cluster mode: one enforcer knowing {endpoints} remote endpoints ({} other nodes, {} zones)",
        cfg.nodes, cfg.zones
    ));
    let at = if endpoints == 100_000 {
        String::new()
    } else {
        format!(" (measured at {endpoints} endpoints; the goal is for 100,000)")
    };
    let after_change = if f.after_change.sealed_at_kill {
        "killed right after applying the last change (its table sealed by that change's batch)"
    } else {
        "killed right after applying the last change (its table not sealed: read back)"
    };
    for (how, r) in [
        (after_change, &f.after_change),
        (
            "killed, then another table of the node's namespace changed (as kube-proxy's does): table read back",
            &f.after_other,
        ),
    ] {
        let all = r.all_in_table.as_secs_f64();
        sec.row([
            format!("full resync: enforcer {how}, started → every remote endpoint in its table"),
            format!(
                "{} s (ready after {} s)",
                fmt(all),
                fmt(r.ready.as_secs_f64())
            ),
            "the goal".into(),
            ratio(all, RESYNC_GOAL_S),
            format!("≤ {RESYNC_GOAL_S} s"),
            verdict(all <= RESYNC_GOAL_S, || format!("{} s", fmt(all))) + &at,
        ]);
        let rss = r.rss.0;
        sec.row([
            format!(
                "enforcer RSS after that resync ({} local endpoints)",
                cfg.zones
            ),
            format!("{} MiB (peak {} MiB)", fmt(rss), fmt(r.rss.1)),
            "the goal".into(),
            ratio(rss, RSS_GOAL_MIB),
            format!("≤ {RSS_GOAL_MIB} MB"),
            verdict(rss <= RSS_GOAL_MIB, || format!("{} MiB", fmt(rss))) + &at,
        ]);
    }
    let ((adds_k, reads_k), (adds_a, reads_a)) = (&f.adds_known, &f.adds_alone);
    for (what, known, alone) in [
        ("local AddEndpoint p50", adds_k.p50(), adds_a.p50()),
        ("local AddEndpoint p99", adds_k.p99(), adds_a.p99()),
        (
            "ListEndpoints of one zone, first read after a change, p50",
            reads_k.p50(),
            reads_a.p50(),
        ),
        (
            "ListEndpoints of one zone, first read after a change, p99",
            reads_k.p99(),
            reads_a.p99(),
        ),
    ] {
        sec.row([
            format!(
                "{what} (n={LOCAL_ADDS} each), knowing the {endpoints} remote endpoints vs knowing none"
            ),
            format!("{} ms", fmt(known)),
            format!("{} ms", fmt(alone)),
            ratio(known, alone),
            "—".into(),
            "—".into(),
        ]);
    }
    let (first, last) = thirds(&f.lag);
    let lags = Samples(f.lag.iter().map(|(_, l)| *l as f64).collect());
    let rate = f.churn.writes as f64 / f.churn.seconds;
    let absorbed = last <= first * 2.0 + 50.0 && f.catch_up.as_secs_f64() <= 1.0;
    sec.row([
        format!(
            "churn: {} remote endpoint changes at {} /s asked ({} /s written) for {} s",
            f.churn.writes,
            fmt(cfg.churn_rate),
            fmt(rate),
            fmt(cfg.churn_secs)
        ),
        format!(
            "watch lag: mean {} revisions in the first third, {} in the last, p99 {}, max {}; caught up {} s after the churn",
            fmt(first),
            fmt(last),
            fmt(lags.p99()),
            fmt(lags.max()),
            fmt(f.catch_up.as_secs_f64())
        ),
        "—".into(),
        "—".into(),
        "absorbed without lag growing".into(),
        verdict(absorbed, || {
            format!(
                "last third {} vs first {}, caught up after {} s",
                fmt(last),
                fmt(first),
                fmt(f.catch_up.as_secs_f64())
            )
        }),
    ]);
    sec.row([
        "enforcer RSS after the churn".into(),
        format!("{} MiB", fmt(f.rss_after_churn)),
        "—".into(),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    sec.row([
        format!("enforcer RSS {} s after the churn, idle", SETTLE.as_secs()),
        format!("{} MiB", fmt(f.rss_settled)),
        "the goal".into(),
        ratio(f.rss_settled, RSS_GOAL_MIB),
        format!("≤ {RSS_GOAL_MIB} MB"),
        verdict(f.rss_settled <= RSS_GOAL_MIB, || {
            format!("{} MiB", fmt(f.rss_settled))
        }) + &at,
    ]);
    sec.note(format!(
        "One etcd member (this half measures one enforcer, not etcd); one node namespace with a release enforcer in cluster mode. Its {} zones were made through its own API: one local endpoint each (AddEndpoint, which gives the zone its id) and one edge each (ApproveEdges), {:.1} s. The {} other nodes exist only as records in etcd: `zw-bench etcd-load` (inside the etcd member's namespace) wrote each node's record on a lease (a live node, its own /24 block) and {PER_NODE} endpoints per node, encoded by the enforcer's own code (`Keys`, `encode_endpoint`, `NodeRecord`), {} keys in {:.1} s. While the enforcer ran, it took them from its watch: {:.1} s from the start of the writing until its watch lag was 0 and the last endpoint was in its table.",
        cfg.zones,
        f.zones_setup.as_secs_f64(),
        cfg.nodes,
        f.populate.writes,
        f.populate.seconds,
        f.live_catch_up.as_secs_f64()
    ));
    sec.note(format!(
        "Full resync: the enforcer killed (SIGKILL) and started again on the populated store, twice: first right after it had applied the last endpoint written (as on a node of a cluster whose changes never pause; once its table is sealed, every netlink batch of the enforcer carries the seal of the table it leaves, so the restart confirms the table in two netlink requests, the seal naming the namespace's nftables generation), then killed again and another table of the node's namespace changed before the start (`nft add table ip zwbench_other`, as kube-proxy's commits do on a real node: the generation moves, and the restart reads the whole table back through netlink and applies the difference). Whether the table counted as sealed is read through netlink right after each kill. Each figure runs from the start until its Status said ready and the store applied through the last revision written (watch lag 0); the last endpoint written was then checked in `zone_of_v4`. Its `zone_of_v4` then held {} elements ({endpoints} remote endpoints written). RSS is VmRSS of /proc/PID/status right after, the peak VmHWM; the enforcer allocates with jemalloc, which gives freed pages back as they age, so the idle figure after the churn is its settled footprint and the one after a resync still holds part of what the resync built.",
        f.members_counted
    ));
    sec.note(format!(
        "Local AddEndpoint: {LOCAL_ADDS} chained endpoints added one at a time into the node's existing zones, each after a ListEndpoints of its zone (a reader, as `zwctl get endpoints` or the web page: the registry publishes a snapshot of its state, which then shares what the ADD changes) and a GetEndpoint of its key (as the plugin asks before an ADD), and removed after (not timed); first right after the zones were made, before any remote endpoint was written, then after the two restarts, with every remote endpoint known. A local change must not cost more because the node knows a large cluster (see bench/README.md for what made it cost more before)."
    ));
    sec.note(format!(
        "Churn: each change is one put of one endpoint record with a new address, going round the nodes, at a steady rate ({} puts in flight at most); the watch lag is the enforcer's Status `store.watch_lag` (revisions seen but not yet applied), sampled every 100 ms ({} samples). \"Absorbed without lag growing\" is: the mean lag of the last third of the churn at most twice that of the first third plus 50 revisions, and the enforcer caught up (watch lag 0 at the last revision written; the last change then checked in its table) within 1 s after the churn stopped.",
        64,
        f.lag.len()
    ));
    sec
}
