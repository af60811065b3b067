//! What became of every event of the NFLOG group, one counter per outcome, and the
//! bounded queue that hands events from the reading thread to learning.
//!
//! Every event the kernel logged ends in exactly one counter:
//! `dropped_kernel` (the socket's receive buffer was full), `unreadable` (it arrived
//! but is no event we can read), or `received`; and every received event is then
//! either `dropped_queue` (the queue to learning was full: our own drop) or, once
//! learning has taken it, ingested (counted by learning). So at any moment
//! `received = dropped_queue + ingested + (events still queued)`, and the queue holds
//! at most [`QUEUE_CAPACITY`] events.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::LogEvent;

/// How many events may wait between the NFLOG thread and learning. An event is about
/// 150 bytes (its prefix is at most 64), so a full queue holds well under 1 MiB; past
/// it, events are dropped and counted, never buffered without bound.
pub const QUEUE_CAPACITY: usize = 4096;

/// The running totals of one NFLOG group, shared by its reading thread (which counts)
/// and `/metrics` and `zwctl status` (which read).
#[derive(Debug, Default)]
pub struct NflogCounters {
    received: AtomicU64,
    dropped_queue: AtomicU64,
    dropped_kernel: AtomicU64,
    unreadable: AtomicU64,
}

/// The counters read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NflogTotals {
    /// Events read and decoded.
    pub received: u64,
    /// Events read while the queue to learning was full, and dropped.
    pub dropped_queue: u64,
    /// Events the kernel could not deliver (the socket's receive buffer was full),
    /// exact from sequence-number gaps.
    pub dropped_kernel: u64,
    /// Messages that arrived but are no event we can read.
    pub unreadable: u64,
}

/// Whether the queue still has a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Open,
    /// Learning is gone: the reading thread stops.
    Closed,
}

impl NflogCounters {
    pub fn totals(&self) -> NflogTotals {
        NflogTotals {
            received: self.received.load(Ordering::Relaxed),
            dropped_queue: self.dropped_queue.load(Ordering::Relaxed),
            dropped_kernel: self.dropped_kernel.load(Ordering::Relaxed),
            unreadable: self.unreadable.load(Ordering::Relaxed),
        }
    }

    /// Hands `events` to the queue without ever waiting: an event that does not fit
    /// is dropped and counted, so that the thread goes back to the socket at once and
    /// the kernel's buffer does not overrun behind a slow reader.
    pub fn deliver(&self, events: Vec<LogEvent>, queue: &mpsc::Sender<LogEvent>) -> Delivery {
        for event in events {
            self.received.fetch_add(1, Ordering::Relaxed);
            match queue.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped_queue.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Closed(_)) => return Delivery::Closed,
            }
        }
        Delivery::Open
    }

    /// Takes the listener's running totals of what was lost before decoding.
    pub fn set_lost(&self, dropped_kernel: u64, unreadable: u64) {
        self.dropped_kernel.store(dropped_kernel, Ordering::Relaxed);
        self.unreadable.store(unreadable, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(port: u16) -> LogEvent {
        crate::test_support::log_event("zw learn z1 out", port)
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let counters = NflogCounters::default();
        let (tx, mut rx) = mpsc::channel(2);
        let delivered = counters.deliver((1..=5).map(event).collect(), &tx);
        assert_eq!(delivered, Delivery::Open);
        let totals = counters.totals();
        assert_eq!((totals.received, totals.dropped_queue), (5, 3));
        let kept: Vec<u16> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.dst_port)
            .collect();
        assert_eq!(kept, [1, 2], "the queue keeps the oldest, in order");
        assert_eq!(
            totals.received,
            totals.dropped_queue + kept.len() as u64,
            "every received event is queued or counted as dropped"
        );
    }

    #[test]
    fn a_closed_queue_stops_the_thread() {
        let counters = NflogCounters::default();
        let (tx, rx) = mpsc::channel(2);
        drop(rx);
        assert_eq!(counters.deliver(vec![event(1)], &tx), Delivery::Closed);
    }

    #[test]
    fn losses_before_decoding_are_taken_from_the_listener() {
        let counters = NflogCounters::default();
        counters.set_lost(7, 2);
        let totals = counters.totals();
        assert_eq!((totals.dropped_kernel, totals.unreadable), (7, 2));
    }
}
