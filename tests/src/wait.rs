//! Waiting on a condition with a deadline; tests never sleep to synchronise.

use std::time::{Duration, Instant};

/// Polls `cond` until it holds or `deadline` passes; panics with `what` on timeout.
pub fn until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held (for
/// clean-up, which must not panic).
pub fn until_or_not(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
