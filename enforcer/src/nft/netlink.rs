//! Set-element changes as one netlink batch: `NFT_MSG_NEWSETELEM` and
//! `NFT_MSG_DELSETELEM` messages between `NFNL_MSG_BATCH_BEGIN` and `_END`, which the
//! kernel applies as one transaction (all or nothing), like `nft -f`.
//!
//! This is the path of every endpoint and approval on a running node: about as many
//! microseconds as an `nft` process costs milliseconds, and it does not grow with the
//! size of the table (nft reads the table's sets before each transaction). Structure
//! (tables, chains, rules, set definitions) and interval sets stay with `nft -j -f -`.
//!
//! Keys are laid out as the kernel stores them: addresses and ports in network byte
//! order, interface names as 16 NUL-padded bytes, `mark` values in host byte order;
//! each field of a concatenation padded to 4 bytes. Comments are element user data
//! in libnftnl's TLV format, so `nft list` shows them.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use netlink_packet_core::{
    Emitable, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use super::objects::{NFPROTO_INET, NFTA_LIST_ELEM, NLA_F_NESTED, ObjectMessage};
use super::ruleset::elements::{Data, Elem, Part, SetChange, Verb};
use super::{NftError, TABLE};

/// `NFNL_SUBSYS_NFTABLES`: the subsystem a batch is addressed to.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `IFNAMSIZ`: an `ifname` key field.
const IFNAME_BYTES: usize = 16;
/// libnftnl's user-data type of an element comment.
const UDATA_SET_ELEM_COMMENT: u8 = 0;
/// The send buffer we ask for: one batch must fit in one datagram.
const SEND_BUFFER_BYTES: usize = 4 << 20;
/// The receive buffer we ask for (answers to refused changes; see [`encode_items`]).
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;
/// Batches larger than this go through `nft` instead (a full resync, not an update).
pub const MAX_BATCH_BYTES: usize = 2 << 20;
/// How long we wait for the kernel's answers (it answers before `send` returns; this
/// only bounds a kernel that never answers).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// `NLMSG_ERROR`: an acknowledgement (error 0) or an error.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;
/// nf_tables message types and attributes of the seal's requests
/// (linux/netfilter/nf_tables.h).
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
/// `NFNL_MSG_BATCH_BEGIN` and its `NFNL_BATCH_GENID` attribute.
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_BATCH_GENID: u16 = 1;

/// A netfilter netlink socket of the network namespace it was opened in, for element
/// batches. One batch at a time (the socket is behind a lock).
pub struct ElementSocket {
    inner: Mutex<Inner>,
}

struct Inner {
    socket: Socket,
    seq: u32,
    answer: Vec<u8>,
}

impl std::fmt::Debug for ElementSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ElementSocket")
    }
}

impl ElementSocket {
    /// Opens the socket in the caller's network namespace (needs CAP_NET_ADMIN to
    /// change anything, like `nft`).
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.set_cap_ack(true)?;
        if setsockopt(&socket, sockopt::SndBufForce, &SEND_BUFFER_BYTES).is_err() {
            setsockopt(&socket, sockopt::SndBuf, &SEND_BUFFER_BYTES)?;
        }
        // Room for the kernel's answers to a batch of many refused changes.
        if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES).is_err() {
            setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_BUFFER_BYTES)?;
        }
        let timeout = TimeVal::milliseconds(ANSWER_TIMEOUT.as_millis() as i64);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
        Ok(Self {
            inner: Mutex::new(Inner {
                socket,
                seq: 0,
                answer: vec![0; 64 << 10],
            }),
        })
    }

    /// Applies `changes` to the table `inet zonewarden` in one transaction. Nothing
    /// changes when the kernel refuses any of them; the error names the first refused
    /// change. `Ok(false)`: the batch is too large for one datagram (use `nft`).
    pub fn commit(&self, changes: &[SetChange]) -> Result<bool, NftError> {
        let items: Vec<BatchItem<'_>> = changes.iter().map(BatchItem::Elements).collect();
        self.commit_items(&items)
    }

    /// Applies `items` (element changes and zone objects, in order) in one
    /// transaction, like [`Self::commit`].
    pub fn commit_items(&self, items: &[BatchItem<'_>]) -> Result<bool, NftError> {
        self.commit_with(items, None)
    }

    fn commit_with(
        &self,
        items: &[BatchItem<'_>],
        generation: Option<u32>,
    ) -> Result<bool, NftError> {
        if items.is_empty() {
            return Ok(true);
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let first_seq = inner.seq.wrapping_add(1);
        let Some(mut batch) = encode_items(items, first_seq) else {
            return Ok(false);
        };
        if let Some(generation) = generation {
            let begin_len = u32::from_ne_bytes(batch.bytes[0..4].try_into().expect("4 bytes"));
            let rest = batch
                .bytes
                .split_off((begin_len as usize).next_multiple_of(4));
            batch.bytes = [begin_at(first_seq, generation), rest].concat();
        }
        // begin + the change messages + end
        let messages = batch.changes_of.len();
        let last_seq = first_seq.wrapping_add(messages as u32 + 1);
        inner.seq = last_seq;
        let action = || "change the table inet zonewarden".to_owned();
        inner
            .socket
            .send(&batch.bytes, 0)
            .map_err(|source| NftError::Kernel {
                action: action(),
                source,
            })?;
        let first_change = first_seq.wrapping_add(1);
        let last_change = first_seq.wrapping_add(messages as u32);
        let mut answered = false;
        let mut refused: Option<(usize, i32)> = None;
        // The kernel ran the batch inside `send`: its answers are queued already, or
        // dropped when there were more than the receive buffer holds (the socket then
        // reports ENOBUFS once, before the answers it kept).
        let mut overflowed = false;
        while !answered {
            let Inner { socket, answer, .. } = &mut *inner;
            let flags = if overflowed {
                nix::libc::MSG_DONTWAIT
            } else {
                0
            };
            let len = match socket.recv(&mut &mut answer[..], flags) {
                Ok(len) => len,
                Err(err) if err.raw_os_error() == Some(nix::libc::ENOBUFS) => {
                    overflowed = true;
                    continue;
                }
                // Every kept answer is read. Only refusals outnumber the buffer (one
                // answer per refused change), and the kernel keeps the first ones: the
                // first refusal is known, and it refused the whole batch.
                Err(err) if overflowed && err.kind() == io::ErrorKind::WouldBlock => {
                    if refused.is_some() {
                        break;
                    }
                    return Err(NftError::Kernel {
                        action: format!(
                            "{} (the kernel's answers overflowed the socket: whether the batch was applied is unknown)",
                            action()
                        ),
                        source: io::Error::from_raw_os_error(nix::libc::ENOBUFS),
                    });
                }
                Err(source) => {
                    return Err(NftError::Kernel {
                        action: format!("{} (waiting for the kernel's answer)", action()),
                        source,
                    });
                }
            };
            for (seq, errno) in acknowledgements(&answer[..len.min(answer.len())]) {
                if errno != 0 && (seq == first_seq || seq == last_seq) {
                    // The batch itself was refused (no permission, no nf_tables).
                    return Err(NftError::Kernel {
                        action: action(),
                        source: io::Error::from_raw_os_error(errno.abs()),
                    });
                }
                let index = seq.wrapping_sub(first_change) as usize;
                let Some(&change) = batch.changes_of.get(index) else {
                    continue;
                };
                answered |= seq == last_change;
                if errno != 0 && refused.is_none_or(|(i, _)| change < i) {
                    refused = Some((change, errno));
                }
            }
        }
        match refused {
            None => Ok(true),
            Some((index, errno)) => Err(NftError::Kernel {
                action: format!(
                    "{} in the table inet zonewarden (the whole batch of {} change(s) was not applied)",
                    items[index].describe(),
                    items.len()
                ),
                source: io::Error::from_raw_os_error(errno.abs()),
            }),
        }
    }
}

impl ElementSocket {
    /// The nftables generation of the socket's network namespace: the kernel counts
    /// every committed transaction (`NFT_MSG_GETGEN`).
    pub fn generation(&self) -> Result<u32, NftError> {
        let action = "read the nftables generation";
        let answers = self.request(NFT_MSG_GETGEN, 0, 0, &[], action)?;
        answers
            .iter()
            .filter(|(kind, _)| *kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN)
            .find_map(|(_, body)| {
                let value = attribute(body.get(4..)?, NFTA_GEN_ID)?;
                Some(u32::from_be_bytes(value.try_into().ok()?))
            })
            .ok_or_else(|| NftError::Kernel {
                action: action.to_owned(),
                source: io::Error::other("the kernel's answer has no generation"),
            })
    }

    /// The keys of every element of `set` in the table `inet zonewarden`; `None`
    /// when the table or the set does not exist.
    pub fn set_keys(&self, set: &str) -> Result<Option<Vec<Vec<u8>>>, NftError> {
        let action = format!("list the elements of set {set}");
        let mut attrs = Vec::new();
        push_attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &nul_terminated(TABLE));
        push_attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &nul_terminated(set));
        let mut keys = Vec::new();
        let found = self.dump(NFT_MSG_GETSETELEM, NFPROTO_INET, &attrs, &action, |body| {
            let Some(list) = attribute(body, NFTA_SET_ELEM_LIST_ELEMENTS) else {
                return Ok(());
            };
            for (_, element) in attributes(list) {
                if let Some(value) = attribute(element, NFTA_SET_ELEM_KEY)
                    .and_then(|k| attribute(k, NFTA_DATA_VALUE))
                {
                    keys.push(value.to_vec());
                }
            }
            Ok(())
        })?;
        Ok(found.then_some(keys))
    }

    /// Whether `set` of the table `inet zonewarden` holds the element whose key is
    /// `key` (as [`key_bytes`] encodes it): one lookup in the kernel, whatever the
    /// size of the set or the table, where `nft get element` reads the whole table
    /// first. `Ok(false)` also when the set or the table does not exist. Interval
    /// sets are not looked up this way.
    pub fn has_key(&self, set: &str, key: &[u8]) -> Result<bool, NftError> {
        let action = format!("look up an element of set {set}");
        let mut value = Vec::new();
        push_attr(&mut value, NFTA_DATA_VALUE, key);
        let mut element = Vec::new();
        push_attr(&mut element, NLA_F_NESTED | NFTA_SET_ELEM_KEY, &value);
        let mut elements = Vec::new();
        push_attr(&mut elements, NLA_F_NESTED | NFTA_LIST_ELEM, &element);
        let mut attrs = Vec::new();
        push_attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &nul_terminated(TABLE));
        push_attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &nul_terminated(set));
        push_attr(
            &mut attrs,
            NLA_F_NESTED | NFTA_SET_ELEM_LIST_ELEMENTS,
            &elements,
        );
        match self.request(NFT_MSG_GETSETELEM, NFPROTO_INET, 0, &attrs, &action) {
            Ok(answers) => Ok(answers
                .iter()
                .any(|(kind, _)| *kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM)),
            Err(NftError::Kernel { source, .. })
                if source.raw_os_error() == Some(nix::libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Applies `items` like [`Self::commit_items`], but only if the namespace's
    /// nftables generation is still `generation` (the kernel refuses the batch
    /// otherwise): the generation after it is then `generation + 1`.
    pub fn commit_items_at(
        &self,
        items: &[BatchItem<'_>],
        generation: u32,
    ) -> Result<bool, NftError> {
        self.commit_with(items, Some(generation))
    }

    /// Sends one request and collects the messages of its answer (until the end of a
    /// dump, or the answer of a plain request); an error answer is an error.
    fn request(
        &self,
        kind: u16,
        family: u8,
        flags: u16,
        attrs: &[u8],
        action: &str,
    ) -> Result<Vec<(u16, Vec<u8>)>, NftError> {
        let mut out = Vec::new();
        self.request_each(kind, family, flags, attrs, action, |kind, body| {
            out.push((kind, body.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Dumps the objects that a `kind` request (`NFT_MSG_GET...`) with `attrs` names
    /// in `family`: `each` gets the attributes of every answer (after its nfgenmsg
    /// header) as it arrives, so a dump of a large set is never held whole.
    /// `Ok(false)` when the kernel answers that the table or set does not exist.
    pub(super) fn dump(
        &self,
        kind: u16,
        family: u8,
        attrs: &[u8],
        action: &str,
        mut each: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<bool, NftError> {
        let answered = (NFNL_SUBSYS_NFTABLES << 8) | (kind - 1);
        let result = self.request_each(kind, family, NLM_F_DUMP, attrs, action, |k, body| {
            if k != answered {
                return Ok(());
            }
            each(body.get(4..).unwrap_or_default()).map_err(|detail| NftError::Parse {
                action: action.to_owned(),
                detail,
            })
        });
        match result {
            Ok(()) => Ok(true),
            Err(NftError::Kernel { source, .. })
                if source.raw_os_error() == Some(nix::libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }

    /// Sends one request and hands every message of its answer to `each` (until the
    /// end of a dump, or the answer of a plain request); an error answer is an error.
    fn request_each(
        &self,
        kind: u16,
        family: u8,
        flags: u16,
        attrs: &[u8],
        action: &str,
        mut each: impl FnMut(u16, &[u8]) -> Result<(), NftError>,
    ) -> Result<(), NftError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.seq = inner.seq.wrapping_add(1);
        let seq = inner.seq;
        let len = 16 + 4 + attrs.len();
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(&(len as u32).to_ne_bytes());
        message.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
        message.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        message.extend_from_slice(&seq.to_ne_bytes());
        message.extend_from_slice(&0u32.to_ne_bytes());
        message.extend_from_slice(&[family, 0, 0, 0]);
        message.extend_from_slice(attrs);
        let kernel = |source| NftError::Kernel {
            action: action.to_owned(),
            source,
        };
        inner.socket.send(&message, 0).map_err(kernel)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        // A failed callback ends the call only once the dump is read to its end, so
        // that the next request does not read this one's rest.
        let mut failed = None;
        loop {
            let Inner { socket, answer, .. } = &mut *inner;
            let len = socket.recv(&mut &mut answer[..], 0).map_err(kernel)?;
            for (kind, answered, body) in messages(&answer[..len.min(answer.len())]) {
                if answered != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return failed.map_or(Ok(()), Err),
                    NLMSG_ERROR => {
                        let errno = body
                            .get(0..4)
                            .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                        if errno != 0 {
                            return Err(kernel(io::Error::from_raw_os_error(errno.abs())));
                        }
                        return failed.map_or(Ok(()), Err);
                    }
                    _ => {
                        if failed.is_none()
                            && let Err(err) = each(kind, body)
                        {
                            failed = Some(err);
                        }
                        if !dump {
                            return failed.map_or(Ok(()), Err);
                        }
                    }
                }
            }
        }
    }
}

/// (type, sequence number, body after the netlink header) of every message of one
/// datagram, until one is cut short.
fn messages(mut datagram: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        if datagram.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(datagram[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        let seq = u32::from_ne_bytes(datagram[8..12].try_into().expect("4 bytes"));
        if len < 16 || len > datagram.len() {
            return None;
        }
        let body = &datagram[16..len];
        datagram = &datagram[len.next_multiple_of(4).min(datagram.len())..];
        Some((kind, seq, body))
    })
}

/// The attributes of a block: (type without flags, value).
pub(super) fn attributes(mut block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if block.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([block[0], block[1]]));
        let kind = u16::from_ne_bytes([block[2], block[3]]) & 0x3fff;
        if len < 4 || len > block.len() {
            return None;
        }
        let value = &block[4..len];
        block = &block[len.next_multiple_of(4).min(block.len())..];
        Some((kind, value))
    })
}

pub(super) fn attribute(block: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(block).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

pub(super) fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
}

pub(super) fn nul_terminated(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// The batch-begin message with `NFNL_BATCH_GENID`: the kernel applies the batch
/// only if the namespace's generation is still `generation`.
fn begin_at(seq: u32, generation: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    push_attr(&mut attrs, NFNL_BATCH_GENID, &generation.to_be_bytes());
    let len = 16 + 4 + attrs.len();
    let mut message = Vec::with_capacity(len);
    message.extend_from_slice(&(len as u32).to_ne_bytes());
    message.extend_from_slice(&NFNL_MSG_BATCH_BEGIN.to_ne_bytes());
    message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message.extend_from_slice(&seq.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    // AF_UNSPEC, version 0, the subsystem as resource id (big-endian).
    message.extend_from_slice(&[0, 0]);
    message.extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
    message.extend_from_slice(&attrs);
    message
}

/// (sequence number, errno) of every acknowledgement in one datagram.
fn acknowledgements(mut datagram: &[u8]) -> Vec<(u32, i32)> {
    let mut acks = Vec::new();
    while datagram.len() >= 20 {
        let word = |at: usize| {
            [
                datagram[at],
                datagram[at + 1],
                datagram[at + 2],
                datagram[at + 3],
            ]
        };
        let len = u32::from_ne_bytes(word(0)) as usize;
        let kind = u16::from_ne_bytes([datagram[4], datagram[5]]);
        let seq = u32::from_ne_bytes(word(8));
        if len < 16 || len > datagram.len() {
            break;
        }
        if kind == NLMSG_ERROR && len >= 20 {
            acks.push((seq, i32::from_ne_bytes(word(16))));
        }
        datagram = &datagram[len.next_multiple_of(4).min(datagram.len())..];
    }
    acks
}

/// A batch as one datagram, and for each of its change messages (in order, after the
/// batch-begin message) the index of the [`SetChange`] it belongs to.
#[derive(Debug)]
pub struct EncodedBatch {
    pub bytes: Vec<u8>,
    pub changes_of: Vec<usize>,
}

/// The elements of one message stay under this many bytes of attributes: a netlink
/// attribute's length is 16 bits, so one message cannot hold a set's elements beyond
/// 64 KiB however many there are; a large change goes as several messages of the
/// same batch (still one transaction).
pub const MAX_MESSAGE_ELEMENT_BYTES: usize = 32 << 10;

/// One change of a batch: a set's elements, or a zone's set, chain or rule.
#[derive(Debug)]
pub enum BatchItem<'a> {
    Elements(&'a SetChange),
    Object(ObjectMessage),
}

impl BatchItem<'_> {
    /// What the change does, for an error.
    fn describe(&self) -> String {
        match self {
            Self::Elements(change) => format!(
                "{} {} element(s) of set {}",
                change.verb.as_str(),
                change.elems.len(),
                change.set
            ),
            Self::Object(object) => object.what.clone(),
        }
    }
}

/// A batch of element changes only (see [`encode_items`]).
pub fn encode_batch(changes: &[SetChange], first_seq: u32) -> Option<EncodedBatch> {
    let items: Vec<BatchItem<'_>> = changes.iter().map(BatchItem::Elements).collect();
    encode_items(&items, first_seq)
}

/// The whole batch as one datagram, or `None` when it is larger than
/// [`MAX_BATCH_BYTES`].
pub fn encode_items(items: &[BatchItem<'_>], first_seq: u32) -> Option<EncodedBatch> {
    let mut bytes = Vec::new();
    emit(&mut bytes, control(ControlMessage::BatchBegin), first_seq);
    // Message k of the batch (begin is 0) has sequence number first_seq + k.
    let mut changes_of = Vec::new();
    let mut starts = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item {
            BatchItem::Elements(change) => {
                for message in element_messages(change) {
                    let seq = first_seq.wrapping_add(1 + changes_of.len() as u32);
                    starts.push(bytes.len());
                    emit(&mut bytes, message, seq);
                    changes_of.push(index);
                }
            }
            BatchItem::Object(object) => {
                let seq = first_seq.wrapping_add(1 + changes_of.len() as u32);
                starts.push(bytes.len());
                object_message(&mut bytes, object, seq);
                changes_of.push(index);
            }
        }
        if bytes.len() > MAX_BATCH_BYTES {
            return None;
        }
    }
    // Only the last change asks for an acknowledgement. The kernel answers a refused
    // change whatever its flags, and it answers in the order of the batch once the
    // whole batch is done: the last change's answer comes last. An acknowledgement
    // per change would be thousands of answers for a batch of thousands of small
    // changes (a watch update of a large cluster), more than a socket's receive
    // buffer holds: the kernel drops the overflow (ENOBUFS) and the batch's outcome
    // is lost.
    if let Some((&last, rest)) = starts.split_last() {
        for &start in rest {
            set_ack(&mut bytes[start..], false);
        }
        set_ack(&mut bytes[last..], true);
    }
    let end = first_seq.wrapping_add(1 + changes_of.len() as u32);
    emit(&mut bytes, control(ControlMessage::BatchEnd), end);
    Some(EncodedBatch { bytes, changes_of })
}

/// Sets or clears `NLM_F_ACK` in the netlink header at the start of `message`.
fn set_ack(message: &mut [u8], ack: bool) {
    let mut flags = u16::from_ne_bytes([message[6], message[7]]);
    if ack {
        flags |= NLM_F_ACK;
    } else {
        flags &= !NLM_F_ACK;
    }
    message[6..8].copy_from_slice(&flags.to_ne_bytes());
}

fn emit(bytes: &mut Vec<u8>, mut message: NetlinkMessage<NetfilterMessage>, seq: u32) {
    message.header.sequence_number = seq;
    message.finalize();
    let start = bytes.len();
    bytes.resize(start + message.header.length as usize, 0);
    message.serialize(&mut bytes[start..]);
}

/// Appends one zone-object message: the netlink header, the nfgenmsg header of the
/// inet family, the attributes.
fn object_message(bytes: &mut Vec<u8>, object: &ObjectMessage, seq: u32) {
    let len = 16 + 4 + object.attrs.len();
    bytes.extend_from_slice(&(len as u32).to_ne_bytes());
    bytes.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | object.kind).to_ne_bytes());
    bytes.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | object.flags).to_ne_bytes());
    bytes.extend_from_slice(&seq.to_ne_bytes());
    bytes.extend_from_slice(&0u32.to_ne_bytes());
    bytes.extend_from_slice(&[NFPROTO_INET, 0, 0, 0]);
    bytes.extend_from_slice(&object.attrs);
}

/// The messages of one change: its elements split so that each message's element
/// list stays under [`MAX_MESSAGE_ELEMENT_BYTES`].
fn element_messages(change: &SetChange) -> Vec<NetlinkMessage<NetfilterMessage>> {
    let mut messages = Vec::new();
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    for elem in &change.elems {
        let element = ListAttribute::Element(element_attributes(elem, change.verb));
        let size = element.buffer_len();
        if !chunk.is_empty() && chunk_bytes + size > MAX_MESSAGE_ELEMENT_BYTES {
            messages.push(element_message(change, std::mem::take(&mut chunk)));
            chunk_bytes = 0;
        }
        chunk_bytes += size;
        chunk.push(element);
    }
    if !chunk.is_empty() {
        messages.push(element_message(change, chunk));
    }
    messages
}

fn control(message: ControlMessage) -> NetlinkMessage<NetfilterMessage> {
    let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES);
    let mut message = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(NetfilterMessage::new(header, message)),
    );
    message.header.flags = NLM_F_REQUEST;
    message
}

fn element_message(
    change: &SetChange,
    elements: Vec<ListAttribute<SetElementAttribute>>,
) -> NetlinkMessage<NetfilterMessage> {
    let body = SetElementMessage {
        attributes: vec![
            SetElementList::Table(TABLE.to_owned()),
            SetElementList::Set(change.set.clone()),
            SetElementList::Elements(elements),
        ],
    };
    let (inner, flags) = match change.verb {
        Verb::Add => (NfTablesMessage::NewSetElement(body), NLM_F_CREATE),
        Verb::Delete => (NfTablesMessage::DeleteSetElement(body), 0),
    };
    let family = if super::ruleset::names::family_of(&change.set) == super::ruleset::BRIDGE_FAMILY {
        NetfilterProtoFamily::Bridge
    } else {
        NetfilterProtoFamily::Inet
    };
    let header = NetfilterHeader::new(family, 0, 0);
    let mut message = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(NetfilterMessage::new(header, inner)),
    );
    message.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    message
}

/// The attributes of one element; a deletion names its key only.
fn element_attributes(elem: &Elem, verb: Verb) -> Vec<SetElementAttribute> {
    let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(key_bytes(
        &elem.key,
    )))];
    if verb == Verb::Delete {
        return attrs;
    }
    match &elem.data {
        None => {}
        Some(Data::Jump(chain)) => {
            attrs.push(SetElementAttribute::Data(DataAttribute::Verdict(vec![
                VerdictAttribute::Code(Verdict::Jump),
                VerdictAttribute::Chain(chain.clone()),
            ])))
        }
        Some(Data::Mark(mark)) => attrs.push(SetElementAttribute::Data(DataAttribute::Value(
            mark.to_ne_bytes().to_vec(),
        ))),
    }
    if !elem.comment.is_empty() {
        attrs.push(SetElementAttribute::UserData(comment_udata(&elem.comment)));
    }
    attrs
}

/// libnftnl's element comment: type, length (with the NUL), the text, a NUL.
fn comment_udata(comment: &str) -> Vec<u8> {
    let text = super::ruleset::cut_comment(comment);
    let mut udata = Vec::with_capacity(text.len() + 3);
    udata.push(UDATA_SET_ELEM_COMMENT);
    udata.push((text.len() + 1) as u8);
    udata.extend_from_slice(text.as_bytes());
    udata.push(0);
    udata
}

/// A key as the kernel stores it; a concatenation pads each field to 4 bytes.
pub fn key_bytes(key: &[Part]) -> Vec<u8> {
    let concat = key.len() > 1;
    let mut bytes = Vec::with_capacity(4 * key.len() + IFNAME_BYTES);
    for part in key {
        match part {
            Part::Addr(std::net::IpAddr::V4(a)) => bytes.extend_from_slice(&a.octets()),
            Part::Addr(std::net::IpAddr::V6(a)) => bytes.extend_from_slice(&a.octets()),
            Part::Prefix(net) => match net.network() {
                std::net::IpAddr::V4(a) => bytes.extend_from_slice(&a.octets()),
                std::net::IpAddr::V6(a) => bytes.extend_from_slice(&a.octets()),
            },
            Part::Ifname(name) => {
                let mut field = [0u8; IFNAME_BYTES];
                let n = name.len().min(IFNAME_BYTES - 1);
                field[..n].copy_from_slice(&name.as_bytes()[..n]);
                bytes.extend_from_slice(&field);
            }
            Part::Mac(mac) => bytes.extend(parse_mac(mac)),
            Part::Proto(p) => bytes.push(*p),
            Part::Port(p) => bytes.extend_from_slice(&p.to_be_bytes()),
            Part::Group(g) => bytes.extend_from_slice(&g.to_ne_bytes()),
        }
        if concat {
            bytes.resize(bytes.len().next_multiple_of(4), 0);
        }
    }
    bytes
}

/// The six bytes of `aa:bb:cc:dd:ee:ff` (zeros where a byte does not parse; the
/// registry only keeps MAC addresses it validated).
fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap_or(0);
    }
    mac
}

/// Whether every change can go as a netlink batch: no interval set (their elements
/// are ranges with end markers, left to `nft`).
pub fn expressible(changes: &[SetChange]) -> bool {
    changes
        .iter()
        .all(|c| c.elems.iter().all(|e| !e.is_interval()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_laid_out_as_the_kernel_stores_them() {
        let addr = Part::Addr("10.1.2.3".parse().unwrap());
        assert_eq!(key_bytes(std::slice::from_ref(&addr)), [10, 1, 2, 3]);
        assert_eq!(
            key_bytes(&[addr.clone(), Part::Proto(6), Part::Port(5432)]),
            [10, 1, 2, 3, 6, 0, 0, 0, 0x15, 0x38, 0, 0]
        );
        assert_eq!(
            key_bytes(&[Part::Proto(17), Part::Port(53)]),
            [17, 0, 0, 0, 0, 53, 0, 0]
        );
        let pair = key_bytes(&[Part::Ifname("zw0123".into()), addr]);
        assert_eq!(pair.len(), 20);
        assert_eq!(&pair[..7], b"zw0123\0");
        assert_eq!(&pair[16..], [10, 1, 2, 3]);
    }

    #[test]
    fn comments_are_libnftnl_user_data() {
        assert_eq!(comment_udata("ab"), [0, 3, b'a', b'b', 0]);
        let long = "x".repeat(300);
        let udata = comment_udata(&long);
        assert_eq!(usize::from(udata[1]), udata.len() - 2);
        assert!(udata.len() <= 130, "cut to nft's comment limit");
    }

    #[test]
    fn a_batch_is_begin_changes_end_with_consecutive_sequence_numbers() {
        let change = SetChange {
            verb: Verb::Add,
            set: "local_v4".into(),
            elems: vec![Elem {
                key: vec![Part::Addr("10.0.0.1".parse().unwrap())],
                data: None,
                comment: "shop/db pod shop/db-0".into(),
            }],
        };
        let bytes = encode_batch(&[change.clone(), change.clone(), change], 7)
            .unwrap()
            .bytes;
        let mut seqs = Vec::new();
        let mut acks = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            seqs.push(u32::from_ne_bytes(rest[8..12].try_into().unwrap()));
            acks.push(u16::from_ne_bytes([rest[6], rest[7]]) & NLM_F_ACK != 0);
            rest = &rest[len..];
        }
        assert_eq!(seqs, [7, 8, 9, 10, 11]);
        // Only the last change asks for an acknowledgement.
        assert_eq!(acks, [false, false, false, true, false]);
    }

    #[test]
    fn acknowledgements_are_read_from_a_datagram() {
        // Two NLMSG_ERROR messages: an ack (0) for seq 3 and ENOENT (-2) for seq 4,
        // each with the 16-byte header of the request (NETLINK_CAP_ACK).
        let mut datagram = Vec::new();
        for (seq, errno) in [(3u32, 0i32), (4, -2)] {
            datagram.extend_from_slice(&36u32.to_ne_bytes());
            datagram.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            datagram.extend_from_slice(&0u16.to_ne_bytes());
            datagram.extend_from_slice(&seq.to_ne_bytes());
            datagram.extend_from_slice(&0u32.to_ne_bytes());
            datagram.extend_from_slice(&errno.to_ne_bytes());
            datagram.extend_from_slice(&[0; 16]);
        }
        assert_eq!(acknowledgements(&datagram), [(3, 0), (4, -2)]);
        assert_eq!(
            acknowledgements(&datagram[..40]),
            [(3, 0)],
            "a cut message is not read"
        );
    }
}
