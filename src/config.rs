//! The daemon configuration (TOML): parsed strictly, then validated as a whole before anything is
//! touched (no socket, queue or nft table exists until [`Config::from_toml`] has returned `Ok`).
//!
//! Every problem is reported, one per line, as `<section>.<field>: <why>` so an operator fixes a
//! file in one pass. The complete, commented example is `examples/l7mark.toml`; the reference is
//! `docs/configuration.md`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The conntrack-mark bit the TCP binder uses to say "held segments re-injected, leave the flow
/// alone" (see `nft-rules/` and docs/architecture.md). Marks must stay below it.
pub const CT_DONE_BIT: u32 = 0x8000_0000;

/// The highest queue number NFQUEUE accepts (`u16`).
const MAX_QUEUE: u32 = u16::MAX as u32;

/// Everything wrong with a configuration, one problem per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// The L7 protocol a service speaks (what the first payload is parsed as).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceProto {
    /// HTTP/1.x over TCP: Host, method and path.
    Http,
    /// TLS over TCP: the ClientHello's server_name.
    Tls,
    /// ICP v2 over UDP (RFC 2186): the query URL.
    Icp,
}

impl ServiceProto {
    /// Whether the protocol runs over TCP (and so needs the delayed-binding TCP binder).
    pub fn is_tcp(self) -> bool {
        matches!(self, ServiceProto::Http | ServiceProto::Tls)
    }
}

/// How IPVS forwards to the real servers of the marks this service uses (`ipvsadm -m/-g/-i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    /// Masquerading (`-m`): replies return through the director.
    Nat,
    /// Direct routing (`-g`): real servers answer the client directly.
    Dr,
    /// IP-in-IP tunnelling (`-i`): real servers answer the client directly.
    Tun,
}

/// What the binder does with a held server SYN when the client sends nothing in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldPolicy {
    /// Release the SYN with the default mark: the connection goes to the default service.
    Default,
    /// Drop the SYN and forget the flow: the client's first data segment starts again
    /// (within the SYN-cookie lifetime, about 1–2 minutes).
    Drop,
}

// === file format ===

/// The configuration file as written (TOML). See `examples/l7mark.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The rules document (JSON). The REST API writes accepted tables back to it.
    pub rules_file: PathBuf,
    /// The range of marks l7mark may use.
    #[serde(default)]
    pub marks: MarksFile,
    /// The L7 services (VIP, port, protocol).
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceFile>,
    /// NFQUEUE settings.
    #[serde(default)]
    pub queues: QueuesFile,
    /// The REST API.
    #[serde(default)]
    pub api: ApiFile,
    /// l7mark's own nft table.
    #[serde(default)]
    pub nft: NftFile,
    /// The TCP delayed binder.
    #[serde(default)]
    pub binder: BinderFile,
}

/// `[marks]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MarksFile {
    /// Lowest mark l7mark may set (default 1).
    #[serde(default = "default_mark_min")]
    pub min: u32,
    /// Highest mark l7mark may set (default 999: keepalived setups conventionally use 1000+).
    #[serde(default = "default_mark_max")]
    pub max: u32,
}

impl Default for MarksFile {
    fn default() -> Self {
        MarksFile {
            min: default_mark_min(),
            max: default_mark_max(),
        }
    }
}

/// `[[service]]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// A short name (metrics label).
    pub name: String,
    /// The virtual address clients connect to.
    pub vip: IpAddr,
    /// The virtual port.
    pub port: u16,
    /// What the first payload is parsed as.
    pub proto: ServiceProto,
    /// How IPVS forwards this service's marks (default nat).
    #[serde(default = "default_forwarding")]
    pub forwarding: Forwarding,
    /// ICP only: classify every query separately (needs IPVS one-packet scheduling, `-o`).
    /// Default true. With false, the first datagram of a UDP flow decides for the flow.
    #[serde(default)]
    pub per_query: Option<bool>,
}

/// `[queues]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesFile {
    /// First NFQUEUE number l7mark uses (it uses `base .. base + 6 * workers`).
    #[serde(default = "default_queue_base")]
    pub base: u16,
    /// Worker threads; each owns one queue per event kind.
    #[serde(default = "default_workers")]
    pub workers: u16,
    /// Kernel queue length per queue (`NFQA_CFG_QUEUE_MAXLEN`); beyond it packets fail open.
    #[serde(default = "default_queue_maxlen")]
    pub max_len: u32,
    /// Accept instead of drop when a queue is full (`NFQA_CFG_F_FAIL_OPEN`). Default true.
    #[serde(default = "default_true")]
    pub fail_open: bool,
    /// Socket receive buffer per worker, bytes.
    #[serde(default = "default_rcvbuf")]
    pub rcvbuf_bytes: usize,
}

impl Default for QueuesFile {
    fn default() -> Self {
        QueuesFile {
            base: default_queue_base(),
            workers: default_workers(),
            max_len: default_queue_maxlen(),
            fail_open: true,
            rcvbuf_bytes: default_rcvbuf(),
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    /// `ip:port` to listen on (default 127.0.0.1:9180), or `unix:/path` for a unix socket.
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// File holding the bearer token that mutations need (never logged).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The bearer token inline (prefer `token_file`).
    #[serde(default)]
    pub token: Option<String>,
    /// Largest accepted request body, bytes.
    #[serde(default = "default_api_body")]
    pub max_body_bytes: usize,
}

impl Default for ApiFile {
    fn default() -> Self {
        ApiFile {
            listen: default_api_listen(),
            token_file: None,
            token: None,
            max_body_bytes: default_api_body(),
        }
    }
}

/// `[nft]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NftFile {
    /// Apply l7mark's table at start and remove it at a clean stop (default true). With false the
    /// operator loads the ruleset (`l7mark nft --config FILE`) and l7mark never touches nft.
    #[serde(default = "default_true")]
    pub manage: bool,
    /// The table's name (family `inet`).
    #[serde(default = "default_table")]
    pub table: String,
}

impl Default for NftFile {
    fn default() -> Self {
        NftFile {
            manage: true,
            table: default_table(),
        }
    }
}

/// `[binder]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BinderFile {
    /// How long a server SYN is held waiting for the client's first bytes, ms.
    #[serde(default = "default_hold_ms")]
    pub hold_timeout_ms: u64,
    /// What happens when the hold times out.
    #[serde(default = "default_hold_policy")]
    pub on_hold_timeout: HoldPolicy,
    /// The receive window written into SYNPROXY's SYN-ACK (stock SYNPROXY sends 0, which would
    /// keep the client from sending its request before the server side is up).
    #[serde(default = "default_window")]
    pub window: u16,
    /// Bytes looked at before giving up on finding the key (the default mark is used then).
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: usize,
    /// Bytes held per flow before binding.
    #[serde(default = "default_flow_bytes")]
    pub max_flow_bytes: usize,
    /// Bytes held per client address before binding.
    #[serde(default = "default_client_bytes")]
    pub max_client_bytes: usize,
    /// Bytes held in total before binding.
    #[serde(default = "default_total_bytes")]
    pub max_total_bytes: usize,
    /// Unbound flows tracked at once.
    #[serde(default = "default_max_flows")]
    pub max_flows: usize,
    /// Flows tracked at once per client address (one address cannot fill the table).
    #[serde(default = "default_max_client_flows")]
    pub max_client_flows: usize,
    /// Flows whose server SYN has not come yet (data that SYNPROXY may still refuse as a cookie
    /// ACK: spoofed traffic cannot take more than this share of the table).
    #[serde(default = "default_max_unconfirmed")]
    pub max_unconfirmed: usize,
    /// SYNPROXY's options towards clients: must match what the real servers negotiate.
    #[serde(default)]
    pub synproxy: SynproxyFile,
    /// Refuse to start unless IPVS is loaded with `net.ipv4.vs.conntrack=1` (default true).
    /// Only the host-kernel test lab, where nf_nat stands in for IPVS, sets it false.
    #[serde(default = "default_true")]
    pub require_ipvs: bool,
}

impl Default for BinderFile {
    fn default() -> Self {
        BinderFile {
            hold_timeout_ms: default_hold_ms(),
            on_hold_timeout: default_hold_policy(),
            window: default_window(),
            max_key_bytes: default_max_key_bytes(),
            max_flow_bytes: default_flow_bytes(),
            max_client_bytes: default_client_bytes(),
            max_total_bytes: default_total_bytes(),
            max_flows: default_max_flows(),
            max_client_flows: default_max_client_flows(),
            max_unconfirmed: default_max_unconfirmed(),
            synproxy: SynproxyFile::default(),
            require_ipvs: true,
        }
    }
}

/// `[binder.synproxy]`: the options SYNPROXY announces to clients on behalf of the real servers
/// (`nft ... synproxy mss M wscale W timestamp sack-perm`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynproxyFile {
    /// MSS announced to the client (the real servers' MSS).
    #[serde(default = "default_mss")]
    pub mss: u16,
    /// Window scale announced (the real servers' wscale; Linux picks it from tcp_rmem).
    #[serde(default = "default_wscale")]
    pub wscale: u8,
    /// TCP timestamps (needed for wscale and SACK through SYN cookies).
    #[serde(default = "default_true")]
    pub timestamp: bool,
    /// SACK permitted.
    #[serde(default = "default_true")]
    pub sack_perm: bool,
}

impl Default for SynproxyFile {
    fn default() -> Self {
        SynproxyFile {
            mss: default_mss(),
            wscale: default_wscale(),
            timestamp: true,
            sack_perm: true,
        }
    }
}

fn default_mark_min() -> u32 {
    1
}
fn default_mark_max() -> u32 {
    999
}
fn default_forwarding() -> Forwarding {
    Forwarding::Nat
}
fn default_queue_base() -> u16 {
    100
}
fn default_workers() -> u16 {
    2
}
fn default_queue_maxlen() -> u32 {
    4096
}
fn default_true() -> bool {
    true
}
fn default_rcvbuf() -> usize {
    8 << 20
}
fn default_api_listen() -> String {
    "127.0.0.1:9180".to_string()
}
fn default_api_body() -> usize {
    4 << 20
}
fn default_table() -> String {
    "l7mark".to_string()
}
fn default_hold_ms() -> u64 {
    3000
}
fn default_hold_policy() -> HoldPolicy {
    HoldPolicy::Default
}
fn default_window() -> u16 {
    29200
}
fn default_max_key_bytes() -> usize {
    16 << 10
}
fn default_flow_bytes() -> usize {
    64 << 10
}
fn default_client_bytes() -> usize {
    1 << 20
}
fn default_total_bytes() -> usize {
    64 << 20
}
fn default_max_flows() -> usize {
    65536
}
fn default_max_client_flows() -> usize {
    4096
}
fn default_max_unconfirmed() -> usize {
    16384
}
fn default_mss() -> u16 {
    1460
}
fn default_wscale() -> u8 {
    7
}

// === validated configuration ===

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiListen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

/// A validated service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Name (metrics label).
    pub name: String,
    /// Virtual address.
    pub vip: IpAddr,
    /// Virtual port.
    pub port: u16,
    /// Protocol.
    pub proto: ServiceProto,
    /// IPVS forwarding method of its marks.
    pub forwarding: Forwarding,
    /// ICP: classify every datagram (true) or the first datagram of each flow (false).
    pub per_query: bool,
}

/// The validated configuration: every field is known good.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file as parsed (for printing back).
    pub file: ConfigFile,
    /// The rules document path.
    pub rules_file: PathBuf,
    /// Marks l7mark may use.
    pub mark_range: RangeInclusive<u32>,
    /// The services.
    pub services: Vec<Service>,
    /// Queue settings.
    pub queues: QueuesFile,
    /// Where the API listens.
    pub api_listen: ApiListen,
    /// nft settings.
    pub nft: NftFile,
    /// Binder settings.
    pub binder: BinderFile,
}

impl Config {
    /// Parse and validate a TOML configuration, listing every problem.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            ConfigError(vec![format!("config: {at}{msg}")])
        })?;
        Config::validate(file)
    }

    /// Validate a parsed file.
    pub fn validate(file: ConfigFile) -> Result<Config, ConfigError> {
        let mut p = Vec::new();

        if file.rules_file.as_os_str().is_empty() {
            p.push("rules_file: must not be empty".to_string());
        }

        let (min, max) = (file.marks.min, file.marks.max);
        if min == 0 {
            p.push("marks.min: must be at least 1 (mark 0 means 'no mark' to IPVS and nft)".into());
        }
        if max >= CT_DONE_BIT {
            p.push(format!(
                "marks.max: must be below {CT_DONE_BIT:#x} (that bit of the conntrack mark is the binder's DONE flag)"
            ));
        }
        if min > max {
            p.push(format!("marks: min {min} is above max {max}"));
        }

        if file.services.is_empty() {
            p.push("service: at least one [[service]] is needed".into());
        }
        let mut names = BTreeSet::new();
        let mut endpoints = BTreeSet::new();
        let mut services = Vec::new();
        for (i, s) in file.services.iter().enumerate() {
            let at = if s.name.is_empty() {
                format!("service[{i}]")
            } else {
                format!("service {}", s.name)
            };
            if s.name.is_empty() {
                p.push(format!("{at}.name: must not be empty"));
            } else if !s
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                p.push(format!("{at}.name: only letters, digits, '-' and '_'"));
            } else if !names.insert(s.name.clone()) {
                p.push(format!("{at}.name: duplicate service name"));
            }
            if s.port == 0 {
                p.push(format!("{at}.port: must not be 0"));
            }
            if !endpoints.insert((s.vip, s.port, s.proto.is_tcp())) {
                p.push(format!(
                    "{at}: {}:{} ({}) is configured twice",
                    s.vip,
                    s.port,
                    if s.proto.is_tcp() { "tcp" } else { "udp" }
                ));
            }
            if s.vip.is_unspecified() || s.vip.is_multicast() {
                p.push(format!(
                    "{at}.vip: {} is not a usable virtual address",
                    s.vip
                ));
            }
            if s.proto.is_tcp() && s.forwarding != Forwarding::Nat {
                p.push(format!(
                    "{at}.forwarding: L7 classification of TCP needs IPVS NAT (masquerading): with \
                     DR/TUN the real server answers the client directly, so the connection cannot be \
                     bound after the first payload (use an L4 service for DR/TUN)"
                ));
            }
            if s.proto.is_tcp() && s.vip.is_ipv6() {
                p.push(format!(
                    "{at}.vip: IPv6 L7 TCP services are not supported yet (the delayed binder is IPv4 \
                     only; see docs/limits.md)"
                ));
            }
            if s.per_query.is_some() && s.proto != ServiceProto::Icp {
                p.push(format!("{at}.per_query: only for proto = \"icp\""));
            }
            let per_query = s.per_query.unwrap_or(true);
            if s.proto == ServiceProto::Icp && per_query && s.forwarding == Forwarding::Nat {
                p.push(format!(
                    "{at}.forwarding: per-query ICP routing needs IPVS one-packet scheduling (-o), and \
                     IPVS does not de-NAT replies of one-packet connections (ip_vs_conn_hash skips them), \
                     so caches' replies would not come from the VIP: use forwarding = \"dr\" or \"tun\", \
                     or per_query = false (queries then stick to one cache per client socket for the \
                     IPVS UDP timeout)"
                ));
            }
            services.push(Service {
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
                proto: s.proto,
                forwarding: s.forwarding,
                per_query,
            });
        }

        let q = &file.queues;
        if q.workers == 0 || q.workers > 64 {
            p.push("queues.workers: must be 1..=64".into());
        } else if u32::from(q.base) + u32::from(q.workers) * u32::from(QUEUE_KINDS) - 1 > MAX_QUEUE
        {
            p.push(format!(
                "queues.base: base + {QUEUE_KINDS} * workers - 1 must not exceed {MAX_QUEUE}"
            ));
        }
        if q.max_len == 0 {
            p.push("queues.max_len: must be at least 1".into());
        }
        if q.rcvbuf_bytes < (64 << 10) {
            p.push("queues.rcvbuf_bytes: must be at least 65536".into());
        }

        let api_listen = match parse_listen(&file.api.listen) {
            Ok(l) => Some(l),
            Err(why) => {
                p.push(format!("api.listen: {why}"));
                None
            }
        };
        if file.api.token.is_some() && file.api.token_file.is_some() {
            p.push("api: give token or token_file, not both".into());
        }
        if let Some(t) = &file.api.token {
            if t.len() < 16 {
                p.push("api.token: must be at least 16 characters".into());
            }
        }
        if file.api.max_body_bytes < 1024 {
            p.push("api.max_body_bytes: must be at least 1024".into());
        }

        let t = &file.nft.table;
        if t.is_empty()
            || t.len() > 64
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            p.push("nft.table: 1-64 characters of letters, digits, '_' and '-'".into());
        }

        let b = &file.binder;
        if b.hold_timeout_ms == 0 || b.hold_timeout_ms > 120_000 {
            p.push(
                "binder.hold_timeout_ms: must be 1..=120000 (SYN cookies are valid about 2 minutes)"
                    .into(),
            );
        }
        if b.window == 0 {
            p.push("binder.window: must not be 0 (the client would never send its request)".into());
        }
        if b.max_key_bytes < 512 {
            p.push("binder.max_key_bytes: must be at least 512".into());
        }
        if b.max_flow_bytes < b.max_key_bytes {
            p.push("binder.max_flow_bytes: must be at least max_key_bytes".into());
        }
        if b.max_client_bytes < b.max_flow_bytes {
            p.push("binder.max_client_bytes: must be at least max_flow_bytes".into());
        }
        if b.max_total_bytes < b.max_client_bytes {
            p.push("binder.max_total_bytes: must be at least max_client_bytes".into());
        }
        if b.max_flows == 0 {
            p.push("binder.max_flows: must be at least 1".into());
        }
        // Above max_flows they simply never bite first.
        if b.max_client_flows == 0 {
            p.push("binder.max_client_flows: must be at least 1".into());
        }
        if b.max_unconfirmed == 0 {
            p.push("binder.max_unconfirmed: must be at least 1".into());
        }
        let sp = &b.synproxy;
        if !(536..=9000).contains(&sp.mss) {
            p.push("binder.synproxy.mss: must be 536..=9000".into());
        }
        if sp.wscale > 14 {
            p.push("binder.synproxy.wscale: must be 0..=14 (RFC 7323 §2.3)".into());
        }

        match (p.is_empty(), api_listen) {
            (true, Some(api_listen)) => Ok(Config {
                rules_file: file.rules_file.clone(),
                mark_range: min..=max,
                services,
                queues: file.queues.clone(),
                api_listen,
                nft: file.nft.clone(),
                binder: file.binder.clone(),
                file,
            }),
            _ => Err(ConfigError(p)),
        }
    }

    /// Services of one protocol class.
    pub fn tcp_services(&self) -> impl Iterator<Item = &Service> {
        self.services.iter().filter(|s| s.proto.is_tcp())
    }

    /// ICP services.
    pub fn icp_services(&self) -> impl Iterator<Item = &Service> {
        self.services
            .iter()
            .filter(|s| s.proto == ServiceProto::Icp)
    }

    /// The NFQUEUE number worker `worker` uses for events of `kind`.
    pub fn queue_num(&self, kind: QueueKind, worker: u16) -> u16 {
        queue_num(self.queues.base, self.queues.workers, kind, worker)
    }
}

/// The kinds of events l7mark queues; each worker owns one queue per kind, so the event kind is
/// explicit in the queue number and all events of one flow reach the same worker (the nft rules
/// pick the worker by a hash of the client address and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// Datagrams to classify (ICP): stateless, spread by fanout.
    Datagram = 0,
    /// Binder: the client's SYN-cookie ACK and early data (conntrack INVALID), input hook.
    ClientInvalid = 1,
    /// Binder: SYNPROXY's server SYN, output hook, held until classified.
    ServerSyn = 2,
    /// Binder: the real server's SYN-ACK, forward hook.
    ServerSynAck = 3,
    /// Binder: client packets of a flow past SYN_SENT without seqadj yet (no bypass).
    PreSeqadj = 4,
    /// Binder: client packets after seqadj, before the re-injection is done (the DONE gate).
    DoneGate = 5,
}

/// How many queue kinds exist (queue numbers used = kinds × workers).
pub const QUEUE_KINDS: u16 = 6;

impl QueueKind {
    /// All kinds, in queue-number order.
    pub const ALL: [QueueKind; QUEUE_KINDS as usize] = [
        QueueKind::Datagram,
        QueueKind::ClientInvalid,
        QueueKind::ServerSyn,
        QueueKind::ServerSynAck,
        QueueKind::PreSeqadj,
        QueueKind::DoneGate,
    ];
}

/// The queue number of (`kind`, `worker`): `base + kind * workers + worker`.
pub fn queue_num(base: u16, workers: u16, kind: QueueKind, worker: u16) -> u16 {
    base + (kind as u16) * workers + worker
}

/// The event kind and worker a queue number belongs to, if it is one of l7mark's.
pub fn queue_owner(base: u16, workers: u16, num: u16) -> Option<(QueueKind, u16)> {
    let rel = num.checked_sub(base)?;
    if workers == 0 {
        return None;
    }
    let kind = QueueKind::ALL.get(usize::from(rel / workers))?;
    Some((*kind, rel % workers))
}

fn parse_listen(s: &str) -> Result<ApiListen, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() || !path.starts_with('/') {
            return Err("unix: needs an absolute path".into());
        }
        return Ok(ApiListen::Unix(PathBuf::from(path)));
    }
    s.parse::<SocketAddr>()
        .map(ApiListen::Tcp)
        .map_err(|_| format!("{s:?} is neither ip:port nor unix:/path"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
rules_file = "/var/lib/l7mark/rules.json"
[marks]
min = 100
max = 999
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
proto = "http"
[[service]]
name = "icp"
vip = "10.0.0.100"
port = 3130
proto = "icp"
forwarding = "dr"
"#;

    #[test]
    fn good_config_validates_with_defaults() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(c.mark_range, 100..=999);
        assert_eq!(c.services.len(), 2);
        assert!(c.services[1].per_query);
        assert_eq!(c.queues.workers, 2);
        assert_eq!(
            c.api_listen,
            ApiListen::Tcp("127.0.0.1:9180".parse().unwrap())
        );
        assert_eq!(c.binder.on_hold_timeout, HoldPolicy::Default);
    }

    #[test]
    fn every_problem_is_listed() {
        let bad = r#"
rules_file = ""
[marks]
min = 0
max = 4294967295
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
proto = "http"
forwarding = "dr"
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
proto = "tls"
[[service]]
name = "icp"
vip = "10.0.0.100"
port = 3130
proto = "icp"
[queues]
workers = 0
[api]
listen = "nowhere"
[binder]
window = 0
"#;
        let e = Config::from_toml(bad).unwrap_err();
        let text = e.to_string();
        for needle in [
            "rules_file: must not be empty",
            "marks.min",
            "marks.max",
            "service web.forwarding: L7 classification of TCP needs IPVS NAT",
            "service web.name: duplicate",
            "10.0.0.100:80 (tcp) is configured twice",
            "service icp.forwarding: per-query ICP routing",
            "queues.workers",
            "api.listen",
            "binder.window",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn unknown_fields_and_syntax_errors_are_reported() {
        let e = Config::from_toml("rules_file = \"/x\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = Config::from_toml("rules_file = ").unwrap_err();
        assert!(e.to_string().starts_with("config: "), "{e}");
    }

    #[test]
    fn icp_nat_without_per_query_is_allowed() {
        let text = GOOD.replace(
            "forwarding = \"dr\"",
            "forwarding = \"nat\"\nper_query = false",
        );
        let c = Config::from_toml(&text).unwrap();
        assert!(!c.services[1].per_query);
    }

    #[test]
    fn queue_numbers_round_trip() {
        for workers in 1..5u16 {
            for kind in QueueKind::ALL {
                for w in 0..workers {
                    let n = queue_num(100, workers, kind, w);
                    assert_eq!(queue_owner(100, workers, n), Some((kind, w)));
                }
            }
            assert_eq!(queue_owner(100, workers, 99), None);
            assert_eq!(queue_owner(100, workers, 100 + QUEUE_KINDS * workers), None);
        }
    }

    #[test]
    fn unix_listen() {
        let text = format!("{GOOD}\n[api]\nlisten = \"unix:/run/l7mark.sock\"\n");
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(
            c.api_listen,
            ApiListen::Unix(PathBuf::from("/run/l7mark.sock"))
        );
    }
}
