//! ICP, the Internet Cache Protocol version 2 (RFC 2186), as Squid speaks it.
//!
//! ICP runs over UDP and each message is exactly one datagram (RFC 2186 §1-§2), so [`parse`]
//! takes one datagram payload. The key for classification is the URL of
//! an `ICP_OP_QUERY` (which cache has, or should fetch, this URL); replies carry the same URL.
//!
//! # Decisions
//! - **Version**: only 2 is accepted. RFC 2186 defines version 2; Squid sends only version 2
//!   (`ICP_VERSION_CURRENT`) and merely *tolerates* incoming version 3 (the Harvest-era variant,
//!   with undocumented semantics). Version 3 is therefore rejected like any other version.
//! - **Length**: the message length field must equal the datagram length, as Squid checks
//!   (`len != header.length` → drop). A shorter buffer answers [`Parsed::NeedMore`] (the caller may
//!   hold a prefix), a longer one is rejected. RFC 2186 §2 caps messages at 16 384 octets.
//! - **URL**: RFC 2186 §3 says the payload is a "Null-Terminated URL". The NUL must lie inside the
//!   message, and nothing may follow it: Squid's `createMessage` never sends trailing bytes, and
//!   its receiver would silently ignore them, so bytes after the NUL are not ICP as anyone sends
//!   it and are rejected rather than guessed at. The URL must be non-empty printable ASCII without
//!   spaces (0x21..=0x7e): Squid answers `ICP_OP_ERR` to URLs with whitespace
//!   (`icpGetRequest`), and HTTP URLs are ASCII (RFC 3986 §2).
//! - **Opcodes**: the RFC 2186 §3 opcodes are recognised; `ICP_OP_INVALID` ("a cache must never
//!   intentionally send" it) and unknown opcodes (including the experimental 12–20) are rejected.
//!   `HIT_OBJ` (URL + object) is returned as [`IcpBody::Other`].

use std::net::Ipv4Addr;

use super::{Cursor, Parsed, Reject};

/// Length of the fixed ICP header (RFC 2186 §2, figure 1).
pub const HEADER_LEN: usize = 20;
/// RFC 2186 §2: "ICP messages MUST not exceed 16,384 octets in length."
pub const MAX_MESSAGE_LEN: usize = 16_384;
/// The only accepted version (RFC 2186).
pub const VERSION_2: u8 = 2;
/// Options flag: the requester accepts `ICP_OP_HIT_OBJ` (RFC 2186 §4).
pub const FLAG_HIT_OBJ: u32 = 0x8000_0000;
/// Options flag: the requester wants the source RTT in Option Data (RFC 2186 §4).
pub const FLAG_SRC_RTT: u32 = 0x4000_0000;

// The header (RFC 2186 §2, figure 1) is read in order with a cursor:
//   0 opcode u8 | 1 version u8 | 2 message length u16 | 4 request number u32 |
//   8 options u32 | 12 option data u32 | 16 sender host address u32 | 20 payload

/// ICP opcodes (RFC 2186 §3), with their wire numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// `ICP_OP_INVALID`: a placeholder to detect zero-filled messages; never sent, never accepted.
    Invalid = 0,
    /// `ICP_OP_QUERY`: "do you have this URL?"; payload is requester address + URL.
    Query = 1,
    /// `ICP_OP_HIT`: the object is cached and fresh.
    Hit = 2,
    /// `ICP_OP_MISS`: not cached; the sender may fetch it from this cache.
    Miss = 3,
    /// `ICP_OP_ERR`: the query could not be parsed or handled.
    Err = 4,
    /// `ICP_OP_SECHO`: a query bounced off an origin server's echo port.
    Secho = 10,
    /// `ICP_OP_DECHO`: a query bounced off a non-ICP cache's echo port.
    Decho = 11,
    /// `ICP_OP_MISS_NOFETCH`: not cached, and do not fetch it from this cache now.
    MissNofetch = 21,
    /// `ICP_OP_DENIED`: the sender may not fetch this URL from this cache.
    Denied = 22,
    /// `ICP_OP_HIT_OBJ`: a hit with the object data inside the reply.
    HitObj = 23,
}

impl Opcode {
    /// The opcode for a wire value, `None` if RFC 2186 does not define it.
    pub fn from_u8(v: u8) -> Option<Opcode> {
        Some(match v {
            0 => Opcode::Invalid,
            1 => Opcode::Query,
            2 => Opcode::Hit,
            3 => Opcode::Miss,
            4 => Opcode::Err,
            10 => Opcode::Secho,
            11 => Opcode::Decho,
            21 => Opcode::MissNofetch,
            22 => Opcode::Denied,
            23 => Opcode::HitObj,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether the payload is just a NUL-terminated URL (RFC 2186 §3: "Unless otherwise noted,
    /// the payload must be the null-terminated URL"; SECHO/DECHO as well).
    fn has_url_payload(self) -> bool {
        matches!(
            self,
            Opcode::Hit
                | Opcode::Miss
                | Opcode::Err
                | Opcode::Secho
                | Opcode::Decho
                | Opcode::MissNofetch
                | Opcode::Denied
        )
    }
}

/// The payload of an ICP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcpBody {
    /// `ICP_OP_QUERY`.
    Query {
        /// Requester Host Address: the address of the cache's client. Squid sends 0.0.0.0,
        /// which RFC 2186 §3 says means "not specified".
        requester: Ipv4Addr,
        /// The queried URL.
        url: String,
    },
    /// The URL of a reply (HIT, MISS, MISS_NOFETCH, ERR, DENIED) or of a SECHO/DECHO.
    Url(String),
    /// Any other valid message (HIT_OBJ); its payload is not interpreted.
    Other,
}

/// A parsed ICP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcpMessage {
    /// Opcode.
    pub opcode: Opcode,
    /// Version (always 2).
    pub version: u8,
    /// Message length, equal to the datagram length.
    pub length: u16,
    /// Request Number: opaque, copied from a query into its reply.
    pub reqnum: u32,
    /// Options flags ([`FLAG_HIT_OBJ`], [`FLAG_SRC_RTT`]).
    pub options: u32,
    /// Option Data (the RTT with [`FLAG_SRC_RTT`]).
    pub option_data: u32,
    /// Sender Host Address. Squid sends 0.0.0.0; RFC 2186 §2 notes that the field is not used in
    /// practice and should not be trusted over the datagram's source address.
    pub sender: Ipv4Addr,
    /// The payload.
    pub body: IcpBody,
}

/// Why an ICP message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would exceed [`MAX_MESSAGE_LEN`] (and so the u16 length field's intent).
    #[error("ICP message of {0} bytes exceeds the 16384-byte limit")]
    TooLong(usize),
    /// The URL contains a NUL byte, which would end it early on the wire.
    #[error("URL contains a NUL byte")]
    NulInUrl,
}

fn reject<T>(why: &'static str) -> Parsed<T> {
    Parsed::NotThisProtocol(Reject(why))
}

/// Parse one UDP datagram payload as an ICP v2 message. See the module documentation for the
/// rules.
pub fn parse(buf: &[u8]) -> Parsed<IcpMessage> {
    // Check the header fields that are present even in a short buffer, so that garbage is
    // rejected at once instead of waiting for 20 bytes.
    let mut c = Cursor::new(buf);
    let opcode = match c.u8().map(Opcode::from_u8) {
        None => return Parsed::NeedMore,
        Some(None) => return reject("icp: unknown opcode"),
        Some(Some(Opcode::Invalid)) => return reject("icp: ICP_OP_INVALID"),
        Some(Some(op)) => op,
    };
    match c.u8() {
        None => return Parsed::NeedMore,
        Some(VERSION_2) => {}
        Some(_) => return reject("icp: version is not 2"),
    }
    let Some(length) = c.u16() else {
        return Parsed::NeedMore;
    };
    let len = usize::from(length);
    if len < HEADER_LEN {
        return reject("icp: length below the 20-byte header");
    }
    if len > MAX_MESSAGE_LEN {
        return reject("icp: length above 16384");
    }
    match buf.len().cmp(&len) {
        std::cmp::Ordering::Less => return Parsed::NeedMore,
        std::cmp::Ordering::Greater => return reject("icp: datagram longer than its length field"),
        std::cmp::Ordering::Equal => {}
    }
    // The whole message is present (length >= 20), so these reads cannot fail.
    let (Some(reqnum), Some(options), Some(option_data), Some(sender)) =
        (c.u32(), c.u32(), c.u32(), c.u32())
    else {
        return Parsed::NeedMore;
    };
    let mut payload = c;
    let body = match opcode {
        Opcode::Query => {
            let Some(requester) = payload.u32() else {
                return reject("icp: query without requester address");
            };
            match url(payload.rest()) {
                Ok(url) => IcpBody::Query {
                    requester: Ipv4Addr::from(requester),
                    url,
                },
                Err(r) => return Parsed::NotThisProtocol(r),
            }
        }
        op if op.has_url_payload() => match url(payload.rest()) {
            Ok(url) => IcpBody::Url(url),
            Err(r) => return Parsed::NotThisProtocol(r),
        },
        _ => IcpBody::Other,
    };
    Parsed::Key(IcpMessage {
        opcode,
        version: VERSION_2,
        length,
        reqnum,
        options,
        option_data,
        sender: Ipv4Addr::from(sender),
        body,
    })
}

/// The NUL-terminated URL that must fill `rest` exactly.
fn url(rest: &[u8]) -> Result<String, Reject> {
    let nul = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(Reject("icp: URL not NUL-terminated"))?;
    let (url, tail) = rest.split_at(nul);
    if tail.len() != 1 {
        return Err(Reject("icp: bytes after the URL's NUL"));
    }
    if url.is_empty() {
        return Err(Reject("icp: empty URL"));
    }
    if !url.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Reject("icp: URL is not printable ASCII"));
    }
    // All bytes are ASCII, so this cannot fail.
    String::from_utf8(url.to_vec()).map_err(|_| Reject("icp: URL is not printable ASCII"))
}

fn encode(
    opcode: Opcode,
    reqnum: u32,
    requester: Option<Ipv4Addr>,
    url: &str,
    trailer: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    if url.as_bytes().contains(&0) {
        return Err(EncodeError::NulInUrl);
    }
    let len = HEADER_LEN + requester.map_or(0, |_| 4) + url.len() + 1 + trailer.len();
    if len > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLong(len));
    }
    let len16 = u16::try_from(len).map_err(|_| EncodeError::TooLong(len))?;
    let mut m = Vec::with_capacity(len);
    m.push(opcode.as_u8());
    m.push(VERSION_2);
    m.extend_from_slice(&len16.to_be_bytes());
    m.extend_from_slice(&reqnum.to_be_bytes());
    // Options, option data and sender address: zero, as Squid's `createMessage` writes them for
    // a query without ICP_FLAG_SRC_RTT.
    m.extend_from_slice(&[0; 12]);
    if let Some(r) = requester {
        m.extend_from_slice(&r.octets());
    }
    m.extend_from_slice(url.as_bytes());
    m.push(0);
    m.extend_from_slice(trailer);
    Ok(m)
}

/// Encode an `ICP_OP_QUERY` the way Squid does: version 2, zero options/option data/sender, the
/// requester address, then the NUL-terminated URL. For tests, test tools and benchmarks.
pub fn encode_query(reqnum: u32, requester: Ipv4Addr, url: &str) -> Result<Vec<u8>, EncodeError> {
    encode(Opcode::Query, reqnum, Some(requester), url, &[])
}

/// Encode a reply (or SECHO/DECHO) whose payload is the NUL-terminated URL. `Opcode::Query` is
/// encoded as a query from 0.0.0.0; `Opcode::HitObj` gets an empty object (a zero 16-bit object
/// size after the URL, RFC 2186 §3).
pub fn encode_reply(opcode: Opcode, reqnum: u32, url: &str) -> Result<Vec<u8>, EncodeError> {
    match opcode {
        Opcode::Query => encode_query(reqnum, Ipv4Addr::UNSPECIFIED, url),
        Opcode::HitObj => encode(opcode, reqnum, None, url, &[0, 0]),
        _ => encode(opcode, reqnum, None, url, &[]),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const URL: &str = "http://cdn.example.net/a/b.html";

    fn rejected(buf: &[u8]) -> &'static str {
        match parse(buf) {
            Parsed::NotThisProtocol(Reject(r)) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn query_layout_matches_rfc2186() {
        let q = encode_query(0x0102_0304, Ipv4Addr::new(192, 0, 2, 7), URL).unwrap();
        assert_eq!(q.len(), 20 + 4 + URL.len() + 1);
        assert_eq!(&q[..4], &[1, 2, 0, u8::try_from(q.len()).unwrap()]);
        assert_eq!(&q[4..8], &[1, 2, 3, 4]);
        assert_eq!(&q[20..24], &[192, 0, 2, 7]);
        assert_eq!(q.last(), Some(&0));
        let m = parse(&q);
        let Parsed::Key(m) = m else { panic!("{m:?}") };
        assert_eq!(m.opcode, Opcode::Query);
        assert_eq!(m.reqnum, 0x0102_0304);
        assert_eq!(
            m.body,
            IcpBody::Query {
                requester: Ipv4Addr::new(192, 0, 2, 7),
                url: URL.into()
            }
        );
    }

    #[test]
    fn replies_round_trip() {
        for op in [
            Opcode::Hit,
            Opcode::Miss,
            Opcode::Err,
            Opcode::Secho,
            Opcode::Decho,
            Opcode::MissNofetch,
            Opcode::Denied,
        ] {
            let r = encode_reply(op, 9, URL).unwrap();
            let Parsed::Key(m) = parse(&r) else { panic!() };
            assert_eq!(m.opcode, op);
            assert_eq!(m.body, IcpBody::Url(URL.into()));
            assert_eq!(Opcode::from_u8(op.as_u8()), Some(op));
        }
        let r = encode_reply(Opcode::HitObj, 9, URL).unwrap();
        assert_eq!(parse(&r).key().map(|m| &m.body), Some(&IcpBody::Other));
        let r = encode_reply(Opcode::Query, 9, URL).unwrap();
        assert!(matches!(
            parse(&r).key().map(|m| &m.body),
            Some(IcpBody::Query { requester, .. }) if requester.is_unspecified()
        ));
    }

    #[test]
    fn header_rejections() {
        let good = encode_query(1, Ipv4Addr::UNSPECIFIED, URL).unwrap();
        let mut b = good.clone();
        b[0] = 0;
        assert_eq!(rejected(&b), "icp: ICP_OP_INVALID");
        for op in [5u8, 12, 20, 24, 255] {
            b[0] = op;
            assert_eq!(rejected(&b), "icp: unknown opcode");
            // Even a 1-byte prefix is rejected at once.
            assert_eq!(rejected(&b[..1]), "icp: unknown opcode");
        }
        for v in [0u8, 1, 3, 0x80] {
            let mut b = good.clone();
            b[1] = v;
            assert_eq!(rejected(&b), "icp: version is not 2");
            assert_eq!(rejected(&b[..2]), "icp: version is not 2");
        }
        let mut b = good.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(rejected(&b), "icp: length below the 20-byte header");
        let mut b = good.clone();
        b[2..4].copy_from_slice(&16_385u16.to_be_bytes());
        assert_eq!(rejected(&b), "icp: length above 16384");
        let mut b = good.clone();
        b.push(0);
        assert_eq!(rejected(&b), "icp: datagram longer than its length field");
        // Length field larger than the datagram: need more (the caller decides what a short
        // datagram means; UDP does not deliver prefixes).
        assert_eq!(parse(&good[..good.len() - 1]), Parsed::NeedMore);
    }

    #[test]
    fn payload_rejections() {
        // Query too short for the requester address.
        let mut b = encode_reply(Opcode::Hit, 1, "x").unwrap();
        b[0] = Opcode::Query.as_u8();
        assert_eq!(rejected(&b), "icp: query without requester address");
        // NUL missing (the last byte replaced).
        let mut b = encode_reply(Opcode::Miss, 1, URL).unwrap();
        *b.last_mut().unwrap() = b'x';
        assert_eq!(rejected(&b), "icp: URL not NUL-terminated");
        // Bytes after the NUL.
        let mut b = encode_reply(Opcode::Miss, 1, URL).unwrap();
        b.extend_from_slice(b"junk");
        let len = u16::try_from(b.len()).unwrap();
        b[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(rejected(&b), "icp: bytes after the URL's NUL");
        // Empty URL.
        let b = encode_reply(Opcode::Miss, 1, "").unwrap();
        assert_eq!(rejected(&b), "icp: empty URL");
        let b = encode_query(1, Ipv4Addr::UNSPECIFIED, "").unwrap();
        assert_eq!(rejected(&b), "icp: empty URL");
        // Control bytes, space, DEL, non-ASCII.
        for bad in ["http://a/\r\n", "http://a b/", "http://a/\x7f", "http://é/"] {
            let b = encode_query(1, Ipv4Addr::UNSPECIFIED, bad).unwrap();
            assert_eq!(rejected(&b), "icp: URL is not printable ASCII", "{bad:?}");
        }
    }

    #[test]
    fn encoder_limits() {
        assert_eq!(
            encode_query(1, Ipv4Addr::UNSPECIFIED, "a\0b"),
            Err(EncodeError::NulInUrl)
        );
        let long = "a".repeat(MAX_MESSAGE_LEN);
        assert_eq!(
            encode_reply(Opcode::Hit, 1, &long),
            Err(EncodeError::TooLong(MAX_MESSAGE_LEN + 21))
        );
        // The largest reply that fits.
        let fits = "a".repeat(MAX_MESSAGE_LEN - HEADER_LEN - 1);
        let r = encode_reply(Opcode::Hit, 1, &fits).unwrap();
        assert_eq!(r.len(), MAX_MESSAGE_LEN);
        assert!(matches!(parse(&r), Parsed::Key(_)));
    }

    #[test]
    fn short_prefixes_need_more() {
        let good = encode_query(7, Ipv4Addr::UNSPECIFIED, URL).unwrap();
        for n in 0..good.len() {
            assert_eq!(parse(&good[..n]), Parsed::NeedMore, "prefix {n}");
        }
    }
}
