//! L2-L4 parsing: Ethernet with up to two VLAN tags, IPv4 (options honoured), IPv6 with a
//! bounded walk over extension headers, UDP and TCP.

use crate::{
    maps::PORTS,
    packet::{Packet, Truncated, le32, le64},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// VLAN tags looked through: 802.1ad outer + 802.1Q inner.
const MAX_VLAN_TAGS: usize = 2;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;
/// Extension headers walked before giving up on finding the transport header.
pub(crate) const MAX_IPV6_EXT_HEADERS: usize = 6;

/// An IP address as the per-source maps key it (`SourceKey`: IPv6, or IPv4-mapped IPv6), in
/// two words, with the family it came in: copied into the handoff or built into a key, it is
/// two word stores, not sixteen byte stores.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Addr {
    words: [u64; 2],
    /// 1 for an IPv6 packet's address (a mapped IPv4 address in an IPv6 header stays IPv6:
    /// the lists keep the families apart).
    v6: u64,
}

/// An address's bytes in network order, by family.
pub(crate) enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    /// An IPv4 address from its four bytes in network order, loaded as a little-endian word.
    #[inline(always)]
    fn v4(le: u32) -> Self {
        Self { words: [0, u64::from(le) << 32 | 0xffff_0000], v6: 0 }
    }

    /// An IPv6 address from its sixteen bytes, loaded as two little-endian words.
    #[inline(always)]
    fn v6(words: [u64; 2]) -> Self {
        Self { words, v6: 1 }
    }

    /// The address's bytes by family.
    #[inline(always)]
    pub(crate) fn ip(&self) -> Ip {
        if self.v6 == 0 {
            Ip::V4(((self.words[1] >> 32) as u32).to_le_bytes())
        } else {
            Ip::V6(self.key())
        }
    }

    /// The per-source map key: IPv6, or IPv4-mapped IPv6.
    #[inline(always)]
    pub(crate) fn key(&self) -> sipguard_common::sources::SourceKey {
        // SAFETY: two words are sixteen bytes, in memory order (little-endian), as the key is.
        unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(self.words) }
    }

    /// The key as two words.
    #[inline(always)]
    pub(crate) fn words(&self) -> [u64; 2] {
        self.words
    }

    /// The address as four words in network order, as `bpf_sock_tuple` and `bpf_fib_lookup`
    /// take an IPv6 address (an IPv4 one is the last).
    #[inline(always)]
    pub(crate) fn quads(&self) -> [u32; 4] {
        let [lo, hi] = self.words;
        [lo as u32, (lo >> 32) as u32, hi as u32, (hi >> 32) as u32]
    }
}

/// A UDP datagram or TCP segment: what the policy needs from it.
#[derive(Clone, Copy)]
pub(crate) struct Segment {
    pub src: Addr,
    pub dst: Addr,
    /// 1 for TCP, 0 for UDP.
    pub tcp: u8,
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset of the first payload byte in the frame.
    pub payload_offset: usize,
}

/// What the headers say about a frame.
pub(crate) enum Headers {
    /// Neither IPv4 nor IPv6.
    NotIp,
    /// IP, but not UDP or TCP to a SIP port (ICMP, ESP, DNS, ...).
    NotSip,
    /// A non-first fragment: no transport header to look at.
    Fragment,
    Segment(Segment),
}

/// Why a frame could not be parsed. Each variant maps to the `malformed` reason; they are
/// kept apart so a debug build can tell them apart.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ParseError {
    Truncated,
    BadIpHeader,
    BadTcpHeader,
    TooManyExtensionHeaders,
}

impl From<Truncated> for ParseError {
    #[inline(always)]
    fn from(_: Truncated) -> Self {
        ParseError::Truncated
    }
}

/// Which port makes a segment SIP traffic: the destination port for what arrives (requests
/// to the protected servers), the source port for what they send (their answers).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Arriving,
    Leaving,
}

#[inline(always)]
pub(crate) fn parse(pkt: &Packet, side: Side) -> Result<Headers, ParseError> {
    let mut ethertype = pkt.u16_at(12)?;
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = pkt.u16_at(offset + 2)?;
        offset += 4;
    }
    match ethertype {
        ETH_P_IP => ipv4(pkt, offset, side),
        ETH_P_IPV6 => ipv6(pkt, offset, side),
        _ => Ok(Headers::NotIp),
    }
}

#[inline(always)]
fn ipv4(pkt: &Packet, offset: usize, side: Side) -> Result<Headers, ParseError> {
    let h = pkt.bytes::<20>(offset)?;
    if h[0] >> 4 != 4 {
        return Err(ParseError::BadIpHeader);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(ParseError::BadIpHeader);
    }
    let src = Addr::v4(le32(h, 12));
    let dst = Addr::v4(le32(h, 16));
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    if fragment_offset != 0 {
        return Ok(Headers::Fragment);
    }
    // Options are skipped, not parsed, but must be present in full.
    let l4 = offset + ihl;
    if !pkt.has_byte(l4 - 1) {
        return Err(ParseError::Truncated);
    }
    transport(pkt, h[9], src, dst, l4, side)
}

#[inline(always)]
fn ipv6(pkt: &Packet, offset: usize, side: Side) -> Result<Headers, ParseError> {
    let h = pkt.bytes::<40>(offset)?;
    if h[0] >> 4 != 6 {
        return Err(ParseError::BadIpHeader);
    }
    let src = Addr::v6([le64(h, 8), le64(h, 16)]);
    let dst = Addr::v6([le64(h, 24), le64(h, 32)]);
    let mut next = h[6];
    let mut l4 = offset + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let e = pkt.bytes::<2>(l4)?;
                next = e[0];
                l4 += (usize::from(e[1]) + 1) * 8;
            }
            IPPROTO_AH => {
                let e = pkt.bytes::<2>(l4)?;
                next = e[0];
                l4 += (usize::from(e[1]) + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                let e = pkt.bytes::<8>(l4)?;
                if u16::from_be_bytes([e[2], e[3]]) & 0xfff8 != 0 {
                    return Ok(Headers::Fragment);
                }
                next = e[0];
                l4 += 8;
            }
            _ => return transport(pkt, next, src, dst, l4, side),
        }
    }
    match next {
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT => {
            Err(ParseError::TooManyExtensionHeaders)
        }
        _ => transport(pkt, next, src, dst, l4, side),
    }
}

#[inline(always)]
fn transport(
    pkt: &Packet,
    proto: u8,
    src: Addr,
    dst: Addr,
    l4: usize,
    side: Side,
) -> Result<Headers, ParseError> {
    // The port is checked here, before the segment is assembled: most traffic on a host is
    // not SIP, and its verdict then costs no stores of addresses it will never use.
    match proto {
        IPPROTO_UDP => {
            let h = pkt.bytes::<8>(l4)?;
            if !is_sip_port(sip_side_port(h, side)) {
                return Ok(Headers::NotSip);
            }
            Ok(Headers::Segment(Segment {
                src,
                dst,
                tcp: 0,
                src_port: u16::from_be_bytes([h[0], h[1]]),
                dst_port: u16::from_be_bytes([h[2], h[3]]),
                payload_offset: l4 + 8,
            }))
        }
        IPPROTO_TCP => {
            let h = pkt.bytes::<20>(l4)?;
            if !is_sip_port(sip_side_port(h, side)) {
                return Ok(Headers::NotSip);
            }
            let data_offset = usize::from(h[12] >> 4) * 4;
            if data_offset < 20 {
                return Err(ParseError::BadTcpHeader);
            }
            Ok(Headers::Segment(Segment {
                src,
                dst,
                tcp: 1,
                src_port: u16::from_be_bytes([h[0], h[1]]),
                dst_port: u16::from_be_bytes([h[2], h[3]]),
                payload_offset: l4 + data_offset,
            }))
        }
        _ => Ok(Headers::NotSip),
    }
}

/// The port a [`Side`] looks at: both transports start with source and destination port.
#[inline(always)]
fn sip_side_port<const N: usize>(h: &[u8; N], side: Side) -> u16 {
    match side {
        Side::Arriving => u16::from_be_bytes([h[2], h[3]]),
        Side::Leaving => u16::from_be_bytes([h[0], h[1]]),
    }
}

/// Whether `port` is one of the SIP ports (`SG_PORTS`, a bitmap set from userspace).
#[inline(always)]
fn is_sip_port(port: u16) -> bool {
    PORTS.get(u32::from(port >> 6)).is_some_and(|word| word & (1u64 << (port & 63)) != 0)
}
