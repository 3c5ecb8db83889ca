//! HTTP/1.x request line and Host (RFC 9112, RFC 9110), on top of `httparse`.
//!
//! The key is `(method, path, host, port)`. It is complete when the whole header block is there
//! (`httparse` answers `Complete`): only then can a second `Host` line be ruled out. A valid prefix
//! answers [`Parsed::NeedMore`].
//!
//! # Where the host comes from (RFC 9112 §3.2, §3.2.2-§3.2.4)
//! - origin-form (`GET /p?q HTTP/1.1`) and asterisk-form (`OPTIONS * HTTP/1.1`): the `Host`
//!   header.
//! - absolute-form (`GET http://h:8080/p HTTP/1.1`, what clients send to forward proxies and
//!   caches): the URL's authority, and the `Host` header is ignored — RFC 9112 §3.2.2: "the proxy
//!   MUST ignore the received Host header field (if any) and instead replace it with the host
//!   information of the request-target".
//! - authority-form (`CONNECT h:443 HTTP/1.1`): the target itself.
//!
//! # What is rejected (all as [`Parsed::NotThisProtocol`])
//! Whatever `httparse` refuses (including HTTP/2's preface and more than [`MAX_HEADERS`] headers),
//! a header block over [`MAX_HEADER_BLOCK`] bytes, and what RFC 9112 §3.2 says a server must answer
//! with 400: an HTTP/1.1 request without `Host`, more than one `Host` line, or an invalid `Host`
//! value. Also request-targets of no known form, asterisk-form outside `OPTIONS`, a `CONNECT`
//! target without a port, and `userinfo@` in an `http`/`https` URL (RFC 9110 §4.2.4: "treat its
//! presence as an error").
//!
//! # Normalisation of the host
//! Lower-cased; the port is split off into [`HttpRequest::port`]. An IPv6 literal is returned
//! **without brackets, in RFC 5952 canonical text** (`[2001:DB8:0::1]` → `2001:db8::1`), so it
//! compares equal to a formatted `Ipv6Addr`. A trailing dot is kept (the name is returned as sent).
//! Percent-encoding in a reg-name is validated but not decoded; the path is never decoded.

use std::net::Ipv6Addr;

use super::{Parsed, Reject};

/// Header array size given to `httparse`. Real requests carry 5-30 headers; a request with more
/// than this is treated as not HTTP (`TooManyHeaders`).
pub const MAX_HEADERS: usize = 128;

/// A header block still incomplete (or complete but larger) at this size is rejected: no
/// browser or proxy sends one (Squid's default `request_header_max_size` is 64 KB), and the
/// caller must not hold a flow forever waiting for the end of the headers.
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// RFC 1035 §2.3.4 limits names to 255 octets; a longer host cannot be resolved.
const MAX_HOST_LEN: usize = 255;

/// The classification key of an HTTP/1.x request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method token as sent (case-sensitive, RFC 9110 §9.1).
    pub method: String,
    /// The path to match rules against, as sent (no percent-decoding), query included:
    /// - origin-form: the request-target;
    /// - absolute-form: the path and query of the URL (fragment too, if a client sent one), `/`
    ///   when the URL has no path (RFC 9112 §3.2.1: an empty path is sent as `/`);
    /// - asterisk-form: `*`;
    /// - authority-form (`CONNECT`): the request-target as sent, `host:port`.
    pub path: String,
    /// The host, lower-cased, port stripped; an IPv6 literal without brackets in canonical
    /// form. `None` only for an HTTP/1.0 request without `Host` in origin- or asterisk-form.
    pub host: Option<String>,
    /// The explicit port of the authority or `Host`, if any (no scheme default is filled in).
    pub port: Option<u16>,
    /// Whether the request-target was in absolute-form (a request to a proxy or cache).
    pub absolute_form: bool,
    /// Length of the header block, request line and final empty line included: the body, if
    /// any, starts here.
    pub header_len: usize,
}

fn reject<T>(why: &'static str) -> Parsed<T> {
    Parsed::NotThisProtocol(Reject(why))
}

/// `tchar` (RFC 9110 §5.6.2), the characters of a method token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Cheap early test: can `buf` be the start of an HTTP/1.x request? It checks what `httparse`
/// checks first: optional empty lines (RFC 9112 §2.2 lets a server ignore them), then a method
/// token followed by a space. `false` guarantees that [`parse_request`] rejects `buf` (and any
/// longer buffer starting with it); `true` proves nothing.
pub fn looks_like_http(buf: &[u8]) -> bool {
    let mut rest = buf;
    // Leading empty lines: "\r\n" or "\n".
    loop {
        match rest {
            [b'\r', b'\n', tail @ ..] | [b'\n', tail @ ..] => rest = tail,
            [b'\r'] => return true,
            [b'\r', ..] => return false,
            _ => break,
        }
    }
    let mut seen_token = false;
    for &b in rest {
        if b == b' ' {
            return seen_token;
        }
        if !is_tchar(b) {
            return false;
        }
        seen_token = true;
    }
    true
}

/// Parse an HTTP/1.x request header block from the start of a TCP stream.
///
/// `buf` holds the bytes received so far; trailing bytes after the header block (a body, the
/// next pipelined request) are ignored. See the module documentation for the rules.
pub fn parse_request(buf: &[u8]) -> Parsed<HttpRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let header_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEADER_BLOCK {
                return reject("http: header block larger than 64 KiB");
            }
            return Parsed::NeedMore;
        }
        Err(e) => return reject(httparse_reason(e)),
    };
    if header_len > MAX_HEADER_BLOCK {
        // Same answer as for the incomplete prefix of this block, so that the outcome does not
        // depend on how the bytes were segmented.
        return reject("http: header block larger than 64 KiB");
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        // `Complete` always fills the request line; be defensive rather than panic.
        return reject("http: incomplete request line");
    };

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
    // request message that lacks a Host header field and to any request message that contains
    // more than one Host header field line or a Host header field with an invalid field value."
    let mut host_header: Option<&[u8]> = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            if host_header.is_some() {
                return reject("http: duplicate Host header");
            }
            host_header = Some(trim_ows(h.value));
        }
    }
    if version == 1 && host_header.is_none() {
        return reject("http: HTTP/1.1 request without Host");
    }

    let target_form = match classify_target(method, target) {
        Ok(t) => t,
        Err(r) => return Parsed::NotThisProtocol(r),
    };
    // The Host value must be valid in every form (400 otherwise); in absolute- and
    // authority-form it may be empty (RFC 9110 §7.2) because it is ignored anyway.
    let from_header = match host_header {
        None => None,
        Some([]) if target_form.authority.is_some() => None,
        Some([]) => return reject("http: empty Host"),
        Some(v) => match std::str::from_utf8(v)
            .map_err(|_| Reject("http: invalid host"))
            .and_then(parse_host_port)
        {
            Ok(hp) => Some(hp),
            Err(r) => return Parsed::NotThisProtocol(r),
        },
    };
    let (host, port) = match target_form.authority.or(from_header) {
        Some((h, p)) => (Some(h), p),
        None => (None, None),
    };
    Parsed::Key(HttpRequest {
        method: method.to_owned(),
        path: target_form.path,
        host,
        port,
        absolute_form: target_form.absolute,
        header_len,
    })
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "http: invalid header name",
        httparse::Error::HeaderValue => "http: invalid header value",
        httparse::Error::NewLine => "http: invalid line ending",
        httparse::Error::Status => "http: invalid status",
        httparse::Error::Token => "http: invalid method or request-target",
        httparse::Error::TooManyHeaders => "http: too many headers",
        httparse::Error::Version => "http: not HTTP/1.0 or HTTP/1.1",
    }
}

/// Strip optional whitespace (SP / HTAB, RFC 9110 §5.6.3) around a field value.
fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// What the request-target says.
struct TargetForm {
    path: String,
    /// Host and port from the target (absolute- and authority-form).
    authority: Option<(String, Option<u16>)>,
    absolute: bool,
}

/// Tell the four request-target forms apart (RFC 9112 §3.2).
fn classify_target(method: &str, target: &str) -> Result<TargetForm, Reject> {
    if method == "CONNECT" {
        // §3.2.3: authority-form = uri-host ":" port, only for CONNECT.
        let (host, port) = parse_host_port(target)?;
        let Some(port) = port else {
            return Err(Reject("http: CONNECT target without port"));
        };
        return Ok(TargetForm {
            path: target.to_owned(),
            authority: Some((host, Some(port))),
            absolute: false,
        });
    }
    if target == "*" {
        // §3.2.4: asterisk-form is only used for a server-wide OPTIONS request.
        if method != "OPTIONS" {
            return Err(Reject("http: asterisk-form outside OPTIONS"));
        }
        return Ok(TargetForm {
            path: "*".to_owned(),
            authority: None,
            absolute: false,
        });
    }
    if target.starts_with('/') {
        // §3.2.1: origin-form.
        return Ok(TargetForm {
            path: target.to_owned(),
            authority: None,
            absolute: false,
        });
    }
    // §3.2.2: absolute-form = absolute-URI (RFC 3986 §4.3): scheme ":" hier-part. Only the
    // hier-part with an authority ("//") identifies a host to route on.
    let (scheme, rest) = target
        .split_once(':')
        .ok_or(Reject("http: invalid request-target"))?;
    if !is_scheme(scheme) {
        return Err(Reject("http: invalid request-target"));
    }
    let rest = rest
        .strip_prefix("//")
        .ok_or(Reject("http: absolute-form without authority"))?;
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    let authority = match authority.rsplit_once('@') {
        None => authority,
        // RFC 9110 §4.2.4: userinfo is deprecated in http(s) URIs and "A recipient SHOULD parse
        // for userinfo and treat its presence as an error". Other schemes a cache may be asked
        // for (ftp://user@host/) keep it legitimately; the host is after the last '@'.
        Some(_) if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") => {
            return Err(Reject("http: userinfo in http URL"));
        }
        Some((_, host)) => host,
    };
    let authority = parse_host_port(authority)?;
    let path = if path.is_empty() {
        "/".to_owned()
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Ok(TargetForm {
        path,
        authority: Some(authority),
        absolute: true,
    })
}

/// RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Parse `uri-host [ ":" port ]` (RFC 3986 §3.2.2-§3.2.3), as found in `Host` (RFC 9110 §7.2) and
/// in authorities. The host is normalised as described in the module documentation.
fn parse_host_port(s: &str) -> Result<(String, Option<u16>), Reject> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        // IP-literal = "[" ( IPv6address / IPvFuture ) "]"
        let (lit, after) = inner
            .split_once(']')
            .ok_or(Reject("http: unterminated IPv6 literal"))?;
        if lit.starts_with(['v', 'V']) {
            return Err(Reject("http: IPvFuture host"));
        }
        // `Ipv6Addr` parsing rejects zone identifiers, which RFC 3986 does not allow (RFC 6874
        // added them for URIs but browsers do not send them).
        let addr: Ipv6Addr = lit
            .parse()
            .map_err(|_| Reject("http: invalid IPv6 literal"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(Reject("http: invalid host"))?),
        };
        (addr.to_string(), port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.is_empty() {
            return Err(Reject("http: empty host"));
        }
        if host.len() > MAX_HOST_LEN {
            return Err(Reject("http: host longer than 255 bytes"));
        }
        if !is_reg_name(host.as_bytes()) {
            return Err(Reject("http: invalid host"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        // RFC 3986 §3.2.3: port = *DIGIT, so "host:" is a valid, empty port.
        None | Some("") => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

/// reg-name = *( unreserved / pct-encoded / sub-delims ) (RFC 3986 §3.2.2); an IPv4 address is
/// also a reg-name syntactically.
fn is_reg_name(host: &[u8]) -> bool {
    let mut i = host.iter();
    while let Some(&b) = i.next() {
        let ok = match b {
            b'%' => {
                // pct-encoded = "%" HEXDIG HEXDIG
                i.next().is_some_and(u8::is_ascii_hexdigit)
                    && i.next().is_some_and(u8::is_ascii_hexdigit)
            }
            // unreserved
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => true,
            // sub-delims
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => true,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A decimal TCP port, 1-65535 (leading zeros allowed by `*DIGIT`; port 0 cannot be a
/// destination).
fn parse_port(p: &str) -> Result<u16, Reject> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject("http: invalid port"));
    }
    let v = p
        .bytes()
        .try_fold(0u32, |acc, d| {
            acc.checked_mul(10)?
                .checked_add(u32::from(d - b'0'))
                .filter(|v| *v <= 65_535)
        })
        .ok_or(Reject("http: invalid port"))?;
    match u16::try_from(v) {
        Ok(0) | Err(_) => Err(Reject("http: invalid port")),
        Ok(port) => Ok(port),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(s: &str) -> HttpRequest {
        match parse_request(s.as_bytes()) {
            Parsed::Key(k) => k,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    fn rejected(s: impl AsRef<[u8]>) -> &'static str {
        let s = s.as_ref();
        match parse_request(s) {
            Parsed::NotThisProtocol(Reject(r)) => r,
            other => panic!("{s:?}: expected rejection, got {other:?}"),
        }
    }

    #[test]
    fn origin_form() {
        let k = key("GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: WWW.Example.COM:8080\r\n\r\nbody");
        assert_eq!(k.method, "GET");
        assert_eq!(k.path, "/a/b?x=1&y=%20");
        assert_eq!(k.host.as_deref(), Some("www.example.com"));
        assert_eq!(k.port, Some(8080));
        assert!(!k.absolute_form);
        assert_eq!(k.header_len, 59, "everything but the 4-byte body");
    }

    #[test]
    fn absolute_form_authority_wins_over_host() {
        let k =
            key("GET http://Cache.Example.net:3128/x?q HTTP/1.1\r\nHost: other.example\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("cache.example.net"));
        assert_eq!(k.port, Some(3128));
        assert_eq!(k.path, "/x?q");
        assert!(k.absolute_form);
        // Empty path becomes "/", a query without path gets one.
        assert_eq!(
            key("GET http://a.example HTTP/1.1\r\nHost: a.example\r\n\r\n").path,
            "/"
        );
        assert_eq!(
            key("GET http://a.example?x HTTP/1.1\r\nHost: a.example\r\n\r\n").path,
            "/?x"
        );
        // HTTP/1.0 to a proxy without Host, and an empty Host (RFC 9110 §7.2) are fine.
        let k = key("GET http://a.example/ HTTP/1.0\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("a.example"));
        let k = key("GET http://a.example/ HTTP/1.1\r\nHost:\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("a.example"));
        // ftp URLs through a cache may carry userinfo; the host is after '@'.
        let k =
            key("GET ftp://user:pw@FTP.example.org/pub/ HTTP/1.1\r\nHost: ftp.example.org\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("ftp.example.org"));
        assert_eq!(k.port, None);
    }

    #[test]
    fn connect_and_options() {
        let k =
            key("CONNECT Secure.Example.com:443 HTTP/1.1\r\nHost: secure.example.com:443\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("secure.example.com"));
        assert_eq!(k.port, Some(443));
        assert_eq!(k.path, "Secure.Example.com:443");
        assert!(!k.absolute_form);
        let k = key("CONNECT [2001:DB8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("2001:db8::1"));
        let k = key("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n");
        assert_eq!(k.path, "*");
        assert_eq!(k.host.as_deref(), Some("a.example"));
    }

    #[test]
    fn http10_without_host() {
        let k = key("GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n");
        assert_eq!(k.host, None);
        assert_eq!(k.port, None);
    }

    #[test]
    fn ipv6_literal_is_canonical_without_brackets() {
        let k = key("GET / HTTP/1.1\r\nHost: [2001:DB8:0:0::1]:80\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("2001:db8::1"));
        assert_eq!(k.port, Some(80));
        let k = key("GET / HTTP/1.1\r\nHost: [::ffff:192.0.2.1]\r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("::ffff:192.0.2.1"));
    }

    #[test]
    fn host_whitespace_and_empty_port() {
        let k = key("GET / HTTP/1.1\r\nHost: \t a.example: \r\n\r\n");
        assert_eq!(k.host.as_deref(), Some("a.example"));
        assert_eq!(k.port, None);
        let k = key("GET / HTTP/1.1\r\nhOsT: a.example:00080\r\n\r\n");
        assert_eq!(k.port, Some(80));
    }

    #[test]
    fn partial_is_need_more() {
        let full = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
        for n in 0..full.len() {
            assert_eq!(
                parse_request(&full.as_bytes()[..n]),
                Parsed::NeedMore,
                "{n}"
            );
        }
    }

    #[test]
    fn rejections() {
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            "http: duplicate Host header"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            "http: duplicate Host header"
        );
        assert_eq!(
            rejected("GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            "http: duplicate Host header"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            "http: HTTP/1.1 request without Host"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost:\r\n\r\n"),
            "http: empty Host"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"),
            "http: empty host"
        );
        for bad in [
            "a b",
            "a/b",
            "a@b",
            "a\"b",
            "ex%zzample",
            "a%4",
            "\u{e9}.example",
        ] {
            assert_eq!(
                rejected(format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n")),
                "http: invalid host",
                "{bad}"
            );
        }
        let long = "a".repeat(256);
        assert_eq!(
            rejected(format!("GET / HTTP/1.1\r\nHost: {long}\r\n\r\n")),
            "http: host longer than 255 bytes"
        );
        for bad in [
            "a:0",
            "a:65536",
            "a:8o",
            "a:1:2",
            "a:99999999999999999999",
            "[::1]:x",
        ] {
            assert_eq!(
                rejected(format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n")),
                "http: invalid port",
                "{bad}"
            );
        }
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"),
            "http: unterminated IPv6 literal"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n"),
            "http: invalid IPv6 literal"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n"),
            "http: invalid IPv6 literal"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n"),
            "http: IPvFuture host"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n"),
            "http: invalid host"
        );
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\nHost: a\xff\r\n\r\n"),
            "http: invalid host"
        );
        assert_eq!(
            rejected("CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            "http: CONNECT target without port"
        );
        assert_eq!(
            rejected("CONNECT a.example: HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            "http: CONNECT target without port"
        );
        assert_eq!(
            rejected("GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            "http: asterisk-form outside OPTIONS"
        );
        assert_eq!(
            rejected("GET a.example:80 HTTP/1.1\r\nHost: a\r\n\r\n"),
            "http: absolute-form without authority"
        );
        assert_eq!(
            rejected("GET index.html HTTP/1.1\r\nHost: a\r\n\r\n"),
            "http: invalid request-target"
        );
        assert_eq!(
            rejected("GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            "http: invalid request-target"
        );
        assert_eq!(
            rejected("GET urn:isbn:1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            "http: absolute-form without authority"
        );
        assert_eq!(
            rejected("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"),
            "http: empty host"
        );
        assert_eq!(
            rejected("GET http://u:p@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            "http: userinfo in http URL"
        );
        assert_eq!(
            rejected("GET http://a.example/ HTTP/1.1\r\nHost: b c\r\n\r\n"),
            "http: invalid host"
        );
        // httparse errors.
        assert_eq!(
            rejected("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            "http: not HTTP/1.0 or HTTP/1.1"
        );
        assert_eq!(
            rejected("\x16\x03\x01"),
            "http: invalid method or request-target"
        );
        assert_eq!(
            rejected("GET /\r\n"),
            "http: invalid method or request-target"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHo st: a\r\n\r\n"),
            "http: invalid header name"
        );
        assert_eq!(
            rejected("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
            "http: invalid header name"
        );
        assert_eq!(rejected("\rGET"), "http: invalid line ending");
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            rejected(format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")),
            "http: too many headers"
        );
    }

    #[test]
    fn header_block_limit() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n",
            "v".repeat(MAX_HEADER_BLOCK)
        );
        assert_eq!(rejected(&big), "http: header block larger than 64 KiB");
        let complete = format!("{big}\r\n");
        assert_eq!(rejected(&complete), "http: header block larger than 64 KiB");
    }

    #[test]
    fn looks_like_http_agrees_with_the_parser() {
        for yes in [
            "",
            "G",
            "GET",
            "GET ",
            "\r\n",
            "\r",
            "\r\nPOST /",
            "M-SEARCH * HTTP/1.1",
        ] {
            assert!(looks_like_http(yes.as_bytes()), "{yes:?}");
        }
        for no in ["\x16\x03\x01", " GET", "GE(T", "\rX", "\x01\x02", "GET\t/"] {
            assert!(!looks_like_http(no.as_bytes()), "{no:?}");
            assert!(parse_request(no.as_bytes()).reject().is_some(), "{no:?}");
        }
    }
}
