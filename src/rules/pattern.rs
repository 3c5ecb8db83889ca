//! Match primitives: host / SNI patterns, path globs, and the syntax checks of the smaller fields.
//!
//! Every check returns the one-line reason used in a [`super::Problem`].

use super::limits::{MAX_HOST_LEN, MAX_ID_LEN, MAX_LABEL_LEN, MAX_METHOD_LEN, MAX_PATH_LEN};

/// A compiled `host` / `sni` pattern, lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// Exactly this name.
    Exact(Box<str>),
    /// Any name ending in `.` + this suffix (the pattern was `*.` + suffix).
    Suffix(Box<str>),
}

// === impl HostPattern ===

impl HostPattern {
    /// Parse and validate a pattern: `name` or `*.name`, where name is a DNS-like name (labels of
    /// letters, digits, `-`, `_`; 1–63 bytes each; 253 bytes at most) or, for exact patterns
    /// only, a bracketed IPv6 literal as it appears in a `Host` header.
    pub(crate) fn parse(s: &str) -> Result<HostPattern, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > MAX_HOST_LEN {
            return Err(format!("longer than {MAX_HOST_LEN} characters"));
        }
        if let Some(suffix) = s.strip_prefix("*.") {
            if suffix.is_empty() {
                return Err("nothing after '*.'".into());
            }
            if suffix.starts_with('[') {
                return Err("a wildcard cannot be combined with an IP literal".into());
            }
            check_name(suffix)?;
            return Ok(HostPattern::Suffix(suffix.to_ascii_lowercase().into()));
        }
        if s == "*" {
            return Err(
                "a bare '*' is not supported: leave the field out to match any name".into(),
            );
        }
        if s.contains('*') {
            return Err(
                "a wildcard is only allowed as a leading '*.' (as in *.example.com)".into(),
            );
        }
        if s.starts_with('[') {
            check_ipv6_literal(s)?;
        } else {
            check_name(s)?;
        }
        Ok(HostPattern::Exact(s.to_ascii_lowercase().into()))
    }

    /// Does the (lower-case, port-less, trailing-dot-less) name match?
    pub(crate) fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(e) => **e == *name,
            HostPattern::Suffix(sfx) => is_strict_subdomain(name, sfx),
        }
    }
}

/// `name` ends with `.` + `suffix` and has at least one more character before that dot.
pub(crate) fn is_strict_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

fn check_name(name: &str) -> Result<(), String> {
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (leading, trailing or doubled '.')".into());
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!("label longer than {MAX_LABEL_LEN} characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(match c {
                ':' => {
                    "invalid character ':' (patterns match the name only, without a port)".into()
                }
                '/' => "invalid character '/' (put paths in the path_* fields)".into(),
                _ => format!("invalid character {c:?} (allowed: letters, digits, '-', '_', '.')"),
            });
        }
    }
    Ok(())
}

fn check_ipv6_literal(s: &str) -> Result<(), String> {
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| "an IPv6 literal must be of the form [address]".to_string())?;
    if inner.is_empty()
        || !inner.contains(':')
        || !inner
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    {
        return Err("invalid IPv6 literal".into());
    }
    Ok(())
}

/// A compiled `path_glob`: the literal pieces between the `*`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    /// Literal pieces; `pieces.len() == stars + 1`. Empty pieces (from `**`, or a leading or
    /// trailing `*`) are kept so the first and last pieces are always the anchored ends.
    pieces: Vec<Box<str>>,
}

// === impl Glob ===

impl Glob {
    /// Parse a glob; only `*` is special. See [`check_path_chars`] for the characters allowed.
    pub(crate) fn parse(s: &str) -> Result<Glob, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if !(s.starts_with('/') || s.starts_with('*')) {
            return Err("must start with '/' or '*' (paths always start with '/')".into());
        }
        check_path_chars(s)?;
        if let Some(c) = s.chars().find(|c| matches!(c, '[' | ']' | '{' | '}')) {
            return Err(format!(
                "unsupported glob syntax {c:?}: only '*' is a wildcard (use path_regex)"
            ));
        }
        Ok(Glob {
            pieces: s.split('*').map(Into::into).collect(),
        })
    }

    /// Does the whole path match?
    pub(crate) fn matches(&self, path: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(x) => x,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            // No '*' at all: a literal comparison.
            return path == &**first;
        };
        if path.len() < first.len() + last.len()
            || !path.starts_with(&**first)
            || !path.ends_with(&**last)
        {
            return false;
        }
        // The middle pieces are matched leftmost-first inside the part between the anchored
        // ends; with `*` as the only wildcard, taking the leftmost occurrence of each piece never
        // loses a match, so no backtracking is needed.
        let mut window = &path[first.len()..path.len() - last.len()];
        for piece in middle {
            match window.find(&**piece) {
                Some(at) => window = &window[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

/// Checks shared by every path field: length, no whitespace or control characters (they cannot
/// appear in a request target, RFC 9112 §3.2), no `?` (paths are matched without the query).
pub(crate) fn check_path_chars(s: &str) -> Result<(), String> {
    if s.len() > MAX_PATH_LEN {
        return Err(format!("longer than {MAX_PATH_LEN} characters"));
    }
    if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "invalid character {c:?} (whitespace and control characters never occur in a request path)"
        ));
    }
    if s.contains('?') {
        return Err(
            "contains '?': paths are matched without the query string, so this can never match"
                .into(),
        );
    }
    Ok(())
}

/// `path_prefix` / `path_exact`: start with `/`, plus [`check_path_chars`].
pub(crate) fn check_plain_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err("must start with '/'".into());
    }
    check_path_chars(s)
}

/// An HTTP method token (RFC 9110 §9.1, `token` = 1*tchar, §5.6.2).
pub(crate) fn check_method(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_METHOD_LEN {
        return Err(format!("longer than {MAX_METHOD_LEN} characters"));
    }
    if let Some(c) = s.chars().find(|c| !is_tchar(*c)) {
        return Err(format!(
            "invalid character {c:?}: a method is an RFC 9110 token"
        ));
    }
    Ok(())
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A rule id: 1–64 characters of `A-Z a-z 0-9 . _ -`.
pub(crate) fn check_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_ID_LEN {
        return Err(format!("longer than {MAX_ID_LEN} characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "invalid character {c:?} (allowed: A-Z a-z 0-9 . _ -)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert_eq!(
            HostPattern::parse("Static.Example.com"),
            Ok(HostPattern::Exact("static.example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.Example.org"),
            Ok(HostPattern::Suffix("example.org".into()))
        );
        assert!(HostPattern::parse("[2001:db8::1]").is_ok());
        for bad in [
            "", "*", "*.", "a.*.b", "*a.b", "a*", "a..b", ".a", "a.", "a b", "a:80", "[::1", "[]",
            "*.[::1]", "a/b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(HostPattern::parse(&"a".repeat(64)).is_err());
        assert!(HostPattern::parse(&format!("{}.com", "a.".repeat(126))).is_err());
    }

    #[test]
    fn suffix_matches_subdomains_only() {
        let p = HostPattern::parse("*.example.org").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.matches("a.example.org"));
        assert!(p.matches("a.b.example.org"));
        assert!(!p.matches("example.org"));
        assert!(!p.matches("aexample.org"));
        assert!(!p.matches(".example.org"));
    }

    #[test]
    fn globs() {
        let g = |p: &str| Glob::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(g("*.html").matches("/a/b.html"));
        assert!(g("*.html").matches(".html"));
        assert!(!g("*.html").matches("/a/b.htm"));
        assert!(g("/a/*/c").matches("/a/b/c"));
        assert!(g("/a/*/c").matches("/a/x/y/c"));
        assert!(!g("/a/*/c").matches("/a/c"));
        assert!(g("/a/*").matches("/a/"));
        assert!(g("*").matches("/"));
        assert!(g("**").matches("/x"));
        assert!(g("/exact").matches("/exact"));
        assert!(!g("/exact").matches("/exact/"));
        assert!(g("*a*a*").matches("/aa"));
        assert!(!g("*a*a*").matches("/a"));
        assert!(g("/x*ab*ab").matches("/xababab"));
        assert!(!g("/ab*ba").matches("/aba"));
        for bad in ["", "a*", "/a?", "/a[b]", "/{a,b}", "/a b"] {
            assert!(Glob::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn small_fields() {
        assert!(check_method("GET").is_ok());
        assert!(check_method("M-SEARCH").is_ok());
        assert!(check_method("GET ").is_err());
        assert!(check_method("").is_err());
        assert!(check_id("img-1_a.b").is_ok());
        assert!(check_id("a/b").is_err());
        assert!(check_id(&"x".repeat(65)).is_err());
        assert!(check_plain_path("/a").is_ok());
        assert!(check_plain_path("a").is_err());
        assert!(check_plain_path("/a?b").is_err());
        assert!(check_plain_path("/a\tb").is_err());
    }
}
