//! Validation: the shape of the JSON (checked on a `serde_json::Value`, so every problem can be
//! attributed to a rule and field), then the values, compiled into [`CompiledRule`]s on the way.

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use thiserror::Error;

use super::doc::{RuleDoc, RulesDoc, UrlHashDoc};
use super::hash::Carp;
use super::limits::{
    MAX_HASH_MEMBERS, MAX_MEMBER_NAME_LEN, MAX_PROBLEMS, MAX_REGEX_LEN, MAX_RULES, MAX_WEIGHT,
    REGEX_DFA_SIZE_LIMIT, REGEX_SIZE_LIMIT,
};
use super::pattern::{self, Glob, HostPattern};
use super::table::{Action, CompiledRule, RuleProto};

/// Options for validating a document against the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidateOptions {
    /// If set, every mark (default, rule, hash list) must lie in this range, e.g. the marks the
    /// IPVS fwmark services were created for. `None` (the default): any mark but 0.
    pub mark_range: Option<RangeInclusive<u32>>,
}

/// One validation problem. Displayed as `rule <id>: <field>: <why>` or, for document-level
/// problems, `<field>: <why>`; always a single line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The rule: its id, or `#<index>` (0-based position in `rules`) when the rule has no usable
    /// id. `None` for document-level problems.
    pub rule: Option<String>,
    /// The field: `default_mark`, `document`, `rules`, a rule field such as `host`, or a nested
    /// one such as `url_hash.marks[2]`; `match` for "no match field at all".
    pub field: String,
    /// What is wrong, one line.
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "rule {rule}: {}: {}", self.field, self.why),
            None => write!(f, "{}: {}", self.field, self.why),
        }
    }
}

/// Every problem found in a document (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}", lines(.problems))]
pub struct ValidationErrors {
    problems: Vec<Problem>,
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

// === impl ValidationErrors ===

impl ValidationErrors {
    /// Wrap problems found elsewhere (e.g. by the REST layer) so they print alike.
    pub fn from_problems(problems: Vec<Problem>) -> Self {
        ValidationErrors { problems }
    }

    /// The problems, document-level first, then by rule position.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Take the problems.
    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// Collects problems, ordered by (document first, then rule position), capped at
/// [`MAX_PROBLEMS`] rule-level problems.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    /// (0 for document level, rule index + 1 otherwise; problem).
    items: Vec<(usize, Problem)>,
    rule_items: usize,
    dropped: usize,
}

impl Collector {
    fn doc(&mut self, field: &str, why: impl Into<String>) {
        self.items.push((
            0,
            Problem {
                rule: None,
                field: field.to_string(),
                why: why.into(),
            },
        ));
    }

    fn rule(&mut self, index: usize, label: &str, field: &str, why: impl Into<String>) {
        if self.rule_items >= MAX_PROBLEMS {
            self.dropped += 1;
            return;
        }
        self.rule_items += 1;
        self.items.push((
            index + 1,
            Problem {
                rule: Some(label.to_string()),
                field: field.to_string(),
                why: why.into(),
            },
        ));
    }

    /// Problems seen so far, listed or not.
    fn count(&self) -> usize {
        self.items.len() + self.dropped
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty() && self.dropped == 0
    }

    pub(crate) fn finish(mut self) -> ValidationErrors {
        // Stable: within one rule, problems keep the order they were found in.
        self.items.sort_by_key(|(order, _)| *order);
        let mut problems: Vec<Problem> = self.items.into_iter().map(|(_, p)| p).collect();
        if self.dropped > 0 {
            problems.push(Problem {
                rule: None,
                field: "document".into(),
                why: format!("{} further problems not listed", self.dropped),
            });
        }
        ValidationErrors { problems }
    }
}

// --- Shape checks on serde_json::Value -----------------------------------------------------------

/// The fields of a rule, in serialization order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Id,
    Icp,
    Host,
    Sni,
    Method,
    PathPrefix,
    PathExact,
    PathGlob,
    PathRegex,
    Mark,
    UrlHash,
}

const RULE_FIELDS: [(&str, Field); 11] = [
    ("id", Field::Id),
    ("icp", Field::Icp),
    ("host", Field::Host),
    ("sni", Field::Sni),
    ("method", Field::Method),
    ("path_prefix", Field::PathPrefix),
    ("path_exact", Field::PathExact),
    ("path_glob", Field::PathGlob),
    ("path_regex", Field::PathRegex),
    ("mark", Field::Mark),
    ("url_hash", Field::UrlHash),
];

/// Which fields a rule object had (whatever their type), so value checks do not report
/// "missing" for a field that is present but had the wrong type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Present {
    /// Bit per [`Field`]: the key was there.
    has: u16,
    /// Bit per [`Field`]: the key was there with a wrong type (already reported).
    bad: u16,
    /// The rule was not even an object (already reported): check nothing else.
    unusable: bool,
}

impl Present {
    fn set(&mut self, f: Field) {
        self.has |= 1 << f as u16;
    }

    fn set_bad(&mut self, f: Field) {
        self.bad |= 1 << f as u16;
    }

    fn has(self, f: Field) -> bool {
        self.has & (1 << f as u16) != 0
    }

    /// Present with the right type.
    fn typed(self, f: Field) -> bool {
        self.has(f) && self.bad & (1 << f as u16) == 0
    }

    /// The fields of a typed rule.
    pub(crate) fn of(r: &RuleDoc) -> Present {
        let mut p = Present::default();
        p.set(Field::Id);
        for (f, is) in [
            (Field::Icp, r.icp.is_some()),
            (Field::Host, r.host.is_some()),
            (Field::Sni, r.sni.is_some()),
            (Field::Method, r.method.is_some()),
            (Field::PathPrefix, r.path_prefix.is_some()),
            (Field::PathExact, r.path_exact.is_some()),
            (Field::PathGlob, r.path_glob.is_some()),
            (Field::PathRegex, r.path_regex.is_some()),
            (Field::Mark, r.mark.is_some()),
            (Field::UrlHash, r.url_hash.is_some()),
        ] {
            if is {
                p.set(f);
            }
        }
        p
    }
}

/// A rule as far as its shape allowed: well-typed fields filled in, the others left empty.
#[derive(Debug)]
pub(crate) struct PartialRule {
    pub(crate) doc: RuleDoc,
    pub(crate) present: Present,
}

/// The result of the shape pass over a document.
#[derive(Debug)]
pub(crate) struct ParsedDoc {
    /// The JSON, if it parsed to an object.
    value: Option<Value>,
    default_mark: Option<u32>,
    rules: Vec<PartialRule>,
    problems: Collector,
}

impl ParsedDoc {
    /// Shape problems, or the strictly deserialized document.
    pub(crate) fn into_doc(self) -> Result<RulesDoc, ValidationErrors> {
        let mut c = self.problems;
        if !c.is_empty() {
            return Err(c.finish());
        }
        let Some(value) = self.value else {
            c.doc("document", "expected a JSON object");
            return Err(c.finish());
        };
        // The shape pass accepted it, so strict serde (deny_unknown_fields) must agree; if the
        // two ever disagree, report serde's view rather than panic.
        match serde_json::from_value::<RulesDoc>(value) {
            Ok(doc) => {
                debug_assert!(
                    self.rules.iter().map(|r| &r.doc).eq(doc.rules.iter()),
                    "shape pass and serde disagree"
                );
                Ok(doc)
            }
            Err(e) => {
                c.doc("document", one_line(&e.to_string()));
                Err(c.finish())
            }
        }
    }

    /// Shape and value problems of the whole document, or the document and its compiled rules.
    pub(crate) fn check_all(
        mut self,
        opts: &ValidateOptions,
    ) -> Result<(RulesDoc, Vec<CompiledRule>), ValidationErrors> {
        if self.value.is_none() {
            return Err(self.problems.finish());
        }
        let mut c = std::mem::take(&mut self.problems);
        let rules: Vec<(&RuleDoc, Present)> =
            self.rules.iter().map(|r| (&r.doc, r.present)).collect();
        let compiled = check_values(self.default_mark, &rules, opts, &mut c);
        if !c.is_empty() {
            return Err(c.finish());
        }
        let doc = self.into_doc()?;
        Ok((doc, compiled))
    }
}

/// Parse bytes and check the shape of the document.
pub(crate) fn parse_document(bytes: &[u8]) -> ParsedDoc {
    let mut c = Collector::default();
    let mut parsed = ParsedDoc {
        value: None,
        default_mark: None,
        rules: Vec::new(),
        problems: Collector::default(),
    };
    let value = match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(v)) => v,
        Err(e) => {
            c.doc(
                "document",
                format!("invalid JSON: {}", one_line(&e.to_string())),
            );
            parsed.problems = c;
            return parsed;
        }
    };
    let Value::Object(top) = &value else {
        c.doc(
            "document",
            format!("expected a JSON object, found {}", describe(&value)),
        );
        parsed.problems = c;
        return parsed;
    };
    for key in top.keys() {
        if key != "default_mark" && key != "rules" {
            c.doc(
                "document",
                format!(
                    "unknown field {} (expected default_mark, rules)",
                    quote(key)
                ),
            );
        }
    }
    match top.get("default_mark") {
        None => c.doc("default_mark", "missing"),
        Some(v) => match as_u32(v) {
            Ok(m) => parsed.default_mark = Some(m),
            Err(why) => c.doc("default_mark", why),
        },
    }
    match top.get("rules") {
        None => {}
        Some(Value::Array(rules)) if rules.len() > MAX_RULES => c.doc(
            "rules",
            format!("{} rules, at most {MAX_RULES} are supported", rules.len()),
        ),
        Some(Value::Array(rules)) => {
            parsed.rules = rules
                .iter()
                .enumerate()
                .map(|(i, r)| parse_rule(i, r, &mut c))
                .collect();
        }
        Some(other) => c.doc(
            "rules",
            format!("expected an array of rules, found {}", describe(other)),
        ),
    }
    parsed.value = Some(value);
    parsed.problems = c;
    parsed
}

fn parse_rule(index: usize, v: &Value, c: &mut Collector) -> PartialRule {
    let mut rule = PartialRule {
        doc: RuleDoc::default(),
        present: Present::default(),
    };
    let Value::Object(obj) = v else {
        c.rule(
            index,
            &format!("#{index}"),
            "rule",
            format!("expected a JSON object, found {}", describe(v)),
        );
        rule.present.unusable = true;
        return rule;
    };
    let label = label(index, obj.get("id").and_then(Value::as_str));
    let d = &mut rule.doc;
    for (key, val) in obj {
        let Some(&(name, field)) = RULE_FIELDS.iter().find(|(n, _)| n == key) else {
            c.rule(
                index,
                &label,
                &field_name(key),
                format!("unknown field (expected one of: {})", rule_field_list()),
            );
            continue;
        };
        rule.present.set(field);
        let before = c.count();
        let mut string = |slot: &mut Option<String>| match val {
            Value::String(s) => *slot = Some(s.clone()),
            other => c.rule(
                index,
                &label,
                name,
                format!("expected a string, found {}", describe(other)),
            ),
        };
        match field {
            Field::Id => {
                let mut id = None;
                string(&mut id);
                d.id = id.unwrap_or_default();
            }
            Field::Host => string(&mut d.host),
            Field::Sni => string(&mut d.sni),
            Field::Method => string(&mut d.method),
            Field::PathPrefix => string(&mut d.path_prefix),
            Field::PathExact => string(&mut d.path_exact),
            Field::PathGlob => string(&mut d.path_glob),
            Field::PathRegex => string(&mut d.path_regex),
            Field::Icp => match val {
                Value::Bool(b) => d.icp = Some(*b),
                other => c.rule(
                    index,
                    &label,
                    name,
                    format!("expected true or false, found {}", describe(other)),
                ),
            },
            Field::Mark => match as_u32(val) {
                Ok(m) => d.mark = Some(m),
                Err(why) => c.rule(index, &label, name, why),
            },
            Field::UrlHash => d.url_hash = parse_url_hash(index, &label, val, c),
        }
        if c.count() != before {
            rule.present.set_bad(field);
        }
    }
    if !rule.present.has(Field::Id) {
        c.rule(index, &label, "id", "missing");
    }
    rule
}

fn parse_url_hash(index: usize, label: &str, v: &Value, c: &mut Collector) -> Option<UrlHashDoc> {
    let Value::Object(obj) = v else {
        c.rule(
            index,
            label,
            "url_hash",
            format!(
                "expected an object like {{\"marks\": [1, 2]}}, found {}",
                describe(v)
            ),
        );
        return None;
    };
    let mut ok = true;
    for key in obj.keys() {
        if !matches!(key.as_str(), "marks" | "members" | "weights") {
            c.rule(
                index,
                label,
                &format!("url_hash.{}", field_name(key)),
                "unknown field (expected one of: marks, members, weights)",
            );
            ok = false;
        }
    }
    let mut list = |name: &str, want_u32: bool, c: &mut Collector| -> Option<Vec<Value>> {
        let field = format!("url_hash.{name}");
        let Value::Array(items) = obj.get(name)? else {
            let found = obj.get(name).map(describe).unwrap_or_default();
            c.rule(
                index,
                label,
                &field,
                format!("expected an array, found {found}"),
            );
            ok = false;
            return None;
        };
        for (i, item) in items.iter().enumerate() {
            let bad = if want_u32 {
                as_u32(item).err()
            } else if item.is_string() {
                None
            } else {
                Some(format!("expected a string, found {}", describe(item)))
            };
            if let Some(why) = bad {
                c.rule(index, label, &format!("{field}[{i}]"), why);
                ok = false;
            }
        }
        Some(items.clone())
    };
    let marks = list("marks", true, c);
    let members = list("members", false, c);
    let weights = list("weights", true, c);
    if !obj.contains_key("marks") {
        c.rule(index, label, "url_hash.marks", "missing");
        ok = false;
    }
    if !ok {
        return None;
    }
    let u32s = |v: Vec<Value>| -> Vec<u32> { v.iter().filter_map(|x| as_u32(x).ok()).collect() };
    let strings = |v: Vec<Value>| -> Vec<String> {
        v.into_iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect()
    };
    Some(UrlHashDoc {
        marks: marks.map(u32s).unwrap_or_default(),
        members: members.map(strings),
        weights: weights.map(u32s),
    })
}

fn rule_field_list() -> String {
    RULE_FIELDS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn as_u32(v: &Value) -> Result<u32, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("expected an integer 0..=4294967295, found {}", describe(v)))
}

/// A short, single-line description of a JSON value for messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// User text in a message: escaped (so it stays on one line), quoted, truncated.
fn quote(s: &str) -> String {
    const MAX: usize = 64;
    let escaped: String = s.escape_debug().collect();
    match escaped.char_indices().nth(MAX) {
        Some((cut, _)) => format!("\"{}…\"", &escaped[..cut]),
        None => format!("\"{escaped}\""),
    }
}

/// An unknown key as a field name: escaped and truncated, unquoted unless it needed escaping.
fn field_name(key: &str) -> String {
    let q = quote(key);
    let plain = &q[1..q.len() - 1];
    if plain == key { plain.to_string() } else { q }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The name a rule is reported under: its id if usable, else `#<index>`.
fn label(index: usize, id: Option<&str>) -> String {
    match id {
        Some(id) if pattern::check_id(id).is_ok() => id.to_string(),
        _ => format!("#{index}"),
    }
}

/// A `serde_json::Value` that refuses duplicate object keys (plain `Value` silently keeps the
/// last one, which hides mistakes such as two `mark` fields in one rule).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {}", quote(&key))));
            }
            let StrictValue(v) = map.next_value()?;
            obj.insert(key, v);
        }
        Ok(Value::Object(obj))
    }
}

// --- Value checks and compilation ----------------------------------------------------------------

/// Check the values of the default mark and every rule; returns the compiled rules (complete
/// only when `c` stayed empty). `rules[i]` is the rule at position `i`.
pub(crate) fn check_values(
    default_mark: Option<u32>,
    rules: &[(&RuleDoc, Present)],
    opts: &ValidateOptions,
    c: &mut Collector,
) -> Vec<CompiledRule> {
    if let Some(Err(why)) = default_mark.map(|m| check_mark(m, opts)) {
        c.doc("default_mark", why);
    }
    let mut first_use: HashMap<&str, usize> = HashMap::with_capacity(rules.len());
    let mut compiled = Vec::with_capacity(rules.len());
    for (index, (doc, present)) in rules.iter().enumerate() {
        if present.unusable {
            continue;
        }
        let id = present.typed(Field::Id).then_some(doc.id.as_str());
        let label = label(index, id);
        let mut dup_of = None;
        if let Some(id) = id.filter(|id| pattern::check_id(id).is_ok()) {
            dup_of = Some(*first_use.entry(id).or_insert(index)).filter(|&f| f != index);
        }
        let mut rc = RuleChecker {
            index,
            label: &label,
            c,
            ok: true,
        };
        if let Some(first) = dup_of {
            rc.err("id", format!("duplicate id (first used by rule #{first})"));
        }
        match rc.check(doc, *present, opts) {
            Some(rule) => compiled.push(rule),
            // Every path that rejects a rule reports why; if one ever did not, a table would be
            // built with its compiled rules out of step with the ids. Never let that pass.
            None if rc.c.is_empty() => rc.err("rule", "internal error: rule not compiled"),
            None => {}
        }
    }
    compiled
}

fn check_mark(m: u32, opts: &ValidateOptions) -> Result<(), String> {
    if m == 0 {
        return Err("must not be 0 (0 means \"no mark\" to the kernel)".into());
    }
    match &opts.mark_range {
        Some(r) if !r.contains(&m) => Err(format!(
            "{m} is outside the allowed mark range {}..={}",
            r.start(),
            r.end()
        )),
        _ => Ok(()),
    }
}

struct RuleChecker<'a> {
    index: usize,
    label: &'a str,
    c: &'a mut Collector,
    ok: bool,
}

impl RuleChecker<'_> {
    fn err(&mut self, field: &str, why: impl Into<String>) {
        self.ok = false;
        self.c.rule(self.index, self.label, field, why);
    }

    fn check_with<T>(
        &mut self,
        field: &str,
        value: Option<&String>,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match f(value?) {
            Ok(t) => Some(t),
            Err(why) => {
                self.err(field, why);
                None
            }
        }
    }

    fn check(
        &mut self,
        d: &RuleDoc,
        present: Present,
        opts: &ValidateOptions,
    ) -> Option<CompiledRule> {
        if present.typed(Field::Id) {
            if let Err(why) = pattern::check_id(&d.id) {
                self.err("id", why);
            }
        }
        let icp = d.icp == Some(true);
        let http_fields = [
            Field::Host,
            Field::Method,
            Field::PathPrefix,
            Field::PathExact,
            Field::PathGlob,
            Field::PathRegex,
        ];
        let has_http_field = http_fields.iter().any(|&f| present.has(f));

        let host = self.check_with("host", d.host.as_ref(), HostPattern::parse);
        let sni = self.check_with("sni", d.sni.as_ref(), HostPattern::parse);
        if present.has(Field::Sni) {
            if has_http_field {
                self.err(
                    "sni",
                    "cannot be combined with host, method or path fields: sni matches TLS \
                     connections only, they match HTTP requests and ICP queries only",
                );
            }
            if icp {
                self.err(
                    "sni",
                    "not allowed with icp: true (ICP queries carry no SNI)",
                );
            }
        }
        if icp && present.has(Field::Method) {
            self.err(
                "method",
                "not allowed with icp: true (ICP queries have no method)",
            );
        }
        let method = self.check_with("method", d.method.as_ref(), |m| {
            pattern::check_method(m).map(|()| Box::<str>::from(m))
        });
        let path_prefix = self.check_with("path_prefix", d.path_prefix.as_ref(), |p| {
            pattern::check_plain_path(p).map(|()| Box::<str>::from(p))
        });
        let path_exact = self.check_with("path_exact", d.path_exact.as_ref(), |p| {
            pattern::check_plain_path(p).map(|()| Box::<str>::from(p))
        });
        let path_glob = self.check_with("path_glob", d.path_glob.as_ref(), Glob::parse);
        let path_regex = self.check_with("path_regex", d.path_regex.as_ref(), compile_regex);

        let bad_icp_type = present.has(Field::Icp) && !present.typed(Field::Icp);
        if !has_http_field && !present.has(Field::Sni) && !icp && !bad_icp_type {
            self.err(
                "match",
                "no match field: give at least one of host, sni, method, path_prefix, \
                 path_exact, path_glob, path_regex or icp: true",
            );
        }

        let action = match (present.has(Field::Mark), present.has(Field::UrlHash)) {
            (true, true) => {
                self.err(
                    "url_hash",
                    "cannot be combined with mark: give exactly one of mark or url_hash",
                );
                None
            }
            (false, false) => {
                self.err(
                    "mark",
                    "missing action: give exactly one of mark or url_hash",
                );
                None
            }
            (true, false) => d.mark.and_then(|m| match check_mark(m, opts) {
                Ok(()) => Some(Action::Mark(m)),
                Err(why) => {
                    self.err("mark", why);
                    None
                }
            }),
            (false, true) => d
                .url_hash
                .as_ref()
                .and_then(|h| self.check_url_hash(h, opts)),
        };

        let proto = if present.has(Field::Sni) {
            RuleProto::Tls
        } else if icp {
            RuleProto::Icp
        } else {
            RuleProto::Http
        };
        if !self.ok {
            return None;
        }
        Some(CompiledRule {
            proto,
            name: if proto == RuleProto::Tls { sni } else { host },
            method,
            path_prefix,
            path_exact,
            path_glob,
            path_regex,
            action: action?,
        })
    }

    fn check_url_hash(&mut self, h: &UrlHashDoc, opts: &ValidateOptions) -> Option<Action> {
        let ok_before = self.ok;
        self.ok = true;
        let n = h.marks.len();
        if n == 0 {
            self.err("url_hash.marks", "must not be empty");
        }
        if n > MAX_HASH_MEMBERS {
            self.err(
                "url_hash.marks",
                format!("{n} marks, at most {MAX_HASH_MEMBERS} are supported"),
            );
        }
        // Duplicates are reported at every later position, naming the first one.
        let mut first_at: HashMap<u32, usize> = HashMap::with_capacity(n);
        for (i, &m) in h.marks.iter().enumerate() {
            if let Err(why) = check_mark(m, opts) {
                self.err(&format!("url_hash.marks[{i}]"), why);
            }
            if let Some(&first) = first_at.get(&m) {
                self.err(
                    &format!("url_hash.marks[{i}]"),
                    format!("duplicate mark {m} (also at url_hash.marks[{first}])"),
                );
            } else {
                first_at.insert(m, i);
            }
        }
        if let Some(members) = &h.members {
            if members.len() != n {
                self.err(
                    "url_hash.members",
                    format!(
                        "{} names for {n} marks: give one member name per mark",
                        members.len()
                    ),
                );
            }
            let mut first_at: HashMap<&str, usize> = HashMap::with_capacity(members.len());
            for (i, name) in members.iter().enumerate() {
                let field = format!("url_hash.members[{i}]");
                if name.is_empty() {
                    self.err(&field, "must not be empty");
                } else if name.len() > MAX_MEMBER_NAME_LEN {
                    self.err(
                        &field,
                        format!("longer than {MAX_MEMBER_NAME_LEN} characters"),
                    );
                } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    self.err(&field, "whitespace or control characters are not allowed");
                }
                if let Some(&first) = first_at.get(name.as_str()) {
                    self.err(
                        &field,
                        format!(
                            "duplicate member name (also at url_hash.members[{first}]): \
                             members of one name hash alike"
                        ),
                    );
                } else {
                    first_at.insert(name, i);
                }
            }
        }
        if let Some(weights) = &h.weights {
            let mut weights_ok = true;
            if weights.len() != n {
                self.err(
                    "url_hash.weights",
                    format!(
                        "{} weights for {n} marks: give one weight per mark",
                        weights.len()
                    ),
                );
                weights_ok = false;
            }
            for (i, &w) in weights.iter().enumerate() {
                if !(1..=MAX_WEIGHT).contains(&w) {
                    self.err(
                        &format!("url_hash.weights[{i}]"),
                        format!("{w} is outside 1..={MAX_WEIGHT}"),
                    );
                    weights_ok = false;
                }
            }
            if weights_ok {
                let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
                for (i, &w) in weights.iter().enumerate() {
                    if (f64::from(w) / total as f64 * 1000.0).floor() == 0.0 {
                        self.err(
                            &format!("url_hash.weights[{i}]"),
                            format!(
                                "weight {w} is under 0.1% of the total {total}: Squid CARP gives \
                                 such a member no share, it would never be chosen"
                            ),
                        );
                    }
                }
            }
        }
        let this_ok = self.ok;
        self.ok = ok_before && this_ok;
        if !this_ok {
            return None;
        }
        let names: Vec<String> = match &h.members {
            Some(m) => m.clone(),
            None => h.marks.iter().map(u32::to_string).collect(),
        };
        match Carp::new(&names, h.weights.as_deref()) {
            Ok(carp) => Some(Action::Hash {
                marks: h.marks.clone().into_boxed_slice(),
                carp,
            }),
            Err(e) => {
                self.err("url_hash", e.to_string());
                None
            }
        }
    }
}

fn compile_regex(src: &str) -> Result<regex::Regex, String> {
    if src.len() > MAX_REGEX_LEN {
        return Err(format!("longer than {MAX_REGEX_LEN} characters"));
    }
    regex::RegexBuilder::new(src)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => {
                format!("regex too big: its compiled form exceeds the limit of {limit} bytes")
            }
            regex::Error::Syntax(msg) => {
                // The message is a multi-line caret diagram; its "error: …" line says it all.
                let why = msg
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("error: "))
                    .map_or_else(|| one_line(&msg), str::to_string);
                format!("invalid regex: {why}")
            }
            other => format!("invalid regex: {}", one_line(&other.to_string())),
        })
}
