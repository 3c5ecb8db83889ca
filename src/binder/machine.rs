//! The delayed-binding state machine: pure, no sockets, no clock of its own.
//!
//! It is fed the events of one worker's share of connections (the nft rules pick the worker by a
//! hash of the client address and port, so all events of a connection arrive here, in order) and
//! answers with [`Action`]s that the I/O layer carries out **in order**: verdicts on queued
//! packets (by packet id) and re-injections of held client segments.
//!
//! The packet walk it drives (docs/architecture.md has the hook-by-hook version):
//! 1. client SYN → SYNPROXY's cookie SYN-ACK (kernel; the window is opened by an nft rule);
//! 2. cookie ACK → [`Kind::ClientInvalid`]: accepted, so SYNPROXY sends the server SYN;
//! 3. client data → [`Kind::ClientInvalid`]: copied and dropped (SYNPROXY must not see it: it
//!    would take a data segment for a cookie ACK and consume it); the copy is parsed;
//! 4. SYNPROXY's server SYN → [`Kind::ServerSyn`]: held until the key is complete, then accepted
//!    with the class's mark, so IPVS (output hook, after our queue) schedules the fwmark service;
//! 5. the real server's SYN-ACK → [`Kind::ServerSynAck`]: accepted; the verdict call returns after
//!    SYNPROXY has answered the server and armed seqadj (`nf_reinject` runs synchronously), so the
//!    held segments are re-injected right after it;
//! 6. client packets racing the SYN-ACK ([`Kind::PreSeqadj`]) are held or dropped, and client
//!    packets after seqadj wait behind the re-injection ([`Kind::DoneGate`]), whose verdict sets the
//!    conntrack DONE bit — after that the connection never visits l7mark again.
//!
//! A connection is identified by (client address, client port, client ISN): a client reusing its
//! port starts a new incarnation (the lab found a port-keyed table hangs reused ports).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::config::HoldPolicy;

/// TCP flag bits (RFC 9293 §3.1).
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// Which queue (and so which nft rule) an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Client → VIP, conntrack INVALID (cookie ACK, early data, FIN, RST).
    ClientInvalid,
    /// SYNPROXY's SYN to the server (saddr = client, daddr = VIP), output hook.
    ServerSyn,
    /// The real server's SYN-ACK (daddr = client), forward hook, before IPVS.
    ServerSynAck,
    /// Client → VIP while the conntrack entry has left SYN_SENT but has no seqadj yet.
    PreSeqadj,
    /// Client → VIP after seqadj, DONE bit not yet set.
    DoneGate,
}

/// One TCP segment as the machine needs it.
#[derive(Debug, Clone, Copy)]
pub struct Seg<'a> {
    /// The client's address and port (source of client packets, destination of the SYN-ACK).
    pub client: SocketAddrV4,
    /// The virtual service address (destination of client packets).
    pub vip: SocketAddrV4,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags.
    pub flags: u8,
    /// TCP payload.
    pub payload: &'a [u8],
    /// The whole L3 packet (kept for re-injection).
    pub packet: &'a [u8],
}

/// What the classifier says about the bytes held so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// The key is complete: this mark (and rule index, if a rule matched).
    Decided {
        /// Mark.
        mark: u32,
        /// Matching rule index.
        rule: Option<usize>,
    },
    /// Not the expected protocol: the default mark, with a reason for the counter.
    Unparseable(&'static str),
    /// A valid prefix: wait for more bytes.
    NeedMore,
}

/// The classifier the I/O layer provides (rule table snapshot + parser for the VIP's protocol).
pub trait Classifier {
    /// Classify the client's first bytes sent to `vip`.
    fn classify(&self, vip: SocketAddrV4, bytes: &[u8]) -> KeyState;
    /// The default mark.
    fn default_mark(&self) -> u32;
}

/// What the I/O layer must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Verdict ACCEPT on a queued packet, optionally setting its mark and the ct DONE bit.
    Accept {
        /// Packet id (queue number << 32 | NFQUEUE packet id: ids are per queue).
        id: u64,
        /// Mark to set.
        mark: Option<u32>,
        /// Set the conntrack DONE bit.
        done: bool,
    },
    /// Verdict DROP on a queued packet.
    Drop {
        /// Packet id (queue number << 32 | NFQUEUE packet id: ids are per queue).
        id: u64,
    },
    /// Send this L3 packet through the raw socket (checksums to be recomputed).
    Reinject(Vec<u8>),
}

impl Action {
    /// Accept unchanged: no mark, no ct DONE bit.
    pub fn pass(id: u64) -> Action {
        Action::Accept {
            id,
            mark: None,
            done: false,
        }
    }
}

/// Limits and policy.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Hold time for a server SYN waiting for the key.
    pub hold_timeout: Duration,
    /// What to do when it expires.
    pub on_hold_timeout: HoldPolicy,
    /// Bytes inspected before giving up on the key.
    pub max_key_bytes: usize,
    /// Bytes held per flow.
    pub max_flow_bytes: usize,
    /// Bytes held per client address.
    pub max_client_bytes: usize,
    /// Bytes held in total.
    pub max_total_bytes: usize,
    /// Flows tracked at once.
    pub max_flows: usize,
}

/// Counters (the I/O layer exports them). `Serialize` lets the metrics endpoint export every
/// field as `l7mark_binder_<field>_total` without a hand-kept list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Connections bound (server SYN-ACK seen, held data re-injected).
    pub bound: u64,
    /// Server SYNs released with a rule's mark.
    pub classified: u64,
    /// Server SYNs released with the default mark (no rule, unparseable, or timeout).
    pub defaulted: u64,
    /// Payloads that were not the service's protocol.
    pub unparseable: u64,
    /// Keys not complete within max_key_bytes.
    pub key_too_long: u64,
    /// Hold timeouts.
    pub hold_timeouts: u64,
    /// Segments re-injected.
    pub reinjected: u64,
    /// Segments held (copied).
    pub held_segments: u64,
    /// Segments dropped without copy because a byte cap bit (the client retransmits them).
    pub cap_drops: u64,
    /// New flows refused because max_flows was reached (their packets pass to SYNPROXY).
    pub flow_cap: u64,
    /// Duplicate server SYNs (older one dropped).
    pub dup_syn: u64,
    /// A client port reused for a new connection while an older incarnation was known.
    pub port_reuse: u64,
    /// Port reused within the IPVS TIME_WAIT window with a different class: IPVS keeps the old
    /// real server on a persistent service whatever the new mark (not fixable by rules).
    pub reuse_class_change: u64,
    /// Stray packets of bound flows dropped.
    pub stray: u64,
    /// Retransmitted server SYN-ACKs after binding, dropped.
    pub synack_retrans: u64,
    /// Flows ended by a client RST or FIN before binding.
    pub aborted: u64,
    /// Packets of unknown flows in the DONE gate (e.g. after a daemon restart): accepted.
    pub gate_unknown: u64,
}

#[derive(Debug)]
struct Flow {
    vip: SocketAddrV4,
    created: Instant,
    /// Held server SYN: packet id and when it arrived.
    syn: Option<(u64, Instant)>,
    syn_seen: bool,
    ack_passed: bool,
    decided: Option<(u32, Option<usize>)>,
    /// Held client segments by sequence number (whole L3 packets) and their payload offset.
    held: BTreeMap<u32, (Vec<u8>, usize)>,
    held_bytes: usize,
    bound_at: Option<Instant>,
    /// Sequence numbers re-injected after binding (late segments): each at most once, so a copy
    /// that comes back to the queue (it did not reach the server) cannot loop.
    late: Vec<u32>,
}

/// How long a bound flow is remembered (late segments queued before binding are re-injected).
const BOUND_GRACE: Duration = Duration::from_secs(2);
/// IPVS keeps a TCP connection entry in TIME_WAIT for 2 minutes (`tcp_timeouts`): a client port
/// reused within it on a persistent service sticks to the old real server.
const IPVS_TIME_WAIT: Duration = Duration::from_secs(120);
/// An unbound flow that never got a server SYN is forgotten after this long.
const STALE_UNBOUND: Duration = Duration::from_secs(60);
/// A data segment belongs to an incarnation if it lies at most this far after its ISN.
const SEQ_WINDOW: u32 = 1 << 24;

type FlowKey = (Ipv4Addr, u16, u32);

/// The state machine of one worker.
pub struct Binder {
    limits: Limits,
    flows: HashMap<FlowKey, Flow>,
    /// ISNs known per client address and port (incarnations).
    isns: HashMap<(Ipv4Addr, u16), Vec<u32>>,
    held_by_client: HashMap<Ipv4Addr, usize>,
    held_total: usize,
    /// Recently bound (client, port, vip) → (mark, when): detects class changes on port reuse.
    recent: HashMap<(SocketAddrV4, SocketAddrV4), (u32, Instant)>,
    /// Counters.
    pub stats: Stats,
    /// Setup times of bound connections (first event → re-injection), for percentiles.
    pub setup_times: Vec<Duration>,
}

fn seq_after(seq: u32, isn: u32) -> u32 {
    seq.wrapping_sub(isn)
}

impl Binder {
    /// A binder with these limits.
    pub fn new(limits: Limits) -> Binder {
        Binder {
            limits,
            flows: HashMap::new(),
            isns: HashMap::new(),
            held_by_client: HashMap::new(),
            held_total: 0,
            recent: HashMap::new(),
            stats: Stats::default(),
            setup_times: Vec::new(),
        }
    }

    /// Unbound flows tracked.
    pub fn unbound_flows(&self) -> usize {
        self.flows.values().filter(|f| f.bound_at.is_none()).count()
    }

    /// Bytes held in total.
    pub fn held_bytes(&self) -> usize {
        self.held_total
    }

    /// Held server SYNs.
    pub fn held_syns(&self) -> usize {
        self.flows.values().filter(|f| f.syn.is_some()).count()
    }

    /// Handle one queued packet; returns the actions to carry out in order. Every packet id
    /// given here appears in exactly one Accept/Drop action, now or later (held SYNs).
    pub fn on_packet(
        &mut self,
        now: Instant,
        kind: Kind,
        id: u64,
        seg: &Seg<'_>,
        cls: &dyn Classifier,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        match kind {
            Kind::ClientInvalid => self.client_invalid(now, id, seg, cls, &mut out),
            Kind::ServerSyn => self.server_syn(now, id, seg, cls, &mut out),
            Kind::ServerSynAck => self.server_synack(now, id, seg, &mut out),
            Kind::PreSeqadj => self.pre_seqadj(now, id, seg, cls, &mut out),
            Kind::DoneGate => self.done_gate(now, id, seg, &mut out),
        }
        out
    }

    fn key_of(seg: &Seg<'_>, isn: u32) -> FlowKey {
        (*seg.client.ip(), seg.client.port(), isn)
    }

    /// The newest incarnation of this client port whose ISN the sequence number follows.
    fn find_by_seq(&self, seg: &Seg<'_>) -> Option<FlowKey> {
        let ids = self.isns.get(&(*seg.client.ip(), seg.client.port()))?;
        ids.iter()
            .filter(|&&isn| {
                let d = seq_after(seg.seq, isn);
                d > 0 && d < SEQ_WINDOW
            })
            .map(|&isn| Self::key_of(seg, isn))
            .filter(|k| self.flows.contains_key(k))
            .max_by_key(|k| self.flows.get(k).map(|f| f.created))
    }

    /// Get or create the flow of incarnation `isn`. `None` when the flow table is full.
    fn flow(&mut self, now: Instant, seg: &Seg<'_>, isn: u32) -> Option<FlowKey> {
        let key = Self::key_of(seg, isn);
        if self.flows.contains_key(&key) {
            return Some(key);
        }
        if self.flows.len() >= self.limits.max_flows {
            self.stats.flow_cap += 1;
            return None;
        }
        let ids = self
            .isns
            .entry((*seg.client.ip(), seg.client.port()))
            .or_default();
        if !ids.is_empty() {
            self.stats.port_reuse += 1;
        }
        ids.push(isn);
        self.flows.insert(
            key,
            Flow {
                vip: seg.vip,
                created: now,
                syn: None,
                syn_seen: false,
                ack_passed: false,
                decided: None,
                held: BTreeMap::new(),
                held_bytes: 0,
                bound_at: None,
                late: Vec::new(),
            },
        );
        Some(key)
    }

    /// Forget a flow; a SYN it still holds is dropped (every packet gets its verdict).
    fn forget(&mut self, key: FlowKey, out: &mut Vec<Action>) {
        if let Some(f) = self.flows.remove(&key) {
            if let Some((id, _)) = f.syn {
                out.push(Action::Drop { id });
            }
            self.release_bytes(key.0, f.held_bytes);
        }
        let ck = (key.0, key.1);
        if let Some(ids) = self.isns.get_mut(&ck) {
            ids.retain(|&i| i != key.2);
            if ids.is_empty() {
                self.isns.remove(&ck);
            }
        }
    }

    fn release_bytes(&mut self, ip: Ipv4Addr, n: usize) {
        self.held_total = self.held_total.saturating_sub(n);
        if let Some(b) = self.held_by_client.get_mut(&ip) {
            *b = b.saturating_sub(n);
            if *b == 0 {
                self.held_by_client.remove(&ip);
            }
        }
    }

    /// Copy a client segment into the flow, within the caps. Returns false when a cap bit (the
    /// segment must then be dropped uncopied: the client retransmits it after binding).
    fn hold(&mut self, key: FlowKey, seg: &Seg<'_>) -> bool {
        let Some(f) = self.flows.get(&key) else {
            return false;
        };
        if f.held.contains_key(&seg.seq) {
            return true; // a retransmission of a segment we have
        }
        let n = seg.packet.len();
        let by_client = self.held_by_client.get(&key.0).copied().unwrap_or(0);
        if f.held_bytes + n > self.limits.max_flow_bytes
            || by_client + n > self.limits.max_client_bytes
            || self.held_total + n > self.limits.max_total_bytes
        {
            self.stats.cap_drops += 1;
            return false;
        }
        let offset = seg.packet.len() - seg.payload.len();
        if let Some(f) = self.flows.get_mut(&key) {
            f.held.insert(seg.seq, (seg.packet.to_vec(), offset));
            f.held_bytes += n;
        }
        *self.held_by_client.entry(key.0).or_default() += n;
        self.held_total += n;
        self.stats.held_segments += 1;
        true
    }

    /// The contiguous client byte stream from ISN + 1 held so far.
    fn stream(f: &Flow, isn: u32, cap: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next = isn.wrapping_add(1);
        for (&seq, (pkt, off)) in &f.held {
            let payload = pkt.get(*off..).unwrap_or(&[]);
            let skip = seq_after(next, seq) as usize; // bytes of this segment we already have
            if seq_after(seq, next) > 0 && seq_after(seq, next) < SEQ_WINDOW {
                break; // a hole: later bytes are not usable yet
            }
            if skip >= payload.len() {
                continue;
            }
            let part = payload.get(skip..).unwrap_or(&[]);
            out.extend_from_slice(part);
            next = next.wrapping_add(u32::try_from(part.len()).unwrap_or(0));
            if out.len() >= cap {
                break;
            }
        }
        out
    }

    /// Classify what the flow holds, if not decided yet.
    fn try_decide(&mut self, key: FlowKey, cls: &dyn Classifier) {
        let Some(f) = self.flows.get(&key) else {
            return;
        };
        if f.decided.is_some() {
            return;
        }
        let bytes = Self::stream(f, key.2, self.limits.max_key_bytes);
        if bytes.is_empty() {
            return;
        }
        let vip = f.vip;
        let decision = match cls.classify(vip, &bytes) {
            KeyState::Decided { mark, rule } => Some((mark, rule)),
            KeyState::Unparseable(_) => {
                self.stats.unparseable += 1;
                Some((cls.default_mark(), None))
            }
            KeyState::NeedMore if bytes.len() >= self.limits.max_key_bytes => {
                self.stats.key_too_long += 1;
                Some((cls.default_mark(), None))
            }
            KeyState::NeedMore => None,
        };
        if let (Some(d), Some(f)) = (decision, self.flows.get_mut(&key)) {
            f.decided = Some(d);
        }
    }

    /// Release the held server SYN if the flow is decided.
    fn release_if_decided(&mut self, key: FlowKey, out: &mut Vec<Action>) {
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        if let (Some((mark, rule)), Some((id, _))) = (f.decided, f.syn) {
            f.syn = None;
            out.push(Action::Accept {
                id,
                mark: Some(mark),
                done: false,
            });
            if rule.is_some() {
                self.stats.classified += 1;
            } else {
                self.stats.defaulted += 1;
            }
        }
    }

    fn client_invalid(
        &mut self,
        now: Instant,
        id: u64,
        seg: &Seg<'_>,
        cls: &dyn Classifier,
        out: &mut Vec<Action>,
    ) {
        let found = self.find_by_seq(seg);
        if seg.flags & flags::RST != 0 {
            // The client gave up before binding: forget it; there is no server connection to
            // reset yet (a held SYN is dropped, so none will be opened).
            if let Some(key) = found {
                if let Some(f) = self.flows.get(&key) {
                    if f.bound_at.is_none() {
                        self.stats.aborted += 1;
                        self.forget(key, out);
                        out.push(Action::Drop { id });
                        return;
                    }
                }
            }
            // Unknown or bound: nothing to reset on the server side, and SYNPROXY must not take
            // an RST|ACK for a cookie ACK (nft's synproxy has no FIN/RST filter).
            out.push(Action::Drop { id });
            return;
        }
        let isn_if_first = seg.seq.wrapping_sub(1);
        if let Some(key) = found {
            let bound = self.flows.get(&key).and_then(|f| f.bound_at);
            if let Some(at) = bound {
                if seg.payload.is_empty() && seg.flags & flags::FIN == 0 {
                    if seq_after(seg.seq, key.2) != 1 {
                        // Not this connection's cookie ACK: the cookie ACK of a new connection on
                        // a reused port (Linux ISNs of one 4-tuple lie close together, so its
                        // sequence number falls into the old connection's window), or a stray.
                        // SYNPROXY's cookie check tells them apart; dropping it here would stall
                        // the new connection until the old one is forgotten (found in the lab).
                        self.new_incarnation(now, id, seg, out);
                        return;
                    }
                    self.stats.stray += 1;
                    out.push(Action::Drop { id });
                    return;
                }
                // Queued before the binding, handled after it: re-inject once (conntrack now has
                // seqadj). A copy that comes back (it did not reach the server) is dropped.
                let first = self.flows.get_mut(&key).is_some_and(|f| {
                    !f.late.contains(&seg.seq) && {
                        f.late.push(seg.seq);
                        true
                    }
                });
                if !seg.payload.is_empty() && now.duration_since(at) < BOUND_GRACE && first {
                    out.push(Action::Reinject(seg.packet.to_vec()));
                    self.stats.reinjected += 1;
                } else {
                    self.stats.stray += 1;
                }
                out.push(Action::Drop { id });
                return;
            }
            if seg.payload.is_empty() && seg.flags & flags::FIN == 0 {
                if seq_after(seg.seq, key.2) == 1 {
                    // A repeated cookie ACK: SYNPROXY answers it with another server SYN.
                    if let Some(f) = self.flows.get_mut(&key) {
                        f.ack_passed = true;
                    }
                    out.push(Action::pass(id));
                } else {
                    out.push(Action::Drop { id });
                }
                return;
            }
            // Data or FIN of an unbound flow: hold a copy.
            if !self.hold(key, seg) {
                out.push(Action::Drop { id });
                return;
            }
            let first_contact = self
                .flows
                .get(&key)
                .is_some_and(|f| !f.syn_seen && !f.ack_passed);
            self.try_decide(key, cls);
            if first_contact && seq_after(seg.seq, key.2) == 1 {
                // The cookie ACK was lost: this first segment (seq = ISN + 1) serves as the
                // cookie ACK (SYNPROXY consumes it; our copy is re-injected after binding).
                if let Some(f) = self.flows.get_mut(&key) {
                    f.ack_passed = true;
                }
                out.push(Action::pass(id));
            } else {
                out.push(Action::Drop { id });
            }
            self.release_if_decided(key, out);
            return;
        }
        // No known incarnation owns this sequence number: a new connection. Its ISN is seq - 1
        // (the cookie ACK, or its first data segment if the cookie ACK was lost).
        let Some(key) = self.flow(now, seg, isn_if_first) else {
            // Table full: leave it to SYNPROXY (a pure ACK opens the server side and gets the
            // default mark through the bypass/default rule when we do not hold the SYN).
            out.push(Action::pass(id));
            return;
        };
        if seg.payload.is_empty() {
            if let Some(f) = self.flows.get_mut(&key) {
                f.ack_passed = true;
            }
            out.push(Action::pass(id));
            return;
        }
        if !self.hold(key, seg) {
            self.forget(key, out);
            out.push(Action::Drop { id });
            return;
        }
        self.try_decide(key, cls);
        if let Some(f) = self.flows.get_mut(&key) {
            f.ack_passed = true;
        }
        // To SYNPROXY as the cookie ACK; the copy is re-injected after binding.
        out.push(Action::pass(id));
    }

    /// A pure ACK that starts a new incarnation (ISN = seq - 1): to SYNPROXY as its cookie ACK.
    fn new_incarnation(&mut self, now: Instant, id: u64, seg: &Seg<'_>, out: &mut Vec<Action>) {
        if let Some(key) = self.flow(now, seg, seg.seq.wrapping_sub(1)) {
            if let Some(f) = self.flows.get_mut(&key) {
                f.ack_passed = true;
            }
        }
        out.push(Action::pass(id));
    }

    fn server_syn(
        &mut self,
        now: Instant,
        id: u64,
        seg: &Seg<'_>,
        cls: &dyn Classifier,
        out: &mut Vec<Action>,
    ) {
        // SYNPROXY's server SYN carries the client's ISN as its sequence number.
        let isn = seg.seq;
        // A newer incarnation's SYN makes the older ones' held SYNs stale.
        let ck = (*seg.client.ip(), seg.client.port());
        let older: Vec<u32> = self
            .isns
            .get(&ck)
            .map(|v| v.iter().copied().filter(|&i| i != isn).collect())
            .unwrap_or_default();
        for old in older {
            let okey = (ck.0, ck.1, old);
            if let Some(f) = self.flows.get_mut(&okey) {
                if f.bound_at.is_none() {
                    if let Some((sid, _)) = f.syn.take() {
                        out.push(Action::Drop { id: sid });
                    }
                }
            }
        }
        let Some(key) = self.flow(now, seg, isn) else {
            out.push(Action::Accept {
                id,
                mark: Some(cls.default_mark()),
                done: false,
            });
            self.stats.defaulted += 1;
            return;
        };
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        f.syn_seen = true;
        if f.bound_at.is_some() {
            // SYNPROXY re-sent a SYN for a bound flow: same mark again.
            let mark = f.decided.map(|d| d.0);
            out.push(Action::Accept {
                id,
                mark,
                done: false,
            });
            return;
        }
        if let Some((old, _)) = f.syn.replace((id, now)) {
            // A duplicate (the client repeated its cookie ACK): the newer SYN replaces it.
            self.stats.dup_syn += 1;
            out.push(Action::Drop { id: old });
        }
        self.try_decide(key, cls);
        self.release_if_decided(key, out);
    }

    fn server_synack(&mut self, now: Instant, id: u64, seg: &Seg<'_>, out: &mut Vec<Action>) {
        // The SYN-ACK acknowledges the client's ISN + 1.
        let key = Self::key_of(seg, seg.ack.wrapping_sub(1));
        let Some(f) = self.flows.get_mut(&key) else {
            out.push(Action::pass(id));
            return;
        };
        if f.bound_at.is_some() {
            // SYNPROXY completed this connection already: a retransmitted SYN-ACK must not
            // reach it again.
            self.stats.synack_retrans += 1;
            out.push(Action::Drop { id });
            return;
        }
        // Accept first: the verdict returns once SYNPROXY has sent the server ACK and armed
        // seqadj; only then are the held client segments valid to send.
        out.push(Action::pass(id));
        let Some((created, mark)) = self.bind(key, now, out) else {
            return;
        };
        self.stats.bound += 1;
        self.setup_times.push(now.duration_since(created));
        if self.setup_times.len() > 4096 {
            self.setup_times.drain(..2048);
        }
        if let Some(mark) = mark {
            let rk = (seg.client, f_vip(&self.flows, key));
            if let Some((old, at)) = self.recent.insert(rk, (mark, now)) {
                if old != mark && now.duration_since(at) < IPVS_TIME_WAIT {
                    self.stats.reuse_class_change += 1;
                }
            }
        }
    }

    /// The flow is bound now: a SYN it still holds is dropped (the server answered an earlier
    /// one), what it holds is re-injected in sequence order, its bytes are released. Returns when
    /// the flow was created and its mark.
    fn bind(
        &mut self,
        key: FlowKey,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Option<(Instant, Option<u32>)> {
        let f = self.flows.get_mut(&key)?;
        f.bound_at = Some(now);
        if let Some((sid, _)) = f.syn.take() {
            out.push(Action::Drop { id: sid });
        }
        let held = std::mem::take(&mut f.held);
        let bytes = std::mem::take(&mut f.held_bytes);
        let info = (f.created, f.decided.map(|d| d.0));
        for (_, (pkt, _)) in held {
            out.push(Action::Reinject(pkt));
            self.stats.reinjected += 1;
        }
        self.release_bytes(key.0, bytes);
        Some(info)
    }

    fn pre_seqadj(
        &mut self,
        now: Instant,
        id: u64,
        seg: &Seg<'_>,
        cls: &dyn Classifier,
        out: &mut Vec<Action>,
    ) {
        let Some(key) = self.find_by_seq(seg) else {
            // Unknown (e.g. after a restart): drop; the client retransmits once seqadj is armed.
            out.push(Action::Drop { id });
            return;
        };
        if self.flows.get(&key).is_some_and(|f| f.bound_at.is_some()) {
            out.push(Action::pass(id));
            return;
        }
        if (!seg.payload.is_empty() || seg.flags & flags::FIN != 0) && self.hold(key, seg) {
            self.try_decide(key, cls);
            self.release_if_decided(key, out);
        }
        let _ = now;
        out.push(Action::Drop { id });
    }

    fn done_gate(&mut self, now: Instant, id: u64, seg: &Seg<'_>, out: &mut Vec<Action>) {
        match self.find_by_seq(seg) {
            // seqadj is armed but we never saw the SYN-ACK (it passed while we were restarting):
            // what we hold goes out first.
            Some(key) if self.flows.get(&key).is_some_and(|f| f.bound_at.is_none()) => {
                self.bind(key, now, out);
            }
            Some(_) => {}
            None => self.stats.gate_unknown += 1,
        }
        out.push(Action::Accept {
            id,
            mark: None,
            done: true,
        });
    }

    /// Timers: hold timeouts and garbage collection. Call at least every 100 ms.
    pub fn on_timer(&mut self, now: Instant, cls: &dyn Classifier) -> Vec<Action> {
        let mut out = Vec::new();
        let mut forget = Vec::new();
        for (key, f) in &mut self.flows {
            if let Some(at) = f.bound_at {
                if now.duration_since(at) > BOUND_GRACE {
                    forget.push(*key);
                }
                continue;
            }
            if let Some((id, since)) = f.syn {
                if now.duration_since(since) >= self.limits.hold_timeout {
                    self.stats.hold_timeouts += 1;
                    f.syn = None;
                    match self.limits.on_hold_timeout {
                        HoldPolicy::Default => {
                            self.stats.defaulted += 1;
                            f.decided = Some((cls.default_mark(), None));
                            out.push(Action::Accept {
                                id,
                                mark: Some(cls.default_mark()),
                                done: false,
                            });
                        }
                        HoldPolicy::Drop => {
                            // The client's next data segment (a retransmission of seq ISN + 1)
                            // serves as a fresh cookie ACK within the cookie lifetime.
                            out.push(Action::Drop { id });
                            forget.push(*key);
                        }
                    }
                }
                continue;
            }
            if now.duration_since(f.created) > STALE_UNBOUND {
                forget.push(*key);
            }
        }
        for key in forget {
            self.forget(key, &mut out);
        }
        self.recent
            .retain(|_, (_, at)| now.duration_since(*at) < IPVS_TIME_WAIT);
        out
    }

    /// Shutdown: give every held SYN a verdict (its decided mark, or the default) so nothing
    /// held is lost; held copies are discarded (their clients retransmit).
    pub fn drain(&mut self, cls: &dyn Classifier) -> Vec<Action> {
        let mut out = Vec::new();
        for f in self.flows.values_mut() {
            if let Some((id, _)) = f.syn.take() {
                let mark = f.decided.map_or(cls.default_mark(), |d| d.0);
                out.push(Action::Accept {
                    id,
                    mark: Some(mark),
                    done: false,
                });
            }
        }
        self.flows.clear();
        self.isns.clear();
        self.held_by_client.clear();
        self.held_total = 0;
        out
    }
}

fn f_vip(flows: &HashMap<FlowKey, Flow>, key: FlowKey) -> SocketAddrV4 {
    flows
        .get(&key)
        .map_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0), |f| f.vip)
}
