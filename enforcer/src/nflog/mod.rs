//! The NFLOG listener: the events our nftables rules log with
//! `log group G prefix "..."`, read from a `NETLINK_NETFILTER` socket.
//!
//! The socket belongs to the network namespace of the thread that binds it, so the
//! enforcer binds from inside the node's namespace; after that, any thread may read
//! it. Reading is blocking: [`spawn`] runs a [`NflogListener`] on its own
//! `std::thread` and forwards the events to a tokio channel.
//!
//! # Layout
//! - [`packet`]: the pure parser of the logged L3/L4 headers ([`parse_packet`]).
//! - [`event`]: netlink datagrams to [`LogEvent`]s and acknowledgements.
//! - [`listener`]: the socket: [`NflogListener::bind`], [`NflogListener::recv`].
//! - [`counters`]: what became of every event, and the bounded queue to learning.
//! - `drops`: counting the events the kernel could not deliver and the unreadable ones.

pub mod counters;
pub(crate) mod drops;
pub mod event;
pub mod listener;
pub mod packet;
#[cfg(test)]
mod test_netns;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, warn};

pub use counters::{Delivery, NflogCounters, NflogTotals, QUEUE_CAPACITY};
pub use event::LogEvent;
pub use listener::NflogListener;
pub use packet::{L4Proto, PacketSummary, parse_packet};

/// What can go wrong while binding or reading an NFLOG group.
#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    #[error(
        "cannot open a NETLINK_NETFILTER socket: {source}; the enforcer needs \
         CAP_NET_ADMIN in the node's network namespace"
    )]
    Open { source: io::Error },
    #[error("cannot send the nflog configuration of group {group}: {source}")]
    Configure { group: u16, source: io::Error },
    /// The kernel answers EPERM both when another socket owns the group and when
    /// we lack CAP_NET_ADMIN.
    #[error(
        "the kernel refused to bind nflog group {group} (operation not permitted): \
         another process in this network namespace has bound it (ulogd or another \
         enforcer? stop it or configure another log group), or the enforcer lacks \
         CAP_NET_ADMIN"
    )]
    GroupUnavailable { group: u16 },
    #[error(
        "the kernel refused to bind nflog group {group}: {source}; check CAP_NET_ADMIN \
         and that the nfnetlink_log module can load (modprobe nfnetlink_log)"
    )]
    Rejected { group: u16, source: io::Error },
    #[error(
        "the kernel did not answer the bind of nflog group {group} within {timeout:?}; \
         check that the nfnetlink_log module can load (modprobe nfnetlink_log)"
    )]
    NoAnswer { group: u16, timeout: Duration },
    #[error("cannot set the read timeout of the nflog socket of group {group}: {source}")]
    SetTimeout { group: u16, source: nix::Error },
    #[error("cannot receive from the nflog socket of group {group}: {source}")]
    Receive { group: u16, source: io::Error },
    #[error("cannot start the nflog thread of group {group}: {source}")]
    Thread { group: u16, source: io::Error },
}

/// How often the forwarding thread wakes up to notice a closed channel.
const CLOSED_CHANNEL_CHECK: Duration = Duration::from_secs(1);
/// The pause after a failed receive, so a persistent error does not spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// At most one warning about lost events per this period: a flood must not become a
/// flood of log lines.
const LOSS_WARNING_EVERY: Duration = Duration::from_secs(10);

/// Binds `group` in the current thread's network namespace (bind errors are
/// returned here), then hands every event to `queue` from a dedicated thread until
/// the queue's receiver goes away. The thread never waits on the queue: when it is
/// full (learning does not keep up) the event is dropped and counted, and the thread
/// goes back to the socket, so that the kernel's buffer drains. Every event ends in
/// one of `counters` (see [`counters`]); losses are also logged, at most once per
/// [`LOSS_WARNING_EVERY`]. Binding is one blocking netlink round trip (at most
/// [`listener::BIND_ANSWER_TIMEOUT`]): call this from start-up code or
/// `spawn_blocking`, and from the thread that is in the node's namespace.
pub fn spawn(
    group: u16,
    queue: mpsc::Sender<LogEvent>,
    counters: Arc<NflogCounters>,
) -> Result<JoinHandle<()>, NflogError> {
    let mut listener = NflogListener::bind(group)?;
    listener.set_read_timeout(Some(CLOSED_CHANNEL_CHECK))?;
    std::thread::Builder::new()
        .name(format!("nflog-{group}"))
        .spawn(move || forward(listener, group, &queue, &counters))
        .map_err(|source| NflogError::Thread { group, source })
}

fn forward(
    mut listener: NflogListener,
    group: u16,
    queue: &mpsc::Sender<LogEvent>,
    counters: &NflogCounters,
) {
    let mut warned = LossWarning::default();
    while !queue.is_closed() {
        match listener.recv() {
            Ok(events) => {
                if counters.deliver(events, queue) == Delivery::Closed {
                    return;
                }
            }
            Err(err) => {
                error!(%err, group, "nflog receive failed; retrying");
                std::thread::sleep(ERROR_BACKOFF);
            }
        }
        counters.set_lost(listener.dropped(), listener.unreadable());
        warned.maybe_warn(group, counters.totals());
    }
}

/// The losses already reported in a warning, and when.
#[derive(Default)]
struct LossWarning {
    reported: NflogTotals,
    at: Option<Instant>,
}

impl LossWarning {
    fn maybe_warn(&mut self, group: u16, now: NflogTotals) {
        let lost = |t: &NflogTotals| (t.dropped_kernel, t.dropped_queue);
        if lost(&now) == lost(&self.reported)
            || self.at.is_some_and(|at| at.elapsed() < LOSS_WARNING_EVERY)
        {
            return;
        }
        warn!(
            group,
            dropped_kernel = now.dropped_kernel - self.reported.dropped_kernel,
            dropped_queue = now.dropped_queue - self.reported.dropped_queue,
            dropped_kernel_total = now.dropped_kernel,
            dropped_queue_total = now.dropped_queue,
            "nflog events lost: learning and reports missed them (the kernel's buffer \
             or the learning queue was full; see zonewarden_nflog_dropped_total)"
        );
        self.reported = now;
        self.at = Some(Instant::now());
    }
}
