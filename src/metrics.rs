//! Counters shared by the verdict threads (atomics only on the packet path) and rendered in the
//! Prometheus text format by the control plane.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How a classified packet ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A rule matched; its mark was set.
    Marked,
    /// No rule matched; the default mark was set.
    Default,
    /// The packet or payload could not be parsed; the default mark was set.
    Unparseable,
}

/// All counters. One instance per daemon, shared by reference.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Packets given to the classifier (all queues).
    pub received: AtomicU64,
    /// Classified with a rule's mark.
    pub marked: AtomicU64,
    /// Classified with the default mark (no rule matched).
    pub defaulted: AtomicU64,
    /// Unparseable (malformed, truncated, not the protocol): default mark.
    pub unparseable: AtomicU64,
    /// Receive-buffer overflows (ENOBUFS): the kernel failed those packets open (or dropped).
    pub enobufs: AtomicU64,
    /// Other receive errors.
    pub recv_errors: AtomicU64,
    /// Verdicts the kernel refused.
    pub verdict_errors: AtomicU64,
    /// Rule-table swaps.
    pub table_swaps: AtomicU64,
    /// Duration of the last swap (compile + persist + store), microseconds.
    pub last_swap_us: AtomicU64,
    /// Unparseable packets by reason (rare: a lock is fine here).
    reasons: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Count one classification outcome.
    pub fn outcome(&self, o: Outcome) {
        match o {
            Outcome::Marked => &self.marked,
            Outcome::Default => &self.defaulted,
            Outcome::Unparseable => &self.unparseable,
        }
        .fetch_add(1, Relaxed);
    }

    /// Count an unparseable packet with its reason.
    pub fn unparseable_reason(&self, reason: &'static str) {
        self.outcome(Outcome::Unparseable);
        if let Ok(mut m) = self.reasons.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    /// Unparseable counts by reason.
    pub fn reasons(&self) -> BTreeMap<&'static str, u64> {
        self.reasons.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Prometheus text for these counters (the caller adds per-rule and table lines).
    pub fn render(&self, out: &mut String) {
        let c = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        };
        c(
            out,
            "l7mark_packets_received_total",
            "Packets received from NFQUEUE.",
            &self.received,
        );
        let _ = writeln!(
            out,
            "# HELP l7mark_verdicts_total Classification verdicts by outcome.\n# TYPE l7mark_verdicts_total counter"
        );
        for (label, v) in [
            ("marked", &self.marked),
            ("default", &self.defaulted),
            ("unparseable", &self.unparseable),
        ] {
            let _ = writeln!(
                out,
                "l7mark_verdicts_total{{outcome=\"{label}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP l7mark_unparseable_total Unparseable packets by reason (given the default mark).\n# TYPE l7mark_unparseable_total counter"
        );
        for (reason, n) in self.reasons() {
            let _ = writeln!(
                out,
                "l7mark_unparseable_total{{reason=\"{}\"}} {n}",
                escape_label(reason)
            );
        }
        c(
            out,
            "l7mark_queue_overflows_total",
            "NFQUEUE socket overflows (ENOBUFS); those packets failed open.",
            &self.enobufs,
        );
        c(
            out,
            "l7mark_recv_errors_total",
            "NFQUEUE receive errors.",
            &self.recv_errors,
        );
        c(
            out,
            "l7mark_verdict_errors_total",
            "Verdicts refused by the kernel.",
            &self.verdict_errors,
        );
        c(
            out,
            "l7mark_table_swaps_total",
            "Rule-table swaps.",
            &self.table_swaps,
        );
        let _ = writeln!(
            out,
            "# HELP l7mark_table_last_swap_seconds Duration of the last table swap.\n# TYPE l7mark_table_last_swap_seconds gauge\nl7mark_table_last_swap_seconds {:.6}",
            self.last_swap_us.load(Relaxed) as f64 / 1e6
        );
    }
}

/// Escape a Prometheus label value (backslash, quote, newline).
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
