//! Address prefixes as users write them, and as the LPM tries store them.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use sipguard_common::lists::{TAG_BITS, V4_KEY_LEN, V6_KEY_LEN, split_key, v4_key, v6_key};

/// An IPv4 or IPv6 prefix with no host bits set. A plain address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// Builds a prefix, refusing lengths past the family's width and set host bits.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, CidrError> {
        let max = max_len(addr);
        if len > max {
            return Err(CidrError(format!(
                "prefix length /{len} is too long for an {} address (at most /{max})",
                family(addr)
            )));
        }
        let masked = mask(addr, len);
        if masked != addr {
            return Err(CidrError(format!(
                "{addr}/{len} has host bits set; did you mean {masked}/{len}?"
            )));
        }
        Ok(Self { addr, len })
    }

    /// Like [`Cidr::new`] but clears host bits instead of refusing them (bulk feeds).
    #[must_use]
    pub fn new_truncating(addr: IpAddr, len: u8) -> Option<Self> {
        (len <= max_len(addr)).then(|| Self { addr: mask(addr, len), len })
    }

    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    #[must_use]
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` falls inside this prefix.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }

    /// LPM key bytes and prefix length for the list scoped by `tag`.
    #[must_use]
    pub fn v4_key(&self, tag: u32) -> Option<(u32, [u8; V4_KEY_LEN])> {
        match self.addr {
            IpAddr::V4(a) => Some((TAG_BITS + u32::from(self.len), v4_key(tag, a.octets()))),
            IpAddr::V6(_) => None,
        }
    }

    #[must_use]
    pub fn v6_key(&self, tag: u32) -> Option<(u32, [u8; V6_KEY_LEN])> {
        match self.addr {
            IpAddr::V6(a) => Some((TAG_BITS + u32::from(self.len), v6_key(tag, a.octets()))),
            IpAddr::V4(_) => None,
        }
    }

    /// Reads an LPM key back: `(tag, prefix)`. `None` for keys sipguard never writes.
    #[must_use]
    pub fn from_key(prefix_len: u32, key: &[u8]) -> Option<(u32, Self)> {
        let len = u8::try_from(prefix_len.checked_sub(TAG_BITS)?).ok()?;
        let (tag, addr) = split_key(key);
        let addr = match addr.len() {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)),
            _ => return None,
        };
        Some((tag, Self::new_truncating(addr, len)?))
    }
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// Packets from IPv4 hosts arrive as IPv4, so an IPv4-mapped IPv6 entry would never match:
/// store it as the IPv4 prefix it means.
fn unmap(addr: IpAddr, len: Option<u8>) -> (IpAddr, Option<u8>) {
    if let IpAddr::V6(v6) = addr
        && let Some(v4) = v6.to_ipv4_mapped()
        && len.is_none_or(|l| l >= 96)
    {
        return (IpAddr::V4(v4), len.map(|l| l - 96));
    }
    (addr, len)
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let invalid = || {
            CidrError(format!(
                "invalid address or CIDR `{s}`: expected e.g. 192.0.2.7, 198.51.100.0/24 or 2001:db8::/32"
            ))
        };
        let (addr_part, len_part) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_part.parse().map_err(|_| invalid())?;
        let len = match len_part {
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                Some(l.parse::<u8>().map_err(|_| {
                    CidrError(format!("invalid prefix length in `{s}`: /{l} is too long"))
                })?)
            }
            Some(_) => return Err(invalid()),
            None => None,
        };
        let (addr, len) = unmap(addr, len);
        Cidr::new(addr, len.unwrap_or_else(|| max_len(addr)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        s.parse::<Cidr>().unwrap().to_string()
    }

    fn err(s: &str) -> String {
        s.parse::<Cidr>().unwrap_err().to_string()
    }

    #[test]
    fn plain_addresses_are_host_prefixes() {
        assert_eq!(ok("192.0.2.7"), "192.0.2.7/32");
        assert_eq!(ok("2001:db8::1"), "2001:db8::1/128");
        assert_eq!(ok(" 10.0.0.0/8 "), "10.0.0.0/8");
        assert_eq!(ok("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(ok("::/0"), "::/0");
    }

    #[test]
    fn rejects_what_it_cannot_mean() {
        assert!(err("10.0.0.1/8").contains("did you mean 10.0.0.0/8"));
        assert!(err("10.0.0.0/33").contains("at most /32"));
        assert!(err("2001:db8::/129").contains("at most /128"));
        assert!(err("10.0.0.0/300").contains("too long"));
        for bad in [
            "",
            "10.0.0",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/-1",
            "host.example",
            "1.2.3.4/8/9",
            "10.0.0.256",
        ] {
            assert!(err(bad).contains("invalid"), "{bad}: {}", err(bad));
        }
    }

    #[test]
    fn ipv4_mapped_becomes_ipv4() {
        assert_eq!(ok("::ffff:192.0.2.7"), "192.0.2.7/32");
        assert_eq!(ok("::ffff:192.0.2.0/120"), "192.0.2.0/24");
    }

    #[test]
    fn keys_round_trip() {
        for s in ["192.0.2.0/24", "10.1.2.3/32", "0.0.0.0/0"] {
            let c: Cidr = s.parse().unwrap();
            let (plen, key) = c.v4_key(5).unwrap();
            assert_eq!(Cidr::from_key(plen, &key), Some((5, c)));
            assert!(c.v6_key(0).is_none());
        }
        for s in ["2001:db8::/32", "::1/128", "::/0"] {
            let c: Cidr = s.parse().unwrap();
            let (plen, key) = c.v6_key(0).unwrap();
            assert_eq!(Cidr::from_key(plen, &key), Some((0, c)));
        }
        assert_eq!(Cidr::from_key(10, &[0; 8]), None);
    }

    #[test]
    fn contains_respects_family_and_prefix() {
        let c: Cidr = "198.51.100.0/24".parse().unwrap();
        assert!(c.contains("198.51.100.200".parse().unwrap()));
        assert!(!c.contains("198.51.101.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
    }
}
