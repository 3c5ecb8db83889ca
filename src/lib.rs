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
//! - [`cli`]: the `check` and `explain` commands (the daemon commands live beside them).
#![forbid(unsafe_code)]

pub mod classify;
pub mod cli;
pub mod proto;
pub mod rules;
