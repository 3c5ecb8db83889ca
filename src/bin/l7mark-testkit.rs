//! Test program only, unsupported outside of l7mark's test suites (VM, netns lab, benchmarks).
//! Do not ship to end users.
//!
//! - `icp-server`: an ICP v2 responder that answers every query with ICP_OP_MISS (or HIT for
//!   URLs containing "hit") and puts its own address in the reply's sender field, so a client can
//!   tell which cache answered; it logs every query to stdout.
//! - `icp-query`: sends ICP queries for the given URLs from ONE source socket (as Squid does) and
//!   prints `url reqnum answered-by` per reply; exits non-zero if any query stays unanswered.
//! - `icp-encode URL`: writes one ICP query datagram to stdout (for `l7mark explain`).
//! - `http-server`: answers every request with `served-by=NAME host=H len=N sum=S` where `sum` is
//!   an FNV-1a hash of the whole request as received (head and body), so a client can prove its
//!   request arrived intact; `GET /big?n=N` returns N deterministic bytes instead.
//! - `http-load`: opens N connections (C at a time), checks every answer (status, the request
//!   hash echo, big bodies byte by byte) and prints which server answered and the latencies.
//! - `icp-echo`: a quiet ICP responder for benchmarks (answers MISS, logs nothing).
//! - `icp-flood`: sends ICP queries from ONE socket for a while, keeping W in flight, and prints
//!   the reply rate and the round-trip p50/p99 (W = 1: ping-pong latency).
//! - `http-hold`: opens N connections, sends a request head cut in the middle of the Host line
//!   and holds them (unbound flows for the binder), then closes them.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use l7mark::proto::Parsed;
use l7mark::proto::icp::{self, IcpBody, Opcode};

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  l7mark-testkit icp-server --listen IP:PORT --name NAME [--sender IP]\n  \
         l7mark-testkit icp-query --to IP:PORT [--bind IP:PORT] [--timeout-ms N] URL...\n  \
         l7mark-testkit icp-encode URL\n  \
         l7mark-testkit icp-malformed --to IP:PORT [--bind IP:PORT]\n  \
         l7mark-testkit http-server --listen IP:PORT --name NAME\n  \
         l7mark-testkit http-load --to IP:PORT --host HOST [--n N] [--concurrency C] [--expect NAME]\n    \
         [--pad BYTES] [--post BYTES] [--big N] [--idle-ms MS] [--sport PORT] [--timeout-ms MS] [--lenient]\n  \
         l7mark-testkit tcp-sink --listen IP:PORT --name NAME\n  \
         l7mark-testkit raw-send --to IP:PORT --file FILE [--expect NAME]\n  \
         l7mark-testkit icp-echo --listen IP:PORT\n  \
         l7mark-testkit icp-flood --to IP:PORT [--secs S] [--window W]\n  \
         l7mark-testkit http-hold --to IP:PORT --host HOST [--n N] [--hold-ms MS]"
    );
    ExitCode::from(64)
}

/// Malformed and hostile ICP datagrams: every one must get the default mark (and a counter).
fn malformed_set() -> Vec<(&'static str, Vec<u8>)> {
    let good = icp::encode_query(7, Ipv4Addr::UNSPECIFIED, "http://cdn.example.net/obj/1.jpg")
        .unwrap_or_default();
    let mut v = Vec::new();
    v.push(("empty", Vec::new()));
    v.push(("short header", good.get(..10).unwrap_or(&[]).to_vec()));
    let mut bad_version = good.clone();
    if let Some(b) = bad_version.get_mut(1) {
        *b = 9;
    }
    v.push(("wrong version", bad_version));
    let mut long_len = good.clone();
    if let Some(b) = long_len.get_mut(3) {
        *b = b.wrapping_add(40);
    }
    v.push(("length field too long", long_len));
    let mut no_nul = good.clone();
    if let Some(last) = no_nul.last_mut() {
        *last = b'x';
    }
    v.push(("url without NUL", no_nul));
    let mut bad_op = good.clone();
    if let Some(b) = bad_op.get_mut(0) {
        *b = 99;
    }
    v.push(("unknown opcode", bad_op));
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"garbage");
    v.push(("bytes after the message", trailing));
    v.push(("oversized", vec![0x41; 20000]));
    v.push(("not icp", b"GET / HTTP/1.1\r\n\r\n".to_vec()));
    v
}

fn icp_malformed(args: &[String]) -> ExitCode {
    let Some(to) = arg(args, "--to").and_then(|s| s.parse::<SocketAddr>().ok()) else {
        return usage();
    };
    let bind = arg(args, "--bind").unwrap_or("0.0.0.0:0");
    let Ok(sock) = UdpSocket::bind(bind) else {
        eprintln!("icp-malformed: bind {bind}");
        return ExitCode::from(71);
    };
    let set = malformed_set();
    for (what, d) in &set {
        match sock.send_to(d, to) {
            Ok(_) => println!("SENT {what} ({} bytes)", d.len()),
            Err(e) => println!("SENDFAIL {what}: {e}"),
        }
    }
    ExitCode::SUCCESS
}

fn icp_encode(args: &[String]) -> ExitCode {
    let Some(url) = args.first() else {
        return usage();
    };
    match icp::encode_query(1, Ipv4Addr::UNSPECIFIED, url) {
        Ok(q) => {
            use std::io::Write as _;
            if std::io::stdout().write_all(&q).is_err() {
                return ExitCode::from(74);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("icp-encode: {e}");
            ExitCode::from(65)
        }
    }
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
        Some("--version") => {
            println!("l7mark-testkit {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("icp-server") => icp_server(&args[1..]),
        Some("icp-query") => icp_query(&args[1..]),
        Some("icp-encode") => icp_encode(&args[1..]),
        Some("icp-malformed") => icp_malformed(&args[1..]),
        Some("http-server") => http::server(&args[1..]),
        Some("http-load") => http::load(&args[1..]),
        Some("tcp-sink") => http::sink(&args[1..]),
        Some("raw-send") => http::raw_send(&args[1..]),
        Some("icp-echo") => bench::icp_echo(&args[1..]),
        Some("icp-flood") => bench::icp_flood(&args[1..]),
        Some("http-hold") => bench::http_hold(&args[1..]),
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

mod http {
    //! A tiny HTTP/1.0-style server and load client for the integration tests (std threads only).

    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::{arg, usage};

    /// FNV-1a, 64 bit: cheap and good enough to prove "these exact bytes arrived".
    pub fn fnv(bytes: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    }

    /// Byte `i` of a `/big` body.
    fn big_byte(i: usize) -> u8 {
        u8::try_from((i * 7 + 3) % 251).unwrap_or(0)
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Accept connections on `--listen` forever, one thread each, handing every connection and
    /// `--name` to `handle`.
    fn serve(args: &[String], what: &str, handle: fn(TcpStream, &str)) -> ExitCode {
        let (Some(listen), Some(name)) = (arg(args, "--listen"), arg(args, "--name")) else {
            return usage();
        };
        let l = match TcpListener::bind(listen) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{what} {name}: bind {listen}: {e}");
                return ExitCode::from(71);
            }
        };
        println!("{what} {name} listening on {listen}");
        let name = Arc::new(name.to_string());
        for conn in l.incoming() {
            let Ok(s) = conn else { continue };
            let name = Arc::clone(&name);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                handle(s, &name);
            });
        }
        ExitCode::SUCCESS
    }

    pub fn server(args: &[String]) -> ExitCode {
        serve(args, "http-server", answer_http)
    }

    fn answer_http(mut s: TcpStream, name: &str) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            }
        };
        let head = String::from_utf8_lossy(buf.get(..head_end).unwrap_or(&[])).into_owned();
        let clen: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + clen {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            }
        }
        let req = buf.get(..head_end + clen).unwrap_or(&buf);
        let host = header(&head, "host").unwrap_or("-").to_string();
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let body: Vec<u8> = match target
            .strip_prefix("/big?n=")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => (0..n).map(big_byte).collect(),
            None => format!(
                "served-by={name} host={host} len={} sum={:016x}\n",
                req.len(),
                fnv(req)
            )
            .into_bytes(),
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Served-By: {name}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes());
        let _ = s.write_all(&body);
    }

    /// Reads everything a client sends until it half-closes, answers `sink=NAME len=N sum=S`.
    pub fn sink(args: &[String]) -> ExitCode {
        serve(args, "tcp-sink", |mut s, name| {
            let mut got = Vec::new();
            if s.read_to_end(&mut got).is_ok() {
                let _ = writeln!(s, "sink={name} len={} sum={:016x}", got.len(), fnv(&got));
            }
        })
    }

    /// Sends a file's bytes, half-closes, and checks the sink's answer.
    pub fn raw_send(args: &[String]) -> ExitCode {
        let (Some(to), Some(file)) = (
            arg(args, "--to").and_then(|s| s.parse::<SocketAddr>().ok()),
            arg(args, "--file"),
        ) else {
            return usage();
        };
        let Ok(bytes) = std::fs::read(file) else {
            eprintln!("raw-send: cannot read {file}");
            return ExitCode::from(66);
        };
        let run = || -> Result<String, String> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(&bytes).map_err(|e| e.to_string())?;
            s.shutdown(std::net::Shutdown::Write)
                .map_err(|e| e.to_string())?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
            Ok(answer.trim().to_string())
        };
        match run() {
            Ok(answer) => {
                let want = format!("len={} sum={:016x}", bytes.len(), fnv(&bytes));
                let intact = answer.contains(&want);
                let name_ok =
                    arg(args, "--expect").is_none_or(|n| answer.starts_with(&format!("sink={n} ")));
                println!("RAW {answer} intact={intact}");
                if intact && name_ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                println!("RAW error {e}");
                ExitCode::from(1)
            }
        }
    }

    struct Opts {
        to: SocketAddr,
        host: String,
        pad: usize,
        post: usize,
        big: usize,
        idle: Duration,
        sport: Option<u16>,
        timeout: Duration,
        /// `--lenient`: skip the request-intact check (an L7 proxy rewrites the request head).
        lenient: bool,
    }

    /// One request on a new connection: Ok(server name) or Err(why).
    fn one(o: &Opts, i: usize) -> Result<String, String> {
        let s = match o.sport {
            Some(p) => {
                let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .map_err(|e| e.to_string())?;
                sock.set_reuse_address(true).map_err(|e| e.to_string())?;
                let local: SocketAddr = ([0, 0, 0, 0], p).into();
                sock.bind(&local.into())
                    .map_err(|e| format!("bind {p}: {e}"))?;
                sock.connect_timeout(&o.to.into(), o.timeout)
                    .map_err(|e| format!("connect: {e}"))?;
                TcpStream::from(sock)
            }
            None => {
                TcpStream::connect_timeout(&o.to, o.timeout).map_err(|e| format!("connect: {e}"))?
            }
        };
        let mut s = s;
        s.set_read_timeout(Some(o.timeout))
            .map_err(|e| e.to_string())?;
        if !o.idle.is_zero() {
            std::thread::sleep(o.idle);
        }
        let target = if o.big > 0 {
            format!("/big?n={}", o.big)
        } else {
            format!("/r{i}")
        };
        let method = if o.post > 0 { "POST" } else { "GET" };
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: l7mark-testkit\r\n",
            o.host
        );
        if o.pad > 0 {
            req.push_str("X-Pad: ");
            req.extend(std::iter::repeat_n('p', o.pad));
            req.push_str("\r\n");
        }
        let body: Vec<u8> = (0..o.post).map(|k| b"0123456789abcdef"[k % 16]).collect();
        if o.post > 0 {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("Connection: close\r\n\r\n");
        let mut full = req.into_bytes();
        full.extend_from_slice(&body);
        s.write_all(&full).map_err(|e| format!("send: {e}"))?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)
            .map_err(|e| format!("recv: {e} after {} bytes", resp.len()))?;
        let head_end = find(&resp, b"\r\n\r\n").ok_or("no response head")? + 4;
        let head = String::from_utf8_lossy(resp.get(..head_end).unwrap_or(&[])).into_owned();
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("status: {}", head.lines().next().unwrap_or("")));
        }
        let name = header(&head, "x-served-by").unwrap_or("?").to_string();
        let rbody = resp.get(head_end..).unwrap_or(&[]);
        let clen: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(usize::MAX);
        if rbody.len() != clen {
            return Err(format!("body {} bytes, Content-Length {clen}", rbody.len()));
        }
        if o.big > 0 {
            if let Some(k) = rbody
                .iter()
                .enumerate()
                .position(|(k, &b)| b != big_byte(k))
            {
                return Err(format!("big body differs at byte {k}"));
            }
        } else if !o.lenient {
            let text = String::from_utf8_lossy(rbody);
            let want = format!("len={} sum={:016x}", full.len(), fnv(&full));
            if !text.contains(&want) {
                return Err(format!(
                    "request not intact: sent {want}, server saw {}",
                    text.trim()
                ));
            }
        }
        Ok(name)
    }

    pub fn load(args: &[String]) -> ExitCode {
        let (Some(to), Some(host)) = (
            arg(args, "--to").and_then(|s| s.parse::<SocketAddr>().ok()),
            arg(args, "--host"),
        ) else {
            return usage();
        };
        let num = |k: &str, d: usize| arg(args, k).and_then(|s| s.parse().ok()).unwrap_or(d);
        let n = num("--n", 1);
        let c = num("--concurrency", 1).max(1);
        let expect = arg(args, "--expect").map(str::to_string);
        let o = Arc::new(Opts {
            to,
            host: host.to_string(),
            pad: num("--pad", 0),
            post: num("--post", 0),
            big: num("--big", 0),
            idle: Duration::from_millis(num("--idle-ms", 0) as u64),
            sport: arg(args, "--sport").and_then(|s| s.parse().ok()),
            timeout: Duration::from_millis(num("--timeout-ms", 10_000) as u64),
            lenient: args.iter().any(|a| a == "--lenient"),
        });
        let next = Arc::new(AtomicUsize::new(0));
        let results = Arc::new(Mutex::new((
            BTreeMap::<String, usize>::new(),
            Vec::new(),
            Vec::new(),
        )));
        let started = Instant::now();
        let workers: Vec<_> = (0..c)
            .map(|_| {
                let (o, next, results) = (Arc::clone(&o), Arc::clone(&next), Arc::clone(&results));
                std::thread::spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let t0 = Instant::now();
                        let r = one(&o, i);
                        let dt = t0.elapsed();
                        if let Ok(mut g) = results.lock() {
                            match r {
                                Ok(name) => {
                                    *g.0.entry(name).or_default() += 1;
                                    g.1.push(dt);
                                }
                                Err(e) => g.2.push(format!("#{i}: {e}")),
                            }
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        let wall = started.elapsed();
        let Ok(g) = results.lock() else {
            return ExitCode::from(70);
        };
        let (servers, mut lat, errors) = (&g.0, g.1.clone(), &g.2);
        lat.sort();
        let pct = |p: f64| {
            // p in 0..=1: the index is within 0..=len (the cast cannot truncate meaningfully).
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = (lat.len() as f64 * p) as usize;
            lat.get(i.min(lat.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let ok: usize = servers.values().sum();
        let wrong = match &expect {
            Some(e) => servers
                .iter()
                .filter(|(k, _)| *k != e)
                .map(|(_, v)| v)
                .sum(),
            None => 0,
        };
        let dist: Vec<String> = servers.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        println!(
            "LOAD host={host} n={n} c={c} ok={ok} errors={} wrong={wrong} servers={} p50={:.2}ms p99={:.2}ms max={:.2}ms rate={:.0}/s mean={:.3}ms",
            errors.len(),
            dist.join(","),
            pct(0.5),
            pct(0.99),
            lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            ok as f64 / wall.as_secs_f64().max(1e-9),
            // mean latency of the completed connections (C / mean: their rate without stalls)
            lat.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / lat.len().max(1) as f64
        );
        for e in errors.iter().take(10) {
            println!("ERROR {e}");
        }
        if errors.is_empty() && wrong == 0 && ok == n {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

mod bench {
    //! Load tools for `bench/run.sh` (quiet ICP responder, ICP flood, held partial requests).

    use std::io::Write;
    use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
    use std::process::ExitCode;
    use std::time::{Duration, Instant};

    use l7mark::proto::Parsed;
    use l7mark::proto::icp::{self, IcpBody, Opcode};

    use super::{arg, usage};

    /// Answers every ICP query with MISS (same reqnum and URL), silently.
    pub fn icp_echo(args: &[String]) -> ExitCode {
        let Some(listen) = arg(args, "--listen") else {
            return usage();
        };
        let sock = match UdpSocket::bind(listen) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("icp-echo: bind {listen}: {e}");
                return ExitCode::from(71);
            }
        };
        println!("icp-echo listening on {listen}");
        let _ = std::io::stdout().flush();
        let mut buf = [0u8; 16384];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if let Some(Parsed::Key(msg)) = buf.get(..n).map(icp::parse) {
                if let IcpBody::Query { url, .. } = &msg.body {
                    if let Ok(reply) = icp::encode_reply(Opcode::Miss, msg.reqnum, url) {
                        let _ = sock.send_to(&reply, peer);
                    }
                }
            }
        }
    }

    fn reqnum_of(d: &[u8]) -> Option<u32> {
        d.get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }

    /// Closed-loop flood: W queries in flight from one socket for S seconds.
    pub fn icp_flood(args: &[String]) -> ExitCode {
        let Some(to) = arg(args, "--to").and_then(|s| s.parse::<SocketAddr>().ok()) else {
            return usage();
        };
        let secs: f64 = arg(args, "--secs")
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0);
        let window: usize = arg(args, "--window")
            .and_then(|s| s.parse().ok())
            .unwrap_or(32usize)
            .max(1);
        let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else {
            return ExitCode::from(71);
        };
        if sock.connect(to).is_err()
            || sock
                .set_read_timeout(Some(Duration::from_millis(100)))
                .is_err()
        {
            return ExitCode::from(71);
        }
        let queries: Vec<Vec<u8>> = (0..256)
            .filter_map(|k| {
                let url = format!("http://cdn{}.example.net/obj/{k}.jpg", k % 7);
                icp::encode_query(0, Ipv4Addr::UNSPECIFIED, &url).ok()
            })
            .collect();
        if queries.is_empty() {
            return ExitCode::from(70);
        }
        const SLOTS: usize = 1 << 16;
        let mut sent_at: Vec<Option<(u32, Instant)>> = vec![None; SLOTS];
        let mut lat: Vec<Duration> = Vec::new();
        let (mut sent, mut replies, mut lost, mut inflight) = (0u64, 0u64, 0u64, 0usize);
        let mut reqnum: u32 = 1;
        let mut buf = [0u8; 16384];
        let started = Instant::now();
        let run = Duration::from_secs_f64(secs);
        let mut sending = true;
        loop {
            if sending && started.elapsed() >= run {
                sending = false;
            }
            while sending && inflight < window {
                let k = reqnum as usize % queries.len();
                let mut q = queries[k].clone();
                if let Some(f) = q.get_mut(4..8) {
                    f.copy_from_slice(&reqnum.to_be_bytes());
                }
                // Timestamp before the send: the answer can be queued before send() returns.
                let t0 = Instant::now();
                if sock.send(&q).is_err() {
                    break;
                }
                sent_at[reqnum as usize % SLOTS] = Some((reqnum, t0));
                reqnum = reqnum.wrapping_add(1).max(1);
                sent += 1;
                inflight += 1;
            }
            if !sending && inflight == 0 {
                break;
            }
            match sock.recv(&mut buf) {
                Ok(n) => {
                    let Some(r) = buf.get(..n).and_then(reqnum_of) else {
                        continue;
                    };
                    let slot = &mut sent_at[r as usize % SLOTS];
                    if let Some((want, t0)) = *slot {
                        if want == r {
                            lat.push(t0.elapsed());
                            *slot = None;
                            replies += 1;
                            inflight = inflight.saturating_sub(1);
                        }
                    }
                }
                Err(_) => {
                    // Nothing for 100 ms: whatever is in flight is lost.
                    lost += inflight as u64;
                    inflight = 0;
                    sent_at.iter_mut().for_each(|s| *s = None);
                    if !sending {
                        break;
                    }
                }
            }
        }
        let wall = started.elapsed().as_secs_f64().max(1e-9);
        lat.sort();
        let pct = |p: f64| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = (lat.len() as f64 * p) as usize;
            lat.get(i.min(lat.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        #[allow(clippy::cast_precision_loss)]
        let rate = replies as f64 / wall;
        println!(
            "FLOOD sent={sent} replies={replies} lost={lost} window={window} secs={wall:.2} rate={rate:.0}/s p50={:.1}us p99={:.1}us",
            pct(0.5),
            pct(0.99)
        );
        ExitCode::SUCCESS
    }

    /// Opens N connections, each sending a request head cut inside the Host line, holds them.
    pub fn http_hold(args: &[String]) -> ExitCode {
        let (Some(to), Some(host)) = (
            arg(args, "--to").and_then(|s| s.parse::<SocketAddr>().ok()),
            arg(args, "--host"),
        ) else {
            return usage();
        };
        let n: usize = arg(args, "--n").and_then(|s| s.parse().ok()).unwrap_or(1);
        let hold = Duration::from_millis(
            arg(args, "--hold-ms")
                .and_then(|s| s.parse().ok())
                .unwrap_or(5000),
        );
        let partial = format!("GET /held HTTP/1.1\r\nUser-Agent: l7mark-testkit\r\nHost: {host}");
        let mut held = Vec::with_capacity(n);
        let mut errors = 0usize;
        for _ in 0..n {
            match TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
                Ok(mut s) => {
                    if s.write_all(partial.as_bytes()).is_ok() {
                        held.push(s);
                    } else {
                        errors += 1;
                    }
                }
                Err(_) => errors += 1,
            }
        }
        println!("HOLD opened={} errors={errors}", held.len());
        let _ = std::io::stdout().flush();
        std::thread::sleep(hold);
        drop(held);
        ExitCode::SUCCESS
    }
}
