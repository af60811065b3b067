//! Pure parsing of the L3 packet the kernel copies into `NFULA_PAYLOAD`.
//!
//! The payload starts at the IP header and is cut at the copy range (128 bytes), so
//! every read is bounds-checked and a malformed or truncated packet yields `None`,
//! never a panic. IPv6 extension headers are skipped when they are hop-by-hop,
//! routing, fragment, destination options or AH; ESP and "no next header" end the
//! walk and are reported as [`L4Proto::Other`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The transport protocol of a logged packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol number (or IPv6 next header that ended the walk).
    Other(u8),
}

impl L4Proto {
    /// Maps an IP protocol number to the protocol.
    pub fn from_number(number: u8) -> Self {
        match number {
            IPPROTO_ICMP => Self::Icmp,
            IPPROTO_TCP => Self::Tcp,
            IPPROTO_UDP => Self::Udp,
            IPPROTO_ICMPV6 => Self::Icmpv6,
            IPPROTO_SCTP => Self::Sctp,
            other => Self::Other(other),
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Icmp => IPPROTO_ICMP,
            Self::Tcp => IPPROTO_TCP,
            Self::Udp => IPPROTO_UDP,
            Self::Icmpv6 => IPPROTO_ICMPV6,
            Self::Sctp => IPPROTO_SCTP,
            Self::Other(other) => other,
        }
    }
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;

/// What the L3 and L4 headers of a logged packet say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSummary {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: L4Proto,
    /// 0 for protocols without ports and for non-first fragments.
    pub src_port: u16,
    /// 0 for protocols without ports and for non-first fragments.
    pub dst_port: u16,
    /// ICMP or ICMPv6 type, when the protocol is one of those and not a fragment.
    pub icmp_type: Option<u8>,
    /// ICMP or ICMPv6 code, alongside `icmp_type`.
    pub icmp_code: Option<u8>,
}

/// Parses an IPv4 or IPv6 packet starting at its IP header; `None` when it is not
/// one, or when its headers are truncated or inconsistent.
pub fn parse_packet(packet: &[u8]) -> Option<PacketSummary> {
    let (src, dst, proto, l4) = match packet.first()? >> 4 {
        4 => parse_ipv4(packet)?,
        6 => parse_ipv6(packet)?,
        _ => return None,
    };
    let mut summary = PacketSummary {
        src,
        dst,
        proto: L4Proto::from_number(proto),
        src_port: 0,
        dst_port: 0,
        icmp_type: None,
        icmp_code: None,
    };
    // `None`: a non-first fragment, which carries no transport header.
    let Some(l4) = l4 else { return Some(summary) };
    match summary.proto {
        L4Proto::Tcp | L4Proto::Udp | L4Proto::Sctp => {
            summary.src_port = u16::from_be_bytes(l4.get(0..2)?.try_into().ok()?);
            summary.dst_port = u16::from_be_bytes(l4.get(2..4)?.try_into().ok()?);
        }
        L4Proto::Icmp | L4Proto::Icmpv6 => {
            summary.icmp_type = Some(*l4.first()?);
            summary.icmp_code = Some(*l4.get(1)?);
        }
        L4Proto::Other(_) => {}
    }
    Some(summary)
}

/// The addresses, the protocol number and the transport header (`None` for a
/// non-first fragment).
type L3<'a> = (IpAddr, IpAddr, u8, Option<&'a [u8]>);

fn parse_ipv4(packet: &[u8]) -> Option<L3<'_>> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    if header_len < 20 || packet.len() < header_len {
        return None;
    }
    let fragment_offset = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[12..16]).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[16..20]).ok()?);
    let l4 = (fragment_offset == 0).then(|| &packet[header_len..]);
    Some((src.into(), dst.into(), packet[9], l4))
}

/// At most this many IPv6 extension headers are skipped before giving up.
const MAX_EXTENSION_HEADERS: usize = 8;

fn parse_ipv6(packet: &[u8]) -> Option<L3<'_>> {
    let header = packet.get(..40)?;
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&header[8..24]).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&header[24..40]).ok()?);
    let mut next = header[6];
    let mut rest = &packet[40..];
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            // Hop-by-hop, routing, destination options: 8-octet units, minus the first.
            0 | 43 | 60 => (usize::from(*rest.get(1)?) + 1) * 8,
            // Fragment: fixed 8 bytes; only the first fragment has the L4 header.
            44 => {
                let offset = u16::from_be_bytes(rest.get(2..4)?.try_into().ok()?) >> 3;
                if offset != 0 {
                    return Some((src.into(), dst.into(), *rest.first()?, None));
                }
                8
            }
            // Authentication header: 4-octet units, minus two.
            51 => (usize::from(*rest.get(1)?) + 2) * 4,
            proto => return Some((src.into(), dst.into(), proto, Some(rest))),
        };
        next = *rest.first()?;
        rest = rest.get(len..)?;
    }
    None
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
