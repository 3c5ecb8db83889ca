//! l7mark's nft table as a value, rendered to nft's own language by a pure function.
//!
//! The same text is what `l7mark nft --config FILE` prints, what the daemon applies in one
//! transaction, and the shape of the commented files in `nft-rules/`.
//!
//! Hook priorities, by the kernel's numbers (`include/uapi/linux/netfilter_ipv4.h`,
//! `ip_vs_core.c:ip_vs_ops4[]`, `nf_synproxy_core.c:ipv4_synproxy_ops[]`):
//! - prerouting: raw -300, conntrack -200, mangle -150;
//! - input: IPVS `ip_vs_in_hook` 99, SYNPROXY's hook at INT_MAX-1;
//! - output: conntrack -200, IPVS `ip_vs_out_hook` -99 and `ip_vs_in_hook` -98;
//! - forward: IPVS `ip_vs_out_hook` 100.
//!
//! `queue` ends a chain, and an NF_ACCEPT verdict resumes at the **next base chain** of the hook
//! (`nf_reinject` → `nf_iterate` from the next entry), never at the next rule: anything that must
//! happen after a verdict (saving the mark to conntrack, SYNPROXY) sits in a later-priority chain.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::{CT_DONE_BIT, Config, QueueKind, Service, ServiceProto};

/// `raw` priority (before conntrack): where client SYNs are marked `notrack`.
pub const PRIO_RAW: i32 = -300;
/// Where the mark is restored from conntrack, before classification.
pub const PRIO_RESTORE: i32 = -160;
/// Classification queues: after conntrack, before IPVS in every hook it uses.
pub const PRIO_QUEUE: i32 = -150;
/// Where the verdict's mark is saved to conntrack (a later base chain than the queue).
pub const PRIO_SAVE: i32 = -140;
/// SYNPROXY's cookie SYN-ACK window rewrite, output hook, before the queue chain.
pub const PRIO_WINDOW: i32 = -160;
/// SYNPROXY itself, input hook: after the queue chain, before IPVS (99).
pub const PRIO_SYNPROXY: i32 = 0;

/// The seed of every `jhash` that spreads binder events over the workers: one seed for all.
pub const JHASH_SEED: u32 = 0x6c37_6d6b;

/// `IPS_SEQ_ADJUST` (`enum ip_conntrack_status`, bit 6): SYNPROXY has armed seqadj.
/// nft 1.0.6 has no name for it, so the number is used.
pub const IPS_SEQ_ADJUST: u32 = 0x40;

/// One base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name inside l7mark's table.
    pub name: &'static str,
    /// Hook (`prerouting`, `input`, `forward`, `output`).
    pub hook: &'static str,
    /// Priority (see the `PRIO_*` constants).
    pub priority: i32,
    /// What the chain is for (rendered as a comment).
    pub purpose: &'static str,
    /// Rules, each with a comment saying why.
    pub rules: Vec<Rule>,
}

/// One rule with the reason it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The match part.
    pub matches: String,
    /// The statements (mark, queue, notrack, synproxy, ...); a counter is rendered before them.
    pub action: String,
    /// Why (rendered as a comment above the rule).
    pub why: String,
}

/// l7mark's whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// Table name (family inet).
    pub table: String,
    /// Base chains.
    pub chains: Vec<Chain>,
}

/// The inputs the ruleset depends on besides the config: the rules document's default mark.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// The mark packets carry when l7mark does not answer (bypass, fail-open) or finds no rule.
    pub default_mark: u32,
}

fn family_match(addr: IpAddr) -> (&'static str, String) {
    match addr {
        IpAddr::V4(a) => ("ip", format!("ip daddr {a}")),
        IpAddr::V6(a) => ("ip6", format!("ip6 daddr {a}")),
    }
}

/// `queue` statement spreading over the workers.
///
/// Datagrams are stateless: `fanout` spreads them by CPU. Binder events of one connection must
/// reach one worker, so they are spread by a hash of the client address and port (`jhash`, seed 0,
/// the same for the client's packets and for the real server's SYN-ACK addressed to the client).
fn queue_stmt(cfg: &Config, kind: QueueKind, by: Option<&str>, bypass: bool) -> String {
    let w = cfg.queues.workers;
    let first = cfg.queue_num(kind, 0);
    let flags = match (bypass, by.is_none() && w > 1) {
        (true, true) => "flags bypass,fanout ",
        (true, false) => "flags bypass ",
        (false, true) => "flags fanout ",
        (false, false) => "",
    };
    match by {
        // An explicit seed: without one the kernel picks a random seed per expression
        // (nft_jhash_init), and the input, output and forward rules would hash one connection to
        // different workers (found on real IPVS: held SYNs timed out, their data sat elsewhere).
        Some(key) if w > 1 => {
            format!("queue {flags}to jhash {key} mod {w} seed {JHASH_SEED:#x} offset {first}")
        }
        _ if w > 1 => format!("queue {flags}to {first}-{}", first + w - 1),
        _ => format!("queue {flags}to {first}"),
    }
}

/// Build the ruleset for a validated config.
pub fn ruleset(cfg: &Config, inputs: Inputs) -> Ruleset {
    let dm = inputs.default_mark;
    let mut raw_pre = Vec::new();
    let mut restore = Vec::new();
    let mut pre_q = Vec::new();
    let mut save = Vec::new();
    let mut out_win = Vec::new();
    let mut out_q = Vec::new();
    let mut in_q = Vec::new();
    let mut fwd_q = Vec::new();
    let mut in_sp = Vec::new();

    for s in &cfg.services {
        let (_, dst) = family_match(s.vip);
        match s.proto {
            ServiceProto::Icp => icp_rules(cfg, s, dm, &dst, &mut restore, &mut pre_q, &mut save),
            ServiceProto::Http | ServiceProto::Tls => {
                let port = s.port;
                let svc = format!("{dst} tcp dport {port}");
                let by_client_src = "ip saddr . tcp sport";
                let by_client_dst = "ip daddr . tcp dport";
                raw_pre.push(Rule {
                    matches: format!("{svc} tcp flags & (fin|syn|rst|ack) == syn"),
                    action: "notrack".into(),
                    why: format!(
                        "{}: client SYNs are not tracked; SYNPROXY answers them with a cookie",
                        s.name
                    ),
                });
                let (_, src) = match s.vip {
                    IpAddr::V4(a) => ("ip", format!("ip saddr {a}")),
                    IpAddr::V6(a) => ("ip6", format!("ip6 saddr {a}")),
                };
                out_win.push(Rule {
                    matches: format!("{src} tcp sport {port} tcp flags & (syn|ack) == (syn|ack)"),
                    action: format!("tcp window set {}", cfg.binder.window),
                    why: format!(
                        "{}: SYNPROXY's cookie SYN-ACK advertises window 0 so clients send nothing \
                         before the server side is up; open it so the first request arrives",
                        s.name
                    ),
                });
                out_q.push(Rule {
                    matches: format!("{svc} tcp flags & (fin|syn|rst|ack) == syn"),
                    action: format!(
                        "meta mark set {dm} {}",
                        queue_stmt(cfg, QueueKind::ServerSyn, Some(by_client_src), true)
                    ),
                    why: format!(
                        "{}: SYNPROXY's SYN to the server (saddr = client) is held here, before IPVS \
                         (output -98), until the payload is classified; the default mark makes \
                         bypass and fail-open land on the default service",
                        s.name
                    ),
                });
                if s.vip.is_ipv4() {
                    // nft has no "payload length": pair each TCP header length (doff 5..15) with
                    // the IPv4 total length that leaves no payload. With IP options the total is
                    // larger than any pair allows, so such packets are queued (correct, rare).
                    // The data-offset byte is matched whole (`@th,96,8`: doff and the reserved
                    // bits, which a pure ACK leaves 0): nft 1.0.6 aborts listing a concatenation
                    // with the 4-bit `tcp doff` (mergesort.c concat_expr_msort_value, found in the
                    // VM). A set reserved bit only means the ACK is queued, which is safe.
                    let pure: Vec<String> = (5u16..=15)
                        .map(|d| format!("{} . {:#x}", 20 + 4 * d, d << 4))
                        .collect();
                    in_q.push(Rule {
                        matches: format!(
                            "{svc} ct state invalid tcp flags & (fin|syn|rst|ack) == ack ip length . @th,96,8 {{ {} }}",
                            pure.join(", ")
                        ),
                        action: "accept".into(),
                        why: format!(
                            "{}: a pure ACK is SYNPROXY's to judge (the next base chain): a cookie \
                             ACK opens the server side (l7mark holds that SYN), a spoofed ACK of a \
                             flood is dropped there without costing l7mark anything",
                            s.name
                        ),
                    });
                }
                in_q.push(Rule {
                    // RSTs too: the binder forgets a flow the client gave up on.
                    matches: format!("{svc} ct state invalid tcp flags & syn == 0"),
                    action: queue_stmt(cfg, QueueKind::ClientInvalid, Some(by_client_src), true),
                    why: format!(
                        "{}: the cookie ACK and the client's first data (conntrack INVALID until \
                         SYNPROXY has opened the server side): l7mark copies the data",
                        s.name
                    ),
                });
                in_q.push(Rule {
                    matches: format!(
                        "{svc} ct state established,new ct status & {IPS_SEQ_ADJUST:#x} == 0 tcp flags & (syn|ack) == ack"
                    ),
                    action: queue_stmt(cfg, QueueKind::PreSeqadj, Some(by_client_src), false),
                    why: format!(
                        "{}: client packets while the server's SYN-ACK is between conntrack and \
                         SYNPROXY (no seqadj yet) must not reach IPVS untranslated (the server would \
                         RST): held by l7mark, dropped without it (no bypass)",
                        s.name
                    ),
                });
                in_q.push(Rule {
                    matches: format!(
                        "{svc} ct state established ct status & {IPS_SEQ_ADJUST:#x} == {IPS_SEQ_ADJUST:#x} ct mark & {CT_DONE_BIT:#x} == 0 tcp flags & (syn|ack) == ack"
                    ),
                    action: queue_stmt(cfg, QueueKind::DoneGate, Some(by_client_src), true),
                    why: format!(
                        "{}: keep client packets behind l7mark's re-injection of the held segments \
                         (fresher retransmissions would overtake them and the server's PAWS check \
                         would drop the copies); l7mark sets the DONE bit, then the flow bypasses it",
                        s.name
                    ),
                });
                let ct_orig = match s.vip {
                    IpAddr::V4(a) => format!("ct original ip daddr {a}"),
                    IpAddr::V6(a) => format!("ct original ip6 daddr {a}"),
                };
                fwd_q.push(Rule {
                    // `meta l4proto tcp` first: nft needs the protocol to parse `proto-dst`.
                    matches: format!(
                        "meta l4proto tcp {ct_orig} ct original proto-dst {port} tcp flags & (syn|ack|rst) == (syn|ack)"
                    ),
                    action: queue_stmt(cfg, QueueKind::ServerSynAck, Some(by_client_dst), true),
                    why: format!(
                        "{}: the real server's SYN-ACK, before IPVS (forward 100); its verdict runs \
                         SYNPROXY's completion (server ACK, seqadj) synchronously",
                        s.name
                    ),
                });
                let sp = &cfg.binder.synproxy;
                let mut opts = format!("mss {} wscale {}", sp.mss, sp.wscale);
                if sp.timestamp {
                    opts.push_str(" timestamp");
                }
                if sp.sack_perm {
                    opts.push_str(" sack-perm");
                }
                in_sp.push(Rule {
                    matches: format!("{svc} ct state invalid,untracked"),
                    action: format!("synproxy {opts}"),
                    why: format!(
                        "{}: SYNPROXY answers client SYNs and opens the server side on the cookie ACK \
                         (options must match the real servers)",
                        s.name
                    ),
                });
                in_sp.push(Rule {
                    matches: format!("{svc} ct state invalid"),
                    action: "drop".into(),
                    why: format!("{}: whatever SYNPROXY did not take", s.name),
                });
            }
        }
    }

    let mut chains = Vec::new();
    let mut push = |name, hook, priority, purpose, rules: Vec<Rule>| {
        if !rules.is_empty() {
            chains.push(Chain {
                name,
                hook,
                priority,
                purpose,
                rules,
            });
        }
    };
    push(
        "raw_prerouting",
        "prerouting",
        PRIO_RAW,
        "client SYNs of L7 TCP services bypass conntrack (SYNPROXY)",
        raw_pre,
    );
    push(
        "restore_mark",
        "prerouting",
        PRIO_RESTORE,
        "decided flows carry their mark from conntrack and skip the queue",
        restore,
    );
    push(
        "classify_prerouting",
        "prerouting",
        PRIO_QUEUE,
        "first payloads to l7mark (default mark set first: bypass and fail-open land on it)",
        pre_q,
    );
    push(
        "save_mark",
        "prerouting",
        PRIO_SAVE,
        "the verdict's mark into conntrack (NF_ACCEPT resumes at the next base chain, so here)",
        save,
    );
    push(
        "synack_window",
        "output",
        PRIO_WINDOW,
        "open SYNPROXY's zero window",
        out_win,
    );
    push(
        "hold_server_syn",
        "output",
        PRIO_QUEUE,
        "SYNPROXY's server SYN held until classified (before IPVS at -98)",
        out_q,
    );
    push(
        "client_to_binder",
        "input",
        PRIO_QUEUE,
        "client segments before binding (before SYNPROXY and IPVS)",
        in_q,
    );
    push(
        "server_synack",
        "forward",
        PRIO_QUEUE,
        "real servers' SYN-ACKs of L7 connections (before IPVS at 100)",
        fwd_q,
    );
    // Not "synproxy": that is a keyword of nft's grammar and cannot name a chain.
    push(
        "syn_proxy",
        "input",
        PRIO_SYNPROXY,
        "SYNPROXY for L7 TCP services",
        in_sp,
    );
    Ruleset {
        table: cfg.nft.table.clone(),
        chains,
    }
}

fn icp_rules(
    cfg: &Config,
    s: &Service,
    dm: u32,
    dst: &str,
    restore: &mut Vec<Rule>,
    pre_q: &mut Vec<Rule>,
    save: &mut Vec<Rule>,
) {
    let svc = format!("{dst} udp dport {}", s.port);
    let q = queue_stmt(cfg, QueueKind::Datagram, None, true);
    if s.per_query {
        pre_q.push(Rule {
            matches: svc.clone(),
            action: format!("meta mark set {dm} {q}"),
            why: format!(
                "{}: every ICP query is classified by its URL (the IPVS service uses one-packet \
                 scheduling, so each datagram is scheduled by its own mark)",
                s.name
            ),
        });
    } else {
        let low = !CT_DONE_BIT;
        restore.push(Rule {
            matches: format!("{svc} ct mark & {low:#x} != 0"),
            action: format!("meta mark set ct mark & {low:#x}"),
            why: format!("{}: this flow was classified already", s.name),
        });
        pre_q.push(Rule {
            matches: format!("{svc} meta mark == 0"),
            action: format!("meta mark set {dm} {q}"),
            why: format!(
                "{}: the first datagram of a flow is classified by its ICP URL",
                s.name
            ),
        });
        save.push(Rule {
            matches: format!("{svc} ct mark & {low:#x} == 0"),
            action: "ct mark set meta mark".into(),
            why: format!("{}: the decision rides on conntrack from now on", s.name),
        });
    }
}

impl Ruleset {
    /// nft text that replaces l7mark's table atomically when given to `nft -f` as one
    /// transaction: create (no-op if present), delete, define anew.
    pub fn render_replace(&self) -> String {
        let mut out = format!(
            "# l7mark's own table; nothing else in the ruleset is touched.\n\
             table inet {t}\ndelete table inet {t}\n",
            t = self.table
        );
        out.push_str(&self.render());
        out
    }

    /// nft text defining the table (what `l7mark nft` prints).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "table inet {} {{", self.table);
        for (i, c) in self.chains.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "\t# {}", c.purpose);
            let _ = writeln!(out, "\tchain {} {{", c.name);
            let _ = writeln!(
                out,
                "\t\ttype filter hook {} priority {}; policy accept;",
                c.hook, c.priority
            );
            for r in &c.rules {
                let _ = writeln!(out, "\t\t# {}", r.why);
                let _ = writeln!(out, "\t\t{} counter {}", r.matches, r.action);
            }
            let _ = writeln!(out, "\t}}");
        }
        out.push_str("}\n");
        out
    }
}
