//! The host ends of routed pods' veths: their interface groups ([`LinkGroupSocket`]:
//! a host end carries its pod's zone id, which the table dispatches on), and their
//! retirement after DEL, off the plugin's path.
//!
//! Deleting a veth makes the kernel wait for RCU grace periods: 15–20 ms, more than the
//! rest of a DEL together. When the plugin asks, the enforcer takes that over: it looks
//! the link up by name at once (so a later ADD's new link of the same name is never
//! touched: the deletion goes by interface index), deletes the routes to the pod's
//! addresses at once (so the addresses can be given to a new pod right away, whose
//! routes would otherwise collide), and deletes the link on a thread of its own.
//!
//! A link whose deletion is still queued when the enforcer stops is removed with the
//! pod's network namespace, or by the next CNI GC.

use std::io;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, constants::NETLINK_ROUTE};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use tracing::{debug, warn};

/// The prefix of every host end the plugin creates (`zw` + 11 hex digits).
pub const HOST_IFNAME_PREFIX: &str = "zw";
/// How long one request waits for the kernel's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const ENODEV: i32 = 19;
const ESRCH: i32 = 3;

/// Looks links up and deletes routes now; deletes links in the background.
pub struct HostLinks {
    socket: Mutex<RouteSocket>,
    queue: mpsc::Sender<(u32, String)>,
}

impl HostLinks {
    /// Opens the sockets (in the caller's network namespace) and starts the thread
    /// that deletes retired links one after another.
    pub fn start() -> io::Result<Self> {
        let socket = RouteSocket::open()?;
        let mut deleter = RouteSocket::open()?;
        let (queue, retired) = mpsc::channel::<(u32, String)>();
        std::thread::Builder::new()
            .name("zw-retire".to_owned())
            .spawn(move || {
                for (index, name) in retired {
                    match deleter.delete_link(index) {
                        Ok(()) => debug!(host = %name, index, "retired host veth deleted"),
                        Err(err) if err.raw_os_error() == Some(ENODEV) => {}
                        Err(err) => warn!(host = %name, index, %err, "cannot delete a retired host veth; CNI GC or the pod's netns removal takes it"),
                    }
                }
            })?;
        Ok(Self {
            socket: Mutex::new(socket),
            queue,
        })
    }

    /// Takes over the host end `name` of a deleted endpoint with `addrs`: routes now,
    /// the link in the background. `Ok(false)`: there is no such link (nothing to do).
    pub fn retire(&self, name: &str, addrs: &[IpAddr]) -> io::Result<bool> {
        if !name.starts_with(HOST_IFNAME_PREFIX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a zonewarden host veth"),
            ));
        }
        let mut socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let Some(index) = socket.link_index(name)? else {
            return Ok(false);
        };
        for addr in addrs {
            match socket.delete_route(*addr, index) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(ESRCH) => {}
                Err(err) => return Err(err),
            }
        }
        self.queue
            .send((index, name.to_owned()))
            .map_err(|_| io::Error::other("the host veth deletion thread has stopped"))?;
        Ok(true)
    }
}

/// The interface groups of the namespace the socket was opened in: read all at once,
/// set one by one. A routed endpoint's host interface carries its zone id as its group
/// (the table dispatches on it, see `nft::ruleset::render_base`).
pub struct LinkGroupSocket(Mutex<RouteSocket>);

impl std::fmt::Debug for LinkGroupSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkGroupSocket")
    }
}

impl LinkGroupSocket {
    /// Opens the socket in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        Ok(Self(Mutex::new(RouteSocket::open()?)))
    }

    fn socket(&self) -> std::sync::MutexGuard<'_, RouteSocket> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group of every link, by name (one dump).
    pub fn groups(&self) -> io::Result<std::collections::BTreeMap<String, u32>> {
        let answers = self
            .socket()
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        let mut groups = std::collections::BTreeMap::new();
        for answer in answers {
            let RouteNetlinkMessage::NewLink(link) = answer else {
                continue;
            };
            let (mut name, mut group) = (None, 0);
            for attr in link.attributes {
                match attr {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::Group(g) => group = g,
                    _ => {}
                }
            }
            if let Some(name) = name {
                groups.insert(name, group);
            }
        }
        Ok(groups)
    }

    /// Sets the group of link `name`; `Ok(false)` when there is no such link.
    pub fn set_group(&self, name: &str, group: u32) -> io::Result<bool> {
        let mut link = LinkMessage::default();
        link.attributes = vec![
            LinkAttribute::IfName(name.to_owned()),
            LinkAttribute::Group(group),
        ];
        match self.socket().request(RouteNetlinkMessage::SetLink(link)) {
            Ok(_) => Ok(true),
            Err(err) if err.raw_os_error() == Some(ENODEV) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

/// `RTMGRP_LINK`: the route netlink group of link changes, as a bind mask.
const LINK_GROUP: u32 = 1;
/// `RTM_NEWLINK`: a link was added or changed (its group among other things).
const RTM_NEWLINK: u16 = 16;
/// `NLMSG_ERROR` and `NLMSG_DONE` end no notification; anything else is skipped.
const NLMSG_ERROR: u16 = 2;

/// Starts the thread that tells when a link of the caller's network namespace was
/// added or changed (or notifications were lost): one signal per datagram that
/// holds such a change, at most one queued. What changed is for the receiver to
/// check; the table dispatches routed pods by their host interface's group, and
/// another tool that sets groups would otherwise close those pods until a restart.
pub fn watch_links() -> io::Result<tokio::sync::mpsc::Receiver<()>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    let mut addr = netlink_sys::SocketAddr::new(0, LINK_GROUP);
    socket.bind(&addr)?;
    socket.get_address(&mut addr)?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    std::thread::Builder::new()
        .name("zw-link-watch".to_owned())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 << 10];
            loop {
                let changed = match socket.recv(&mut &mut buffer[..], 0) {
                    Ok(len) => link_changed(&buffer[..len.min(buffer.len())]),
                    // ENOBUFS: notifications were dropped; any of them may matter.
                    Err(err) if err.raw_os_error() == Some(nix::errno::Errno::ENOBUFS as i32) => {
                        true
                    }
                    Err(err) => {
                        warn!(%err, "link notifications stopped; a changed interface group is restored at the next start");
                        return;
                    }
                };
                if changed {
                    match tx.try_send(()) {
                        Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(())) => {}
                        Err(tokio::sync::mpsc::error::TrySendError::Closed(())) => return,
                    }
                }
            }
        })?;
    Ok(rx)
}

/// Whether a datagram of link notifications holds an `RTM_NEWLINK`.
fn link_changed(mut datagram: &[u8]) -> bool {
    while datagram.len() >= 16 {
        let len = u32::from_ne_bytes([datagram[0], datagram[1], datagram[2], datagram[3]]) as usize;
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        if kind == RTM_NEWLINK {
            return true;
        }
        if len < 16 || kind == NLMSG_ERROR {
            return false;
        }
        datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    false
}

/// A NETLINK_ROUTE socket with blocking request/answer.
struct RouteSocket {
    socket: Socket,
    seq: u32,
    answer: Vec<u8>,
}

impl RouteSocket {
    fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        let timeout = TimeVal::milliseconds(ANSWER_TIMEOUT.as_millis() as i64);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
        Ok(Self {
            socket,
            seq: 0,
            answer: vec![0; 64 << 10],
        })
    }

    /// The index of the link called `name`, or `None`.
    fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut link = LinkMessage::default();
        link.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(link)) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(err) if err.raw_os_error() == Some(ENODEV) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Deletes the host route to `addr` through link `index` (main table).
    fn delete_route(&mut self, addr: IpAddr, index: u32) -> io::Result<()> {
        let (family, len, dst) = match addr {
            IpAddr::V4(a) => (AddressFamily::Inet, 32, RouteAddress::Inet(a)),
            IpAddr::V6(a) => (AddressFamily::Inet6, 128, RouteAddress::Inet6(a)),
        };
        let mut route = RouteMessage::default();
        route.header = RouteHeader {
            address_family: family,
            destination_prefix_length: len,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Unspec,
            // Any scope, any type: the route is named by destination and interface.
            scope: RouteScope::NoWhere,
            kind: RouteType::Unspec,
            ..route.header
        };
        route.attributes = vec![RouteAttribute::Destination(dst), RouteAttribute::Oif(index)];
        self.request(RouteNetlinkMessage::DelRoute(route)).map(drop)
    }

    fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(link)).map(drop)
    }

    /// Sends one request and reads until its acknowledgement; returns the messages
    /// that came before it, or the kernel's error.
    fn request(&mut self, payload: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(payload, NLM_F_REQUEST | NLM_F_ACK)
    }

    /// Sends one dump request and reads every answer until the end of the dump.
    fn dump(&mut self, payload: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(payload, NLM_F_REQUEST | NLM_F_DUMP)
    }

    fn exchange(
        &mut self,
        payload: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut message =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(payload));
        message.header.flags = flags;
        message.header.sequence_number = seq;
        message.finalize();
        let mut bytes = vec![0; message.header.length as usize];
        message.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;
        let mut answers = Vec::new();
        loop {
            let len = self.socket.recv(&mut &mut self.answer[..], 0)?;
            let mut rest = &self.answer[..len.min(self.answer.len())];
            while !rest.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
                let size = (reply.header.length as usize).max(16);
                let ours = reply.header.sequence_number == seq;
                match reply.payload {
                    NetlinkPayload::Error(err) if ours => {
                        return match err.code {
                            None => Ok(answers),
                            Some(code) => {
                                Err(io::Error::from_raw_os_error(code.get().saturating_neg()))
                            }
                        };
                    }
                    NetlinkPayload::Done(_) if ours => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) if ours => answers.push(inner),
                    _ => {}
                }
                rest = &rest[size.next_multiple_of(4).min(rest.len())..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Instant;

    use super::*;

    use crate::test_support::{TestNetns as Netns, root_or_skip};

    /// `HostLinks` opened inside `ns` (its sockets stay bound to it).
    fn host_links(ns: &Netns) -> HostLinks {
        crate::test_support::run_in_netns(&ns.0, || HostLinks::start().expect("start"))
    }

    #[test]
    fn a_retired_veth_loses_its_routes_at_once_and_goes_soon() {
        if !root_or_skip() {
            return;
        }
        let ns = Netns::new("zwh");
        ns.ip(&[
            "link", "add", "zwtest0", "type", "veth", "peer", "name", "peer0",
        ]);
        ns.ip(&["link", "set", "zwtest0", "up"]);
        ns.ip(&[
            "route",
            "add",
            "10.77.0.5/32",
            "dev",
            "zwtest0",
            "scope",
            "link",
        ]);
        let links = host_links(&ns);

        let addr: IpAddr = "10.77.0.5".parse().unwrap();
        assert!(links.retire("zwtest0", &[addr]).expect("retire"));
        let routes = ns.ip(&["route", "show"]);
        assert!(
            !routes.contains("10.77.0.5"),
            "the route went at once: {routes}"
        );
        let end = Instant::now() + Duration::from_secs(10);
        while ns.ip(&["link", "show"]).contains("zwtest0") {
            assert!(Instant::now() < end, "the retired veth is still there");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !ns.ip(&["link", "show"]).contains("peer0"),
            "its peer went with it"
        );

        assert!(!links.retire("zwtest0", &[addr]).expect("an absent link"));
        let err = links.retire("eth0", &[]).expect_err("not ours");
        assert!(
            err.to_string().contains("not a zonewarden host veth"),
            "{err}"
        );
    }

    #[test]
    fn a_new_link_of_the_same_name_is_not_touched() {
        if !root_or_skip() {
            return;
        }
        let ns = Netns::new("zwh");
        let links = host_links(&ns);
        for _ in 0..5 {
            ns.ip(&[
                "link", "add", "zwtest1", "type", "veth", "peer", "name", "peer1",
            ]);
            assert!(links.retire("zwtest1", &[]).expect("retire"));
            // A later ADD replaces the old pair itself and makes a new one at once.
            // (It may be gone already, when the queued deletion came first.)
            let _ = Command::new("ip")
                .args(["-n", &ns.0, "link", "del", "zwtest1"])
                .output();
        }
        ns.ip(&[
            "link", "add", "zwtest1", "type", "veth", "peer", "name", "peer1",
        ]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            ns.ip(&["link", "show"]).contains("zwtest1"),
            "the deletions queued by index left the new link alone"
        );
    }
}
