//! The serde types of the rules document (file and REST API body alike).

use serde::{Deserialize, Serialize};

use super::validate::{self, ValidationErrors};

/// The whole rules document: a default mark and the ordered rules.
///
/// Field order in this struct is the serialization order; keep it stable, API clients diff it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesDoc {
    /// The mark given when no rule matches. Never 0; within the mark range if one is configured.
    pub default_mark: u32,
    /// The rules, in precedence order: the first matching rule wins. May be empty.
    #[serde(default)]
    pub rules: Vec<RuleDoc>,
}

/// One rule: match fields (all must match) and exactly one action (`mark` or `url_hash`).
///
/// Every match field is optional but a rule needs at least one. See the [module
/// documentation](super) for the semantics of each field and which protocol it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    /// Unique name of the rule: 1 to 64 characters of `A-Z a-z 0-9 . _ -` (URL-safe, the REST
    /// API addresses rules by it).
    pub id: String,
    /// `true`: the rule matches ICP queries only (by the host and path of the query URL).
    /// Absent or `false`: the rule never matches an ICP query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icp: Option<bool>,
    /// HTTP `Host` (or ICP URL host): `name` (exact, case-insensitive) or `*.suffix` (subdomains
    /// of `suffix` only). Never matches TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TLS SNI server name, same syntax as `host`. A rule with `sni` matches TLS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// HTTP request method, exact and case-sensitive (`GET`, `POST`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path (query string excluded) starts with this; must start with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The path (query string excluded) equals this; must start with `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    /// Whole-path glob (query string excluded): `*` matches any run of characters including `/`;
    /// every other character is literal. Must start with `/` or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_glob: Option<String>,
    /// Regular expression ([`regex`] syntax) searched in the path (query string excluded),
    /// unanchored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    /// Action: this fwmark. Exactly one of `mark` and `url_hash` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    /// Action: one of several marks, chosen by hashing the URL (the SNI for TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_hash: Option<UrlHashDoc>,
}

/// A URL-hash action: one of `marks`, chosen by Squid-CARP-compatible rendezvous hashing (see
/// [`super::hash`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlHashDoc {
    /// The candidate marks, distinct, non-empty.
    pub marks: Vec<u32>,
    /// CARP member names, one per mark (the `cache_peer` host names — or `name=` values — as
    /// written in the Squid front-ends' `squid.conf`, so that l7mark and Squid agree on the owner
    /// of each URL). Absent: the marks in decimal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// CARP weights, one per mark, 1 to 65535 (Squid `cache_peer … weight=`). Absent: all 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<u32>>,
}

// === impl RulesDoc ===

impl RulesDoc {
    /// Parse a document, checking its shape: valid JSON without duplicate keys, no unknown field
    /// at any level, the right JSON type everywhere, required fields present. Every such problem
    /// is listed, per rule. The values themselves (patterns, marks, …) are checked by
    /// [`super::Table::compile`]; [`super::Table::from_json`] does both in one pass.
    pub fn from_json(bytes: &[u8]) -> Result<RulesDoc, ValidationErrors> {
        validate::parse_document(bytes).into_doc()
    }

    /// The document as pretty-printed JSON (two-space indent, fields in declaration order).
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain structs of strings, integers and vectors cannot fail: serde_json
        // only errors on non-string map keys or failing custom `Serialize` impls.
        serde_json::to_string_pretty(self).expect("RulesDoc serializes infallibly")
    }
}
