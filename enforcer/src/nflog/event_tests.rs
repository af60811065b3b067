use std::ffi::CString;
use std::num::NonZeroI32;

use netlink_packet_core::{ErrorMessage, NetlinkHeader};
use netlink_packet_netfilter::{NetfilterHeader, NetfilterProtoFamily};
use proptest::prelude::*;

use super::*;

/// Serializes `payload` as one netlink message with sequence number `seq`.
fn message(payload: NetlinkPayload<NetfilterMessage>, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(header, payload);
    message.finalize();
    let mut bytes = vec![0; message.header.length as usize];
    message.serialize(&mut bytes);
    bytes
}

fn packet_message(nlas: Vec<PacketNla>) -> Vec<u8> {
    let header = NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 7);
    message(
        NetfilterMessage::new(header, ULogMessage::Packet(nlas)).into(),
        0,
    )
}

/// An IPv4/UDP packet 127.0.0.1:40000 → 127.0.0.2:5353.
fn udp_payload() -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2,
    ];
    p.extend_from_slice(&[0x9c, 0x40, 0x14, 0xe9, 0, 8, 0, 0]);
    p
}

fn logged(prefix: &str, seq: u32) -> Vec<PacketNla> {
    vec![
        PacketNla::Prefix(CString::new(prefix).expect("no NUL in the prefix")),
        PacketNla::Payload(udp_payload()),
        PacketNla::IfIndexOutDev(1),
        PacketNla::Seq(seq),
    ]
}

#[test]
fn a_packet_message_becomes_an_event() {
    let (mut drops, mut events) = (DropCounter::default(), Vec::new());
    let acks = decode_datagram(
        &packet_message(logged("zw test", 0)),
        &mut drops,
        &mut events,
    );
    assert!(acks.is_empty(), "a packet is not an ack: {acks:?}");
    let expected = LogEvent {
        prefix: "zw test".into(),
        src: IpAddr::from([127, 0, 0, 1]),
        dst: IpAddr::from([127, 0, 0, 2]),
        proto: L4Proto::Udp,
        src_port: 40000,
        dst_port: 5353,
        icmp_type: None,
        icmp_code: None,
        in_ifindex: None,
        out_ifindex: Some(1),
    };
    assert_eq!(events, vec![expected]);
    assert_eq!(drops.dropped(), 0);
}

#[test]
fn several_messages_in_one_datagram_all_decode_and_gaps_count_as_drops() {
    let mut datagram = packet_message(logged("a", 0));
    datagram.extend(packet_message(logged("b", 3)));
    let (mut drops, mut events) = (DropCounter::default(), Vec::new());
    decode_datagram(&datagram, &mut drops, &mut events);
    let prefixes: Vec<_> = events.iter().map(|e| e.prefix.as_str()).collect();
    assert_eq!(prefixes, ["a", "b"]);
    assert_eq!(drops.dropped(), 2, "sequence numbers 1 and 2 never arrived");
}

#[test]
fn acks_and_nacks_carry_their_sequence_number() {
    let mut nack = ErrorMessage::default();
    nack.code = NonZeroI32::new(-libc_ebusy());
    nack.header = vec![0; 16];
    let mut datagram = message(NetlinkPayload::Error(ErrorMessage::default()), 1);
    datagram.extend(message(NetlinkPayload::Error(nack), 2));
    let acks = decode_datagram(&datagram, &mut DropCounter::default(), &mut Vec::new());
    assert_eq!(acks, vec![(1, Ok(())), (2, Err(libc_ebusy()))]);
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

#[test]
fn a_packet_that_is_not_ip_is_skipped() {
    let nlas = vec![PacketNla::Payload(vec![0; 20])];
    let mut events = Vec::new();
    decode_datagram(
        &packet_message(nlas),
        &mut DropCounter::default(),
        &mut events,
    );
    assert!(
        events.is_empty(),
        "no event from a non-IP payload: {events:?}"
    );
}

#[test]
fn a_bad_message_does_not_hide_the_next_one() {
    let mut datagram = packet_message(logged("bad", 0));
    datagram[20..22].copy_from_slice(&3u16.to_ne_bytes()); // first NLA length below 4
    datagram.extend(packet_message(logged("good", 1)));
    let mut events = Vec::new();
    decode_datagram(&datagram, &mut DropCounter::default(), &mut events);
    let prefixes: Vec<_> = events.iter().map(|e| e.prefix.as_str()).collect();
    assert_eq!(prefixes, ["good"]);
}

#[test]
fn messages_of_other_subsystems_are_skipped_unparsed() {
    // Found by the nflog_datagram fuzz target: an nf_tables message with an attribute
    // longer than its message made the library's parser index out of bounds.
    let crash =
        include_bytes!("../../../fuzz/corpus/nflog_datagram/nftables_message_with_a_bad_attribute");
    let mut events = Vec::new();
    assert!(decode_datagram(crash, &mut DropCounter::default(), &mut events).is_empty());
    assert!(events.is_empty());

    let mut datagram = packet_message(logged("other", 0));
    datagram[4..6].copy_from_slice(&0x0a0bu16.to_ne_bytes()); // an nf_tables message type
    datagram.extend(packet_message(logged("good", 1)));
    decode_datagram(&datagram, &mut DropCounter::default(), &mut events);
    let prefixes: Vec<_> = events.iter().map(|e| e.prefix.as_str()).collect();
    assert_eq!(prefixes, ["good"]);
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_datagram(&bytes, &mut DropCounter::default(), &mut Vec::new());
    }

    #[test]
    fn corrupted_packet_messages_never_panic(at in 0usize..200, byte in any::<u8>()) {
        let mut datagram = packet_message(logged("zw", 0));
        let at = at % datagram.len();
        datagram[at] = byte;
        decode_datagram(&datagram, &mut DropCounter::default(), &mut Vec::new());
    }
}
