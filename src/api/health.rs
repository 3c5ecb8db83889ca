//! `GET /healthz`: can this director steer traffic by content right now?
//!
//! ```json
//! {"status": "ok", "role": "active",
//!  "table": {"version": 3, "etag": "\"3-…\"", "rules": 6, "default_mark": 100},
//!  "checks": {
//!    "queues":    {"status": "ok",   "message": "12 queues bound", "problems": []},
//!    "nft_table": {"status": "ok",   "message": "table inet l7mark loaded", "problems": []},
//!    "ipvs":      {"status": "fail", "message": "…", "problems": ["mark 110: no IPVS fwmark service (FWM 0000006E in /proc/net/ip_vs)"]},
//!    "vips":      {"status": "ok",   "message": "all 1 VIPs held", "problems": []}}}
//! ```
//!
//! Each check is `ok`, `warn` (works, but not as configured), `fail` or `skipped`. The HTTP
//! status is **503 when any check fails**, 200 otherwise.
//!
//! - `queues`: every queue number l7mark owns is in `/proc/net/netfilter/nfnetlink_queue` with a
//!   listener (port id ≠ 0). A missing queue means its packets bypass (or, for the pre-seqadj
//!   queue, are dropped).
//! - `nft_table`: with `[nft] manage = true`, l7mark's table is loaded and carries the current
//!   default mark (the last apply did not fail). Skipped with `manage = false`.
//! - `ipvs`: `/proc/net/ip_vs` has an fwmark service for every mark the rules can yield
//!   ([`crate::rules::Table::marks_used`]: default, rule marks, hash lists). Fail when one is missing, or when a
//!   mark reachable from an HTTP/TLS service has a real server that is not `Masq` (the TCP binder
//!   needs NAT). Warn when a service has no real server with weight > 0, when an ICP-only mark's
//!   real servers do not use the ICP service's `forwarding`, or when an ICP-only mark of a
//!   per-query service lacks one-packet scheduling (`ops`). Marks shared by HTTP/TLS and ICP
//!   (the default mark, when both kinds are configured) are held to the TCP requirement only.
//! - `vips`: the service VIPs held by an interface (rtnetlink address dump). All held: role
//!   `active`. **None held: role `backup`, status ok** — a keepalived BACKUP director does not
//!   hold the VIPs but must keep l7mark ready; alerting on it would page for every standby. Some
//!   held but not all: fail (role `split`): traffic for the missing VIPs goes nowhere.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::Serialize;

use super::ApiState;
use super::metrics::own_queues;
use super::procfs::{self, Forward, IpvsService, NfQueueStat, ServiceKey};
use crate::config::{Config, Forwarding, ServiceProto};
use crate::control::FirewallState;
use crate::rules::RulesDoc;

/// How long the address dump may take.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where kernel state comes from. The daemon uses [`SystemProbe`]; tests inject text.
pub trait Probe: Send + Sync {
    /// The text of `/proc/net/netfilter/nfnetlink_queue`.
    fn nfnetlink_queue(&self) -> std::io::Result<String>;
    /// The text of `/proc/net/ip_vs`.
    fn ip_vs(&self) -> std::io::Result<String>;
    /// Every address configured on an interface of this network namespace.
    fn addresses(&self) -> BoxFuture<'static, Result<Vec<IpAddr>, String>>;
}

/// The real kernel: `/proc` files of the daemon's network namespace and an rtnetlink dump.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemProbe;

impl Probe for SystemProbe {
    fn nfnetlink_queue(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue")
    }

    fn ip_vs(&self) -> std::io::Result<String> {
        std::fs::read_to_string(procfs::IP_VS)
    }

    fn addresses(&self) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
        Box::pin(addresses())
    }
}

/// Dump the addresses of every interface with rtnetlink (`RTM_GETADDR`). A fresh connection per
/// call: health checks are rare and this keeps no socket open between them.
async fn addresses() -> Result<Vec<IpAddr>, String> {
    use futures_util::TryStreamExt as _;
    use netlink_packet_route::address::AddressAttribute;

    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("rtnetlink socket: {e}"))?;
    let task = tokio::spawn(conn);
    let mut out = Vec::new();
    let mut dump = handle.address().get().execute();
    let result = loop {
        match dump.try_next().await {
            Ok(Some(msg)) => {
                for a in msg.attributes {
                    // IFA_LOCAL is the address for IPv4 (IFA_ADDRESS is the peer on
                    // point-to-point links); IPv6 only has IFA_ADDRESS. Take both.
                    if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = a {
                        out.push(ip);
                    }
                }
            }
            Ok(None) => break Ok(out),
            Err(e) => break Err(format!("rtnetlink address dump: {e}")),
        }
    };
    task.abort();
    result
}

/// The state of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not applicable to this configuration.
    Skipped,
    /// As it should be.
    Ok,
    /// Works, but not as configured.
    Warn,
    /// Broken: `/healthz` answers 503.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its state.
    pub status: Status,
    /// A one-line summary.
    pub message: String,
    /// Every problem found (for `warn` and `fail`), one line each.
    pub problems: Vec<String>,
}

impl Check {
    fn new(message: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    fn skipped(message: impl Into<String>) -> Check {
        Check {
            status: Status::Skipped,
            ..Check::new(message)
        }
    }

    fn problem(&mut self, status: Status, text: String) {
        self.status = self.status.max(status);
        self.problems.push(text);
    }
}

/// The director's role, judged by the VIPs it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds every VIP.
    Active,
    /// Holds none (keepalived BACKUP).
    Backup,
    /// Holds some: a broken failover.
    Split,
    /// The addresses could not be read.
    Unknown,
}

/// The table the checks ran against.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// Version in this process.
    pub version: u64,
    /// Its ETag.
    pub etag: String,
    /// Number of rules.
    pub rules: usize,
    /// Default mark.
    pub default_mark: u32,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok` or `fail` (the worst check, `warn` counting as ok).
    pub status: &'static str,
    /// The role by VIPs.
    pub role: Role,
    /// The table in use.
    pub table: TableInfo,
    /// Each check by name: `queues`, `nft_table`, `ipvs`, `vips`.
    pub checks: BTreeMap<&'static str, Check>,
}

impl Health {
    /// Whether any check failed.
    pub fn failing(&self) -> bool {
        self.checks.values().any(|c| c.status == Status::Fail)
    }
}

/// Everything the checks look at, gathered beforehand so [`evaluate`] is pure.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The configuration.
    pub cfg: &'a Config,
    /// The rules document in use.
    pub doc: &'a RulesDoc,
    /// Every mark it can yield.
    pub marks: BTreeSet<u32>,
    /// The table info.
    pub table: TableInfo,
    /// Parsed `nfnetlink_queue`, or why it could not be read.
    pub nfqueue: Result<Vec<NfQueueStat>, String>,
    /// Parsed `ip_vs`, or why it could not be read.
    pub ip_vs: Result<Vec<IpvsService>, String>,
    /// With `manage`: whether the nft table is loaded (or why that is unknown).
    pub nft_present: Option<Result<bool, String>>,
    /// The controller's view of the nft table.
    pub firewall: FirewallState,
    /// Interface addresses, or why they could not be read.
    pub addresses: Result<Vec<IpAddr>, String>,
}

/// Which services can send flows to each mark: the default mark serves every service; an ICP
/// rule's marks ICP services, an `sni` rule's TLS services, any other rule's HTTP services.
pub fn mark_users<'c>(
    cfg: &'c Config,
    doc: &RulesDoc,
) -> BTreeMap<u32, Vec<&'c crate::config::Service>> {
    let mut users: BTreeMap<u32, Vec<&crate::config::Service>> = BTreeMap::new();
    let mut add = |mark: u32, proto: Option<ServiceProto>| {
        let e = users.entry(mark).or_default();
        for s in &cfg.services {
            if proto.is_none_or(|p| p == s.proto) && !e.iter().any(|x| x.name == s.name) {
                e.push(s);
            }
        }
    };
    add(doc.default_mark, None);
    for r in &doc.rules {
        let proto = if r.icp == Some(true) {
            ServiceProto::Icp
        } else if r.sni.is_some() {
            ServiceProto::Tls
        } else {
            ServiceProto::Http
        };
        let marks = r
            .mark
            .into_iter()
            .chain(r.url_hash.iter().flat_map(|h| h.marks.iter().copied()));
        for m in marks {
            add(m, Some(proto));
        }
    }
    users
}

/// A persistent fwmark service on a mark the TCP binder sets is refused: a client reusing its
/// source port within IPVS's TIME_WAIT (2 min) meets the old connection's entry; a persistent
/// entry is "controlled" and IPVS never reschedules it (ip_vs_core.c is_new_conn_expected), so
/// the new connection would land on the OLD class's real server whatever its new mark.
fn persistence_problem(
    mark: u32,
    svc: &IpvsService,
    tcp: &crate::config::Service,
) -> Option<String> {
    svc.persistent?;
    Some(format!(
        "mark {mark}: the fwmark service is persistent (ipvsadm -p), but service {} ({:?}) binds \
         by the first payload: a client reusing its source port would keep the previous class's \
         real server (ip_vs_core.c is_new_conn_expected); use the sh or mh scheduler for affinity",
        tcp.name, tcp.proto
    ))
}

/// The persistent IPVS fwmark services among the marks the TCP binder sets (for `l7mark check`,
/// which reads the live `/proc/net/ip_vs`; `/healthz` reports the same lines).
pub fn l7_persistence_problems(
    cfg: &Config,
    doc: &RulesDoc,
    services: &[IpvsService],
) -> Vec<String> {
    mark_users(cfg, doc)
        .iter()
        .filter_map(|(&mark, users)| {
            let tcp = users.iter().find(|s| s.proto.is_tcp())?;
            let svc = services
                .iter()
                .find(|s| s.key == ServiceKey::Fwmark(mark))?;
            persistence_problem(mark, svc, tcp)
        })
        .collect()
}

fn expected_forward(f: Forwarding) -> Forward {
    match f {
        Forwarding::Nat => Forward::Masq,
        Forwarding::Dr => Forward::Route,
        Forwarding::Tun => Forward::Tunnel,
    }
}

/// Run every check.
pub fn evaluate(i: &Inputs<'_>) -> Health {
    let mut checks = BTreeMap::new();
    checks.insert("queues", check_queues(i));
    checks.insert("nft_table", check_nft(i));
    checks.insert("ipvs", check_ipvs(i));
    let (vips, role) = check_vips(i);
    checks.insert("vips", vips);
    let mut h = Health {
        status: "ok",
        role,
        table: i.table.clone(),
        checks,
    };
    if h.failing() {
        h.status = "fail";
    }
    h
}

fn check_queues(i: &Inputs<'_>) -> Check {
    let own = own_queues(i.cfg);
    let stats = match &i.nfqueue {
        Ok(s) => s,
        Err(e) => {
            let mut c = Check::new("cannot read /proc/net/netfilter/nfnetlink_queue");
            c.problem(Status::Fail, e.clone());
            return c;
        }
    };
    let mut c = Check::new(format!("{} queues bound", own.len()));
    for (q, _) in &own {
        match stats.iter().find(|s| s.queue == *q) {
            Some(s) if s.portid != 0 => {}
            Some(_) => c.problem(Status::Fail, format!("queue {q}: no listener (port id 0)")),
            None => c.problem(Status::Fail, format!("queue {q}: not bound")),
        }
    }
    if c.status != Status::Ok {
        c.message = format!(
            "{} of {} queues not bound: their packets bypass l7mark",
            c.problems.len(),
            own.len()
        );
    }
    c
}

fn check_nft(i: &Inputs<'_>) -> Check {
    let table = &i.cfg.nft.table;
    let Some(present) = &i.nft_present else {
        return Check::skipped("[nft] manage = false: the operator loads the ruleset");
    };
    let mut c = Check::new(format!("table inet {table} loaded"));
    match present {
        Ok(true) => {}
        Ok(false) => c.problem(Status::Fail, format!("table inet {table} is not loaded")),
        Err(e) => c.problem(Status::Fail, format!("cannot list table inet {table}: {e}")),
    }
    if let Some(e) = &i.firewall.last_error {
        c.problem(
            Status::Fail,
            format!(
                "the table has default mark {} but the rules say {}: the last apply failed: {e}",
                i.firewall
                    .applied_default_mark
                    .map_or_else(|| "?".to_string(), |m| m.to_string()),
                i.table.default_mark
            ),
        );
    }
    if c.status != Status::Ok {
        c.message = format!("table inet {table} is missing or out of date");
    }
    c
}

fn check_ipvs(i: &Inputs<'_>) -> Check {
    let services = match &i.ip_vs {
        Ok(s) => s,
        Err(e) => {
            let mut c = Check::new("cannot read /proc/net/ip_vs (is the ip_vs module loaded?)");
            c.problem(Status::Fail, e.clone());
            return c;
        }
    };
    let users = mark_users(i.cfg, i.doc);
    let mut c = Check::new(format!(
        "an fwmark service for each of the {} marks in use",
        i.marks.len()
    ));
    for &mark in &i.marks {
        let Some(svc) = services.iter().find(|s| s.key == ServiceKey::Fwmark(mark)) else {
            c.problem(
                Status::Fail,
                format!(
                    "mark {mark}: no IPVS fwmark service (FWM {mark:08X} in /proc/net/ip_vs): its \
                     traffic is not load balanced"
                ),
            );
            continue;
        };
        if !svc.dests.iter().any(|d| d.weight > 0) {
            c.problem(
                Status::Warn,
                format!("mark {mark}: the fwmark service has no real server with weight > 0"),
            );
        }
        let svc_users = users.get(&mark).map(Vec::as_slice).unwrap_or_default();
        let tcp_user = svc_users.iter().find(|s| s.proto.is_tcp());
        if let Some(tcp) = tcp_user {
            if let Some(p) = persistence_problem(mark, svc, tcp) {
                c.problem(Status::Fail, p);
            }
            for d in svc.dests.iter().filter(|d| d.forward != Forward::Masq) {
                c.problem(
                    Status::Fail,
                    format!(
                        "mark {mark}: real server {} forwards by {}, but service {} ({:?}) needs \
                         Masq (NAT): the TCP binder only works with IPVS NAT",
                        d.addr,
                        d.forward.name(),
                        tcp.name,
                        tcp.proto
                    ),
                );
            }
        }
        // A mark shared with an HTTP/TLS service (always the default mark when both kinds are
        // configured) must be NAT for TCP's sake; ICP's wishes (its forwarding, `ops`, which
        // breaks NAT replies) cannot be met there, so they are only checked on ICP-only marks.
        let icp_users = svc_users
            .iter()
            .filter(|s| s.proto == ServiceProto::Icp && tcp_user.is_none());
        for icp in icp_users {
            let want = expected_forward(icp.forwarding);
            for d in svc.dests.iter().filter(|d| d.forward != want) {
                c.problem(
                    Status::Warn,
                    format!(
                        "mark {mark}: real server {} forwards by {}, but service {} is configured \
                         with forwarding = {:?} ({})",
                        d.addr,
                        d.forward.name(),
                        icp.name,
                        icp.forwarding,
                        want.name()
                    ),
                );
            }
            if icp.per_query && !svc.ops {
                c.problem(
                    Status::Warn,
                    format!(
                        "mark {mark}: service {} classifies every ICP query, but the fwmark \
                         service lacks one-packet scheduling (ipvsadm -o): queries from one \
                         socket stick to one real server",
                        icp.name
                    ),
                );
            }
        }
    }
    if c.status == Status::Fail {
        c.message = "some marks in use are not served correctly by IPVS".into();
    } else if c.status == Status::Warn {
        c.message = "IPVS serves every mark, with warnings".into();
    }
    c
}

fn check_vips(i: &Inputs<'_>) -> (Check, Role) {
    let vips: BTreeSet<IpAddr> = i.cfg.services.iter().map(|s| s.vip).collect();
    let addrs = match &i.addresses {
        Ok(a) => a,
        Err(e) => {
            let mut c = Check::new("cannot list the interface addresses");
            c.problem(Status::Fail, e.clone());
            return (c, Role::Unknown);
        }
    };
    let missing: Vec<IpAddr> = vips
        .iter()
        .filter(|v| !addrs.contains(v))
        .copied()
        .collect();
    if missing.is_empty() {
        (
            Check::new(format!("all {} VIPs held", vips.len())),
            Role::Active,
        )
    } else if missing.len() == vips.len() {
        (
            Check::new(format!(
                "no VIP is held ({}): this director is a backup",
                join(&missing)
            )),
            Role::Backup,
        )
    } else {
        let mut c = Check::new(format!(
            "{} of {} VIPs held: a partial failover",
            vips.len() - missing.len(),
            vips.len()
        ));
        for v in missing {
            c.problem(Status::Fail, format!("VIP {v} is not on any interface"));
        }
        (c, Role::Split)
    }
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /healthz`.
pub async fn healthz(State(s): State<ApiState>) -> Response {
    let c = s.controller();
    let cfg = c.config();
    let snap = c.snapshot();
    let probe = s.probe();
    let nfqueue = probe
        .nfnetlink_queue()
        .map(|t| procfs::parse_nfnetlink_queue(&t))
        .map_err(|e| e.to_string());
    let ip_vs = probe
        .ip_vs()
        .map(|t| procfs::parse_ip_vs(&t))
        .map_err(|e| e.to_string());
    let nft_present = if cfg.nft.manage {
        let fw = c.firewall().clone();
        let table = cfg.nft.table.clone();
        // `nft list table` is a subprocess: keep it off the runtime thread.
        Some(
            tokio::task::spawn_blocking(move || fw.present(&table))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| super::error::display_chain(&e))),
        )
    } else {
        None
    };
    let addresses = tokio::time::timeout(NETLINK_TIMEOUT, probe.addresses())
        .await
        .unwrap_or_else(|_| Err("rtnetlink address dump timed out".into()));
    let inputs = Inputs {
        cfg,
        doc: snap.table.doc(),
        marks: snap.table.marks_used(),
        table: TableInfo {
            version: snap.version,
            etag: snap.etag(),
            rules: snap.table.len(),
            default_mark: snap.table.default_mark(),
        },
        nfqueue,
        ip_vs,
        nft_present,
        firewall: c.firewall_state(),
        addresses,
    };
    let h = evaluate(&inputs);
    let status = if h.failing() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(h)).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rules::{Table, ValidateOptions};

    const CFG: &str = r#"
rules_file = "/nonexistent/rules.json"
[queues]
base = 4000
workers = 1
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
proto = "http"
[[service]]
name = "icp"
vip = "10.0.0.101"
port = 3130
proto = "icp"
forwarding = "dr"
"#;

    const DOC: &str = r#"{"default_mark": 100, "rules": [
        {"id": "img", "host": "static.example.com", "mark": 110},
        {"id": "cache", "icp": true, "url_hash": {"marks": [120, 121]}}]}"#;

    fn nfq_all_bound() -> Vec<NfQueueStat> {
        procfs::parse_nfnetlink_queue(
            &(4000..4006)
                .map(|q| format!("{q} 777 0 2 65531 0 0 5 1\n"))
                .collect::<String>(),
        )
    }

    const IPVS_GOOD: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
FWM  00000064 rr
  -> 0A000002:0000      Masq    1      0          0
FWM  0000006E sh
  -> 0A000003:0000      Masq    1      0          0
FWM  00000078 sh ops
  -> 0A000004:0000      Route   1      0          0
FWM  00000079 sh ops
  -> 0A000005:0000      Route   1      0          0
";

    fn run(
        ipvs: &str,
        addrs: &[&str],
        nfq: Vec<NfQueueStat>,
        nft: Option<Result<bool, String>>,
    ) -> Health {
        let cfg = Config::from_toml(CFG).unwrap();
        let table = Table::from_json(DOC.as_bytes(), &ValidateOptions::default()).unwrap();
        let i = Inputs {
            cfg: &cfg,
            doc: table.doc(),
            marks: table.marks_used(),
            table: TableInfo {
                version: 1,
                etag: "\"1-0\"".into(),
                rules: table.len(),
                default_mark: table.default_mark(),
            },
            nfqueue: Ok(nfq),
            ip_vs: Ok(procfs::parse_ip_vs(ipvs)),
            nft_present: nft,
            firewall: FirewallState::default(),
            addresses: Ok(addrs.iter().map(|a| a.parse().unwrap()).collect()),
        };
        evaluate(&i)
    }

    #[test]
    fn all_good_is_active_and_ok() {
        let h = run(
            IPVS_GOOD,
            &["10.0.0.100", "10.0.0.101", "127.0.0.1"],
            nfq_all_bound(),
            Some(Ok(true)),
        );
        assert_eq!(h.status, "ok", "{h:#?}");
        assert_eq!(h.role, Role::Active);
        assert!(h.checks.values().all(|c| c.status == Status::Ok), "{h:#?}");
    }

    #[test]
    fn missing_fwmark_service_fails_and_names_the_mark() {
        let ipvs = IPVS_GOOD.replace("FWM  0000006E", "FWM  0000006F");
        let h = run(&ipvs, &["10.0.0.100", "10.0.0.101"], nfq_all_bound(), None);
        assert!(h.failing());
        let c = &h.checks["ipvs"];
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.problems
                .iter()
                .any(|p| p.starts_with("mark 110: no IPVS fwmark service"))
        );
        assert_eq!(h.checks["nft_table"].status, Status::Skipped);
    }

    #[test]
    fn persistent_service_on_a_tcp_l7_mark_fails() {
        let ipvs = IPVS_GOOD.replace("FWM  0000006E sh", "FWM  0000006E sh persistent 300");
        let h = run(&ipvs, &["10.0.0.100", "10.0.0.101"], nfq_all_bound(), None);
        let c = &h.checks["ipvs"];
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.problems
                .iter()
                .any(|p| p.starts_with("mark 110: the fwmark service is persistent")),
            "{c:#?}"
        );
        // An ICP-only mark may be persistent (no delayed binding there).
        let ipvs = IPVS_GOOD.replace("FWM  00000078 sh ops", "FWM  00000078 sh ops persistent 60");
        let h = run(&ipvs, &["10.0.0.100", "10.0.0.101"], nfq_all_bound(), None);
        assert_eq!(
            h.checks["ipvs"].status,
            Status::Ok,
            "{:#?}",
            h.checks["ipvs"]
        );
    }

    #[test]
    fn tcp_mark_with_dr_real_server_fails_icp_mismatch_warns() {
        let ipvs = IPVS_GOOD
            .replace("0A000003:0000      Masq", "0A000003:0000      Route")
            .replace("FWM  00000079 sh ops", "FWM  00000079 sh");
        let h = run(&ipvs, &["10.0.0.100", "10.0.0.101"], nfq_all_bound(), None);
        let c = &h.checks["ipvs"];
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.problems
                .iter()
                .any(|p| p.contains("mark 110") && p.contains("Masq"))
        );
        assert!(
            c.problems
                .iter()
                .any(|p| p.contains("mark 121") && p.contains("-o"))
        );
        // The default mark serves HTTP (Masq) and ICP (dr): only the TCP requirement applies.
        assert!(
            !c.problems.iter().any(|p| p.starts_with("mark 100:")),
            "{c:#?}"
        );
        // An ICP-only mark with a NAT real server warns.
        let ipvs = IPVS_GOOD.replace("0A000004:0000      Route", "0A000004:0000      Masq");
        let h = run(&ipvs, &["10.0.0.100", "10.0.0.101"], nfq_all_bound(), None);
        let c = &h.checks["ipvs"];
        assert_eq!(c.status, Status::Warn);
        assert!(!h.failing());
        assert!(c.problems[0].starts_with("mark 120: real server 0A000004:0000 forwards by Masq"));
    }

    #[test]
    fn no_vip_is_backup_and_ok_some_vips_is_split() {
        let h = run(IPVS_GOOD, &["192.168.1.1"], nfq_all_bound(), None);
        assert_eq!(h.role, Role::Backup);
        assert_eq!(h.checks["vips"].status, Status::Ok);
        let h = run(IPVS_GOOD, &["10.0.0.100"], nfq_all_bound(), None);
        assert_eq!(h.role, Role::Split);
        assert!(h.failing());
        assert_eq!(
            h.checks["vips"].problems,
            ["VIP 10.0.0.101 is not on any interface"]
        );
    }

    #[test]
    fn unbound_queues_and_missing_table_fail() {
        let mut nfq = nfq_all_bound();
        nfq.retain(|s| s.queue != 4002);
        nfq[0].portid = 0;
        let h = run(
            IPVS_GOOD,
            &["10.0.0.100", "10.0.0.101"],
            nfq,
            Some(Ok(false)),
        );
        assert_eq!(
            h.checks["queues"].problems,
            [
                "queue 4000: no listener (port id 0)",
                "queue 4002: not bound"
            ]
        );
        assert_eq!(h.checks["nft_table"].status, Status::Fail);
    }

    #[test]
    fn mark_users_by_protocol() {
        let cfg = Config::from_toml(CFG).unwrap();
        let doc = RulesDoc::from_json(DOC.as_bytes()).unwrap();
        let u = mark_users(&cfg, &doc);
        let names = |m: u32| u[&m].iter().map(|s| s.name.as_str()).collect::<Vec<_>>();
        assert_eq!(names(100), ["web", "icp"]);
        assert_eq!(names(110), ["web"]);
        assert_eq!(names(121), ["icp"]);
    }
}
