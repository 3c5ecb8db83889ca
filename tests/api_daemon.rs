//! The API wired into the real daemon: it serves after start-up, SIGHUP reloads the rules file
//! through the same validation (a bad file keeps the table), and SIGTERM stops the server
//! cleanly (exit 0, port closed). Runs as root (NFQUEUE binding); nft is not touched.

#![allow(clippy::unwrap_used)]

mod common;

use nix::sys::signal::Signal;
use serde_json::Value;

const RULES: &str = r#"{"default_mark": 100, "rules": [{"id": "a", "icp": true, "mark": 110}]}"#;

fn get_rules(addr: std::net::SocketAddr) -> (Value, String) {
    let r = common::http(addr, "GET", "/v1/rules", None).unwrap();
    assert_eq!(r.status, 200);
    (
        serde_json::from_slice(&r.body).unwrap(),
        r.header("etag").unwrap().to_string(),
    )
}

fn wait_for(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sighup_reload_and_sigterm_stop_through_the_api() {
    let setup = common::Setup::new("daemon", RULES);
    let d = setup.start();
    let (doc, tag1) = get_rules(setup.addr);
    assert_eq!(doc["rules"][0]["id"], "a");

    // A conditional PUT over the wire.
    let body = r#"{"default_mark": 101, "rules": [{"id": "b", "icp": true, "mark": 111}]}"#;
    let r = common::http(
        setup.addr,
        "PUT",
        "/v1/rules",
        Some((body.as_bytes(), &[("If-Match", &tag1)])),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let r = common::http(
        setup.addr,
        "PUT",
        "/v1/rules",
        Some((body.as_bytes(), &[("If-Match", &tag1)])),
    )
    .unwrap();
    assert_eq!(r.status, 412);

    // SIGHUP picks up an edited file.
    std::fs::write(
        &setup.rules,
        r#"{"default_mark": 102, "rules": [{"id": "c", "icp": true, "mark": 112}]}"#,
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    wait_for(|| get_rules(setup.addr).0["default_mark"] == 102);

    // A bad file is refused: the table stays, the log says why.
    std::fs::write(
        &setup.rules,
        r#"{"default_mark": 0, "rules": [{"id": "c"}]}"#,
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    wait_for(|| d.log_text().contains("reload refused"));
    let (doc, _) = get_rules(setup.addr);
    assert_eq!(doc["default_mark"], 102);
    assert!(d.log_text().contains("default_mark"), "{}", d.log_text());

    // Metrics and health answer from the real kernel state.
    let m = common::http(setup.addr, "GET", "/metrics", None).unwrap();
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.body).unwrap();
    assert!(text.contains("l7mark_table_swaps_total 2"), "{text}");
    let h = common::http(setup.addr, "GET", "/healthz", None).unwrap();
    let j: Value = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(j["checks"]["queues"]["status"], "ok", "{j:#}");
    assert_eq!(j["checks"]["nft_table"]["status"], "skipped");
    // 10.255.0.1 is on no interface here: a backup, not a failure.
    assert_eq!(j["role"], "backup");
    assert_eq!(j["checks"]["vips"]["status"], "ok");

    let addr = setup.addr;
    let status = d.term();
    assert!(status.success(), "{status}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the API still listens after SIGTERM"
    );
}
