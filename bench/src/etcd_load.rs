//! `zw-bench etcd-load` (internal, run inside a namespace on the underlay): the records
//! of a large cluster's other nodes written straight into etcd, in the enforcer's own
//! format (its [`Keys`], [`encode_endpoint`] and [`NodeRecord`]): node records on a
//! lease, so the nodes are live, and their endpoints; then, when asked, a churn of
//! endpoint changes at a steady rate. Prints one JSON line of what it did.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{Client, PutOptions, Txn, TxnOp};
use ipnet::IpNet;
use serde::Serialize;
use zonewarden_enforcer::store::etcd::decode::encode_endpoint;
use zonewarden_enforcer::store::etcd::{Keys, NodeRecord};
use zonewarden_profiles::endpoint::AttachMode;
use zonewarden_profiles::{AttachmentKey, Endpoint, ZoneName, ZoneSource};

/// Puts per transaction (etcd refuses more than 128 operations in one).
const BATCH: usize = 100;
/// Transactions or puts in flight.
const IN_FLIGHT: usize = 16;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The etcd member's client URL.
    #[arg(long)]
    pub endpoint: String,
    #[arg(long)]
    pub prefix: String,
    /// The other nodes.
    #[arg(long)]
    pub nodes: usize,
    /// Endpoints per node (at most 120).
    #[arg(long)]
    pub per_node: usize,
    /// The endpoints go into zones `far/z0000` .. (which must exist).
    #[arg(long)]
    pub zones: usize,
    /// Instead of writing everything: this many endpoint changes per second...
    #[arg(long)]
    pub churn_rate: Option<f64>,
    /// ... for this long.
    #[arg(long, default_value_t = 10.0)]
    pub churn_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Done {
    pub seconds: f64,
    pub writes: usize,
    /// The revision after the last write.
    pub revision: i64,
    /// The address the last endpoint written now has.
    pub last_addr: String,
}

pub fn zone(i: usize) -> String {
    format!("far/z{i:04}")
}

pub fn node_name(k: usize) -> String {
    format!("far-{k:04}")
}

/// Endpoint `j` of node `k` in generation `generation` (its address alternates).
pub fn endpoint_addr(k: usize, j: usize, generation: usize) -> String {
    format!(
        "10.{}.{}.{}",
        128 + k / 250,
        k % 250,
        j + 1 + (generation % 2) * 128
    )
}

fn endpoint(args: &Args, k: usize, j: usize, generation: usize) -> anyhow::Result<Endpoint> {
    let addr: IpAddr = endpoint_addr(k, j, generation).parse()?;
    Ok(Endpoint {
        key: AttachmentKey {
            network: "zwbench-far".into(),
            container_id: format!("far-{k}-{j}").into(),
            ifname: "eth0".into(),
        },
        zone: ZoneName::parse(&zone((k * args.per_node + j) % args.zones))?,
        zone_source: ZoneSource::CniArgs,
        netns: format!("/var/run/netns/far-{k}-{j}"),
        host_ifname: None,
        bridge: None,
        ips: vec![IpNet::from(addr)],
        mac: None,
        node: node_name(k),
        pod_namespace: None,
        pod_name: None,
        attach_mode: AttachMode::Chained,
        created_unix_ms: 1_700_000_000_000,
    })
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.per_node <= 120, "--per-node is at most 120");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let done = rt.block_on(async {
        let client = Client::connect([args.endpoint.as_str()], None).await?;
        let keys = Keys::new(&args.prefix).map_err(anyhow::Error::msg)?;
        match args.churn_rate {
            Some(rate) => churn(args, &client, &keys, rate).await,
            None => populate(args, &client, &keys).await,
        }
    })?;
    println!("{}", serde_json::to_string(&done)?);
    Ok(())
}

async fn populate(args: &Args, client: &Client, keys: &Keys) -> anyhow::Result<Done> {
    let start = Instant::now();
    // One lease for every fake node, long enough for the run: no keep-alive needed.
    let lease = client.clone().lease_grant(3600, None).await?.id();
    let mut ops = Vec::new();
    for k in 0..args.nodes {
        let record = NodeRecord {
            name: node_name(k),
            address: format!("10.240.{}.{}", 1 + k / 250, k % 250 + 1).parse()?,
            second_address: None,
            pod_cidrs: vec![format!("10.{}.{}.0/24", 128 + k / 250, k % 250).parse()?],
            enforcer_version: "zw-bench".into(),
        };
        ops.push(TxnOp::put(
            keys.node(&record.name),
            serde_json::to_vec(&record)?,
            Some(PutOptions::new().with_lease(lease)),
        ));
    }
    let nodes = ops.len();
    let mut revision = write_batches(client, ops).await?;
    let mut ops = Vec::new();
    let mut last_addr = String::new();
    for k in 0..args.nodes {
        for j in 0..args.per_node {
            let e = endpoint(args, k, j, 0)?;
            last_addr = endpoint_addr(k, j, 0);
            ops.push(TxnOp::put(
                keys.endpoint(&e.node, &e.key),
                encode_endpoint(&e),
                None,
            ));
        }
    }
    let endpoints = ops.len();
    revision = revision.max(write_batches(client, ops).await?);
    Ok(Done {
        seconds: start.elapsed().as_secs_f64(),
        writes: nodes + endpoints,
        revision,
        last_addr,
    })
}

/// Writes `ops` in transactions of [`BATCH`], [`IN_FLIGHT`] at once; the last revision.
async fn write_batches(client: &Client, ops: Vec<TxnOp>) -> anyhow::Result<i64> {
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let batch: Vec<TxnOp> = ops.by_ref().take(BATCH).collect();
        let permit = sem.clone().acquire_owned().await?;
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.txn(Txn::new().and_then(batch)).await;
            drop(permit);
            r.map(|r| r.header().map_or(0, |h| h.revision()))
        }));
    }
    let mut revision = 0;
    for t in tasks {
        revision = revision.max(t.await?.context("write a batch into etcd")?);
    }
    Ok(revision)
}

/// `rate` endpoint changes per second (each a new address for one endpoint, going
/// round the nodes) for `args.churn_secs`, each its own put.
async fn churn(args: &Args, client: &Client, keys: &Keys, rate: f64) -> anyhow::Result<Done> {
    let total = (rate * args.churn_secs).round() as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let mut last_addr = String::new();
    let all = args.nodes * args.per_node;
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let (k, j) = (i % args.nodes, (i / args.nodes) % args.per_node);
        let generation = i / all + 1;
        let e = endpoint(args, k, j, generation)?;
        last_addr = endpoint_addr(k, j, generation);
        let (key, value) = (keys.endpoint(&e.node, &e.key), encode_endpoint(&e));
        let permit = sem.clone().acquire_owned().await?;
        let mut c = client.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.put(key, value, None).await;
            drop(permit);
            r.map(|r| r.header().map_or(0, |h| h.revision()))
        }));
    }
    let mut revision = 0;
    for t in tasks {
        revision = revision.max(t.await?.context("put a changed endpoint")?);
    }
    Ok(Done {
        seconds: start.elapsed().as_secs_f64(),
        writes: total,
        revision,
        last_addr,
    })
}
