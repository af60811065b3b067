//! The writer of the events log: one thread that owns the file.
//!
//! Events come through a bounded queue; [`EventsLog::send`] never waits (a full
//! queue loses the event and counts it). The thread writes what it finds queued as
//! one `write` of whole lines to a file opened in append mode (or to stdout). Before
//! each write it reopens the file when asked to (SIGHUP) or when the path no longer
//! names the file it holds (moved away or deleted by a rotation such as logrotate's
//! `create`), so new lines go to the new file and none is written after the rotation
//! to the old one. `copytruncate` works too: the file is in append mode. A write
//! error is logged and counted, the lines of that write are lost, and the next write
//! reopens the file.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use tracing::{error, info};

use super::{Counters, Event, EventLine, SCHEMA_VERSION, Totals, rfc3339_utc};
use crate::registry::EndpointRegistry;

/// Events the writer may lag behind before new ones are lost.
pub const QUEUE_CAPACITY: usize = 8192;
/// At most this many queued events go into one write.
const BATCH: usize = 512;

/// Where `--events-log` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`: the enforcer's stdout.
    Stdout,
    File(PathBuf),
}

impl Destination {
    /// `-` is stdout, anything else a file path.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "" => Err("--events-log needs a file path, or - for stdout".into()),
            "-" => Ok(Self::Stdout),
            path => Ok(Self::File(PathBuf::from(path))),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(
        "cannot open the events log {path} for appending: {source}; check that its directory exists and is writable"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the events log's writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Pods and addresses of this node's endpoints, to name the pods of an event.
pub trait EndpointLookup: Send + Sync {
    /// `NAMESPACE/NAME` of the pod with this address.
    fn pod_at(&self, addr: IpAddr) -> Option<String>;
    /// The pod and addresses of the endpoint of this container.
    fn endpoint(&self, container_id: &str) -> Option<(Option<String>, Vec<IpAddr>)>;
}

impl EndpointLookup for EndpointRegistry {
    /// The pod of the newest endpoint claiming `addr`: the one the kernel's maps and
    /// the resolver name when a runtime reused the address before the old pod's DEL
    /// came (the oldest would put another pod's name on the event). An address that
    /// no endpoint claims (the world, the node) costs no walk of the endpoints, which
    /// on a node of a large cluster are the whole cluster's.
    fn pod_at(&self, addr: IpAddr) -> Option<String> {
        let snapshot = self.snapshot();
        if !snapshot.resolver.addr_zone_ids.contains_key(&addr) {
            return None;
        }
        // In key order, so that on a tie of age the last (as the kernel picks) wins.
        let endpoint = snapshot
            .endpoints
            .values()
            .filter(|e| e.addrs().any(|a| a == addr))
            .max_by_key(|e| e.created_unix_ms)?;
        pod_of(endpoint)
    }

    fn endpoint(&self, container_id: &str) -> Option<(Option<String>, Vec<IpAddr>)> {
        let snapshot = self.snapshot();
        let endpoints: Vec<_> = snapshot
            .endpoints
            .values()
            .filter(|e| *e.key.container_id == *container_id)
            .collect();
        let first = endpoints.first()?;
        let addresses = endpoints.iter().flat_map(|e| e.addrs()).collect();
        Some((pod_of(first), addresses))
    }
}

fn pod_of(endpoint: &zonewarden_profiles::Endpoint) -> Option<String> {
    let name = endpoint.pod_name.as_deref()?;
    Some(match endpoint.pod_namespace.as_deref() {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    })
}

/// What the sender and the writer share.
struct Shared {
    counters: Counters,
    reopen: AtomicBool,
}

/// The events log of this process; see the module's documentation.
pub struct EventsLog {
    destination: Destination,
    queue: SyncSender<(i64, Event)>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsLog").finish_non_exhaustive()
    }
}

impl EventsLog {
    /// Opens the destination (a file that cannot be opened is an error now, not at
    /// the first event) and starts the writer thread.
    pub fn start(
        destination: Destination,
        node: String,
        lookup: Option<Arc<dyn EndpointLookup>>,
    ) -> Result<Self, EventsError> {
        let output = Output::open(&destination)?;
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            reopen: AtomicBool::new(false),
        });
        let writer = Writer {
            destination: destination.clone(),
            output: Some(output),
            node,
            lookup,
            shared: shared.clone(),
            failing: false,
        };
        std::thread::Builder::new()
            .name("zw-events".into())
            .spawn(move || writer.run(rx))
            .map_err(EventsError::Thread)?;
        Ok(Self {
            destination,
            queue: tx,
            shared,
        })
    }

    /// Queues one event; never waits.
    pub fn send(&self, at_unix_ms: i64, event: Event) {
        match self.queue.try_send((at_unix_ms, event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.counters.lose(1)
            }
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
    }

    pub fn totals(&self) -> Totals {
        let c = &self.shared.counters;
        Totals {
            enabled: true,
            written: c.written.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }
}

enum Output {
    Stdout,
    /// The file and the (device, inode) it had when opened.
    File(File, (u64, u64)),
}

impl Output {
    fn open(destination: &Destination) -> Result<Self, EventsError> {
        let Destination::File(path) = destination else {
            return Ok(Self::Stdout);
        };
        let open = || -> std::io::Result<Self> {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)?;
            let meta = file.metadata()?;
            Ok(Self::File(file, (meta.dev(), meta.ino())))
        };
        open().map_err(|source| EventsError::Open {
            path: path.clone(),
            source,
        })
    }

    /// True when `path` no longer names this file (moved away, deleted, replaced).
    fn rotated(&self, path: &Path) -> bool {
        match self {
            Self::Stdout => false,
            Self::File(_, id) => match std::fs::metadata(path) {
                Ok(meta) => (meta.dev(), meta.ino()) != *id,
                Err(_) => true,
            },
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Self::File(file, _) => file.write_all(bytes),
        }
    }
}

struct Writer {
    destination: Destination,
    /// `None` after a failed write or open: reopened before the next write.
    output: Option<Output>,
    node: String,
    lookup: Option<Arc<dyn EndpointLookup>>,
    shared: Arc<Shared>,
    /// The last write failed (its error was logged; the next success is logged too).
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<(i64, Event)>) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let mut bytes = Vec::new();
            let mut lines = 0;
            for (at_unix_ms, event) in batch.drain(..) {
                let line = EventLine {
                    schema_version: SCHEMA_VERSION,
                    time: rfc3339_utc(at_unix_ms),
                    node: self.node.clone(),
                    event: self.enrich(event),
                };
                match serde_json::to_writer(&mut bytes, &line) {
                    Ok(()) => {
                        bytes.push(b'\n');
                        lines += 1;
                    }
                    Err(err) => {
                        error!(%err, "an event cannot be written as JSON; this is a bug, please report it");
                        self.shared.counters.lose(1);
                    }
                }
            }
            self.write(&bytes, lines);
        }
    }

    fn write(&mut self, bytes: &[u8], lines: u64) {
        let Destination::File(path) = &self.destination else {
            let result = self.output.as_mut().map(|o| o.write_all(bytes));
            return self.written(result, lines);
        };
        let reopen = self.shared.reopen.swap(false, Ordering::Relaxed);
        let stale = self.output.as_ref().is_none_or(|o| o.rotated(path));
        if reopen || stale {
            // Closing the old file first: nothing more goes to it.
            self.output = None;
            match Output::open(&self.destination) {
                Ok(output) => {
                    info!(path = %path.display(), reopen, "events log (re)opened");
                    self.output = Some(output);
                }
                Err(err) => {
                    self.failed(&err.to_string(), lines);
                    return;
                }
            }
        }
        let result = self.output.as_mut().map(|o| o.write_all(bytes));
        self.written(result, lines);
    }

    fn written(&mut self, result: Option<std::io::Result<()>>, lines: u64) {
        match result {
            Some(Ok(())) => {
                if self.failing {
                    info!(destination = %self.destination, "events log writable again");
                    self.failing = false;
                }
                self.shared
                    .counters
                    .written
                    .fetch_add(lines, Ordering::Relaxed);
            }
            Some(Err(err)) => {
                let message = format!("cannot write to the events log {}: {err}", self.destination);
                self.output = None;
                self.failed(&message, lines);
            }
            None => self.failed("the events log is not open", lines),
        }
    }

    fn failed(&mut self, message: &str, lines: u64) {
        let c = &self.shared.counters;
        c.write_errors.fetch_add(1, Ordering::Relaxed);
        c.lose(lines);
        if !self.failing {
            error!(
                lost = lines,
                "{message}; events are lost (counted in zonewarden_events_lost_total) until a write succeeds"
            );
            self.failing = true;
        }
    }

    /// Names the pods of an event, from the endpoints the node holds now.
    fn enrich(&self, mut event: Event) -> Event {
        let Some(lookup) = &self.lookup else {
            return event;
        };
        match &mut event {
            Event::Violation(flow) | Event::Drop(flow) | Event::EdgeLearned(flow) => {
                flow.src_pod = lookup.pod_at(flow.src_address);
                flow.dst_pod = lookup.pod_at(flow.dst_address);
            }
            Event::Quarantine(q) => {
                if let Some((pod, addresses)) =
                    q.container_id.as_deref().and_then(|c| lookup.endpoint(c))
                {
                    q.pod = pod;
                    q.addresses = addresses;
                }
            }
            Event::PolicyChange(_) => {}
        }
        event
    }
}
