//! Fixture-driven tests of the protocol parsers: every fixture parses to its exact key, every
//! truncation answers "need more" (or a rejection) and never a wrong key, and property tests for
//! panics, segmentation and round trips. Fixtures and their provenance: `tests/fixtures/README.md`.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};

use l7mark::proto::{
    Parsed, http,
    icp::{self, IcpBody, Opcode},
    ip::{self, IpError, L4Proto, TcpFlags, Transport},
    tls,
};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// --- HTTP ---------------------------------------------------------------------------------------

fn http_expect(
    method: &str,
    path: &str,
    host: &str,
    port: Option<u16>,
    absolute_form: bool,
    header_len: usize,
) -> http::HttpRequest {
    http::HttpRequest {
        method: method.into(),
        path: path.into(),
        host: Some(host.into()),
        port,
        absolute_form,
        header_len,
    }
}

/// (fixture, expected key). `header_len` is where the blank line ends.
fn http_fixtures() -> Vec<(&'static str, Vec<u8>, http::HttpRequest)> {
    let end = |b: &[u8]| find(b, b"\r\n\r\n").unwrap() + 4;
    let get = fixture("curl_get.http");
    let proxy = fixture("curl_proxy_absolute.http");
    let cookie = fixture("curl_big_cookie.http");
    let post = fixture("curl_post.http");
    vec![
        (
            "curl_get.http",
            get.clone(),
            http_expect(
                "GET",
                "/img/logo.png",
                "static.example.com",
                None,
                false,
                end(&get),
            ),
        ),
        (
            "curl_proxy_absolute.http",
            proxy.clone(),
            http_expect(
                "GET",
                "/a/b.html",
                "cdn.example.net",
                None,
                true,
                end(&proxy),
            ),
        ),
        (
            "curl_big_cookie.http",
            cookie.clone(),
            http_expect(
                "GET",
                "/account?tab=orders",
                "www.example.org",
                Some(8080),
                false,
                end(&cookie),
            ),
        ),
        (
            "curl_post.http",
            post.clone(),
            http_expect(
                "POST",
                "/v1/orders",
                "api.example.com",
                None,
                false,
                end(&post),
            ),
        ),
    ]
}

#[test]
fn curl_get_is_exactly_what_curl_sends() {
    assert_eq!(
        fixture("curl_get.http"),
        b"GET /img/logo.png HTTP/1.1\r\nHost: static.example.com\r\nUser-Agent: curl/7.88.1\r\n\
          Accept: */*\r\n\r\n"
    );
    let cookie = fixture("curl_big_cookie.http");
    let line = cookie
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"Cookie: "))
        .unwrap();
    assert!((4500..6000).contains(&line.len()), "{}", line.len());
    let post = fixture("curl_post.http");
    assert!(post.ends_with(b"\r\n\r\nuser=alice&item=42&qty=3"));
}

#[test]
fn http_fixtures_every_truncation() {
    for (name, buf, want) in http_fixtures() {
        assert_eq!(
            http::parse_request(&buf),
            Parsed::Key(want.clone()),
            "{name}"
        );
        for n in 0..buf.len() {
            let got = http::parse_request(&buf[..n]);
            if n < want.header_len {
                assert_eq!(got, Parsed::NeedMore, "{name} prefix {n}");
            } else {
                // The body of the POST does not change the key.
                assert_eq!(got, Parsed::Key(want.clone()), "{name} prefix {n}");
            }
            assert!(http::looks_like_http(&buf[..n]), "{name} prefix {n}");
        }
    }
}

// --- TLS ----------------------------------------------------------------------------------------

/// (fixture, SNI, legacy_version). The key completes where the host_name's last byte is.
fn tls_fixtures() -> Vec<(&'static str, &'static str)> {
    vec![
        ("tls_openssl_s_client.bin", "secure.example.com"),
        ("tls_openssl_two_records.bin", "secure.example.com"),
        ("tls_curl.bin", "secure.example.com"),
        ("tls_chrome_pq.bin", "www.pq-example.com"),
        ("tls_chrome_pq_two_records.bin", "www.pq-example.com"),
    ]
}

/// The ClientHello handshake length as declared in the first record.
fn declared_hello_len(buf: &[u8]) -> usize {
    4 + (usize::from(buf[6]) << 16 | usize::from(buf[7]) << 8 | usize::from(buf[8]))
}

#[test]
fn tls_fixtures_every_truncation() {
    for (name, sni) in tls_fixtures() {
        let buf = fixture(name);
        let want = tls::ClientHello {
            sni: Some(sni.into()),
            legacy_version: 0x0303,
            hello_len: declared_hello_len(&buf),
        };
        let sni_end = find(&buf, sni.as_bytes()).unwrap() + sni.len();
        assert_eq!(
            tls::parse_client_hello(&buf),
            Parsed::Key(want.clone()),
            "{name}"
        );
        for n in 0..buf.len() {
            let got = tls::parse_client_hello(&buf[..n]);
            if n < sni_end {
                assert_eq!(got, Parsed::NeedMore, "{name} prefix {n}");
            } else {
                assert_eq!(got, Parsed::Key(want.clone()), "{name} prefix {n}");
            }
        }
    }
}

#[test]
fn chrome_pq_fixture_has_the_modern_shape() {
    let buf = fixture("tls_chrome_pq.bin");
    assert!((1700..2200).contains(&buf.len()), "{}", buf.len());
    // X25519MLKEM768 (4588) share of 1216 bytes, X25519 share of 32, ECH GREASE, ALPN h2.
    assert!(find(&buf, &[0x11, 0xec, 0x04, 0xc0]).is_some());
    assert!(find(&buf, &[0x00, 0x1d, 0x00, 0x20]).is_some());
    assert!(find(&buf, &[0xfe, 0x0d]).is_some());
    assert!(find(&buf, b"\x02h2\x08http/1.1").is_some());
    // The SNI is in the second 1460-byte TCP segment.
    let at = find(&buf, b"www.pq-example.com").unwrap();
    assert!(at > 1460, "{at}");
    assert_eq!(tls::parse_client_hello(&buf[..1460]), Parsed::NeedMore);
    // Two-record fixtures really are two records.
    for name in [
        "tls_openssl_two_records.bin",
        "tls_chrome_pq_two_records.bin",
    ] {
        let b = fixture(name);
        let first = 5 + usize::from(u16::from_be_bytes([b[3], b[4]]));
        assert_eq!(b[first], 22, "{name}");
        assert_eq!(
            5 + usize::from(u16::from_be_bytes([b[first + 3], b[first + 4]])) + first,
            b.len()
        );
    }
}

// --- ICP ----------------------------------------------------------------------------------------

#[test]
fn icp_fixtures_every_truncation() {
    let url = "http://cdn.example.net/a/b.html";
    let cases = [
        (
            "icp_query.bin",
            Opcode::Query,
            IcpBody::Query {
                requester: Ipv4Addr::UNSPECIFIED,
                url: url.into(),
            },
        ),
        ("icp_hit.bin", Opcode::Hit, IcpBody::Url(url.into())),
        ("icp_miss.bin", Opcode::Miss, IcpBody::Url(url.into())),
    ];
    for (name, opcode, body) in cases {
        let buf = fixture(name);
        let want = icp::IcpMessage {
            opcode,
            version: 2,
            length: u16::try_from(buf.len()).unwrap(),
            reqnum: 0x2a,
            options: 0,
            option_data: 0,
            sender: Ipv4Addr::UNSPECIFIED,
            body,
        };
        assert_eq!(icp::parse(&buf), Parsed::Key(want), "{name}");
        for n in 0..buf.len() {
            assert_eq!(icp::parse(&buf[..n]), Parsed::NeedMore, "{name} prefix {n}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(icp::parse(&longer).reject().is_some());
    }
    // The Rust encoder produces byte-identical datagrams to the Python (Squid layout) ones.
    assert_eq!(
        icp::encode_query(0x2a, Ipv4Addr::UNSPECIFIED, url).unwrap(),
        fixture("icp_query.bin")
    );
    assert_eq!(
        icp::encode_reply(Opcode::Hit, 0x2a, url).unwrap(),
        fixture("icp_hit.bin")
    );
    assert_eq!(
        icp::encode_reply(Opcode::Miss, 0x2a, url).unwrap(),
        fixture("icp_miss.bin")
    );
}

// --- IP -----------------------------------------------------------------------------------------

const IP_FIXTURES: [&str; 5] = [
    "ipv4_tcp_syn.bin",
    "ipv4_tcp_http.bin",
    "ipv4_udp_icp.bin",
    "ipv6_tcp_ext_tls.bin",
    "ipv6_udp_ext_icp.bin",
];

#[test]
fn ip_fixtures_parse() {
    let syn = fixture("ipv4_tcp_syn.bin");
    let p = ip::parse_packet(&syn).unwrap();
    assert_eq!(p.flow.src, "192.0.2.10".parse::<IpAddr>().unwrap());
    assert_eq!(p.flow.dst, "198.51.100.80".parse::<IpAddr>().unwrap());
    assert_eq!(
        (p.flow.sport, p.flow.dport, p.flow.proto),
        (51514, 80, L4Proto::Tcp)
    );
    assert!(p.payload.is_empty());
    let Transport::Tcp(h) = p.transport else {
        panic!()
    };
    assert_eq!(h.flags, TcpFlags::SYN);
    assert_eq!(h.seq, 0x1000);
    assert_eq!(h.window, 64240);
    assert_eq!(h.data_offset, 40);
    assert_eq!(h.options.mss, Some(1460));
    assert_eq!(h.options.wscale, Some(7));
    assert!(h.options.sack_perm);
    assert_eq!(h.options.timestamp, Some((0x5eed_0001, 0)));

    let http_pkt = fixture("ipv4_tcp_http.bin");
    let p = ip::parse_packet(&http_pkt).unwrap();
    assert_eq!(p.payload, fixture("curl_get.http"));
    assert_eq!(p.ip_header_len, 20);
    assert_eq!(p.l4_offset, 20);
    let Transport::Tcp(h) = p.transport else {
        panic!()
    };
    assert!(h.flags.has(TcpFlags::PSH) && h.flags.has(TcpFlags::ACK));
    assert_eq!(h.ack, 0x7700_0001);
    assert_eq!(h.options.timestamp, Some((0x5eed_0002, 0x0bad_cafe)));
    assert_eq!(h.options.mss, None);

    let udp4 = fixture("ipv4_udp_icp.bin");
    let p = ip::parse_packet(&udp4).unwrap();
    assert_eq!(p.flow.proto, L4Proto::Udp);
    assert_eq!(p.transport, Transport::Udp);
    assert_eq!(p.payload, fixture("icp_query.bin"));

    // IPv6: hop-by-hop, destination options, segment routing header (3 extension headers).
    let p6 = fixture("ipv6_tcp_ext_tls.bin");
    let p = ip::parse_packet(&p6).unwrap();
    assert_eq!(p.flow.src, "2001:db8:1::10".parse::<IpAddr>().unwrap());
    assert_eq!(p.flow.dst, "2001:db8:2::443".parse::<IpAddr>().unwrap());
    assert_eq!(p.flow.dport, 443);
    assert_eq!(p.ip_header_len, 40 + 8 + 8 + 24);
    assert_eq!(p.payload, fixture("tls_openssl_s_client.bin"));
    assert!(matches!(
        tls::parse_client_hello(p.payload),
        Parsed::Key(k) if k.sni.as_deref() == Some("secure.example.com")
    ));

    // IPv6: hop-by-hop, atomic fragment, destination options.
    let udp6 = fixture("ipv6_udp_ext_icp.bin");
    let p = ip::parse_packet(&udp6).unwrap();
    assert_eq!(p.ip_header_len, 40 + 8 + 8 + 8);
    assert_eq!(p.flow.sport, 3130);
    assert!(matches!(icp::parse(p.payload), Parsed::Key(_)));
}

#[test]
fn ip_fixtures_every_truncation() {
    for name in IP_FIXTURES {
        let buf = fixture(name);
        for n in 0..buf.len() {
            match ip::parse_packet(&buf[..n]) {
                Err(IpError::Truncated { have, need }) => {
                    assert_eq!(have, n, "{name} prefix {n}");
                    assert!(need > n, "{name} prefix {n}");
                }
                other => panic!("{name} prefix {n}: {other:?}"),
            }
        }
    }
}

#[test]
fn ip_fragments_are_refused() {
    // The IPv4 HTTP packet as a first fragment (MF) and as a later fragment.
    let buf = fixture("ipv4_tcp_http.bin");
    for flags_frag in [0x2000u16, 0x0001, 0x4001] {
        let mut b = buf.clone();
        b[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        assert_eq!(
            ip::parse_packet(&b),
            Err(IpError::Fragment),
            "{flags_frag:#x}"
        );
    }
    // The IPv6 atomic fragment made a real one: M flag, or a non-zero offset.
    let buf = fixture("ipv6_udp_ext_icp.bin");
    let frag = 40 + 8;
    assert_eq!(buf[frag], 60);
    for fo in [0x0001u16, 0x0008, 0xfff9] {
        let mut b = buf.clone();
        b[frag + 2..frag + 4].copy_from_slice(&fo.to_be_bytes());
        assert_eq!(ip::parse_packet(&b), Err(IpError::Fragment), "{fo:#x}");
    }
}

#[test]
fn checksum_fixup_reproduces_independent_checksums() {
    for name in IP_FIXTURES {
        let good = fixture(name);
        // Already-correct packets are left unchanged.
        let mut b = good.clone();
        ip::tcp_checksum_fixup(&mut b).unwrap();
        assert_eq!(b, good, "{name} unchanged");
        // Zeroed and garbled checksums are recomputed to the Python-computed values.
        let p = ip::parse_packet(&good).unwrap();
        let csum_off = p.l4_offset
            + match p.flow.proto {
                L4Proto::Tcp => 16,
                L4Proto::Udp => 6,
            };
        for garbage in [[0u8, 0], [0xde, 0xad]] {
            let mut b = good.clone();
            b[csum_off..csum_off + 2].copy_from_slice(&garbage);
            if good[0] >> 4 == 4 {
                b[10..12].copy_from_slice(&garbage);
            }
            ip::tcp_checksum_fixup(&mut b).unwrap();
            assert_eq!(b, good, "{name} after fixup");
        }
        // A payload change yields a checksum that verifies (sum over the covered bytes = 0).
        let mut b = good.clone();
        if let Some(last) = b.last_mut() {
            *last ^= 0x5a;
        }
        ip::tcp_checksum_fixup(&mut b).unwrap();
        assert_ne!(
            b[csum_off..csum_off + 2],
            good[csum_off..csum_off + 2],
            "{name}"
        );
    }
    // Truncated packets are refused and left alone.
    let good = fixture("ipv4_tcp_http.bin");
    let mut short = good[..good.len() - 1].to_vec();
    let before = short.clone();
    assert!(matches!(
        ip::tcp_checksum_fixup(&mut short),
        Err(IpError::Truncated { .. })
    ));
    assert_eq!(short, before);
}

// --- Properties ---------------------------------------------------------------------------------

/// Feed `buf` to `parse` in the given segment sizes, as the daemon does (appending each TCP
/// segment to what it holds), and return the first decisive answer; every earlier answer must
/// be NeedMore.
fn feed<T>(buf: &[u8], cuts: &[usize], parse: impl Fn(&[u8]) -> Parsed<T>) -> Parsed<T> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (buf.len() + 1)).collect();
    points.push(buf.len());
    points.sort_unstable();
    for end in points {
        match parse(&buf[..end]) {
            Parsed::NeedMore => continue,
            decisive => return decisive,
        }
    }
    Parsed::NeedMore
}

/// Re-fragment the handshake bytes of a record stream into records of the given sizes.
fn refragment(stream: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut hs = Vec::new();
    let mut rest = stream;
    while rest.len() >= 5 {
        let n = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        hs.extend_from_slice(&rest[5..5 + n]);
        rest = &rest[5 + n..];
    }
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < hs.len() {
        let size = sizes.get(k).copied().unwrap_or(4096).clamp(1, 16384);
        let end = (i + size).min(hs.len());
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16::try_from(end - i).unwrap().to_be_bytes());
        out.extend_from_slice(&hs[i..end]);
        i = end;
        k += 1;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = http::parse_request(&buf);
        let _ = http::looks_like_http(&buf);
        let _ = tls::parse_client_hello(&buf);
        let _ = icp::parse(&buf);
        let _ = ip::parse_packet(&buf);
        let mut copy = buf.clone();
        let _ = ip::tcp_checksum_fixup(&mut copy);
    }

    #[test]
    fn not_looking_like_http_means_rejected(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
        if !http::looks_like_http(&buf) {
            prop_assert!(http::parse_request(&buf).reject().is_some());
        }
    }

    #[test]
    fn structured_prefixes_never_panic(
        idx in 0usize..4,
        cut in 0usize..6000,
        pos in 0usize..6000,
        byte in any::<u8>(),
    ) {
        // Mutate one byte of a real fixture: deep paths, not just early rejections.
        let names = [
            "curl_big_cookie.http",
            "tls_chrome_pq.bin",
            "icp_query.bin",
            "ipv6_tcp_ext_tls.bin",
        ];
        let mut buf = fixture(names[idx]);
        let len = buf.len();
        buf[pos % len] = byte;
        buf.truncate(cut % (len + 1));
        let _ = http::parse_request(&buf);
        let _ = tls::parse_client_hello(&buf);
        let _ = icp::parse(&buf);
        let _ = ip::parse_packet(&buf);
        let mut copy = buf.clone();
        if ip::tcp_checksum_fixup(&mut copy).is_ok() {
            prop_assert_eq!(ip::parse_packet(&copy).is_ok(), true);
        }
    }

    #[test]
    fn http_segmentation_does_not_change_the_key(
        idx in 0usize..4,
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let (name, buf, want) = http_fixtures().swap_remove(idx);
        prop_assert_eq!(feed(&buf, &cuts, http::parse_request), Parsed::Key(want), "{}", name);
    }

    #[test]
    fn http_garbage_after_the_header_block_does_not_change_the_key(
        idx in 0usize..4,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (_, buf, want) = http_fixtures().swap_remove(idx);
        let mut b = buf[..want.header_len].to_vec();
        b.extend_from_slice(&tail);
        prop_assert_eq!(http::parse_request(&b), Parsed::Key(want));
    }

    #[test]
    fn tls_segmentation_and_record_fragmentation_do_not_change_the_key(
        idx in 0usize..5,
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        sizes in proptest::collection::vec(1usize..3000, 1..12),
    ) {
        let (name, sni) = tls_fixtures()[idx];
        let buf = fixture(name);
        let want = Parsed::Key(tls::ClientHello {
            sni: Some(sni.into()),
            legacy_version: 0x0303,
            hello_len: declared_hello_len(&buf),
        });
        prop_assert_eq!(feed(&buf, &cuts, tls::parse_client_hello), want.clone());
        let refrag = refragment(&buf, &sizes);
        prop_assert_eq!(feed(&refrag, &cuts, tls::parse_client_hello), want);
    }

    #[test]
    fn tls_trailing_bytes_do_not_change_the_key(
        idx in 0usize..5,
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (name, _) = tls_fixtures()[idx];
        let buf = fixture(name);
        let want = tls::parse_client_hello(&buf);
        let mut b = buf.clone();
        b.extend_from_slice(&tail);
        prop_assert_eq!(tls::parse_client_hello(&b), want);
    }

    #[test]
    fn icp_encode_parse_round_trip(
        reqnum in any::<u32>(),
        requester in any::<u32>(),
        url in "[!-~]{1,300}",
        op_idx in 0usize..8,
    ) {
        let requester = Ipv4Addr::from(requester);
        let q = icp::encode_query(reqnum, requester, &url).unwrap();
        let Parsed::Key(m) = icp::parse(&q) else { panic!("query did not parse") };
        prop_assert_eq!(m.reqnum, reqnum);
        prop_assert_eq!(usize::from(m.length), q.len());
        prop_assert_eq!(m.body, IcpBody::Query { requester, url: url.clone() });
        let ops = [Opcode::Hit, Opcode::Miss, Opcode::Err, Opcode::Secho, Opcode::Decho,
                   Opcode::MissNofetch, Opcode::Denied, Opcode::HitObj];
        let r = icp::encode_reply(ops[op_idx], reqnum, &url).unwrap();
        let Parsed::Key(m) = icp::parse(&r) else { panic!("reply did not parse") };
        prop_assert_eq!(m.opcode, ops[op_idx]);
        prop_assert_eq!(m.reqnum, reqnum);
        if ops[op_idx] == Opcode::HitObj {
            prop_assert_eq!(m.body, IcpBody::Other);
        } else {
            prop_assert_eq!(m.body, IcpBody::Url(url));
        }
    }

    #[test]
    fn ip_fixup_then_parse_is_consistent(
        idx in 0usize..5,
        pos in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let mut buf = fixture(IP_FIXTURES[idx]);
        let len = buf.len();
        buf[pos % len] = byte;
        let before = ip::parse_packet(&buf).map(|p| (p.flow, p.payload.to_vec()));
        let mut fixed = buf.clone();
        match ip::tcp_checksum_fixup(&mut fixed) {
            Ok(()) => {
                let after = ip::parse_packet(&fixed).map(|p| (p.flow, p.payload.to_vec()));
                prop_assert_eq!(before, after);
                let mut again = fixed.clone();
                ip::tcp_checksum_fixup(&mut again).unwrap();
                prop_assert_eq!(again, fixed);
            }
            Err(_) => prop_assert_eq!(fixed, buf),
        }
    }
}
