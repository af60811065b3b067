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
//! - `drops`: counting the events the kernel could not deliver.

mod drops;
pub mod event;
pub mod listener;
pub mod packet;
#[cfg(test)]
mod test_netns;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, warn};

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

/// Binds `group` in the current thread's network namespace (bind errors are
/// returned here), then forwards every event to `tx` from a dedicated thread until
/// the channel closes. Receive errors are logged and retried; kernel drops are
/// logged with their running total. When `tx` is full the thread waits, the
/// kernel's queue fills and further events are dropped and counted: logging never
/// slows the data plane. The running total of drops is also kept in `dropped`
/// (for `/metrics`). Binding is one blocking netlink round trip (at most
/// [`listener::BIND_ANSWER_TIMEOUT`]): call this from start-up code or
/// `spawn_blocking`, and from the thread that is in the node's namespace.
pub fn spawn(
    group: u16,
    tx: mpsc::Sender<LogEvent>,
    dropped: Arc<AtomicU64>,
) -> Result<JoinHandle<()>, NflogError> {
    let mut listener = NflogListener::bind(group)?;
    listener.set_read_timeout(Some(CLOSED_CHANNEL_CHECK))?;
    std::thread::Builder::new()
        .name(format!("nflog-{group}"))
        .spawn(move || forward(listener, group, &tx, &dropped))
        .map_err(|source| NflogError::Thread { group, source })
}

fn forward(
    mut listener: NflogListener,
    group: u16,
    tx: &mpsc::Sender<LogEvent>,
    dropped_total: &AtomicU64,
) {
    let mut reported_drops = 0;
    while !tx.is_closed() {
        match listener.recv() {
            Ok(events) => {
                for event in events {
                    if tx.blocking_send(event).is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                error!(%err, group, "nflog receive failed; retrying");
                std::thread::sleep(ERROR_BACKOFF);
            }
        }
        let dropped = listener.dropped();
        if dropped > reported_drops {
            warn!(
                group,
                dropped_total = dropped,
                dropped_now = dropped - reported_drops,
                "the kernel dropped nflog events: the listener is not keeping up"
            );
            reported_drops = dropped;
            dropped_total.store(dropped, Ordering::Relaxed);
        }
    }
}
