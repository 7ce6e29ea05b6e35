//! A frame builder for crafted test packets: Ethernet with VLAN tags, IPv4 with options and
//! fragments, IPv6 with extension headers, UDP, TCP and ICMP, with correct lengths and
//! checksums so the same frames are also valid on a live interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

/// An IPv6 extension header placed between the fixed header and the transport header.
#[derive(Clone, Debug)]
pub enum Ext {
    HopByHop(usize),
    Routing(usize),
    DestOpts(usize),
    /// Fragment header with this offset (in 8-byte units) and more-fragments flag.
    Fragment {
        offset: u16,
        more: bool,
    },
    /// Authentication header with this many 4-byte words of ICV.
    Auth(usize),
}

#[derive(Clone, Debug)]
pub enum Transport {
    Udp {
        sport: u16,
        dport: u16,
    },
    /// TCP with data offset `20 + options.len()`.
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        options: Vec<u8>,
    },
    /// ICMP/ICMPv6 echo request.
    Echo,
    /// Any other protocol number with the payload as its body.
    Raw(u8),
}

#[derive(Clone, Debug)]
pub struct Frame {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub vlans: Vec<(u16, u16)>,
    /// Ethertype override (for non-IP frames); the L3 part is then the payload only.
    pub ethertype: Option<u16>,
    pub ipv4_options: Vec<u8>,
    /// IPv4 fragment offset in 8-byte units, and the MF flag.
    pub ipv4_fragment: (u16, bool),
    pub ipv6_ext: Vec<Ext>,
    pub transport: Transport,
    pub payload: Vec<u8>,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad test address {s}"))
}

impl Frame {
    #[must_use]
    pub fn udp(src: &str, dst: &str, dport: u16) -> Self {
        Self::new(ip(src), ip(dst), Transport::Udp { sport: 5060, dport })
    }

    #[must_use]
    pub fn tcp(src: &str, dst: &str, dport: u16, flags: u8) -> Self {
        Self::new(ip(src), ip(dst), Transport::Tcp { sport: 40000, dport, flags, options: vec![] })
    }

    #[must_use]
    pub fn echo(src: &str, dst: &str) -> Self {
        Self::new(ip(src), ip(dst), Transport::Echo)
    }

    #[must_use]
    pub fn new(src: IpAddr, dst: IpAddr, transport: Transport) -> Self {
        Self {
            src,
            dst,
            vlans: vec![],
            ethertype: None,
            ipv4_options: vec![],
            ipv4_fragment: (0, false),
            ipv6_ext: vec![],
            transport,
            payload: vec![],
            src_mac: [0x02, 0, 0, 0, 0, 0x02],
            dst_mac: [0x02, 0, 0, 0, 0, 0x01],
        }
    }

    #[must_use]
    pub fn payload(mut self, p: impl AsRef<[u8]>) -> Self {
        self.payload = p.as_ref().to_vec();
        self
    }

    #[must_use]
    pub fn vlan(mut self, tpid: u16, vid: u16) -> Self {
        self.vlans.push((tpid, vid));
        self
    }

    #[must_use]
    pub fn ipv4_options(mut self, opts: &[u8]) -> Self {
        assert!(
            opts.len().is_multiple_of(4) && opts.len() <= 40,
            "IPv4 options must be 4-byte words, at most 40 bytes"
        );
        self.ipv4_options = opts.to_vec();
        self
    }

    #[must_use]
    pub fn ipv4_fragment(mut self, offset_units: u16, more: bool) -> Self {
        self.ipv4_fragment = (offset_units, more);
        self
    }

    #[must_use]
    pub fn ext(mut self, e: Ext) -> Self {
        self.ipv6_ext.push(e);
        self
    }

    #[must_use]
    pub fn with_ethertype(mut self, t: u16) -> Self {
        self.ethertype = Some(t);
        self
    }

    #[must_use]
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    fn transport_bytes(&self, proto_v6: bool) -> (u8, Vec<u8>) {
        match &self.transport {
            Transport::Udp { sport, dport } => {
                let len = u16::try_from(8 + self.payload.len()).expect("UDP too long");
                let mut h = Vec::with_capacity(usize::from(len));
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h.extend_from_slice(&self.payload);
                let sum = l4_checksum(self.src, self.dst, 17, &h);
                h[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
                (17, h)
            }
            Transport::Tcp { sport, dport, flags, options } => {
                assert!(options.len() % 4 == 0 && options.len() <= 40);
                let doff = u8::try_from((20 + options.len()) / 4).expect("small");
                let mut h = Vec::new();
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&1u32.to_be_bytes());
                h.extend_from_slice(&0u32.to_be_bytes());
                h.push(doff << 4);
                h.push(*flags);
                h.extend_from_slice(&64240u16.to_be_bytes());
                h.extend_from_slice(&[0, 0, 0, 0]);
                h.extend_from_slice(options);
                h.extend_from_slice(&self.payload);
                let sum = l4_checksum(self.src, self.dst, 6, &h);
                h[16..18].copy_from_slice(&sum.to_be_bytes());
                (6, h)
            }
            Transport::Echo => {
                let (proto, kind) = if proto_v6 { (58u8, 128u8) } else { (1u8, 8u8) };
                let mut h = vec![kind, 0, 0, 0, 0x12, 0x34, 0, 1];
                h.extend_from_slice(&self.payload);
                let sum = if proto_v6 {
                    l4_checksum(self.src, self.dst, 58, &h)
                } else {
                    checksum(&h, 0)
                };
                h[2..4].copy_from_slice(&sum.to_be_bytes());
                (proto, h)
            }
            Transport::Raw(p) => (*p, self.payload.clone()),
        }
    }

    /// The frame's bytes.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(64 + self.payload.len());
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        let l3_type =
            self.ethertype.unwrap_or(if self.src.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 });
        let mut types: Vec<u16> = self.vlans.iter().map(|(tpid, _)| *tpid).collect();
        types.push(l3_type);
        f.extend_from_slice(&types[0].to_be_bytes());
        for (i, (_, vid)) in self.vlans.iter().enumerate() {
            f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
            f.extend_from_slice(&types[i + 1].to_be_bytes());
        }
        if self.ethertype.is_some() {
            f.extend_from_slice(&self.payload);
            return f;
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => self.ipv4(&mut f, s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => self.ipv6(&mut f, s, d),
            _ => panic!("source and destination families differ"),
        }
        f
    }

    fn ipv4(&self, f: &mut Vec<u8>, s: Ipv4Addr, d: Ipv4Addr) {
        let (proto, l4) = self.transport_bytes(false);
        let ihl = 20 + self.ipv4_options.len();
        let total = u16::try_from(ihl + l4.len()).expect("IPv4 too long");
        let (off, more) = self.ipv4_fragment;
        let frag = (off & 0x1fff) | if more { 0x2000 } else { 0 };
        let mut h = Vec::with_capacity(ihl);
        h.push(0x40 | u8::try_from(ihl / 4).expect("small"));
        h.push(0);
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&0x1234u16.to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.push(64);
        h.push(proto);
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&s.octets());
        h.extend_from_slice(&d.octets());
        h.extend_from_slice(&self.ipv4_options);
        let sum = checksum(&h, 0);
        h[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&h);
        f.extend_from_slice(&l4);
    }

    fn ipv6(&self, f: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr) {
        let (proto, l4) = self.transport_bytes(true);
        // Build extension headers back to front so each knows its next header.
        let mut next = proto;
        let mut chain: Vec<u8> = Vec::new();
        for e in self.ipv6_ext.iter().rev() {
            let (code, body) = match e {
                Ext::HopByHop(n) | Ext::Routing(n) | Ext::DestOpts(n) => {
                    let units = n.max(&1);
                    let mut b = vec![0u8; units * 8];
                    b[1] = u8::try_from(units - 1).expect("small");
                    if let Ext::Routing(_) = e {
                        // Type 0 segments-left 0: ignored by receivers.
                        b[2] = 0;
                        b[3] = 0;
                    } else {
                        // PadN option covering the rest of the header.
                        b[2] = 1;
                        b[3] = u8::try_from(units * 8 - 4).expect("small");
                    }
                    let code = match e {
                        Ext::HopByHop(_) => 0,
                        Ext::Routing(_) => 43,
                        _ => 60,
                    };
                    (code, b)
                }
                Ext::Fragment { offset, more } => {
                    let mut b = vec![0u8; 8];
                    let v = (offset << 3) | u16::from(*more);
                    b[2..4].copy_from_slice(&v.to_be_bytes());
                    b[4..8].copy_from_slice(&0xabcd_u32.to_be_bytes());
                    (44, b)
                }
                Ext::Auth(words) => {
                    let mut b = vec![0u8; 12 + words * 4];
                    b[1] = u8::try_from((12 + words * 4) / 4 - 2).expect("small");
                    (51, b)
                }
            };
            let mut body = body;
            body[0] = next;
            next = code;
            body.extend_from_slice(&chain);
            chain = body;
        }
        let plen = u16::try_from(chain.len() + l4.len()).expect("IPv6 too long");
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.push(next);
        f.push(64);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(&chain);
        f.extend_from_slice(&l4);
    }
}

fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from(chunk[0]) << 8
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded")
}

fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&u16::try_from(segment.len()).expect("short").to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::try_from(segment.len()).expect("short").to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => panic!("families differ"),
    }
    pseudo.extend_from_slice(segment);
    checksum(&pseudo, 0)
}

/// A scanner's probe as SIPVicious's `svmap` sends it (its User-Agent and From), from
/// `src:sport` to `dst:5060`: what a forger puts on the wire with a victim's address.
#[must_use]
pub fn scanner_probe(src: &str, dst: &str, sport: u16) -> Vec<u8> {
    let text = scanner_probe_text(src, dst, sport);
    Frame::new(ip(src), ip(dst), Transport::Udp { sport, dport: 5060 }).payload(text).build()
}

/// The message of [`scanner_probe`].
#[must_use]
pub fn scanner_probe_text(src: &str, dst: &str, sport: u16) -> String {
    format!(
        "OPTIONS sip:100@{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{sport};branch=z9hG4bK{sport}\r\nFrom: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\nTo: \"sipvicious\"<sip:100@1.1.1.1>\r\nCall-ID: {sport}@x\r\nCSeq: 1 OPTIONS\r\nUser-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Offsets of the header boundaries in a frame built from `frame`, for truncation tests:
/// every prefix that ends inside a header.
#[must_use]
pub fn truncations(bytes: &[u8], header_end: usize) -> Vec<Vec<u8>> {
    (14..header_end).map(|n| bytes[..n].to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_udp_checksums_verify() {
        let f = Frame::udp("192.0.2.1", "198.51.100.1", 5060).payload(b"hello").build();
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        assert_eq!(checksum(&f[14..34], 0), 0, "IPv4 header checksum");
        let sum = l4_checksum(ip("192.0.2.1"), ip("198.51.100.1"), 17, &f[34..]);
        assert_eq!(sum, 0, "UDP checksum");
    }

    #[test]
    fn vlan_and_ext_headers_chain() {
        let f = Frame::udp("2001:db8::1", "2001:db8::2", 5060)
            .vlan(ETH_P_8021AD, 100)
            .vlan(ETH_P_8021Q, 200)
            .ext(Ext::HopByHop(1))
            .ext(Ext::Fragment { offset: 0, more: true })
            .build();
        assert_eq!(&f[12..14], &ETH_P_8021AD.to_be_bytes());
        assert_eq!(&f[16..18], &ETH_P_8021Q.to_be_bytes());
        assert_eq!(&f[20..22], &ETH_P_IPV6.to_be_bytes());
        let ip6 = 22;
        assert_eq!(f[ip6 + 6], 0, "hop-by-hop first");
        assert_eq!(f[ip6 + 40], 44, "then fragment");
        assert_eq!(f[ip6 + 48], 17, "then UDP");
    }
}
