//! The rules document, its validation, and the compiled, indexed rule table.
//!
//! # The document
//!
//! The rules are one JSON document — the same document the REST API serves — with a default mark
//! and an ordered list of rules ([`RulesDoc`], [`RuleDoc`], [`UrlHashDoc`]):
//!
//! ```json
//! { "default_mark": 100,
//!   "rules": [
//!     {"id": "img",  "host": "static.example.com", "path_prefix": "/img/", "mark": 110},
//!     {"id": "org",  "host": "*.example.org", "mark": 111},
//!     {"id": "html", "path_glob": "*.html", "mark": 112},
//!     {"id": "tls",  "sni": "secure.example.com", "mark": 113},
//!     {"id": "cache","icp": true, "url_hash": {"marks": [120, 121, 122]}},
//!     {"id": "cdn",  "host": "cdn.example.net", "url_hash": {"marks": [120, 121, 122]}} ] }
//! ```
//!
//! Parsing then serializing gives back the same fields in a stable order (the order of the
//! [`RuleDoc`] fields); absent optional fields stay absent.
//!
//! # Matching
//!
//! A rule matches when **all** its match fields match; the **first** matching rule in document
//! order wins; when none matches the decision is `default_mark` with no rule.
//!
//! | field | matches | applies to |
//! |---|---|---|
//! | `host` | exact name, ASCII case-insensitive; or `*.suffix`, which matches subdomains only (`*.example.org` matches `a.example.org` and `a.b.example.org`, not `example.org`) | HTTP, ICP |
//! | `sni` | same syntax and semantics as `host`, against the TLS ClientHello server_name | TLS |
//! | `method` | exact token, case-sensitive (RFC 9110 §9.1) | HTTP |
//! | `path_prefix` | the path starts with it (byte-wise, case-sensitive) | HTTP, ICP |
//! | `path_exact` | the path equals it | HTTP, ICP |
//! | `path_glob` | whole-path glob; `*` matches any run of characters, `/` included; every other character is literal | HTTP, ICP |
//! | `path_regex` | [`regex`] syntax, **unanchored** (`is_match`, like most load balancers: write `^…$` to anchor) | HTTP, ICP |
//! | `icp` | `true`: the rule matches ICP queries (and only those) | ICP |
//!
//! - **Protocols.** An HTTP request is matched only by rules without `sni` and without
//!   `icp: true`; a TLS connection only by rules with `sni` (so `sni` cannot be combined with
//!   `host`/`method`/path fields — validation rejects that rule, it could never match); an ICP
//!   query only by rules with `icp: true`, using the host and path of the query URL (`method` and
//!   `sni` are rejected together with `icp`).
//! - **Paths** are matched **without the query string**: everything from the first `?` is ignored
//!   by `path_*` fields (so a `?` in a path pattern is rejected: it could never match). The URL
//!   hash, in contrast, hashes the full canonical URL including the query.
//! - **Hosts** in a [`Subject`] may come in any case, with a trailing `:port` and one trailing
//!   dot; matching ignores all three without allocating (the lower-casing goes through a stack
//!   buffer). Names longer than 253 bytes match no `host`/`sni` pattern.
//!
//! # Actions
//!
//! Exactly one of `mark` (a fixed fwmark) or `url_hash` (one of several marks chosen by a
//! Squid-CARP-compatible hash of the URL — of the SNI for TLS —, see [`hash`] and [`url`]).
//! Marks are never 0 (0 is "no mark" to the kernel) and, with [`ValidateOptions::mark_range`],
//! must lie within that range. [`Table::decide_with`] lets a `url_hash` rule skip marks that are
//! currently unavailable, moving only their URLs.
//!
//! # Validation
//!
//! [`RulesDoc::from_json`] checks the shape (unknown fields at any level, JSON types, duplicate
//! keys, missing fields), [`Table::compile`] the values; [`Table::from_json`] does both and lists
//! every problem of both kinds. Each problem is one line, `rule <id>: <field>: <why>` (a rule
//! without a usable id is named `rule #<index>`), or `<field>: <why>` for document-level
//! problems. See [`Problem`] and [`limits`].
//!
//! # Example
//!
//! ```
//! use l7mark::rules::{Subject, Table, ValidateOptions};
//! use l7mark::rules::url::{canonical_http_url, split_icp_url};
//!
//! let json = br#"{"default_mark": 100, "rules": [
//!     {"id": "org", "host": "*.example.org", "mark": 111},
//!     {"id": "cache", "icp": true, "url_hash": {"marks": [120, 121, 122]}},
//!     {"id": "cdn", "host": "cdn.example.net", "url_hash": {"marks": [120, 121, 122]}}]}"#;
//! let table = Table::from_json(json, &ValidateOptions { mark_range: Some(100..=199) })?;
//!
//! let d = table.decide(&Subject::http(Some("www.example.org"), Some("GET"), Some("/"), None));
//! assert_eq!((d.rule, d.mark), (Some(0), 111));
//!
//! // One URL, one cache: as an HTTP request and as an ICP query.
//! let url = canonical_http_url("cdn.example.net", None, "/a/b.html");
//! let http = table.decide(&Subject::http(Some("cdn.example.net"), Some("GET"), Some("/a/b.html"), Some(&url)));
//! let icp_url = split_icp_url("http://cdn.example.net/a/b.html").ok_or("bad ICP URL")?;
//! let icp = table.decide(&Subject::icp(&icp_url));
//! assert_eq!(http.mark, icp.mark);
//! assert_eq!(table.rule_ids()[http.rule.unwrap_or(0)], "cdn");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Lookup cost
//!
//! [`Table::decide`] does not scan the rules. Each rule is put into one bucket, keyed by its most
//! selective indexed field (exact host / SNI, `*.suffix` host / SNI, exact path, path prefix),
//! in a per-protocol index; rules with only `path_glob` / `path_regex` / `method` / `icp` go to a
//! short "unindexed" list that is scanned linearly. A lookup probes the buckets the subject can
//! hit — one exact-name probe, one probe per label suffix of the name, one exact-path probe, one
//! probe per distinct prefix length — and fully evaluates the candidates of each bucket in
//! ascending rule order, stopping at the first full match or at the best match found so far, so
//! the result is exactly first-match-in-document-order. The lookup path does not allocate.

mod doc;
pub mod hash;
pub mod limits;
mod pattern;
mod table;
pub mod url;
mod validate;

pub use doc::{RuleDoc, RulesDoc, UrlHashDoc};
pub use table::{Decision, Proto, Subject, Table};
pub use validate::{Problem, ValidateOptions, ValidationErrors};
