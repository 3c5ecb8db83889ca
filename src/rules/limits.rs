//! Size limits enforced by validation.
//!
//! They keep a hostile or broken document (the REST API accepts documents from the network) from
//! exhausting memory or CPU at compile time, and keep every lookup bounded.

/// Most rules in one document.
pub const MAX_RULES: usize = 1_000_000;

/// Longest rule id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Longest host or SNI pattern, in bytes (the DNS limit for a name in text form).
pub const MAX_HOST_LEN: usize = 253;

/// Longest DNS label, in bytes.
pub const MAX_LABEL_LEN: usize = 63;

/// Longest `path_prefix`, `path_exact` or `path_glob`, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Longest `path_regex` source, in bytes.
pub const MAX_REGEX_LEN: usize = 4096;

/// Largest compiled program of one `path_regex`, in bytes ([`regex::RegexBuilder::size_limit`]).
/// Counted repetitions such as `(a{100}){100}` blow past it and are rejected at validation
/// instead of taking memory at lookup time.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Lazy-DFA cache per `path_regex` and thread ([`regex::RegexBuilder::dfa_size_limit`]).
pub const REGEX_DFA_SIZE_LIMIT: usize = 256 << 10;

/// Longest `method`, in bytes.
pub const MAX_METHOD_LEN: usize = 32;

/// Most marks in one `url_hash` list. Squid CARP gives a member no share at all when its weight
/// is under 0.1 % of the total, so more than 1000 equally weighted members cannot work.
pub const MAX_HASH_MEMBERS: usize = 1000;

/// Longest `url_hash` member name, in bytes.
pub const MAX_MEMBER_NAME_LEN: usize = 255;

/// Largest `url_hash` weight (Squid sums the weights in a C `int`).
pub const MAX_WEIGHT: u32 = 65_535;

/// Most problems listed; further ones are counted in one last line, so a document with a
/// million broken rules yields a readable answer of bounded size.
pub const MAX_PROBLEMS: usize = 10_000;
