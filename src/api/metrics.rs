//! `GET /metrics`: Prometheus text format (version 0.0.4).
//!
//! Families, beyond the verdict threads' counters of [`crate::metrics::Metrics::render`]:
//!
//! - **Rules**: `l7mark_rule_hits_total{rule}` (packets or connections each rule classified;
//!   a rule's counter survives table swaps while its id exists), the table's version, size,
//!   default mark and publication time.
//! - **Kernel queues** (from `/proc/net/netfilter/nfnetlink_queue`, for l7mark's queue numbers):
//!   bound or not, packets waiting, `queue_dropped` and `user_dropped` (both counted by the
//!   kernel only for queues *without* fail-open: with fail-open, a full queue or a full socket
//!   buffer accepts the packet unclassified and counts it nowhere), and `id_sequence` (packets
//!   enqueued since the queue was bound). `l7mark_nfqueue_undelivered_estimate` = Σ id_sequence
//!   − packets received − packets waiting: packets that got a queue id but never reached
//!   l7mark, i.e. failed open (or were dropped) at the socket. It is an estimate: ids are
//!   `u32` and wrap, and it races with packets in flight. Packets that bypass a queue nobody is
//!   bound to (`queue … bypass`) never get an id and are not counted here; nor are packets
//!   failed open because the queue was full (`max_len`) — `l7mark_queue_overflows_total` counts
//!   the socket overflows l7mark itself noticed.
//! - **TCP binder** (per worker): unbound flows, held SYNs, held bytes, every state-machine
//!   counter as `l7mark_binder_<name>_total`, and the p50/p99 of recent connection set-up times
//!   (first event → held data re-injected; over each worker's last ≤1024 bindings).
//!
//! [`declared`] lists every family; a test checks that each appears in the output.

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::procfs::{self, NfQueueStat};
use crate::binder::machine::Stats;
use crate::config::{Config, QueueKind, queue_owner};
use crate::metrics::escape_label;

/// `GET /metrics`.
pub async fn metrics(State(s): State<ApiState>) -> Response {
    let nfq = s
        .probe()
        .nfnetlink_queue()
        .map(|t| procfs::parse_nfnetlink_queue(&t));
    let mut resp = render(&s, nfq.ok().as_deref()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Families rendered by [`crate::metrics::Metrics::render`].
const CORE: &[&str] = &[
    "l7mark_packets_received_total",
    "l7mark_verdicts_total",
    "l7mark_unparseable_total",
    "l7mark_queue_overflows_total",
    "l7mark_recv_errors_total",
    "l7mark_verdict_errors_total",
    "l7mark_table_swaps_total",
    "l7mark_table_last_swap_seconds",
];

/// Families rendered here (binder state counters are added from [`Stats`]).
const OWN: &[&str] = &[
    "l7mark_rule_hits_total",
    "l7mark_table_version",
    "l7mark_table_rules",
    "l7mark_table_default_mark",
    "l7mark_table_last_swap_timestamp_seconds",
    "l7mark_firewall_in_sync",
    "l7mark_nfqueue_proc_readable",
    "l7mark_nfqueue_bound",
    "l7mark_nfqueue_waiting",
    "l7mark_nfqueue_queue_dropped_total",
    "l7mark_nfqueue_user_dropped_total",
    "l7mark_nfqueue_enqueued_total",
    "l7mark_nfqueue_undelivered_estimate",
    "l7mark_binder_unbound_flows",
    "l7mark_binder_held_syns",
    "l7mark_binder_held_bytes",
    "l7mark_binder_reinject_errors_total",
    "l7mark_binder_setup_seconds",
    "l7mark_binder_setup_samples",
];

/// The binder's state-machine counter names (every field of [`Stats`]).
fn stat_names() -> Vec<String> {
    match serde_json::to_value(Stats::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Every metric family `/metrics` declares (`# TYPE` line), whatever the state.
pub fn declared() -> Vec<String> {
    CORE.iter()
        .chain(OWN)
        .map(|s| (*s).to_string())
        .chain(
            stat_names()
                .into_iter()
                .map(|n| format!("l7mark_binder_{n}_total")),
        )
        .collect()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn kind_name(k: QueueKind) -> &'static str {
    match k {
        QueueKind::Datagram => "datagram",
        QueueKind::ClientInvalid => "client_invalid",
        QueueKind::ServerSyn => "server_syn",
        QueueKind::ServerSynAck => "server_synack",
        QueueKind::PreSeqadj => "pre_seqadj",
        QueueKind::DoneGate => "done_gate",
    }
}

/// l7mark's queue numbers with their labels (`queue`, `kind`, `worker`).
pub fn own_queues(cfg: &Config) -> Vec<(u16, String)> {
    let (base, workers) = (cfg.queues.base, cfg.queues.workers);
    let mut out = Vec::new();
    for w in 0..workers {
        for kind in QueueKind::ALL {
            let q = cfg.queue_num(kind, w);
            let (k, w) = queue_owner(base, workers, q).unwrap_or((kind, w));
            out.push((
                q,
                format!("queue=\"{q}\",kind=\"{}\",worker=\"{w}\"", kind_name(k)),
            ));
        }
    }
    out.sort_by_key(|(q, _)| *q);
    out
}

/// Nearest-rank quantile of sorted samples; the quantile in thousandths (500 = median), so the
/// rank is exact integer arithmetic.
fn quantile(sorted: &[u64], permille: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (permille * sorted.len()).div_ceil(1000);
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The whole exposition. `nfq` is the parsed `/proc/net/netfilter/nfnetlink_queue` (None when it
/// could not be read).
pub fn render(s: &ApiState, nfq: Option<&[NfQueueStat]>) -> String {
    let c = s.controller();
    let m = c.metrics();
    let cfg = c.config();
    let snap = c.snapshot();
    let mut out = String::with_capacity(4096);
    m.render(&mut out);

    // --- rules and table ---
    family(
        &mut out,
        "l7mark_rule_hits_total",
        "counter",
        "Packets (ICP) or connections (HTTP/TLS) classified by each rule.",
    );
    for (id, hits) in snap.table.rule_ids().iter().zip(&snap.hits) {
        let _ = writeln!(
            out,
            "l7mark_rule_hits_total{{rule=\"{}\"}} {}",
            escape_label(id),
            hits.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let gauge = |out: &mut String, name: &str, help: &str, v: String| {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    };
    gauge(
        &mut out,
        "l7mark_table_version",
        "Version of the rule table in use (increments with every swap in this process).",
        snap.version.to_string(),
    );
    gauge(
        &mut out,
        "l7mark_table_rules",
        "Rules in the table in use.",
        snap.table.len().to_string(),
    );
    gauge(
        &mut out,
        "l7mark_table_default_mark",
        "Default mark of the table in use.",
        snap.table.default_mark().to_string(),
    );
    let published = snap
        .published_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    gauge(
        &mut out,
        "l7mark_table_last_swap_timestamp_seconds",
        "When the table in use was published (Unix time).",
        format!("{published:.3}"),
    );
    let fw = c.firewall_state();
    let in_sync = !cfg.nft.manage
        || (fw.last_error.is_none() && fw.applied_default_mark == Some(snap.table.default_mark()));
    gauge(
        &mut out,
        "l7mark_firewall_in_sync",
        "1 when l7mark's nft table carries the current default mark (always 1 with [nft] manage = false).",
        u8::from(in_sync).to_string(),
    );

    // --- kernel queues ---
    gauge(
        &mut out,
        "l7mark_nfqueue_proc_readable",
        "1 when /proc/net/netfilter/nfnetlink_queue could be read.",
        u8::from(nfq.is_some()).to_string(),
    );
    let own = own_queues(cfg);
    let stat = |q: u16| nfq.and_then(|all| all.iter().find(|st| st.queue == q));
    type Field = fn(&NfQueueStat) -> u64;
    let per_queue: [(&str, &str, &str, Field); 5] = [
        (
            "l7mark_nfqueue_bound",
            "gauge",
            "1 when the kernel has a listener on the queue (l7mark's socket).",
            |st| u64::from(st.portid != 0),
        ),
        (
            "l7mark_nfqueue_waiting",
            "gauge",
            "Packets in the kernel queue waiting for l7mark's verdict.",
            |st| u64::from(st.queued),
        ),
        (
            "l7mark_nfqueue_queue_dropped_total",
            "counter",
            "Packets dropped because the queue was full (only counted without fail-open).",
            |st| u64::from(st.queue_dropped),
        ),
        (
            "l7mark_nfqueue_user_dropped_total",
            "counter",
            "Packets the kernel could not deliver to l7mark's socket (only counted without fail-open).",
            |st| u64::from(st.user_dropped),
        ),
        (
            "l7mark_nfqueue_enqueued_total",
            "counter",
            "Packets given a queue id since the queue was bound (the kernel's id_sequence; wraps at 2^32).",
            |st| u64::from(st.id_sequence),
        ),
    ];
    for (name, kind, help, f) in per_queue {
        family(&mut out, name, kind, help);
        for (q, labels) in &own {
            let v = match stat(*q) {
                Some(st) => f(st),
                // Not listed: nobody bound it (bound = 0); no counters to report.
                None if name == "l7mark_nfqueue_bound" => 0,
                None => continue,
            };
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
    let (mut ids, mut waiting) = (0u64, 0u64);
    for (q, _) in &own {
        if let Some(st) = stat(*q) {
            ids += u64::from(st.id_sequence);
            waiting += u64::from(st.queued);
        }
    }
    let received = m.received.load(std::sync::atomic::Ordering::Relaxed);
    gauge(
        &mut out,
        "l7mark_nfqueue_undelivered_estimate",
        "Packets enqueued but never received by l7mark (failed open or dropped at the socket): sum(id_sequence) - received - waiting.",
        ids.saturating_sub(received)
            .saturating_sub(waiting)
            .to_string(),
    );

    // --- binder ---
    let gauges: Vec<_> = s
        .binder()
        .iter()
        .map(|g| g.lock().map(|g| g.clone()).unwrap_or_default())
        .collect();
    type GaugeField = fn(&crate::binder::Gauges) -> u64;
    let per_worker: [(&str, &str, &str, GaugeField); 4] = [
        (
            "l7mark_binder_unbound_flows",
            "gauge",
            "TCP connections waiting for their first payload to be classified.",
            |g| g.unbound_flows as u64,
        ),
        (
            "l7mark_binder_held_syns",
            "gauge",
            "Server SYNs held until the connection is classified.",
            |g| g.held_syns as u64,
        ),
        (
            "l7mark_binder_held_bytes",
            "gauge",
            "Client bytes held until the connection is bound.",
            |g| g.held_bytes as u64,
        ),
        (
            "l7mark_binder_reinject_errors_total",
            "counter",
            "Re-injections of held segments the kernel refused.",
            |g| g.reinject_errors,
        ),
    ];
    for (name, kind, help, f) in per_worker {
        family(&mut out, name, kind, help);
        for (w, g) in gauges.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{w}\"}} {}", f(g));
        }
    }
    let stats: Vec<serde_json::Map<String, serde_json::Value>> = gauges
        .iter()
        .map(|g| match serde_json::to_value(&g.stats) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        })
        .collect();
    for n in stat_names() {
        let name = format!("l7mark_binder_{n}_total");
        family(
            &mut out,
            &name,
            "counter",
            &format!("TCP binder state-machine counter {n} (see binder::machine::Stats)."),
        );
        for (w, st) in stats.iter().enumerate() {
            let v = st.get(&n).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let _ = writeln!(out, "{name}{{worker=\"{w}\"}} {v}");
        }
    }
    let mut setup: Vec<u64> = gauges
        .iter()
        .flat_map(|g| g.setup_us.iter().copied())
        .collect();
    setup.sort_unstable();
    family(
        &mut out,
        "l7mark_binder_setup_seconds",
        "gauge",
        "Quantiles of recent TCP connection set-up times through the binder (last <=1024 per worker).",
    );
    for (label, q) in [("0.5", 500), ("0.99", 990)] {
        if let Some(us) = quantile(&setup, q) {
            let _ = writeln!(
                out,
                "l7mark_binder_setup_seconds{{quantile=\"{label}\"}} {:.6}",
                us as f64 / 1e6
            );
        }
    }
    gauge(
        &mut out,
        "l7mark_binder_setup_samples",
        "Set-up times the quantiles are computed over.",
        setup.len().to_string(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        assert_eq!(quantile(&[], 500), None);
        assert_eq!(quantile(&[7], 990), Some(7));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 500), Some(50));
        assert_eq!(quantile(&v, 990), Some(99));
        assert_eq!(quantile(&v, 0), Some(1));
        assert_eq!(quantile(&[1, 2, 3], 500), Some(2));
    }

    #[test]
    fn declared_has_every_binder_counter() {
        let d = declared();
        assert!(d.contains(&"l7mark_binder_bound_total".to_string()));
        assert!(d.contains(&"l7mark_binder_gate_unknown_total".to_string()));
        let unique: std::collections::BTreeSet<_> = d.iter().collect();
        assert_eq!(unique.len(), d.len(), "duplicate family names");
    }
}
