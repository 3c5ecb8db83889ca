//! Invariants checked by the fuzz targets, one function per parser. Each runs the parser on the
//! fuzzer's bytes (which must never panic) and then asserts properties that a wrong parser would
//! break; a failed assertion is a crash for libFuzzer.
//!
//! They are plain functions so that they can also be unit-tested against the fixtures
//! (`cargo test --lib` in this directory).
#![forbid(unsafe_code)]

use l7mark::proto::{
    Parsed, http,
    icp::{self, IcpBody},
    ip::{self, IpError},
    tls,
};

/// Garbage appended to complete inputs: must never change a decided answer.
const GARBAGE: &[u8] = b"\x00\xff\r\n\r\nGET / HTTP/1.1\r\n\x16\x03\x01";

/// HTTP: rejection by `looks_like_http` is sound; a key depends only on the header block (a
/// strict prefix of it needs more, garbage after it changes nothing); the key is normalised.
pub fn check_http(data: &[u8]) {
    let r = http::parse_request(data);
    if !http::looks_like_http(data) {
        assert!(
            r.reject().is_some(),
            "looks_like_http said no, parser said {r:?}"
        );
    }
    match &r {
        Parsed::Key(k) => {
            assert!(k.header_len <= data.len() && k.header_len <= http::MAX_HEADER_BLOCK);
            let block = &data[..k.header_len];
            assert_eq!(
                http::parse_request(block),
                r,
                "key depends on bytes after the block"
            );
            let mut longer = block.to_vec();
            longer.extend_from_slice(GARBAGE);
            assert_eq!(
                http::parse_request(&longer),
                r,
                "garbage after the block changed the key"
            );
            if let Some(short) = block.get(..k.header_len.saturating_sub(1)) {
                assert_eq!(
                    http::parse_request(short),
                    Parsed::NeedMore,
                    "a strict prefix of the header block was decided"
                );
            }
            if let Some(h) = &k.host {
                assert!(!h.is_empty());
                assert_eq!(h, &h.to_ascii_lowercase(), "host not lower-cased");
                assert!(!h.contains(['[', ']']), "IPv6 brackets kept");
            }
            assert_ne!(k.port, Some(0));
            assert!(!k.path.is_empty());
            assert!(!k.method.is_empty());
        }
        Parsed::NotThisProtocol(_) => {}
        Parsed::NeedMore => assert!(data.len() < http::MAX_HEADER_BLOCK),
    }
}

/// TLS: decisions are monotonic in the stream (a key or a rejection never changes when bytes are
/// appended, and a prefix of a keyed input is either undecided or the same key); the SNI is a
/// normalised DNS name.
pub fn check_tls(data: &[u8]) {
    let r = tls::parse_client_hello(data);
    if matches!(r, Parsed::NeedMore) {
        return;
    }
    let mut longer = data.to_vec();
    longer.extend_from_slice(GARBAGE);
    assert_eq!(
        tls::parse_client_hello(&longer),
        r,
        "appending bytes changed a decision"
    );
    if let Parsed::Key(k) = &r {
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            let p = tls::parse_client_hello(&data[..cut]);
            assert!(
                p == Parsed::NeedMore || p == r,
                "prefix {cut} answered {p:?}, full input {r:?}"
            );
        }
        if let Some(sni) = &k.sni {
            assert!(!sni.is_empty() && sni.len() <= 253);
            assert!(!sni.starts_with('.') && !sni.ends_with('.') && !sni.contains(".."));
            assert!(
                sni.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
                "bad SNI byte in {sni:?}"
            );
        }
        assert_eq!(k.legacy_version >> 8, 3);
    }
}

/// ICP: a key re-encodes to the very same datagram (for the bodies the encoder produces), a
/// longer datagram is rejected, a shorter one needs more.
pub fn check_icp(data: &[u8]) {
    let r = icp::parse(data);
    let Parsed::Key(m) = &r else {
        return;
    };
    assert_eq!(usize::from(m.length), data.len());
    assert_eq!(m.version, 2);
    let mut longer = data.to_vec();
    longer.push(0);
    assert!(
        icp::parse(&longer).reject().is_some(),
        "longer datagram accepted"
    );
    assert_eq!(icp::parse(&data[..data.len() - 1]), Parsed::NeedMore);
    if m.options == 0 && m.option_data == 0 && m.sender.is_unspecified() {
        let encoded = match &m.body {
            IcpBody::Query { requester, url } => icp::encode_query(m.reqnum, *requester, url),
            IcpBody::Url(url) => icp::encode_reply(m.opcode, m.reqnum, url),
            IcpBody::Other => return,
        };
        assert_eq!(encoded.as_deref(), Ok(data), "re-encoding differs");
    }
}

/// IP: the payload lies inside the buffer after the headers; truncation is reported with the
/// buffer's length; the checksum fixup leaves the parse unchanged, is idempotent, and makes the
/// IPv4 header checksum verify; a failed fixup leaves the buffer untouched.
pub fn check_ip(data: &[u8]) {
    let r = ip::parse_packet(data);
    match &r {
        Ok(p) => {
            let start = p.payload.as_ptr() as usize - data.as_ptr() as usize;
            assert!(start >= p.l4_offset && start + p.payload.len() <= data.len());
            assert_eq!(p.ip_header_len, p.l4_offset);
        }
        Err(IpError::Truncated { need, have }) => {
            assert_eq!(*have, data.len());
            assert!(need > have);
        }
        Err(_) => {}
    }
    let mut fixed = data.to_vec();
    match ip::tcp_checksum_fixup(&mut fixed) {
        Ok(()) => {
            let p = r
                .as_ref()
                .expect("fixup accepted a packet the parser refused");
            let q = ip::parse_packet(&fixed).expect("fixup broke the packet");
            assert_eq!(
                (p.flow, p.payload, p.transport),
                (q.flow, q.payload, q.transport)
            );
            let mut again = fixed.clone();
            ip::tcp_checksum_fixup(&mut again).expect("second fixup failed");
            assert_eq!(again, fixed, "fixup not idempotent");
            if fixed.first().is_some_and(|b| b >> 4 == 4) {
                let ihl = usize::from(fixed[0] & 0x0f) * 4;
                assert_eq!(
                    ones_complement_sum(&fixed[..ihl]),
                    0xffff,
                    "IPv4 header sum"
                );
            }
        }
        Err(_) => assert_eq!(fixed, data, "failed fixup modified the buffer"),
    }
}

/// RFC 1071 sum (not complemented): a header with a correct checksum sums to 0xffff.
fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut acc: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "bin" || x == "http") {
                out.push(std::fs::read(p).unwrap());
            }
        }
        assert!(out.len() >= 15);
        out
    }

    #[test]
    fn invariants_hold_on_fixtures_and_their_prefixes() {
        for f in fixtures() {
            for n in 0..=f.len() {
                check_http(&f[..n]);
                check_tls(&f[..n]);
                check_icp(&f[..n]);
                check_ip(&f[..n]);
            }
        }
    }
}
