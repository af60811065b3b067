//! Cutting the open connections of quarantined addresses. Established traffic is
//! accepted before any lookup, so a quarantine would not stop a connection that is
//! already open: its conntrack entries are deleted, and the next packet of such a
//! connection is new again and meets the quarantine rules.

use std::net::IpAddr;
use std::process::Command;

use tracing::{info, warn};

/// Deletes every conntrack entry from or to `addr` in the enforcer's namespace.
/// Returns how many were deleted; a failure is logged, never fatal: the quarantine
/// rules are in place either way.
pub fn flush(addr: IpAddr) -> usize {
    let mut deleted = 0;
    for dir in ["--orig-src", "--orig-dst"] {
        match Command::new("conntrack")
            .args(["-D", dir, &addr.to_string()])
            .output()
        {
            // conntrack exits 1 when nothing matched; it reports the count on stderr.
            Ok(out) => deleted += count(&String::from_utf8_lossy(&out.stderr)),
            Err(err) => {
                warn!(%addr, %err, "cannot run conntrack; open connections of a quarantined endpoint stay open until they close")
            }
        }
    }
    if deleted > 0 {
        info!(%addr, deleted, "open connections of a quarantined address cut");
    }
    deleted
}

/// The count in conntrack's "N flow entries have been deleted." line.
fn count(stderr: &str) -> usize {
    stderr
        .lines()
        .find(|l| l.contains("flow entries have been deleted"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_count() {
        assert_eq!(
            super::count("conntrack v1.4.7 (conntrack-tools): 3 flow entries have been deleted.\n"),
            3
        );
        assert_eq!(
            super::count("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.\n"),
            0
        );
        assert_eq!(super::count("garbage"), 0);
    }
}
