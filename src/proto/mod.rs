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

impl<T> Parsed<T> {
    /// The key, if one was extracted.
    pub fn key(&self) -> Option<&T> {
        match self {
            Parsed::Key(k) => Some(k),
            _ => None,
        }
    }

    /// The rejection reason, if the bytes were rejected.
    pub fn reject(&self) -> Option<Reject> {
        match self {
            Parsed::NotThisProtocol(r) => Some(*r),
            _ => None,
        }
    }

    /// Whether more bytes are needed to decide.
    pub fn is_need_more(&self) -> bool {
        matches!(self, Parsed::NeedMore)
    }
}

// === impl Cursor ===

/// A bounds-checked big-endian reader over a byte slice, shared by the parsers so that no parser
/// indexes a slice directly. Every read returns `None` when the slice is too short and then leaves
/// the cursor where it was, so a caller can turn `None` into "truncated" or "need more" as its
/// protocol requires.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    /// The unread bytes.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Take the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// Take the next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.take(N)?;
        s.try_into().ok()
    }

    /// Read one byte.
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    /// Read a network-order (big-endian) u16.
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// Read a network-order (big-endian) u32.
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
}

/// Read a big-endian u16 at `off` without a cursor (fixed-offset header fields).
pub(crate) fn be16(buf: &[u8], off: usize) -> Option<u16> {
    let b = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// Read a big-endian u32 at `off` without a cursor (fixed-offset header fields).
pub(crate) fn be32(buf: &[u8], off: usize) -> Option<u32> {
    let b: [u8; 4] = buf.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reads_and_refuses_short_reads() {
        let mut c = Cursor::new(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(c.u8(), Some(1));
        assert_eq!(c.u16(), Some(0x0203));
        assert_eq!(c.u32(), Some(0x0405_0607));
        assert_eq!(c.u8(), None);
        assert_eq!(c.take(0), Some(&[][..]));
        assert_eq!(c.take(usize::MAX), None);
        assert!(c.rest().is_empty());
    }

    #[test]
    fn short_read_leaves_cursor_in_place() {
        let mut c = Cursor::new(&[9, 8, 7]);
        assert_eq!(c.u32(), None);
        assert_eq!(c.u16(), Some(0x0908), "the failed read consumed nothing");
        assert_eq!(be16(&[0, 1, 2], 1), Some(0x0102));
        assert_eq!(be16(&[0, 1, 2], 2), None);
        assert_eq!(be16(&[0, 1, 2], usize::MAX), None);
        assert_eq!(be32(&[0, 1, 2, 3], 0), Some(0x0001_0203));
        assert_eq!(be32(&[0, 1, 2, 3], 1), None);
    }
}
