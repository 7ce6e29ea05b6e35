//! Generated inputs for the benchmarks: address prefixes and signatures, deterministic so
//! that two runs measure the same thing.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use sipguard::{cidr::Cidr, signatures::Signature};
use sipguard_common::inspect::{Kind, Scope};

use crate::corpus::Rng;

/// `n` distinct prefixes, 70% IPv4 (/32, /24, /16) and 30% IPv6 (/128, /64, /48), none of
/// them covering the probes' addresses (`10.0.0.0/8`, `192.0.0.0/16`, `198.51.0.0/16`,
/// `203.0.0.0/16` and `fd00::/8` are left out).
pub fn prefixes(count: usize, seed: u64) -> Vec<Cidr> {
    let mut rng = Rng::new(seed);
    let mut out = BTreeSet::new();
    while out.len() < count {
        let bits = rng.next_u64();
        let prefix = if rng.chance(70) {
            let addr = Ipv4Addr::from(u32::try_from(bits >> 32).expect("32 bits"));
            let [o1, o2, _, _] = addr.octets();
            // Whole /16s, since a /16 entry covers any address in it.
            let reserved =
                o1 == 10 || o1 == 0 || [(192, 0), (198, 51), (203, 0)].contains(&(o1, o2));
            if reserved {
                continue;
            }
            let len = *rng.pick(&[32, 32, 32, 24, 24, 16]);
            Cidr::new_truncating(IpAddr::V4(addr), len)
        } else {
            let high = (u128::from(bits) << 64) | u128::from(rng.next_u64());
            let addr = Ipv6Addr::from((high & !(0xff << 120)) | (0x2a << 120));
            let len = *rng.pick(&[128, 128, 64, 64, 48]);
            Cidr::new_truncating(IpAddr::V6(addr), len)
        };
        out.insert(prefix.expect("a valid prefix"));
    }
    out.into_iter().collect()
}

/// The catalog, cut or padded to `n` signatures. Padding signatures look like real ones (a
/// tool name in one of the scopes scanners leave tells in) and match nothing in the corpora.
pub fn signatures(n: usize) -> Vec<Signature> {
    let mut sigs = sipguard::signatures::catalog();
    sigs.truncate(n);
    let mut rng = Rng::new(0x5169);
    let scopes = [
        Scope::UserAgent,
        Scope::UserAgent,
        Scope::From,
        Scope::To,
        Scope::Contact,
        Scope::Via,
        Scope::CallId,
        Scope::RequestUri,
    ];
    let mut i = 0;
    while sigs.len() < n {
        let scope = *rng.pick(&scopes);
        let kind = if rng.chance(85) { Kind::Prefix } else { Kind::Equals };
        let word: String =
            (0..8).map(|_| char::from(b'a' + u8::try_from(rng.below(26)).expect("< 26"))).collect();
        let value = match scope {
            Scope::From | Scope::To | Scope::Contact => format!("\"{word}\""),
            Scope::RequestUri => format!("sip:{word}@"),
            _ => format!("{word}-scan/{}", rng.below(10)),
        };
        sigs.push(
            Signature::new(&format!("bench-{i}"), scope, kind, &value, 100)
                .expect("a valid generated signature"),
        );
        i += 1;
    }
    sigs
}
