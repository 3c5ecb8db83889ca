//! TCP delayed binding with the kernel's SYNPROXY, so IPVS schedules a connection by its first
//! payload (HTTP Host/URL, TLS SNI). Background: docs/architecture.md and the kernel walk in
//! [`machine`].
//!
//! - [`machine`]: the pure per-worker state machine (events in, actions out).
//! - [`Worker`] (this file): the glue for one verdict thread — turns queued packets into events,
//!   keeps the held (unverdicted) server SYNs, carries out the actions in order (verdicts, raw
//!   re-injection with recomputed checksums) and exports counters.

pub mod machine;
#[cfg(test)]
mod machine_tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddrV4};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::classify;
use crate::config::{Config, QueueKind, ServiceProto};
use crate::control::store::Snapshot;
use crate::metrics::Metrics;
use crate::nfqueue::{Message, NfqError, QueueSet, Verdict};
use crate::proto::{Parsed, http, ip, tls};
use machine::{Action, Binder, Classifier, KeyState, Kind, Limits, Seg, Stats};

use crate::config::CT_DONE_BIT;

/// What the binder workers publish for metrics and health (one entry per worker).
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Counters of the state machine.
    pub stats: Stats,
    /// Unbound connections tracked.
    pub unbound_flows: usize,
    /// Server SYNs held.
    pub held_syns: usize,
    /// Client bytes held.
    pub held_bytes: usize,
    /// Re-injections the kernel refused.
    pub reinject_errors: u64,
    /// Recent setup times (first event → re-injection), microseconds.
    pub setup_us: Vec<u64>,
}

/// Errors creating a binder worker.
#[derive(Debug, thiserror::Error)]
pub enum BinderError {
    /// The raw socket for re-injection could not be opened (needs CAP_NET_RAW).
    #[error("cannot open the raw IPv4 socket for re-injection (CAP_NET_RAW needed)")]
    RawSocket(#[source] std::io::Error),
}

/// The binder side of one verdict thread.
pub struct Worker {
    machine: Binder,
    raw: Socket,
    held: HashMap<u64, Message>,
    services: HashMap<SocketAddrV4, ServiceProto>,
    gauges: Arc<Mutex<Gauges>>,
    reinject_errors: u64,
    last_publish: Instant,
}

/// The classifier over one table snapshot.
struct TableClassifier<'a> {
    snap: &'a Snapshot,
    services: &'a HashMap<SocketAddrV4, ServiceProto>,
}

impl Classifier for TableClassifier<'_> {
    fn classify(&self, vip: SocketAddrV4, bytes: &[u8]) -> KeyState {
        let table = &self.snap.table;
        // The same decisions `l7mark explain` and `POST /v1/explain` print (classify.rs).
        let decision = match self.services.get(&vip) {
            Some(ServiceProto::Http) => match http::parse_request(bytes) {
                Parsed::Key(req) => classify::decision_http(&req, table),
                Parsed::NotThisProtocol(r) => return KeyState::Unparseable(r.0),
                Parsed::NeedMore => return KeyState::NeedMore,
            },
            Some(ServiceProto::Tls) => match tls::parse_client_hello(bytes) {
                Parsed::Key(hello) => classify::decision_tls(&hello, table),
                Parsed::NotThisProtocol(r) => return KeyState::Unparseable(r.0),
                Parsed::NeedMore => return KeyState::NeedMore,
            },
            _ => return KeyState::Unparseable("no tcp service at this address"),
        };
        if let Some(h) = decision.rule.and_then(|r| self.snap.hits.get(r)) {
            h.fetch_add(1, Relaxed);
        }
        KeyState::Decided {
            mark: decision.mark,
            rule: decision.rule,
        }
    }

    fn default_mark(&self) -> u32 {
        self.snap.table.default_mark()
    }
}

impl Worker {
    /// A binder worker for `cfg`'s TCP services, publishing into `gauges`.
    pub fn new(cfg: &Config, gauges: Arc<Mutex<Gauges>>) -> Result<Worker, BinderError> {
        let raw = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map_err(BinderError::RawSocket)?;
        let services = cfg
            .tcp_services()
            .filter_map(|s| match s.vip {
                IpAddr::V4(a) => Some((SocketAddrV4::new(a, s.port), s.proto)),
                IpAddr::V6(_) => None,
            })
            .collect();
        let b = &cfg.binder;
        Ok(Worker {
            machine: Binder::new(Limits {
                hold_timeout: Duration::from_millis(b.hold_timeout_ms),
                on_hold_timeout: b.on_hold_timeout,
                max_key_bytes: b.max_key_bytes,
                max_flow_bytes: b.max_flow_bytes,
                max_client_bytes: b.max_client_bytes,
                max_total_bytes: b.max_total_bytes,
                max_flows: b.max_flows,
                max_client_flows: b.max_client_flows,
                max_unconfirmed: b.max_unconfirmed,
                window: b.window,
                wscale: b.synproxy.wscale,
            }),
            raw,
            held: HashMap::new(),
            services,
            gauges,
            reinject_errors: 0,
            last_publish: Instant::now(),
        })
    }

    /// Handle one queued packet of a binder queue. The message is verdicted (now or later).
    pub fn on_message(
        &mut self,
        set: &mut QueueSet,
        kind: QueueKind,
        msg: Message,
        snap: &Snapshot,
        metrics: &Metrics,
    ) {
        let kind = match kind {
            QueueKind::ClientInvalid => Kind::ClientInvalid,
            QueueKind::ServerSyn => Kind::ServerSyn,
            QueueKind::ServerSynAck => Kind::ServerSynAck,
            QueueKind::PreSeqadj => Kind::PreSeqadj,
            QueueKind::DoneGate => Kind::DoneGate,
            QueueKind::Datagram => {
                verdict(set, msg, Verdict::Accept, metrics);
                return;
            }
        };
        let id = packet_key(&msg);
        let actions = {
            let pkt = match ip::parse_packet(msg.get_payload()) {
                Ok(p) => p,
                Err(e) => {
                    metrics.unparseable_reason(e.as_counter_label());
                    verdict(set, msg, Verdict::Accept, metrics);
                    return;
                }
            };
            let (ip::Transport::Tcp(tcp), IpAddr::V4(src), IpAddr::V4(dst)) =
                (&pkt.transport, pkt.flow.src, pkt.flow.dst)
            else {
                metrics.unparseable_reason("binder: not tcp over ipv4");
                verdict(set, msg, Verdict::Accept, metrics);
                return;
            };
            let (client, vip) = if kind == Kind::ServerSynAck {
                // Real server → client: the VIP is the connection's original destination, which
                // this packet does not carry; the machine finds the flow by the client.
                (
                    SocketAddrV4::new(dst, pkt.flow.dport),
                    SocketAddrV4::new(src, pkt.flow.sport),
                )
            } else {
                (
                    SocketAddrV4::new(src, pkt.flow.sport),
                    SocketAddrV4::new(dst, pkt.flow.dport),
                )
            };
            let seg = Seg {
                client,
                vip,
                seq: tcp.seq,
                ack: tcp.ack,
                flags: tcp.flags.0,
                ts: tcp.options.timestamp,
                payload: pkt.payload,
                packet: msg.get_payload(),
            };
            let cls = TableClassifier {
                snap,
                services: &self.services,
            };
            self.machine.on_packet(Instant::now(), kind, id, &seg, &cls)
        };
        let mut current = Some(msg);
        self.execute(set, actions, &mut current, metrics);
        if let Some(msg) = current {
            // Not verdicted yet: a held server SYN.
            self.held.insert(id, msg);
        }
    }

    /// Timers (hold timeouts, garbage collection) and metrics publication.
    pub fn on_tick(&mut self, set: &mut QueueSet, snap: &Snapshot, metrics: &Metrics) {
        let cls = TableClassifier {
            snap,
            services: &self.services,
        };
        let actions = self.machine.on_timer(Instant::now(), &cls);
        self.execute(set, actions, &mut None, metrics);
        if self.last_publish.elapsed() >= Duration::from_millis(200) {
            self.publish();
        }
    }

    /// Shutdown: verdict everything held.
    pub fn drain(&mut self, set: &mut QueueSet, snap: &Snapshot, metrics: &Metrics) {
        let cls = TableClassifier {
            snap,
            services: &self.services,
        };
        let actions = self.machine.drain(&cls);
        self.execute(set, actions, &mut None, metrics);
        // Anything still held (cannot happen if the machine is right) is accepted.
        for (_, msg) in self.held.drain() {
            verdict(set, msg, Verdict::Accept, metrics);
        }
        self.publish();
    }

    fn publish(&mut self) {
        self.last_publish = Instant::now();
        if let Ok(mut g) = self.gauges.lock() {
            g.stats = self.machine.stats.clone();
            g.unbound_flows = self.machine.unbound_flows();
            g.held_syns = self.held.len();
            g.held_bytes = self.machine.held_bytes();
            g.reinject_errors = self.reinject_errors;
            g.setup_us = self
                .machine
                .setup_times
                .iter()
                .rev()
                .take(1024)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                .collect();
        }
    }

    fn execute(
        &mut self,
        set: &mut QueueSet,
        actions: Vec<Action>,
        current: &mut Option<Message>,
        metrics: &Metrics,
    ) {
        for a in actions {
            match a {
                Action::Accept { id, mark, done } => {
                    if let Some(mut msg) = take(current, &mut self.held, id) {
                        if let Some(m) = mark {
                            msg.set_nfmark(m);
                        }
                        if done {
                            msg.set_ct_mark(CT_DONE_BIT, CT_DONE_BIT);
                        }
                        verdict(set, msg, Verdict::Accept, metrics);
                    }
                }
                Action::Drop { id } => {
                    if let Some(msg) = take(current, &mut self.held, id) {
                        verdict(set, msg, Verdict::Drop, metrics);
                    }
                }
                Action::Reinject(mut pkt) | Action::Send(mut pkt) => {
                    // Checksums: the copy may carry a partial (offloaded) checksum.
                    let dst = match ip::parse_packet(&pkt) {
                        Ok(p) => p.flow.dst,
                        Err(_) => continue,
                    };
                    if ip::tcp_checksum_fixup(&mut pkt).is_err() {
                        self.reinject_errors += 1;
                        continue;
                    }
                    let IpAddr::V4(d) = dst else { continue };
                    let to = SockAddr::from(SocketAddrV4::new(d, 0));
                    if self.raw.send_to(&pkt, &to).is_err() {
                        self.reinject_errors += 1;
                    }
                }
            }
        }
    }
}

/// NFQUEUE packet ids count per queue, and a worker owns several queues.
fn packet_key(msg: &Message) -> u64 {
    (u64::from(msg.get_queue_num()) << 32) | u64::from(msg.get_packet_id())
}

fn take(
    current: &mut Option<Message>,
    held: &mut HashMap<u64, Message>,
    id: u64,
) -> Option<Message> {
    if current.as_ref().is_some_and(|m| packet_key(m) == id) {
        return current.take();
    }
    held.remove(&id)
}

fn verdict(set: &mut QueueSet, msg: Message, v: Verdict, metrics: &Metrics) {
    if let Err(e) = set.verdict(msg, v) {
        metrics.verdict_errors.fetch_add(1, Relaxed);
        let NfqError::Verdict(_) = e else { return };
    }
}
