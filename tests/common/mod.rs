//! Helpers for tests that run the real `l7mark` binary: a config in a temp dir (one ICP service,
//! `[nft] manage = false`, queue numbers nobody uses), start/stop/signal, and a tiny blocking
//! HTTP/1.1 client over `TcpStream`.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh directory under the system temp dir.
pub fn tempdir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!("l7mark-{tag}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A base for 6 consecutive NFQUEUE numbers that no one has bound (checked against
/// `/proc/net/netfilter/nfnetlink_queue`), in a high range, varied by pid so concurrent test
/// binaries do not collide.
pub fn free_queue_base() -> u16 {
    let used: Vec<u16> = std::fs::read_to_string("/proc/net/netfilter/nfnetlink_queue")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let start = 40_000 + (std::process::id() % 2000) * 6;
    let mut base = u16::try_from(start).unwrap();
    while (base..base + 6).any(|q| used.contains(&q)) {
        base += 6;
    }
    base
}

/// A daemon setup: config + rules file in `dir`.
pub struct Setup {
    /// The temp dir.
    pub dir: PathBuf,
    /// The rules file.
    pub rules: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// The API address.
    pub addr: SocketAddr,
}

impl Setup {
    /// Write a config with one ICP service (`forwarding = "dr"`), nft unmanaged, one worker on
    /// free queues, the API on a free loopback port; and `rules_json` as the rules file.
    pub fn new(tag: &str, rules_json: &str) -> Setup {
        let dir = tempdir(tag);
        let rules = dir.join("rules.json");
        std::fs::write(&rules, rules_json).unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let config = dir.join("l7mark.toml");
        std::fs::write(
            &config,
            format!(
                r#"rules_file = {rules:?}
[queues]
base = {base}
workers = 1
[[service]]
name = "icp"
vip = "10.255.0.1"
port = 3130
proto = "icp"
forwarding = "dr"
[api]
listen = "{addr}"
[nft]
manage = false
"#,
                rules = rules.display().to_string(),
                base = free_queue_base(),
            ),
        )
        .unwrap();
        Setup {
            dir,
            rules,
            config,
            addr,
        }
    }

    /// Start `l7mark run` and wait until the API answers. Its stderr goes to `log`.
    pub fn start(&self) -> Daemon {
        let log = self.dir.join("l7mark.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_l7mark"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("L7MARK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            addr: self.addr,
            log,
        };
        d.wait_ready();
        d
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Keep the files (and the daemon's log) of a failed test for a look.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A running daemon.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// The API address.
    pub addr: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

impl Daemon {
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "l7mark exited during start-up ({status}):\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if let Ok(r) = http(self.addr, "GET", "/healthz", None) {
                if r.status == 200 || r.status == 503 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "l7mark did not answer in time:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Send a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// SIGTERM and wait for the exit status (at most 20 s).
    pub fn term(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("l7mark did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Resp {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A JSON request body and extra headers.
pub type JsonBody<'a> = (&'a [u8], &'a [(&'a str, &'a str)]);

/// One request over a fresh connection (`Connection: close`; the body is read to EOF).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<JsonBody<'_>>,
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let payload: &[u8] = match body {
        Some((b, headers)) => {
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
            b
        }
        None => b"",
    };
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(payload)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad response"))
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return None; // cut short (the daemon died mid-response)
        }
        body.truncate(len);
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Whether a file exists and is readable.
pub fn readable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok()
}
