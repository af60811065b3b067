//! The fuzz targets of what the enforcer reads from outside, shared by `fuzz/`
//! (cargo-fuzz) and the corpus replay of the normal test suite: nft's listings of the
//! table, the NFLOG socket's datagrams and the packets in them, connection tracking's
//! events, and the audit log.
//! Each takes arbitrary bytes and must never panic: the input is refused with an
//! error (or skipped and counted), and the enforcer goes on.

use crate::audit::chain;
use crate::learning::parse_prefix;
use crate::nflog::drops::DropCounter;
use crate::nflog::event::decode_datagram;
use crate::nflog::parse_packet;
use crate::nft::ruleset::read::read_parsed;
use crate::nft::ruleset::{Options, expr, listing, read_listing, read_listing_for};

pub use zonewarden_profiles::fuzzing::Target;

pub const TARGETS: [Target; 5] = [
    ("nft_listing", nft_listing),
    ("nflog_datagram", nflog_datagram),
    ("conntrack_events", conntrack_events),
    ("nflog_packet", nflog_packet),
    ("audit_verify", audit_verify),
];

/// `nft -j list table` output, as the enforcer reads it (streamed, seen sets'
/// elements skipped) and as a whole JSON value; both into the kernel view, with
/// interface groups for the host interfaces of the corpus (and one of group 0).
pub fn nft_listing(data: &[u8]) {
    let links: crate::nft::ruleset::read::LinkGroups = [
        ("zw1".to_owned(), 1),
        ("zw2".to_owned(), 2),
        ("zw0".to_owned(), 0),
    ]
    .into();
    if let Ok(parsed) = listing::parse_listing(data) {
        let _ = read_parsed(&parsed, &Options::default(), &links);
        let whole = expr::transaction(parsed.items);
        let _ = read_listing(&whole, &links);
        let _ = read_listing_for(&whole, &Options::default(), &links);
    }
    if let Ok(value) = serde_json::from_slice(data) {
        let _ = read_listing(&value, &links);
    }
}

/// One datagram of connection tracking's new-connection events (`flows watch`):
/// each message a connection or skipped.
pub fn conntrack_events(data: &[u8]) {
    let connections = crate::flows::ctnetlink::parse_datagram(data);
    // Every connection is at least one whole message.
    assert!(connections.len() <= data.len() / 20);
}

/// One datagram of the NFLOG socket: its messages, the events in them and their log
/// prefixes. Every event is either decoded or counted.
pub fn nflog_datagram(data: &[u8]) {
    let mut drops = DropCounter::default();
    let mut events = Vec::new();
    decode_datagram(data, &mut drops, &mut events);
    for event in &events {
        let _ = parse_prefix(&event.prefix);
    }
    let _ = drops.dropped();
}

/// The IP packet of one NFLOG event.
pub fn nflog_packet(data: &[u8]) {
    if let Some(summary) = parse_packet(data) {
        assert_eq!(
            summary.src.is_ipv4(),
            summary.dst.is_ipv4(),
            "one packet, one family: {summary:?}"
        );
    }
}

/// `audit.log`, as `zwctl audit verify` and the appender read it. An intact log has
/// a sound tail after its head, and verifies against the head it names.
pub fn audit_verify(data: &[u8]) {
    let verification = chain::verify(data, None);
    let tail = chain::tail(data);
    let head = chain::last_head(data);
    let _ = chain::entries(data);
    if let Some((seq, line_hash)) = &head {
        assert!(
            chain::holds(data, *seq, line_hash),
            "the head is in the log"
        );
    }
    if !verification.intact() {
        return;
    }
    match (&verification.head, &tail) {
        (None, chain::Tail::Empty) => {}
        (Some((seq, hash)), chain::Tail::Sound { next_seq, .. }) => {
            assert_eq!(*next_seq, seq + 1, "an intact log continues after its head");
            let again = chain::verify(data, Some((*seq, hash)));
            assert!(again.intact(), "against its own head: {:?}", again.problems);
        }
        (head, tail) => panic!("an intact log with head {head:?} has the tail {tail:?}"),
    }
}
