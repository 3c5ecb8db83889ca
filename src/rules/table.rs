//! The compiled rule table: immutable, indexed, shared by the packet threads through an `Arc`.

use std::collections::{BTreeSet, HashMap};

use super::doc::RulesDoc;
use super::hash::Carp;
use super::limits::MAX_HOST_LEN;
use super::pattern::{Glob, HostPattern};
use super::url::{IcpUrlParts, split_host_port};
use super::validate::{
    Collector, Present, ValidateOptions, ValidationErrors, check_values, parse_document,
};

/// The protocol of a [`Subject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// An HTTP/1.x request: matched by `host`, `method` and path fields.
    Http,
    /// A TLS ClientHello: matched by `sni` only.
    Tls,
    /// An ICP query (RFC 2186): matched by rules with `icp: true`, on the URL's host and path.
    Icp,
}

/// What is being classified: the keys extracted from a flow's first payload.
///
/// Fields that do not apply to the protocol are ignored (`sni` for HTTP, `host`/`method`/`path`
/// for TLS, …). A rule whose field needs a value the subject lacks does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    /// The protocol.
    pub proto: Proto,
    /// HTTP `Host` / ICP URL host. Any case; a trailing `:port` and one trailing dot are ignored.
    pub host: Option<&'a str>,
    /// HTTP method, as sent (case-sensitive).
    pub method: Option<&'a str>,
    /// Origin-form request target (HTTP) or URL path (ICP); may include `?query`, which the
    /// path fields ignore.
    pub path: Option<&'a str>,
    /// TLS SNI server name. Any case; one trailing dot is ignored.
    pub sni: Option<&'a str>,
    /// The canonical URL ([`super::url::canonical_http_url`], [`IcpUrlParts::canonical`]): the
    /// `url_hash` key for HTTP and ICP. If `None`, the key is `http://` + host (lower-case,
    /// without port) + path, which equals the canonical URL when the port is the default one.
    pub url: Option<&'a str>,
}

// === impl Subject ===

impl<'a> Subject<'a> {
    /// An HTTP request.
    pub fn http(
        host: Option<&'a str>,
        method: Option<&'a str>,
        path: Option<&'a str>,
        url: Option<&'a str>,
    ) -> Self {
        Subject {
            proto: Proto::Http,
            host,
            method,
            path,
            sni: None,
            url,
        }
    }

    /// A TLS ClientHello with this SNI (`None`: the client sent none).
    pub fn tls(sni: Option<&'a str>) -> Self {
        Subject {
            proto: Proto::Tls,
            host: None,
            method: None,
            path: None,
            sni,
            url: None,
        }
    }

    /// An ICP query for this URL (see [`super::url::split_icp_url`]).
    pub fn icp(url: &'a IcpUrlParts) -> Self {
        Subject {
            proto: Proto::Icp,
            host: Some(&url.host),
            method: None,
            path: Some(&url.path),
            sni: None,
            url: Some(&url.canonical),
        }
    }
}

/// The outcome of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The matching rule (index into [`Table::rule_ids`]), `None` for the default mark.
    pub rule: Option<usize>,
    /// The fwmark to set.
    pub mark: u32,
}

/// Which protocol a compiled rule applies to (exactly one, see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleProto {
    Http,
    Tls,
    Icp,
}

/// What a matching rule does.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Mark(u32),
    Hash { marks: Box<[u32]>, carp: Carp },
}

/// A validated rule, ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub(crate) proto: RuleProto,
    /// `host` for HTTP / ICP rules, `sni` for TLS rules.
    pub(crate) name: Option<HostPattern>,
    pub(crate) method: Option<Box<str>>,
    pub(crate) path_prefix: Option<Box<str>>,
    pub(crate) path_exact: Option<Box<str>>,
    pub(crate) path_glob: Option<Glob>,
    pub(crate) path_regex: Option<regex::Regex>,
    pub(crate) action: Action,
}

/// The subject, normalized once per lookup.
struct Ctx<'a> {
    /// Host (HTTP, ICP) or SNI (TLS), lower-case, port-less.
    name: Name<'a>,
    method: Option<&'a str>,
    /// The path without its query.
    path: Option<&'a str>,
}

#[derive(Clone, Copy)]
enum Name<'a> {
    Absent,
    /// Present but longer than any pattern can be: matches no `host`/`sni` pattern.
    Unmatchable,
    Lower(&'a str),
}

// === impl CompiledRule ===

impl CompiledRule {
    /// Do all match fields match? (The protocol was checked by the caller's choice of index.)
    fn matches(&self, ctx: &Ctx<'_>) -> bool {
        if let Some(p) = &self.name {
            match ctx.name {
                Name::Lower(n) if p.matches(n) => {}
                _ => return false,
            }
        }
        if let Some(m) = &self.method {
            if ctx.method != Some(&**m) {
                return false;
            }
        }
        let has_path_field = self.path_prefix.is_some()
            || self.path_exact.is_some()
            || self.path_glob.is_some()
            || self.path_regex.is_some();
        if !has_path_field {
            return true;
        }
        let Some(path) = ctx.path else {
            return false;
        };
        self.path_prefix
            .as_ref()
            .is_none_or(|p| path.starts_with(&**p))
            && self.path_exact.as_ref().is_none_or(|p| path == &**p)
            && self.path_glob.as_ref().is_none_or(|g| g.matches(path))
            && self.path_regex.as_ref().is_none_or(|r| r.is_match(path))
    }
}

/// A bucket map: key → rule indexes in ascending order.
type Buckets = HashMap<Box<str>, Vec<usize>, KeyHashBuilder>;

/// The buckets of one protocol.
#[derive(Debug, Default)]
struct Index {
    exact_name: Buckets,
    suffix_name: Buckets,
    /// Bit `k` set: some key of `suffix_name` has `k` labels (names have at most 127), so a
    /// lookup only probes the suffixes of the subject's name that could be keys.
    suffix_labels: u128,
    exact_path: Buckets,
    prefix_path: Buckets,
    /// Distinct lengths of the keys of `prefix_path`, ascending.
    prefix_lens: Vec<usize>,
    /// Rules with no indexable field, scanned linearly.
    unindexed: Vec<usize>,
}

/// Builds [`KeyHasher`]s with a per-table random seed.
#[derive(Debug, Clone)]
struct KeyHashBuilder {
    seed: u64,
}

impl Default for KeyHashBuilder {
    fn default() -> Self {
        // A per-process random seed from std's RandomState: keys come from the (trusted) rules
        // document, but a seed still keeps the bucket layout unpredictable from outside.
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            0x6c37_6d61_726bu64,
        );
        KeyHashBuilder { seed }
    }
}

impl std::hash::BuildHasher for KeyHashBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { h: self.seed }
    }
}

/// A fast word-at-a-time string hasher for the bucket maps.
///
/// `std`'s SipHash costs ~20 ns per short key and a lookup probes several keys (the name, its
/// label suffixes, each prefix length); this multiply-xor hash with a final avalanche is several
/// times cheaper. It is not DoS-resistant in the cryptographic sense, which is acceptable here:
/// the keys are inserted only from the rules document, and packets only look keys up.
#[derive(Debug, Clone)]
struct KeyHasher {
    h: u64,
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.h = (self.h ^ u64::from_le_bytes(w))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        // The length goes into the last word so "a" and "a\0" differ.
        self.h = (self.h ^ u64::from_le_bytes(w) ^ ((bytes.len() as u64) << 56))
            .wrapping_mul(K)
            .rotate_left(29);
    }

    fn finish(&self) -> u64 {
        // fmix64 from MurmurHash3: every input bit affects every output bit, which hashbrown
        // needs (it uses both the top 7 bits and the low bits).
        let mut x = self.h;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        x
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Bucket {
    // Declaration order is the tie-break between equally full buckets: most selective first.
    ExactName,
    ExactPath,
    SuffixName,
    PrefixPath,
}

impl CompiledRule {
    /// The indexable fields of the rule, as (bucket, key).
    fn index_keys(&self) -> impl Iterator<Item = (Bucket, &str)> {
        let name = self.name.as_ref().map(|p| match p {
            HostPattern::Exact(e) => (Bucket::ExactName, &**e),
            HostPattern::Suffix(s) => (Bucket::SuffixName, &**s),
        });
        let exact = self.path_exact.as_deref().map(|p| (Bucket::ExactPath, p));
        let prefix = self.path_prefix.as_deref().map(|p| (Bucket::PrefixPath, p));
        name.into_iter().chain(exact).chain(prefix)
    }
}

// === impl Index ===

impl Index {
    /// Build from `(rule index, rule)` in ascending order. Each rule goes into the bucket of its
    /// indexable field that is shared by the fewest rules (ties: the most selective kind), so a
    /// popular host with many distinct paths is indexed by path, and vice versa.
    fn build<'r>(rules: impl Iterator<Item = (usize, &'r CompiledRule)> + Clone) -> Index {
        let mut counts: HashMap<(Bucket, &str), usize> = HashMap::new();
        for (_, r) in rules.clone() {
            for key in r.index_keys() {
                *counts.entry(key).or_default() += 1;
            }
        }
        let mut idx = Index::default();
        for (i, r) in rules {
            let best = r
                .index_keys()
                .min_by_key(|&(bucket, key)| (counts.get(&(bucket, key)).copied(), bucket));
            let Some((bucket, key)) = best else {
                idx.unindexed.push(i);
                continue;
            };
            let map = match bucket {
                Bucket::ExactName => &mut idx.exact_name,
                Bucket::SuffixName => &mut idx.suffix_name,
                Bucket::ExactPath => &mut idx.exact_path,
                Bucket::PrefixPath => &mut idx.prefix_path,
            };
            map.entry(key.into()).or_default().push(i);
        }
        let lens: BTreeSet<usize> = idx.prefix_path.keys().map(|k| k.len()).collect();
        idx.prefix_lens = lens.into_iter().collect();
        for key in idx.suffix_name.keys() {
            let labels = key.bytes().filter(|&b| b == b'.').count() + 1;
            // Valid names have at most 127 labels; a larger count cannot occur, saturate anyway.
            idx.suffix_labels |= 1u128 << labels.min(127);
        }
        idx
    }
}

/// The compiled rule table. Immutable; `Send + Sync`; share it as `Arc<Table>` and swap the
/// `Arc` to replace the rules.
#[derive(Debug)]
pub struct Table {
    doc: RulesDoc,
    ids: Vec<String>,
    rules: Vec<CompiledRule>,
    http: Index,
    tls: Index,
    icp: Index,
    marks: BTreeSet<u32>,
}

// === impl Table ===

impl Table {
    /// Validate the values of a document and compile it. Lists every problem (see the module
    /// documentation for the format).
    pub fn compile(doc: &RulesDoc, opts: &ValidateOptions) -> Result<Table, ValidationErrors> {
        let mut c = Collector::default();
        if doc.rules.len() > super::limits::MAX_RULES {
            return Err(ValidationErrors::from_problems(vec![super::Problem {
                rule: None,
                field: "rules".into(),
                why: format!(
                    "{} rules, at most {} are supported",
                    doc.rules.len(),
                    super::limits::MAX_RULES
                ),
            }]));
        }
        let rules: Vec<_> = doc.rules.iter().map(|r| (r, Present::of(r))).collect();
        let compiled = check_values(Some(doc.default_mark), &rules, opts, &mut c);
        if !c.is_empty() {
            return Err(c.finish());
        }
        Ok(Table::build(doc.clone(), compiled))
    }

    /// Parse, validate and compile a JSON document in one go, listing the problems of its shape
    /// and of its values together.
    pub fn from_json(bytes: &[u8], opts: &ValidateOptions) -> Result<Table, ValidationErrors> {
        let (doc, compiled) = parse_document(bytes).check_all(opts)?;
        Ok(Table::build(doc, compiled))
    }

    fn build(doc: RulesDoc, rules: Vec<CompiledRule>) -> Table {
        // Validation compiles every rule or reports a problem; a table whose rules and ids are
        // out of step would give wrong rule ids, so this is asserted in tests and debug builds.
        debug_assert_eq!(doc.rules.len(), rules.len());
        let of = |proto: RuleProto| {
            Index::build(
                rules
                    .iter()
                    .enumerate()
                    .filter(move |(_, r)| r.proto == proto),
            )
        };
        let http = of(RuleProto::Http);
        let tls = of(RuleProto::Tls);
        let icp = of(RuleProto::Icp);
        let mut marks = BTreeSet::from([doc.default_mark]);
        for r in &rules {
            match &r.action {
                Action::Mark(m) => {
                    marks.insert(*m);
                }
                Action::Hash { marks: list, .. } => marks.extend(list.iter().copied()),
            }
        }
        Table {
            ids: doc.rules.iter().map(|r| r.id.clone()).collect(),
            doc,
            rules,
            http,
            tls,
            icp,
            marks,
        }
    }

    /// Classify a subject: the first matching rule in document order, or the default mark.
    /// Does not allocate; cost grows with the number of host labels and distinct path-prefix
    /// lengths, not with the number of rules.
    pub fn decide(&self, s: &Subject<'_>) -> Decision {
        self.decide_inner(s, None)
    }

    /// [`Table::decide`], but a `url_hash` rule only picks among the marks for which
    /// `available(mark)` is true (e.g. whose IPVS service has a live real server). Like Squid
    /// skipping a dead CARP peer, only the URLs owned by unavailable marks move. If no mark of
    /// the list is available, the choice is the same as [`Table::decide`]'s. `mark` rules and
    /// the default mark are returned whatever `available` says.
    pub fn decide_with(&self, s: &Subject<'_>, available: &dyn Fn(u32) -> bool) -> Decision {
        self.decide_inner(s, Some(available))
    }

    /// The reference lookup: evaluates every rule in document order, without the index. Same
    /// result as [`Table::decide`], cost linear in the number of rules; for tests, benchmarks
    /// and `explain`-style tools.
    pub fn decide_linear(&self, s: &Subject<'_>) -> Decision {
        let mut buf = [0u8; MAX_HOST_LEN];
        let ctx = Ctx::new(s, &mut buf);
        let proto = rule_proto(s.proto);
        for (i, r) in self.rules.iter().enumerate() {
            if r.proto == proto && r.matches(&ctx) {
                return self.act(i, s, &ctx, None);
            }
        }
        self.default_decision()
    }

    fn decide_inner(&self, s: &Subject<'_>, available: Option<&dyn Fn(u32) -> bool>) -> Decision {
        let mut buf = [0u8; MAX_HOST_LEN];
        let ctx = Ctx::new(s, &mut buf);
        let idx = match s.proto {
            Proto::Http => &self.http,
            Proto::Tls => &self.tls,
            Proto::Icp => &self.icp,
        };
        // The answer is the smallest index of a fully matching rule. Every rule that can match
        // sits in exactly one of the lists probed below, each sorted, so scanning each list up
        // to its first match — and never past the best match so far — finds it.
        let mut best = usize::MAX;
        let mut scan = |list: &[usize]| {
            for &i in list {
                if i >= best {
                    break;
                }
                if self.rules[i].matches(&ctx) {
                    best = i;
                    break;
                }
            }
        };
        if let Name::Lower(name) = ctx.name {
            if let Some(list) = idx.exact_name.get(name) {
                scan(list);
            }
            if idx.suffix_labels != 0 {
                // `*.suffix` rules: probe the proper label suffixes of the name, right to left,
                // skipping label counts no key has.
                let mut labels = 0usize;
                for (dot, _) in name.rmatch_indices('.') {
                    labels += 1;
                    if labels > 127 {
                        break;
                    }
                    if idx.suffix_labels & (1u128 << labels) == 0 {
                        continue;
                    }
                    if let Some(list) = idx.suffix_name.get(&name[dot + 1..]) {
                        scan(list);
                    }
                }
            }
        }
        if let Some(path) = ctx.path {
            if let Some(list) = idx.exact_path.get(path) {
                scan(list);
            }
            for &len in &idx.prefix_lens {
                if len > path.len() {
                    break;
                }
                if let Some(list) = path.get(..len).and_then(|p| idx.prefix_path.get(p)) {
                    scan(list);
                }
            }
        }
        scan(&idx.unindexed);
        if best == usize::MAX {
            self.default_decision()
        } else {
            self.act(best, s, &ctx, available)
        }
    }

    fn default_decision(&self) -> Decision {
        Decision {
            rule: None,
            mark: self.doc.default_mark,
        }
    }

    fn act(
        &self,
        i: usize,
        s: &Subject<'_>,
        ctx: &Ctx<'_>,
        available: Option<&dyn Fn(u32) -> bool>,
    ) -> Decision {
        let mark = match &self.rules[i].action {
            Action::Mark(m) => *m,
            Action::Hash { marks, carp } => {
                let raw = match s.proto {
                    Proto::Tls => s.sni,
                    Proto::Http | Proto::Icp => s.host,
                };
                let host = match ctx.name {
                    Name::Lower(n) => n,
                    Name::Absent | Name::Unmatchable => raw.unwrap_or(""),
                };
                let key: [&[u8]; 3] = match (s.proto, s.url) {
                    (Proto::Tls, _) => [host.as_bytes(), b"", b""],
                    (_, Some(url)) => [url.as_bytes(), b"", b""],
                    (_, None) => [b"http://", host.as_bytes(), s.path.unwrap_or("").as_bytes()],
                };
                let slot = available
                    .and_then(|up| {
                        carp.select_where(&key, |slot| marks.get(slot).is_some_and(|&m| up(m)))
                    })
                    .unwrap_or_else(|| carp.select_parts(&key));
                marks.get(slot).copied().unwrap_or(self.doc.default_mark)
            }
        };
        Decision {
            rule: Some(i),
            mark,
        }
    }

    /// Rule ids in document order: `rule_ids()[d.rule.unwrap()]` names the rule of a decision
    /// (and sizes per-rule counters).
    pub fn rule_ids(&self) -> &[String] {
        &self.ids
    }

    /// The mark for subjects no rule matches.
    pub fn default_mark(&self) -> u32 {
        self.doc.default_mark
    }

    /// Every mark a decision can yield: the default, every rule's mark and every hash list.
    pub fn marks_used(&self) -> BTreeSet<u32> {
        self.marks.clone()
    }

    /// The document this table was compiled from (what the REST API serves).
    pub fn doc(&self) -> &RulesDoc {
        &self.doc
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when the document has no rules (every decision is the default mark).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn rule_proto(p: Proto) -> RuleProto {
    match p {
        Proto::Http => RuleProto::Http,
        Proto::Tls => RuleProto::Tls,
        Proto::Icp => RuleProto::Icp,
    }
}

// === impl Ctx ===

impl<'a> Ctx<'a> {
    fn new(s: &Subject<'a>, buf: &'a mut [u8; MAX_HOST_LEN]) -> Ctx<'a> {
        let raw = match s.proto {
            Proto::Tls => s.sni,
            Proto::Http | Proto::Icp => s.host,
        };
        Ctx {
            name: raw.map_or(Name::Absent, |r| normalize_name(r, buf)),
            method: s.method,
            path: s.path.map(|p| p.split_once('?').map_or(p, |(p, _)| p)),
        }
    }
}

/// Strip a `:port` and one trailing dot, lower-case (ASCII) through `buf` if needed.
fn normalize_name<'a>(raw: &'a str, buf: &'a mut [u8; MAX_HOST_LEN]) -> Name<'a> {
    let (name, _) = split_host_port(raw);
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_HOST_LEN {
        return Name::Unmatchable;
    }
    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Name::Lower(name);
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    // ASCII lower-casing keeps UTF-8 valid, so this cannot fail; `Unmatchable` is the safe
    // answer anyway.
    match std::str::from_utf8(out) {
        Ok(s) => Name::Lower(s),
        Err(_) => Name::Unmatchable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn table_is_send_sync() {
        assert_send_sync::<Table>();
        assert_send_sync::<std::sync::Arc<Table>>();
    }

    #[test]
    fn name_normalization() {
        let mut buf = [0u8; MAX_HOST_LEN];
        let n = |raw: &str, buf: &mut [u8; MAX_HOST_LEN]| match normalize_name(raw, buf) {
            Name::Lower(s) => s.to_string(),
            Name::Unmatchable => "<unmatchable>".into(),
            Name::Absent => "<absent>".into(),
        };
        assert_eq!(n("Example.COM.", &mut buf), "example.com");
        assert_eq!(n("example.com:8080", &mut buf), "example.com");
        assert_eq!(n("[::1]:80", &mut buf), "[::1]");
        assert_eq!(n(&"a".repeat(300), &mut buf), "<unmatchable>");
    }
}
