//! Pure parsers for the kernel's `/proc` views that metrics and health read. No I/O here: the
//! callers read the files (per network namespace) and hand the text over, so every parser is
//! tested on sample text.
//!
//! Both parsers skip lines they do not understand rather than fail: a newer kernel adding a
//! column or flag must not turn `/healthz` red.

/// One line of `/proc/net/netfilter/nfnetlink_queue`: an NFQUEUE instance (a bound queue).
///
/// The kernel prints (`net/netfilter/nfnetlink_queue.c`, `seq_show`):
/// `queue_num peer_portid queue_total copy_mode copy_range queue_dropped queue_user_dropped
/// id_sequence 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NfQueueStat {
    /// The queue number.
    pub queue: u16,
    /// Netlink port id of the bound socket (0: nobody listens).
    pub portid: u32,
    /// Packets waiting in the queue for a verdict now.
    pub queued: u32,
    /// Copy mode (0 none, 1 meta, 2 packet).
    pub copy_mode: u8,
    /// Bytes of each packet copied to user space.
    pub copy_range: u32,
    /// Packets dropped because the queue was full (`queue_maxlen`), counted only **without**
    /// fail-open: with `NFQA_CFG_F_FAIL_OPEN` those packets are accepted and counted nowhere.
    pub queue_dropped: u32,
    /// Packets the kernel could not deliver to the socket (receive buffer full), counted only
    /// without fail-open, like `queue_dropped`.
    pub user_dropped: u32,
    /// The id of the last packet enqueued: packets that got past the `queue_maxlen` check since
    /// the queue was bound (a `u32`: it wraps after 2³² packets).
    pub id_sequence: u32,
}

/// Parse `/proc/net/netfilter/nfnetlink_queue`.
pub fn parse_nfnetlink_queue(text: &str) -> Vec<NfQueueStat> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|s| s.parse::<u32>().ok());
            Some(NfQueueStat {
                queue: u16::try_from(num(0)?).ok()?,
                portid: num(1)?,
                queued: num(2)?,
                copy_mode: u8::try_from(num(3)?).ok()?,
                copy_range: num(4)?,
                queue_dropped: num(5)?,
                user_dropped: num(6)?,
                id_sequence: num(7)?,
            })
        })
        .collect()
}

/// How IPVS forwards to a real server (`ip_vs_fwd_name` in the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// NAT (`ipvsadm -m`).
    Masq,
    /// Direct routing (`-g`).
    Route,
    /// IP-in-IP (`-i`).
    Tunnel,
    /// The director itself.
    Local,
    /// Something this version does not know.
    Other(String),
}

impl Forward {
    fn parse(s: &str) -> Forward {
        match s {
            "Masq" => Forward::Masq,
            "Route" => Forward::Route,
            "Tunnel" => Forward::Tunnel,
            "Local" => Forward::Local,
            other => Forward::Other(other.to_string()),
        }
    }

    /// The name as the kernel prints it.
    pub fn name(&self) -> &str {
        match self {
            Forward::Masq => "Masq",
            Forward::Route => "Route",
            Forward::Tunnel => "Tunnel",
            Forward::Local => "Local",
            Forward::Other(s) => s,
        }
    }
}

/// What identifies an IPVS virtual service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKey {
    /// A firewall-mark service (`FWM  <hex mark>`).
    Fwmark(u32),
    /// A protocol service: protocol name and `hexaddr:hexport` as printed.
    Proto {
        /// `TCP`, `UDP`, `SCTP`.
        proto: String,
        /// Address and port as printed (`0A000064:0050`, `[2001:…]:0050`).
        addr: String,
    },
}

/// A real server of a virtual service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsDest {
    /// Address and port as printed.
    pub addr: String,
    /// Forwarding method.
    pub forward: Forward,
    /// Weight (0: quiesced).
    pub weight: i64,
}

/// A virtual service with its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsService {
    /// What it is keyed by.
    pub key: ServiceKey,
    /// Scheduler name.
    pub scheduler: String,
    /// One-packet scheduling (`ipvsadm -o`, flag `ops`).
    pub ops: bool,
    /// Persistence timeout as `/proc/net/ip_vs` prints it, if persistent: `svc->timeout`, which is
    /// in jiffies (`ip_vs_ctl.c` stores `timeout * HZ` and `ip_vs_info_seq_show` prints it raw), so
    /// 300 s shows as 75000 on a HZ=250 kernel. Only its presence is used.
    pub persistent: Option<u32>,
    /// Real servers.
    pub dests: Vec<IpvsDest>,
}

/// Where the kernel lists the IPVS services and their real servers (`ip_vs_info_seq_show`).
pub const IP_VS: &str = "/proc/net/ip_vs";

/// Parse `/proc/net/ip_vs` (`ip_vs_info_seq_show` in `net/netfilter/ipvs/ip_vs_ctl.c`):
///
/// ```text
/// IP Virtual Server version 1.2.1 (size=4096)
/// Prot LocalAddress:Port Scheduler Flags
///   -> RemoteAddress:Port Forward Weight ActiveConn InActConn
/// FWM  0000006E rr persistent 300 FFFFFFFF
///   -> 0A000002:0000      Masq    1      0          0
/// ```
///
/// The fwmark is printed in hex (`%08X`).
pub fn parse_ip_vs(text: &str) -> Vec<IpvsService> {
    let mut out: Vec<IpvsService> = Vec::new();
    // Dest lines after a service line that could not be parsed belong to no known service.
    let mut orphan = true;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["->", addr, fwd, weight, ..] if !addr.starts_with("RemoteAddress") => {
                if orphan {
                    continue;
                }
                if let (Some(svc), Ok(weight)) = (out.last_mut(), weight.parse::<i64>()) {
                    svc.dests.push(IpvsDest {
                        addr: (*addr).to_string(),
                        forward: Forward::parse(fwd),
                        weight,
                    });
                }
            }
            [kind, key, sched, flags @ ..] => {
                orphan = true;
                let key = match *kind {
                    "FWM" => match u32::from_str_radix(key, 16) {
                        Ok(m) => ServiceKey::Fwmark(m),
                        Err(_) => continue,
                    },
                    "TCP" | "UDP" | "SCTP" => ServiceKey::Proto {
                        proto: (*kind).to_string(),
                        addr: (*key).to_string(),
                    },
                    // Header lines ("IP Virtual Server …", "Prot …") and anything unknown.
                    _ => continue,
                };
                orphan = false;
                let persistent = flags
                    .iter()
                    .position(|&t| t == "persistent")
                    .and_then(|i| flags.get(i + 1))
                    .and_then(|t| t.parse().ok());
                out.push(IpvsService {
                    key,
                    scheduler: (*sched).to_string(),
                    ops: flags.contains(&"ops"),
                    persistent,
                    dests: Vec::new(),
                });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfnetlink_queue_lines() {
        // As printed by 6.x for three bound queues and one leftover line format.
        let text = "\
 4000  12345     0 2 65531     0     0      117  1
 4001 4294967295     3 2 65531     5     7 4294967295  1
   17      0     0 2 65531     0     0        0  1
garbage line
 70000  1 0 2 0 0 0 0 1
";
        let q = parse_nfnetlink_queue(text);
        assert_eq!(q.len(), 3);
        assert_eq!(
            q[0],
            NfQueueStat {
                queue: 4000,
                portid: 12345,
                queued: 0,
                copy_mode: 2,
                copy_range: 65531,
                queue_dropped: 0,
                user_dropped: 0,
                id_sequence: 117,
            }
        );
        assert_eq!(q[1].queued, 3);
        assert_eq!(q[1].queue_dropped, 5);
        assert_eq!(q[1].user_dropped, 7);
        assert_eq!(q[1].id_sequence, u32::MAX);
        assert_eq!(q[2].portid, 0);
        assert!(parse_nfnetlink_queue("").is_empty());
    }

    #[test]
    fn ip_vs_services_and_dests() {
        let text = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A000064:0050 rr
  -> 0A000002:0050      Masq    1      0          0
FWM  0000006E rr persistent 300 FFFFFFFF
  -> 0A000002:0000      Masq    1      3          10
  -> 0A000003:0000      Route   0      0          0
FWM  00000078 sh ops
  -> 0A000004:0000      Tunnel  2      0          0
UDP  [2001:0db8:0000:0000:0000:0000:0000:0001]:0C3A wlc ops persistent 60 128
  -> [2001:0db8:0000:0000:0000:0000:0000:0002]:0C3A      Route   1      0          0
FWM  000003E8 wrr
FWM  zz rr
  -> 0A000009:0000      Masq    1      0          0
SCTP 0A000064:0050 rr somenewflag
  -> 0A000002:0050      Bypass  1      0          0
";
        let s = parse_ip_vs(text);
        assert_eq!(s.len(), 6, "{s:#?}");
        assert_eq!(
            s[0].key,
            ServiceKey::Proto {
                proto: "TCP".into(),
                addr: "0A000064:0050".into()
            }
        );
        assert_eq!(s[1].key, ServiceKey::Fwmark(110));
        assert_eq!(s[1].persistent, Some(300));
        assert!(!s[1].ops);
        assert_eq!(s[1].dests.len(), 2);
        assert_eq!(s[1].dests[1].forward, Forward::Route);
        assert_eq!(s[1].dests[1].weight, 0);
        assert_eq!(s[2].key, ServiceKey::Fwmark(120));
        assert!(s[2].ops);
        assert_eq!(s[2].scheduler, "sh");
        assert_eq!(s[2].dests[0].forward, Forward::Tunnel);
        assert!(s[3].ops);
        assert_eq!(s[3].persistent, Some(60));
        assert_eq!(s[3].dests[0].forward, Forward::Route);
        assert_eq!(s[4].key, ServiceKey::Fwmark(1000));
        // The unparseable FWM line is skipped with its dest (not given to FWM 1000).
        assert!(s[4].dests.is_empty());
        assert_eq!(s[5].dests[0].forward, Forward::Other("Bypass".into()));
        assert_eq!(s[5].dests[0].forward.name(), "Bypass");
    }

    #[test]
    fn ip_vs_empty_and_headers_only() {
        assert!(parse_ip_vs("").is_empty());
        assert!(
            parse_ip_vs(
                "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
            )
            .is_empty()
        );
    }
}
