//! The verdict threads: one worker per `queues.workers`, each owning one NFQUEUE socket bound to
//! one queue per event kind ([`QueueKind`]).
//!
//! A worker never blocks on anything but its socket, reads the rule table through one lock-free
//! snapshot load per packet, and gives **every** packet exactly one verdict: the classification's
//! mark, or on any error the packet's own mark (the default mark the nft rule set before queueing)
//! and a counter. Shutdown is cooperative: the flag is checked at least every poll interval, and
//! the worker verdicts whatever it still holds before it returns.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::binder::{self, Gauges};
use crate::classify;
use crate::config::{Config, QueueKind, queue_owner};
use crate::control::store::RuleStore;
use crate::metrics::{Metrics, Outcome};
use crate::nfqueue::{Message, NfqError, QueueOptions, QueueSet, Verdict};

/// How often an idle worker wakes to check the shutdown flag and run timers.
const POLL: Duration = Duration::from_millis(100);

/// What the workers share.
pub struct Shared {
    /// The rule table owner.
    pub store: Arc<RuleStore>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Set to stop the workers.
    pub shutdown: Arc<AtomicBool>,
    /// The binder's gauges, one per worker (empty without TCP services).
    pub binder: Vec<Arc<Mutex<Gauges>>>,
}

/// Errors starting the workers.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A queue could not be opened or bound.
    #[error("worker {worker}: cannot set up its queues")]
    Queue {
        /// Worker index.
        worker: u16,
        /// Cause.
        #[source]
        source: NfqError,
    },
    /// The OS refused a thread.
    #[error("cannot start worker thread")]
    Thread(#[source] std::io::Error),
    /// The binder could not be set up.
    #[error("worker {worker}: cannot set up the TCP binder")]
    Binder {
        /// Worker index.
        worker: u16,
        /// Cause.
        #[source]
        source: binder::BinderError,
    },
}

/// The binder gauges the workers will publish into (one per worker; none without TCP services).
pub fn binder_gauges(cfg: &Config) -> Vec<Arc<Mutex<Gauges>>> {
    if cfg.tcp_services().next().is_none() {
        return Vec::new();
    }
    (0..cfg.queues.workers)
        .map(|_| Arc::new(Mutex::new(Gauges::default())))
        .collect()
}

/// Bind every worker's queues (so start-up fails before anything runs if one can't be had), then
/// start the worker threads.
pub fn start(
    cfg: &Config,
    shared: &Arc<Shared>,
) -> Result<Vec<thread::JoinHandle<()>>, EngineError> {
    let mut sets = Vec::new();
    for w in 0..cfg.queues.workers {
        let queues: Vec<(u16, QueueOptions)> = QueueKind::ALL
            .iter()
            .map(|&kind| {
                let opts = QueueOptions {
                    max_len: cfg.queues.max_len,
                    // Client packets of a flow whose server side is half-open must never reach
                    // IPVS untranslated: that queue drops rather than fails open.
                    fail_open: cfg.queues.fail_open && kind != QueueKind::PreSeqadj,
                    // The event kind is explicit in the queue number; the binder needs no ct info.
                    conntrack: false,
                };
                (cfg.queue_num(kind, w), opts)
            })
            .collect();
        let set = QueueSet::open(&queues, cfg.queues.rcvbuf_bytes)
            .map_err(|source| EngineError::Queue { worker: w, source })?;
        let binder = match shared.binder.get(usize::from(w)) {
            Some(g) => Some(
                binder::Worker::new(cfg, Arc::clone(g))
                    .map_err(|source| EngineError::Binder { worker: w, source })?,
            ),
            None => None,
        };
        sets.push((set, binder));
    }
    let mut handles = Vec::new();
    for (w, (set, binder)) in sets.into_iter().enumerate() {
        let shared = Arc::clone(shared);
        let (base, workers) = (cfg.queues.base, cfg.queues.workers);
        let h = thread::Builder::new()
            .name(format!("l7mark-w{w}"))
            .spawn(move || worker(set, binder, &shared, base, workers))
            .map_err(EngineError::Thread)?;
        handles.push(h);
    }
    Ok(handles)
}

fn worker(
    mut set: QueueSet,
    mut binder: Option<binder::Worker>,
    shared: &Shared,
    base: u16,
    workers: u16,
) {
    let m = &shared.metrics;
    let mut last_tick = Instant::now();
    while !shared.shutdown.load(Relaxed) {
        if let Some(b) = binder.as_mut() {
            if last_tick.elapsed() >= POLL {
                last_tick = Instant::now();
                b.on_tick(&mut set, &shared.store.load(), m);
            }
        }
        let msg = match set.recv_timeout(POLL) {
            Ok(Some(msg)) => msg,
            Ok(None) => continue,
            Err(NfqError::Overflow) => {
                m.enobufs.fetch_add(1, Relaxed);
                continue;
            }
            Err(e) => {
                m.recv_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "NFQUEUE receive failed");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        m.received.fetch_add(1, Relaxed);
        let kind = queue_owner(base, workers, msg.get_queue_num()).map(|(k, _)| k);
        let (msg, verdict) = match (kind, binder.as_mut()) {
            (Some(QueueKind::Datagram), _) => datagram(msg, shared),
            (Some(kind), Some(b)) => {
                // The binder verdicts the packet itself (now, or later for a held SYN).
                b.on_message(&mut set, kind, msg, &shared.store.load(), m);
                continue;
            }
            // Not one of ours, or no TCP service configured: pass it on unchanged.
            _ => (msg, Verdict::Accept),
        };
        if let Err(e) = set.verdict(msg, verdict) {
            m.verdict_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "verdict failed");
        }
    }
    // Clean stop: whatever the binder holds gets its verdict before the socket closes (the
    // kernel would drop it otherwise).
    if let Some(b) = binder.as_mut() {
        b.drain(&mut set, &shared.store.load(), m);
    }
}

/// Classify one datagram and set its mark. Any failure keeps the mark the packet arrived with
/// (the default mark set by the nft rule before `queue`).
fn datagram(mut msg: Message, shared: &Shared) -> (Message, Verdict) {
    let snap = shared.store.load();
    let c = classify::datagram(msg.get_payload(), &snap.table);
    match c.outcome {
        Outcome::Marked => {
            if let Some(hits) = c.rule.and_then(|r| snap.hits.get(r)) {
                hits.fetch_add(1, Relaxed);
            }
            shared.metrics.outcome(Outcome::Marked);
        }
        Outcome::Default => shared.metrics.outcome(Outcome::Default),
        Outcome::Unparseable => shared
            .metrics
            .unparseable_reason(c.reason.unwrap_or("unparseable")),
    }
    msg.set_nfmark(c.mark);
    (msg, Verdict::Accept)
}
