//! Validation: one test per kind of problem, the line format, and "every problem is listed".
#![expect(clippy::unwrap_used, reason = "tests fail by panicking")]

use l7mark::rules::{Problem, RuleDoc, RulesDoc, Table, ValidateOptions, ValidationErrors};

/// All problem lines of a JSON document (shape and values), with optional mark range.
fn lines_with(json: &str, range: Option<std::ops::RangeInclusive<u32>>) -> Vec<String> {
    let opts = ValidateOptions { mark_range: range };
    match Table::from_json(json.as_bytes(), &opts) {
        Ok(_) => vec![],
        Err(e) => {
            let lines: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
            // Display is exactly the lines joined by '\n', one problem per line.
            assert_eq!(e.to_string(), lines.join("\n"));
            assert!(lines.iter().all(|l| !l.contains('\n')));
            lines
        }
    }
}

fn lines(json: &str) -> Vec<String> {
    lines_with(json, None)
}

/// A document with one rule given as JSON object text.
fn rule(obj: &str) -> String {
    format!(r#"{{"default_mark": 100, "rules": [{obj}]}}"#)
}

#[track_caller]
fn has(lines: &[String], want: &str) {
    assert!(
        lines.iter().any(|l| l == want),
        "missing {want:?} in:\n{}",
        lines.join("\n")
    );
}

#[track_caller]
fn has_prefix(lines: &[String], want: &str) {
    assert!(
        lines.iter().any(|l| l.starts_with(want)),
        "no line starting with {want:?} in:\n{}",
        lines.join("\n")
    );
}

#[track_caller]
fn only(lines: &[String], want: &str) {
    assert_eq!(lines, &[want.to_string()]);
}

#[test]
fn valid_example_has_no_problems() {
    let doc = r#"{ "default_mark": 100,
      "rules": [
        {"id": "img",  "host": "static.example.com", "path_prefix": "/img/", "mark": 110},
        {"id": "org",  "host": "*.example.org", "mark": 111},
        {"id": "html", "path_glob": "*.html", "mark": 112},
        {"id": "tls",  "sni": "secure.example.com", "mark": 113},
        {"id": "cache","icp": true, "url_hash": {"marks": [120, 121, 122]}},
        {"id": "cdn",  "host": "cdn.example.net", "url_hash": {"marks": [120, 121, 122]}} ] }"#;
    assert_eq!(lines(doc), Vec::<String>::new());
    assert_eq!(lines(r#"{"default_mark": 1}"#), Vec::<String>::new());
}

#[test]
fn invalid_json_reports_line_and_column() {
    let l = lines("{\n  \"default_mark\": 100,\n  \"rules\": [\n}");
    assert_eq!(l.len(), 1);
    has_prefix(&l, "document: invalid JSON: ");
    assert!(l[0].contains("line 4 column 1"), "{}", l[0]);
    has_prefix(&lines(""), "document: invalid JSON: EOF");
    has_prefix(
        &lines("{} x"),
        "document: invalid JSON: trailing characters",
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let l = lines(&rule(r#"{"id": "a", "host": "x", "mark": 1, "mark": 2}"#));
    assert_eq!(l.len(), 1);
    has_prefix(
        &l,
        r#"document: invalid JSON: duplicate key "mark" at line 1"#,
    );
}

#[test]
fn document_shape() {
    only(
        &lines("[]"),
        "document: expected a JSON object, found an array",
    );
    only(
        &lines(r#"{"default_mark": 1, "rule": []}"#),
        r#"document: unknown field "rule" (expected default_mark, rules)"#,
    );
    only(&lines(r#"{"rules": []}"#), "default_mark: missing");
    only(
        &lines(r#"{"default_mark": "100"}"#),
        r#"default_mark: expected an integer 0..=4294967295, found string "100""#,
    );
    only(
        &lines(r#"{"default_mark": -1}"#),
        "default_mark: expected an integer 0..=4294967295, found number -1",
    );
    only(
        &lines(r#"{"default_mark": 1.5}"#),
        "default_mark: expected an integer 0..=4294967295, found number 1.5",
    );
    only(
        &lines(r#"{"default_mark": 4294967296}"#),
        "default_mark: expected an integer 0..=4294967295, found number 4294967296",
    );
    only(
        &lines(r#"{"default_mark": 1, "rules": {}}"#),
        "rules: expected an array of rules, found an object",
    );
}

#[test]
fn default_mark_values() {
    only(
        &lines(r#"{"default_mark": 0}"#),
        r#"default_mark: must not be 0 (0 means "no mark" to the kernel)"#,
    );
    only(
        &lines_with(r#"{"default_mark": 99}"#, Some(100..=199)),
        "default_mark: 99 is outside the allowed mark range 100..=199",
    );
    assert!(lines_with(r#"{"default_mark": 199}"#, Some(100..=199)).is_empty());
}

#[test]
fn rule_not_an_object() {
    only(
        &lines(r#"{"default_mark": 1, "rules": [42]}"#),
        "rule #0: rule: expected a JSON object, found number 42",
    );
}

#[test]
fn ids() {
    only(
        &lines(&rule(r#"{"host": "x", "mark": 1}"#)),
        "rule #0: id: missing",
    );
    only(
        &lines(&rule(r#"{"id": 7, "host": "x", "mark": 1}"#)),
        "rule #0: id: expected a string, found number 7",
    );
    only(
        &lines(&rule(r#"{"id": "", "host": "x", "mark": 1}"#)),
        "rule #0: id: must not be empty",
    );
    only(
        &lines(&rule(r#"{"id": "a b", "host": "x", "mark": 1}"#)),
        "rule #0: id: invalid character ' ' (allowed: A-Z a-z 0-9 . _ -)",
    );
    let long = "x".repeat(65);
    only(
        &lines(&rule(&format!(
            r#"{{"id": "{long}", "host": "x", "mark": 1}}"#
        ))),
        "rule #0: id: longer than 64 characters",
    );
    // A rule without a usable id has all its problems under its index.
    let l = lines(&rule(r#"{"id": "a/b", "host": "*x", "mark": 0}"#));
    assert!(l.iter().all(|l| l.starts_with("rule #0: ")), "{l:?}");
    assert_eq!(l.len(), 3);
}

#[test]
fn duplicate_ids() {
    let doc = r#"{"default_mark": 1, "rules": [
        {"id": "a", "host": "x", "mark": 1},
        {"id": "b", "host": "y", "mark": 1},
        {"id": "a", "host": "z", "mark": 1}]}"#;
    only(
        &lines(doc),
        "rule a: id: duplicate id (first used by rule #0)",
    );
}

#[test]
fn unknown_fields_at_every_level() {
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "mark": 1, "colour": "red"}"#,
        )),
        "rule a: colour: unknown field (expected one of: id, icp, host, sni, method, \
         path_prefix, path_exact, path_glob, path_regex, mark, url_hash)",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": [1], "seed": 3}}"#,
        )),
        "rule a: url_hash.seed: unknown field (expected one of: marks, members, weights)",
    );
    // Odd keys are escaped so the line stays one line.
    only(
        &lines(&rule(r#"{"id": "a", "host": "x", "mark": 1, "a\nb": 1}"#)),
        "rule a: \"a\\nb\": unknown field (expected one of: id, icp, host, sni, method, \
         path_prefix, path_exact, path_glob, path_regex, mark, url_hash)",
    );
}

#[test]
fn wrong_json_types() {
    let l = lines(&rule(
        r#"{"id": "a", "icp": "yes", "host": 1, "path_prefix": null, "mark": "5"}"#,
    ));
    has(
        &l,
        r#"rule a: icp: expected true or false, found string "yes""#,
    );
    has(&l, "rule a: host: expected a string, found number 1");
    has(&l, "rule a: path_prefix: expected a string, found null");
    has(
        &l,
        r#"rule a: mark: expected an integer 0..=4294967295, found string "5""#,
    );
    assert_eq!(
        l.len(),
        4,
        "no follow-up problems for wrongly typed fields: {l:?}"
    );

    let l = lines(&rule(r#"{"id": "a", "host": "x", "url_hash": [1, 2]}"#));
    only(
        &l,
        r#"rule a: url_hash: expected an object like {"marks": [1, 2]}, found an array"#,
    );
    let l = lines(&rule(
        r#"{"id": "a", "host": "x", "url_hash": {"marks": [1, "2", -3], "members": "m", "weights": [true]}}"#,
    ));
    has(
        &l,
        r#"rule a: url_hash.marks[1]: expected an integer 0..=4294967295, found string "2""#,
    );
    has(
        &l,
        "rule a: url_hash.marks[2]: expected an integer 0..=4294967295, found number -3",
    );
    has(
        &l,
        r#"rule a: url_hash.members: expected an array, found string "m""#,
    );
    has(
        &l,
        "rule a: url_hash.weights[0]: expected an integer 0..=4294967295, found boolean true",
    );
    assert_eq!(l.len(), 4, "{l:?}");
    only(
        &lines(&rule(r#"{"id": "a", "host": "x", "url_hash": {}}"#)),
        "rule a: url_hash.marks: missing",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": [1], "members": [2]}}"#,
        )),
        "rule a: url_hash.members[0]: expected a string, found number 2",
    );
}

#[test]
fn no_match_field() {
    let want = "rule a: match: no match field: give at least one of host, sni, method, \
                path_prefix, path_exact, path_glob, path_regex or icp: true";
    only(&lines(&rule(r#"{"id": "a", "mark": 1}"#)), want);
    only(
        &lines(&rule(r#"{"id": "a", "icp": false, "mark": 1}"#)),
        want,
    );
    assert!(lines(&rule(r#"{"id": "a", "icp": true, "mark": 1}"#)).is_empty());
}

#[test]
fn actions() {
    only(
        &lines(&rule(r#"{"id": "a", "host": "x"}"#)),
        "rule a: mark: missing action: give exactly one of mark or url_hash",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "mark": 1, "url_hash": {"marks": [2]}}"#,
        )),
        "rule a: url_hash: cannot be combined with mark: give exactly one of mark or url_hash",
    );
    only(
        &lines(&rule(r#"{"id": "a", "host": "x", "mark": 0}"#)),
        r#"rule a: mark: must not be 0 (0 means "no mark" to the kernel)"#,
    );
    only(
        &lines_with(
            &rule(r#"{"id": "a", "host": "x", "mark": 300}"#),
            Some(100..=299),
        ),
        "rule a: mark: 300 is outside the allowed mark range 100..=299",
    );
}

#[test]
fn url_hash_values() {
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": []}}"#,
        )),
        "rule a: url_hash.marks: must not be empty",
    );
    let l = lines_with(
        &rule(r#"{"id": "a", "host": "x", "url_hash": {"marks": [120, 0, 120, 500, 120]}}"#),
        Some(100..=199),
    );
    assert_eq!(
        l,
        [
            r#"rule a: url_hash.marks[1]: must not be 0 (0 means "no mark" to the kernel)"#,
            "rule a: url_hash.marks[2]: duplicate mark 120 (also at url_hash.marks[0])",
            "rule a: url_hash.marks[3]: 500 is outside the allowed mark range 100..=199",
            "rule a: url_hash.marks[4]: duplicate mark 120 (also at url_hash.marks[0])",
        ]
    );
    let l = lines(&rule(
        r#"{"id": "a", "host": "x", "url_hash": {"marks": [1, 2, 3], "members": ["m", "", "m"]}}"#,
    ));
    assert_eq!(
        l,
        [
            "rule a: url_hash.members[1]: must not be empty",
            "rule a: url_hash.members[2]: duplicate member name (also at url_hash.members[0]): \
             members of one name hash alike",
        ]
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": [1, 2], "members": ["m"]}}"#,
        )),
        "rule a: url_hash.members: 1 names for 2 marks: give one member name per mark",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": [1, 2], "members": ["m", "a b"]}}"#,
        )),
        "rule a: url_hash.members[1]: whitespace or control characters are not allowed",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": [1, 2], "weights": [1]}}"#,
        )),
        "rule a: url_hash.weights: 1 weights for 2 marks: give one weight per mark",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": [1, 2], "weights": [0, 70000]}}"#,
        ))[..1],
        "rule a: url_hash.weights[0]: 0 is outside 1..=65535",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "host": "x", "url_hash": {"marks": [1, 2], "weights": [1, 2000]}}"#,
        )),
        "rule a: url_hash.weights[0]: weight 1 is under 0.1% of the total 2001: Squid CARP \
         gives such a member no share, it would never be chosen",
    );
    let many: Vec<String> = (1..=1001).map(|m| m.to_string()).collect();
    only(
        &lines(&rule(&format!(
            r#"{{"id": "a", "host": "x", "url_hash": {{"marks": [{}]}}}}"#,
            many.join(",")
        ))),
        "rule a: url_hash.marks: 1001 marks, at most 1000 are supported",
    );
}

#[test]
fn host_and_sni_patterns() {
    for (pattern, why) in [
        ("", "must not be empty"),
        (
            "*",
            "a bare '*' is not supported: leave the field out to match any name",
        ),
        ("*.", "nothing after '*.'"),
        (
            "a.*.com",
            "a wildcard is only allowed as a leading '*.' (as in *.example.com)",
        ),
        (
            "*example.com",
            "a wildcard is only allowed as a leading '*.' (as in *.example.com)",
        ),
        ("a..com", "empty label (leading, trailing or doubled '.')"),
        (
            "example.com.",
            "empty label (leading, trailing or doubled '.')",
        ),
        (
            "exa mple.com",
            "invalid character ' ' (allowed: letters, digits, '-', '_', '.')",
        ),
        (
            "example.com:80",
            "invalid character ':' (patterns match the name only, without a port)",
        ),
        ("[::1", "an IPv6 literal must be of the form [address]"),
        ("[zz]", "invalid IPv6 literal"),
    ] {
        only(
            &lines(&rule(&format!(
                r#"{{"id": "a", "host": "{pattern}", "mark": 1}}"#
            ))),
            &format!("rule a: host: {why}"),
        );
        only(
            &lines(&rule(&format!(
                r#"{{"id": "a", "sni": "{pattern}", "mark": 1}}"#
            ))),
            &format!("rule a: sni: {why}"),
        );
    }
    let long_label = format!("{}.com", "a".repeat(64));
    only(
        &lines(&rule(&format!(
            r#"{{"id": "a", "host": "{long_label}", "mark": 1}}"#
        ))),
        "rule a: host: label longer than 63 characters",
    );
    let long = format!("{}com", "abc.".repeat(63));
    only(
        &lines(&rule(&format!(
            r#"{{"id": "a", "host": "{long}", "mark": 1}}"#
        ))),
        "rule a: host: longer than 253 characters",
    );
}

#[test]
fn paths() {
    for field in ["path_prefix", "path_exact"] {
        only(
            &lines(&rule(&format!(
                r#"{{"id": "a", "{field}": "img/", "mark": 1}}"#
            ))),
            &format!("rule a: {field}: must start with '/'"),
        );
        only(
            &lines(&rule(&format!(
                r#"{{"id": "a", "{field}": "/a?b=1", "mark": 1}}"#
            ))),
            &format!(
                "rule a: {field}: contains '?': paths are matched without the query string, \
                 so this can never match"
            ),
        );
        only(
            &lines(&rule(&format!(
                r#"{{"id": "a", "{field}": "/a b", "mark": 1}}"#
            ))),
            &format!(
                "rule a: {field}: invalid character ' ' (whitespace and control characters \
                 never occur in a request path)"
            ),
        );
        let long = format!("/{}", "x".repeat(4096));
        only(
            &lines(&rule(&format!(
                r#"{{"id": "a", "{field}": "{long}", "mark": 1}}"#
            ))),
            &format!("rule a: {field}: longer than 4096 characters"),
        );
    }
}

#[test]
fn globs() {
    only(
        &lines(&rule(r#"{"id": "a", "path_glob": "img/*", "mark": 1}"#)),
        "rule a: path_glob: must start with '/' or '*' (paths always start with '/')",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "path_glob": "/img/[ab].png", "mark": 1}"#,
        )),
        "rule a: path_glob: unsupported glob syntax '[': only '*' is a wildcard (use path_regex)",
    );
    only(
        &lines(&rule(r#"{"id": "a", "path_glob": "", "mark": 1}"#)),
        "rule a: path_glob: must not be empty",
    );
}

#[test]
fn regexes() {
    only(
        &lines(&rule(r#"{"id": "a", "path_regex": "^/(img", "mark": 1}"#)),
        "rule a: path_regex: invalid regex: unclosed group",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "path_regex": "(a{1000}){1000}", "mark": 1}"#,
        )),
        "rule a: path_regex: regex too big: its compiled form exceeds the limit of 1048576 bytes",
    );
    let long = "a".repeat(4097);
    only(
        &lines(&rule(&format!(
            r#"{{"id": "a", "path_regex": "{long}", "mark": 1}}"#
        ))),
        "rule a: path_regex: longer than 4096 characters",
    );
}

#[test]
fn methods() {
    only(
        &lines(&rule(r#"{"id": "a", "method": "GE T", "mark": 1}"#)),
        "rule a: method: invalid character ' ': a method is an RFC 9110 token",
    );
    only(
        &lines(&rule(r#"{"id": "a", "method": "", "mark": 1}"#)),
        "rule a: method: must not be empty",
    );
}

#[test]
fn protocol_combinations() {
    only(
        &lines(&rule(
            r#"{"id": "a", "icp": true, "method": "GET", "mark": 1}"#,
        )),
        "rule a: method: not allowed with icp: true (ICP queries have no method)",
    );
    only(
        &lines(&rule(r#"{"id": "a", "icp": true, "sni": "x", "mark": 1}"#)),
        "rule a: sni: not allowed with icp: true (ICP queries carry no SNI)",
    );
    only(
        &lines(&rule(
            r#"{"id": "a", "sni": "x", "path_prefix": "/", "mark": 1}"#,
        )),
        "rule a: sni: cannot be combined with host, method or path fields: sni matches TLS \
         connections only, they match HTTP requests and ICP queries only",
    );
}

#[test]
fn too_many_rules() {
    let mut doc = String::from(r#"{"default_mark": 1, "rules": ["#);
    for i in 0..=1_000_000 {
        if i > 0 {
            doc.push(',');
        }
        doc.push('0');
    }
    doc.push_str("]}");
    only(
        &lines(&doc),
        "rules: 1000001 rules, at most 1000000 are supported",
    );
}

#[test]
fn problems_are_capped_with_a_count() {
    let items = vec!["0"; 10_005].join(",");
    let l = lines(&format!(r#"{{"default_mark": 1, "rules": [{items}]}}"#));
    assert_eq!(l.len(), 10_001);
    assert_eq!(
        l[9_999],
        "rule #9999: rule: expected a JSON object, found number 0"
    );
    assert_eq!(l[10_000], "document: 5 further problems not listed");
}

#[test]
fn every_problem_is_listed_in_order() {
    let doc = r#"{"default_mark": 0, "extra": 1, "rules": [
        {"id": "ok", "host": "x", "mark": 1},
        {"id": "r1", "host": "a.*", "path_prefix": "nope", "mark": 0, "zzz": 1},
        {"id": "r2", "path_regex": "(", "mark": "x", "url_hash": {"marks": []}},
        {"host": "y", "mark": 5}
    ]}"#;
    let l = lines(doc);
    assert_eq!(
        l,
        [
            r#"document: unknown field "extra" (expected default_mark, rules)"#,
            r#"default_mark: must not be 0 (0 means "no mark" to the kernel)"#,
            "rule r1: zzz: unknown field (expected one of: id, icp, host, sni, method, \
             path_prefix, path_exact, path_glob, path_regex, mark, url_hash)",
            "rule r1: host: a wildcard is only allowed as a leading '*.' (as in *.example.com)",
            "rule r1: path_prefix: must start with '/'",
            r#"rule r1: mark: must not be 0 (0 means "no mark" to the kernel)"#,
            r#"rule r2: mark: expected an integer 0..=4294967295, found string "x""#,
            "rule r2: path_regex: invalid regex: unclosed group",
            "rule r2: url_hash: cannot be combined with mark: give exactly one of mark or url_hash",
            "rule #3: id: missing",
        ]
    );
}

#[test]
fn shape_and_value_passes_are_separate_apis() {
    // RulesDoc::from_json checks the shape only; Table::compile the values.
    let json = rule(r#"{"id": "a", "host": "a.*", "mark": 0}"#);
    let doc = RulesDoc::from_json(json.as_bytes()).unwrap();
    let err = Table::compile(&doc, &ValidateOptions::default()).unwrap_err();
    assert_eq!(err.problems().len(), 2);
    let err = RulesDoc::from_json(rule(r#"{"id": "a", "mark": "x"}"#).as_bytes()).unwrap_err();
    assert_eq!(err.problems().len(), 1);
    // Typed documents built in code are checked the same way.
    let doc = RulesDoc {
        default_mark: 1,
        rules: vec![RuleDoc {
            id: "t".into(),
            ..RuleDoc::default()
        }],
    };
    let err = Table::compile(&doc, &ValidateOptions::default()).unwrap_err();
    assert_eq!(
        err.problems()
            .iter()
            .map(|p| p.field.as_str())
            .collect::<Vec<_>>(),
        ["match", "mark"]
    );
}

#[test]
fn problem_fields_and_display() {
    let p = Problem {
        rule: Some("img".into()),
        field: "host".into(),
        why: "bad".into(),
    };
    assert_eq!(p.to_string(), "rule img: host: bad");
    let d = Problem {
        rule: None,
        field: "default_mark".into(),
        why: "must not be 0".into(),
    };
    assert_eq!(d.to_string(), "default_mark: must not be 0");
    let e = ValidationErrors::from_problems(vec![p.clone(), d]);
    assert_eq!(
        e.to_string(),
        "rule img: host: bad\ndefault_mark: must not be 0"
    );
    assert_eq!(e.problems()[0], p);
    let err: Box<dyn std::error::Error> = Box::new(e);
    assert!(err.to_string().contains('\n'));
}
