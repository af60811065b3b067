//! Root tests: a real NFLOG group in a fresh network namespace, fed by a private
//! nftables table that logs loopback traffic made inside that namespace.

use std::net::{IpAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::test_netns::{TestNetns, root_or_skip};
use super::*;

const GROUP: u16 = 7;
const RULESET: &str = r#"table inet zwntest {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr 127.0.0.2 udp dport 5353 log group 7 prefix "zw test"
        ip daddr 127.0.0.2 tcp dport 9 log group 7 prefix "zw syn"
        ip6 daddr ::1 udp dport 5353 log group 7 prefix "zw v6"
    }
}
"#;
const DEADLINE: Duration = Duration::from_secs(10);

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const TARGET: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

#[test]
fn spawn_forwards_a_logged_udp_datagram() {
    if !root_or_skip() {
        return;
    }
    let ns = TestNetns::new(RULESET);
    let (tx, mut rx) = mpsc::channel(16);
    let handle = ns
        .run_inside(move || spawn(GROUP, tx, Default::default()))
        .expect("bind nflog group 7 in the test netns");
    let src_port = ns.run_inside(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        socket
            .send_to(b"zonewarden", "127.0.0.2:5353")
            .expect("send to 127.0.0.2:5353");
        socket.local_addr().expect("local address").port()
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let event = runtime
        .block_on(async { tokio::time::timeout(DEADLINE, rx.recv()).await })
        .expect("a logged UDP datagram within the deadline")
        .expect("the nflog thread keeps the channel open");
    let expected = LogEvent {
        prefix: "zw test".into(),
        src: LOCALHOST,
        dst: TARGET,
        proto: L4Proto::Udp,
        src_port,
        dst_port: 5353,
        icmp_type: None,
        icmp_code: None,
        in_ifindex: None,
        out_ifindex: Some(1),
    };
    assert_eq!(
        event, expected,
        "the event of the datagram to 127.0.0.2:5353"
    );

    drop(rx);
    let deadline = Instant::now() + DEADLINE;
    while !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the nflog thread did not stop after the channel closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn listener_reports_the_syn_of_a_refused_connection() {
    if !root_or_skip() {
        return;
    }
    let ns = TestNetns::new(RULESET);
    let mut listener = ns
        .run_inside(|| NflogListener::bind(GROUP))
        .expect("bind nflog group 7");
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");
    let refused = ns
        .run_inside(|| TcpStream::connect_timeout(&"127.0.0.2:9".parse().expect("addr"), DEADLINE));
    assert!(
        refused.is_err(),
        "nothing listens on 127.0.0.2:9: {refused:?}"
    );

    let syn = next_event_with_prefix(&mut listener, "zw syn");
    assert_eq!(
        (syn.src, syn.dst, syn.proto),
        (LOCALHOST, TARGET, L4Proto::Tcp)
    );
    assert_eq!(syn.dst_port, 9);
    assert_ne!(syn.src_port, 0, "an ephemeral source port");
    assert_eq!(listener.dropped(), 0, "nothing lost in an idle namespace");
}

#[test]
fn listener_reads_an_ipv6_datagram() {
    if !root_or_skip() {
        return;
    }
    let ns = TestNetns::new(RULESET);
    let mut listener = ns
        .run_inside(|| NflogListener::bind(GROUP))
        .expect("bind nflog group 7");
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");
    let src_port = ns.run_inside(|| {
        let socket = UdpSocket::bind("[::1]:0").expect("bind a UDP socket on ::1");
        socket
            .send_to(b"zonewarden", "[::1]:5353")
            .expect("send to [::1]:5353");
        socket.local_addr().expect("local address").port()
    });
    let event = next_event_with_prefix(&mut listener, "zw v6");
    let v6_localhost = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    assert_eq!(
        (event.src, event.dst, event.proto),
        (v6_localhost, v6_localhost, L4Proto::Udp)
    );
    assert_eq!((event.src_port, event.dst_port), (src_port, 5353));
}

/// Receives until an event with `prefix` arrives; panics after [`DEADLINE`].
fn next_event_with_prefix(listener: &mut NflogListener, prefix: &str) -> LogEvent {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let events = listener.recv().expect("receive nflog events");
        if let Some(event) = events.into_iter().find(|e| e.prefix == prefix) {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no event with prefix {prefix:?} within {DEADLINE:?}"
        );
    }
}

#[test]
fn a_second_bind_of_the_same_group_is_refused() {
    if !root_or_skip() {
        return;
    }
    let ns = TestNetns::new(RULESET);
    let results = ns.run_inside(|| (NflogListener::bind(GROUP), NflogListener::bind(GROUP)));
    results.0.expect("the first bind succeeds");
    match results.1 {
        Err(NflogError::GroupUnavailable { group }) => assert_eq!(group, GROUP),
        other => panic!(
            "expected GroupUnavailable for the second bind, got {:?}",
            other.map(|_| ())
        ),
    }
}
