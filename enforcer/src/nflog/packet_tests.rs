use super::*;
use proptest::prelude::*;

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + l4.len()).expect("test packet fits in u16");
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(l4);
    p
}

fn ipv6(next: u8, src: Ipv6Addr, dst: Ipv6Addr, rest: &[u8]) -> Vec<u8> {
    let len = u16::try_from(rest.len()).expect("test packet fits in u16");
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(rest);
    p
}

/// A TCP SYN header from `sport` to `dport` (20 bytes, no options).
fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

#[test]
fn ipv4_tcp_gives_addresses_and_ports() {
    let p = ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &tcp_syn(40000, 443));
    let s = parse_packet(&p).expect("a valid IPv4/TCP packet parses");
    assert_eq!(s.src, IpAddr::from([10, 0, 0, 1]));
    assert_eq!(s.dst, IpAddr::from([10, 0, 0, 2]));
    assert_eq!(
        (s.proto, s.src_port, s.dst_port),
        (L4Proto::Tcp, 40000, 443)
    );
    assert_eq!((s.icmp_type, s.icmp_code), (None, None));
}

#[test]
fn ipv4_udp_gives_ports() {
    let udp = [0x9c, 0x40, 0x14, 0xe9, 0, 12, 0, 0, b'a', b'b', b'c', b'd'];
    let s = parse_packet(&ipv4(17, [127, 0, 0, 1], [127, 0, 0, 2], &udp)).expect("parses");
    assert_eq!(
        (s.proto, s.src_port, s.dst_port),
        (L4Proto::Udp, 40000, 5353)
    );
}

#[test]
fn ipv4_with_options_skips_them() {
    let mut p = ipv4(17, [1, 2, 3, 4], [5, 6, 7, 8], &[0, 53, 0, 54, 0, 8, 0, 0]);
    p[0] = 0x46; // IHL 6: one 4-byte option (NOPs) before the UDP header
    p.splice(20..20, [1, 1, 1, 1]);
    let s = parse_packet(&p).expect("parses");
    assert_eq!((s.src_port, s.dst_port), (53, 54));
}

#[test]
fn ipv4_icmp_gives_type_and_code() {
    let echo = [8, 0, 0xf7, 0xff, 0, 1, 0, 0];
    let s = parse_packet(&ipv4(1, [10, 0, 0, 1], [10, 0, 0, 9], &echo)).expect("parses");
    assert_eq!(
        (s.proto, s.icmp_type, s.icmp_code),
        (L4Proto::Icmp, Some(8), Some(0))
    );
    assert_eq!((s.src_port, s.dst_port), (0, 0));
}

#[test]
fn ipv4_non_first_fragment_has_no_ports() {
    let mut p = ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
    p[6..8].copy_from_slice(&185u16.to_be_bytes());
    let s = parse_packet(&p).expect("a fragment still has addresses");
    assert_eq!((s.proto, s.src_port, s.dst_port), (L4Proto::Tcp, 0, 0));
}

#[test]
fn ipv6_tcp_gives_addresses_and_ports() {
    let (a, b) = (
        "fd00::1".parse().expect("v6"),
        "fd00::2".parse().expect("v6"),
    );
    let s = parse_packet(&ipv6(6, a, b, &tcp_syn(50000, 8080))).expect("parses");
    assert_eq!((s.src, s.dst), (IpAddr::V6(a), IpAddr::V6(b)));
    assert_eq!(
        (s.proto, s.src_port, s.dst_port),
        (L4Proto::Tcp, 50000, 8080)
    );
}

#[test]
fn ipv6_skips_hop_by_hop_and_destination_options() {
    let mut rest = vec![60, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop (8 bytes) → dest opts
    rest.extend_from_slice(&[17, 1, 1, 4, 0, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0]); // 16 → UDP
    rest.extend_from_slice(&[0x00, 0x35, 0x00, 0x35, 0, 8, 0, 0]);
    let p = ipv6(0, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, &rest);
    let s = parse_packet(&p).expect("parses");
    assert_eq!((s.proto, s.src_port, s.dst_port), (L4Proto::Udp, 53, 53));
}

#[test]
fn ipv6_icmpv6_gives_type_and_code() {
    let p = ipv6(
        58,
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::LOCALHOST,
        &[128, 0, 0, 0, 0, 1, 0, 1],
    );
    let s = parse_packet(&p).expect("parses");
    assert_eq!(
        (s.proto, s.icmp_type, s.icmp_code),
        (L4Proto::Icmpv6, Some(128), Some(0))
    );
}

#[test]
fn ipv6_esp_ends_the_walk_as_other() {
    let p = ipv6(50, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, &[0; 16]);
    assert_eq!(parse_packet(&p).expect("parses").proto, L4Proto::Other(50));
}

#[test]
fn truncated_headers_are_rejected() {
    let v4 = ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &tcp_syn(1, 2));
    for len in [0, 1, 19] {
        assert_eq!(parse_packet(&v4[..len]), None, "IPv4 cut at {len} bytes");
    }
    assert_eq!(
        parse_packet(&v4[..22]),
        None,
        "TCP header cut before the ports"
    );
    let v6 = ipv6(6, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST, &tcp_syn(1, 2));
    for len in [39, 41] {
        assert_eq!(parse_packet(&v6[..len]), None, "IPv6 cut at {len} bytes");
    }
    let overlong_ihl = [0x4f; 40];
    assert_eq!(parse_packet(&overlong_ihl), None, "IHL past the end");
}

#[test]
fn garbage_is_rejected() {
    assert_eq!(parse_packet(&[0x00; 64]), None, "version 0");
    assert_eq!(parse_packet(&[0xff; 64]), None, "version 15");
    assert_eq!(
        parse_packet(&[0x41; 64]),
        None,
        "IHL 1 is below the minimum"
    );
}

#[test]
fn protocol_numbers_round_trip() {
    for n in 0..=u8::MAX {
        assert_eq!(L4Proto::from_number(n).number(), n);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        let _ = parse_packet(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_an_ip_version_never_panic(
        v6 in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut bytes = vec![if v6 { 0x60 } else { 0x45 }];
        bytes.extend(tail);
        let _ = parse_packet(&bytes);
    }
}
