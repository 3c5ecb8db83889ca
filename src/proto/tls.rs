//! TLS ClientHello `server_name` (RFC 8446 §4.1.2, RFC 6066 §3; TLS 1.2 layout RFC 5246
//! §7.4.1.2 is the same on the wire).
//!
//! Input is the client's TCP byte stream from its first byte: TLS records (RFC 8446 §5.1) that
//! carry the ClientHello handshake message. The caller appends TCP segments as they arrive; the
//! parser answers [`Parsed::NeedMore`] until the `server_name` extension is complete, then
//! [`Parsed::Key`] at once, without waiting for the rest of the hello. A modern post-quantum
//! ClientHello (an X25519MLKEM768 key share of 1216 + 32 bytes) is about 2 kB, larger than one
//! segment, and browsers put `server_name` anywhere in the extension list (Chromium shuffles
//! it), so the name often arrives in the second segment.
//!
//! The handshake message may also be split across several handshake records (RFC 8446 §5.1:
//! "a single message MAY be fragmented across several records"); the reader walks the records
//! and reads the handshake bytes as one stream, without copying them.
//!
//! With Encrypted Client Hello (draft-ietf-tls-esni, extension 0xfe0d) the outer ClientHello
//! carries the client-facing server's public name in `server_name`; that public name is what is
//! returned.
//!
//! # Rejections
//! A first record that is not a handshake, a record version whose major byte is not 3, a record
//! longer than 2^14 + 256 bytes or empty, a non-handshake record inside the hello, a handshake
//! message that is not a ClientHello, any length that overruns its container (hello fields,
//! extensions block, one extension, the server_name list, a host_name), a `name_type` other
//! than `host_name`, two host_names, and host_name bytes that are not a DNS name.

use super::{Parsed, Reject};

// --- Record layer, RFC 8446 §5.1 ----------------------------------------------------------------

/// `ContentType.handshake`.
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// `type` (1) + `legacy_record_version` (2) + `length` (2).
const RECORD_HEADER_LEN: usize = 5;
/// Offset of `legacy_record_version`'s major byte: always 3 (SSL 3.0 = 3.0 ... TLS 1.3 uses
/// 3.3, and 3.1 in an initial ClientHello).
const RECORD_VERSION_MAJOR: usize = 1;
/// Offset of the record `length`.
const RECORD_LENGTH: usize = 3;
/// RFC 8446 §5.1: "The length MUST NOT exceed 2^14 bytes" for plaintext records. l7mark
/// tolerates the 256 extra bytes that RFC 8446 §5.2 allows a protected record (2^14 + 256), so
/// that a sloppy sender is not refused for a few bytes, but nothing beyond.
pub const MAX_RECORD_LEN: usize = (1 << 14) + 256;
/// The major byte of every TLS/SSL3 version.
const VERSION_MAJOR: u8 = 3;

// --- Handshake, RFC 8446 §4 ---------------------------------------------------------------------

/// `HandshakeType.client_hello`.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// `msg_type` (1) + `length` (uint24).
const HANDSHAKE_HEADER_LEN: usize = 4;
/// `Random random` (32 bytes).
const RANDOM_LEN: usize = 32;
/// `opaque legacy_session_id<0..32>`.
const MAX_SESSION_ID_LEN: usize = 32;
/// Smallest ClientHello body: version 2, random 32, session id length 1, one cipher suite
/// (2 + 2), one compression method (1 + 1).
const MIN_CLIENT_HELLO_BODY: usize = 2 + RANDOM_LEN + 1 + 4 + 2;
/// Largest ClientHello body the field maxima allow: version, random, session id<0..32>,
/// cipher_suites<2..2^16-2>, compression<1..2^8-1>, extensions<8..2^16-1>. A larger length is a
/// lie that would otherwise make the caller wait for megabytes.
const MAX_CLIENT_HELLO_BODY: usize =
    2 + RANDOM_LEN + (1 + MAX_SESSION_ID_LEN) + (2 + 0xfffe) + (1 + 0xff) + (2 + 0xffff);

// --- Extensions, RFC 8446 §4.2, RFC 6066 §3 -----------------------------------------------------

/// `ExtensionType.server_name`.
const EXT_SERVER_NAME: u16 = 0;
/// `NameType.host_name`, the only name type defined.
const NAME_TYPE_HOST_NAME: u8 = 0;
/// A DNS name is at most 255 octets on the wire, 253 characters in text (RFC 1035 §2.3.4);
/// one more for a trailing dot.
const MAX_HOST_NAME_LEN: usize = 254;
/// RFC 1035 §2.3.4: labels are 63 octets or less.
const MAX_LABEL_LEN: usize = 63;

/// The classification key of a TLS ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// The `host_name` of the `server_name` extension (RFC 6066 §3), lower-cased, a trailing dot
    /// removed; `None` when the extensions (or the hello, for an extension-less TLS 1.2 hello)
    /// end without one.
    pub sni: Option<String>,
    /// `legacy_version` of the ClientHello (RFC 8446 §4.1.2): 0x0303 for TLS 1.2 and 1.3 (the
    /// real versions are in `supported_versions`), 0x0301/0x0302 for older clients.
    pub legacy_version: u16,
    /// Length of the whole ClientHello handshake message as declared, 4-byte handshake header
    /// included (not counting record headers).
    pub hello_len: usize,
}

/// Why parsing stopped before a key.
enum Stop {
    NeedMore,
    Reject(&'static str),
}

type Step<T> = Result<T, Stop>;

fn bad<T>(why: &'static str) -> Step<T> {
    Err(Stop::Reject(why))
}

// === impl HsReader ===

/// Reads the handshake byte stream out of consecutive handshake records, without copying.
struct HsReader<'a> {
    /// Raw stream after the current record's available fragment.
    rest: &'a [u8],
    /// Unread handshake bytes of the current record.
    cur: &'a [u8],
    /// The current record continues beyond the buffer: once `cur` is used up, more bytes are
    /// needed, and no further record header can be looked at.
    cur_partial: bool,
    /// Handshake bytes consumed so far.
    pos: usize,
    /// Records opened so far.
    records: usize,
}

impl<'a> HsReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        HsReader {
            rest: buf,
            cur: &[],
            cur_partial: false,
            pos: 0,
            records: 0,
        }
    }

    /// Open the next record. Header bytes already present are validated before waiting for the
    /// rest, so garbage is refused from its first byte.
    fn next_record(&mut self) -> Step<()> {
        if self.cur_partial {
            return Err(Stop::NeedMore);
        }
        let hdr = self.rest;
        match hdr.first() {
            None => return Err(Stop::NeedMore),
            Some(&CONTENT_TYPE_HANDSHAKE) => {}
            // RFC 8446 §5.1: "Handshake messages MUST NOT be interleaved with other record
            // types."
            Some(_) if self.records > 0 => {
                return bad("tls: non-handshake record inside the hello");
            }
            Some(_) => return bad("tls: first record is not a handshake"),
        }
        match hdr.get(RECORD_VERSION_MAJOR) {
            None => return Err(Stop::NeedMore),
            Some(&VERSION_MAJOR) => {}
            Some(_) => return bad("tls: record version major is not 3"),
        }
        let Some(len) = super::be16(hdr, RECORD_LENGTH) else {
            return Err(Stop::NeedMore);
        };
        let len = usize::from(len);
        if len == 0 {
            // RFC 8446 §5.1: "Implementations MUST NOT send zero-length fragments of Handshake
            // types".
            return bad("tls: empty handshake record");
        }
        if len > MAX_RECORD_LEN {
            return bad("tls: record longer than 2^14 + 256");
        }
        let body = hdr.get(RECORD_HEADER_LEN..).unwrap_or_default();
        let avail = len.min(body.len());
        let (cur, rest) = body.split_at(avail);
        self.cur = cur;
        self.cur_partial = avail < len;
        self.rest = rest;
        self.records += 1;
        Ok(())
    }

    fn u8(&mut self) -> Step<u8> {
        loop {
            if let Some((&b, tail)) = self.cur.split_first() {
                self.cur = tail;
                self.pos += 1;
                return Ok(b);
            }
            self.next_record()?;
        }
    }

    fn u16(&mut self) -> Step<u16> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn u24(&mut self) -> Step<usize> {
        let b = [0, self.u8()?, self.u8()?, self.u8()?];
        usize::try_from(u32::from_be_bytes(b)).map_err(|_| Stop::Reject("tls: length overflow"))
    }

    fn skip(&mut self, mut n: usize) -> Step<()> {
        while n > 0 {
            if self.cur.is_empty() {
                self.next_record()?;
            }
            let k = n.min(self.cur.len());
            self.cur = self.cur.get(k..).unwrap_or_default();
            self.pos += k;
            n -= k;
        }
        Ok(())
    }

    /// Refuse to read `n` more bytes past `end` (the end of the enclosing structure). Checked
    /// *before* reading, so that a lying length is rejected instead of waiting for bytes.
    fn within(&self, n: usize, end: usize, why: &'static str) -> Step<()> {
        if self.pos.checked_add(n).is_some_and(|e| e <= end) {
            Ok(())
        } else {
            bad(why)
        }
    }
}

/// Parse the start of a client's TLS byte stream and extract the ClientHello's SNI.
///
/// See the module documentation for the rules. The answer depends only on the bytes up to the
/// end of the `server_name` extension (or of the hello, when it has none).
pub fn parse_client_hello(buf: &[u8]) -> Parsed<ClientHello> {
    match client_hello(&mut HsReader::new(buf)) {
        Ok(k) => Parsed::Key(k),
        Err(Stop::NeedMore) => Parsed::NeedMore,
        Err(Stop::Reject(r)) => Parsed::NotThisProtocol(Reject(r)),
    }
}

fn client_hello(r: &mut HsReader<'_>) -> Step<ClientHello> {
    // Handshake header (RFC 8446 §4): msg_type, uint24 length.
    if r.u8()? != HANDSHAKE_CLIENT_HELLO {
        return bad("tls: handshake message is not a ClientHello");
    }
    let body_len = r.u24()?;
    if body_len < MIN_CLIENT_HELLO_BODY {
        return bad("tls: ClientHello shorter than its fixed fields");
    }
    if body_len > MAX_CLIENT_HELLO_BODY {
        return bad("tls: ClientHello longer than its fields allow");
    }
    let end = HANDSHAKE_HEADER_LEN + body_len;
    const OVERRUN: &str = "tls: ClientHello field overruns the hello";

    // ProtocolVersion legacy_version (RFC 8446 §4.1.2; the real offer is in supported_versions).
    let legacy_version = r.u16()?;
    if legacy_version >> 8 != u16::from(VERSION_MAJOR) {
        return bad("tls: client version major is not 3");
    }
    // Random random[32].
    r.skip(RANDOM_LEN)?;
    // opaque legacy_session_id<0..32>.
    let sid = usize::from(r.u8()?);
    if sid > MAX_SESSION_ID_LEN {
        return bad("tls: session id longer than 32");
    }
    r.within(sid, end, OVERRUN)?;
    r.skip(sid)?;
    // CipherSuite cipher_suites<2..2^16-2>: two bytes each.
    r.within(2, end, OVERRUN)?;
    let suites = usize::from(r.u16()?);
    if suites < 2 || suites % 2 != 0 {
        return bad("tls: cipher_suites length is zero or odd");
    }
    r.within(suites, end, OVERRUN)?;
    r.skip(suites)?;
    // opaque legacy_compression_methods<1..2^8-1>.
    r.within(1, end, OVERRUN)?;
    let comp = usize::from(r.u8()?);
    if comp == 0 {
        return bad("tls: no compression method");
    }
    r.within(comp, end, OVERRUN)?;
    r.skip(comp)?;

    let key = |sni| ClientHello {
        sni,
        legacy_version,
        hello_len: end,
    };
    if r.pos == end {
        // RFC 5246 §7.4.1.2: a (TLS 1.2 or older) hello may end here, without extensions.
        return Ok(key(None));
    }
    // Extension extensions<8..2^16-1>: the last field, so it must end exactly with the hello.
    r.within(2, end, OVERRUN)?;
    let ext_len = usize::from(r.u16()?);
    let ext_end = r.pos + ext_len;
    if ext_end != end {
        return bad("tls: extensions length disagrees with the hello length");
    }
    while r.pos < ext_end {
        // struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; } Extension;
        r.within(4, ext_end, "tls: extension header overruns the extensions")?;
        let ext_type = r.u16()?;
        let len = usize::from(r.u16()?);
        r.within(len, ext_end, "tls: extension overruns the extensions")?;
        if ext_type == EXT_SERVER_NAME {
            return Ok(key(Some(server_name(r, len)?)));
        }
        // GREASE (RFC 8701), key_share, padding, ECH (0xfe0d) ...: skipped unread.
        r.skip(len)?;
    }
    Ok(key(None))
}

/// The `server_name` extension body (RFC 6066 §3):
/// `struct { NameType name_type; select (name_type) { case host_name: HostName; } name; }
/// ServerName; struct { ServerName server_name_list<1..2^16-1> } ServerNameList;`
fn server_name(r: &mut HsReader<'_>, ext_len: usize) -> Step<String> {
    if ext_len < 2 {
        return bad("tls: server_name extension too short");
    }
    let list_len = usize::from(r.u16()?);
    if list_len + 2 != ext_len {
        return bad("tls: server_name list length disagrees with the extension");
    }
    if list_len == 0 {
        return bad("tls: empty server_name list");
    }
    let list_end = r.pos + list_len;
    let mut name: Option<String> = None;
    while r.pos < list_end {
        r.within(3, list_end, "tls: server_name entry overruns the list")?;
        if r.u8()? != NAME_TYPE_HOST_NAME {
            return bad("tls: server_name type is not host_name");
        }
        let len = usize::from(r.u16()?);
        r.within(
            len,
            list_end,
            "tls: host_name overruns the server_name list",
        )?;
        if name.is_some() {
            // RFC 6066 §3: "The ServerNameList MUST NOT contain more than one name of the same
            // name_type."
            return bad("tls: more than one host_name");
        }
        name = Some(host_name(r, len)?);
    }
    name.ok_or(Stop::Reject("tls: empty server_name list"))
}

/// `opaque HostName<1..2^16-1>`: RFC 6066 §3 — "the fully qualified DNS hostname of the server
/// ... represented as a byte string using ASCII encoding without a trailing dot". Accepted:
/// letters, digits, `-`, `_` (seen in practice), dots between non-empty labels of at most 63
/// bytes; a single trailing dot (sent by some old clients) is removed. Bytes are checked as they
/// are read, so a bad name is refused without waiting for its end. A dotted-quad passes the
/// character test and is returned as is (RFC 6066 forbids IP literals, but refusing them would
/// gain nothing for classification).
fn host_name(r: &mut HsReader<'_>, len: usize) -> Step<String> {
    const INVALID: &str = "tls: invalid host_name";
    if len == 0 {
        return bad("tls: empty host_name");
    }
    if len > MAX_HOST_NAME_LEN {
        return bad("tls: host_name longer than a DNS name");
    }
    let mut name = String::with_capacity(len);
    let mut label = 0usize;
    for _ in 0..len {
        let b = r.u8()?;
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => {
                label += 1;
                if label > MAX_LABEL_LEN {
                    return bad(INVALID);
                }
                name.push(char::from(b.to_ascii_lowercase()));
            }
            b'.' if label > 0 => {
                label = 0;
                name.push('.');
            }
            _ => return bad(INVALID),
        }
    }
    if name.ends_with('.') {
        name.pop();
    }
    Ok(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Build a ClientHello handshake message with the given extensions (type, data).
    fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[0xab; 32]);
        body.push(32);
        body.extend_from_slice(&[0xcd; 32]);
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        for (t, d) in exts {
            e.extend_from_slice(&t.to_be_bytes());
            e.extend_from_slice(&u16::try_from(d.len()).unwrap().to_be_bytes());
            e.extend_from_slice(d);
        }
        body.extend_from_slice(&u16::try_from(e.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&e);
        let mut hs = vec![1];
        hs.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        hs
    }

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let mut list = Vec::new();
        for (t, n) in names {
            list.push(*t);
            list.extend_from_slice(&u16::try_from(n.len()).unwrap().to_be_bytes());
            list.extend_from_slice(n);
        }
        let mut d = u16::try_from(list.len()).unwrap().to_be_bytes().to_vec();
        d.extend_from_slice(&list);
        d
    }

    /// Wrap handshake bytes into records of at most `chunk` bytes.
    fn records(hs: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in hs.chunks(chunk) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&u16::try_from(c.len()).unwrap().to_be_bytes());
            out.extend_from_slice(c);
        }
        out
    }

    fn rejected(buf: &[u8]) -> &'static str {
        match parse_client_hello(buf) {
            Parsed::NotThisProtocol(Reject(r)) => r,
            other => panic!("expected rejection, got {other:?}"),
        }
    }

    fn sni_of(buf: &[u8]) -> Option<String> {
        match parse_client_hello(buf) {
            Parsed::Key(k) => k.sni,
            other => panic!("expected key, got {other:?}"),
        }
    }

    #[test]
    fn sni_found_and_normalised() {
        let hs = hello(&[
            (0x0a0a, vec![]),
            (0, sni_ext(&[(0, b"WWW.Example.com.")])),
            (16, vec![0, 3, 2, b'h', b'2']),
        ]);
        let buf = records(&hs, 16384);
        let Parsed::Key(k) = parse_client_hello(&buf) else {
            panic!()
        };
        assert_eq!(k.sni.as_deref(), Some("www.example.com"));
        assert_eq!(k.legacy_version, 0x0303);
        assert_eq!(k.hello_len, hs.len());
    }

    #[test]
    fn key_as_soon_as_server_name_is_complete() {
        let hs = hello(&[(0, sni_ext(&[(0, b"a.example")])), (21, vec![0; 500])]);
        let buf = records(&hs, 16384);
        let sni_end = 5 + 4 + 2 + 32 + 33 + 6 + 2 + 2 + 4 + 5 + 9;
        assert_eq!(parse_client_hello(&buf[..sni_end - 1]), Parsed::NeedMore);
        assert_eq!(sni_of(&buf[..sni_end]).as_deref(), Some("a.example"));
    }

    #[test]
    fn no_server_name_and_no_extensions() {
        let hs = hello(&[(0x0a0a, vec![]), (43, vec![2, 3, 4])]);
        assert_eq!(sni_of(&records(&hs, 100)), None);
        // A TLS 1.2 hello without an extensions block at all.
        let mut hs = hello(&[]);
        hs.truncate(hs.len() - 2);
        hs[3] -= 2;
        assert_eq!(sni_of(&records(&hs, 100)), None);
    }

    #[test]
    fn handshake_fragmented_over_records() {
        let hs = hello(&[
            (0x1a1a, vec![0; 300]),
            (0, sni_ext(&[(0, b"frag.example")])),
        ]);
        for chunk in [1, 2, 3, 7, 64, 200, 1000] {
            assert_eq!(
                sni_of(&records(&hs, chunk)).as_deref(),
                Some("frag.example"),
                "{chunk}"
            );
        }
    }

    #[test]
    fn record_rejections() {
        let hs = hello(&[(0, sni_ext(&[(0, b"a.example")]))]);
        let good = records(&hs, 16384);
        let mut b = good.clone();
        b[0] = 23;
        assert_eq!(rejected(&b), "tls: first record is not a handshake");
        assert_eq!(rejected(&b[..1]), "tls: first record is not a handshake");
        assert_eq!(
            rejected(b"GET / HTTP/1.1\r\n"),
            "tls: first record is not a handshake"
        );
        // SSLv2-compatible hello (high bit set): no SNI possible.
        assert_eq!(
            rejected(&[0x80, 0x2e, 0x01]),
            "tls: first record is not a handshake"
        );
        let mut b = good.clone();
        b[1] = 2;
        assert_eq!(rejected(&b[..2]), "tls: record version major is not 3");
        let mut b = good.clone();
        b[3..5].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(rejected(&b), "tls: empty handshake record");
        let mut b = good.clone();
        b[3..5].copy_from_slice(&u16::try_from(MAX_RECORD_LEN + 1).unwrap().to_be_bytes());
        assert_eq!(rejected(&b[..5]), "tls: record longer than 2^14 + 256");
        // The second record is an alert / change_cipher_spec.
        let mut b = records(&hs, 20);
        b[25] = 21;
        assert_eq!(rejected(&b), "tls: non-handshake record inside the hello");
        let mut b = records(&hs, 20);
        b[26] = 4;
        assert_eq!(rejected(&b), "tls: record version major is not 3");
    }

    #[test]
    fn hello_rejections() {
        let hs = hello(&[(0, sni_ext(&[(0, b"a.example")]))]);
        let mut h = hs.clone();
        h[0] = 2; // server_hello
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: handshake message is not a ClientHello"
        );
        let mut h = hs.clone();
        h[1..4].copy_from_slice(&[0, 0, 10]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: ClientHello shorter than its fixed fields"
        );
        let mut h = hs.clone();
        h[1..4].copy_from_slice(&[0x10, 0, 0]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: ClientHello longer than its fields allow"
        );
        let mut h = hs.clone();
        h[4] = 2;
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: client version major is not 3"
        );
        let mut h = hs.clone();
        h[4 + 34] = 33;
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: session id longer than 32"
        );
        // cipher_suites length 3, then 0, then huge (overrun).
        for (v, why) in [
            (3u16, "tls: cipher_suites length is zero or odd"),
            (0, "tls: cipher_suites length is zero or odd"),
            (0xfffe, "tls: ClientHello field overruns the hello"),
        ] {
            let mut h = hs.clone();
            h[4 + 35 + 32..4 + 35 + 34].copy_from_slice(&v.to_be_bytes());
            assert_eq!(rejected(&records(&h, 1000)), why);
        }
        let comp_off = 4 + 35 + 32 + 6;
        let mut h = hs.clone();
        h[comp_off] = 0;
        assert_eq!(rejected(&records(&h, 1000)), "tls: no compression method");
        // Extensions block length disagreeing with the hello length.
        let mut h = hs.clone();
        h[comp_off + 2] += 1;
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: extensions length disagrees with the hello length"
        );
    }

    #[test]
    fn extension_and_server_name_rejections() {
        // An extension whose length overruns the block.
        let mut h = hello(&[(21, vec![0; 4])]);
        let n = h.len();
        h[n - 5] = 9;
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: extension overruns the extensions"
        );
        // A dangling 3-byte extension header.
        let mut h = hello(&[(21, vec![0; 3])]);
        let n = h.len();
        h[n - 4] = 0; // padding length 0: 3 bytes left, too few for a header
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: extension header overruns the extensions"
        );
        // server_name with a 1-byte body.
        let h = hello(&[(0, vec![0])]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: server_name extension too short"
        );
        // list length disagreeing with the extension length.
        let mut d = sni_ext(&[(0, b"a.example")]);
        d[1] += 1;
        let h = hello(&[(0, d)]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: server_name list length disagrees with the extension"
        );
        let h = hello(&[(0, vec![0, 0])]);
        assert_eq!(rejected(&records(&h, 1000)), "tls: empty server_name list");
        let h = hello(&[(0, sni_ext(&[(1, b"a.example")]))]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: server_name type is not host_name"
        );
        let h = hello(&[(0, sni_ext(&[(0, b"a.example"), (0, b"b.example")]))]);
        assert_eq!(rejected(&records(&h, 1000)), "tls: more than one host_name");
        // host_name length overrunning the list.
        let mut d = sni_ext(&[(0, b"a.example")]);
        d[4] += 1;
        let h = hello(&[(0, d)]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: host_name overruns the server_name list"
        );
        // An entry header cut by the list end.
        let mut d = sni_ext(&[(0, b"a")]);
        d.extend_from_slice(&[0, 0]);
        d[1] += 2;
        let h = hello(&[(0, d)]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: server_name entry overruns the list"
        );
        let h = hello(&[(0, sni_ext(&[(0, b"")]))]);
        assert_eq!(rejected(&records(&h, 1000)), "tls: empty host_name");
        let long = vec![b'a'; 255];
        let h = hello(&[(0, sni_ext(&[(0, &long)]))]);
        assert_eq!(
            rejected(&records(&h, 1000)),
            "tls: host_name longer than a DNS name"
        );
        let label = [vec![b'a'; 64], b".example".to_vec()].concat();
        for bad in [
            &b"a..example"[..],
            b".example",
            b"a example",
            b"a\0example",
            b"[::1]",
            b"\xc3\xa9.example",
            b".",
            &label,
        ] {
            let h = hello(&[(0, sni_ext(&[(0, bad)]))]);
            assert_eq!(
                rejected(&records(&h, 1000)),
                "tls: invalid host_name",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn short_inputs_need_more() {
        for n in 0..5 {
            assert_eq!(
                parse_client_hello(&[22, 3, 1, 0, 200][..n]),
                Parsed::NeedMore
            );
        }
        assert_eq!(parse_client_hello(&[22, 3, 1, 0, 200, 1]), Parsed::NeedMore);
    }
}
