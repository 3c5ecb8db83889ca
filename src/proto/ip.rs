//! IPv4 / IPv6 with TCP / UDP: the flow tuple and the L4 payload of a packet as NFQUEUE hands it
//! over (an L3 packet, no link-layer header).
//!
//! # What is accepted
//! - IPv4 (RFC 791 §3.1): the IHL is honoured (options are skipped, not interpreted) and the
//!   payload ends at the total length, never at the end of the buffer.
//! - IPv6 (RFC 8200 §3, §4): hop-by-hop, routing, destination options, fragment, AH, HIP and
//!   shim6 extension headers are walked (at most [`MAX_EXT_HEADERS`]) until TCP or UDP.
//! - TCP (RFC 9293 §3.1) with its data offset validated and the handshake options summarised,
//!   UDP (RFC 768) with its length validated.
//!
//! # What is refused, and why
//! - Fragments ([`IpError::Fragment`]): only a first fragment carries the ports, and never the
//!   whole first payload reliably; l7mark leaves fragments to the default path. An IPv6 *atomic*
//!   fragment (offset 0, M = 0, RFC 6946) is a whole packet and is accepted.
//! - A buffer shorter than the length the IP header announces ([`IpError::Truncated`]): NFQUEUE's
//!   copy range may cut a packet; the caller must know its payload is incomplete rather than
//!   classify a prefix as if it were the whole segment.
//!
//! Checksums are *not* verified: on ingress the kernel has validated them (or the NIC has) before
//! the netfilter hooks, and on egress the TCP/UDP checksum may still be partial (offload). For
//! re-injection through a raw socket, [`tcp_checksum_fixup`] recomputes them.
//!
//! # What is built
//! [`build_tcp_v4`] makes the few segments the TCP binder originates itself (its ACKs of held
//! data, RSTs towards clients): IPv4 without options, TCP with at most the timestamp option, both
//! checksums computed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};

use super::{be16, be32};

// --- IPv4 header, RFC 791 §3.1 -------------------------------------------------------------------

/// Fixed part of the IPv4 header (IHL = 5).
const V4_MIN_HEADER: usize = 20;
/// Version (high nibble) and IHL in 32-bit words (low nibble).
const V4_VER_IHL: usize = 0;
/// Total length of the datagram, header included.
const V4_TOTAL_LEN: usize = 2;
/// Flags (3 bits: reserved, DF, MF) and fragment offset (13 bits, 8-octet units).
const V4_FLAGS_FRAG: usize = 6;
/// Upper-layer protocol number (IANA "Assigned Internet Protocol Numbers").
const V4_PROTO: usize = 9;
/// Header checksum (RFC 791 §3.1, RFC 1071).
const V4_CHECKSUM: usize = 10;
/// Source address.
const V4_SRC: usize = 12;
/// Destination address.
const V4_DST: usize = 16;
/// "More fragments" flag.
const V4_FLAG_MF: u16 = 0x2000;
/// Fragment offset mask.
const V4_FRAG_OFFSET_MASK: u16 = 0x1fff;

// --- IPv6 header, RFC 8200 §3 -------------------------------------------------------------------

/// Fixed IPv6 header length.
const V6_HEADER: usize = 40;
/// Payload length: everything after the fixed header, extension headers included.
const V6_PAYLOAD_LEN: usize = 4;
/// Next header of the fixed header.
const V6_NEXT_HEADER: usize = 6;
/// Source address.
const V6_SRC: usize = 8;
/// Destination address.
const V6_DST: usize = 24;
/// Fragment header: fixed 8 bytes (RFC 8200 §4.5).
const V6_FRAG_HEADER: usize = 8;
/// Offset of the 13-bit fragment offset + 2 reserved bits + M flag inside the fragment header.
const V6_FRAG_OFFSET_FLAGS: usize = 2;
/// Offset of "Segments Left" inside a routing header (RFC 8200 §4.4).
const V6_ROUTING_SEGMENTS_LEFT: usize = 3;

/// The walk over IPv6 extension headers stops (with [`IpError::TooManyExtensionHeaders`]) after
/// this many. RFC 8200 §4.1 recommends at most one of each type (destination options twice), which
/// is 7 in total with AH; a longer chain is an attack on parsers rather than traffic.
pub const MAX_EXT_HEADERS: usize = 8;

// --- IANA protocol numbers ----------------------------------------------------------------------

const PROTO_HOPOPT: u8 = 0;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ROUTING: u8 = 43;
const PROTO_FRAGMENT: u8 = 44;
const PROTO_AH: u8 = 51;
const PROTO_DSTOPTS: u8 = 60;
/// Host Identity Protocol (RFC 7401), an extension header in the RFC 6564 uniform format.
const PROTO_HIP: u8 = 139;
/// Shim6 (RFC 5533), an extension header in the RFC 6564 uniform format.
const PROTO_SHIM6: u8 = 140;

// --- TCP header, RFC 9293 §3.1 ------------------------------------------------------------------

/// TCP header without options.
const TCP_MIN_HEADER: usize = 20;
const TCP_SPORT: usize = 0;
const TCP_DPORT: usize = 2;
const TCP_SEQ: usize = 4;
const TCP_ACK: usize = 8;
/// Data offset in 32-bit words (high nibble).
const TCP_DATA_OFFSET: usize = 12;
const TCP_FLAGS: usize = 13;
const TCP_WINDOW: usize = 14;
const TCP_CHECKSUM: usize = 16;

/// TCP option kinds (RFC 9293 §3.2, RFC 7323, RFC 2018).
const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_MSS: u8 = 2;
const TCPOPT_WSCALE: u8 = 3;
const TCPOPT_SACK_PERM: u8 = 4;
const TCPOPT_TIMESTAMP: u8 = 8;

// --- UDP header, RFC 768 ------------------------------------------------------------------------

const UDP_HEADER: usize = 8;
const UDP_SPORT: usize = 0;
const UDP_DPORT: usize = 2;
const UDP_LEN: usize = 4;
const UDP_CHECKSUM: usize = 6;

/// Why an L3 packet could not be turned into a flow and a payload.
///
/// A cheap `Copy` enum: it is produced on the packet path and counted by
/// [`as_counter_label`](IpError::as_counter_label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    /// The buffer ends before the length the headers announce (IPv4 total length, IPv6 payload
    /// length, or simply the fixed header): typically an NFQUEUE copy range shorter than the
    /// packet. `need` is the length the headers require so far, `have` the buffer length.
    #[error("packet truncated: headers need {need} bytes, buffer has {have}")]
    Truncated {
        /// Bytes required by the headers parsed so far.
        need: usize,
        /// Bytes in the buffer.
        have: usize,
    },
    /// The version nibble is neither 4 nor 6.
    #[error("IP version {0} is neither 4 nor 6")]
    BadVersion(u8),
    /// IPv4 IHL below 5 words (RFC 791 §3.1: the minimum header is 20 bytes).
    #[error("IPv4 header length {0} is below 20 bytes")]
    BadHeaderLength(usize),
    /// IPv4 total length shorter than the header, or IPv6 payload length 0 (a jumbogram,
    /// RFC 2675, which l7mark does not support, or a packet without a transport header).
    #[error("IP total length {0} is inconsistent with the header")]
    BadTotalLength(usize),
    /// A fragment other than an IPv6 atomic fragment: never classified.
    #[error("IP fragment")]
    Fragment,
    /// The transport (after the extension headers) is neither TCP nor UDP (e.g. ICMP, ESP, or
    /// IPv6 "no next header").
    #[error("transport protocol {0} is neither TCP nor UDP")]
    UnsupportedTransport(u8),
    /// More than [`MAX_EXT_HEADERS`] IPv6 extension headers.
    #[error("more than {MAX_EXT_HEADERS} IPv6 extension headers")]
    TooManyExtensionHeaders,
    /// A hop-by-hop options header that does not immediately follow the IPv6 header
    /// (RFC 8200 §4.1: it is only allowed there).
    #[error("IPv6 hop-by-hop options header not directly after the fixed header")]
    MisplacedHopByHop,
    /// An IPv6 extension header that runs past the payload length.
    #[error("IPv6 extension header overruns the payload length")]
    BadExtensionHeader,
    /// The IP payload is too short for the 20-byte TCP header.
    #[error("TCP segment shorter than its 20-byte header")]
    TcpTooShort,
    /// TCP data offset (in 32-bit words) below 5 or past the end of the segment.
    #[error("TCP data offset {0} words is below 5 or beyond the segment")]
    BadTcpDataOffset(u8),
    /// The IP payload is too short for the 8-byte UDP header.
    #[error("UDP datagram shorter than its 8-byte header")]
    UdpTooShort,
    /// UDP length below 8 or beyond the IP payload (RFC 768).
    #[error("UDP length {0} is below 8 or beyond the IP payload")]
    BadUdpLength(u16),
    /// [`tcp_checksum_fixup`] only: an IPv6 routing header with segments left, whose pseudo-header
    /// would need the final destination (RFC 8200 §8.1) rather than the current one.
    #[error("IPv6 routing header in transit: checksum needs the final destination")]
    RoutingHeaderInTransit,
}

impl IpError {
    /// A short, static label for metrics counters (`snake_case`, no allocation).
    pub fn as_counter_label(&self) -> &'static str {
        match self {
            IpError::Truncated { .. } => "truncated",
            IpError::BadVersion(_) => "bad_version",
            IpError::BadHeaderLength(_) => "bad_header_length",
            IpError::BadTotalLength(_) => "bad_total_length",
            IpError::Fragment => "fragment",
            IpError::UnsupportedTransport(_) => "unsupported_transport",
            IpError::TooManyExtensionHeaders => "too_many_extension_headers",
            IpError::MisplacedHopByHop => "misplaced_hop_by_hop",
            IpError::BadExtensionHeader => "bad_extension_header",
            IpError::TcpTooShort => "tcp_too_short",
            IpError::BadTcpDataOffset(_) => "bad_tcp_data_offset",
            IpError::UdpTooShort => "udp_too_short",
            IpError::BadUdpLength(_) => "bad_udp_length",
            IpError::RoutingHeaderInTransit => "routing_header_in_transit",
        }
    }
}

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
}

/// The 5-tuple of a packet, as seen on the wire (not normalised by direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (for IPv6, the current destination, not the final one of a routing
    /// header).
    pub dst: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Transport protocol.
    pub proto: L4Proto,
}

/// TCP control bits (RFC 9293 §3.1; CWR/ECE from RFC 3168).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether all bits of `other` are set.
    pub fn has(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

/// The TCP options that matter when l7mark holds or re-creates segments: those negotiated on the
/// SYN. Options are parsed leniently like Linux `tcp_parse_options`: an option with a bad length
/// ends the walk, keeping what was found before it, and never fails the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptionsSummary {
    /// Maximum segment size (kind 2, RFC 9293 §3.7.1).
    pub mss: Option<u16>,
    /// Window scale shift count as sent (kind 3, RFC 7323 §2.2; a receiver clamps it to 14).
    pub wscale: Option<u8>,
    /// SACK permitted (kind 4, RFC 2018 §2).
    pub sack_perm: bool,
    /// Timestamps (TSval, TSecr) (kind 8, RFC 7323 §3.2).
    pub timestamp: Option<(u32, u32)>,
}

/// The parsed TCP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when ACK is set).
    pub ack: u32,
    /// Control bits.
    pub flags: TcpFlags,
    /// Receive window (unscaled).
    pub window: u16,
    /// Header length in bytes (data offset × 4), options included; validated ≥ 20 and within the
    /// segment.
    pub data_offset: usize,
    /// Summary of the options.
    pub options: TcpOptionsSummary,
}

/// The transport header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP with its header.
    Tcp(TcpHeader),
    /// UDP (its ports are in [`Flow`], its length bounds [`Packet::payload`]).
    Udp,
}

/// A parsed L3 packet: the flow, the transport header and the L4 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The 5-tuple.
    pub flow: Flow,
    /// The transport header.
    pub transport: Transport,
    /// The transport payload: TCP data after the options, or UDP data up to the UDP length. Never
    /// beyond the IP total length, never beyond the buffer.
    pub payload: &'a [u8],
    /// IP header length: the IPv4 header with options, or the IPv6 header with all extension
    /// headers.
    pub ip_header_len: usize,
    /// Offset of the TCP/UDP header in the buffer (equal to `ip_header_len`, spelled out for the
    /// code that patches transport headers).
    pub l4_offset: usize,
}

/// The result of the L3 walk, before the transport header is looked at.
struct L3<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// Transport protocol number (TCP or UDP once the walk succeeded).
    proto: u8,
    /// Offset of the transport header.
    l4_offset: usize,
    /// The transport segment, bounded by the IP length fields.
    l4: &'a [u8],
    /// An IPv6 routing header with segments left was seen.
    routed: bool,
}

/// Parse an L3 packet (IPv4 or IPv6, no link-layer header) down to its TCP/UDP payload.
///
/// See the module documentation for what is accepted and refused.
pub fn parse_packet(buf: &[u8]) -> Result<Packet<'_>, IpError> {
    let l3 = parse_l3(buf)?;
    parse_l4(&l3)
}

fn truncated(need: usize, buf: &[u8]) -> IpError {
    IpError::Truncated {
        need,
        have: buf.len(),
    }
}

fn parse_l3(buf: &[u8]) -> Result<L3<'_>, IpError> {
    let first = *buf.get(V4_VER_IHL).ok_or(truncated(1, buf))?;
    match first >> 4 {
        4 => parse_v4(buf, first),
        6 => parse_v6(buf),
        v => Err(IpError::BadVersion(v)),
    }
}

fn parse_v4(buf: &[u8], ver_ihl: u8) -> Result<L3<'_>, IpError> {
    if buf.len() < V4_MIN_HEADER {
        return Err(truncated(V4_MIN_HEADER, buf));
    }
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    if ihl < V4_MIN_HEADER {
        return Err(IpError::BadHeaderLength(ihl));
    }
    let total = usize::from(be16(buf, V4_TOTAL_LEN).ok_or(truncated(V4_MIN_HEADER, buf))?);
    if total < ihl {
        return Err(IpError::BadTotalLength(total));
    }
    // Decided from the fixed header alone, before any length check: a fragment is never
    // classified, whatever its length.
    let frag = be16(buf, V4_FLAGS_FRAG).ok_or(truncated(V4_MIN_HEADER, buf))?;
    if frag & V4_FLAG_MF != 0 || frag & V4_FRAG_OFFSET_MASK != 0 {
        return Err(IpError::Fragment);
    }
    // The datagram ends at the total length (anything after it is link padding); a buffer
    // shorter than that was cut by the NFQUEUE copy range.
    let pkt = buf.get(..total).ok_or(truncated(total, buf))?;
    let proto = *pkt.get(V4_PROTO).ok_or(truncated(V4_MIN_HEADER, buf))?;
    let src = v4_addr(pkt, V4_SRC).ok_or(truncated(V4_MIN_HEADER, buf))?;
    let dst = v4_addr(pkt, V4_DST).ok_or(truncated(V4_MIN_HEADER, buf))?;
    let l4 = pkt.get(ihl..).ok_or(truncated(ihl, buf))?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Err(IpError::UnsupportedTransport(proto));
    }
    Ok(L3 {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        proto,
        l4_offset: ihl,
        l4,
        routed: false,
    })
}

fn v4_addr(buf: &[u8], off: usize) -> Option<Ipv4Addr> {
    be32(buf, off).map(Ipv4Addr::from)
}

fn v6_addr(buf: &[u8], off: usize) -> Option<Ipv6Addr> {
    let b: [u8; 16] = buf.get(off..off + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(b))
}

fn parse_v6(buf: &[u8]) -> Result<L3<'_>, IpError> {
    if buf.len() < V6_HEADER {
        return Err(truncated(V6_HEADER, buf));
    }
    let payload_len = usize::from(be16(buf, V6_PAYLOAD_LEN).ok_or(truncated(V6_HEADER, buf))?);
    if payload_len == 0 {
        // Either a jumbogram (RFC 2675: the real length is in a hop-by-hop option) or a packet
        // with nothing after the fixed header; neither carries a first payload we classify.
        return Err(IpError::BadTotalLength(0));
    }
    let total = V6_HEADER + payload_len;
    let pkt = buf.get(..total).ok_or(truncated(total, buf))?;
    let src = v6_addr(pkt, V6_SRC).ok_or(truncated(V6_HEADER, buf))?;
    let dst = v6_addr(pkt, V6_DST).ok_or(truncated(V6_HEADER, buf))?;

    let mut next = *pkt.get(V6_NEXT_HEADER).ok_or(truncated(V6_HEADER, buf))?;
    let mut off = V6_HEADER;
    let mut count = 0usize;
    let mut routed = false;
    loop {
        match next {
            PROTO_TCP | PROTO_UDP => break,
            PROTO_HOPOPT | PROTO_ROUTING | PROTO_DSTOPTS | PROTO_FRAGMENT | PROTO_AH
            | PROTO_HIP | PROTO_SHIM6 => {
                count += 1;
                if count > MAX_EXT_HEADERS {
                    return Err(IpError::TooManyExtensionHeaders);
                }
                // RFC 8200 §4.1: the Hop-by-Hop Options header may only appear immediately
                // after the IPv6 header.
                if next == PROTO_HOPOPT && count != 1 {
                    return Err(IpError::MisplacedHopByHop);
                }
                // Every extension header starts with Next Header and (except fragment) a length;
                // the buffer already covers the payload length, so running out here means the
                // header chain contradicts the payload length.
                let hdr_next = *pkt.get(off).ok_or(IpError::BadExtensionHeader)?;
                let hdr_len_field = *pkt.get(off + 1).ok_or(IpError::BadExtensionHeader)?;
                let hdr_len = match next {
                    // RFC 8200 §4.5: fixed size, the second byte is reserved.
                    PROTO_FRAGMENT => V6_FRAG_HEADER,
                    // RFC 4302 §2.2: AH length is in 4-octet units, minus 2.
                    PROTO_AH => (usize::from(hdr_len_field) + 2) * 4,
                    // RFC 8200 §4.3-4.6, RFC 6564: 8-octet units, not counting the first 8.
                    _ => (usize::from(hdr_len_field) + 1) * 8,
                };
                let hdr = pkt
                    .get(off..off + hdr_len)
                    .ok_or(IpError::BadExtensionHeader)?;
                if next == PROTO_FRAGMENT {
                    let fo = be16(hdr, V6_FRAG_OFFSET_FLAGS).ok_or(IpError::BadExtensionHeader)?;
                    // Offset in the top 13 bits, M flag in bit 0. An atomic fragment (offset 0,
                    // M = 0) is a complete packet (RFC 6946 §4) and is walked through.
                    if fo >> 3 != 0 || fo & 1 != 0 {
                        return Err(IpError::Fragment);
                    }
                }
                if next == PROTO_ROUTING
                    && hdr.get(V6_ROUTING_SEGMENTS_LEFT).copied().unwrap_or(0) != 0
                {
                    routed = true;
                }
                off += hdr_len;
                next = hdr_next;
            }
            other => return Err(IpError::UnsupportedTransport(other)),
        }
    }
    let l4 = pkt.get(off..).ok_or(IpError::BadExtensionHeader)?;
    Ok(L3 {
        src: IpAddr::V6(src),
        dst: IpAddr::V6(dst),
        proto: next,
        l4_offset: off,
        l4,
        routed,
    })
}

fn parse_l4<'a>(l3: &L3<'a>) -> Result<Packet<'a>, IpError> {
    let seg = l3.l4;
    let (transport, sport, dport, payload, proto) = if l3.proto == PROTO_TCP {
        if seg.len() < TCP_MIN_HEADER {
            return Err(IpError::TcpTooShort);
        }
        let doff_byte = *seg.get(TCP_DATA_OFFSET).ok_or(IpError::TcpTooShort)?;
        let doff_words = doff_byte >> 4;
        let data_offset = usize::from(doff_words) * 4;
        if data_offset < TCP_MIN_HEADER || data_offset > seg.len() {
            return Err(IpError::BadTcpDataOffset(doff_words));
        }
        let options = seg
            .get(TCP_MIN_HEADER..data_offset)
            .map(parse_tcp_options)
            .unwrap_or_default();
        let hdr = TcpHeader {
            seq: be32(seg, TCP_SEQ).ok_or(IpError::TcpTooShort)?,
            ack: be32(seg, TCP_ACK).ok_or(IpError::TcpTooShort)?,
            flags: TcpFlags(*seg.get(TCP_FLAGS).ok_or(IpError::TcpTooShort)?),
            window: be16(seg, TCP_WINDOW).ok_or(IpError::TcpTooShort)?,
            data_offset,
            options,
        };
        (
            Transport::Tcp(hdr),
            be16(seg, TCP_SPORT).ok_or(IpError::TcpTooShort)?,
            be16(seg, TCP_DPORT).ok_or(IpError::TcpTooShort)?,
            seg.get(data_offset..).unwrap_or_default(),
            L4Proto::Tcp,
        )
    } else {
        if seg.len() < UDP_HEADER {
            return Err(IpError::UdpTooShort);
        }
        let ulen = be16(seg, UDP_LEN).ok_or(IpError::UdpTooShort)?;
        // RFC 768: the length covers header and data. Bytes of IP payload beyond it are ignored
        // (Linux `udp_rcv` trims them too); a length beyond the IP payload is malformed. Length 0
        // is only meaningful for IPv6 jumbograms (RFC 2675), which are refused above.
        let ulen_usize = usize::from(ulen);
        if ulen_usize < UDP_HEADER || ulen_usize > seg.len() {
            return Err(IpError::BadUdpLength(ulen));
        }
        (
            Transport::Udp,
            be16(seg, UDP_SPORT).ok_or(IpError::UdpTooShort)?,
            be16(seg, UDP_DPORT).ok_or(IpError::UdpTooShort)?,
            seg.get(UDP_HEADER..ulen_usize).unwrap_or_default(),
            L4Proto::Udp,
        )
    };
    Ok(Packet {
        flow: Flow {
            src: l3.src,
            dst: l3.dst,
            sport,
            dport,
            proto,
        },
        transport,
        payload,
        ip_header_len: l3.l4_offset,
        l4_offset: l3.l4_offset,
    })
}

/// Walk the TCP options (RFC 9293 §3.2): kinds 0 and 1 are single bytes, every other option is
/// kind, length (including kind and length), data.
fn parse_tcp_options(mut opts: &[u8]) -> TcpOptionsSummary {
    let mut sum = TcpOptionsSummary::default();
    while let Some((&kind, rest)) = opts.split_first() {
        match kind {
            TCPOPT_EOL => break,
            TCPOPT_NOP => {
                opts = rest;
                continue;
            }
            _ => {}
        }
        let Some(&len) = rest.first() else { break };
        let len = usize::from(len);
        let Some(opt) = opts.get(..len) else { break };
        if len < 2 {
            break;
        }
        let data = opt.get(2..).unwrap_or_default();
        match (kind, data.len()) {
            (TCPOPT_MSS, 2) => sum.mss = be16(data, 0),
            (TCPOPT_WSCALE, 1) => sum.wscale = data.first().copied(),
            (TCPOPT_SACK_PERM, 0) => sum.sack_perm = true,
            (TCPOPT_TIMESTAMP, 8) => {
                sum.timestamp = be32(data, 0).zip(be32(data, 4));
            }
            // Unknown kinds and known kinds with a wrong length are skipped, as Linux does.
            _ => {}
        }
        opts = opts.get(len..).unwrap_or_default();
    }
    sum
}

// --- checksums, RFC 1071 ------------------------------------------------------------------------

/// Add `data` as big-endian 16-bit words to a one's-complement accumulator (an odd trailing byte is
/// padded with zero, RFC 1071 §4.1).
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            acc += u64::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Fold the carries and complement.
fn finish(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !u16::try_from(acc).unwrap_or(u16::MAX)
}

/// Write a big-endian u16 at `off`.
fn put16(buf: &mut [u8], off: usize, v: u16) -> Option<()> {
    buf.get_mut(off..off + 2)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

/// Recompute, in place, the IPv4 header checksum (IPv4 only: IPv6 has none) and the TCP or UDP
/// checksum of an IPv4/IPv6 packet, e.g. before re-injecting a held segment through a raw socket.
///
/// The packet must parse with [`parse_packet`]; its error is returned otherwise and the buffer is
/// left untouched. The transport checksum covers the RFC 9293 §3.1 / RFC 768 pseudo-header (IPv6:
/// RFC 8200 §8.1) and the segment as bounded by the IP length fields (UDP: its own length). A UDP
/// checksum that computes to 0 is sent as 0xffff (RFC 768; mandatory for IPv6, RFC 8200 §8.1).
///
/// Refuses ([`IpError::RoutingHeaderInTransit`]) an IPv6 packet whose routing header still has
/// segments left, whose pseudo-header would need the final destination.
pub fn tcp_checksum_fixup(packet: &mut [u8]) -> Result<(), IpError> {
    let (is_v4, ihl, l4_off, l4_len, proto, pseudo) = {
        let l3 = parse_l3(packet)?;
        let parsed = parse_l4(&l3)?;
        if l3.routed {
            return Err(IpError::RoutingHeaderInTransit);
        }
        let l4_len = match parsed.transport {
            Transport::Tcp(_) => l3.l4.len(),
            // Validated by `parse_l4`: 8 <= UDP length <= segment.
            Transport::Udp => usize::from(be16(l3.l4, UDP_LEN).ok_or(IpError::UdpTooShort)?),
        };
        let l4_len_u32 = u32::try_from(l4_len).map_err(|_| IpError::BadTotalLength(l4_len))?;
        // Pseudo-header sum: addresses, protocol, upper-layer length (the zero bytes add
        // nothing).
        let mut pseudo = u64::from(l3.proto) + u64::from(l4_len_u32);
        for addr in [l3.src, l3.dst] {
            pseudo = match addr {
                IpAddr::V4(a) => sum_words(&a.octets(), pseudo),
                IpAddr::V6(a) => sum_words(&a.octets(), pseudo),
            };
        }
        (
            l3.src.is_ipv4(),
            parsed.ip_header_len,
            l3.l4_offset,
            l4_len,
            parsed.flow.proto,
            pseudo,
        )
    };

    let short = truncated(l4_off + l4_len, packet);
    if is_v4 {
        put16(packet, V4_CHECKSUM, 0).ok_or(short)?;
        let hdr = packet.get(..ihl).ok_or(short)?;
        let csum = finish(sum_words(hdr, 0));
        put16(packet, V4_CHECKSUM, csum).ok_or(short)?;
    }
    let csum_off = match proto {
        L4Proto::Tcp => TCP_CHECKSUM,
        L4Proto::Udp => UDP_CHECKSUM,
    };
    let seg = packet.get_mut(l4_off..l4_off + l4_len).ok_or(short)?;
    put16(seg, csum_off, 0).ok_or(short)?;
    let mut csum = finish(sum_words(seg, pseudo));
    if proto == L4Proto::Udp && csum == 0 {
        csum = 0xffff;
    }
    put16(seg, csum_off, csum).ok_or(short)?;
    Ok(())
}

// --- building segments --------------------------------------------------------------------------

/// Time to live of the segments l7mark originates (Linux's default `ip_default_ttl`).
const BUILT_TTL: u8 = 64;
/// IPv4 "don't fragment" flag: the segments are tiny, and Linux sets DF on TCP by default
/// (path MTU discovery, RFC 1191); with DF the ID may be 0 (RFC 6864 §4.1).
const V4_FLAG_DF: u16 = 0x4000;
/// NOP, NOP, kind 8, length 10, TSval, TSecr: the timestamp option padded to a 4-byte boundary
/// the way Linux sends it (RFC 7323 Appendix A layout).
const TS_OPTION_LEN: usize = 12;

/// Build an IPv4 TCP segment without payload from `src` to `dst`, with correct IPv4 header and
/// TCP checksums (RFC 791 §3.1, RFC 9293 §3.1 pseudo-header, RFC 1071 sums).
///
/// `ts` = (TSval, TSecr) adds the timestamp option (RFC 7323 §3.2) preceded by two NOPs, so the
/// option block stays a multiple of 4 bytes. No other option is sent: these segments (the binder's
/// ACKs and RSTs) carry nothing the peer negotiates on.
pub fn build_tcp_v4(
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    ts: Option<(u32, u32)>,
) -> Vec<u8> {
    let opt_len = if ts.is_some() { TS_OPTION_LEN } else { 0 };
    let tcp_len = TCP_MIN_HEADER + opt_len;
    let total = V4_MIN_HEADER + tcp_len;
    // At most 52 bytes: the conversions cannot fail.
    let total16 = u16::try_from(total).unwrap_or(u16::MAX);
    let doff_words = u8::try_from(tcp_len / 4).unwrap_or(0);
    let mut p = Vec::with_capacity(total);
    // IPv4 header, RFC 791 §3.1.
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total16.to_be_bytes());
    p.extend_from_slice(&[0, 0]); // identification
    p.extend_from_slice(&V4_FLAG_DF.to_be_bytes());
    p.extend_from_slice(&[BUILT_TTL, PROTO_TCP, 0, 0]);
    p.extend_from_slice(&src.ip().octets());
    p.extend_from_slice(&dst.ip().octets());
    // TCP header, RFC 9293 §3.1.
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[doff_words << 4, flags.0]);
    p.extend_from_slice(&window.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    if let Some((tsval, tsecr)) = ts {
        p.extend_from_slice(&[TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, 10]);
        p.extend_from_slice(&tsval.to_be_bytes());
        p.extend_from_slice(&tsecr.to_be_bytes());
    }
    let ip_csum = finish(sum_words(p.get(..V4_MIN_HEADER).unwrap_or_default(), 0));
    let _ = put16(&mut p, V4_CHECKSUM, ip_csum);
    // Pseudo-header: source, destination, zero + protocol, TCP length.
    let mut pseudo = u64::from(PROTO_TCP) + u64::from(total16) - V4_MIN_HEADER as u64;
    pseudo = sum_words(&src.ip().octets(), pseudo);
    pseudo = sum_words(&dst.ip().octets(), pseudo);
    let tcp_csum = finish(sum_words(
        p.get(V4_MIN_HEADER..).unwrap_or_default(),
        pseudo,
    ));
    let _ = put16(&mut p, V4_MIN_HEADER + TCP_CHECKSUM, tcp_csum);
    p
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Build an IPv4 header + payload with a given protocol (checksum left 0).
    fn v4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + l4.len()).unwrap();
        let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(l4);
        p
    }

    fn tcp(payload: &[u8], options: &[u8]) -> Vec<u8> {
        assert_eq!(options.len() % 4, 0);
        let doff = u8::try_from((20 + options.len()) / 4).unwrap();
        let mut t = vec![
            0x9c,
            0x40,
            0,
            80,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            2,
            doff << 4,
            0x18,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ];
        t.extend_from_slice(options);
        t.extend_from_slice(payload);
        t
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(8 + payload.len()).unwrap();
        let mut u = vec![0x0d, 0x0c, 0x0d, 0x0c];
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    fn v6(next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&u16::try_from(rest.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn ipv4_tcp_with_options() {
        // MSS 1460, NOP, WS 7, SACK-perm, TS, EOL padding.
        let opts = [
            2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0,
        ];
        let p = v4(6, &tcp(b"GET / HTTP/1.1\r\n", &opts));
        let pkt = parse_packet(&p).unwrap();
        assert_eq!(pkt.payload, b"GET / HTTP/1.1\r\n");
        assert_eq!(pkt.flow.sport, 40000);
        assert_eq!(pkt.flow.dport, 80);
        assert_eq!(pkt.flow.proto, L4Proto::Tcp);
        assert_eq!(pkt.ip_header_len, 20);
        let Transport::Tcp(h) = pkt.transport else {
            panic!("not tcp")
        };
        assert_eq!(h.data_offset, 44);
        assert!(h.flags.has(TcpFlags::PSH | TcpFlags::ACK));
        assert!(!h.flags.has(TcpFlags::SYN));
        assert_eq!(
            h.options,
            TcpOptionsSummary {
                mss: Some(1460),
                wscale: Some(7),
                sack_perm: true,
                timestamp: Some((1, 2)),
            }
        );
    }

    #[test]
    fn malformed_tcp_options_keep_what_was_parsed() {
        // MSS then an option claiming length 40 (beyond the option space): stop, keep MSS.
        let opts = [2, 4, 0x05, 0xb4, 8, 40, 0, 0];
        let p = v4(6, &tcp(b"", &opts));
        let Transport::Tcp(h) = parse_packet(&p).unwrap().transport else {
            panic!()
        };
        assert_eq!(h.options.mss, Some(1460));
        assert_eq!(h.options.timestamp, None);
        // Length 0 and 1 are invalid and end the walk too (no infinite loop).
        for bad in [0u8, 1] {
            let opts = [3, bad, 7, 0];
            let p = v4(6, &tcp(b"", &opts));
            let Transport::Tcp(h) = parse_packet(&p).unwrap().transport else {
                panic!()
            };
            assert_eq!(h.options, TcpOptionsSummary::default());
        }
        // A known kind with the wrong length is skipped; the walk goes on.
        let opts = [2, 3, 0, 4, 2, 0, 0, 0];
        let p = v4(6, &tcp(b"", &opts));
        let Transport::Tcp(h) = parse_packet(&p).unwrap().transport else {
            panic!()
        };
        assert_eq!(h.options.mss, None);
        assert!(h.options.sack_perm);
    }

    #[test]
    fn ipv4_payload_ends_at_total_length() {
        let mut p = v4(17, &udp(b"hello"));
        p.extend_from_slice(&[0xee; 6]); // Ethernet-style trailing padding.
        let pkt = parse_packet(&p).unwrap();
        assert_eq!(pkt.payload, b"hello");
        assert_eq!(pkt.transport, Transport::Udp);
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let mut p = v4(17, &udp(b"x"));
        // IHL 6 with a 4-byte NOP/EOL option block.
        p[0] = 0x46;
        p.splice(20..20, [1, 1, 1, 0]);
        let total = u16::try_from(p.len()).unwrap();
        p[2..4].copy_from_slice(&total.to_be_bytes());
        let pkt = parse_packet(&p).unwrap();
        assert_eq!(pkt.ip_header_len, 24);
        assert_eq!(pkt.payload, b"x");
    }

    #[test]
    fn rejections() {
        assert_eq!(
            parse_packet(&[]),
            Err(IpError::Truncated { need: 1, have: 0 })
        );
        let good = v4(6, &tcp(b"abc", &[]));
        let mut p = good.clone();
        p[0] = 0x55;
        assert_eq!(parse_packet(&p), Err(IpError::BadVersion(5)));
        let mut p = good.clone();
        p[0] = 0x44;
        assert_eq!(parse_packet(&p), Err(IpError::BadHeaderLength(16)));
        let mut p = good.clone();
        p[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(parse_packet(&p), Err(IpError::BadTotalLength(19)));
        let mut p = good.clone();
        p[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            parse_packet(&p),
            Err(IpError::Truncated {
                need: 100,
                have: good.len()
            })
        );
        // MF set (first fragment) and a non-first fragment.
        let mut p = good.clone();
        p[6] = 0x20;
        assert_eq!(parse_packet(&p), Err(IpError::Fragment));
        let mut p = good.clone();
        p[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        assert_eq!(parse_packet(&p), Err(IpError::Fragment));
        // DF alone is fine.
        let mut p = good.clone();
        p[6] = 0x40;
        assert!(parse_packet(&p).is_ok());
        // ICMP.
        let p = v4(1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_packet(&p), Err(IpError::UnsupportedTransport(1)));
        // TCP data offset 4 words, and beyond the segment.
        let mut p = good.clone();
        p[20 + 12] = 0x40;
        assert_eq!(parse_packet(&p), Err(IpError::BadTcpDataOffset(4)));
        let mut p = good.clone();
        p[20 + 12] = 0xf0;
        assert_eq!(parse_packet(&p), Err(IpError::BadTcpDataOffset(15)));
        // TCP segment shorter than 20 bytes (IP total length says so).
        let p = v4(6, &[0; 19]);
        assert_eq!(parse_packet(&p), Err(IpError::TcpTooShort));
        // UDP: too short, length < 8, length beyond the IP payload.
        let p = v4(17, &[0; 7]);
        assert_eq!(parse_packet(&p), Err(IpError::UdpTooShort));
        let mut p = v4(17, &udp(b"abc"));
        p[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(parse_packet(&p), Err(IpError::BadUdpLength(7)));
        let mut p = v4(17, &udp(b"abc"));
        p[24..26].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(parse_packet(&p), Err(IpError::BadUdpLength(12)));
    }

    #[test]
    fn ipv6_rejections() {
        let udp = udp(b"x");
        // Payload length 0 (jumbogram or empty).
        let mut p = v6(17, &udp);
        p[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(parse_packet(&p), Err(IpError::BadTotalLength(0)));
        // Non-atomic fragment: offset 0 with M set, then offset 8.
        for fo in [0x0001u16, 0x0008] {
            let mut rest = vec![17, 0];
            rest.extend_from_slice(&fo.to_be_bytes());
            rest.extend_from_slice(&[0, 0, 0, 7]);
            rest.extend_from_slice(&udp);
            assert_eq!(parse_packet(&v6(44, &rest)), Err(IpError::Fragment));
        }
        // Atomic fragment: accepted.
        let mut rest = vec![17, 0, 0, 0, 0, 0, 0, 7];
        rest.extend_from_slice(&udp);
        assert_eq!(parse_packet(&v6(44, &rest)).unwrap().payload, b"x");
        // Hop-by-hop after a destination options header.
        let mut rest = vec![0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        rest.extend_from_slice(&udp);
        assert_eq!(
            parse_packet(&v6(60, &rest)),
            Err(IpError::MisplacedHopByHop)
        );
        // Nine destination options headers.
        let mut rest = Vec::new();
        for i in 0..9 {
            rest.extend_from_slice(&[if i == 8 { 17 } else { 60 }, 0, 1, 4, 0, 0, 0, 0]);
        }
        rest.extend_from_slice(&udp);
        assert_eq!(
            parse_packet(&v6(60, &rest)),
            Err(IpError::TooManyExtensionHeaders)
        );
        // An extension header claiming more than the payload.
        let mut rest = vec![17, 200, 1, 4, 0, 0, 0, 0];
        rest.extend_from_slice(&udp);
        assert_eq!(
            parse_packet(&v6(60, &rest)),
            Err(IpError::BadExtensionHeader)
        );
        // ESP, no-next-header, ICMPv6.
        for nh in [50u8, 59, 58] {
            assert_eq!(
                parse_packet(&v6(nh, &udp)),
                Err(IpError::UnsupportedTransport(nh))
            );
        }
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3 example: words 0001 f203 f4f5 f6f7 sum to 0xddf2 (before complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum_words(&data, 0)), !0xddf2);
        // Odd length pads with zero.
        assert_eq!(finish(sum_words(&[0xab], 0)), !0xab00);
    }

    #[test]
    fn fixup_makes_checksums_verify() {
        for mut p in [v4(6, &tcp(b"hello", &[])), v4(17, &udp(b"odd")), {
            v6(17, &udp(b"six"))
        }] {
            tcp_checksum_fixup(&mut p).unwrap();
            let once = p.clone();
            tcp_checksum_fixup(&mut p).unwrap();
            assert_eq!(p, once, "fixup is idempotent");
            if p[0] >> 4 == 4 {
                assert_eq!(finish(sum_words(&p[..20], 0)), 0, "IPv4 header verifies");
            }
        }
    }

    #[test]
    fn fixup_refuses_what_does_not_parse_and_routing_in_transit() {
        let mut p = v4(1, &[8, 0, 0, 0]);
        let before = p.clone();
        assert_eq!(
            tcp_checksum_fixup(&mut p),
            Err(IpError::UnsupportedTransport(1))
        );
        assert_eq!(p, before);
        // Routing header type 0 with segments left 1.
        let mut rest = vec![17, 2, 0, 1, 0, 0, 0, 0];
        rest.extend_from_slice(&[0; 16]);
        rest.extend_from_slice(&udp(b"x"));
        let mut p = v6(43, &rest);
        assert!(parse_packet(&p).is_ok());
        assert_eq!(
            tcp_checksum_fixup(&mut p),
            Err(IpError::RoutingHeaderInTransit)
        );
    }

    #[test]
    fn counter_labels_are_distinct() {
        let all = [
            IpError::Truncated { need: 0, have: 0 },
            IpError::BadVersion(0),
            IpError::BadHeaderLength(0),
            IpError::BadTotalLength(0),
            IpError::Fragment,
            IpError::UnsupportedTransport(0),
            IpError::TooManyExtensionHeaders,
            IpError::MisplacedHopByHop,
            IpError::BadExtensionHeader,
            IpError::TcpTooShort,
            IpError::BadTcpDataOffset(0),
            IpError::UdpTooShort,
            IpError::BadUdpLength(0),
            IpError::RoutingHeaderInTransit,
        ];
        let labels: std::collections::HashSet<_> =
            all.iter().map(IpError::as_counter_label).collect();
        assert_eq!(labels.len(), all.len());
    }

    /// See `built_segment_matches_a_known_packet`.
    const KNOWN_ACK: [u8; 52] = [
        0x45, 0x00, 0x00, 0x34, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x6e, 0x59, 0x0a, 0x00, 0x00,
        0x64, 0xc0, 0x00, 0x02, 0x07, 0x00, 0x50, 0x9c, 0x40, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b,
        0x0c, 0x0d, 0x80, 0x10, 0x12, 0x34, 0xe1, 0x6c, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,
    ];

    /// The TCP checksum verifies: the one's-complement sum over pseudo-header and segment is
    /// 0xffff, i.e. `finish` gives 0 (RFC 1071 §1).
    fn tcp_v4_checksum_verifies(p: &[u8]) -> bool {
        let ihl = usize::from(p[0] & 0x0f) * 4;
        let seg = &p[ihl..];
        let mut pseudo = u64::from(PROTO_TCP) + u64::try_from(seg.len()).unwrap();
        pseudo = sum_words(&p[V4_SRC..V4_SRC + 4], pseudo);
        pseudo = sum_words(&p[V4_DST..V4_DST + 4], pseudo);
        finish(sum_words(seg, pseudo)) == 0
    }

    #[test]
    fn built_segments_parse_and_their_checksums_verify() {
        let vip = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 80);
        let client = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 40000);
        for ts in [None, Some((0xdead_beef, 0x0102_0304))] {
            for flags in [TcpFlags::ACK, TcpFlags::RST] {
                let p = build_tcp_v4(vip, client, 0xffff_fff0, 17, flags, 228, ts);
                let pkt = parse_packet(&p).unwrap();
                assert_eq!(pkt.flow.src, IpAddr::V4(*vip.ip()));
                assert_eq!(pkt.flow.dst, IpAddr::V4(*client.ip()));
                assert_eq!((pkt.flow.sport, pkt.flow.dport), (80, 40000));
                assert!(pkt.payload.is_empty());
                let Transport::Tcp(h) = pkt.transport else {
                    panic!("not tcp")
                };
                assert_eq!(
                    (h.seq, h.ack, h.flags, h.window),
                    (0xffff_fff0, 17, flags, 228)
                );
                assert_eq!(h.options.timestamp, ts);
                assert_eq!(h.data_offset % 4, 0);
                assert_eq!(finish(sum_words(&p[..20], 0)), 0, "IPv4 header checksum");
                assert!(tcp_v4_checksum_verifies(&p), "TCP checksum");
                // The fixup recomputes the same sums.
                let mut q = p.clone();
                tcp_checksum_fixup(&mut q).unwrap();
                assert_eq!(p, q);
            }
        }
    }

    #[test]
    fn built_segment_matches_a_known_packet() {
        // 10.0.0.100:80 -> 192.0.2.7:40000, seq 0x01020304, ack 0x0a0b0c0d, ACK, window 0x1234,
        // TS (1, 2). Checksums computed independently (Python, RFC 1071 sum) for this test.
        let p = build_tcp_v4(
            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 100), 80),
            SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 7), 40000),
            0x0102_0304,
            0x0a0b_0c0d,
            TcpFlags::ACK,
            0x1234,
            Some((1, 2)),
        );
        let expected: [u8; 52] = KNOWN_ACK;
        assert_eq!(p, expected);
    }
}
