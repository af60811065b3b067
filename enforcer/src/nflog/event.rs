//! Decoding the datagrams of an NFLOG socket into [`LogEvent`]s and acknowledgements.

use std::net::IpAddr;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{PacketNla, ULogMessage};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
use tracing::{debug, warn};

use super::drops::DropCounter;
use super::packet::{L4Proto, parse_packet};

/// One packet logged by a `log group G prefix "..."` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// The rule's `prefix`, as the kernel sent it.
    pub prefix: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: L4Proto,
    /// TCP, UDP and SCTP only; 0 otherwise and for non-first fragments.
    pub src_port: u16,
    /// TCP, UDP and SCTP only; 0 otherwise (ICMP included).
    pub dst_port: u16,
    /// ICMP and ICMPv6 only.
    pub icmp_type: Option<u8>,
    /// ICMP and ICMPv6 only.
    pub icmp_code: Option<u8>,
    /// The input interface, when the packet had one (not on the output hook).
    pub in_ifindex: Option<u32>,
    /// The output interface, when the packet had one (not on the input hook).
    pub out_ifindex: Option<u32>,
}

/// The answer of the kernel to one of our requests: `Err(errno)` for a NACK.
pub(crate) type Ack = (u32, Result<(), i32>);

/// Decodes every netlink message of one datagram: log events are appended to
/// `events`, acknowledgements returned. Messages that do not decode are counted as
/// unreadable in `drops`, logged and skipped, never fatal: one bad message must not
/// stop the listener.
pub(crate) fn decode_datagram(
    mut datagram: &[u8],
    drops: &mut DropCounter,
    events: &mut Vec<LogEvent>,
) -> Vec<Ack> {
    let mut acks = Vec::new();
    while let Ok(buffer) = NetlinkBuffer::new_checked(datagram) {
        let length = buffer.length() as usize;
        let kind = buffer.message_type();
        // Only NFLOG's packets and netlink's own messages (acknowledgements) are
        // decoded: the library's parsers of other netfilter subsystems (nf_tables)
        // index out of bounds on malformed attributes, and nothing else is ours.
        let decoded = if kind == ULOG_PACKET || kind < NLMSG_MIN_TYPE {
            NetlinkMessage::<NetfilterMessage>::deserialize(datagram)
        } else {
            debug!(kind, "ignoring a netlink message on the nflog socket");
            datagram = next_message(datagram, length);
            continue;
        };
        match decoded {
            Ok(message) => match message.payload {
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                    ..
                }) => events.extend(event_from(&nlas, drops)),
                NetlinkPayload::Error(error) => {
                    // The kernel sends -errno; i32::MIN has no positive twin.
                    let result = error
                        .code
                        .map_or(Ok(()), |code| Err(code.get().saturating_neg()));
                    acks.push((message.header.sequence_number, result));
                }
                other => debug!(?other, "ignoring a netlink message on the nflog socket"),
            },
            Err(err) => {
                drops.on_unreadable();
                warn!(%err, "skipping an nflog message that does not decode");
            }
        }
        datagram = next_message(datagram, length);
    }
    if !datagram.is_empty() {
        // A truncated message, or bytes that are no netlink message at all.
        drops.on_unreadable();
        warn!(
            bytes = datagram.len(),
            "skipping the end of an nflog datagram that is no netlink message"
        );
    }
    acks
}

/// `NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET`: a logged packet.
const ULOG_PACKET: u16 = 4 << 8;
/// Types below this are netlink's own (`NLMSG_NOOP`, `_ERROR`, `_DONE`, `_OVERRUN`).
const NLMSG_MIN_TYPE: u16 = 0x10;

/// What follows the message of `length` bytes at the start of `datagram`.
/// `new_checked` guarantees a length of at least one header; messages are 4-byte
/// aligned.
fn next_message(datagram: &[u8], length: usize) -> &[u8] {
    datagram
        .get(length.next_multiple_of(4)..)
        .unwrap_or_default()
}

/// Builds the event of one `NFULNL_MSG_PACKET`, or `None` when its payload is not an
/// IP packet we can read.
fn event_from(nlas: &[PacketNla], drops: &mut DropCounter) -> Option<LogEvent> {
    let (mut prefix, mut payload, mut in_ifindex, mut out_ifindex) = (None, None, None, None);
    for nla in nlas {
        match nla {
            PacketNla::Prefix(text) => prefix = Some(text.to_string_lossy().into_owned()),
            PacketNla::Payload(bytes) => payload = Some(bytes.as_slice()),
            PacketNla::IfIndexInDev(index) => in_ifindex = Some(*index),
            PacketNla::IfIndexOutDev(index) => out_ifindex = Some(*index),
            PacketNla::Seq(seq) => drops.on_seq(*seq),
            _ => {}
        }
    }
    let Some(summary) = payload.and_then(parse_packet) else {
        drops.on_unreadable();
        debug!(
            ?prefix,
            "skipping a logged packet that is not a readable IP packet"
        );
        return None;
    };
    Some(LogEvent {
        prefix: prefix.unwrap_or_default(),
        src: summary.src,
        dst: summary.dst,
        proto: summary.proto,
        src_port: summary.src_port,
        dst_port: summary.dst_port,
        icmp_type: summary.icmp_type,
        icmp_code: summary.icmp_code,
        in_ifindex,
        out_ifindex,
    })
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
