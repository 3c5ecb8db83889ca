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
//!
//! A flow is in exactly one [`Phase`], and what it may hold follows from the phase's type: only an
//! unbound flow holds SYNPROXY's server SYN, only unbound and released flows hold client bytes, a
//! bound flow holds neither. Sequence numbers are compared modulo 2^32 (RFC 9293 §3.4): held
//! segments are keyed by their offset from ISN + 1.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use crate::config::HoldPolicy;

use crate::proto::ip::{TcpFlags, build_tcp_v4};

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
    /// Client → VIP, conntrack INVALID (early data, FIN, RST; pure ACKs go to SYNPROXY directly).
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
    /// The timestamp option (TSval, TSecr), if the segment has one (RFC 7323 §3.2).
    pub ts: Option<(u32, u32)>,
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
    /// Send this held client packet through the raw socket (checksums to be recomputed).
    Reinject(Vec<u8>),
    /// Send this segment the binder made itself (an ACK of held data, a RST to the client).
    Send(Vec<u8>),
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
    /// Flows tracked at once per client address.
    pub max_client_flows: usize,
    /// Flows whose server SYN was not seen yet (SYNPROXY has not accepted their cookie).
    pub max_unconfirmed: usize,
    /// The receive window SYNPROXY's SYN-ACK announces (rewritten by nft): the binder's own ACKs
    /// announce at most this much.
    pub window: u16,
    /// SYNPROXY's window scale towards clients that offered scaling (`binder.synproxy.wscale`).
    pub wscale: u8,
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
    /// New flows refused because max_client_flows was reached for their client address.
    pub client_flow_cap: u64,
    /// New flows refused because max_unconfirmed flows await their server SYN.
    pub unconfirmed_cap: u64,
    /// Flows forgotten because no server SYN followed their first segment (no valid cookie).
    pub unconfirmed_expired: u64,
    /// Duplicate server SYNs (older one dropped).
    pub dup_syn: u64,
    /// A client port reused for a new connection while an older incarnation was known.
    pub port_reuse: u64,
    /// Port reused within IPVS's TIME_WAIT with a different class (information: IPVS reschedules
    /// the reused port on non-persistent services, the only kind l7mark accepts for TCP marks).
    pub reuse_class_change: u64,
    /// Stray packets of bound flows dropped.
    pub stray: u64,
    /// Retransmitted server SYN-ACKs after binding, dropped.
    pub synack_retrans: u64,
    /// Flows ended by a client RST before binding.
    pub aborted: u64,
    /// Clients that closed before sending a byte (preconnects): answered with a RST at once.
    pub early_close: u64,
    /// Clients that half-closed before the key was complete: decided (default) at once.
    pub fin_before_key: u64,
    /// ACKs the binder sent for held data (so the client's window keeps opening).
    pub acks_sent: u64,
    /// Released SYNs not answered (IPVS drops a new SYN while the previous connection's
    /// conntrack entry exists): the client's retransmission was given to SYNPROXY again.
    pub retrigger: u64,
    /// Server SYNs of released flows accepted again with their mark.
    pub resent_syn: u64,
    /// Released flows whose SYN-ACK never came within the hold timeout: forgotten.
    pub release_timeout: u64,
    /// Packets of unknown flows in the DONE gate (e.g. after a daemon restart): accepted.
    pub gate_unknown: u64,
}

/// A held packet id and when it arrived.
#[derive(Debug, Clone, Copy)]
struct HeldSyn {
    id: u64,
    since: Instant,
}

/// Client segments held before binding, keyed by their offset from ISN + 1 (so ordering is
/// modulo 2^32, RFC 9293 §3.4), with the payload's offset inside the packet.
#[derive(Debug, Default)]
struct Held {
    segs: BTreeMap<u32, (Vec<u8>, usize)>,
    bytes: usize,
}

/// Where a flow is; what it may hold follows from the variant.
#[derive(Debug)]
enum Phase {
    /// Waiting for the key. May hold SYNPROXY's server SYN (`None`: not seen yet, or the hold
    /// timed out under the drop policy).
    Unbound { syn: Option<HeldSyn>, held: Held },
    /// The server SYN went out with the class's mark; waiting for the real server's SYN-ACK.
    Released { at: Instant, held: Held },
    /// The SYN-ACK came, the held segments were re-injected. `late`: sequence numbers re-injected
    /// after binding (each at most once, so a copy that comes back cannot loop).
    Bound { at: Instant, late: Vec<u32> },
}

#[derive(Debug)]
struct Flow {
    vip: SocketAddrV4,
    created: Instant,
    /// SYNPROXY sent a server SYN for this flow (its cookie was valid).
    confirmed: bool,
    /// A client segment was handed to SYNPROXY as the cookie ACK (lost cookie ACK), and when.
    passed: Option<Instant>,
    /// The binder ACKed client data itself: the client will not send those bytes again.
    acked: bool,
    decided: Option<(u32, Option<usize>)>,
    phase: Phase,
}

impl Flow {
    fn held(&self) -> Option<&Held> {
        match &self.phase {
            Phase::Unbound { held, .. } | Phase::Released { held, .. } => Some(held),
            Phase::Bound { .. } => None,
        }
    }
    fn held_mut(&mut self) -> Option<&mut Held> {
        match &mut self.phase {
            Phase::Unbound { held, .. } | Phase::Released { held, .. } => Some(held),
            Phase::Bound { .. } => None,
        }
    }
    fn held_bytes(&self) -> usize {
        self.held().map_or(0, |h| h.bytes)
    }
    fn is_bound(&self) -> bool {
        matches!(self.phase, Phase::Bound { .. })
    }
}

/// How long a bound flow is remembered (late segments queued before binding are re-injected).
const BOUND_GRACE: Duration = Duration::from_secs(2);
/// IPVS keeps a TCP connection entry in TIME_WAIT for 2 minutes (`tcp_timeouts`).
const IPVS_TIME_WAIT: Duration = Duration::from_secs(120);
/// A flow whose server SYN never came (SYNPROXY refused the segment as a cookie ACK: spoofed, or
/// a stale cookie) is forgotten after this long. SYNPROXY sends the SYN synchronously, within the
/// verdict that hands it the segment.
const UNCONFIRMED_TTL: Duration = Duration::from_secs(1);
/// A released flow whose SYN-ACK has not come this long after the release is given the client's
/// retransmission of its first segment again as a cookie ACK: IPVS may have dropped the SYN
/// (`ip_vs_in_hook`: a reused port whose old conntrack entry still exists,
/// `ip_vs_conn_uses_old_conntrack`). Below Linux's minimum RTO (200 ms), so the first client
/// retransmission qualifies.
const RETRIGGER_AFTER: Duration = Duration::from_millis(100);
/// The binder starts ACKing held data once a flow holds this many segments with the key still
/// incomplete: well below the initial congestion window of 10 segments (RFC 6928), so a client
/// that writes its head in small pieces never stalls, while ordinary 1–3 segment heads are never
/// ACKed by the binder (their client can still retransmit them, which re-triggers a dropped SYN).
pub const ACK_AFTER: usize = 4;
/// A released flow waits this long for the server's SYN-ACK (re-triggers restart the wait),
/// unless the binder ACKed its data, which then waits a hold timeout: those bytes cannot come
/// again.
const RELEASE_WAIT: Duration = Duration::from_secs(1);
/// A data segment belongs to an incarnation if it lies at most this far after its ISN.
const SEQ_WINDOW: u32 = 1 << 24;

type FlowKey = (Ipv4Addr, u16, u32);

/// The state machine of one worker.
pub struct Binder {
    limits: Limits,
    flows: HashMap<FlowKey, Flow>,
    /// ISNs known per client address and port (incarnations).
    isns: HashMap<(Ipv4Addr, u16), Vec<u32>>,
    flows_by_client: HashMap<Ipv4Addr, usize>,
    unconfirmed: usize,
    held_by_client: HashMap<Ipv4Addr, usize>,
    held_total: usize,
    /// Recently bound (client, port, vip) → (mark, when): counts class changes on port reuse.
    recent: HashMap<(SocketAddrV4, SocketAddrV4), (u32, Instant)>,
    /// Counters.
    pub stats: Stats,
    /// Setup times of bound connections (first event → re-injection), for percentiles.
    pub setup_times: Vec<Duration>,
}

/// `seq - isn` modulo 2^32: how far `seq` lies after `isn` (RFC 9293 §3.4 serial arithmetic).
fn seq_after(seq: u32, isn: u32) -> u32 {
    seq.wrapping_sub(isn)
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Binder {
    /// A binder with these limits.
    pub fn new(limits: Limits) -> Binder {
        Binder {
            limits,
            flows: HashMap::new(),
            isns: HashMap::new(),
            flows_by_client: HashMap::new(),
            unconfirmed: 0,
            held_by_client: HashMap::new(),
            held_total: 0,
            recent: HashMap::new(),
            stats: Stats::default(),
            setup_times: Vec::new(),
        }
    }

    /// Unbound flows tracked (not bound yet: waiting for the key or for the server's SYN-ACK).
    pub fn unbound_flows(&self) -> usize {
        self.flows.values().filter(|f| !f.is_bound()).count()
    }

    /// Bytes held in total.
    pub fn held_bytes(&self) -> usize {
        self.held_total
    }

    /// Held server SYNs.
    pub fn held_syns(&self) -> usize {
        self.flows
            .values()
            .filter(|f| matches!(f.phase, Phase::Unbound { syn: Some(_), .. }))
            .count()
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
            Kind::PreSeqadj => self.pre_seqadj(id, seg, cls, &mut out),
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

    /// Get or create the flow of incarnation `isn` (`confirmed`: created by SYNPROXY's server
    /// SYN). `None` when a cap refuses a new flow (counted).
    fn flow(&mut self, now: Instant, seg: &Seg<'_>, isn: u32, confirmed: bool) -> Option<FlowKey> {
        let key = Self::key_of(seg, isn);
        if self.flows.contains_key(&key) {
            return Some(key);
        }
        let ip = *seg.client.ip();
        if self.flows.len() >= self.limits.max_flows {
            self.stats.flow_cap += 1;
            return None;
        }
        if self.flows_by_client.get(&ip).copied().unwrap_or(0) >= self.limits.max_client_flows {
            self.stats.client_flow_cap += 1;
            return None;
        }
        if !confirmed && self.unconfirmed >= self.limits.max_unconfirmed {
            self.stats.unconfirmed_cap += 1;
            return None;
        }
        let ids = self.isns.entry((ip, seg.client.port())).or_default();
        if !ids.is_empty() {
            self.stats.port_reuse += 1;
        }
        ids.push(isn);
        *self.flows_by_client.entry(ip).or_default() += 1;
        if !confirmed {
            self.unconfirmed += 1;
        }
        self.flows.insert(
            key,
            Flow {
                vip: seg.vip,
                created: now,
                confirmed,
                passed: None,
                acked: false,
                decided: None,
                phase: Phase::Unbound {
                    syn: None,
                    held: Held::default(),
                },
            },
        );
        Some(key)
    }

    /// The flow's server SYN was seen: it is confirmed.
    fn confirm(&mut self, key: FlowKey) {
        if let Some(f) = self.flows.get_mut(&key) {
            if !f.confirmed {
                f.confirmed = true;
                self.unconfirmed = self.unconfirmed.saturating_sub(1);
            }
        }
    }

    /// Forget a flow; a SYN it still holds is dropped (every packet gets its verdict).
    fn forget(&mut self, key: FlowKey, out: &mut Vec<Action>) {
        if let Some(f) = self.flows.remove(&key) {
            if !f.confirmed {
                self.unconfirmed = self.unconfirmed.saturating_sub(1);
            }
            if let Some(n) = self.flows_by_client.get_mut(&key.0) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.flows_by_client.remove(&key.0);
                }
            }
            let bytes = f.held_bytes();
            if let Phase::Unbound { syn: Some(s), .. } = f.phase {
                out.push(Action::Drop { id: s.id });
            }
            self.release_bytes(key.0, bytes);
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
        let off = seq_after(seg.seq, key.2.wrapping_add(1));
        let n = seg.packet.len();
        let by_client = self.held_by_client.get(&key.0).copied().unwrap_or(0);
        let (limits, held_total) = (&self.limits, self.held_total);
        let Some(held) = self.flows.get_mut(&key).and_then(Flow::held_mut) else {
            return false;
        };
        if held.segs.contains_key(&off) {
            return true; // a retransmission of a segment we have
        }
        if held.bytes + n > limits.max_flow_bytes
            || by_client + n > limits.max_client_bytes
            || held_total + n > limits.max_total_bytes
        {
            self.stats.cap_drops += 1;
            return false;
        }
        let offset = seg.packet.len() - seg.payload.len();
        held.segs.insert(off, (seg.packet.to_vec(), offset));
        held.bytes += n;
        *self.held_by_client.entry(key.0).or_default() += n;
        self.held_total += n;
        self.stats.held_segments += 1;
        true
    }

    /// The contiguous client byte stream from ISN + 1 held so far (at most `cap` bytes).
    fn stream(held: &Held, cap: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next: u32 = 0; // offset from ISN + 1
        for (&off, (pkt, poff)) in &held.segs {
            if off > next {
                break; // a hole: later bytes are not usable yet
            }
            let payload = pkt.get(*poff..).unwrap_or(&[]);
            let skip = (next - off) as usize; // bytes of this segment we already have
            if skip >= payload.len() {
                continue;
            }
            let part = payload.get(skip..).unwrap_or(&[]);
            out.extend_from_slice(part);
            next = next.wrapping_add(len32(part.len()));
            if out.len() >= cap {
                break;
            }
        }
        out
    }

    /// Classify what the flow holds, if not decided yet. `fin`: the client half-closed, no more
    /// bytes will come, so an incomplete key is decided now (default mark).
    fn try_decide(&mut self, key: FlowKey, cls: &dyn Classifier, fin: bool) {
        let Some(f) = self.flows.get(&key) else {
            return;
        };
        if f.decided.is_some() {
            return;
        }
        let Some(held) = f.held() else { return };
        let bytes = Self::stream(held, self.limits.max_key_bytes);
        if bytes.is_empty() && !fin {
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
            KeyState::NeedMore if fin => {
                self.stats.fin_before_key += 1;
                Some((cls.default_mark(), None))
            }
            KeyState::NeedMore => None,
        };
        if let (Some(d), Some(f)) = (decision, self.flows.get_mut(&key)) {
            f.decided = Some(d);
        }
    }

    /// Release the held server SYN if the flow is decided: Unbound → Released.
    fn release_if_decided(&mut self, key: FlowKey, now: Instant, out: &mut Vec<Action>) {
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        let Some((mark, rule)) = f.decided else {
            return;
        };
        let Phase::Unbound { syn: Some(_), .. } = f.phase else {
            return;
        };
        let old = std::mem::replace(
            &mut f.phase,
            Phase::Bound {
                at: now,
                late: Vec::new(),
            },
        );
        let Phase::Unbound { syn: Some(s), held } = old else {
            return;
        };
        f.phase = Phase::Released { at: now, held };
        out.push(Action::Accept {
            id: s.id,
            mark: Some(mark),
            done: false,
        });
        if rule.is_some() {
            self.stats.classified += 1;
        } else {
            self.stats.defaulted += 1;
        }
    }

    /// While the key is incomplete, ACK the contiguous bytes held so the client's congestion and
    /// receive windows keep opening (nothing else acknowledges them before binding: without this a
    /// head longer than the initial window, or sent in 1-byte segments, would wait for the hold
    /// timeout). The ACK comes from SYNPROXY's side of the connection: seq = the client's ACK
    /// (cookie ISN + 1).
    fn ack_held(&mut self, key: FlowKey, seg: &Seg<'_>, out: &mut Vec<Action>) {
        let limits = &self.limits;
        let Some(f) = self.flows.get_mut(&key) else {
            return;
        };
        if f.decided.is_some() || seg.flags & flags::ACK == 0 {
            return;
        }
        let Phase::Unbound { held, .. } = &f.phase else {
            return;
        };
        if held.segs.len() < ACK_AFTER {
            return;
        }
        let bytes = Self::stream(held, usize::MAX);
        if bytes.is_empty() {
            return;
        }
        let room = limits.max_flow_bytes.saturating_sub(held.bytes);
        let room = room.min(usize::from(limits.window));
        // SYNPROXY encodes the client's options in its SYN-ACK's TSval, which the client echoes as
        // TSecr: the low 4 bits are the client's wscale, or 0xf when it offered none
        // (nf_synproxy_core.c synproxy_init_timestamp_cookie); only then did SYNPROXY's SYN-ACK
        // announce `limits.wscale`, and the client scales our window by it.
        let shift = match seg.ts {
            Some((_, tsecr)) if tsecr & 0xf != 0xf => u32::from(limits.wscale.min(14)),
            _ => 0,
        };
        let window = u16::try_from(room >> shift).unwrap_or(u16::MAX);
        // TSval = the client's TSecr: never older than what the client has seen from this side,
        // so its PAWS check passes (RFC 7323 §5.3); TSecr echoes the client's TSval.
        let ts = seg.ts.map(|(tsval, tsecr)| (tsecr, tsval));
        let ack = key.2.wrapping_add(1).wrapping_add(len32(bytes.len()));
        out.push(Action::Send(build_tcp_v4(
            seg.vip,
            seg.client,
            seg.ack,
            ack,
            TcpFlags::ACK,
            window,
            ts,
        )));
        f.acked = true;
        self.stats.acks_sent += 1;
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
        let pure = seg.payload.is_empty() && seg.flags & flags::FIN == 0;
        if seg.flags & flags::RST != 0 {
            // The client gave up before binding: forget it at once; there is no server
            // connection to reset yet (a held SYN is dropped, so none will be opened).
            if let Some(key) = found {
                if self.flows.get(&key).is_some_and(|f| !f.is_bound()) {
                    self.stats.aborted += 1;
                    self.forget(key, out);
                }
            }
            // Bound or unknown: SYNPROXY must not take an RST|ACK for a cookie ACK (nft's
            // synproxy has no FIN/RST filter).
            out.push(Action::Drop { id });
            return;
        }
        let Some(key) = found else {
            if pure || seg.payload.is_empty() {
                // A pure ACK (an older ruleset still queues them) or a bare FIN of an unknown
                // flow: SYNPROXY judges the cookie; a valid one makes it send the server SYN,
                // which creates the flow here. A flood of invalid ones costs no flow entry.
                out.push(Action::pass(id));
                return;
            }
            // Data of an unknown flow: its cookie ACK was lost. Hold a copy and hand the segment
            // to SYNPROXY as the cookie ACK (ISN = seq - 1); the flow is unconfirmed until the
            // server SYN shows that the cookie was valid.
            let isn = seg.seq.wrapping_sub(1);
            if let Some(key) = self.flow(now, seg, isn, false) {
                if self.hold(key, seg) {
                    if let Some(f) = self.flows.get_mut(&key) {
                        f.passed = Some(now);
                    }
                } else {
                    self.forget(key, out);
                }
            }
            out.push(Action::pass(id));
            return;
        };
        let isn = key.2;
        let first_seq = seq_after(seg.seq, isn) == 1;
        let Some(f) = self.flows.get_mut(&key) else {
            out.push(Action::Drop { id });
            return;
        };
        match &mut f.phase {
            Phase::Bound { at, late } => {
                let at = *at;
                if pure {
                    if !first_seq {
                        // The cookie ACK of a new connection on a reused port (Linux ISNs of one
                        // 4-tuple lie close together, so its sequence number falls into the old
                        // connection's window), or a stray: SYNPROXY's cookie check tells.
                        out.push(Action::pass(id));
                        return;
                    }
                    self.stats.stray += 1;
                    out.push(Action::Drop { id });
                    return;
                }
                // Queued before the binding, handled after it: re-inject once (conntrack now has
                // seqadj). A copy that comes back (it did not reach the server) is dropped.
                let first = !late.contains(&seg.seq);
                if first {
                    late.push(seg.seq);
                }
                if !seg.payload.is_empty() && now.duration_since(at) < BOUND_GRACE && first {
                    out.push(Action::Reinject(seg.packet.to_vec()));
                    self.stats.reinjected += 1;
                } else {
                    self.stats.stray += 1;
                }
                out.push(Action::Drop { id });
            }
            Phase::Released { at, .. } => {
                let released = *at;
                if pure {
                    out.push(Action::Drop { id });
                    return;
                }
                let _ = self.hold(key, seg);
                if first_seq && now.duration_since(released) >= RETRIGGER_AFTER {
                    // No SYN-ACK yet: IPVS may have dropped the SYN (the old connection's
                    // conntrack entry on a reused port). The client's retransmission of its
                    // first segment goes to SYNPROXY as a cookie ACK: a new server SYN follows.
                    self.stats.retrigger += 1;
                    if let Some(Phase::Released { at, .. }) =
                        self.flows.get_mut(&key).map(|f| &mut f.phase)
                    {
                        *at = now;
                    }
                    out.push(Action::pass(id));
                } else {
                    out.push(Action::Drop { id });
                }
            }
            Phase::Unbound { held, .. } => {
                if pure {
                    // A repeated cookie ACK: SYNPROXY answers it with another server SYN.
                    if first_seq {
                        out.push(Action::pass(id));
                    } else {
                        out.push(Action::Drop { id });
                    }
                    return;
                }
                if seg.payload.is_empty() && held.bytes == 0 {
                    // FIN before any byte (a browser preconnect, a peer probe): nothing to
                    // classify and nobody to serve. Answer with a RST so the client leaves
                    // FIN-WAIT at once; seq = its ACK, exactly its RCV.NXT (RFC 5961 §3.2). Handing
                    // the FIN to SYNPROXY instead would make every retransmission open a new
                    // server SYN (the cookie is still valid).
                    self.stats.early_close += 1;
                    out.push(Action::Send(build_tcp_v4(
                        seg.vip,
                        seg.client,
                        seg.ack,
                        0,
                        TcpFlags::RST,
                        0,
                        None,
                    )));
                    self.forget(key, out);
                    out.push(Action::Drop { id });
                    return;
                }
                let fin = seg.flags & flags::FIN != 0;
                let lost_ack = !f.confirmed && f.passed.is_none() && first_seq;
                if !self.hold(key, seg) {
                    out.push(Action::Drop { id });
                    return;
                }
                self.try_decide(key, cls, fin);
                self.ack_held(key, seg, out);
                if lost_ack {
                    // The cookie ACK was lost: this first segment (seq = ISN + 1) serves as it
                    // (SYNPROXY consumes it; our copy is re-injected after binding).
                    if let Some(f) = self.flows.get_mut(&key) {
                        f.passed = Some(now);
                    }
                    out.push(Action::pass(id));
                } else {
                    out.push(Action::Drop { id });
                }
                self.release_if_decided(key, now, out);
            }
        }
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
            if let Some(f) = self.flows.get_mut(&(ck.0, ck.1, old)) {
                if let Phase::Unbound { syn, .. } = &mut f.phase {
                    if let Some(s) = syn.take() {
                        out.push(Action::Drop { id: s.id });
                    }
                }
            }
        }
        let Some(key) = self.flow(now, seg, isn, true) else {
            out.push(Action::Accept {
                id,
                mark: Some(cls.default_mark()),
                done: false,
            });
            self.stats.defaulted += 1;
            return;
        };
        self.confirm(key);
        let Some(f) = self.flows.get_mut(&key) else {
            out.push(Action::Drop { id });
            return;
        };
        let mark = f.decided.map(|d| d.0);
        match &mut f.phase {
            Phase::Bound { .. } => {
                // SYNPROXY re-sent a SYN for a bound flow: same mark again.
                out.push(Action::Accept {
                    id,
                    mark,
                    done: false,
                });
            }
            Phase::Released { at, .. } => {
                // A re-triggered SYN (see RETRIGGER_AFTER): out again with the flow's mark.
                *at = now;
                self.stats.resent_syn += 1;
                out.push(Action::Accept {
                    id,
                    mark,
                    done: false,
                });
            }
            Phase::Unbound { syn, .. } => {
                if let Some(old) = syn.replace(HeldSyn { id, since: now }) {
                    // A duplicate (the client repeated its cookie ACK): the newer replaces it.
                    self.stats.dup_syn += 1;
                    out.push(Action::Drop { id: old.id });
                }
                self.try_decide(key, cls, false);
                self.release_if_decided(key, now, out);
            }
        }
    }

    fn server_synack(&mut self, now: Instant, id: u64, seg: &Seg<'_>, out: &mut Vec<Action>) {
        // The SYN-ACK acknowledges the client's ISN + 1.
        let key = Self::key_of(seg, seg.ack.wrapping_sub(1));
        let Some(f) = self.flows.get(&key) else {
            out.push(Action::pass(id));
            return;
        };
        if f.is_bound() {
            // SYNPROXY completed this connection already: a retransmitted SYN-ACK must not
            // reach it again.
            self.stats.synack_retrans += 1;
            out.push(Action::Drop { id });
            return;
        }
        // Accept first: the verdict returns once SYNPROXY has sent the server ACK and armed
        // seqadj; only then are the held client segments valid to send.
        out.push(Action::pass(id));
        let Some((created, mark, vip)) = self.bind(key, now, out) else {
            return;
        };
        self.stats.bound += 1;
        self.setup_times.push(now.duration_since(created));
        if self.setup_times.len() > 4096 {
            self.setup_times.drain(..2048);
        }
        if let Some(mark) = mark {
            if let Some((old, at)) = self.recent.insert((seg.client, vip), (mark, now)) {
                if old != mark && now.duration_since(at) < IPVS_TIME_WAIT {
                    self.stats.reuse_class_change += 1;
                }
            }
        }
    }

    /// The flow is bound now: a SYN it still holds is dropped (the server answered an earlier
    /// one), what it holds is re-injected in sequence order, its bytes are released. Returns when
    /// the flow was created, its mark and its VIP.
    fn bind(
        &mut self,
        key: FlowKey,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Option<(Instant, Option<u32>, SocketAddrV4)> {
        let f = self.flows.get_mut(&key)?;
        let old = std::mem::replace(
            &mut f.phase,
            Phase::Bound {
                at: now,
                late: Vec::new(),
            },
        );
        let held = match old {
            Phase::Unbound { syn, held } => {
                if let Some(s) = syn {
                    out.push(Action::Drop { id: s.id });
                }
                held
            }
            Phase::Released { held, .. } => held,
            Phase::Bound { at, late } => {
                f.phase = Phase::Bound { at, late };
                return None;
            }
        };
        let info = (f.created, f.decided.map(|d| d.0), f.vip);
        for (_, (pkt, _)) in held.segs {
            out.push(Action::Reinject(pkt));
            self.stats.reinjected += 1;
        }
        self.release_bytes(key.0, held.bytes);
        Some(info)
    }

    fn pre_seqadj(&mut self, id: u64, seg: &Seg<'_>, cls: &dyn Classifier, out: &mut Vec<Action>) {
        let Some(key) = self.find_by_seq(seg) else {
            // Unknown (e.g. after a restart): drop; the client retransmits once seqadj is armed.
            out.push(Action::Drop { id });
            return;
        };
        if self.flows.get(&key).is_some_and(Flow::is_bound) {
            out.push(Action::pass(id));
            return;
        }
        if seg.flags & flags::RST != 0 {
            // The client gave up (its RST|ACK matches this queue's rule too): forget it at once.
            self.stats.aborted += 1;
            self.forget(key, out);
            out.push(Action::Drop { id });
            return;
        }
        let fin = seg.flags & flags::FIN != 0;
        if (!seg.payload.is_empty() || fin) && self.hold(key, seg) {
            self.try_decide(key, cls, fin);
        }
        out.push(Action::Drop { id });
    }

    fn done_gate(&mut self, now: Instant, id: u64, seg: &Seg<'_>, out: &mut Vec<Action>) {
        match self.find_by_seq(seg) {
            // seqadj is armed but we never saw the SYN-ACK (it passed while we were restarting):
            // what we hold goes out first.
            Some(key) if self.flows.get(&key).is_some_and(|f| !f.is_bound()) => {
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

    /// Timers: hold timeouts and garbage collection. Call at least every 100 ms. Every phase has
    /// a bounded life, so held bytes and unbound flows are gone within the hold timeout + 1 s
    /// after a client's last packet.
    pub fn on_timer(&mut self, now: Instant, cls: &dyn Classifier) -> Vec<Action> {
        let mut out = Vec::new();
        let mut forget = Vec::new();
        let hold = self.limits.hold_timeout;
        for (key, f) in &mut self.flows {
            match &mut f.phase {
                Phase::Bound { at, .. } => {
                    if now.duration_since(*at) > BOUND_GRACE {
                        forget.push(*key);
                    }
                }
                Phase::Released { at, .. } => {
                    let wait = if f.acked { hold } else { RELEASE_WAIT };
                    if now.duration_since(*at) >= wait {
                        self.stats.release_timeout += 1;
                        forget.push(*key);
                    }
                }
                Phase::Unbound { syn: Some(s), .. } => {
                    if now.duration_since(s.since) < hold {
                        continue;
                    }
                    self.stats.hold_timeouts += 1;
                    // Data the binder ACKed will not come again: such a flow is never dropped.
                    if self.limits.on_hold_timeout == HoldPolicy::Drop && !f.acked {
                        // The client's next data segment (a retransmission of seq ISN + 1)
                        // serves as a fresh cookie ACK within the cookie lifetime.
                        forget.push(*key);
                        continue;
                    }
                    let id = s.id;
                    self.stats.defaulted += 1;
                    f.decided = Some((cls.default_mark(), None));
                    let old = std::mem::replace(
                        &mut f.phase,
                        Phase::Released {
                            at: now,
                            held: Held::default(),
                        },
                    );
                    if let Phase::Unbound { held, .. } = old {
                        f.phase = Phase::Released { at: now, held };
                    }
                    out.push(Action::Accept {
                        id,
                        mark: Some(cls.default_mark()),
                        done: false,
                    });
                }
                Phase::Unbound { syn: None, .. } => {
                    // No server SYN: an unconfirmed flow (SYNPROXY refused its segment), or one
                    // whose SYN was superseded by a newer incarnation.
                    let limit = if f.confirmed { hold } else { UNCONFIRMED_TTL };
                    if now.duration_since(f.created) > limit {
                        if !f.confirmed {
                            self.stats.unconfirmed_expired += 1;
                        }
                        forget.push(*key);
                    }
                }
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
            if let Phase::Unbound { syn: Some(s), .. } = f.phase {
                let mark = f.decided.map_or(cls.default_mark(), |d| d.0);
                out.push(Action::Accept {
                    id: s.id,
                    mark: Some(mark),
                    done: false,
                });
            }
        }
        self.flows.clear();
        self.isns.clear();
        self.flows_by_client.clear();
        self.unconfirmed = 0;
        self.held_by_client.clear();
        self.held_total = 0;
        out
    }
}
