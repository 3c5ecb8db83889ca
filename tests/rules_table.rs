//! The compiled table: the example document end to end, matching semantics, accessors, and the
//! document round trip.
#![expect(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::collections::BTreeSet;
use std::sync::Arc;

use l7mark::rules::url::{canonical_http_url, split_icp_url};
use l7mark::rules::{Decision, Proto, RulesDoc, Subject, Table, ValidateOptions};

const EXAMPLE: &str = r#"{ "default_mark": 100,
  "rules": [
    {"id": "img",  "host": "static.example.com", "path_prefix": "/img/", "mark": 110},
    {"id": "org",  "host": "*.example.org", "mark": 111},
    {"id": "html", "path_glob": "*.html", "mark": 112},
    {"id": "tls",  "sni": "secure.example.com", "mark": 113},
    {"id": "cache","icp": true, "url_hash": {"marks": [120, 121, 122]}},
    {"id": "cdn",  "host": "cdn.example.net", "url_hash": {"marks": [120, 121, 122]}} ] }"#;

fn table(json: &str) -> Table {
    Table::from_json(json.as_bytes(), &ValidateOptions::default()).unwrap()
}

fn http(t: &Table, host: Option<&str>, method: &str, path: &str) -> Decision {
    let url = host.map(|h| canonical_http_url(h, None, path));
    let d = t.decide(&Subject::http(
        host,
        Some(method),
        Some(path),
        url.as_deref(),
    ));
    assert_eq!(
        d,
        t.decide_linear(&Subject::http(
            host,
            Some(method),
            Some(path),
            url.as_deref()
        ))
    );
    d
}

fn rule(t: &Table, d: Decision) -> Option<&str> {
    d.rule.map(|i| t.rule_ids()[i].as_str())
}

#[test]
fn example_document_decides_as_documented() {
    let t = table(EXAMPLE);
    let cases: &[(Option<&str>, &str, Option<&str>, u32)] = &[
        (
            Some("static.example.com"),
            "/img/logo.png",
            Some("img"),
            110,
        ),
        (
            Some("STATIC.Example.COM:80"),
            "/img/a?x=1",
            Some("img"),
            110,
        ),
        (Some("static.example.com"), "/css/site.css", None, 100),
        (Some("static.example.com"), "/index.html", Some("html"), 112),
        (Some("www.example.org"), "/index.html", Some("org"), 111),
        (Some("a.b.example.org."), "/", Some("org"), 111),
        (Some("example.org"), "/", None, 100),
        (Some("example.org"), "/a/b.html?x=.png", Some("html"), 112),
        (Some("example.org"), "/a/b.html.bak", None, 100),
        (None, "/page.html", Some("html"), 112),
        (Some("secure.example.com"), "/", None, 100),
    ];
    for &(host, path, want_rule, want_mark) in cases {
        let d = http(&t, host, "GET", path);
        assert_eq!(
            (rule(&t, d), d.mark),
            (want_rule, want_mark),
            "{host:?} {path}"
        );
    }
    // cdn: url_hash over 120..=122.
    let d = http(&t, Some("cdn.example.net"), "GET", "/a/b.js");
    assert_eq!(rule(&t, d), Some("cdn"));
    assert!((120..=122).contains(&d.mark));

    // TLS: only sni rules.
    let d = t.decide(&Subject::tls(Some("secure.example.com")));
    assert_eq!((rule(&t, d), d.mark), (Some("tls"), 113));
    let d = t.decide(&Subject::tls(Some("Secure.Example.Com.")));
    assert_eq!((rule(&t, d), d.mark), (Some("tls"), 113));
    let d = t.decide(&Subject::tls(Some("static.example.com")));
    assert_eq!((rule(&t, d), d.mark), (None, 100));
    let d = t.decide(&Subject::tls(None));
    assert_eq!((rule(&t, d), d.mark), (None, 100));

    // ICP: only icp rules, whatever the host.
    for url in [
        "http://static.example.com/img/x.png",
        "http://cdn.example.net/a/b.js",
    ] {
        let parts = split_icp_url(url).unwrap();
        let d = t.decide(&Subject::icp(&parts));
        assert_eq!(rule(&t, d), Some("cache"), "{url}");
        assert!((120..=122).contains(&d.mark));
    }
    // The same URL lands on the same cache via HTTP (rule cdn) and ICP (rule cache).
    for i in 0..100 {
        let path = format!("/a/{i}.js");
        let h = http(&t, Some("cdn.example.net"), "GET", &path);
        let parts = split_icp_url(&format!("http://cdn.example.net{path}")).unwrap();
        assert_eq!(t.decide(&Subject::icp(&parts)).mark, h.mark);
    }
}

#[test]
fn accessors() {
    let t = table(EXAMPLE);
    assert_eq!(t.rule_ids(), ["img", "org", "html", "tls", "cache", "cdn"]);
    assert_eq!(t.len(), 6);
    assert!(!t.is_empty());
    assert_eq!(t.default_mark(), 100);
    assert_eq!(
        t.marks_used(),
        BTreeSet::from([100, 110, 111, 112, 113, 120, 121, 122])
    );
    assert_eq!(t.doc(), &RulesDoc::from_json(EXAMPLE.as_bytes()).unwrap());
    let empty = table(r#"{"default_mark": 7}"#);
    assert!(empty.is_empty());
    assert_eq!(empty.marks_used(), BTreeSet::from([7]));
    assert_eq!(
        empty.decide(&Subject::http(Some("x"), Some("GET"), Some("/"), None)),
        Decision {
            rule: None,
            mark: 7
        }
    );
}

#[test]
fn round_trip_keeps_fields_and_order() {
    let doc = RulesDoc::from_json(EXAMPLE.as_bytes()).unwrap();
    let pretty = doc.to_json_pretty();
    assert_eq!(RulesDoc::from_json(pretty.as_bytes()).unwrap(), doc);
    // Same field names, in the documented order, absent fields left out.
    let compact: String = pretty.split_whitespace().collect();
    assert!(compact.starts_with(r#"{"default_mark":100,"rules":[{"id":"img","host":"static.example.com","path_prefix":"/img/","mark":110}"#), "{compact}");
    assert!(compact.contains(r#"{"id":"cache","icp":true,"url_hash":{"marks":[120,121,122]}}"#));
    let full = r#"{"default_mark": 1, "rules": [{"id": "a", "icp": false, "host": "h",
        "method": "GET", "path_prefix": "/p", "path_exact": "/p/x", "path_glob": "/p/*",
        "path_regex": "x$", "url_hash": {"marks": [2, 3], "members": ["m2", "m3"],
        "weights": [1, 2]}}]}"#;
    let doc = RulesDoc::from_json(full.as_bytes()).unwrap();
    let again = RulesDoc::from_json(doc.to_json_pretty().as_bytes()).unwrap();
    assert_eq!(again, doc);
    let v: serde_json::Value = serde_json::from_str(&doc.to_json_pretty()).unwrap();
    let keys: Vec<&str> = v["rules"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // serde_json's Map is sorted unless preserve_order; compare as sets and check the text order.
    assert_eq!(keys.len(), 9);
    let text = doc.to_json_pretty();
    let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    let order = [
        "id",
        "icp",
        "host",
        "method",
        "path_prefix",
        "path_exact",
        "path_glob",
        "path_regex",
        "url_hash",
        "marks",
        "members",
        "weights",
    ];
    assert!(order.windows(2).all(|w| pos(w[0]) < pos(w[1])), "{text}");
    // Strict serde on the typed structs too.
    assert!(serde_json::from_str::<RulesDoc>(r#"{"default_mark": 1, "x": 2}"#).is_err());
    assert!(
        serde_json::from_str::<RulesDoc>(
            r#"{"default_mark": 1, "rules": [{"id": "a", "mark": 1, "hots": "x"}]}"#
        )
        .is_err()
    );
}

#[test]
fn first_match_in_document_order_across_buckets() {
    let t = table(
        r#"{"default_mark": 1, "rules": [
        {"id": "glob", "path_glob": "/a/*", "mark": 10},
        {"id": "exact", "host": "h.example", "mark": 11},
        {"id": "suffix", "host": "*.example", "path_prefix": "/b", "mark": 12},
        {"id": "prefix", "path_prefix": "/b/c", "mark": 13},
        {"id": "pexact", "path_exact": "/b/c/d", "mark": 14},
        {"id": "method", "method": "DELETE", "mark": 15},
        {"id": "regex", "path_regex": "[0-9]{3}", "mark": 16}
    ]}"#,
    );
    let cases = [
        ("h.example", "GET", "/a/x", "glob"),
        ("h.example", "GET", "/b/c/d", "exact"),
        ("x.h.example", "GET", "/b/c/d", "suffix"),
        ("other", "GET", "/b/c/d", "prefix"),
        ("other", "GET", "/b/c", "prefix"),
        ("other", "GET", "/b/", "none"),
        ("other", "DELETE", "/x", "method"),
        ("other", "delete", "/x", "none"),
        ("other", "GET", "/x/123", "regex"),
        ("other", "GET", "/x/12?q=123", "none"),
    ];
    for (host, method, path, want) in cases {
        let d = http(&t, Some(host), method, path);
        assert_eq!(
            rule(&t, d).unwrap_or("none"),
            want,
            "{host} {method} {path}"
        );
    }
    let t = table(
        r#"{"default_mark": 1, "rules": [
        {"id": "pexact", "path_exact": "/b/c/d", "mark": 14},
        {"id": "exact", "host": "h.example", "mark": 11}
    ]}"#,
    );
    assert_eq!(
        rule(&t, http(&t, Some("h.example"), "GET", "/b/c/d")),
        Some("pexact")
    );
    assert_eq!(
        rule(&t, http(&t, Some("h.example"), "GET", "/b/c")),
        Some("exact")
    );
}

#[test]
fn protocols_do_not_mix() {
    let t = table(
        r#"{"default_mark": 1, "rules": [
        {"id": "icp-h", "icp": true, "host": "x.example", "path_prefix": "/p", "mark": 10},
        {"id": "sni", "sni": "x.example", "mark": 11},
        {"id": "http", "host": "x.example", "mark": 12}
    ]}"#,
    );
    assert_eq!(
        rule(&t, http(&t, Some("x.example"), "GET", "/p/q")),
        Some("http")
    );
    let d = t.decide(&Subject::tls(Some("x.example")));
    assert_eq!(rule(&t, d), Some("sni"));
    let p = split_icp_url("http://x.example/p/q").unwrap();
    assert_eq!(rule(&t, t.decide(&Subject::icp(&p))), Some("icp-h"));
    let p = split_icp_url("http://x.example/other").unwrap();
    assert_eq!(rule(&t, t.decide(&Subject::icp(&p))), None);
    // Fields a protocol does not use are ignored in the subject.
    let s = Subject {
        proto: Proto::Tls,
        host: Some("x.example"),
        method: Some("GET"),
        path: Some("/p"),
        sni: None,
        url: None,
    };
    assert_eq!(t.decide(&s).rule, None);
}

#[test]
fn subject_without_fields() {
    let t = table(
        r#"{"default_mark": 1, "rules": [
        {"id": "h", "host": "x", "mark": 10},
        {"id": "m", "method": "GET", "mark": 11},
        {"id": "p", "path_prefix": "/", "mark": 12}
    ]}"#,
    );
    let s = Subject::http(None, None, None, None);
    assert_eq!(
        t.decide(&s),
        Decision {
            rule: None,
            mark: 1
        }
    );
    let s = Subject::http(None, None, Some("/"), None);
    assert_eq!(t.decide(&s).rule, Some(2));
    let long = "x".repeat(400);
    let s = Subject::http(Some(&long), Some("GET"), None, None);
    assert_eq!(t.decide(&s).rule, Some(1));
}

#[test]
fn tables_share_across_threads() {
    let t = Arc::new(table(EXAMPLE));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                t.decide(&Subject::http(
                    Some("www.example.org"),
                    Some("GET"),
                    Some("/"),
                    None,
                ))
                .mark
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 111);
    }
}
