//! Cutting the open connections of quarantined addresses. Established traffic is
//! accepted before any lookup, so a quarantine would not stop a connection that is
//! already open: its conntrack entries are deleted, and the next packet of such a
//! connection is new again and meets the quarantine rules.
//!
//! Over ctnetlink, as `conntrack -D --orig-src A` and `--orig-dst A` do it, without
//! starting a process: one dump of the address's family, then a delete of each entry
//! whose original direction has `A` as source or destination, named by its original
//! tuple and its id (so a new connection that reuses the tuple is not cut by mistake).

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};
use tracing::info;

use crate::flows::ctnetlink::{
    CTA_TUPLE_ORIG, NFGENMSG, NewConnection, align, connection, find, messages,
};
use crate::nflog::listener::duration_timeval;

/// `NFNL_SUBSYS_CTNETLINK << 8` with `IPCTNL_MSG_CT_NEW`, `_GET` and `_DELETE`.
const MSG_CT_NEW: u16 = 1 << 8;
const MSG_CT_GET: u16 = (1 << 8) | 1;
const MSG_CT_DELETE: u16 = (1 << 8) | 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
/// `CTA_ID` (the entry's id, checked by the kernel on delete) and `CTA_ZONE`.
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// How long we wait for one answer of the kernel: it answers at once; this only
/// bounds a kernel that never does.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} over ctnetlink: {source}")]
pub struct ConntrackError {
    pub action: String,
    #[source]
    pub source: io::Error,
}

/// Deletes every conntrack entry from or to `addr` in the enforcer's namespace;
/// returns how many were deleted. An entry that went away by itself meanwhile is not
/// an error.
pub fn flush(addr: IpAddr) -> Result<usize, ConntrackError> {
    let mut socket = CtSocket::open().map_err(|source| ConntrackError {
        action: "open a netfilter netlink socket".to_owned(),
        source,
    })?;
    let entries = socket.dump(addr).map_err(|source| ConntrackError {
        action: format!("list the connections of {addr}"),
        source,
    })?;
    let mut deleted = 0;
    for entry in &entries {
        match socket.delete(entry) {
            Ok(()) => deleted += 1,
            Err(err) if err.raw_os_error() == Some(nix::libc::ENOENT) => {}
            Err(source) => {
                return Err(ConntrackError {
                    action: format!(
                        "delete the connection {} -> {} (protocol {}) of {addr} ({deleted} of {} deleted)",
                        entry.tuple.src,
                        entry.tuple.dst,
                        entry.tuple.proto,
                        entries.len()
                    ),
                    source,
                });
            }
        }
    }
    if deleted > 0 {
        info!(%addr, deleted, "open connections of a quarantined address cut");
    }
    Ok(deleted)
}

/// One conntrack entry as the delete names it.
#[derive(Debug)]
struct Entry {
    tuple: NewConnection,
    /// The `CTA_TUPLE_ORIG` attribute's value, as the dump sent it.
    orig: Vec<u8>,
    id: Option<Vec<u8>>,
    zone: Option<Vec<u8>>,
}

/// The entries of a dump datagram whose original direction has `addr` at either end;
/// `Ok(true)` when the dump is complete.
fn read_dump(datagram: &[u8], addr: IpAddr, out: &mut Vec<Entry>) -> io::Result<bool> {
    for (kind, body) in messages(datagram) {
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = body
                    .get(0..4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(errno.abs()));
                }
            }
            MSG_CT_NEW => {
                let Some(attrs) = body.get(NFGENMSG..) else {
                    continue;
                };
                let (Some(tuple), Some(orig)) = (connection(attrs), find(attrs, CTA_TUPLE_ORIG))
                else {
                    continue;
                };
                if tuple.src == addr || tuple.dst == addr {
                    out.push(Entry {
                        tuple,
                        orig: orig.to_vec(),
                        id: find(attrs, CTA_ID).map(<[u8]>::to_vec),
                        zone: find(attrs, CTA_ZONE).map(<[u8]>::to_vec),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

struct CtSocket {
    socket: Socket,
    seq: u32,
    buffer: Vec<u8>,
}

impl CtSocket {
    fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &duration_timeval(ANSWER_TIMEOUT),
        )
        .map_err(io::Error::from)?;
        Ok(Self {
            socket,
            seq: 0,
            buffer: vec![0; 256 << 10],
        })
    }

    fn send(&mut self, kind: u16, flags: u16, family: u8, attrs: &[u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + NFGENMSG + attrs.len();
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        message.extend_from_slice(&self.seq.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&[family, 0, 0, 0]);
        message.extend_from_slice(attrs);
        self.socket.send(&message, 0)?;
        Ok(self.seq)
    }

    fn recv(&mut self) -> io::Result<usize> {
        self.socket.recv(&mut &mut self.buffer[..], 0)
    }

    /// Every entry of `addr`'s family with `addr` at either end of its original
    /// direction.
    fn dump(&mut self, addr: IpAddr) -> io::Result<Vec<Entry>> {
        let family = if addr.is_ipv4() { AF_INET } else { AF_INET6 };
        self.send(MSG_CT_GET, NLM_F_DUMP, family, &[])?;
        let mut entries = Vec::new();
        loop {
            let len = self.recv()?;
            if read_dump(
                &self.buffer[..len.min(self.buffer.len())],
                addr,
                &mut entries,
            )? {
                return Ok(entries);
            }
        }
    }

    /// Deletes one entry; `ENOENT` when it is gone already.
    fn delete(&mut self, entry: &Entry) -> io::Result<()> {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, CTA_TUPLE_ORIG | NLA_F_NESTED, &entry.orig);
        if let Some(id) = &entry.id {
            push_attr(&mut attrs, CTA_ID, id);
        }
        if let Some(zone) = &entry.zone {
            push_attr(&mut attrs, CTA_ZONE, zone);
        }
        let family = if entry.tuple.src.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        };
        let seq = self.send(MSG_CT_DELETE, NLM_F_ACK, family, &attrs)?;
        loop {
            let len = self.recv()?;
            for (kind, body) in messages(&self.buffer[..len.min(self.buffer.len())]) {
                // The error message's body: errno, then the request's header (its
                // sequence number at bytes 8..12 of it).
                let answered = body
                    .get(12..16)
                    .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")));
                if kind == NLMSG_ERROR && answered == Some(seq) {
                    let errno = i32::from_ne_bytes(body[0..4].try_into().expect("4 bytes"));
                    return match errno {
                        0 => Ok(()),
                        e => Err(io::Error::from_raw_os_error(e.abs())),
                    };
                }
            }
        }
    }
}

fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align(out.len()), 0);
}

/// The connections of `addr` (either end of the original direction) that the
/// namespace tracks now: what [`flush`] would delete.
pub fn connections_of(addr: IpAddr) -> io::Result<Vec<NewConnection>> {
    let mut socket = CtSocket::open()?;
    Ok(socket
        .dump(addr)?
        .into_iter()
        .map(|entry| entry.tuple)
        .collect())
}

#[cfg(test)]
mod tests;
