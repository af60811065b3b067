//! Root test: a learning pod floods the node with tens of thousands of distinct flows
//! while an operator keeps reading. Every read succeeds, every flow the table logged
//! is learned or counted as dropped (by cause), the counters only grow, the
//! enforcer's memory stays under its documented bound, and enforcement goes on.
//!
//! The kernel's own count of what it logged is the seen sets: with a seen window
//! longer than the test, each logged event added exactly one element.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use zonewarden_tests::cni::Conflist;
use zonewarden_tests::node::Node;
use zonewarden_tests::pods::{Pod, add_pod};
use zonewarden_tests::traffic::{Server, connects};
use zonewarden_tests::web::{metric, scrape};
use zonewarden_tests::{bin, require_root, wait};

const LISTEN: &str = "127.0.0.1:19919";
const FIRST_PORT: u16 = 20_000;
/// Distinct (port, peer) flows: twice the default `--max-learned-edges`.
const FLOWS: u16 = 20_000;
/// Each flow is sent this often, a whole round apart (a repeat is never logged).
const ROUNDS: u32 = 6;
/// A flow after the flood: its sequence number settles the kernel's drop count.
const MARKER_PORT: u16 = 19_000;
/// The bound docs/operator-guide.md ("Floods") states, at the default limits:
/// 64 MiB + 8 KiB per learned edge kept (10,000) + 4 KiB per report kept (1,000).
const RSS_BOUND_KIB: u64 = 64 * 1024 + 8 * 10_000 + 4 * 1_000;
const SEEN_SETS: [&str; 12] = [
    "seen_learn_v4",
    "seen_learn_v6",
    "seen_proto_learn_v4",
    "seen_proto_learn_v6",
    "seen_violation_v4",
    "seen_violation_v6",
    "seen_proto_violation_v4",
    "seen_proto_violation_v6",
    "seen_drop_v4",
    "seen_drop_v6",
    "seen_proto_drop_v4",
    "seen_proto_drop_v6",
];

/// `zwctl status -o json`'s learning counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    events: u64,
    ingested: u64,
    kernel: u64,
    queue: u64,
    unreadable: u64,
    edges_learned: u64,
    edges_evicted: u64,
}

impl Counters {
    fn of(status: &Value) -> Self {
        let l = &status["learning"];
        let n = |v: &Value| {
            v.as_u64()
                .unwrap_or_else(|| panic!("no counter {v} in zwctl status: {status}"))
        };
        Self {
            events: n(&l["events"]),
            ingested: n(&l["ingested"]),
            kernel: n(&l["dropped"]["kernel"]),
            queue: n(&l["dropped"]["queue"]),
            unreadable: n(&l["dropped"]["unreadable"]),
            edges_learned: n(&l["edgesLearned"]),
            edges_evicted: n(&l["edgesEvicted"]),
        }
    }

    /// Every event the kernel logged that reached a counter.
    fn logged(&self) -> u64 {
        self.events + self.kernel + self.unreadable
    }

    fn dropped(&self) -> u64 {
        self.kernel + self.queue + self.unreadable
    }

    /// Every received event is ingested or dropped: nothing waits in the queue.
    fn drained(&self) -> bool {
        self.events == self.ingested + self.queue
    }

    /// The counters that may only grow, by name.
    fn monotonic(&self) -> [(&'static str, u64); 6] {
        [
            ("events", self.events),
            ("ingested", self.ingested),
            ("dropped.kernel", self.kernel),
            ("dropped.queue", self.queue),
            ("dropped.unreadable", self.unreadable),
            ("edgesEvicted", self.edges_evicted),
        ]
    }
}

/// `zwctl -o json ARGS`; Err with what it said when it fails.
fn zwctl(socket: &Path, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(bin("zwctl"))
        .arg("--socket")
        .arg(socket)
        .args(["-o", "json"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run zwctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "zwctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("zwctl {args:?}: no JSON: {e}"))
}

fn counters(socket: &Path) -> Counters {
    Counters::of(&zwctl(socket, &["status"]).expect("zwctl status"))
}

/// A `VmRSS`/`VmHWM` line of /proc/PID/status, in KiB.
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("the enforcer (pid {pid}) is gone: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// What the kernel logged, from the seen sets: every element, and the elements of
/// the flood's flows (src -> sink, UDP, the flood's ports).
fn seen(node: &Node, src: &Pod, sink: &Pod) -> (u64, u64) {
    let (mut total, mut flood) = (0, 0);
    for set in SEEN_SETS {
        let out = node
            .netns
            .nft(&["-j", "list", "set", "inet", "zonewarden", set]);
        let listing: Value = serde_json::from_str(&out).expect("nft JSON");
        let elems = listing["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["set"]["elem"].as_array())
            .flatten();
        for elem in elems {
            total += 1;
            let key = &elem["elem"]["val"]["concat"];
            let port = key[3].as_u64().unwrap_or(0);
            let is_flood = key[0] == src.ip.as_str()
                && key[1] == sink.ip.as_str()
                && (key[2] == "udp" || key[2] == 17)
                && (u64::from(FIRST_PORT)..u64::from(FIRST_PORT + FLOWS)).contains(&port);
            flood += u64::from(is_flood);
        }
    }
    (total, flood)
}

/// The seen sets and the counters at one quiet moment: the seen sets read the same
/// before and after the counters, and nothing waits in the queue.
fn settled(node: &Node, src: &Pod, sink: &Pod) -> ((u64, u64), Counters) {
    let mut found = None;
    wait::until(
        "the seen sets and the counters to hold still with the queue drained",
        Duration::from_secs(120),
        || {
            let before = seen(node, src, sink);
            let first = counters(&node.socket());
            let after = seen(node, src, sink);
            let second = counters(&node.socket());
            let still = before == after && first == second && second.drained();
            found = still.then_some((after, second));
            still
        },
    );
    found.expect("settled")
}

/// Sends every flow `ROUNDS` times from `src` to `sink`; how many datagrams the
/// kernel took.
fn flood(src: &Pod, sink: &Pod) -> u64 {
    let program = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         sent = 0\n\
         for _ in range({ROUNDS}):\n\
         \x20   for port in range({FIRST_PORT}, {end}):\n\
         \x20       try:\n\
         \x20           s.sendto(b'flood', ('{dst}', port)); sent += 1\n\
         \x20       except OSError:\n\
         \x20           pass\n\
         print(sent)\n",
        end = u32::from(FIRST_PORT) + u32::from(FLOWS),
        dst = sink.ip,
    );
    let out = src
        .netns
        .exec("python3", &["-c", &program])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the flood did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = String::from_utf8_lossy(&out.stdout);
    sent.trim()
        .parse()
        .unwrap_or_else(|e| panic!("the flood printed {sent:?}: {e}"))
}

/// What the reading operator saw while the flood ran.
#[derive(Debug, Default)]
struct Reads {
    calls: u64,
    failures: Vec<String>,
    regressions: Vec<String>,
    peak_rss_kib: u64,
}

/// `zwctl status` and `zwctl get edges` in turn until `stop`, checking that every
/// call succeeds and that no counter ever goes down.
fn read_until(stop: &AtomicBool, socket: PathBuf, pid: u32) -> Reads {
    let mut reads = Reads::default();
    let mut last = Counters::default();
    while !stop.load(Ordering::SeqCst) {
        reads.peak_rss_kib = reads.peak_rss_kib.max(vm_kib(pid, "VmRSS"));
        reads.calls += 2;
        match zwctl(&socket, &["status"]) {
            Ok(status) => {
                let now = Counters::of(&status);
                for ((name, before), (_, after)) in
                    last.monotonic().into_iter().zip(now.monotonic())
                {
                    if after < before {
                        reads
                            .regressions
                            .push(format!("{name} went from {before} to {after}"));
                    }
                }
                last = now;
            }
            Err(err) => reads.failures.push(err),
        }
        if let Err(err) = zwctl(&socket, &["get", "edges"]) {
            reads.failures.push(err);
        }
    }
    reads
}

#[test]
fn a_flood_of_new_flows_is_learned_or_counted_while_reads_stay_served() {
    require_root!();
    let mut node = Node::new();
    // A seen window longer than the test: each flow is logged once, so the seen sets
    // count what the kernel logged.
    node.start_enforcer_with(&["--web-listen", LISTEN, "--seen-timeout-secs", "3600"]);
    let list = Conflist::routed(&node, "zw-flood", "10.178.0.0/24");
    let src = add_pod(&node, &list, "fsrc", "flood/src");
    let sink = add_pod(&node, &list, "fsink", "flood/sink");
    let api = add_pod(&node, &list, "fapi", "flood/api");
    let _server = Server::start(&api.netns, &["tcp:7000", "tcp:7001"]);
    let pid = node.enforcer_pid().expect("the enforcer runs");
    let status = zwctl(&node.socket(), &["status"]).expect("zwctl status");
    assert_eq!(
        status["learning"]["edgesLimit"], 10_000,
        "the default --max-learned-edges: {status}"
    );

    let ((seen_before, _), counted_before) = settled(&node, &src, &sink);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, socket) = (stop.clone(), node.socket());
        std::thread::spawn(move || read_until(&stop, socket, pid))
    };
    let sent = flood(&src, &sink);
    // The backlog drains while the operator keeps reading.
    let mut idle = counters(&node.socket());
    wait::until(
        "learning to take in or drop everything the flood logged",
        Duration::from_secs(120),
        || {
            let now = counters(&node.socket());
            let quiet = now == idle && now.drained();
            idle = now;
            quiet
        },
    );
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("the reading thread");

    // A flow after the flood: its sequence number settles how many the kernel lost.
    let marker = format!("flood/src->flood/sink:{MARKER_PORT}/udp");
    let program = format!(
        "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'm', ('{}', {MARKER_PORT}))\n",
        sink.ip
    );
    assert!(
        src.netns
            .exec("python3", &["-c", &program])
            .status()
            .expect("python3")
            .success(),
        "send the marker flow"
    );
    wait::until(
        "the marker flow to be learned",
        Duration::from_secs(30),
        || {
            zwctl(
                &node.socket(),
                &["get", "edges", "--learned", "--zone", "flood/sink"],
            )
            .is_ok_and(|v| {
                v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["edge"] == marker.as_str())
            })
        },
    );
    let ((seen_after, flood_logged), counted) = settled(&node, &src, &sink);
    let peak_kib = vm_kib(pid, "VmHWM");

    eprintln!(
        "flood: {sent} datagrams sent over {FLOWS} flows; the table logged {} events \
         ({flood_logged} of the flood); read {}, ingested {}, dropped: kernel {}, \
         queue {}, unreadable {}; edges kept {}, evicted {}; {} reads during the flood; \
         peak RSS {peak_kib} KiB (VmRSS seen by the reader {} KiB, bound {RSS_BOUND_KIB} KiB)",
        seen_after - seen_before,
        counted.events - counted_before.events,
        counted.ingested - counted_before.ingested,
        counted.kernel - counted_before.kernel,
        counted.queue - counted_before.queue,
        counted.unreadable - counted_before.unreadable,
        counted.edges_learned,
        counted.edges_evicted,
        reads.calls,
        reads.peak_rss_kib,
    );
    assert!(
        reads.failures.is_empty(),
        "{} of {} reads failed during the flood: {:?}",
        reads.failures.len(),
        reads.calls,
        reads.failures
    );
    assert!(reads.calls > 0, "the operator read during the flood");
    assert!(
        reads.regressions.is_empty(),
        "counters went down: {:?}",
        reads.regressions
    );
    assert_eq!(
        sent,
        u64::from(FLOWS) * u64::from(ROUNDS),
        "every datagram was sent"
    );
    assert!(
        flood_logged > 0 && flood_logged <= u64::from(FLOWS),
        "{flood_logged} flood flows logged"
    );

    // Every event the kernel logged reached exactly one counter...
    assert_eq!(
        counted.logged() - counted_before.logged(),
        seen_after - seen_before,
        "events read + lost in the kernel + unreadable must equal what the table logged \
         ({counted_before:?} -> {counted:?})"
    );
    // ...every event read was ingested or dropped because the queue was full...
    assert!(counted.drained(), "{counted:?}");
    // ...and every flood flow that was not dropped became a learned edge (each is a
    // new edge; some were then evicted to stay within the limit).
    let new_edges = (counted.edges_learned + counted.edges_evicted)
        - (counted_before.edges_learned + counted_before.edges_evicted);
    let dropped = counted.dropped() - counted_before.dropped();
    assert!(
        new_edges + dropped >= flood_logged,
        "{flood_logged} flood flows logged, but only {new_edges} new edges and {dropped} drops"
    );
    assert!(
        new_edges <= counted.ingested - counted_before.ingested,
        "{new_edges} new edges from {} ingested events",
        counted.ingested - counted_before.ingested
    );
    let learned = zwctl(&node.socket(), &["get", "edges", "--learned"]).expect("get edges");
    let kept = learned["items"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!(
        kept, counted.edges_learned,
        "zwctl get edges and status agree"
    );
    assert!(kept <= 10_000, "{kept} learned edges kept, over the limit");

    // The same counters on /metrics.
    let metrics = scrape(&node, LISTEN);
    for (series, want) in [
        ("zonewarden_nflog_events_total", counted.events),
        ("zonewarden_nflog_ingested_total", counted.ingested),
        (
            "zonewarden_nflog_dropped_total{cause=\"kernel\"}",
            counted.kernel,
        ),
        (
            "zonewarden_nflog_dropped_total{cause=\"queue\"}",
            counted.queue,
        ),
        (
            "zonewarden_nflog_dropped_total{cause=\"unreadable\"}",
            counted.unreadable,
        ),
        ("zonewarden_edges_learned", counted.edges_learned),
        ("zonewarden_edges_evicted_total", counted.edges_evicted),
    ] {
        assert_eq!(
            metric(&metrics, series),
            Some(want as f64),
            "{series} in\n{metrics}"
        );
    }

    assert!(
        peak_kib < RSS_BOUND_KIB,
        "the enforcer's peak RSS {peak_kib} KiB is over the documented bound {RSS_BOUND_KIB} KiB"
    );

    // Enforcement and changes go on: an approved flow passes, another is dropped.
    node.zwctl(&[
        "profile",
        "approve",
        "flood/api",
        "--edge",
        "flood/src->flood/api:7000/tcp",
    ]);
    node.zwctl(&["mode", "set", "flood/api", "enforce"]);
    assert!(
        connects(&src.netns, &api.target(7000, "tcp")),
        "the approved flow after the flood"
    );
    assert!(
        !connects(&src.netns, &api.target(7001, "tcp")),
        "an unapproved flow is still dropped"
    );
}
