//! Property tests: the indexed lookup equals a naive in-order evaluation written here from the
//! documented semantics, and no JSON input makes validation panic.
#![expect(clippy::unwrap_used, reason = "tests fail by panicking")]

use l7mark::rules::hash::Carp;
use l7mark::rules::{
    Decision, Proto, RuleDoc, RulesDoc, Subject, Table, UrlHashDoc, ValidateOptions,
};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

// Small alphabets, so that rules and subjects collide often.
const HOSTS: &[&str] = &[
    "a.com",
    "b.com",
    "x.a.com",
    "y.x.a.com",
    "com",
    "A.com",
    "*.a.com",
    "*.com",
    "*.x.a.com",
    "*.b.com",
    "*.A.COM",
];
const PREFIXES: &[&str] = &["/", "/a", "/a/", "/a/b", "/b", "/ab"];
const EXACTS: &[&str] = &["/", "/a", "/a/b", "/b.html", "/a/b.html", "/ab"];
const GLOBS: &[&str] = &[
    "*", "/a*", "*.html", "/a/*/c", "*b*", "/a", "*a*b*", "/**/b",
];
const REGEXES: &[&str] = &["^/a", "b$", "a.*b", "html", "^/$"];
const METHODS: &[&str] = &["GET", "POST", "get"];
const SUBJECT_HOSTS: &[&str] = &[
    "a.com",
    "b.com",
    "x.a.com",
    "y.x.a.com",
    "z.y.x.a.com",
    "A.COM",
    "com",
    "a.com.",
    "a.com:8080",
    "X.A.com",
    "b.com.:80",
    "[::1]:80",
];
const SUBJECT_PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/a/b",
    "/a/b.html?x=1",
    "/b.html",
    "/a/x/c",
    "/ab",
    "/a?b",
    "/abc/b",
    "/a/b/c",
    "",
];

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![2 => Just(None), 1 => s.prop_map(Some)].boxed()
}

fn pick(list: &'static [&'static str]) -> BoxedStrategy<String> {
    select(list).prop_map(String::from).boxed()
}

fn action() -> impl Strategy<Value = (Option<u32>, Option<UrlHashDoc>)> {
    prop_oneof![
        3 => (1u32..6).prop_map(|m| (Some(m), None)),
        1 => (proptest::sample::subsequence(vec![10u32, 11, 12, 13], 1..=4), any::<bool>())
            .prop_map(|(marks, named)| {
                let members = named.then(|| marks.iter().map(|m| format!("c{m}.farm")).collect());
                (None, Some(UrlHashDoc { marks, members, weights: None }))
            }),
    ]
}

/// A valid rule of one protocol class: 0 HTTP, 1 TLS, 2 ICP.
fn rule() -> impl Strategy<Value = RuleDoc> {
    (
        0u8..3,
        opt(pick(HOSTS)),
        opt(pick(METHODS)),
        opt(pick(PREFIXES)),
        opt(pick(EXACTS)),
        opt(pick(GLOBS)),
        prop_oneof![4 => Just(None), 1 => pick(REGEXES).prop_map(Some)],
        action(),
    )
        .prop_map(
            |(class, host, method, prefix, exact, glob, regex, (mark, url_hash))| {
                let mut r = RuleDoc {
                    mark,
                    url_hash,
                    ..RuleDoc::default()
                };
                match class {
                    1 => r.sni = Some(host.unwrap_or_else(|| "a.com".into())),
                    _ => {
                        r.host = host;
                        r.path_prefix = prefix;
                        r.path_exact = exact;
                        r.path_glob = glob;
                        r.path_regex = regex;
                        if class == 2 {
                            r.icp = Some(true);
                        } else {
                            r.method = method;
                            if r.host.is_none()
                                && r.method.is_none()
                                && r.path_prefix.is_none()
                                && r.path_exact.is_none()
                                && r.path_glob.is_none()
                                && r.path_regex.is_none()
                            {
                                r.host = Some("b.com".into());
                            }
                        }
                    }
                }
                r
            },
        )
}

fn doc() -> impl Strategy<Value = RulesDoc> {
    proptest::collection::vec(rule(), 0..40).prop_map(|mut rules| {
        for (i, r) in rules.iter_mut().enumerate() {
            r.id = format!("r{i}");
        }
        RulesDoc {
            default_mark: 99,
            rules,
        }
    })
}

#[derive(Debug, Clone)]
struct Subj {
    proto: Proto,
    host: Option<String>,
    method: Option<String>,
    path: Option<String>,
    sni: Option<String>,
    url: Option<String>,
}

fn subject() -> impl Strategy<Value = Subj> {
    (
        select(vec![Proto::Http, Proto::Tls, Proto::Icp]),
        opt(pick(SUBJECT_HOSTS)),
        opt(pick(METHODS)),
        opt(pick(SUBJECT_PATHS)),
        opt(pick(SUBJECT_HOSTS)),
        opt(".{0,20}"),
    )
        .prop_map(|(proto, host, method, path, sni, url)| Subj {
            proto,
            host,
            method,
            path,
            sni,
            url,
        })
}

impl Subj {
    fn as_subject(&self) -> Subject<'_> {
        Subject {
            proto: self.proto,
            host: self.host.as_deref(),
            method: self.method.as_deref(),
            path: self.path.as_deref(),
            sni: self.sni.as_deref(),
            url: self.url.as_deref(),
        }
    }
}

// --- The naive reference, from the documented semantics -----------------------------------------

/// Lower-case, without `:port` and without one trailing dot.
fn norm_name(raw: &str) -> String {
    let mut s = raw.to_ascii_lowercase();
    let port_at = if s.starts_with('[') {
        s.find("]:").map(|i| i + 1)
    } else if s.matches(':').count() == 1 {
        s.find(':')
    } else {
        None
    };
    if let Some(i) = port_at {
        let port = &s[i + 1..];
        if !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok_and(|p| p > 0) {
            s.truncate(i);
        }
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
}

fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.ends_with(&format!(".{suffix}")) && name.len() > suffix.len() + 1,
        None => pattern == name,
    }
}

/// Textbook recursive glob with `*` only.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

fn reference_matches(r: &RuleDoc, s: &Subj) -> bool {
    let tls_rule = r.sni.is_some();
    let icp_rule = r.icp == Some(true);
    let applies = match s.proto {
        Proto::Http => !tls_rule && !icp_rule,
        Proto::Tls => tls_rule,
        Proto::Icp => icp_rule,
    };
    if !applies {
        return false;
    }
    let raw_name = if s.proto == Proto::Tls {
        &s.sni
    } else {
        &s.host
    };
    let name = raw_name.as_deref().map(norm_name);
    if let Some(p) = r.host.as_ref().or(r.sni.as_ref()) {
        match &name {
            Some(n) if name_matches(p, n) => {}
            _ => return false,
        }
    }
    if let Some(m) = &r.method {
        if s.method.as_deref() != Some(m.as_str()) {
            return false;
        }
    }
    let path = s.path.as_deref().map(|p| p.split('?').next().unwrap());
    let path_ok = |f: &dyn Fn(&str) -> bool| path.is_some_and(f);
    r.path_prefix
        .as_ref()
        .is_none_or(|pp| path_ok(&|p| p.starts_with(pp.as_str())))
        && r.path_exact.as_ref().is_none_or(|pe| path_ok(&|p| p == pe))
        && r.path_glob
            .as_ref()
            .is_none_or(|g| path_ok(&|p| glob(g.as_bytes(), p.as_bytes())))
        && r.path_regex.as_ref().is_none_or(|re| {
            let re = regex::Regex::new(re).unwrap();
            path_ok(&|p| re.is_match(p))
        })
}

fn reference_mark(r: &RuleDoc, s: &Subj) -> u32 {
    if let Some(m) = r.mark {
        return m;
    }
    let h = r.url_hash.as_ref().unwrap();
    let names: Vec<String> = h
        .members
        .clone()
        .unwrap_or_else(|| h.marks.iter().map(u32::to_string).collect());
    let carp = Carp::new(&names, h.weights.as_deref()).unwrap();
    let key = match (s.proto, &s.url) {
        (Proto::Tls, _) => s.sni.as_deref().map(norm_name).unwrap_or_default(),
        (_, Some(url)) => url.clone(),
        (_, None) => format!(
            "http://{}{}",
            s.host.as_deref().map(norm_name).unwrap_or_default(),
            s.path.as_deref().unwrap_or("")
        ),
    };
    h.marks[carp.select(key.as_bytes())]
}

fn reference(doc: &RulesDoc, s: &Subj) -> Decision {
    for (i, r) in doc.rules.iter().enumerate() {
        if reference_matches(r, s) {
            return Decision {
                rule: Some(i),
                mark: reference_mark(r, s),
            };
        }
    }
    Decision {
        rule: None,
        mark: doc.default_mark,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn indexed_lookup_equals_naive_reference(
        doc in doc(),
        subjects in proptest::collection::vec(subject(), 1..24),
    ) {
        let table = Table::compile(&doc, &ValidateOptions::default())
            .map_err(|e| TestCaseError::fail(format!("valid doc rejected: {e}")))?;
        for s in &subjects {
            let want = reference(&doc, s);
            prop_assert_eq!(table.decide(&s.as_subject()), want, "subject {:?}", s);
            prop_assert_eq!(table.decide_linear(&s.as_subject()), want);
            prop_assert_eq!(table.decide_with(&s.as_subject(), &|_| true), want);
        }
    }
}

// --- Arbitrary JSON never panics ---------------------------------------------------------------

const KEYS: &[&str] = &[
    "id",
    "icp",
    "host",
    "sni",
    "method",
    "path_prefix",
    "path_exact",
    "path_glob",
    "path_regex",
    "mark",
    "url_hash",
    "marks",
    "members",
    "weights",
    "default_mark",
    "rules",
    "x",
    "",
];
const STRINGS: &[&str] = &[
    "a",
    "*.a.com",
    "a.com",
    "*",
    "/",
    "/a",
    "*.html",
    "(",
    "a{99}{99}",
    "GET",
    "",
    "a..b",
    "[::1]",
    "r1",
    "x y",
    "\n",
    "\u{e9}",
    "/a?b",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (0u32..200).prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        select(STRINGS).prop_map(|s| json!(s)),
        ".{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((select(KEYS).prop_map(String::from), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Documents that look like rules documents, with arbitrary values in known places.
fn near_doc() -> impl Strategy<Value = Value> {
    let rule = proptest::collection::vec((select(KEYS), arb_json()), 0..7)
        .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    (
        prop_oneof![Just(json!(100)), arb_json()],
        proptest::collection::vec(prop_oneof![4 => rule, 1 => arb_json()], 0..6),
        any::<bool>(),
    )
        .prop_map(|(dm, rules, extra)| {
            let mut v = json!({"default_mark": dm, "rules": rules});
            if extra {
                v["extra"] = json!(1);
            }
            v
        })
}

fn check_never_panics(bytes: &[u8]) -> Result<(), TestCaseError> {
    let opts = ValidateOptions::default();
    let two_step = RulesDoc::from_json(bytes).map(|doc| {
        let compiled = Table::compile(&doc, &opts);
        (doc, compiled)
    });
    let one_step = Table::from_json(bytes, &opts);
    for e in [two_step.as_ref().err(), one_step.as_ref().err()]
        .into_iter()
        .flatten()
    {
        prop_assert!(!e.problems().is_empty());
        prop_assert!(e.problems().iter().all(|p| !p.to_string().contains('\n')));
    }
    if let Ok((doc, compiled)) = &two_step {
        // Shape fine: both paths report the same value problems, or both succeed.
        match (compiled, &one_step) {
            (Ok(_), Ok(_)) => {}
            (Err(a), Err(b)) => prop_assert_eq!(a.problems(), b.problems()),
            _ => prop_assert!(false, "compile and from_json disagree"),
        }
        if compiled.is_ok() {
            let again = RulesDoc::from_json(doc.to_json_pretty().as_bytes());
            prop_assert_eq!(again.as_ref().ok(), Some(doc));
        }
    } else {
        prop_assert!(one_step.is_err());
    }
    if let Ok(t) = &one_step {
        for proto in [Proto::Http, Proto::Tls, Proto::Icp] {
            let s = Subject {
                proto,
                host: Some("a.com"),
                method: Some("GET"),
                path: Some("/a/b.html?x"),
                sni: Some("a.com"),
                url: None,
            };
            prop_assert_eq!(t.decide(&s), t.decide_linear(&s));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_values_never_panic(v in arb_json()) {
        check_never_panics(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn near_documents_never_panic(v in near_doc()) {
        check_never_panics(&serde_json::to_vec(&v).unwrap())?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        check_never_panics(&bytes)?;
    }
}
