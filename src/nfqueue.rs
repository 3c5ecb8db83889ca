//! The thin NFQUEUE adapter: the only module that touches the netlink queue socket.
//!
//! One [`QueueSet`] per worker thread: one `nfq` socket bound to every queue number the worker
//! owns (one per event kind; the message says which). Receiving polls with a timeout so the
//! worker can run timers and notice shutdown; every message handed out must be verdicted through
//! [`QueueSet::verdict`] — the worker loop is written so that every path does exactly that.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

pub use nfq::{Message, Verdict};

/// Errors of the queue socket.
#[derive(Debug, thiserror::Error)]
pub enum NfqError {
    /// Opening the netlink socket failed (needs CAP_NET_ADMIN).
    #[error("cannot open the NFQUEUE netlink socket (CAP_NET_ADMIN needed)")]
    Open(#[source] io::Error),
    /// Binding or configuring a queue number failed.
    #[error("cannot bind/configure NFQUEUE {queue} ({what})")]
    Configure {
        /// The queue number.
        queue: u16,
        /// What was being set.
        what: &'static str,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The socket buffer overflowed: the kernel dropped (or, with fail-open, accepted) messages.
    #[error("NFQUEUE socket buffer overflow (ENOBUFS)")]
    Overflow,
    /// Any other receive error.
    #[error("NFQUEUE receive failed")]
    Recv(#[source] io::Error),
    /// Sending a verdict failed.
    #[error("NFQUEUE verdict failed")]
    Verdict(#[source] io::Error),
}

/// Per-queue settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueOptions {
    /// Kernel queue length.
    pub max_len: u32,
    /// Accept (rather than drop) when the queue is full or the socket overflows.
    pub fail_open: bool,
    /// Deliver conntrack info (state, mark, status) with each packet.
    pub conntrack: bool,
}

/// One worker's queue socket.
pub struct QueueSet {
    q: nfq::Queue,
}

impl QueueSet {
    /// Open a socket and bind `queues` with their options.
    pub fn open(queues: &[(u16, QueueOptions)], rcvbuf: usize) -> Result<QueueSet, NfqError> {
        let mut q = nfq::Queue::open().map_err(NfqError::Open)?;
        q.set_recv_enobufs(true).map_err(NfqError::Open)?;
        q.set_rcvbuf(rcvbuf).map_err(NfqError::Open)?;
        for &(num, o) in queues {
            let cfg = |what, r: io::Result<()>| {
                r.map_err(|source| NfqError::Configure {
                    queue: num,
                    what,
                    source,
                })
            };
            // bind() also sets the copy range to 65535: whole packets, so a first payload is
            // never cut (the copy range bounds what the kernel copies per message).
            cfg("bind", q.bind(num))?;
            cfg("queue length", q.set_queue_max_len(num, o.max_len))?;
            cfg("fail-open", q.set_fail_open(num, o.fail_open))?;
            if o.conntrack {
                cfg("conntrack info", q.set_recv_conntrack(num, true))?;
            }
        }
        q.set_nonblocking(true);
        Ok(QueueSet { q })
    }

    /// Wait up to `timeout` for the next packet.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, NfqError> {
        // Messages already read in a batch are handed out first.
        match self.q.recv() {
            Ok(m) => return Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(classify_recv_error(e)),
        }
        let mut fds = [PollFd::new(self.q.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(NfqError::Recv(e.into())),
        }
        match self.q.recv() {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(classify_recv_error(e)),
        }
    }

    /// Send the verdict `v` (with the mark and ct mark set on `msg`, if any).
    pub fn verdict(&mut self, mut msg: Message, v: Verdict) -> Result<(), NfqError> {
        msg.set_verdict(v);
        self.q.verdict(msg).map_err(NfqError::Verdict)
    }
}

fn classify_recv_error(e: io::Error) -> NfqError {
    if e.raw_os_error() == Some(libc::ENOBUFS) {
        NfqError::Overflow
    } else {
        NfqError::Recv(e)
    }
}
