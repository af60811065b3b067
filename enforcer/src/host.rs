//! The node's own addresses: the `host` zone. Read from the network namespace the
//! enforcer runs in, and followed while it runs through the kernel's address events
//! (`RTM_NEWADDR` / `RTM_DELADDR` of both families), so that an address added to the
//! node is `host`, never `world`, within milliseconds.
//!
//! A thread of its own blocks on a route netlink socket subscribed to the address
//! groups; after each burst of events it reads the addresses again and publishes them
//! on a watch channel (only the newest set matters); a task hands them to the
//! registry. Events the kernel could not queue (the socket overran) and anything else
//! missed are caught by a slow re-read.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_sys::{Socket, constants::NETLINK_ROUTE};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::registry::EndpointRegistry;

/// `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`.
const ADDRESS_GROUPS: u32 = 0x10 | 0x100;
/// How often the addresses are read even without events (a safety net).
const REREAD_EVERY: Duration = Duration::from_secs(30);

/// Every address on the node's interfaces (loopback and link-local ones included).
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

/// A socket that wakes up on every address change of the caller's network namespace.
struct AddressEvents {
    socket: Socket,
    buffer: Vec<u8>,
}

impl AddressEvents {
    fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        let mut addr = netlink_sys::SocketAddr::new(0, ADDRESS_GROUPS);
        socket.bind(&addr)?;
        socket.get_address(&mut addr)?;
        let timeout = TimeVal::milliseconds(REREAD_EVERY.as_millis() as i64);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
        Ok(Self {
            socket,
            buffer: vec![0; 64 << 10],
        })
    }

    /// Waits for a change (or the re-read period); then takes every event already
    /// queued, so that a burst costs one read of the addresses.
    fn wait(&mut self) {
        match self.socket.recv(&mut &mut self.buffer[..], 0) {
            Ok(_) => {}
            Err(err) if is_timeout(&err) => return,
            // ENOBUFS: the kernel dropped events; the read that follows sees the truth.
            Err(err) => debug!(%err, "address events: receive failed; reading the addresses"),
        }
        let _ = self.socket.set_non_blocking(true);
        while self.socket.recv(&mut &mut self.buffer[..], 0).is_ok() {}
        let _ = self.socket.set_non_blocking(false);
    }
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Starts the thread that follows the node's addresses, publishing each new set.
/// Fails when the netlink socket cannot be opened (then only [`poll_forever`] works).
pub fn watch_addresses(initial: Vec<IpAddr>) -> io::Result<watch::Receiver<Vec<IpAddr>>> {
    let mut events = AddressEvents::open()?;
    let (tx, rx) = watch::channel(initial);
    std::thread::Builder::new()
        .name("zw-host-addrs".to_owned())
        .spawn(move || {
            loop {
                events.wait();
                let addrs = host_addrs();
                if addrs.is_empty() {
                    continue;
                }
                let changed = tx.send_if_modified(|current| {
                    let modified = *current != addrs;
                    if modified {
                        *current = addrs;
                    }
                    modified
                });
                if changed {
                    debug!("the node's addresses changed");
                }
                if tx.is_closed() {
                    return;
                }
            }
        })?;
    Ok(rx)
}

/// Hands every new set of addresses to the registry (the `host` zone's elements).
pub async fn follow_forever(registry: EndpointRegistry, mut addrs: watch::Receiver<Vec<IpAddr>>) {
    loop {
        let latest = addrs.borrow_and_update().clone();
        if let Err(err) = registry.set_host_addrs(latest).await {
            warn!(%err, "cannot update the host zone's addresses; retrying in a second");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if addrs.changed().await.is_err() {
            return;
        }
    }
}

/// Without address events: reads the addresses every `every`.
pub async fn poll_forever(registry: EndpointRegistry, every: Duration) {
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
