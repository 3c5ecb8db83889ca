//! The REST API without a socket: `router(state)` driven with tower's `oneshot`, a real
//! `RuleStore` on a temp file, a fake firewall and fake kernel state. Plus two real-socket tests
//! (TCP port 0 and a unix socket) for the server thread, and the OpenAPI spec check.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use l7mark::api::auth::{Auth, Token};
use l7mark::api::health::Probe;
use l7mark::api::{ApiServer, ApiState, BoundListener, router, routes};
use l7mark::config::{ApiListen, Config};
use l7mark::control::store::RuleStore;
use l7mark::control::{Controller, Firewall};
use l7mark::firewall::{FirewallError, Ruleset};
use l7mark::metrics::Metrics;
use l7mark::rules::{RulesDoc, Table, ValidateOptions};

const TOKEN: &str = "s3cret-token-0123456789";
const MAX_BODY: usize = 64 * 1024;

const RULES: &str = r#"{"default_mark": 100, "rules": [
  {"id": "img", "host": "static.example.com", "path_prefix": "/img/", "mark": 110},
  {"id": "org", "host": "*.example.org", "mark": 111},
  {"id": "cache", "icp": true, "url_hash": {"marks": [120, 121]}}
]}"#;

// --- fixtures ---

fn tempdir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "l7mark-api-router-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Default)]
struct FakeFw {
    applies: Mutex<Vec<String>>,
}

impl Firewall for FakeFw {
    fn apply(&self, rules: &Ruleset) -> Result<(), FirewallError> {
        self.applies.lock().unwrap().push(rules.render());
        Ok(())
    }
    fn present(&self, _: &str) -> Result<bool, FirewallError> {
        Ok(true)
    }
}

/// Kernel state as text: every queue bound, an fwmark service per mark, the VIPs held.
struct FakeProbe {
    ip_vs: Mutex<String>,
}

impl FakeProbe {
    fn good() -> FakeProbe {
        let mut ip_vs = String::from(
            "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n",
        );
        for m in [100u32, 110, 111] {
            ip_vs.push_str(&format!(
                "FWM  {m:08X} sh\n  -> 0A000002:0000      Masq    1      0          0\n"
            ));
        }
        for m in [120u32, 121] {
            ip_vs.push_str(&format!(
                "FWM  {m:08X} sh ops\n  -> 0A000003:0000      Route   1      0          0\n"
            ));
        }
        FakeProbe {
            ip_vs: Mutex::new(ip_vs),
        }
    }
}

impl Probe for FakeProbe {
    fn nfnetlink_queue(&self) -> std::io::Result<String> {
        Ok((4000..4006)
            .map(|q| {
                format!(
                    "{q:5} {:6} {:5} 2 65531 {:5} {:5} {:8}  1\n",
                    4242, 0, 0, 0, 7
                )
            })
            .collect())
    }
    fn ip_vs(&self) -> std::io::Result<String> {
        Ok(self.ip_vs.lock().unwrap().clone())
    }
    fn addresses(&self) -> BoxFuture<'static, Result<Vec<IpAddr>, String>> {
        Box::pin(async {
            Ok(vec![
                "10.0.0.100".parse().unwrap(),
                "10.0.0.101".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
            ])
        })
    }
}

struct Env {
    dir: PathBuf,
    rules: PathBuf,
    cfg_path: PathBuf,
    cfg: Arc<Config>,
    controller: Arc<Controller>,
    fw: Arc<FakeFw>,
    probe: Arc<FakeProbe>,
}

fn config_text(rules: &Path, manage: bool) -> String {
    format!(
        r#"rules_file = {rules:?}
[queues]
base = 4000
workers = 1
[[service]]
name = "web"
vip = "10.0.0.100"
port = 80
proto = "http"
[[service]]
name = "icp"
vip = "10.0.0.101"
port = 3130
proto = "icp"
forwarding = "dr"
[api]
max_body_bytes = {MAX_BODY}
[nft]
manage = {manage}
"#,
        rules = rules.display().to_string()
    )
}

fn env_with(rules_json: &str, manage: bool) -> Env {
    let dir = tempdir();
    let rules = dir.join("rules.json");
    std::fs::write(&rules, rules_json).unwrap();
    let text = config_text(&rules, manage);
    let cfg_path = dir.join("l7mark.toml");
    std::fs::write(&cfg_path, &text).unwrap();
    let cfg = Arc::new(Config::from_toml(&text).unwrap());
    let store = RuleStore::open(
        &rules,
        ValidateOptions {
            mark_range: Some(cfg.mark_range.clone()),
        },
    )
    .unwrap();
    let fw = Arc::new(FakeFw::default());
    let controller = Arc::new(Controller::new(
        Arc::new(store),
        Arc::new(Metrics::default()),
        Arc::clone(&cfg),
        fw.clone(),
    ));
    controller.install_firewall().unwrap();
    Env {
        dir,
        rules,
        cfg_path,
        cfg,
        controller,
        fw,
        probe: Arc::new(FakeProbe::good()),
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Keep the files of a failed test for a look.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn env() -> Env {
    env_with(RULES, true)
}

impl Env {
    fn state(&self, auth: Auth) -> ApiState {
        let gauges = l7mark::engine::binder_gauges(&self.cfg);
        ApiState::new(
            Arc::clone(&self.controller),
            gauges,
            auth,
            self.probe.clone(),
        )
    }

    /// Loopback, no token: everything open.
    fn app(&self) -> Router {
        router(self.state(Auth::new(None, true)))
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn etag(&self) -> String {
        self.headers[header::ETAG].to_str().unwrap().to_string()
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

fn req(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path)
}

fn json_req(method: Method, path: &str, body: impl Into<Body>) -> Request<Body> {
    req(method, path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

async fn get(app: &Router, path: &str) -> Resp {
    send(app, req(Method::GET, path).body(Body::empty()).unwrap()).await
}

fn doc_with_default(mark: u32) -> String {
    json!({"default_mark": mark, "rules": [{"id": "a", "host": "a.example", "mark": 110}]})
        .to_string()
}

// --- rules ---

#[tokio::test]
async fn get_rules_returns_the_document_and_its_etag() {
    let e = env();
    let r = get(&e.app(), "/v1/rules").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(r.etag(), e.controller.snapshot().etag());
    let doc = RulesDoc::from_json(&r.body).unwrap();
    assert_eq!(&doc, e.controller.snapshot().table.doc());
    assert_eq!(doc.rules.len(), 3);
}

#[tokio::test]
async fn put_replaces_atomically_with_if_match_and_persists() {
    let e = env();
    let app = e.app();
    let tag = get(&app, "/v1/rules").await.etag();
    let new = doc_with_default(105);
    let mut put = json_req(Method::PUT, "/v1/rules", new.clone());
    put.headers_mut()
        .insert(header::IF_MATCH, tag.parse().unwrap());
    let r = send(&app, put).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_ne!(r.etag(), tag);
    assert_eq!(r.etag(), e.controller.snapshot().etag());
    assert_eq!(r.json()["default_mark"], 105);

    // The old tag is stale now: 412, nothing changes, the body and ETag name the current one.
    let mut again = json_req(Method::PUT, "/v1/rules", doc_with_default(106));
    again
        .headers_mut()
        .insert(header::IF_MATCH, tag.parse().unwrap());
    let stale = send(&app, again).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.code(), "stale_etag");
    assert_eq!(stale.json()["current_etag"], r.etag());
    assert_eq!(stale.etag(), r.etag());
    assert_eq!(e.controller.snapshot().table.default_mark(), 105);

    // A restart (a new store on the same file) comes back with the last accepted table.
    let reopened = RuleStore::open(&e.rules, ValidateOptions::default()).unwrap();
    let expected: RulesDoc = RulesDoc::from_json(new.as_bytes()).unwrap();
    assert_eq!(reopened.snapshot().table.doc(), &expected);
    // Same document, same digest: the ETag's digest part survives the restart.
    assert_eq!(reopened.snapshot().digest, e.controller.snapshot().digest);

    // The default mark changed: the nft table was re-rendered with it.
    let applies = e.fw.applies.lock().unwrap();
    assert_eq!(applies.len(), 2, "install + one re-apply");
    assert!(applies[1].contains("105"));
}

#[tokio::test]
async fn concurrent_puts_with_the_same_etag_exactly_one_wins() {
    let e = env();
    let app = e.app();
    let tag = get(&app, "/v1/rules").await.etag();
    let n = 12;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let app = app.clone();
            let tag = tag.clone();
            tokio::spawn(async move {
                let mut r = json_req(Method::PUT, "/v1/rules", doc_with_default(200 + i));
                r.headers_mut()
                    .insert(header::IF_MATCH, tag.parse().unwrap());
                send(&app, r).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().status);
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let stale = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((ok, stale), (1, n as usize - 1), "{statuses:?}");
    assert_eq!(e.controller.snapshot().version, 2);
}

#[tokio::test]
async fn add_get_put_delete_one_rule() {
    let e = env();
    let app = e.app();
    let r = send(
        &app,
        json_req(
            Method::POST,
            "/v1/rules",
            r#"{"id": "html", "path_glob": "*.html", "mark": 112}"#,
        ),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers[header::LOCATION], "/v1/rules/html");
    assert_eq!(r.json()["mark"], 112);
    assert_eq!(r.etag(), e.controller.snapshot().etag());
    assert_eq!(
        e.controller.snapshot().table.rule_ids(),
        ["img", "org", "cache", "html"]
    );

    let dup = send(
        &app,
        json_req(
            Method::POST,
            "/v1/rules",
            r#"{"id": "img", "host": "x.example", "mark": 110}"#,
        ),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.code(), "duplicate_rule");

    let one = get(&app, "/v1/rules/org").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(
        one.json(),
        json!({"id": "org", "host": "*.example.org", "mark": 111})
    );
    assert_eq!(get(&app, "/v1/rules/nope").await.code(), "no_such_rule");
    assert_eq!(
        get(&app, "/v1/rules/nope").await.status,
        StatusCode::NOT_FOUND
    );

    // PUT without id takes the path's; the rule keeps its position (precedence).
    let put = send(
        &app,
        json_req(
            Method::PUT,
            "/v1/rules/org",
            r#"{"host": "*.example.net", "mark": 113}"#,
        ),
    )
    .await;
    assert_eq!(
        put.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&put.body)
    );
    assert_eq!(put.json()["id"], "org");
    assert_eq!(
        e.controller.snapshot().table.rule_ids(),
        ["img", "org", "cache", "html"]
    );
    // With the same id: fine. With another: 422 naming the field.
    let same = send(
        &app,
        json_req(
            Method::PUT,
            "/v1/rules/org",
            r#"{"id": "org", "host": "*.example.net", "mark": 114}"#,
        ),
    )
    .await;
    assert_eq!(same.status, StatusCode::OK);
    let other = send(
        &app,
        json_req(
            Method::PUT,
            "/v1/rules/org",
            r#"{"id": "xyz", "host": "*.example.net", "mark": 114}"#,
        ),
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.json()["problems"][0]["field"], "id");
    assert_eq!(other.json()["problems"][0]["rule"], "org");
    let missing = send(
        &app,
        json_req(
            Method::PUT,
            "/v1/rules/nope",
            r#"{"host": "a.example", "mark": 114}"#,
        ),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let del = send(
        &app,
        req(Method::DELETE, "/v1/rules/img")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert!(del.body.is_empty());
    assert_eq!(del.etag(), e.controller.snapshot().etag());
    let del2 = send(
        &app,
        req(Method::DELETE, "/v1/rules/img")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(del2.status, StatusCode::NOT_FOUND);
    assert_eq!(
        e.controller.snapshot().table.rule_ids(),
        ["org", "cache", "html"]
    );
    // Each change went to disk.
    let on_disk = RulesDoc::from_json(&std::fs::read(&e.rules).unwrap()).unwrap();
    assert_eq!(&on_disk, e.controller.snapshot().table.doc());
}

/// name, method, path, content type, body, status, code, message fragment
type BadBody = (
    &'static str,
    Method,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
    &'static str,
);

#[tokio::test]
async fn every_kind_of_bad_body_is_refused_with_a_clear_error_and_changes_nothing() {
    let e = env();
    let app = e.app();
    let before = std::fs::read(&e.rules).unwrap();
    let version = e.controller.snapshot().version;
    let cases: Vec<BadBody> = vec![
        (
            "empty",
            Method::PUT,
            "/v1/rules",
            Some("application/json"),
            b"".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "empty",
        ),
        (
            "blank",
            Method::POST,
            "/v1/rules",
            Some("application/json"),
            b"  \n".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "empty",
        ),
        (
            "not json",
            Method::PUT,
            "/v1/rules",
            Some("application/json"),
            b"default_mark=1".to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "malformed JSON",
        ),
        (
            "truncated json",
            Method::POST,
            "/v1/rules",
            Some("application/json"),
            br#"{"id": "x", "mark": 1"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            "malformed JSON",
        ),
        (
            "binary",
            Method::PUT,
            "/v1/rules/org",
            Some("application/json"),
            vec![0xff, 0xfe, 0, 1],
            StatusCode::BAD_REQUEST,
            "bad_request",
            "malformed JSON",
        ),
        (
            "wrong types",
            Method::PUT,
            "/v1/rules",
            Some("application/json"),
            br#"{"default_mark": "100", "rules": {}}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            "default_mark",
        ),
        (
            "wrong type in rule",
            Method::POST,
            "/v1/rules",
            Some("application/json"),
            br#"{"id": "t", "host": 7, "mark": 110}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            "rule t: host",
        ),
        (
            "unknown field",
            Method::PUT,
            "/v1/rules",
            Some("application/json"),
            br#"{"default_mark": 100, "extra": 1}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            "extra",
        ),
        (
            "unknown rule field",
            Method::POST,
            "/v1/rules",
            Some("application/json"),
            br#"{"id": "u", "hots": "a.example", "mark": 110}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            "hots",
        ),
        (
            "not an object",
            Method::POST,
            "/v1/rules",
            Some("application/json"),
            b"[1,2]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            "",
        ),
        (
            "mark out of range",
            Method::POST,
            "/v1/rules",
            Some("application/json"),
            br#"{"id": "big", "host": "a.example", "mark": 5000}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            "rule big: mark",
        ),
        (
            "duplicate key",
            Method::PUT,
            "/v1/rules/org",
            Some("application/json"),
            br#"{"host": "a.example", "mark": 110, "mark": 111}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rules",
            "mark",
        ),
        (
            "text/plain",
            Method::PUT,
            "/v1/rules",
            Some("text/plain"),
            RULES.as_bytes().to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "form",
            Method::POST,
            "/v1/rules",
            Some("application/x-www-form-urlencoded"),
            b"id=x".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "",
        ),
        (
            "no content type",
            Method::PUT,
            "/v1/rules",
            None,
            RULES.as_bytes().to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "no Content-Type",
        ),
        (
            "huge",
            Method::PUT,
            "/v1/rules",
            Some("application/json"),
            vec![b' '; MAX_BODY + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "max_body_bytes",
        ),
    ];
    for (name, method, path, ct, body, status, code, fragment) in cases {
        let mut b = req(method, path);
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let r = send(&app, b.body(Body::from(body)).unwrap()).await;
        assert_eq!(
            r.status,
            status,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let j = r.json();
        assert_eq!(j["code"], code, "{name}");
        let text = j.to_string();
        assert!(
            text.contains(fragment),
            "{name}: {fragment:?} not in {text}"
        );
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/json",
            "{name}"
        );
    }
    // A huge body with Content-Length is refused before it is read.
    let r = send(
        &app,
        req(Method::PUT, "/v1/rules")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, (MAX_BODY * 100).to_string())
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(std::fs::read(&e.rules).unwrap(), before);
    assert_eq!(e.controller.snapshot().version, version);
}

#[tokio::test]
async fn invalid_rules_list_every_problem_exactly_like_l7mark_check() {
    let e = env();
    let bad = r#"{"default_mark": 0, "rules": [
        {"id": "a", "host": "", "mark": 110},
        {"id": "b", "host": "x.example", "path_prefix": "nope", "mark": 2000},
        {"id": "a", "sni": "s.example", "host": "h.example", "mark": 111},
        {"host": "y.example", "bogus": true}
    ]}"#;
    let r = send(&e.app(), json_req(Method::PUT, "/v1/rules", bad)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let j = r.json();
    let texts: Vec<String> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect();
    assert!(texts.len() >= 6, "{texts:#?}");
    for p in j["problems"].as_array().unwrap() {
        let expect = match p["rule"].as_str() {
            Some(rule) => format!(
                "rule {rule}: {}: {}",
                p["field"].as_str().unwrap(),
                p["why"].as_str().unwrap()
            ),
            None => format!(
                "{}: {}",
                p["field"].as_str().unwrap(),
                p["why"].as_str().unwrap()
            ),
        };
        assert_eq!(p["text"], expect);
    }
    // `l7mark check` with the same config prints the same lines.
    let file = e.dir.join("bad.json");
    std::fs::write(&file, bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_l7mark"))
        .args(["check", "--rules"])
        .arg(&file)
        .arg("--config")
        .arg(&e.cfg_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let check_lines: Vec<String> = String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(check_lines, texts);
    // And both are the validator's own list.
    let direct = Table::from_json(
        bad.as_bytes(),
        &ValidateOptions {
            mark_range: Some(e.cfg.mark_range.clone()),
        },
    )
    .unwrap_err();
    assert_eq!(direct.to_string().lines().collect::<Vec<_>>(), texts);
}

#[tokio::test]
async fn garbage_never_panics_or_500s() {
    let e = env();
    let app = e.app();
    // A deterministic xorshift: bytes of every kind, JSON-ish fragments, deep nesting.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let pieces: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"\"id\"",
        b"\"mark\"",
        b"1",
        b"-1",
        b"1e999",
        b"null",
        b"true",
        b"\"rules\"",
        b"\"default_mark\"",
        b"\\u0000",
        b"\xff",
        b" ",
        b"\"url_hash\"",
        b"{\"marks\":[",
        b"\"path_regex\":\"(\"",
        b"\"host\":\"*.\"",
    ];
    let mut bodies: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let n = usize::try_from(next() % 40).unwrap();
            (0..n)
                .flat_map(|_| {
                    let i = usize::try_from(next() % pieces.len() as u64).unwrap();
                    pieces[i].to_vec()
                })
                .collect()
        })
        .collect();
    bodies.push([b"[".repeat(10_000), b"]".repeat(10_000)].concat());
    bodies.push(
        format!(
            "{{\"default_mark\":100,\"rules\":[{}]}}",
            "{\"id\":\"x\",\"mark\":1},".repeat(50) + "{}"
        )
        .into_bytes(),
    );
    for (i, body) in bodies.into_iter().enumerate() {
        for (m, path) in [
            (Method::PUT, "/v1/rules"),
            (Method::POST, "/v1/rules"),
            (Method::PUT, "/v1/rules/org"),
            (Method::POST, "/v1/explain"),
        ] {
            let r = send(&app, json_req(m.clone(), path, body.clone())).await;
            assert!(
                r.status.is_client_error() || r.status.is_success(),
                "body #{i} {m} {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            let _ = r.json();
        }
    }
}

// --- explain ---

fn explain_body(proto: &str, payload: &[u8]) -> String {
    json!({"proto": proto, "payload_base64": base64::engine::general_purpose::STANDARD.encode(payload)})
        .to_string()
}

#[tokio::test]
async fn explain_matches_l7mark_explain() {
    let e = env();
    let app = e.app();
    let payload = std::fs::read("tests/fixtures/curl_get.http").unwrap();
    let r = send(
        &app,
        json_req(Method::POST, "/v1/explain", explain_body("http", &payload)),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let expected = l7mark::classify::explain(
        l7mark::classify::PayloadProto::Http,
        &payload,
        &e.controller.snapshot().table,
    )
    .unwrap();
    assert_eq!(r.body, serde_json::to_vec(&expected).unwrap());
    assert_eq!(r.json()["rule"], "img");
    assert_eq!(r.json()["mark"], 110);

    // The CLI prints the same JSON for the same rules and payload.
    let pfile = e.dir.join("payload.http");
    std::fs::write(&pfile, &payload).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_l7mark"))
        .args(["explain", "--proto", "http", "--rules"])
        .arg(&e.rules)
        .arg("--payload")
        .arg(&pfile)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end().as_bytes(),
        &r.body[..]
    );

    let icp = std::fs::read("tests/fixtures/icp_query.bin").unwrap();
    let r = send(
        &app,
        json_req(Method::POST, "/v1/explain", explain_body("icp", &icp)),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["rule"], "cache");

    // Unpadded base64 is accepted too.
    let unpadded = json!({"proto": "http", "payload_base64":
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&payload)})
    .to_string();
    assert_eq!(
        send(&app, json_req(Method::POST, "/v1/explain", unpadded))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn explain_errors() {
    let e = env();
    let app = e.app();
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            explain_body("http", b"GET /img/a.png HTTP/1.1\r\nHost: static.exa"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "incomplete HTTP payload",
        ),
        (
            explain_body("tls", b"GET / HTTP/1.1\r\n\r\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a valid TLS payload",
        ),
        (
            explain_body("icp", &std::fs::read("tests/fixtures/icp_hit.bin").unwrap()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "only queries",
        ),
        (
            explain_body("ftp", b"x"),
            StatusCode::BAD_REQUEST,
            "unknown protocol",
        ),
        (
            r#"{"proto": "http", "payload_base64": "!!!not base64"}"#.into(),
            StatusCode::BAD_REQUEST,
            "not valid base64",
        ),
        (
            r#"{"proto": "http"}"#.into(),
            StatusCode::BAD_REQUEST,
            "payload_base64",
        ),
        (
            r#"{"proto": "http", "payload_base64": "", "x": 1}"#.into(),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            r#"{"proto": 1, "payload_base64": ""}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid type",
        ),
        ("[]".into(), StatusCode::BAD_REQUEST, "bad explain request"),
        ("{".into(), StatusCode::BAD_REQUEST, "malformed JSON"),
    ];
    for (body, status, fragment) in cases {
        let r = send(&app, json_req(Method::POST, "/v1/explain", body.clone())).await;
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            msg.contains(fragment),
            "{body}: {fragment:?} not in {msg:?}"
        );
    }
}

// --- auth ---

#[tokio::test]
async fn auth_policy() {
    let e = env();
    let bearer = format!("Bearer {TOKEN}");
    let put = |auth: Option<&str>| {
        let mut b = req(Method::PUT, "/v1/rules").header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::from(RULES)).unwrap()
    };
    let get_rules = |auth: Option<&str>| {
        let mut b = req(Method::GET, "/v1/rules");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        b.body(Body::empty()).unwrap()
    };

    // Token configured, loopback: reads open, changes need the token.
    let app = router(e.state(Auth::new(Some(Token::new(TOKEN)), true)));
    assert_eq!(send(&app, get_rules(None)).await.status, StatusCode::OK);
    let r = send(&app, put(None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"l7mark\""
    );
    assert_eq!(
        send(&app, put(Some("Bearer wrong-wrong-wrong-wrong")))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(send(&app, put(Some(&bearer))).await.status, StatusCode::OK);

    // Token configured, public address: reads need it too; metrics and health stay open.
    let app = router(e.state(Auth::new(Some(Token::new(TOKEN)), false)));
    assert_eq!(
        send(&app, get_rules(None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, get_rules(Some(&bearer))).await.status,
        StatusCode::OK
    );
    assert_eq!(get(&app, "/metrics").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);

    // No token, public address: changes refused (403), reads open.
    let app = router(e.state(Auth::new(None, false)));
    let r = send(&app, put(None)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "forbidden");
    assert_eq!(send(&app, get_rules(None)).await.status, StatusCode::OK);
    // Refused before the body is looked at: a bad body still gets 403, not 400.
    let r = send(
        &app,
        req(Method::POST, "/v1/rules")
            .body(Body::from("garbage"))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // No token, loopback: open.
    assert_eq!(send(&e.app(), put(None)).await.status, StatusCode::OK);
}

// --- routing ---

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let e = env();
    let app = e.app();
    let r = get(&app, "/v2/whatever").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "no_route");
    let r = send(
        &app,
        req(Method::PATCH, "/v1/rules").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "method_not_allowed");
    let r = send(
        &app,
        req(Method::HEAD, "/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

// --- metrics ---

#[tokio::test]
async fn metrics_declare_every_family_and_nothing_else() {
    let e = env();
    let app = e.app();
    // Some traffic so per-rule lines exist.
    e.controller.snapshot().hits[0].fetch_add(3, Ordering::Relaxed);
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(r.body).unwrap();
    let typed: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let declared: BTreeSet<String> = l7mark::api::metrics::declared().into_iter().collect();
    let missing: Vec<_> = declared.difference(&typed).collect();
    let undeclared: Vec<_> = typed.difference(&declared).collect();
    assert!(missing.is_empty(), "declared but not rendered: {missing:?}");
    assert!(
        undeclared.is_empty(),
        "rendered but not declared: {undeclared:?}"
    );
    // Every sample line belongs to a declared family and has a numeric value.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let name = l.split(['{', ' ']).next().unwrap();
        assert!(declared.contains(name), "{l}");
        let v = l.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
    }
    for needle in [
        "l7mark_rule_hits_total{rule=\"img\"} 3",
        "l7mark_rule_hits_total{rule=\"cache\"} 0",
        "l7mark_table_version 1",
        "l7mark_table_rules 3",
        "l7mark_firewall_in_sync 1",
        "l7mark_nfqueue_bound{queue=\"4000\",kind=\"datagram\",worker=\"0\"} 1",
        "l7mark_nfqueue_enqueued_total{queue=\"4005\",kind=\"done_gate\",worker=\"0\"} 7",
        "l7mark_nfqueue_undelivered_estimate 42",
        "l7mark_binder_held_syns{worker=\"0\"} 0",
        "l7mark_binder_bound_total{worker=\"0\"} 0",
        "l7mark_verdicts_total{outcome=\"marked\"} 0",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}

// --- health ---

#[tokio::test]
async fn healthz_reports_each_check() {
    let e = env();
    let app = e.app();
    let r = get(&app, "/healthz").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let j = r.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["role"], "active");
    assert_eq!(j["table"]["version"], 1);
    for c in ["queues", "nft_table", "ipvs", "vips"] {
        assert_eq!(j["checks"][c]["status"], "ok", "{c}: {j:#}");
    }

    // A rule with a mark that has no IPVS service: 503 naming it.
    let r = send(
        &app,
        json_req(
            Method::POST,
            "/v1/rules",
            r#"{"id": "new", "host": "n.example", "mark": 150}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = get(&app, "/healthz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let j = r.json();
    assert_eq!(j["status"], "fail");
    assert_eq!(j["checks"]["ipvs"]["status"], "fail");
    let problems = j["checks"]["ipvs"]["problems"].to_string();
    assert!(
        problems.contains("mark 150: no IPVS fwmark service (FWM 00000096"),
        "{problems}"
    );
    // Adding the service heals it.
    e.probe
        .ip_vs
        .lock()
        .unwrap()
        .push_str("FWM  00000096 rr\n  -> 0A000002:0000      Masq    1      0          0\n");
    assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
}

// --- OpenAPI ---

fn spec_routes() -> (BTreeSet<(String, String)>, serde_yaml_ng::Value) {
    let text = std::fs::read_to_string("docs/openapi.yaml").unwrap();
    let spec: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(
        spec["openapi"].as_str().unwrap().split('.').next(),
        Some("3")
    );
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let m = method.as_str().unwrap();
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&m) {
                out.insert((m.to_uppercase(), path.as_str().unwrap().to_string()));
            }
        }
    }
    (out, spec)
}

#[tokio::test]
async fn openapi_spec_and_router_agree() {
    let (spec, doc) = spec_routes();
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(spec, served, "docs/openapi.yaml and api::routes() differ");

    // Every spec operation answers (with a plausible request) from a real handler, not from the
    // 404/405 fallbacks.
    let e = env();
    let app = e.app();
    // DELETE last, so the rule the others address still exists.
    let mut ordered: Vec<&(String, String)> = spec.iter().collect();
    ordered.sort_by_key(|(m, _)| m == "DELETE");
    for (method, path) in ordered {
        let concrete = path.replace("{id}", "org");
        let body = match (method.as_str(), path.as_str()) {
            ("PUT", "/v1/rules") => RULES.to_string(),
            ("POST", "/v1/rules") => r#"{"id": "zz", "host": "z.example", "mark": 110}"#.into(),
            ("PUT", "/v1/rules/{id}") => r#"{"host": "z.example", "mark": 110}"#.into(),
            ("POST", "/v1/explain") => explain_body("http", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            _ => String::new(),
        };
        let r = send(&app, json_req(method.parse().unwrap(), &concrete, body)).await;
        assert!(
            r.status != StatusCode::METHOD_NOT_ALLOWED && r.status != StatusCode::NOT_FOUND,
            "{method} {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        // The status is one the spec documents for this operation.
        let op = &doc["paths"][path.as_str()][method.to_lowercase().as_str()];
        assert!(
            op["responses"][r.status.as_str()].is_mapping(),
            "{method} {path}: status {} is not in the spec",
            r.status
        );
    }
    // The machine codes listed in the spec are the ones the server uses.
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for code in [
        "no_route",
        "stale_etag",
        "invalid_rules",
        "duplicate_rule",
        "body_too_large",
    ] {
        assert!(codes.contains(code));
    }
}

// --- the real server thread ---

fn raw_http(stream: &mut dyn ReadWrite, request: &str) -> String {
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

#[test]
fn server_thread_serves_tcp_and_stops() {
    let e = env();
    let listener = BoundListener::bind(&ApiListen::Tcp("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ApiServer::start(listener, e.state(Auth::new(None, true))).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let resp = raw_http(
        &mut s,
        "GET /v1/rules HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"default_mark\": 100"));
    server.stop();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

#[test]
fn server_thread_serves_a_unix_socket() {
    use std::os::unix::fs::PermissionsExt as _;
    let e = env();
    let path = e.dir.join("api.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let listener = BoundListener::bind(&ApiListen::Unix(path.clone())).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let auth = Auth::from_config(&e.cfg.file.api, &ApiListen::Unix(path.clone())).unwrap();
    let server = ApiServer::start(listener, e.state(auth)).unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let body = r#"{"id": "u", "host": "u.example", "mark": 110}"#;
    let resp = raw_http(
        &mut s,
        &format!(
            "POST /v1/rules HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    server.stop();
    assert!(!path.exists(), "socket file left behind");
}
