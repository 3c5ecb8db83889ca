//! Test program only, unsupported outside of l7mark's test suites (VM, netns lab, benchmarks).
//! Do not ship to end users.
//!
//! - `icp-server`: an ICP v2 responder that answers every query with ICP_OP_MISS (or HIT for
//!   URLs containing "hit") and puts its own address in the reply's sender field, so a client can
//!   tell which cache answered; it logs every query to stdout.
//! - `icp-query`: sends ICP queries for the given URLs from ONE source socket (as Squid does) and
//!   prints `url reqnum answered-by` per reply; exits non-zero if any query stays unanswered.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use l7mark::proto::Parsed;
use l7mark::proto::icp::{self, IcpBody, Opcode};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  l7mark-testkit icp-server --listen IP:PORT --name NAME [--sender IP]\n  \
         l7mark-testkit icp-query --to IP:PORT [--bind IP:PORT] [--timeout-ms N] URL..."
    );
    ExitCode::from(64)
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("icp-server") => icp_server(&args[1..]),
        Some("icp-query") => icp_query(&args[1..]),
        _ => usage(),
    }
}

fn icp_server(args: &[String]) -> ExitCode {
    let (Some(listen), Some(name)) = (arg(args, "--listen"), arg(args, "--name")) else {
        return usage();
    };
    let sender: Ipv4Addr = arg(args, "--sender")
        .and_then(|s| s.parse().ok())
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let sock = match UdpSocket::bind(listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("icp-server {name}: bind {listen}: {e}");
            return ExitCode::from(71);
        }
    };
    println!("icp-server {name} listening on {listen}");
    let mut buf = [0u8; 16384];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("icp-server {name}: recv: {e}");
                continue;
            }
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        match icp::parse(datagram) {
            Parsed::Key(msg) => {
                if let IcpBody::Query { url, .. } = &msg.body {
                    let op = if url.contains("hit") {
                        Opcode::Hit
                    } else {
                        Opcode::Miss
                    };
                    println!("QUERY {name} from {peer} reqnum {} url {url}", msg.reqnum);
                    match icp::encode_reply(op, msg.reqnum, url) {
                        Ok(mut reply) => {
                            // Sender host address (RFC 2186 §2.1, header bytes 16..20): ours.
                            if let Some(field) = reply.get_mut(16..20) {
                                field.copy_from_slice(&sender.octets());
                            }
                            if let Err(e) = sock.send_to(&reply, peer) {
                                eprintln!("icp-server {name}: send: {e}");
                            }
                        }
                        Err(e) => eprintln!("icp-server {name}: encode: {e}"),
                    }
                } else {
                    println!("NONQUERY {name} from {peer} opcode {:?}", msg.opcode);
                }
            }
            Parsed::NotThisProtocol(r) => println!("BAD {name} from {peer}: {r}"),
            Parsed::NeedMore => println!("BAD {name} from {peer}: truncated"),
        }
    }
}

fn icp_query(args: &[String]) -> ExitCode {
    let Some(to) = arg(args, "--to").and_then(|s| s.parse::<SocketAddr>().ok()) else {
        return usage();
    };
    let bind = arg(args, "--bind").unwrap_or("0.0.0.0:0");
    let timeout = Duration::from_millis(
        arg(args, "--timeout-ms")
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000),
    );
    let mut urls = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a.starts_with("--") {
            skip = true;
        } else {
            urls.push(a.clone());
        }
    }
    let sock = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("icp-query: bind {bind}: {e}");
            return ExitCode::from(71);
        }
    };
    let mut pending = std::collections::BTreeMap::new();
    for (i, url) in urls.iter().enumerate() {
        let reqnum = u32::try_from(i + 1).unwrap_or(u32::MAX);
        // Squid puts 0.0.0.0 in the requester field of queries to peers.
        let q = match icp::encode_query(reqnum, Ipv4Addr::UNSPECIFIED, url) {
            Ok(q) => q,
            Err(e) => {
                eprintln!("icp-query: {url}: {e}");
                return ExitCode::from(65);
            }
        };
        if let Err(e) = sock.send_to(&q, to) {
            eprintln!("icp-query: send: {e}");
            return ExitCode::from(74);
        }
        pending.insert(reqnum, url.clone());
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 16384];
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            break;
        }
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            break;
        };
        if let Some(Parsed::Key(msg)) = buf.get(..n).map(icp::parse) {
            if let Some(url) = pending.remove(&msg.reqnum) {
                println!(
                    "REPLY {url} reqnum {} opcode {:?} from {peer} sender {}",
                    msg.reqnum, msg.opcode, msg.sender
                );
            }
        }
    }
    for (reqnum, url) in &pending {
        println!("NOREPLY {url} reqnum {reqnum}");
    }
    if pending.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
