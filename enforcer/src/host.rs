//! The node's own addresses: the `host` zone. Read from the network namespace the
//! enforcer runs in, and followed while it runs.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use tracing::warn;

use crate::registry::EndpointRegistry;

/// Every address on the node's interfaces (loopback included).
pub fn host_addrs() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        warn!("cannot list the node's addresses; the host zone stays as it was");
        return Vec::new();
    };
    let set: BTreeSet<IpAddr> = addrs
        .filter_map(|ifa| ifa.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect();
    set.into_iter().collect()
}

/// Follows the node's addresses every `every`.
pub async fn follow_forever(registry: EndpointRegistry, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let addrs = tokio::task::spawn_blocking(host_addrs)
            .await
            .unwrap_or_default();
        if addrs.is_empty() {
            continue;
        }
        if let Err(err) = registry.set_host_addrs(addrs).await {
            warn!(%err, "cannot update the host zone's addresses");
        }
    }
}
