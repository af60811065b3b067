//! `zonewarden-enforcer`: the node daemon. Serves the gRPC API on a root-only unix
//! socket, keeps the endpoint registry and programs the `inet zonewarden` table.
//! Logs go to stderr; nothing is printed on stdout.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use std::time::Duration;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use ipnet::IpNet;
use zonewarden_enforcer::events::{self, Destination, EventsLog};
use zonewarden_enforcer::learning::{self, Learning};
use zonewarden_enforcer::nft::netlink::ElementSocket;
use zonewarden_enforcer::nft::ruleset::render_sidecar::Sidecar;
use zonewarden_enforcer::nft::ruleset::{NftRulesetDataplane, Options};
use zonewarden_enforcer::registry::EndpointRegistry;
use zonewarden_enforcer::server::EnforcerService;
use zonewarden_enforcer::sidecar::{self, Identity, IdentityFlags};
use zonewarden_enforcer::store::etcd::{EtcdConfig, EtcdStore, EtcdTls, NodeRecord};
use zonewarden_enforcer::store::migrate::{self, Leftovers, OnConflict};
use zonewarden_enforcer::store::{LocalStore, Store};
use zonewarden_enforcer::web::instrument::{CountingStore, TimedDataplane};
use zonewarden_enforcer::web::{self, Metrics, WebState};
use zonewarden_enforcer::{host, nflog, pending_del, socket};
use zonewarden_profiles::policy::NodeSettings;
use zonewarden_profiles::{ClaimException, ZoneClaims, ZoneName};

/// Where the enforcer's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreChoice {
    /// Files under --state-dir: one node, nothing to install.
    Local,
    /// An etcd v3 cluster shared by every node (cluster mode).
    Etcd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The zonewarden node enforcer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The unix socket to serve the gRPC API on (made root-only).
    #[arg(long, default_value = zonewarden_proto::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Where the local store keeps endpoints and zone ids.
    #[arg(long, default_value = "/var/lib/zonewarden")]
    state_dir: PathBuf,
    /// This node's name, recorded on every endpoint [default: the hostname]. With
    /// --sidecar: the node the pod runs on [env: NODE_NAME].
    #[arg(long)]
    node: Option<String>,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A tracing filter such as `info` or `zonewarden_enforcer=debug`.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// The nft binary.
    #[arg(long, default_value = "nft")]
    nft: PathBuf,
    /// The NFLOG group the table's log rules report to (learning, drops, violations).
    #[arg(long, default_value_t = 100)]
    nflog_group: u16,
    /// How long a (source, destination, protocol, port) is logged only once.
    #[arg(long, default_value_t = 60)]
    seen_timeout_secs: u32,
    /// Do not allow the node itself (kubelet probes) to reach every local pod without
    /// approval: host -> pod edges must then be approved like any other.
    #[arg(long)]
    no_host_probes: bool,
    /// An operator-defined zone of addresses that are no endpoint, as NAME=CIDR
    /// (repeatable; several CIDRs for one zone are allowed), e.g.
    /// `--cidr-zone corp-dns=10.1.2.0/24`. CIDR zones take precedence over `world`.
    #[arg(long = "cidr-zone", value_name = "NAME=CIDR", value_parser = parse_cidr_zone)]
    cidr_zones: Vec<(ZoneName, IpNet)>,
    /// Lets pods of NAMESPACE claim a zone of another namespace with the annotation
    /// `zonewarden.io/zone` (repeatable): NAMESPACE=NS/ZONE for one zone, NAMESPACE=NS/*
    /// for every zone of NS; NAMESPACE may be `*`. Without it an annotation names a
    /// zone of the pod's own namespace only. `host` and `world` are never allowed.
    #[arg(long = "allow-zone-claim", value_name = "NAMESPACE=ZONE")]
    allow_zone_claims: Vec<ClaimException>,
    /// At most this many learned edges are kept; the stalest goes first.
    #[arg(long, default_value_t = 10_000)]
    max_learned_edges: usize,
    /// At most this many drop and violation reports are kept.
    #[arg(long, default_value_t = 1_000)]
    max_reports: usize,
    /// Where to serve the read-only zone-map page (`/`), its data (`/api/map`) and
    /// Prometheus metrics (`/metrics`). Loopback by default: the page shows the
    /// node's zones and flows, so expose it only where that is acceptable.
    #[arg(long, default_value = web::DEFAULT_LISTEN)]
    web_listen: SocketAddr,
    /// Serve neither the zone-map page nor /metrics.
    #[arg(long)]
    no_web: bool,
    /// Take the state directory as it is, once: files the store's index lists but the
    /// disk lacks, and an audit log that no longer holds what the index saw, are
    /// accepted (the decision is recorded in the audit log). Without it the enforcer
    /// refuses to start on such a state directory and says which file is missing.
    #[arg(long)]
    accept_store_as_is: bool,
    /// Where endpoints, zone ids and profiles live: `local` (files under --state-dir)
    /// or `etcd` (shared by every node, with the cluster-wide audit trail of policy
    /// changes; each node's own audit log stays under --state-dir).
    #[arg(long, value_enum, default_value_t = StoreChoice::Local)]
    store: StoreChoice,
    /// The etcd members, e.g. `https://10.0.0.1:2379,https://10.0.0.2:2379` (with --store etcd).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Every key of the cluster lives under this prefix.
    #[arg(long, default_value = "/zonewarden")]
    etcd_prefix: String,
    /// The CA certificate (PEM) that signed the etcd members' certificates (https endpoints).
    #[arg(long, value_name = "PEM")]
    etcd_ca: Option<PathBuf>,
    /// This node's client certificate (PEM) for etcd, with --etcd-key.
    #[arg(long, value_name = "PEM", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// The key (PEM) of --etcd-cert.
    #[arg(long, value_name = "PEM", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// This node's address on the network the nodes share (published in its node
    /// record); the other nodes route this node's pod blocks via it (host-gateway
    /// routing). Repeatable, one per family: a dual-stack node gives its IPv4 and its
    /// IPv6 address, the next hops of its IPv4 and IPv6 blocks.
    #[arg(long, value_name = "IP")]
    node_address: Vec<std::net::IpAddr>,
    /// This node's pod address block (repeatable: one IPv4, one IPv6). zonewarden IPAM
    /// (`"ipam": {"type": "zonewarden"}` in the conflist) leases pod addresses from it,
    /// with either store. In cluster mode it is published in the node record and
    /// routed to this node by the other nodes; blocks of two nodes must never overlap.
    #[arg(long = "pod-cidr", value_name = "CIDR")]
    pod_cidrs: Vec<IpNet>,
    /// Cluster mode without --pod-cidr: claim this node's block from this pool, shared
    /// by the nodes through etcd (repeatable: one IPv4, one IPv6 pool). A restarted
    /// node gets its block back; a block of a node that is gone is taken over only when
    /// the pool has no other block left.
    #[arg(
        long = "pod-cidr-pool",
        value_name = "CIDR",
        conflicts_with = "pod_cidrs"
    )]
    pod_cidr_pools: Vec<IpNet>,
    /// The prefix length of the IPv4 block a node claims from --pod-cidr-pool.
    #[arg(long, default_value_t = 24, value_name = "PREFIXLEN")]
    pod_block_size: u8,
    /// The prefix length of the IPv6 block a node claims from --pod-cidr-pool.
    #[arg(long, default_value_t = 80, value_name = "PREFIXLEN")]
    pod_block_size_v6: u8,
    /// Seconds the node record outlives this enforcer (its lease is kept alive while it runs).
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    node_lease_ttl: u64,
    /// Write every violation, drop, learned edge, quarantine and policy change as one
    /// JSON line to PATH (appended; `-` for stdout), for log collectors. The schema is
    /// docs/events.schema.json. The file is reopened on SIGHUP and when it is moved
    /// away (log rotation).
    #[arg(long, value_name = "PATH", value_parser = Destination::parse)]
    events_log: Option<Destination>,
    /// With --store etcd: at start, move what this node's local store holds (its
    /// endpoints, the profiles, endpoint quarantines, learned edges and reports) into
    /// the cluster store, keeping its pods enforced: no drain. The local files are then
    /// moved aside into <state-dir>/local-store-migrated-<time>/ (never deleted), and
    /// the move is audited. Nothing to move: nothing happens, so the flag may stay set.
    #[arg(long)]
    migrate_local_store: bool,
    /// What --migrate-local-store does with a zone whose profile differs between this
    /// node and the cluster: `refuse` writes nothing and lists every difference;
    /// `cluster` keeps the cluster's profile (this node's is kept in the moved files'
    /// profiles.yaml, for review).
    #[arg(
        long,
        value_enum,
        default_value_t = MigrateConflicts::Refuse,
        requires = "migrate_local_store"
    )]
    migrate_conflicts: MigrateConflicts,
    /// Sidecar mode: run as a container of one pod (capability NET_ADMIN only, no host
    /// namespace) and enforce that pod's egress and ingress in the pod's own network
    /// namespace, on its output and input hooks. The pod is registered as the one local
    /// endpoint (attach mode `sidecar`); with --store etcd every node knows it, and
    /// approvals, modes and quarantines made on any node apply. Its identity: --node,
    /// --pod-namespace, --pod-name, --pod-zone-annotation, --pod-ip, or the Downward
    /// API's NODE_NAME, POD_NAMESPACE, POD_NAME, POD_ZONE_ANNOTATION, POD_IPS; the
    /// addresses default to those of the pod's interfaces. See "Sidecar mode" in the
    /// operator guide for what it cannot protect against.
    #[arg(long)]
    sidecar: bool,
    /// The pod's namespace (--sidecar) [env: POD_NAMESPACE].
    #[arg(long, requires = "sidecar")]
    pod_namespace: Option<String>,
    /// The pod's name (--sidecar) [env: POD_NAME].
    #[arg(long, requires = "sidecar")]
    pod_name: Option<String>,
    /// The value of the pod's `zonewarden.io/zone` annotation, if it has one (--sidecar)
    /// [env: POD_ZONE_ANNOTATION]. It names a zone of the pod's own namespace unless an
    /// --allow-zone-claim allows more, as for CNI-attached pods.
    #[arg(long, requires = "sidecar")]
    pod_zone_annotation: Option<String>,
    /// One of the pod's addresses (--sidecar; repeatable) [env: POD_IPS, comma
    /// separated; default: the addresses of the pod's interfaces].
    #[arg(long = "pod-ip", value_name = "IP", requires = "sidecar")]
    pod_ips: Vec<std::net::IpAddr>,
}

/// `--migrate-conflicts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MigrateConflicts {
    Refuse,
    Cluster,
}

/// `--sidecar`: the pod's identity, before anything happens. The node's own flags
/// (pod blocks, node address) make no sense in a pod and are refused.
fn sidecar_identity(cli: &Cli) -> anyhow::Result<Identity> {
    let conflict = |what: &str| sidecar::SidecarError::Conflict {
        what: what.to_owned(),
        why: "a sidecar claims no pod block and routes nothing; its node record carries the pod's addresses",
    };
    if !cli.pod_cidrs.is_empty() {
        return Err(conflict("--pod-cidr").into());
    }
    if !cli.pod_cidr_pools.is_empty() {
        return Err(conflict("--pod-cidr-pool").into());
    }
    if !cli.node_address.is_empty() {
        return Err(conflict("--node-address").into());
    }
    let flags = IdentityFlags {
        node: cli.node.clone(),
        namespace: cli.pod_namespace.clone(),
        pod: cli.pod_name.clone(),
        zone_annotation: cli.pod_zone_annotation.clone(),
        ips: cli.pod_ips.clone(),
    };
    let env = |name: &str| std::env::var(name).ok();
    Ok(Identity::resolve(flags, &env, &sidecar::interface_addrs())?)
}

/// `--sidecar`: the pod's registration. A restart finds it in the store and keeps it
/// as it is (the table kept enforcing it meanwhile), unless its zone or addresses
/// changed.
async fn register_sidecar(
    registry: &EndpointRegistry,
    id: &Identity,
    claims: &ZoneClaims,
) -> anyhow::Result<()> {
    let key = id.key();
    let snapshot = registry.snapshot();
    let zone = match zonewarden_profiles::derive_zone(&id.request().hints, claims) {
        Ok(zone) => Some(zone),
        Err(err) => {
            // Fail closed: a zone the pod may no longer claim (its annotation changed,
            // or the operator withdrew an --allow-zone-claim) must not keep the access
            // of its earlier registration while the sidecar restarts in a loop.
            if snapshot.endpoints.values().any(|ep| ep.key == key) {
                let note = zonewarden_enforcer::audit::Note::new(
                    "zonewarden-enforcer --sidecar",
                    format!("the pod's zone is refused now: {err}"),
                );
                registry.del(key.clone(), note).await.with_context(|| {
                    format!(
                        "the zone of the pod {}/{} is refused now ({err}), and its earlier \
                         registration could not be withdrawn",
                        id.namespace, id.pod
                    )
                })?;
                warn!(%key, %err, "sidecar: the pod's zone is refused now; its registration was withdrawn");
            }
            anyhow::bail!(
                "the zone of the pod {}/{} is refused: {err}; the pod is not registered and \
                 its traffic stays dropped until its annotation and the operator's \
                 --allow-zone-claim agree",
                id.namespace,
                id.pod
            );
        }
    };
    if snapshot
        .endpoints
        .values()
        .any(|ep| id.is_registered_as(ep) && zone.as_ref().is_some_and(|(z, _)| *z == ep.zone))
    {
        info!(%key, "sidecar: the pod is registered already");
        return Ok(());
    }
    let note = zonewarden_enforcer::audit::Note::new("zonewarden-enforcer --sidecar", "");
    let endpoint = registry.add(id.request(), note).await.with_context(|| {
        format!(
            "cannot register the pod {}/{} (its traffic stays dropped until it is)",
            id.namespace, id.pod
        )
    })?;
    info!(%key, zone = %endpoint.zone, source = %endpoint.zone_source, ips = ?endpoint.ips, "sidecar: the pod is registered");
    Ok(())
}

/// The cluster store's settings, checked before anything happens.
fn etcd_config(
    cli: &Cli,
    node: &str,
    sidecar: Option<&Identity>,
) -> anyhow::Result<Option<(EtcdConfig, Vec<std::net::IpAddr>)>> {
    let etcd_flags = !cli.etcd_endpoints.is_empty()
        || cli.etcd_ca.is_some()
        || cli.etcd_cert.is_some()
        || !cli.node_address.is_empty()
        || !cli.pod_cidr_pools.is_empty();
    if cli.store == StoreChoice::Local {
        anyhow::ensure!(
            !cli.migrate_local_store,
            "--migrate-local-store moves this node's local store into the cluster store: add \
             --store etcd and the --etcd-* settings"
        );
        anyhow::ensure!(
            !etcd_flags,
            "--etcd-*, --node-address and --pod-cidr-pool are for cluster mode: add --store etcd \
             (--pod-cidr alone works with the local store: zonewarden IPAM on one node)"
        );
        return Ok(None);
    }
    anyhow::ensure!(
        !cli.etcd_endpoints.is_empty(),
        "--store etcd needs --etcd-endpoints URL[,URL...] (e.g. http://10.0.0.1:2379)"
    );
    anyhow::ensure!(
        !cli.accept_store_as_is,
        "--accept-store-as-is is for the local store only"
    );
    let mut https = 0;
    for url in &cli.etcd_endpoints {
        match url.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => https += 1,
            Some(("http", rest)) if !rest.is_empty() => {}
            _ => anyhow::bail!(
                "--etcd-endpoints {url:?} is not http://HOST:PORT or https://HOST:PORT"
            ),
        }
    }
    let tls = cli.etcd_ca.is_some() || cli.etcd_cert.is_some();
    anyhow::ensure!(
        https == 0 || https == cli.etcd_endpoints.len(),
        "--etcd-endpoints mixes http and https members"
    );
    anyhow::ensure!(
        tls == (https > 0),
        "TLS towards etcd needs https:// endpoints and --etcd-ca (plus --etcd-cert/--etcd-key for client certificates)"
    );
    anyhow::ensure!(
        https == 0 || cli.etcd_ca.is_some(),
        "https etcd endpoints need --etcd-ca, the CA that signed the members' certificates"
    );
    let address = match sidecar {
        // The record of a sidecar names the pod's addresses (one per family).
        Some(id) => [true, false]
            .into_iter()
            .filter_map(|v4| id.ips.iter().find(|a| a.is_ipv4() == v4).copied())
            .collect(),
        None => cli.node_address.clone(),
    };
    anyhow::ensure!(
        !address.is_empty(),
        "--store etcd needs --node-address IP, this node's address on the network the nodes share"
    );
    check_blocks("--pod-cidr-pool", &cli.pod_cidr_pools)?;
    for pool in &cli.pod_cidr_pools {
        let size = pod_block_size(cli, pool);
        anyhow::ensure!(
            size <= pool.max_prefix_len() && pool.subnets(size).is_ok(),
            "--pod-block-size{} {size} does not fit --pod-cidr-pool {pool}: give a prefix length from {} to {}",
            if pool.addr().is_ipv6() { "-v6" } else { "" },
            pool.prefix_len(),
            pool.max_prefix_len()
        );
    }
    anyhow::ensure!(
        cli.node_lease_ttl >= 2,
        "--node-lease-ttl must be at least 2 seconds"
    );
    Ok(Some((
        EtcdConfig {
            endpoints: cli.etcd_endpoints.clone(),
            prefix: cli.etcd_prefix.clone(),
            node: node.to_owned(),
            tls: tls.then(|| EtcdTls {
                ca: cli.etcd_ca.clone(),
                cert_key: cli.etcd_cert.clone().zip(cli.etcd_key.clone()),
            }),
            unpublished: Some(cli.state_dir.join("etcd-unpublished.json")),
        },
        address,
    )))
}

fn parse_cidr_zone(text: &str) -> Result<(ZoneName, IpNet), String> {
    let (name, cidr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=CIDR (e.g. corp-dns=10.1.2.0/24)"))?;
    let zone = ZoneName::parse(name).map_err(|e| e.to_string())?;
    let net: IpNet = cidr
        .parse()
        .map_err(|e| format!("{cidr:?} is not a CIDR: {e}"))?;
    Ok((zone, net.trunc()))
}

/// `--node-address` must be one of this node's addresses (the others route to it) and
/// `--pod-cidr` gives at most one block per address family, without host bits.
fn check_cluster_settings(addresses: &[std::net::IpAddr], cidrs: &[IpNet]) -> anyhow::Result<()> {
    let host = host::host_addrs();
    for (i, address) in addresses.iter().enumerate() {
        anyhow::ensure!(
            host.contains(address),
            "--node-address {address} is not an address of this node; give the address \
             the other nodes reach this one at"
        );
        if let Some(other) = addresses[i + 1..]
            .iter()
            .find(|b| b.is_ipv4() == address.is_ipv4())
        {
            anyhow::bail!(
                "--node-address {address} and --node-address {other} are of one address \
                 family; give one IPv4 and/or one IPv6 address"
            );
        }
    }
    check_blocks("--pod-cidr", cidrs)
}

/// Cluster mode on a node whose state directory still holds its local store, without
/// --migrate-local-store: the cluster store does not know those endpoints, so their
/// pods would run with no rule of ours (their traffic matches no zone) and their
/// profiles would be forgotten. Refused, with the way over; nothing is read from etcd
/// or changed before.
fn refuse_local_leftovers(state_dir: &std::path::Path) -> anyhow::Result<()> {
    let found = Leftovers::of(state_dir);
    anyhow::ensure!(
        !found.holds_records(),
        "--store etcd: the state directory {dir} still holds this node's local store \
         ({endpoints} endpoint(s), {profiles} profile(s)); the cluster store does not know \
         them, so those pods would run with no rule of zonewarden's. Add \
         --migrate-local-store to move them into the cluster store at this start (the pods \
         stay enforced; the local files are moved aside, not deleted)",
        dir = state_dir.display(),
        endpoints = found.endpoints,
        profiles = found.profiles,
    );
    Ok(())
}

/// `flag`'s blocks: no host bits, at most one per address family.
fn check_blocks(flag: &str, cidrs: &[IpNet]) -> anyhow::Result<()> {
    for net in cidrs {
        anyhow::ensure!(
            *net == net.trunc(),
            "{flag} {net} has host bits set; did you mean {}?",
            net.trunc()
        );
    }
    for (i, a) in cidrs.iter().enumerate() {
        if let Some(b) = cidrs[i + 1..]
            .iter()
            .find(|b| a.addr().is_ipv4() == b.addr().is_ipv4())
        {
            anyhow::bail!(
                "{flag} {a} and {flag} {b} are of one address family; give one IPv4 and/or one IPv6 block"
            );
        }
    }
    Ok(())
}

/// The prefix length of the block a node claims from `pool`.
fn pod_block_size(cli: &Cli, pool: &IpNet) -> u8 {
    if pool.addr().is_ipv4() {
        cli.pod_block_size
    } else {
        cli.pod_block_size_v6
    }
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).with_context(|| {
        format!(
            "--log-level {:?} is not a valid tracing filter",
            cli.log_level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour_log(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Colours in the text log only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>): a log redirected to a
/// file or journald carries no escape codes.
fn colour_log(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("cannot read the hostname from /proc/sys/kernel/hostname; pass --node")?;
    Ok(name.trim().to_owned())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the enforcer with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received; shutting down"),
        _ = int.recv() => info!("SIGINT received; shutting down"),
    }
}

/// `--events-log`: opens it (an unwritable path stops the start) and reopens it on
/// SIGHUP.
fn start_events_log(cli: &Cli, node: &str, registry: &EndpointRegistry) -> anyhow::Result<()> {
    let Some(destination) = cli.events_log.clone() else {
        return Ok(());
    };
    let log = EventsLog::start(
        destination.clone(),
        node.to_owned(),
        Some(Arc::new(registry.clone())),
    )?;
    if events::install(log).is_err() {
        anyhow::bail!("the events log was started twice; this is a bug, please report it");
    }
    info!(%destination, "writing events as JSON lines");
    if let Destination::File(_) = destination {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())
            .context("cannot handle SIGHUP to reopen the events log")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                info!("SIGHUP received; the events log is reopened before its next line");
                events::reopen();
            }
        });
    }
    Ok(())
}

/// `--migrate-local-store`: the local store of the state directory into the cluster
/// store, before the state is loaded from it.
async fn migrate_local_store(
    cli: &Cli,
    node: &str,
    store: Arc<dyn Store>,
    audit: zonewarden_enforcer::audit::AuditLog,
) -> anyhow::Result<()> {
    let on_conflict = match cli.migrate_conflicts {
        MigrateConflicts::Refuse => OnConflict::Refuse,
        MigrateConflicts::Cluster => OnConflict::Cluster,
    };
    let (state_dir, node) = (cli.state_dir.clone(), node.to_owned());
    let migrated = tokio::task::spawn_blocking(move || {
        migrate::migrate(&state_dir, store.as_ref(), &node, on_conflict, &audit)
    })
    .await
    .context("the migration task failed")??;
    match migrated {
        None => info!("--migrate-local-store: no local store to move"),
        Some(done) => info!(
            endpoints = done.endpoints,
            profiles_added = done.profiles_added,
            profiles_same = done.profiles_same,
            kept_cluster = ?done.kept_cluster,
            moved_to = %done.moved_to.display(),
            "--migrate-local-store: the local store is in the cluster store now"
        ),
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Every file the enforcer creates (store, socket, queue) is root-only.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // One enforcer per network namespace, before anything else: a second one must not
    // touch the first one's table, whatever its socket and state directory. A
    // sidecar's lock is a file of its own volume: the pod's other processes share its
    // network namespace, and so its abstract socket names.
    let _netns_lock = match cli.sidecar {
        true => socket::lock_state_dir(&cli.state_dir)?,
        false => socket::lock_netns()?,
    };
    let sidecar = match cli.sidecar {
        true => Some(sidecar_identity(&cli)?),
        false => None,
    };
    let node = match (&sidecar, cli.node.clone()) {
        (Some(id), _) => id.store_node(),
        (None, Some(node)) => node,
        (None, None) => hostname()?,
    };
    if sidecar.is_none() {
        check_cluster_settings(&cli.node_address, &cli.pod_cidrs)?;
    }
    let cluster = etcd_config(&cli, &node, sidecar.as_ref())?;
    // The sidecar's own connections to the store leave the pod whatever its zone allows.
    let sidecar_base: Option<&'static Sidecar> = match &sidecar {
        Some(id) => {
            let store = sidecar::store_members(&cli.etcd_endpoints)?;
            info!(node = %id.node, pod = %format!("{}/{}", id.namespace, id.pod), ips = ?id.ips, ?store, "sidecar mode");
            Some(Box::leak(Box::new(Sidecar {
                store,
                sources: id.ips.clone(),
            })))
        }
        None => None,
    };
    if cluster.is_some() && !cli.migrate_local_store {
        refuse_local_leftovers(&cli.state_dir)?;
    }
    let options = Options {
        nflog_group: cli.nflog_group,
        seen_timeout_secs: cli.seen_timeout_secs,
        sidecar: sidecar_base,
    };
    let mut dataplane =
        NftRulesetDataplane::with_command(vec![cli.nft.display().to_string()], options);
    match ElementSocket::open() {
        Ok(socket) => dataplane = dataplane.with_element_socket(socket),
        Err(err) => tracing::warn!(
            %err,
            "cannot open a netfilter netlink socket; every change goes through nft (slower)"
        ),
    }
    // A routed endpoint's host interface carries its zone id as its group, and the
    // table sends its packets to their zone's chains by that group: without the
    // socket no routed endpoint could be enforced.
    let links = zonewarden_enforcer::hostlink::LinkGroupSocket::open().context(
        "cannot open a route netlink socket to set the groups of the pods' host interfaces; the enforcer needs CAP_NET_ADMIN in the node's network namespace",
    )?;
    dataplane = dataplane.with_link_socket(links);
    // The table is read (unless its seal says it is unchanged) while the state loads:
    // at 100,000 remote endpoints each takes seconds, and the two cores of a small
    // node do both at once. Reading changes nothing in the kernel.
    dataplane.prefetch();
    let metrics = Metrics::default();
    let mut accepted = None;
    // This node's pod blocks: given (--pod-cidr) or claimed from the pool.
    let mut pod_blocks = cli.pod_cidrs.clone();
    let mut membership = None;
    let (backend, etcd): (Arc<dyn Store>, Option<EtcdStore>) = match cluster {
        None => {
            let store = LocalStore::open(&cli.state_dir).with_context(|| {
                format!(
                    "cannot open the state directory {}",
                    cli.state_dir.display()
                )
            })?;
            if cli.accept_store_as_is {
                let what = store
                    .accept_as_is()
                    .context("cannot rebuild the store's index")?;
                tracing::warn!(%what, "the state directory was taken as it is (--accept-store-as-is)");
                accepted = Some(what);
            }
            (Arc::new(store), None)
        }
        Some((config, addresses)) => {
            // The audit log and the DEL queue stay on the node.
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(&cli.state_dir)
                .with_context(|| format!("cannot create {}", cli.state_dir.display()))?;
            let endpoints = config.endpoints.join(",");
            let store = EtcdStore::connect(config)
                .with_context(|| format!("cannot use the cluster store at {endpoints}"))?;
            for pool in cli.pod_cidr_pools.clone() {
                let size = pod_block_size(&cli, &pool);
                let claiming = store.clone();
                let block =
                    tokio::task::spawn_blocking(move || claiming.claim_pod_block(pool, size))
                        .await
                        .context("the pod block claim task failed")?
                        .with_context(|| {
                            format!("cannot claim a block of --pod-cidr-pool {pool}")
                        })?;
                info!(%block, %pool, "this node's pod block, claimed from the pool");
                pod_blocks.push(block);
            }
            // The record goes out at once, before the state is loaded: a block whose
            // owner has no record may be taken over by another node (when the pool is
            // full), so a node that claimed one is without a record only for the
            // moment its publication takes.
            let record = NodeRecord {
                name: node.clone(),
                address: addresses[0],
                second_address: addresses.get(1).copied(),
                pod_cidrs: pod_blocks.clone(),
                enforcer_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            membership = Some(store.publish_node(record, Duration::from_secs(cli.node_lease_ttl)));
            store.spawn_publisher();
            info!(
                endpoints,
                prefix = cli.etcd_prefix,
                "cluster mode: the state lives in etcd"
            );
            (Arc::new(store.clone()), Some(store))
        }
    };
    let store: Arc<dyn Store> = Arc::new(CountingStore::new(backend, metrics.store_errors.clone()));
    // A corrupt audit log is logged and continued on a new chain segment, never fatal.
    let audit = zonewarden_enforcer::audit::AuditLog::open(
        cli.state_dir.join(zonewarden_enforcer::audit::FILE_NAME),
    );
    if etcd.is_some() && cli.migrate_local_store {
        migrate_local_store(&cli, &node, store.clone(), audit.clone()).await?;
    }
    let mut stored = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load())
            .await
            .context("the store's load task failed")?
            .context("cannot load the enforcer's state")?
    };
    if let Some(what) = accepted {
        let record = zonewarden_enforcer::audit::AuditRecord {
            at_unix_ms: zonewarden_enforcer::registry::now_unix_ms(),
            who: zonewarden_enforcer::audit::log::ENFORCER.to_owned(),
            action: zonewarden_enforcer::audit::Action::StoreAccepted,
            zone: None,
            target: Some(cli.state_dir.display().to_string()),
            detail: what,
            version_before: None,
            version_after: None,
            reason: Some("--accept-store-as-is".to_owned()),
        };
        let head = audit
            .append_now(record)
            .context("cannot record --accept-store-as-is in the audit log")?;
        store
            .commit(head)
            .context("cannot write the store's index")?;
    }
    let mut learning = Learning::new(
        node.clone(),
        stored.learned.take(),
        stored.reports.take(),
        (cli.max_learned_edges, cli.max_reports),
    );
    if let Some(store) = &etcd {
        // Cluster mode: `get edges`, `approve --all` and the zone map see what every
        // node learned.
        learning = learning.with_remote(store.remote_learned());
    }
    // Automatic response: the zones' rules are counted on the NFLOG path; the
    // quarantines they fire go through the registry from a task of their own.
    let (responder, fired) = zonewarden_enforcer::response::Responder::new();
    let learning = learning.with_responder(responder.clone());
    // A sidecar does not know the node's addresses: no `host` zone, no probe exception.
    let settings = NodeSettings {
        allow_host_probes: !cli.no_host_probes && sidecar.is_none(),
    };
    let host_addrs = match sidecar {
        Some(_) => Vec::new(),
        None => host::host_addrs(),
    };
    let registry = EndpointRegistry::open_with_host(
        node.clone(),
        store.clone(),
        Arc::new(TimedDataplane::new(
            Arc::new(dataplane),
            metrics.rule_sync.clone(),
        )),
        settings,
        stored,
        host_addrs,
    )
    .context("cannot load the endpoint store")?;
    let mut cidr_zones: std::collections::BTreeMap<ZoneName, Vec<IpNet>> = Default::default();
    for (zone, net) in cli.cidr_zones.clone() {
        cidr_zones.entry(zone).or_default().push(net);
    }
    for exception in &cli.allow_zone_claims {
        info!(%exception, "zone claims: pods may claim this zone outside their namespace");
    }
    let registry = registry
        .with_pod_blocks(&pod_blocks)
        .context("--pod-cidr")?
        .with_cidr_zones(cidr_zones)
        .with_zone_claims(ZoneClaims::new(cli.allow_zone_claims.clone()))
        .with_audit(audit.clone());

    start_events_log(&cli, &node, &registry)?;

    // Bind first: a second enforcer must fail before it touches the kernel.
    let (listener, socket_file) = socket::bind_root_only(&cli.socket).await?;
    let web_listener = match cli.no_web {
        true => None,
        false => Some(web::bind(cli.web_listen).await?),
    };
    // The state was saved by this enforcer: a failure to program it is reported and
    // retried, never a reason to exit (the kernel keeps what it holds meanwhile, and
    // the enforcer says it is not ready).
    let resync = match registry.sync_kernel().await {
        Ok(changed) => {
            info!(
                node,
                endpoints = registry.snapshot().endpoints.len(),
                changed,
                "kernel reconciled"
            );
            None
        }
        Err(err) => {
            tracing::error!(%err, "cannot program table inet zonewarden; retrying every 2 s");
            registry.readiness().table_broken(&err.to_string());
            let registry = registry.clone();
            Some(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    match registry.sync_kernel().await {
                        Ok(changed) => {
                            info!(changed, "kernel reconciled after a failed start");
                            registry
                                .readiness()
                                .table_restored("programmed after a failed start");
                            return;
                        }
                        Err(err) => registry.readiness().table_broken(&err.to_string()),
                    }
                }
            }))
        }
    };

    if let Some(id) = &sidecar {
        // Fail closed: a sidecar whose table cannot be programmed leaves its pod
        // unenforced, so it stops and says why (its container restarts).
        anyhow::ensure!(
            resync.is_none(),
            "--sidecar: table inet zonewarden cannot be programmed in the pod's network \
             namespace; the container needs the capability NET_ADMIN and the nf_tables \
             modules on the node"
        );
        register_sidecar(
            &registry,
            id,
            &ZoneClaims::new(cli.allow_zone_claims.clone()),
        )
        .await?;
    }

    // A quiet registry seals the table, so that the next start confirms it cheaply.
    tokio::spawn(zonewarden_enforcer::registry::seal_forever(
        registry.clone(),
        Duration::from_secs(1),
    ));

    // From now on the table is ours to keep: a change by anyone else is restored.
    let guard = match zonewarden_enforcer::guard::watch() {
        Ok(events) => Some(tokio::spawn(zonewarden_enforcer::guard::guard_forever(
            registry.clone(),
            events,
            registry.readiness().clone(),
            audit.clone(),
        ))),
        Err(err) => {
            tracing::error!(%err, "cannot watch table inet zonewarden for changes by others; a flush by another tool would go unnoticed");
            None
        }
    };
    // And the groups of the pods' host interfaces, which the table dispatches on.
    let link_guard = match zonewarden_enforcer::hostlink::watch_links() {
        Ok(changes) => Some(tokio::spawn(
            zonewarden_enforcer::guard::guard_groups_forever(
                registry.clone(),
                changes,
                registry.readiness().clone(),
                audit.clone(),
            ),
        )),
        Err(err) => {
            tracing::error!(%err, "cannot watch the node's interfaces; a pod whose interface group another tool changes stays closed until the next start");
            None
        }
    };

    // Cluster mode: follow the other nodes' changes and publish this node's record.
    let cluster_follow = match &etcd {
        None => None,
        Some(store) => {
            let follow = tokio::spawn(zonewarden_enforcer::store::etcd::watch::follow_forever(
                store.clone(),
                registry.clone(),
                store.watch(),
            ));
            // Host-gateway routes to the other nodes' pod blocks, as their records change
            // (a sidecar routes nothing: the cluster's CNI does).
            if sidecar.is_none() {
                tokio::spawn(zonewarden_enforcer::cluster::routes::run_routes(
                    node.clone(),
                    store.nodes(),
                ));
            }
            Some(follow)
        }
    };

    // Learning: NFLOG is bound on this thread, which is in the node's network namespace.
    // The queue between them is bounded: when learning falls behind, the NFLOG thread
    // drops and counts events instead of waiting (see nflog::counters).
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(nflog::QUEUE_CAPACITY);
    nflog::spawn(cli.nflog_group, events_tx, learning.nflog_counters())
        .with_context(|| format!("cannot listen to NFLOG group {}", cli.nflog_group))?;
    learning::spawn_ingest(events_rx, learning.clone(), registry.clone())
        .context("cannot start the learning thread")?;
    let respond = tokio::spawn(zonewarden_enforcer::response::run(
        fired,
        responder,
        registry.clone(),
    ));
    let persist = tokio::spawn(learning::persist_forever(
        learning.clone(),
        store.clone(),
        Duration::from_secs(2),
    ));
    // The node's addresses (the host zone), its bridges and the plugin's queued DELs:
    // none of them is a sidecar's business.
    let mut node_tasks = Vec::new();
    if sidecar.is_none() {
        node_tasks.push(match host::watch_addresses(host::host_addrs()) {
            Ok(addrs) => tokio::spawn(host::follow_forever(registry.clone(), addrs)),
            Err(err) => {
                tracing::warn!(%err, "cannot follow the node's address events; reading them every 10 s");
                tokio::spawn(host::poll_forever(
                    registry.clone(),
                    Duration::from_secs(10),
                ))
            }
        });
        node_tasks.push(tokio::spawn(
            zonewarden_enforcer::bridge_nf::follow_forever(registry.clone()),
        ));
        node_tasks.push(tokio::spawn(pending_del::replay_forever(
            registry.clone(),
            pending_del::queue_dir(&cli.socket),
        )));
    }
    let web = web_listener.map(|listener| {
        info!(addr = %cli.web_listen, "serving the zone-map page and /metrics");
        let state = WebState {
            registry: registry.clone(),
            learning: learning.clone(),
            metrics,
        };
        tokio::spawn(async move {
            if let Err(err) = web::serve(listener, state).await {
                tracing::error!(%err, "the zone-map page and /metrics stopped");
            }
        })
    });
    info!(socket = %cli.socket.display(), "serving");
    let mut service = EnforcerService::new(registry, learning.clone())
        .with_audit(audit.clone())
        .with_flow_window(Duration::from_secs(u64::from(cli.seen_timeout_secs)));
    if sidecar.is_none() {
        match zonewarden_enforcer::hostlink::HostLinks::start() {
            Ok(links) => service = service.with_host_links(links),
            Err(err) => tracing::warn!(
                %err,
                "cannot open a route netlink socket; DEL deletes host veths in the plugin (slower)"
            ),
        }
    }
    // Cluster mode: `zwctl audit` reads the cluster-wide trail of policy changes
    // (`--node-log`: this node's own log).
    let mut audit_service = zonewarden_enforcer::audit::AuditService::new(audit);
    if let Some(store) = &etcd {
        let store = store.clone();
        audit_service = audit_service.with_cluster_trail(std::sync::Arc::new(move || {
            store
                .audit_trail()
                .map(|t| zonewarden_enforcer::audit::service::TrailBytes {
                    bytes: t.bytes,
                    head: t.head.map(|h| (h.seq, h.hash)),
                    source: t.source,
                })
                .map_err(|err| err.to_string())
        }));
    }
    let served = tonic::transport::Server::builder()
        .add_service(service.into_server())
        .add_service(audit_service.into_server())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown_signal())
        .await;
    for task in [persist, respond]
        .into_iter()
        .chain(node_tasks)
        .chain(web)
        .chain(guard)
        .chain(link_guard)
        .chain(resync)
        .chain(cluster_follow)
    {
        task.abort();
    }
    if let Some(membership) = membership {
        // This node's record goes at once, not when its lease expires.
        let _ = tokio::task::spawn_blocking(move || membership.leave()).await;
    }
    learning.flush(store.as_ref());
    drop(socket_file);
    served.context("the gRPC server failed")
}

/// Blocking threads (store writes, kernel changes, nft): mutations take one lock, so
/// more threads would only wait.
const MAX_BLOCKING_THREADS: usize = 4;

/// jemalloc, not the system's malloc: glibc keeps an arena per allocating thread and
/// gives little of a freed peak back (an enforcer that read back a table of 50,000
/// remote endpoints stayed at 400–700 MiB resident, with under 60 MB in use).
/// jemalloc returns freed pages to the kernel as they age (its background thread,
/// started in `main`, does it while the enforcer is idle). It is built with one arena
/// (`.cargo/config.toml` says why; a unit test below checks it).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(&cli)?;
    if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
        warn!(%err, "the allocator's background thread did not start: freed memory goes back to the kernel only as the enforcer allocates");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(run(cli))
        .inspect_err(|err| tracing::error!("{err:#}"))
}

#[cfg(test)]
mod tests {
    use super::colour_log;
    use std::ffi::OsStr;

    #[test]
    fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour_log(true, None));
        assert!(colour_log(true, Some(OsStr::new(""))));
        assert!(!colour_log(true, Some(OsStr::new("1"))));
        assert!(!colour_log(false, None));
    }

    /// The allocator is built with the options `.cargo/config.toml` gives it: one arena.
    #[test]
    fn the_allocator_has_one_arena() {
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().unwrap(), 1);
    }
}
