//! l7mark: content-aware switching for Linux Virtual Server (IPVS) without a proxy in the data path.
//!
//! l7mark reads the **first payload** of a flow from NFQUEUE, classifies it by HTTP Host/URL,
//! TLS SNI or ICP (RFC 2186) query URL, and returns the packet with an fwmark. Kernel IPVS fwmark
//! services (`ipvsadm -A -f MARK -p T`) then schedule and forward; the conntrack mark carries the
//! decision for the rest of the flow.
//!
//! # Layout
//! - [`proto`]: pure parsers over `&[u8]` (IPv4/IPv6 + TCP/UDP, HTTP/1.x, TLS ClientHello, ICP).
//!   No I/O; every parser answers key found / not this protocol / need more bytes.
//! - [`rules`]: the rules document (JSON, the same the REST API serves), its validation, and the
//!   compiled, immutable, indexed table with URL hashing (Squid CARP compatible).
//! - [`classify`]: payload + protocol + table → decision (rule, mark, extracted key).
//! - [`config`]: the daemon configuration (TOML), validated in full before any side effect.
//! - [`nfqueue`]: the thin NFQUEUE adapter (the only code touching the queue socket).
//! - [`binder`]: TCP delayed binding with the kernel's SYNPROXY (pure state machine + glue).
//! - [`engine`]: the verdict threads: one per worker, every packet gets exactly one verdict.
//! - [`control`]: the control plane: the one owner of the rule table, swapped atomically, and
//!   the [`control::Controller`] every change (REST, SIGHUP) goes through.
//! - [`api`]: the REST API (axum) on its own thread and runtime: rules, explain, metrics, health.
//! - [`firewall`]: l7mark's nft table rendered as a value and applied in one transaction.
//! - [`metrics`]: counters shared by the verdict threads, rendered for Prometheus.
//! - [`daemon`]: `l7mark run`: start-up order, signals, clean stop.
//! - [`cli`]: the command line (`check`, `explain`, `nft`, `run`).

#![forbid(unsafe_code)]

pub mod api;
pub mod binder;
pub mod classify;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod firewall;
pub mod metrics;
pub mod nfqueue;
pub mod proto;
pub mod rules;
