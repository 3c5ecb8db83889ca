//! The API's errors and their JSON form.
//!
//! Every error response is `application/json`:
//!
//! ```json
//! {"error": "the rules document is invalid (2 problems)", "code": "invalid_rules",
//!  "problems": [{"rule": "img", "field": "host", "why": "…", "text": "rule img: host: …"}]}
//! ```
//!
//! `error` is for people, `code` for programs (stable). `problems` (422 on rules) lists every
//! problem exactly as `l7mark check` prints it (`text`), split into its parts; `current_etag`
//! (412) names the version to retry against.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::control::store::StoreError;
use crate::rules::{Problem, ValidationErrors};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route has this path.
    #[error("no such route: {0}")]
    NoRoute(String),
    /// The route exists, the method does not.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// No or a wrong bearer token.
    #[error("a valid bearer token is needed (Authorization: Bearer <token>)")]
    Unauthorized,
    /// Mutations are disabled: no token configured and the listener is not local.
    #[error(
        "changes are refused: no [api] token is configured and the API listens on a non-loopback \
         address (configure token or token_file)"
    )]
    Forbidden,
    /// The body is not `application/json`.
    #[error("Content-Type must be application/json (got {0})")]
    UnsupportedMediaType(String),
    /// The body is larger than `[api] max_body_bytes`.
    #[error("the body is larger than the limit of {limit} bytes ([api] max_body_bytes)")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body is not usable as sent (empty, malformed JSON, bad base64, wrong request shape).
    #[error("{0}")]
    BadRequest(String),
    /// The rules the request would produce are invalid; nothing changed.
    #[error("the rules document is invalid ({} problem{}); nothing was changed",
        .0.problems().len(), if .0.problems().len() == 1 { "" } else { "s" })]
    Invalid(ValidationErrors),
    /// `If-Match` named another version; nothing changed.
    #[error("the rules changed meanwhile: the current version is {current}; nothing was changed")]
    Stale {
        /// The current ETag.
        current: String,
    },
    /// No rule has this id.
    #[error("no rule with id {0:?}")]
    NoSuchRule(String),
    /// A rule with this id exists already.
    #[error("a rule with id {0:?} exists already (PUT /v1/rules/{0} replaces it)")]
    Conflict(String),
    /// The payload cannot be classified (explain).
    #[error("{0}")]
    Unclassifiable(String),
    /// Reading the body failed midway (client went away, I/O).
    #[error("cannot read the request body: {0}")]
    Body(String),
    /// The rules file could not be written; nothing changed.
    #[error("cannot write the rules file; nothing was changed: {0}")]
    Storage(String),
    /// A bug: a handler panicked or a task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// One problem as JSON.
#[derive(Debug, Serialize)]
struct ProblemJson<'a> {
    /// The rule id (or `#<index>`), null for document-level problems.
    rule: Option<&'a str>,
    field: &'a str,
    why: &'a str,
    /// The line `l7mark check` prints.
    text: String,
}

#[derive(Debug, Serialize)]
struct ErrorJson<'a> {
    error: String,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    problems: Option<Vec<ProblemJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_etag: Option<&'a str>,
}

// === impl ApiError ===

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoRoute(_) | ApiError::NoSuchRule(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) | ApiError::Body(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) | ApiError::Unclassifiable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Stale { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Storage(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NoRoute(_) => "no_route",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooLarge { .. } => "body_too_large",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "invalid_rules",
            ApiError::Stale { .. } => "stale_etag",
            ApiError::NoSuchRule(_) => "no_such_rule",
            ApiError::Conflict(_) => "duplicate_rule",
            ApiError::Unclassifiable(_) => "unclassifiable_payload",
            ApiError::Body(_) => "body_read_failed",
            ApiError::Storage(_) => "storage_failed",
            ApiError::Internal(_) => "internal",
        }
    }
}

fn problem_json(p: &Problem) -> ProblemJson<'_> {
    ProblemJson {
        rule: p.rule.as_deref(),
        field: &p.field,
        why: &p.why,
        text: p.to_string(),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(v) => ApiError::Invalid(v),
            StoreError::Stale { current } => ApiError::Stale { current },
            StoreError::NoSuchRule(id) => ApiError::NoSuchRule(id),
            StoreError::DuplicateRule(id) => ApiError::Conflict(id),
            e @ StoreError::Io { .. } => ApiError::Storage(display_chain(&e)),
        }
    }
}

/// `error: cause: cause…` on one line (the chain printed once, at the edge).
pub fn display_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "API request failed");
        }
        let body = ErrorJson {
            error: self.to_string(),
            code: self.code(),
            problems: match &self {
                ApiError::Invalid(v) => Some(v.problems().iter().map(problem_json).collect()),
                _ => None,
            },
            current_etag: match &self {
                ApiError::Stale { current } => Some(current),
                _ => None,
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| {
            // Strings and numbers always serialize; keep a body anyway.
            br#"{"error":"internal error","code":"internal"}"#.to_vec()
        });
        let mut resp = (status, json).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"l7mark\""),
                );
            }
            ApiError::Stale { current } => {
                if let Ok(v) = HeaderValue::from_str(current) {
                    headers.insert(header::ETAG, v);
                }
            }
            _ => {}
        }
        resp
    }
}
