//! Pure protocol parsers over `&[u8]`: no I/O, no allocation beyond the extracted key, no panics.
//!
//! Every parser answers with [`Parsed`]: the key was found, the bytes are not this protocol, or the
//! key is not complete in the bytes given (an HTTP header block or a TLS ClientHello can span several
//! TCP segments; the caller appends the next segment and asks again).
//!
//! - [`ip`]: IPv4 / IPv6 (extension headers walked) with TCP / UDP → flow tuple and L4 payload.
//! - [`http`]: HTTP/1.x request line and Host (RFC 9112), via `httparse`.
//! - [`tls`]: TLS ClientHello server_name (RFC 8446 §4.1.2, RFC 6066 §3).
//! - [`icp`]: ICP v2 messages (RFC 2186).

pub mod http;
pub mod icp;
pub mod ip;
pub mod tls;

/// The outcome of parsing a (possibly partial) first payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The key is complete and was extracted.
    Key(T),
    /// These bytes are not (a valid instance of) this protocol; more bytes will not help.
    NotThisProtocol(Reject),
    /// The bytes so far are a valid prefix of this protocol, but the key is not complete yet.
    NeedMore,
}

/// Why a payload was rejected: a short static reason, cheap on the packet path and printable by
/// `l7mark explain` and in counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject(pub &'static str);

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl<T> Parsed<T> {
    /// Map the key, keeping the other outcomes.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Parsed<U> {
        match self {
            Parsed::Key(k) => Parsed::Key(f(k)),
            Parsed::NotThisProtocol(r) => Parsed::NotThisProtocol(r),
            Parsed::NeedMore => Parsed::NeedMore,
        }
    }
}
