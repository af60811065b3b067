//! Benchmark 8, first half: three nodes in cluster mode. Three node namespaces on one
//! underlay, a three-member etcd cluster, three release enforcers with `--store etcd`; the zones,
//! endpoints (spread over the nodes) and edges registered through the enforcers' own
//! gRPC APIs. Measured: an endpoint added on node A until the tables of nodes B and C
//! hold it (polled through netlink while A's call runs), an approval on A until B and
//! C enforce it (the same way), the enforcers' RSS, etcd's bytes per endpoint and per edge, and
//! the resync of a node cut off from etcd while the history it missed was compacted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use zonewarden_proto::v1;

use crate::cluster_net::{Etcd, EtcdStatus, Underlay};
use crate::node::Node;
use crate::proc_stat::memory_mib;
use crate::report::{Section, latency_row};
use crate::scale::{Size, add_request, approve_request, fan_out};
use crate::stats::{Samples, fmt};

pub const PREFIX: &str = "/zwbench";
/// AddEndpoint calls of the population refused as a conflict and made again.
static RETRIES: AtomicUsize = AtomicUsize::new(0);
/// Goal of issue 11 for both propagation figures (p99, ms).
const GOAL_MS: f64 = 50.0;
/// The members of the etcd cluster the three nodes share (issue 11: a real etcd
/// cluster; every write is committed by a majority).
const ETCD_MEMBERS: usize = 3;
/// How long one change may take to reach the other nodes before the run fails.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Samples of each propagation figure.
    pub samples: usize,
    /// The rounds of the cross-node data plane.
    pub cross: crate::cross_node::Config,
}

/// Node `index` (1-based)'s pod block: `10.(100+index).0.0/16`.
pub fn block(index: u8) -> String {
    format!("10.{}.0.0/16", 100 + u32::from(index))
}

/// The `j`-th address of node `index`'s block for an endpoint registered without a
/// pod: from `10.(100+index).64.1` on, clear of the addresses zonewarden IPAM leases
/// to real pods from the start of the block.
pub fn node_addr(index: u8, j: usize) -> String {
    format!(
        "10.{}.{}.{}",
        100 + u32::from(index),
        64 + j / 250,
        j % 250 + 1
    )
}

pub fn zone(i: usize) -> String {
    format!("cluster/z{i:04}")
}

/// A node namespace on the underlay whose enforcer runs in cluster mode.
pub fn cluster_node(
    underlay: &Underlay,
    etcd: &Etcd,
    prefix: &str,
    index: u8,
) -> anyhow::Result<Node> {
    let mut node = Node::new(&format!("10.130.254.{index}"))?;
    underlay.attach(&node.netns, index)?;
    node.extra_args = etcd.enforcer_args(prefix);
    node.extra_args.extend([
        "--node-address".into(),
        format!("10.240.0.{index}"),
        "--pod-cidr".into(),
        block(index),
    ]);
    node.start_enforcer()?;
    Ok(node)
}

/// Waits until the enforcer has applied the store up to `revision` (watch lag 0).
pub fn wait_caught_up(node: &Node, revision: i64, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut c = node.client()?;
    loop {
        let status = node
            .rt
            .block_on(c.status(v1::StatusRequest {}))?
            .into_inner();
        if let Some(store) = status.store
            && store.revision >= revision
            && store.watch_lag == 0
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!(
                "the enforcer of {} did not catch up with etcd revision {revision} within {within:?}",
                node.netns.name
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Logical bytes under one part of the prefix: the summed sizes of keys and values
/// (`etcdctl get --prefix -w json`, base64 decoded), and the number of keys.
pub fn logical_bytes(etcd: &Etcd, prefix: &str) -> anyhow::Result<(u64, u64)> {
    let out = etcd.ctl(&["get", "--prefix", prefix, "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("etcdctl get JSON")?;
    let b64 = |s: &serde_json::Value| {
        let s = s.as_str().unwrap_or("");
        (s.len() / 4 * 3 - s.bytes().rev().take_while(|b| *b == b'=').count()) as u64
    };
    let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
    let bytes = kvs
        .iter()
        .map(|kv| b64(&kv["key"]) + b64(&kv["value"]))
        .sum();
    Ok((bytes, kvs.len() as u64))
}

struct Three {
    nodes: Vec<Node>,
    etcd: Etcd,
    /// Last: dropped after the namespaces plugged into it.
    _underlay: Underlay,
}

/// The figures of the first half, for the report.
struct Figures {
    known: Samples,
    add_rpc: Samples,
    enforced: Samples,
    approve_rpc: Samples,
    rss: Vec<(String, f64, f64)>,
    ep_db: f64,
    ep_logical: f64,
    edge_db: f64,
    profile_logical: f64,
    audit_logical: f64,
    resync: Duration,
    resync_logged: bool,
    /// etcd's database once everything was written.
    db: EtcdStatus,
    setup: Vec<(String, Duration)>,
}

pub fn run(size: Size, cfg: &Config) -> anyhow::Result<Section> {
    let mut setup = Vec::new();
    let t = Instant::now();
    let underlay = Underlay::new()?;
    let etcd = Etcd::start(&underlay, ETCD_MEMBERS)?;
    let nodes = (1..=3)
        .map(|i| cluster_node(&underlay, &etcd, PREFIX, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut three = Three {
        nodes,
        etcd,
        _underlay: underlay,
    };
    setup.push((
        "underlay, etcd and three enforcers started".to_owned(),
        t.elapsed(),
    ));
    let mut f = measure(&three, size, cfg, &mut setup)?;
    f.setup = setup;
    let (a, rest) = three.nodes.split_at_mut(1);
    let cross = crate::cross_node::measure(&mut a[0], &mut rest[0], &three.etcd, &cfg.cross)
        .context("the data plane across nodes")?;
    let mut sec = section(size, cfg, &f);
    crate::cross_node::report(&mut sec, &cross, &cfg.cross);
    Ok(sec)
}

fn measure(
    three: &Three,
    size: Size,
    cfg: &Config,
    setup: &mut Vec<(String, Duration)>,
) -> anyhow::Result<Figures> {
    let (a, b, c) = (&three.nodes[0], &three.nodes[1], &three.nodes[2]);
    let etcd = &three.etcd;
    let zones = size.zones;
    // Endpoint i is in zone i % zones; a zone's k-th member is on node k % 3, so that
    // every zone with three members or more has one on every node.
    let mut per_node: Vec<Vec<(String, String, String)>> = vec![Vec::new(); 3];
    // The first member of every zone (on node A).
    let mut first = Vec::with_capacity(zones);
    for i in 0..size.endpoints {
        let n = (i / zones) % 3;
        let j = per_node[n].len();
        let addr = node_addr(n as u8 + 1, j);
        if i < zones {
            first.push(addr.clone());
        }
        per_node[n].push((format!("cl-{i}"), zone(i % zones), addr));
    }
    let register = |node: &Node, items: Vec<(String, String, String)>| {
        let client = node.client()?;
        fan_out(node, &client, items, 16, |mut c, (id, zone, addr)| {
            Box::pin(async move {
                // A conflict with a change the node has not seen yet is refused with
                // "retry"; the benchmark retries as a runtime would, and counts it.
                for attempt in 1.. {
                    match c.add_endpoint(add_request(&id, &zone, &addr)).await {
                        Ok(_) => break,
                        Err(status)
                            if attempt < 5
                                && status.code() == tonic::Code::Unavailable
                                && status.message().contains("Retry") =>
                        {
                            RETRIES.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(status) => return Err(status.into()),
                    }
                }
                Ok(())
            })
        })
    };
    // Node A first: it has a member of every zone, so it creates every zone; then B
    // and C at once, into zones that exist.
    let mut lists = std::mem::take(&mut per_node).into_iter();
    let (list_a, list_b, list_c) = (
        lists.next().unwrap_or_default(),
        lists.next().unwrap_or_default(),
        lists.next().unwrap_or_default(),
    );
    let t = Instant::now();
    let n_a = list_a.len();
    register(a, list_a).context("register node A's endpoints")?;
    setup.push((
        format!("register {n_a} endpoints on node A (creating {zones} zones), 16 in flight"),
        t.elapsed(),
    ));
    let before_bc = etcd.status()?;
    let (ep_before, _) = logical_bytes(etcd, &format!("{PREFIX}/endpoints/"))?;
    let n_bc = list_b.len() + list_c.len();
    let t = Instant::now();
    std::thread::scope(|s| {
        let hb = s.spawn(|| register(b, list_b));
        let hc = s.spawn(|| register(c, list_c));
        hb.join().expect("register on B")?;
        hc.join().expect("register on C")
    })
    .context("register nodes B's and C's endpoints")?;
    setup.push((
        format!("register {n_bc} endpoints on nodes B and C at once, 16 in flight each"),
        t.elapsed(),
    ));
    let after_bc = etcd.status()?;
    let (ep_after, ep_keys) = logical_bytes(etcd, &format!("{PREFIX}/endpoints/"))?;
    let ep_db = per(after_bc, before_bc, n_bc);
    let ep_logical = (ep_after - ep_before) as f64 / n_bc as f64;

    // Edges: z_i -> z_(i+k) on port 8000+k, approved on node A, one call per zone.
    let mut grouped: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for n in 0..size.edges {
        let (src, k) = (n % zones, n / zones + 1);
        let edge = format!(
            "{}->{}:{}/tcp",
            zone(src),
            zone((src + k) % zones),
            8000 + k
        );
        grouped.entry(zone(src)).or_default().push(edge);
    }
    let calls = grouped.len();
    let before_edges = etcd.status()?;
    let client = a.client()?;
    let t = Instant::now();
    fan_out(
        a,
        &client,
        grouped.into_iter().collect(),
        16,
        |mut c, (zone, edges)| {
            Box::pin(async move {
                c.approve_edges(approve_request(&zone, edges)).await?;
                Ok(())
            })
        },
    )
    .context("approve the edges on node A")?;
    setup.push((
        format!(
            "approve {} edges on node A, {calls} ApproveEdges calls, 16 in flight",
            size.edges
        ),
        t.elapsed(),
    ));
    let after_edges = etcd.status()?;
    let edge_db = per(after_edges, before_edges, size.edges);
    let (profile_bytes, _) = logical_bytes(etcd, &format!("{PREFIX}/profiles/"))?;
    let (audit_bytes, _) = logical_bytes(etcd, &format!("{PREFIX}.audit/"))?;
    let t = Instant::now();
    for n in [a, b, c] {
        wait_caught_up(n, after_edges.revision, Duration::from_secs(600))?;
    }
    setup.push((
        "every node caught up with etcd (watch lag 0)".to_owned(),
        t.elapsed(),
    ));
    anyhow::ensure!(
        ep_keys as usize == size.endpoints,
        "etcd holds {ep_keys} endpoint records, not {}",
        size.endpoints
    );

    let rss = three
        .nodes
        .iter()
        .zip(["A", "B", "C"])
        .map(|(n, name)| {
            let pid = n.enforcer_pid().context("enforcer pid")?;
            let (rss, hwm) = memory_mib(pid)?;
            Ok((name.to_owned(), rss, hwm))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    // Propagation, polled in B's and C's tables at once.
    let id_of = |z: usize| zone_id(etcd, &zone(z));
    let mut rpc = a.client()?;
    let (mut known, mut add_rpc) = (Samples::default(), Samples::default());
    for i in 0..cfg.samples {
        let addr = format!("10.101.200.{}", i + 1);
        let zone_name = zone((i * 7) % zones);
        let mut rpc_ms = 0.0;
        let (t0, done) = timed_change(b, c, "zone_of_v4", &addr, || {
            let t = Instant::now();
            a.rt.block_on(rpc.add_endpoint(add_request(
                &format!("cl-new-{i}"),
                &zone_name,
                &addr,
            )))?;
            rpc_ms = ms(t.elapsed());
            Ok(())
        })?;
        add_rpc.push(rpc_ms);
        known.push(ms(done - t0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut enforced, mut approve_rpc) = (Samples::default(), Samples::default());
    for i in 0..cfg.samples {
        let port = 20_000 + i;
        let (src, dst) = ((i * 13) % zones, (i * 13 + 5) % zones);
        let set = format!("allow_out_v4_{}", id_of(src)?);
        let elem = format!("{} . tcp . {port}", first[dst]);
        let mut rpc_ms = 0.0;
        let (t0, done) = timed_change(b, c, &set, &elem, || {
            let t = Instant::now();
            a.rt.block_on(rpc.approve_edges(approve_request(
                &zone(src),
                vec![format!("{}->{}:{port}/tcp", zone(src), zone(dst))],
            )))?;
            rpc_ms = ms(t.elapsed());
            Ok(())
        })?;
        approve_rpc.push(rpc_ms);
        enforced.push(ms(done - t0));
        std::thread::sleep(Duration::from_millis(20));
    }

    let edge = (
        format!("allow_out_v4_{}", id_of(0)?),
        format!("{} . tcp . 30000", first[1]),
    );
    let (resync, resync_logged) = resync_after_compaction(three, &edge)?;
    Ok(Figures {
        known,
        add_rpc,
        enforced,
        approve_rpc,
        rss,
        ep_db,
        ep_logical,
        edge_db,
        profile_logical: profile_bytes as f64 / size.edges as f64,
        audit_logical: audit_bytes as f64 / calls as f64,
        resync,
        resync_logged,
        db: after_edges,
        setup: Vec::new(),
    })
}

/// The revision through which the enforcer has applied the store (Status: the
/// revision it knows less its watch lag); it moves once the kernel holds the change.
pub fn applied(node: &Node) -> anyhow::Result<i64> {
    let status = node
        .rt
        .block_on(node.client()?.status(v1::StatusRequest {}))?
        .into_inner();
    let store = status.store.context("Status without a store")?;
    Ok(store.revision - store.watch_lag)
}

/// The pause between two lookups of a propagation poll: a resolution of 1 ms against
/// a goal of 50 ms. A lookup is one netlink request to the polled node's kernel; it
/// does not load the node's enforcer.
const POLL_PAUSE: Duration = Duration::from_millis(1);

/// Polls `node`'s table until it holds `elem` in `set`; the moment it did.
fn poll_element(
    node: &Node,
    set: &str,
    elem: &str,
    end: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<Instant> {
    loop {
        if node.has_element(set, elem)? {
            return Ok(Instant::now());
        }
        if stop.load(Ordering::Acquire) {
            bail!("the change on node A failed");
        }
        if Instant::now() > end {
            bail!(
                "{set} of {} did not get {{ {elem} }} within {PROPAGATION_LIMIT:?}; its log ends: {}",
                node.netns.name,
                node.log_tail()
            );
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// Runs `change` (on node A); returns when it started and when both B and C held
/// `elem` in `set`. Both tables are polled from the moment the change starts, while
/// A's call runs: A commits to etcd before its own kernel takes the change, so the
/// other nodes may hold it before A's call returns.
fn timed_change(
    b: &Node,
    c: &Node,
    set: &str,
    elem: &str,
    change: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<(Instant, Instant)> {
    let nodes = [b, c];
    for node in nodes {
        // Opens the node's socket before the clock starts, and makes sure the sample
        // measures a change.
        anyhow::ensure!(
            !node.has_element(set, elem)?,
            "{set} of {} holds {{ {elem} }} before the change",
            node.netns.name
        );
    }
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let end = t0 + PROPAGATION_LIMIT;
    let (changed, seen) = std::thread::scope(|s| {
        let polls: Vec<_> = nodes
            .iter()
            .map(|node| s.spawn(|| poll_element(node, set, elem, end, &stop)))
            .collect();
        let changed = change();
        if changed.is_err() {
            stop.store(true, Ordering::Release);
        }
        let seen: anyhow::Result<Vec<Instant>> = polls
            .into_iter()
            .map(|p| p.join().expect("a propagation poll"))
            .collect();
        (changed, seen)
    });
    changed?;
    let seen = seen?;
    Ok((t0, seen[0].max(seen[1])))
}

/// The zone's id, from its record in etcd.
fn zone_id(etcd: &Etcd, zone: &str) -> anyhow::Result<u32> {
    let out = etcd.ctl(&[
        "get",
        &format!("{PREFIX}/zones/{zone}"),
        "--print-value-only",
    ])?;
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("the record of zone {zone}"))?;
    v["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .with_context(|| format!("no id in the record of zone {zone}: {out}"))
}

fn per(after: EtcdStatus, before: EtcdStatus, n: usize) -> f64 {
    after.db_size_in_use.saturating_sub(before.db_size_in_use) as f64 / n as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Node C cut off from etcd (new connections refused by a table of our own in C's
/// namespace, its open ones destroyed with `ss -K`), endpoints added and an edge
/// approved on A, etcd compacted past them, the cut lifted: the time from the lift
/// until C's table holds all of it, and whether C's log says it resynced.
fn resync_after_compaction(
    three: &Three,
    (edge_set, edge_elem): &(String, String),
) -> anyhow::Result<(Duration, bool)> {
    const CUT_TABLE: &str = "zwbench_cut";
    let (a, c) = (&three.nodes[0], &three.nodes[2]);
    c.nft(&[&format!(
        "add table inet zwbench_cut; \
         add chain inet zwbench_cut out {{ type filter hook output priority -300 ; }} ; \
         add rule inet zwbench_cut out ip daddr {{ {} }} tcp dport 2379 reject with tcp reset",
        three.etcd.addresses().join(", ")
    )])?;
    let cut = scopeguard(|| {
        let _ = c.nft(&["delete", "table", "inet", CUT_TABLE]);
    });
    // Every connection of C's namespace to port 2379 is one to an etcd member.
    crate::netns::run(c.netns.exec("ss").args(["-K", "dport", "=", "2379"]))?;
    let mut rpc = a.client()?;
    let addrs: Vec<String> = (1..=20).map(|i| format!("10.101.201.{i}")).collect();
    for (i, addr) in addrs.iter().enumerate() {
        a.rt.block_on(rpc.add_endpoint(add_request(&format!("cl-missed-{i}"), &zone(i), addr)))?;
    }
    let port = "30000";
    a.rt.block_on(rpc.approve_edges(approve_request(
        &zone(0),
        vec![format!("{}->{}:{port}/tcp", zone(0), zone(1))],
    )))?;
    let revision = three.etcd.compact()?;
    let t0 = Instant::now();
    drop(cut);
    let end = t0 + Duration::from_secs(60);
    while applied(c).ok().is_none_or(|r| r < revision) {
        if Instant::now() > end {
            bail!(
                "node C did not apply etcd revision {revision} within 60 s; its log ends: {}",
                c.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t0.elapsed();
    let mut missing = 0;
    for addr in &addrs {
        missing += usize::from(!c.has_element("zone_of_v4", addr)?);
    }
    anyhow::ensure!(
        missing == 0 && c.has_element(edge_set, edge_elem)?,
        "node C says it applied revision {revision} but its table lacks {missing} of the 20 addresses or the edge; its log ends: {}",
        c.log_tail()
    );
    let log = std::fs::read_to_string(c.log_path()).unwrap_or_default();
    Ok((took, log.contains("resyncing from a full listing")))
}

/// Runs `f` on drop.
struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

fn section(size: Size, cfg: &Config, f: &Figures) -> Section {
    let mut sec = Section::new(&format!(
        "8. Cluster mode: three nodes ({} zones, {} endpoints spread over the nodes, {} edges)",
        size.zones, size.endpoints, size.edges
    ));
    let mut prop = |what: &str, s: &Samples, goal: Option<f64>| sec.row(latency_row(what, s, goal));
    prop(
        "endpoint added on A (AddEndpoint) → in the tables of B and C",
        &f.known,
        Some(GOAL_MS),
    );
    prop(
        "approval on A (ApproveEdges) → enforced in the tables of B and C",
        &f.enforced,
        Some(GOAL_MS),
    );
    prop("AddEndpoint round trip on A", &f.add_rpc, None);
    prop("ApproveEdges round trip on A", &f.approve_rpc, None);
    for (name, rss, hwm) in &f.rss {
        sec.row([
            format!("enforcer RSS on node {name} after population"),
            format!("{} MiB (peak {} MiB)", fmt(*rss), fmt(*hwm)),
            "—".into(),
            "—".into(),
            "—".into(),
            "—".into(),
        ]);
    }
    let bytes = |what: &str, v: f64, how: &str| {
        [
            what.to_owned(),
            format!("{} bytes", fmt(v)),
            "—".into(),
            "—".into(),
            "—".into(),
            how.to_owned(),
        ]
    };
    sec.row(bytes(
        "etcd bytes per endpoint (key + value)",
        f.ep_logical,
        "measured (no goal)",
    ));
    sec.row(bytes(
        "etcd bytes per endpoint (dbSizeInUse growth)",
        f.ep_db,
        "measured (no goal)",
    ));
    sec.row(bytes(
        "etcd bytes per edge in the profiles (key + value)",
        f.profile_logical,
        "measured (no goal)",
    ));
    sec.row(bytes(
        "etcd bytes per ApproveEdges in the audit trail (key + value)",
        f.audit_logical,
        "measured (no goal)",
    ));
    sec.row(bytes(
        "etcd bytes per edge (dbSizeInUse growth)",
        f.edge_db,
        "measured (no goal)",
    ));
    sec.row([
        "resync after compaction: node C cut off, 20 endpoints and 1 edge added, etcd compacted, cut lifted → C's table holds them".into(),
        format!("{} s", fmt(f.resync.as_secs_f64())),
        "—".into(),
        "—".into(),
        "—".into(),
        if f.resync_logged {
            "measured; C's log says it resynced from a full listing".into()
        } else {
            "measured; C's log does not mention a full resync".into()
        },
    ]);
    sec.note(format!(
        "A three-member etcd cluster (Debian's etcd, each member in a namespace of its own on the underlay; every enforcer is given all three). Three node namespaces on one bridge, each with a release enforcer run with `--store etcd --node-address --pod-cidr`. Endpoints are chained endpoints registered through each node's own AddEndpoint (node A first, creating every zone; then B and C at once); edges approved through A's ApproveEdges. Each propagation sample is one call on A, timed from just before the call until the tables of both B and C held the change: each table is polled while A's call runs (one netlink lookup of the element in the node's kernel, on both nodes at once, 1 ms apart; A writes etcd before its own kernel takes the change, so B and C may hold it before A's call returns), for the endpoint's address in `zone_of_v4`, or `<a member of the destination zone> . tcp . <port>` in the source zone's `allow_out_v4_<id>`. The later of B and C counts. {} samples each, one after another with 20 ms between.",
        cfg.samples
    ));
    sec.note("Bytes per endpoint: \"key + value\" sums the sizes of the keys and values under the prefix's `endpoints/` (the logical size, `etcdctl get --prefix -w json`), over the endpoints B and C registered; \"dbSizeInUse growth\" is the growth of etcd's `dbSizeInUse` (`etcdctl endpoint status -w json`) across the same registration, which includes the MVCC history and bbolt's page overhead. Edges live inside their source zone's profile; each ApproveEdges also writes one audit trail entry (beside the prefix) and rewrites the profile (the history counts in dbSizeInUse until compaction).");
    sec.note("Resync: a table of the benchmark's own in node C's namespace refuses new connections to etcd (TCP reset) and `ss -K` closes the open ones; A then adds 20 endpoints and approves one edge, `etcdctl compact --physical` removes the history C missed, and the table is removed. The figure runs from that removal until C's Status says it applied the compacted revision (checked afterwards: its table holds every one of the 20 addresses and the edge); it includes the enforcer's reconnect back-off (200 ms doubling to 5 s while etcd is unreachable), so part of it is waiting, not work.");
    sec.note(format!(
        "etcd's database after population: dbSize {:.1} MB, dbSizeInUse {:.1} MB (no compaction until the resync).",
        f.db.db_size as f64 / 1e6,
        f.db.db_size_in_use as f64 / 1e6
    ));
    for (what, d) in &f.setup {
        sec.note(format!("setup: {what}: {:.1} s", d.as_secs_f64()));
    }
    sec.note(format!(
        "AddEndpoint calls of the population refused with \"changed on another node … Retry\" (a zone id the node had not seen yet) and made again after 50 ms: {}.",
        RETRIES.load(Ordering::Relaxed)
    ));
    sec
}
