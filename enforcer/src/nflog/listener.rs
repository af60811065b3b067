//! The NFLOG socket of one group: bind, configure, receive.

use std::io;
use std::mem;
use std::time::Duration;

use netlink_packet_netfilter::NetfilterProtoFamily;
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigFlags, ConfigMode, ConfigNla, Timeout, config_request,
};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use tracing::warn;

use super::NflogError;
use super::drops::DropCounter;
use super::event::{Ack, LogEvent, decode_datagram};

/// Bytes of each packet the kernel copies to us: IPv4 with options or IPv6 with a
/// few extension headers, plus the ports, fit easily.
pub const COPY_RANGE: u32 = 128;
/// The kernel sends a batch once this many messages are queued...
const QUEUE_THRESHOLD: u32 = 16;
/// ...or this many hundredths of a second after the first one: events are at most
/// 50 ms late, and a burst shares skbs instead of paying one (a page) per event.
const FLUSH_TIMEOUT_HUNDREDTHS: u32 = 5;
/// The socket receive buffer we ask for. Events arrive in bursts (a pod starting,
/// a scan hitting a reject rule) while the reader may be waiting on a full channel;
/// the default `rmem_default` (~200 KiB) holds only a few hundred of them, and what
/// does not fit is lost (see [`NflogListener::dropped`]).
pub const RECEIVE_BUFFER_BYTES: usize = 4 << 20;
/// Room for one datagram: a batch is at most the kernel's nlbufsiz (one page by
/// default), far below this.
const DATAGRAM_BYTES: usize = 64 << 10;
/// How long [`NflogListener::bind`] waits for the kernel to answer.
pub const BIND_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const BIND_SEQ: u32 = 1;

/// A bound NFLOG group: the kernel queues every packet logged to it for us.
/// Dropping it closes the socket, which unbinds the group.
pub struct NflogListener {
    socket: Socket,
    group: u16,
    datagram: Vec<u8>,
    drops: DropCounter,
    /// Events that arrived while we waited for the bind's acknowledgement.
    pending: Vec<LogEvent>,
}

impl NflogListener {
    /// Binds `group` in the current netns.
    ///
    /// No `NFULNL_CFG_CMD_PF_UNBIND`/`PF_BIND`: nftables' `log group` names the
    /// nfnetlink_log backend itself, and (un)binding a family changes the
    /// namespace-wide default logger that other software may rely on.
    pub fn bind(group: u16) -> Result<Self, NflogError> {
        let mut socket =
            Socket::new(NETLINK_NETFILTER).map_err(|source| NflogError::Open { source })?;
        socket
            .bind_auto()
            .map_err(|source| NflogError::Open { source })?;
        enlarge_receive_buffer(&socket);
        let mut listener = Self {
            socket,
            group,
            datagram: vec![0; DATAGRAM_BYTES],
            drops: DropCounter::default(),
            pending: Vec::new(),
        };
        listener.apply_timeout(Some(BIND_ANSWER_TIMEOUT))?;
        listener.configure()?;
        listener.apply_timeout(None)?;
        Ok(listener)
    }

    /// Blocks until the next batch of events; returns them (never an empty vec
    /// except when a read timeout is set and expires).
    pub fn recv(&mut self) -> Result<Vec<LogEvent>, NflogError> {
        let mut events = mem::take(&mut self.pending);
        while events.is_empty() {
            match self.receive_into(&mut events) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(source) => {
                    return Err(NflogError::Receive {
                        group: self.group,
                        source,
                    });
                }
            }
        }
        Ok(events)
    }

    /// Netlink receive-buffer overruns (ENOBUFS) seen so far: events the kernel
    /// dropped, counted exactly from sequence-number gaps where possible.
    pub fn dropped(&self) -> u64 {
        self.drops.dropped()
    }

    /// Messages received so far that were no readable log event (they did not decode,
    /// or their packet is no IP packet we can read).
    pub fn unreadable(&self) -> u64 {
        self.drops.unreadable()
    }

    /// Makes [`recv`](Self::recv) return an empty vec after `timeout` without
    /// events; `None` (the default) blocks indefinitely.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), NflogError> {
        self.apply_timeout(timeout)
    }

    fn apply_timeout(&self, timeout: Option<Duration>) -> Result<(), NflogError> {
        let value = timeout.map_or(TimeVal::zero(), duration_timeval);
        setsockopt(&self.socket, sockopt::ReceiveTimeout, &value).map_err(|source| {
            NflogError::SetTimeout {
                group: self.group,
                source,
            }
        })
    }

    /// Binds the group and sets its copy mode, batching and sequence numbers in one
    /// request, then waits for the kernel's answer.
    fn configure(&mut self) -> Result<(), NflogError> {
        let group = self.group;
        let nlas = vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(COPY_RANGE).into(),
            ConfigNla::QThresh(QUEUE_THRESHOLD),
            Timeout::new(FLUSH_TIMEOUT_HUNDREDTHS).into(),
            ConfigFlags::SEQ.into(),
        ];
        let mut request = config_request(NetfilterProtoFamily::Unspec, group, nlas);
        request.header.sequence_number = BIND_SEQ;
        let mut bytes = vec![0; request.header.length as usize];
        request.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|source| NflogError::Configure { group, source })?;
        let mut pending = Vec::new();
        loop {
            let acks = self
                .receive_into(&mut pending)
                .map_err(|source| match source.kind() {
                    io::ErrorKind::WouldBlock => NflogError::NoAnswer {
                        group,
                        timeout: BIND_ANSWER_TIMEOUT,
                    },
                    _ => NflogError::Receive { group, source },
                })?;
            match acks.into_iter().find(|(seq, _)| *seq == BIND_SEQ) {
                Some((_, Ok(()))) => break,
                Some((_, Err(errno)))
                    if [Errno::EPERM, Errno::EBUSY].contains(&Errno::from_raw(errno)) =>
                {
                    return Err(NflogError::GroupUnavailable { group });
                }
                Some((_, Err(errno))) => {
                    let source = io::Error::from_raw_os_error(errno);
                    return Err(NflogError::Rejected { group, source });
                }
                None => {}
            }
        }
        self.pending = pending;
        Ok(())
    }

    /// Reads one datagram, decoding its events into `events`; an overrun is
    /// counted and the read retried.
    fn receive_into(&mut self, events: &mut Vec<LogEvent>) -> io::Result<Vec<Ack>> {
        loop {
            match self.socket.recv(&mut &mut self.datagram[..], 0) {
                Ok(len) => {
                    let datagram = &self.datagram[..len.min(DATAGRAM_BYTES)];
                    return Ok(decode_datagram(datagram, &mut self.drops, events));
                }
                Err(err) if err.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                    self.drops.on_overrun();
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// Asks for [`RECEIVE_BUFFER_BYTES`], above `rmem_max` when we have CAP_NET_ADMIN
/// (`SO_RCVBUFFORCE`), else as much as `SO_RCVBUF` allows. A smaller buffer only
/// means more drops, so failure is a warning.
pub(crate) fn enlarge_receive_buffer(socket: &Socket) {
    if setsockopt(socket, sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES).is_ok() {
        return;
    }
    if let Err(err) = setsockopt(socket, sockopt::RcvBuf, &RECEIVE_BUFFER_BYTES) {
        warn!(%err, "cannot enlarge the nflog receive buffer; bursts of events may be dropped");
    }
}

pub(crate) fn duration_timeval(timeout: Duration) -> TimeVal {
    // A zero timeval means "block forever": round tiny timeouts up to 1 µs.
    let micros = timeout.as_micros().clamp(1, i64::MAX as u128);
    TimeVal::microseconds(i64::try_from(micros).unwrap_or(i64::MAX))
}
