//! Counting the events lost before they are decoded: the ones the kernel could not
//! deliver and the ones that arrived but cannot be read.
//!
//! The kernel drops a log message when our socket's receive buffer is full and tells
//! us with one `ENOBUFS` on the next `recv`, however many it dropped. We also ask it
//! to stamp every message with a per-group sequence number (`NFULA_SEQ`, starting at
//! 0 when we bind), so the gap after an overrun gives the exact count; without
//! sequence numbers, each overrun counts as one lost event.

/// Lost-event accounting from `ENOBUFS` overruns and `NFULA_SEQ` gaps, and of the
/// messages that arrived but do not decode into an event.
#[derive(Debug, Default)]
pub(crate) struct DropCounter {
    /// Events known lost in the kernel.
    dropped: u64,
    /// Messages received that are no readable log event.
    unreadable: u64,
    /// Overruns not yet resolved by a sequence number: each is at least one event.
    unresolved_overruns: u64,
    /// The sequence number the next message should carry.
    next_seq: u32,
}

impl DropCounter {
    /// Records an `ENOBUFS` from `recv`.
    pub(crate) fn on_overrun(&mut self) {
        self.unresolved_overruns += 1;
    }

    /// Records the sequence number of a received message.
    pub(crate) fn on_seq(&mut self, seq: u32) {
        let gap = seq.wrapping_sub(self.next_seq);
        // A "gap" of more than half the space is a number from the past: ignore it.
        if gap > u32::MAX / 2 {
            return;
        }
        self.dropped += u64::from(gap).max(self.unresolved_overruns);
        self.unresolved_overruns = 0;
        self.next_seq = seq.wrapping_add(1);
    }

    /// Events the kernel lost so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped + self.unresolved_overruns
    }

    /// Records a message that arrived but is no event we can read.
    pub(crate) fn on_unreadable(&mut self) {
        self.unreadable += 1;
    }

    /// Messages received so far that were no readable event.
    pub(crate) fn unreadable(&self) -> u64 {
        self.unreadable
    }
}

#[cfg(test)]
mod tests {
    use super::DropCounter;

    #[test]
    fn consecutive_sequence_numbers_lose_nothing() {
        let mut drops = DropCounter::default();
        (0..5).for_each(|seq| drops.on_seq(seq));
        assert_eq!(drops.dropped(), 0);
    }

    #[test]
    fn a_gap_after_an_overrun_counts_every_missing_event() {
        let mut drops = DropCounter::default();
        drops.on_seq(0);
        drops.on_overrun();
        assert_eq!(
            drops.dropped(),
            1,
            "an unresolved overrun is at least one event"
        );
        drops.on_seq(5);
        assert_eq!(drops.dropped(), 4, "sequence numbers 1..=4 were lost");
    }

    #[test]
    fn overruns_without_sequence_numbers_count_one_each() {
        let mut drops = DropCounter::default();
        drops.on_overrun();
        drops.on_overrun();
        assert_eq!(drops.dropped(), 2);
    }

    #[test]
    fn wrapping_and_reordered_numbers_do_not_explode() {
        let mut drops = DropCounter {
            next_seq: u32::MAX,
            ..DropCounter::default()
        };
        drops.on_seq(u32::MAX);
        drops.on_seq(1);
        assert_eq!(drops.dropped(), 1, "0 was lost across the wrap");
        drops.on_seq(0);
        assert_eq!(drops.dropped(), 1, "a number from the past is not a loss");
    }
}
