//! The table's guard: notices when anyone else changes or removes `inet zonewarden`
//! (or `bridge zonewarden`) and has the registry restore it, within a second.
//!
//! `nft flush ruleset` (what `systemctl restart nftables` runs with Debian's default
//! `/etc/nftables.conf`), a firewalld reload or a hand-made `nft delete rule` would
//! otherwise open every zone silently. The kernel tells every listener of the nftables
//! netlink group about each committed change: messages naming the table and chain,
//! then one `NEWGEN` message naming the process that committed. A transaction that
//! touched our tables and was committed by no thread of the enforcer and no `nft`
//! process it started is foreign. A cheap probe every second (does the table exist?)
//! covers notifications the socket could not queue.
//!
//! The thread only watches; [`guard_forever`] restores through the registry (the same
//! reconcile as a start, with the chains the foreign change touched rewritten),
//! records a `table-restored` audit entry, counts it, and keeps the readiness that
//! `zwctl status` and `/metrics` show. [`guard_groups_forever`] does the same when a
//! routed pod's host interface lost its zone id as its interface group (what the
//! table dispatches on), told by [`crate::hostlink::watch_links`].

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::audit::{Action, AuditLog, AuditRecord};
use crate::nft::TABLE;
use crate::readiness::Readiness;
use crate::registry::{EndpointRegistry, now_unix_ms};

/// `NFNLGRP_NFTABLES` as a bind mask.
const NFTABLES_GROUP: u32 = 1 << (7 - 1);
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_INET: u8 = 1;
const NFPROTO_BRIDGE: u8 = 7;
/// How often the table's existence is probed between notifications.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How many `nft` processes of ours are remembered (their changes are ours).
const OWN_PROCESSES: usize = 256;

static OWN: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());

/// Remembers an `nft` process the enforcer started: the changes it commits are ours.
pub fn note_own_process(pid: u32) {
    let mut own = OWN.lock().unwrap_or_else(PoisonError::into_inner);
    if own.len() == OWN_PROCESSES {
        own.pop_front();
    }
    own.push_back(pid);
}

/// Whether `pid` (a thread id, as the kernel reports it) is a thread of this process
/// or an `nft` process it started.
fn is_own(pid: u32) -> bool {
    if std::path::Path::new(&format!("/proc/self/task/{pid}")).exists() {
        return true;
    }
    OWN.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&pid)
}

/// A committed change of our tables by someone else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignChange {
    /// The committing process, as the kernel names it (0 and empty when unknown).
    pub pid: u32,
    pub process: String,
    /// Chains whose rules were added, replaced or deleted, or which were created or
    /// deleted.
    pub chains: BTreeSet<String>,
    /// The table itself was deleted.
    pub table_deleted: bool,
}

/// What the watching thread reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardEvent {
    Foreign(ForeignChange),
    /// The table is gone and no notification said so (it was missed).
    Missing,
    /// Notifications were lost (the socket overran): the table may differ.
    Unknown,
}

/// The messages of the transaction being read, until its `NEWGEN`.
#[derive(Debug, Default)]
pub struct Transaction {
    touched: bool,
    change: ForeignChange,
}

/// One netlink attribute: (type without flags, payload).
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let header = bytes.get(..4)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        if len < 4 {
            return None;
        }
        let kind = u16::from_ne_bytes([header[2], header[3]]) & 0x3fff;
        let payload = bytes.get(4..len)?;
        bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, payload))
    })
}

fn string(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

fn be32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

/// Reads one datagram of nftables notifications; returns every transaction that
/// touched our tables and was committed by someone else, whatever its message
/// order. Malformed messages are skipped (never a panic).
pub fn parse_notifications(datagram: &[u8], txn: &mut Transaction) -> Vec<ForeignChange> {
    let mut foreign = Vec::new();
    let mut rest = datagram;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < 16 || len > rest.len() {
            break;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let message = &rest[16..len];
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        if kind >> 8 != NFNL_SUBSYS_NFTABLES || message.len() < 4 {
            continue;
        }
        let family = message[0];
        let attrs = &message[4..];
        match kind & 0xff {
            // NFT_MSG_NEWGEN: the end of a transaction, and who committed it.
            15 => {
                let mut pid = 0;
                let mut process = String::new();
                for (attr, payload) in attributes(attrs) {
                    match attr {
                        2 => pid = be32(payload).unwrap_or(0),
                        3 => process = string(payload),
                        _ => {}
                    }
                }
                let done = std::mem::take(txn);
                if done.touched && !is_own(pid) {
                    foreign.push(ForeignChange {
                        pid,
                        process,
                        ..done.change
                    });
                }
            }
            msg => {
                if family != NFPROTO_INET && family != NFPROTO_BRIDGE {
                    continue;
                }
                let mut table = None;
                let mut chain = None;
                for (attr, payload) in attributes(attrs) {
                    match (msg, attr) {
                        (_, 1) => table = Some(string(payload)),
                        // NFTA_RULE_CHAIN of NEWRULE, DELRULE, DESTROYRULE.
                        (6 | 8 | 28, 2) => chain = Some(string(payload)),
                        // NFTA_CHAIN_NAME of NEWCHAIN, DELCHAIN, DESTROYCHAIN.
                        (3 | 5 | 27, 3) => chain = Some(string(payload)),
                        _ => {}
                    }
                }
                if table.as_deref() != Some(TABLE) {
                    continue;
                }
                txn.touched = true;
                txn.change.chains.extend(chain);
                // NFT_MSG_DELTABLE, NFT_MSG_DESTROYTABLE.
                if matches!(msg, 2 | 26) {
                    txn.change.table_deleted = true;
                }
            }
        }
    }
    foreign
}

/// The subscription to nftables notifications, and a socket for the probe.
struct Watcher {
    notifications: Socket,
    probe: Socket,
    buffer: Vec<u8>,
    txn: Transaction,
}

impl Watcher {
    fn open() -> io::Result<Self> {
        let mut notifications = Socket::new(NETLINK_NETFILTER)?;
        let mut addr = netlink_sys::SocketAddr::new(0, NFTABLES_GROUP);
        notifications.bind(&addr)?;
        notifications.get_address(&mut addr)?;
        let timeout = TimeVal::milliseconds(PROBE_EVERY.as_millis() as i64);
        setsockopt(&notifications, sockopt::ReceiveTimeout, &timeout)?;
        // Large transactions (a restore) notify thousands of messages at once.
        let _ = setsockopt(&notifications, sockopt::RcvBufForce, &(8 << 20));
        let mut probe = Socket::new(NETLINK_NETFILTER)?;
        probe.bind_auto()?;
        setsockopt(&probe, sockopt::ReceiveTimeout, &timeout)?;
        Ok(Self {
            notifications,
            probe,
            buffer: vec![0; 256 << 10],
            txn: Transaction::default(),
        })
    }

    /// Waits for notifications (or the probe period) and says what happened.
    fn next(&mut self) -> Vec<GuardEvent> {
        match self.notifications.recv(&mut &mut self.buffer[..], 0) {
            Ok(len) => {
                parse_notifications(&self.buffer[..len.min(self.buffer.len())], &mut self.txn)
                    .into_iter()
                    .map(GuardEvent::Foreign)
                    .collect()
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                match self.table_exists() {
                    Ok(false) => vec![GuardEvent::Missing],
                    Ok(true) => Vec::new(),
                    Err(err) => {
                        debug!(%err, "cannot probe the table");
                        Vec::new()
                    }
                }
            }
            Err(err) => {
                warn!(%err, "nftables notifications were lost; checking the table");
                self.txn = Transaction::default();
                vec![GuardEvent::Unknown]
            }
        }
    }

    /// `NFT_MSG_GETTABLE` of `inet zonewarden`: one message, whatever the table holds.
    fn table_exists(&mut self) -> io::Result<bool> {
        let mut name = TABLE.as_bytes().to_vec();
        name.push(0);
        let attr_len = 4 + name.len();
        let mut message = Vec::with_capacity(16 + 4 + attr_len.next_multiple_of(4));
        let total = 16 + 4 + attr_len.next_multiple_of(4);
        message.extend_from_slice(&(total as u32).to_ne_bytes());
        message.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | 1).to_ne_bytes());
        message.extend_from_slice(&(0x01u16 | 0x04).to_ne_bytes()); // REQUEST | ACK
        message.extend_from_slice(&1u32.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
        message.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        message.extend_from_slice(&1u16.to_ne_bytes());
        message.extend_from_slice(&name);
        message.resize(total, 0);
        self.probe.send(&message, 0)?;
        let mut answer = vec![0u8; 8192];
        let len = self.probe.recv(&mut &mut answer[..], 0)?;
        let mut rest = &answer[..len.min(answer.len())];
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < 16 || len > rest.len() {
                break;
            }
            if kind == 2 && len >= 20 {
                // NLMSG_ERROR: 0 is the acknowledgement after the table, else errno.
                let errno = i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]]);
                return match errno {
                    0 => Ok(true),
                    e if e == -libc_enoent() => Ok(false),
                    e => Err(io::Error::from_raw_os_error(-e)),
                };
            }
            if kind == (NFNL_SUBSYS_NFTABLES << 8) {
                // NFT_MSG_NEWTABLE: the table is there (its acknowledgement follows).
                return Ok(true);
            }
            rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        }
        Ok(true)
    }
}

fn libc_enoent() -> i32 {
    nix::errno::Errno::ENOENT as i32
}

/// Starts the thread that watches the table (in the caller's network namespace).
pub fn watch() -> io::Result<mpsc::Receiver<GuardEvent>> {
    let mut watcher = Watcher::open()?;
    let (tx, rx) = mpsc::channel(64);
    std::thread::Builder::new()
        .name("zw-table-guard".to_owned())
        .spawn(move || {
            loop {
                for event in watcher.next() {
                    if tx.blocking_send(event).is_err() {
                        return;
                    }
                }
            }
        })?;
    Ok(rx)
}

/// Who changed the table, for logs and the audit entry.
fn culprit(events: &[GuardEvent]) -> String {
    let named: BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            GuardEvent::Foreign(c) if c.pid != 0 => Some(format!("pid {} ({})", c.pid, c.process)),
            _ => None,
        })
        .collect();
    if named.is_empty() {
        "an unknown process".to_owned()
    } else {
        named.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// Restores the table after each foreign change (a burst is one restore), keeps the
/// readiness, and records every restore in the audit log.
pub async fn guard_forever(
    registry: EndpointRegistry,
    mut events: mpsc::Receiver<GuardEvent>,
    readiness: Arc<Readiness>,
    audit: AuditLog,
) {
    while let Some(first) = events.recv().await {
        let mut burst = vec![first];
        // The rest of the burst (a flush is many transactions in a row).
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(more) = events.try_recv() {
            burst.push(more);
        }
        let by = culprit(&burst);
        let stale: BTreeSet<String> = burst
            .iter()
            .flat_map(|e| match e {
                GuardEvent::Foreign(c) => c.chains.iter().cloned().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        let deleted = burst.iter().any(|e| match e {
            GuardEvent::Foreign(c) => c.table_deleted,
            GuardEvent::Missing => true,
            GuardEvent::Unknown => false,
        });
        let what = if deleted {
            "deleted the table".to_owned()
        } else if stale.is_empty() {
            "changed the table's elements or sets".to_owned()
        } else {
            format!(
                "changed the chains {}",
                stale.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        restore(
            &registry,
            &readiness,
            &audit,
            stale,
            &format!("{by} {what}"),
        )
        .await;
    }
}

/// Restores the table (with the chains in `stale` rewritten), retrying every second
/// until it is, and records the restore in the audit log.
async fn restore(
    registry: &EndpointRegistry,
    readiness: &Readiness,
    audit: &AuditLog,
    stale: BTreeSet<String>,
    what: &str,
) {
    warn!(%what, "table inet zonewarden was changed by someone else; restoring it");
    readiness.table_tampered(what);
    loop {
        match registry.restore_table(stale.clone()).await {
            Ok(changed) => {
                info!(changed, "table inet zonewarden restored");
                readiness.table_restored(what);
                let record = AuditRecord {
                    at_unix_ms: now_unix_ms(),
                    who: crate::audit::log::ENFORCER.to_owned(),
                    action: Action::TableRestored,
                    zone: None,
                    target: Some(format!("table inet {TABLE}")),
                    detail: format!(
                        "{what}; restored ({changed} endpoint addresses and zones re-added)"
                    ),
                    version_before: None,
                    version_after: None,
                    reason: None,
                };
                if let Err(err) = audit.append_blocking(record).await {
                    error!(%err, "cannot record the table's restore in the audit log");
                }
                return;
            }
            Err(err) => {
                error!(%err, "cannot restore table inet zonewarden; retrying in a second");
                readiness.table_broken(&err.to_string());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Restores the table whenever a routed pod's host interface lost its zone id as its
/// interface group (another tool on the node set it): its pod would stay closed,
/// its packets dropped as `spoof`, until the next start. Each link change (a burst is
/// one) is checked against the interfaces' current groups, so the changes of an ADD
/// (a new veth has group 0 until its endpoint is registered) restore nothing.
pub async fn guard_groups_forever(
    registry: EndpointRegistry,
    mut changes: mpsc::Receiver<()>,
    readiness: Arc<Readiness>,
    audit: AuditLog,
) {
    while changes.recv().await.is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        while changes.try_recv().is_ok() {}
        if registry.interface_groups_hold().await {
            continue;
        }
        let what = "someone changed the interface group of a pod's host interface";
        restore(&registry, &readiness, &audit, BTreeSet::new(), what).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        for (attr, payload) in attrs {
            let len = 4 + payload.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&attr.to_ne_bytes());
            body.extend_from_slice(payload);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    fn newgen(pid: u32, name: &str) -> Vec<u8> {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        message(
            15,
            0,
            &[(1, &7u32.to_be_bytes()), (2, &pid.to_be_bytes()), (3, &n)],
        )
    }

    #[test]
    fn a_foreign_rule_deletion_names_its_chain_and_process() {
        let mut d = message(8, NFPROTO_INET, &[(1, b"zonewarden\0"), (2, b"forward\0")]);
        d.extend(newgen(4_000_000, "nft"));
        let found = parse_notifications(&d, &mut Transaction::default());
        assert_eq!(
            found,
            [ForeignChange {
                pid: 4_000_000,
                process: "nft".into(),
                chains: ["forward".to_owned()].into(),
                table_deleted: false,
            }]
        );
    }

    #[test]
    fn a_deleted_table_other_tables_and_our_own_changes() {
        let mut txn = Transaction::default();
        let mut d = message(2, NFPROTO_INET, &[(1, b"zonewarden\0")]);
        d.extend(newgen(4_000_001, "firewalld"));
        let found = parse_notifications(&d, &mut txn);
        assert!(found[0].table_deleted, "{found:?}");

        let mut d = message(8, NFPROTO_INET, &[(1, b"filter\0"), (2, b"input\0")]);
        d.extend(newgen(4_000_002, "nft"));
        assert!(
            parse_notifications(&d, &mut txn).is_empty(),
            "another table"
        );

        let mut d = message(
            12,
            NFPROTO_INET,
            &[(1, b"zonewarden\0"), (2, b"local_v4\0")],
        );
        d.extend(newgen(std::process::id(), "zonewarden-enforcer"));
        assert!(
            parse_notifications(&d, &mut txn).is_empty(),
            "our own change"
        );

        note_own_process(4_000_003);
        let mut d = message(6, NFPROTO_INET, &[(1, b"zonewarden\0"), (2, b"zout_1\0")]);
        d.extend(newgen(4_000_003, "nft"));
        assert!(
            parse_notifications(&d, &mut txn).is_empty(),
            "our nft process"
        );
    }

    #[test]
    fn a_transaction_split_over_datagrams_is_read_whole() {
        let mut txn = Transaction::default();
        let first = message(
            5,
            NFPROTO_BRIDGE,
            &[(1, b"zonewarden\0"), (3, b"prerouting\0")],
        );
        assert!(parse_notifications(&first, &mut txn).is_empty());
        let found = parse_notifications(&newgen(4_000_004, "nft"), &mut txn);
        assert_eq!(found[0].chains, ["prerouting".to_owned()].into());
    }

    #[test]
    fn malformed_datagrams_are_skipped() {
        let mut txn = Transaction::default();
        for bytes in [
            vec![],
            vec![0xff; 3],
            vec![0xff; 64],
            {
                let mut m = message(8, NFPROTO_INET, &[(1, b"zonewarden\0")]);
                m.truncate(m.len() - 3);
                m
            },
            {
                let mut m = message(8, NFPROTO_INET, &[]);
                m.extend_from_slice(&[200, 0, 1, 0]);
                m
            },
        ] {
            let _ = parse_notifications(&bytes, &mut txn);
        }
    }
}
