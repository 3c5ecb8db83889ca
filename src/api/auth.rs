//! Who may read and who may change.
//!
//! | listener | token configured | reads (`GET /v1/…`, `POST /v1/explain`) | mutations |
//! |---|---|---|---|
//! | loopback or unix socket | no | open | open |
//! | loopback or unix socket | yes | open | bearer token |
//! | other address | no | open | **403** |
//! | other address | yes | bearer token | bearer token |
//!
//! `/healthz` and `/metrics` are always open (probes and scrapers). A request that carries an
//! `Authorization` header must carry a valid one (401 otherwise), even where none is needed, so a
//! client with a wrong token finds out before it tries to change anything.
//!
//! Why mutations are allowed without a token on a local listener: only processes on the director
//! can reach it, and with `unix:/path` (mode 0600, owner root) only root — who can rewrite the
//! rules file anyway. On a multi-user host, configure a token or use a unix socket.
//!
//! The token is compared in constant time (`subtle`; only its length can leak) and never logged
//! or printed: [`Token`]'s `Debug` is redacted.

use std::path::PathBuf;

use axum::extract::FromRequestParts;
use axum::http::{HeaderMap, header, request::Parts};
use subtle::ConstantTimeEq;

use super::ApiState;
use super::error::ApiError;
use crate::config::{ApiFile, ApiListen};

/// The shortest token accepted from a file (the same as for `[api] token`).
pub const MIN_TOKEN_LEN: usize = 16;

/// Errors loading the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `token_file` could not be read.
    #[error("cannot read [api] token_file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The token is too short (or empty).
    #[error("the token in {path} is shorter than {MIN_TOKEN_LEN} characters")]
    TooShort {
        /// The file.
        path: PathBuf,
    },
}

/// A bearer token. `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// Wrap a token.
    pub fn new(token: impl Into<String>) -> Token {
        Token(token.into().into_bytes())
    }

    fn matches(&self, given: &[u8]) -> bool {
        bool::from(self.0.as_slice().ct_eq(given))
    }
}

/// The access policy of one listener (see the module documentation).
#[derive(Debug, Clone)]
pub struct Auth {
    token: Option<Token>,
    local: bool,
}

// === impl Auth ===

impl Auth {
    /// A policy with `token` (None: no token), for a listener that is local (loopback address or
    /// unix socket) or not.
    pub fn new(token: Option<Token>, local: bool) -> Auth {
        Auth { token, local }
    }

    /// The policy from the `[api]` section: reads `token_file` if set.
    pub fn from_config(api: &ApiFile, listen: &ApiListen) -> Result<Auth, AuthError> {
        let token = match (&api.token, &api.token_file) {
            (Some(t), _) => Some(Token::new(t.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
                    path: path.clone(),
                    source,
                })?;
                // A trailing newline is what editors and `echo` leave; it is not part of it.
                let t = text.trim();
                if t.len() < MIN_TOKEN_LEN {
                    return Err(AuthError::TooShort { path: path.clone() });
                }
                Some(Token::new(t))
            }
            (None, None) => None,
        };
        Ok(Auth::new(token, is_local(listen)))
    }

    /// Whether the listener is loopback or a unix socket.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `Ok` when the request's `Authorization` is absent-and-not-needed or valid.
    fn check(&self, headers: &HeaderMap, write: bool) -> Result<(), ApiError> {
        let given = bearer(headers)?;
        match (&self.token, given) {
            (Some(t), Some(g)) if t.matches(g) => Ok(()),
            (Some(_), Some(_)) => Err(ApiError::Unauthorized),
            (None, Some(_)) => Err(ApiError::Unauthorized),
            (Some(_), None) if write || !self.local => Err(ApiError::Unauthorized),
            (Some(_), None) => Ok(()),
            (None, None) if write && !self.local => Err(ApiError::Forbidden),
            (None, None) => Ok(()),
        }
    }
}

/// Whether a listen address only accepts local peers.
pub fn is_local(listen: &ApiListen) -> bool {
    match listen {
        ApiListen::Tcp(a) => a.ip().is_loopback(),
        ApiListen::Unix(_) => true,
    }
}

/// The bearer token of a request: None without an `Authorization` header; 401 for another
/// scheme or an unreadable header.
fn bearer(headers: &HeaderMap) -> Result<Option<&[u8]>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.as_bytes();
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ').unwrap_or(v.len()));
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(ApiError::Unauthorized);
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    Ok(Some(token))
}

/// Extractor: the request may read the rules (`GET /v1/rules…`, `POST /v1/explain`).
#[derive(Debug, Clone, Copy)]
pub struct ReadAccess;

/// Extractor: the request may change the rules. Runs before the body is read, so an
/// unauthorised client cannot make the server buffer a large body.
#[derive(Debug, Clone, Copy)]
pub struct WriteAccess;

impl FromRequestParts<ApiState> for ReadAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        state
            .auth()
            .check(&parts.headers, false)
            .map(|()| ReadAccess)
    }
}

impl FromRequestParts<ApiState> for WriteAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        state
            .auth()
            .check(&parts.headers, true)
            .map(|()| WriteAccess)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn h(auth: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(a) = auth {
            m.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        m
    }

    const T: &str = "0123456789abcdef";

    #[test]
    fn policy_table() {
        let tok = || Some(Token::new(T));
        let good = format!("Bearer {T}");
        // token, local, Authorization header, write?, expected error status
        type Case<'a> = (Option<Token>, bool, Option<&'a str>, bool, Option<u16>);
        let cases: &[Case<'_>] = &[
            (None, true, None, false, None),
            (None, true, None, true, None),
            (None, false, None, false, None),
            (None, false, None, true, Some(403)),
            (tok(), true, None, false, None),
            (tok(), true, None, true, Some(401)),
            (tok(), true, Some(&good), true, None),
            (tok(), false, None, false, Some(401)),
            (tok(), false, Some(&good), false, None),
            (tok(), false, Some(&good), true, None),
            (
                tok(),
                true,
                Some("Bearer wrong-token-xxxxxx"),
                false,
                Some(401),
            ),
            (tok(), true, Some("Basic Zm9vOmJhcg=="), true, Some(401)),
            (tok(), true, Some("Bearer"), true, Some(401)),
            (None, true, Some(&good), false, Some(401)),
        ];
        for (i, (token, local, header, write, want)) in cases.iter().enumerate() {
            let a = Auth::new(token.clone(), *local);
            let got = a
                .check(&h(*header), *write)
                .err()
                .map(|e| e.status().as_u16());
            assert_eq!(got, *want, "case {i}");
        }
        let a = Auth::new(tok(), false);
        assert!(a.check(&h(Some(&format!("bEaReR   {T} "))), true).is_ok());
    }

    #[test]
    fn token_is_never_printed() {
        let a = Auth::new(Some(Token::new(T)), true);
        assert!(!format!("{a:?}").contains(T));
    }

    #[test]
    fn token_file_is_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("l7mark-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, format!("{T}\n")).unwrap();
        let api = ApiFile {
            token_file: Some(path.clone()),
            ..ApiFile::default()
        };
        let listen = ApiListen::Tcp("0.0.0.0:9180".parse().unwrap());
        let a = Auth::from_config(&api, &listen).unwrap();
        assert!(a.has_token() && !a.is_local());
        assert!(a.check(&h(Some(&format!("Bearer {T}"))), true).is_ok());
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            Auth::from_config(&api, &listen),
            Err(AuthError::TooShort { .. })
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            Auth::from_config(&api, &listen),
            Err(AuthError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(is_local(&ApiListen::Unix("/run/x.sock".into())));
        assert!(is_local(&ApiListen::Tcp("[::1]:1".parse().unwrap())));
    }
}
