//! New connections as the kernel's connection tracking announces them: the
//! `NFNLGRP_CONNTRACK_NEW` multicast group of ctnetlink, in the enforcer's network
//! namespace. The kernel announces a connection when its first packet has passed
//! every hook and is confirmed, so each announcement is a connection the table let
//! through; one the table dropped is never announced.
//!
//! The kernel sends these events only to a bound socket (and, with the default
//! `net.netfilter.nf_conntrack_events = 2`, tracks events only for connections that
//! begin while one is bound): binding costs nothing while nobody watches flows.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, constants::NETLINK_NETFILTER};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};

use crate::nflog::listener::{duration_timeval, enlarge_receive_buffer};

/// The multicast group of new connections (`NFNLGRP_CONNTRACK_NEW`), as a bind mask.
const GROUP_NEW_MASK: u32 = 1;
/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW`.
const MSG_CT_NEW: u16 = 1 << 8;
pub(crate) const NETLINK_HEADER: usize = 16;
pub(crate) const NFGENMSG: usize = 4;
/// The attribute type bits (without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;
pub(crate) const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
/// Room for one datagram (the kernel sends one event per message, a few hundred
/// bytes each, several per datagram at most).
const DATAGRAM_BYTES: usize = 64 << 10;

/// A connection the table let through: its original direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NewConnection {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IP protocol number.
    pub proto: u8,
    /// 0 for protocols without ports.
    pub src_port: u16,
    pub dst_port: u16,
}

/// A socket bound to the new-connection group. Dropping it unbinds.
pub struct CtEvents {
    socket: Socket,
    datagram: Vec<u8>,
    /// Events the kernel could not queue for us (receive buffer overruns).
    pub overruns: u64,
}

impl CtEvents {
    /// Binds the group in the current network namespace; `recv` returns after
    /// `timeout` without events.
    pub fn bind(timeout: Duration) -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind(&SocketAddr::new(0, GROUP_NEW_MASK))?;
        enlarge_receive_buffer(&socket);
        setsockopt(&socket, sockopt::ReceiveTimeout, &duration_timeval(timeout))
            .map_err(io::Error::from)?;
        Ok(Self {
            socket,
            datagram: vec![0; DATAGRAM_BYTES],
            overruns: 0,
        })
    }

    /// The connections of the next datagram; empty when the timeout passed first or
    /// the kernel dropped events (counted in `overruns`).
    pub fn recv(&mut self) -> io::Result<Vec<NewConnection>> {
        match self.socket.recv(&mut &mut self.datagram[..], 0) {
            Ok(len) => Ok(parse_datagram(&self.datagram[..len.min(DATAGRAM_BYTES)])),
            Err(err) if err.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                self.overruns += 1;
                Ok(Vec::new())
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(Vec::new())
            }
            Err(err) => Err(err),
        }
    }
}

/// Every new-connection message of a datagram; anything else, or a message that is
/// cut short or lacks its addresses, is skipped.
pub fn parse_datagram(datagram: &[u8]) -> Vec<NewConnection> {
    messages(datagram)
        .filter(|(kind, _)| *kind == MSG_CT_NEW)
        .filter_map(|(_, body)| connection(body.get(NFGENMSG..)?))
        .collect()
}

/// The messages of a datagram: (type, what follows the netlink header), until one is
/// cut short.
pub(crate) fn messages(mut datagram: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if datagram.len() < NETLINK_HEADER {
            return None;
        }
        let len = u32::from_ne_bytes(datagram[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(datagram[4..6].try_into().expect("2 bytes"));
        if len < NETLINK_HEADER || len > datagram.len() {
            return None;
        }
        let body = &datagram[NETLINK_HEADER..len];
        datagram = &datagram[align(len).min(datagram.len())..];
        Some((kind, body))
    })
}

pub(crate) fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The attributes of a block: (type, value), each once as the kernel sends them.
pub(crate) fn attributes(mut block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if block.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([block[0], block[1]]));
        let kind = u16::from_ne_bytes([block[2], block[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > block.len() {
            return None;
        }
        let value = &block[4..len];
        block = &block[align(len).min(block.len())..];
        Some((kind, value))
    })
}

pub(crate) fn find(block: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(block).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

/// The original tuple of one message's attributes.
pub(crate) fn connection(message: &[u8]) -> Option<NewConnection> {
    let tuple = find(message, CTA_TUPLE_ORIG)?;
    let ip = find(tuple, CTA_TUPLE_IP)?;
    let (src, dst) = match (find(ip, CTA_IP_V4_SRC), find(ip, CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (v4(s)?, v4(d)?),
        _ => (v6(find(ip, CTA_IP_V6_SRC)?)?, v6(find(ip, CTA_IP_V6_DST)?)?),
    };
    let proto = find(tuple, CTA_TUPLE_PROTO)?;
    let port = |kind| {
        find(proto, kind)
            .and_then(|v| <[u8; 2]>::try_from(v).ok())
            .map_or(0, u16::from_be_bytes)
    };
    Some(NewConnection {
        src,
        dst,
        proto: *find(proto, CTA_PROTO_NUM)?.first()?,
        src_port: port(CTA_PROTO_SRC_PORT),
        dst_port: port(CTA_PROTO_DST_PORT),
    })
}

fn v4(bytes: &[u8]) -> Option<IpAddr> {
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into())
}

fn v6(bytes: &[u8]) -> Option<IpAddr> {
    Some(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align(out.len()), 0);
        out
    }

    fn nested(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
        attr(kind | 0x8000, &parts.concat())
    }

    fn message(kind: u16, attrs: &[u8]) -> Vec<u8> {
        let len = NETLINK_HEADER + NFGENMSG + attrs.len();
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&[2, 0, 0, 0]);
        out.extend_from_slice(attrs);
        out
    }

    fn tcp_v4() -> Vec<u8> {
        nested(
            CTA_TUPLE_ORIG,
            &[
                nested(
                    CTA_TUPLE_IP,
                    &[
                        attr(CTA_IP_V4_SRC, &[10, 0, 0, 1]),
                        attr(CTA_IP_V4_DST, &[10, 0, 0, 2]),
                    ],
                ),
                nested(
                    CTA_TUPLE_PROTO,
                    &[
                        attr(CTA_PROTO_NUM, &[6]),
                        attr(CTA_PROTO_SRC_PORT, &40000u16.to_be_bytes()),
                        attr(CTA_PROTO_DST_PORT, &5432u16.to_be_bytes()),
                    ],
                ),
            ],
        )
    }

    #[test]
    fn reads_the_original_tuple_of_each_new_connection() {
        let icmp6 = nested(
            CTA_TUPLE_ORIG,
            &[
                nested(
                    CTA_TUPLE_IP,
                    &[
                        attr(
                            CTA_IP_V6_SRC,
                            &"fd00::1".parse::<Ipv6Addr>().unwrap().octets(),
                        ),
                        attr(
                            CTA_IP_V6_DST,
                            &"fd00::2".parse::<Ipv6Addr>().unwrap().octets(),
                        ),
                    ],
                ),
                nested(CTA_TUPLE_PROTO, &[attr(CTA_PROTO_NUM, &[58])]),
            ],
        );
        // A message of another kind between them is skipped.
        let datagram = [
            message(MSG_CT_NEW, &tcp_v4()),
            message(MSG_CT_NEW + 1, &tcp_v4()),
            message(MSG_CT_NEW, &icmp6),
        ]
        .concat();
        assert_eq!(
            parse_datagram(&datagram),
            [
                NewConnection {
                    src: "10.0.0.1".parse().unwrap(),
                    dst: "10.0.0.2".parse().unwrap(),
                    proto: 6,
                    src_port: 40000,
                    dst_port: 5432,
                },
                NewConnection {
                    src: "fd00::1".parse().unwrap(),
                    dst: "fd00::2".parse().unwrap(),
                    proto: 58,
                    src_port: 0,
                    dst_port: 0,
                },
            ]
        );
    }

    #[test]
    fn cut_or_lying_input_never_panics() {
        let whole = message(MSG_CT_NEW, &tcp_v4());
        for len in 0..whole.len() {
            let cut = parse_datagram(&whole[..len]);
            assert!(cut.is_empty(), "{len}: {cut:?}");
        }
        // Every single byte changed: still no panic, at most one connection.
        for at in 0..whole.len() {
            for value in [0, 3, 0xff] {
                let mut bad = whole.clone();
                bad[at] = value;
                assert!(parse_datagram(&bad).len() <= 1);
            }
        }
    }
}
