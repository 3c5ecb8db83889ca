//! Canonical URLs: the key of `url_hash`, identical for a URL whether it arrives as an HTTP
//! request (Host + request target) or as the URL of an ICP query (RFC 2186 §3, an absolute URL).
//!
//! The canonical form is Squid's effective request URI (see [`super::hash`]), so the hash agrees
//! with Squid CARP: `scheme://host[:port]/path?query` with
//! - scheme and host lower-case (ASCII), trailing dots of the host removed, no user info;
//! - the port only when it is not the scheme's default (80 for `http`, 443 for `https`);
//! - path and query exactly as received (no percent-decoding or re-encoding, no dot-segment
//!   removal); an empty path, or one starting with `?` or `#`, gets a leading `/`.

/// The parts of an absolute URL taken from an ICP query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcpUrlParts {
    /// `"http"` or `"https"`.
    pub scheme: &'static str,
    /// Host, lower-case, without port, user info or trailing dot; IPv6 literals keep their
    /// brackets (as in a `Host` header, so `host` rules match both alike).
    pub host: String,
    /// The port if the URL gives one explicitly (even the default one).
    pub port: Option<u16>,
    /// Path and query (`/a/b?x=1`); never empty, always starts with `/`.
    pub path: String,
    /// The canonical URL, the `url_hash` key.
    pub canonical: String,
}

/// Canonical URL of an HTTP request: `http://host[:port]/path?query`.
///
/// `host` is the `Host` header value (any case; a `:port` in it is used when `port` is `None`,
/// ignored otherwise); `port` the server port when known (80 is omitted); `path` the origin-form
/// request target, query included.
pub fn canonical_http_url(host: &str, port: Option<u16>, path: &str) -> String {
    let (name, host_port) = split_host_port(host);
    let port = port.or(host_port);
    canonical("http", &name.to_ascii_lowercase(), port, path)
}

/// Split an ICP query URL (`http://cdn.example.net/a/b.html`, as Squid sends it).
///
/// Accepts `http` and `https` URLs (scheme in any case). Returns `None` for other schemes
/// (`ftp://`, `urn:`, …: l7mark does not classify those, the caller uses the default mark), for
/// a missing or malformed host or port, and for whitespace or control characters anywhere.
pub fn split_icp_url(url: &str) -> Option<IcpUrlParts> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (scheme, rest) = if let Some(r) = strip_prefix_ignore_case(url, "http://") {
        ("http", r)
    } else if let Some(r) = strip_prefix_ignore_case(url, "https://") {
        ("https", r)
    } else {
        return None;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    // User info is not part of the canonical URL (Squid drops it for http/https).
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);

    let (host, port) = if host_port.starts_with('[') {
        let close = host_port.find(']')?;
        let (h, after) = host_port.split_at(close + 1);
        match after {
            "" => (h, None),
            p => (h, Some(parse_port(p.strip_prefix(':')?)?)),
        }
    } else {
        match host_port.split_once(':') {
            None => (host_port, None),
            Some((h, p)) => (h, Some(parse_port(p)?)),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.starts_with('.') || host.contains("..") {
        return None;
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let canonical = canonical(scheme, &host, port, &path);
    Some(IcpUrlParts {
        scheme,
        host,
        port,
        path,
        canonical,
    })
}

fn canonical(scheme: &str, host: &str, port: Option<u16>, path: &str) -> String {
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = host.trim_end_matches('.');
    let mut out = String::with_capacity(scheme.len() + 3 + host.len() + 6 + path.len() + 1);
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
    if let Some(p) = port.filter(|&p| p != default_port) {
        out.push(':');
        out.push_str(&p.to_string());
    }
    if !path.starts_with('/') {
        out.push('/');
    }
    out.push_str(path);
    out
}

/// `1..=65535` in decimal, nothing else (Squid rejects port 0 and garbage).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&p| p != 0)
}

/// Split `name[:port]` / `[v6][:port]`. A name with several colons and no brackets is taken as an
/// unbracketed IPv6 address without port; an unparsable port is left in the name.
pub(crate) fn split_host_port(host: &str) -> (&str, Option<u16>) {
    let colon = if host.starts_with('[') {
        host.find(']').and_then(|close| {
            let after = close + 1;
            host[after..].starts_with(':').then_some(after)
        })
    } else {
        match (host.find(':'), host.rfind(':')) {
            (Some(a), Some(b)) if a == b => Some(a),
            _ => None,
        }
    };
    match colon {
        Some(at) => match parse_port(&host[at + 1..]) {
            Some(p) => (&host[..at], Some(p)),
            None => (host, None),
        },
        None => (host, None),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_canonical() {
        assert_eq!(
            canonical_http_url("CDN.Example.net", None, "/a/b.html?x=1"),
            "http://cdn.example.net/a/b.html?x=1"
        );
        assert_eq!(canonical_http_url("h", Some(80), "/"), "http://h/");
        assert_eq!(canonical_http_url("h", Some(8080), "/"), "http://h:8080/");
        assert_eq!(canonical_http_url("h:8080", None, "/x"), "http://h:8080/x");
        assert_eq!(canonical_http_url("h:80", None, "/x"), "http://h/x");
        assert_eq!(canonical_http_url("h.", None, ""), "http://h/");
        assert_eq!(
            canonical_http_url("[::1]:81", None, "/"),
            "http://[::1]:81/"
        );
        assert_eq!(canonical_http_url("[::1]", Some(80), "/"), "http://[::1]/");
    }

    #[test]
    fn icp_split() {
        let p = split_icp_url("http://cdn.example.net/a/b.html").unwrap_or_else(|| panic!());
        assert_eq!(p.host, "cdn.example.net");
        assert_eq!(p.path, "/a/b.html");
        assert_eq!(p.port, None);
        assert_eq!(p.canonical, "http://cdn.example.net/a/b.html");

        let p = split_icp_url("HTTP://u:pw@CDN.Example.NET.:80?q").unwrap_or_else(|| panic!());
        assert_eq!(p.host, "cdn.example.net");
        assert_eq!(p.port, Some(80));
        assert_eq!(p.path, "/?q");
        assert_eq!(p.canonical, "http://cdn.example.net/?q");

        let p = split_icp_url("https://[2001:DB8::1]:8443/x").unwrap_or_else(|| panic!());
        assert_eq!(p.host, "[2001:db8::1]");
        assert_eq!(p.canonical, "https://[2001:db8::1]:8443/x");
        let p = split_icp_url("https://h:443/x").unwrap_or_else(|| panic!());
        assert_eq!(p.canonical, "https://h/x");

        for bad in [
            "ftp://h/x",
            "urn:x",
            "http://",
            "http:///x",
            "http://h:/x",
            "http://h:0/x",
            "http://h:99999/x",
            "http://h:8o/x",
            "http://h/a b",
            "http://a..b/",
            "http://[::1/",
            "/relative",
        ] {
            assert_eq!(split_icp_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_and_icp_agree() {
        let icp = split_icp_url("http://cdn.example.net:8080/a?b=c").unwrap_or_else(|| panic!());
        assert_eq!(
            canonical_http_url("cdn.example.net", Some(8080), "/a?b=c"),
            icp.canonical
        );
        // Idempotent on its own output.
        let again = split_icp_url(&icp.canonical).unwrap_or_else(|| panic!());
        assert_eq!(again.canonical, icp.canonical);
    }
}
