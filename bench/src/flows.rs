//! Benchmark 7: what watching flows costs. While a `flows watch` stream is open, the
//! enforcer binds connection tracking's new-connection events and reads one event
//! per new connection to show approved connections (which no log rule reports). This
//! measures new connections per second on an approved edge between two enforcing
//! pods, and the enforcer's CPU during that loop, with one watcher open and with
//! none, interleaved round by round on the same node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use zonewarden_proto::v1;

use crate::dataplane::Config;
use crate::proc_stat::cpu_seconds;
use crate::report::Section;
use crate::scale::{CONN_PORT, Scale, Size};
use crate::stats::{Samples, fmt, ratio};
use crate::traffic::approved_conn_rate;

/// The node: the two pods of the scale node and a few others.
pub const SIZE: Size = Size {
    zones: 10,
    endpoints: 20,
    edges: 20,
    learn_edges: 10,
};

/// One open `WatchFlows` stream that counts the approved flows it receives.
struct Watcher {
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    allowed: Arc<AtomicU64>,
}

impl Watcher {
    fn open(scale: &Scale) -> anyhow::Result<Self> {
        let mut client = scale.node.client()?;
        let allowed = Arc::new(AtomicU64::new(0));
        let count = allowed.clone();
        let task = scale.node.rt.spawn(async move {
            let mut flows = client
                .watch_flows(v1::WatchFlowsRequest::default())
                .await?
                .into_inner();
            while let Some(flow) = flows.message().await? {
                if flow.verdict() == v1::Verdict::Allow {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        });
        Ok(Self { task, allowed })
    }

    fn close(self) -> u64 {
        self.task.abort();
        self.allowed.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Figures {
    conns: Samples,
    /// The enforcer's CPU during the loop, in percent of one core.
    cpu: Samples,
}

/// One connect loop on the approved edge, with the enforcer's CPU meanwhile.
fn measure(scale: &Scale, pid: u32, cfg: &Config, f: &mut Figures) -> anyhow::Result<u64> {
    let target = format!("{}:{CONN_PORT}", scale.server.ip);
    let (cpu0, t0) = (cpu_seconds(pid)?, Instant::now());
    let r = approved_conn_rate(&scale.client.netns, &target, cfg.loop_secs)?;
    f.cpu
        .push((cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64() * 100.0);
    f.conns.push(r.ok as f64 / r.seconds);
    Ok(r.ok)
}

pub fn run(cfg: &Config) -> anyhow::Result<Section> {
    let scale = Scale::build(SIZE)?;
    let pid = scale.node.enforcer_pid().context("no enforcer")?;
    let (mut watched, mut unwatched) = (Figures::default(), Figures::default());
    let (mut shown, mut connections) = (Samples::default(), 0u64);
    for _ in 0..cfg.reps {
        measure(&scale, pid, cfg, &mut unwatched)?;
        let watcher = Watcher::open(&scale)?;
        // The enforcer binds the events when the stream opens; give it a moment.
        std::thread::sleep(Duration::from_millis(500));
        let made = measure(&scale, pid, cfg, &mut watched)?;
        let allowed = watcher.close();
        anyhow::ensure!(
            allowed > 0,
            "the watcher was shown no approved connection of {made}"
        );
        shown.push(allowed as f64);
        connections += made;
        // The enforcer sees the stream close and unbinds within a second; the next
        // watcher starts with nothing shown yet.
        std::thread::sleep(Duration::from_secs(2));
    }
    let mut s = Section::new("7. Watching flows (approved connections from connection tracking)");
    s.row([
        format!(
            "new connections/s on an approved edge, one `flows watch` open vs none (n={} each)",
            cfg.reps
        ),
        format!(
            "{} conn/s ({})",
            fmt(watched.conns.p50()),
            watched.conns.spread("conn/s")
        ),
        format!("{} conn/s", fmt(unwatched.conns.p50())),
        ratio(watched.conns.p50(), unwatched.conns.p50()),
        "—".into(),
        "—".into(),
    ]);
    s.row([
        "enforcer CPU during the loop, % of one core, watched vs not".into(),
        format!("{} % ({})", fmt(watched.cpu.p50()), watched.cpu.spread("%")),
        format!("{} %", fmt(unwatched.cpu.p50())),
        ratio(watched.cpu.p50(), unwatched.cpu.p50()),
        "—".into(),
        "—".into(),
    ]);
    s.row([
        "approved flows shown to the watcher per loop".into(),
        format!(
            "{} ({} connections in all)",
            shown.spread("flows"),
            connections
        ),
        "—".into(),
        "—".into(),
        "—".into(),
        "—".into(),
    ]);
    s.note(format!(
        "Both pods' zones enforce and approve the edge; {} zones, {} endpoints on the node. Each round: a {}-s connect loop (connect, wait for the server's close, close) with no watcher, then the same with one `WatchFlows` stream open (all verdicts, as `zwctl flows watch` asks).",
        SIZE.zones, SIZE.endpoints, cfg.loop_secs
    ));
    s.note("The watcher is shown each (source, destination, protocol, port) once per `--seen-timeout-secs` window (60 s): the loop's connections differ only in their source port, so one flow per loop is expected; the enforcer still reads one event per connection, which is the cost measured.");
    Ok(s)
}
