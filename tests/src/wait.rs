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
