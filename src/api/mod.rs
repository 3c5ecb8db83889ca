//! The REST API (axum): rule tables, explain, metrics and health.
//!
//! It runs on its own thread (`l7mark-api`) with its own single-threaded tokio runtime, apart
//! from the verdict threads: API load never delays a packet. It reaches the data path only
//! through the [`Controller`] (changes) and lock-free snapshots (reads).
//!
//! # Routes
//!
//! | route | what | auth |
//! |---|---|---|
//! | `GET /v1/rules` | the document, `ETag` | read |
//! | `PUT /v1/rules` | replace the document (`If-Match`) | write |
//! | `POST /v1/rules` | add one rule (409 on a duplicate id) | write |
//! | `GET /v1/rules/{id}` | one rule | read |
//! | `PUT /v1/rules/{id}` | replace one rule in place | write |
//! | `DELETE /v1/rules/{id}` | remove one rule | write |
//! | `POST /v1/explain` | classify a payload like `l7mark explain` | read |
//! | `GET /metrics` | Prometheus text | open |
//! | `GET /healthz` | checks; 200 / 503 | open |
//!
//! The reference for clients is `docs/api.md` and `docs/openapi.yaml` (a test keeps the spec and
//! [`routes`] equal). Layout: one file per resource ([`rules`], [`explain`], [`metrics`],
//! [`health`]), access policy in [`auth`], the error JSON in [`error`], `/proc` parsers in
//! [`procfs`].

pub mod auth;
pub mod error;
pub mod explain;
pub mod health;
pub mod metrics;
pub mod procfs;
pub mod rules;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use http_body_util::BodyExt as _;
use tokio::sync::oneshot;
use tower_http::catch_panic::CatchPanicLayer;

use crate::binder::Gauges;
use crate::config::{ApiListen, Config};
use crate::control::{Command, Committed, Controller, FirewallSync};
use auth::Auth;
use error::ApiError;
use health::Probe;

/// How long in-flight requests may take to finish after a stop was asked for.
const DRAIN: Duration = Duration::from_secs(3);

/// What the handlers share. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

struct Inner {
    controller: Arc<Controller>,
    binder: Vec<Arc<Mutex<Gauges>>>,
    auth: Auth,
    probe: Arc<dyn Probe>,
}

// === impl ApiState ===

impl ApiState {
    /// The state for a router: the controller (rules, config, metrics, firewall), the binder's
    /// gauges (one per worker; empty without TCP services), the access policy, and where kernel
    /// state is read from ([`health::SystemProbe`] in the daemon).
    pub fn new(
        controller: Arc<Controller>,
        binder: Vec<Arc<Mutex<Gauges>>>,
        auth: Auth,
        probe: Arc<dyn Probe>,
    ) -> ApiState {
        ApiState(Arc::new(Inner {
            controller,
            binder,
            auth,
            probe,
        }))
    }

    /// The controller.
    pub fn controller(&self) -> &Arc<Controller> {
        &self.0.controller
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.0.controller.config()
    }

    /// The access policy.
    pub fn auth(&self) -> &Auth {
        &self.0.auth
    }

    /// The binder gauges.
    pub fn binder(&self) -> &[Arc<Mutex<Gauges>>] {
        &self.0.binder
    }

    /// The kernel-state reader.
    pub fn probe(&self) -> &Arc<dyn Probe> {
        &self.0.probe
    }

    /// Run a change on the blocking pool (validation, fsync and nft take milliseconds and must
    /// not stall the other requests on this single-threaded runtime).
    async fn execute(&self, if_match: Option<String>, cmd: Command) -> Result<Committed, ApiError> {
        let c = Arc::clone(&self.0.controller);
        tokio::task::spawn_blocking(move || c.execute(if_match.as_deref(), cmd))
            .await
            .map_err(|e| ApiError::Internal(format!("the change task failed: {e}")))?
            .map_err(ApiError::from)
    }
}

/// Every route: method, path (axum syntax), handler. The router and the OpenAPI test both use
/// this list, so a route cannot be added without the test noticing a missing spec entry.
fn table() -> Vec<(Method, &'static str, MethodRouter<ApiState>)> {
    vec![
        (Method::GET, "/v1/rules", get(rules::get_doc)),
        (Method::PUT, "/v1/rules", put(rules::put_doc)),
        (Method::POST, "/v1/rules", post(rules::add_rule)),
        (Method::GET, "/v1/rules/{id}", get(rules::get_rule)),
        (Method::PUT, "/v1/rules/{id}", put(rules::put_rule)),
        (Method::DELETE, "/v1/rules/{id}", delete(rules::delete_rule)),
        (Method::POST, "/v1/explain", post(explain::explain)),
        (Method::GET, "/metrics", get(metrics::metrics)),
        (Method::GET, "/healthz", get(health::healthz)),
    ]
}

/// The routes served (method, path). `GET` routes also answer `HEAD`.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The application: every route, JSON 404/405 fallbacks, and a panic catcher that answers 500
/// instead of dropping the connection.
pub fn router(state: ApiState) -> Router {
    let mut r = Router::new();
    for (_, path, handler) in table() {
        r = r.route(path, handler);
    }
    r.fallback(|uri: Uri| async move { ApiError::NoRoute(uri.path().to_string()) })
        .method_not_allowed_fallback(|m: Method| async move {
            ApiError::MethodNotAllowed(m.to_string())
        })
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
}

/// A panicking handler answers 500 with the usual error JSON (the connection survives).
fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    ApiError::Internal(format!("the handler panicked: {what}")).into_response()
}

// === request helpers ===

/// The `If-Match` header, if any.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::BadRequest("If-Match is not visible ASCII".into()))
        })
        .transpose()
}

/// Read a JSON request body: `Content-Type: application/json` (415), at most
/// `[api] max_body_bytes` (413, checked against `Content-Length` before reading and while
/// reading), not empty and syntactically valid JSON (400). Its meaning is checked later.
async fn json_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match ct.as_deref() {
        Some(ct) if is_json(ct) => {}
        Some(ct) => return Err(ApiError::UnsupportedMediaType(format!("{ct:?}"))),
        None => return Err(ApiError::UnsupportedMediaType("no Content-Type".into())),
    }
    let limit = state.config().file.api.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::TooLarge { limit }
            } else {
                ApiError::Body(e.to_string())
            }
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the body is empty: a JSON document is expected".into(),
        ));
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        return Err(ApiError::BadRequest(format!("malformed JSON: {e}")));
    }
    Ok(bytes)
}

/// `application/json`, with or without parameters, any case.
fn is_json(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// A JSON response with the table's `ETag`.
fn json_response(status: StatusCode, body: Vec<u8>, etag: &str) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// The response header that says a committed change could not update the nft table.
pub const WARNING_HEADER: &str = "l7mark-warning";

/// Add [`WARNING_HEADER`] when nft refused the table for a new default mark.
fn with_firewall_warning(mut resp: Response, sync: &FirewallSync) -> Response {
    if let FirewallSync::Failed(why) = sync {
        let text: String =
            format!("rules committed, but the nft table still has the old default mark: {why}")
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        ' '
                    }
                })
                .collect();
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().insert(WARNING_HEADER, v);
        }
    }
    resp
}

// === server ===

/// Errors starting the API.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {what}")]
    Bind {
        /// The address.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime or the thread could not be created.
    #[error("cannot start the API thread")]
    Start(#[source] std::io::Error),
    /// The token could not be loaded.
    #[error("cannot load the API token")]
    Auth(#[from] auth::AuthError),
}

/// A bound (not yet serving) listen socket. Binding early lets start-up fail on a taken port
/// before any queue or nft rule exists.
#[derive(Debug)]
pub enum BoundListener {
    /// TCP.
    Tcp(std::net::TcpListener),
    /// Unix socket, with its path (removed again at stop).
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

impl BoundListener {
    /// Bind `listen`. A unix socket left over from an earlier run is replaced; the new one is
    /// made mode 0600 (owner only): whoever can connect may change the rules when no token is
    /// configured (see [`auth`]).
    pub fn bind(listen: &ApiListen) -> Result<BoundListener, ServeError> {
        let bind_err = |what: String| move |source| ServeError::Bind { what, source };
        match listen {
            ApiListen::Tcp(addr) => {
                let l = std::net::TcpListener::bind(addr).map_err(bind_err(addr.to_string()))?;
                l.set_nonblocking(true)
                    .map_err(bind_err(addr.to_string()))?;
                Ok(BoundListener::Tcp(l))
            }
            ApiListen::Unix(path) => {
                let what = format!("unix:{}", path.display());
                use std::os::unix::fs::FileTypeExt as _;
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                    std::fs::remove_file(path).map_err(bind_err(what.clone()))?;
                }
                let l =
                    std::os::unix::net::UnixListener::bind(path).map_err(bind_err(what.clone()))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(bind_err(what.clone()))?;
                l.set_nonblocking(true).map_err(bind_err(what))?;
                Ok(BoundListener::Unix(l, path.clone()))
            }
        }
    }

    /// The TCP address actually bound (tests bind port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            BoundListener::Tcp(l) => l.local_addr().ok(),
            BoundListener::Unix(..) => None,
        }
    }
}

/// The running API: its thread and the way to stop it.
#[derive(Debug)]
pub struct ApiServer {
    thread: Option<thread::JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
    unix_path: Option<PathBuf>,
}

impl ApiServer {
    /// Serve `router(state)` on `listener` from a new `l7mark-api` thread.
    pub fn start(listener: BoundListener, state: ApiState) -> Result<ApiServer, ServeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("l7mark-api-blocking")
            .build()
            .map_err(ServeError::Start)?;
        let (tx, rx) = oneshot::channel();
        let unix_path = match &listener {
            BoundListener::Unix(_, p) => Some(p.clone()),
            BoundListener::Tcp(_) => None,
        };
        let app = router(state);
        let thread = thread::Builder::new()
            .name("l7mark-api".into())
            .spawn(move || {
                rt.block_on(serve(listener, app, rx));
                // Blocking tasks (a change being written) get a moment to finish.
                rt.shutdown_timeout(DRAIN);
            })
            .map_err(ServeError::Start)?;
        Ok(ApiServer {
            thread: Some(thread),
            stop: Some(tx),
            unix_path,
        })
    }

    /// Stop accepting, let in-flight requests finish (at most a few seconds), join the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the API thread panicked");
            }
        }
        if let Some(p) = self.unix_path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(listener: BoundListener, app: Router, stop: oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (mut graceful, mut deadline) = (rx.clone(), rx);
    let signal = async move {
        // A dropped sender means the daemon is going away too.
        let _ = stop.await;
        let _ = tx.send(true);
        std::future::pending::<()>().await;
    };
    let graceful = async move {
        let _ = graceful.wait_for(|s| *s).await;
    };
    let deadline = async move {
        let _ = deadline.wait_for(|s| *s).await;
        tokio::time::sleep(DRAIN).await;
    };
    let served = async move {
        match listener {
            BoundListener::Tcp(l) => match tokio::net::TcpListener::from_std(l) {
                Ok(l) => {
                    tracing::info!(addr = ?l.local_addr().ok(), "API listening");
                    axum::serve(l, app).with_graceful_shutdown(graceful).await
                }
                Err(e) => Err(e),
            },
            BoundListener::Unix(l, path) => match tokio::net::UnixListener::from_std(l) {
                Ok(l) => {
                    tracing::info!(path = %path.display(), "API listening");
                    axum::serve(l, app).with_graceful_shutdown(graceful).await
                }
                Err(e) => Err(e),
            },
        }
    };
    tokio::select! {
        r = served => if let Err(e) = r {
            tracing::error!(error = %e, "the API server failed");
        },
        () = deadline => tracing::warn!("API requests still running after the drain time; closing"),
        () = signal => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tower::ServiceExt as _;

    async fn boom() -> &'static str {
        panic!("kaboom")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_json() {
        let app: Router = Router::new()
            .route("/boom", get(boom))
            .layer(CatchPanicLayer::custom(panic_response));
        let resp = app
            .oneshot(
                axum::http::Request::get("/boom")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(j["code"], "internal");
        assert!(j["error"].as_str().unwrap().contains("kaboom"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json(""));
    }
}
