//! SIP domains a protected destination answers to (`SG_DOMAINS`): with any declared, a
//! request whose Request-URI host is none of them (typically the server's bare IP address:
//! a "direct-IP" ghost call from a scanner that does not know the domain) is dropped with
//! reason `unknown_domain`.
//!
//! The kernel never compares names: it hashes the host it finds, a word at a time, and looks
//! the hash up under the policy's id and the global one. Userspace hashes the names it
//! stores with the same function, so the two cannot disagree. A 64-bit hash makes an
//! accidental match of a foreign host negligible; a deliberate one needs the name it stands
//! for, and whoever has that can simply use it.

use crate::inspect::{keep, lower};

/// Longest host the kernel hashes (16 words); longer hosts match no declared domain.
pub const MAX_DOMAIN_LEN: usize = 127;

/// Key of `SG_DOMAINS`: a policy id (0: the global policy) and a name's length and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct DomainKey {
    pub policy: u32,
    pub len: u32,
    pub hash: u64,
}

const _: () = assert!(size_of::<DomainKey>() == 16);

/// Value of `SG_DOMAINS`: the name itself, for userspace to list (the kernel only tests
/// presence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DomainName {
    pub len: u8,
    pub name: [u8; MAX_DOMAIN_LEN],
}

const _: () = assert!(size_of::<DomainName>() == 128);

impl DomainKey {
    #[must_use]
    #[inline(always)]
    pub const fn new(policy: u32, len: usize, hash: u64) -> Self {
        #[expect(clippy::cast_possible_truncation, reason = "hosts are at most 127 bytes")]
        Self { policy, len: len as u32, hash }
    }
}

const SEED: u64 = 0x5349_5047_5541_5244;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Folds the next word of a host into its hash. `bytes` is how many of the word's bytes
/// belong to the host (1..=8); letters count case-insensitively.
#[must_use]
#[inline(always)]
pub const fn mix(h: u64, word: u64, bytes: usize) -> u64 {
    let x = (h ^ keep(lower(word), bytes)).wrapping_mul(MUL);
    x ^ (x >> 29)
}

/// The start of a hash over a host of `len` bytes.
#[must_use]
#[inline(always)]
pub const fn start(len: usize) -> u64 {
    SEED ^ (len as u64)
}

/// Hash of a whole name (userspace and tests; the kernel runs [`mix`] over its window).
#[must_use]
pub fn hash(name: &[u8]) -> u64 {
    let mut h = start(name.len());
    for chunk in name.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(w), chunk.len());
    }
    h
}

/// Why a name cannot be a SIP domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadName {
    Empty,
    TooLong,
    /// A byte no host name or address literal has.
    Character(u8),
}

/// The form a name is stored and matched in: lower case, without a trailing dot. Host names,
/// IPv4 literals and bracketed IPv6 literals (as a URI writes them; userspace brackets a bare
/// address first) are accepted.
///
/// # Errors
/// When it is empty, longer than [`MAX_DOMAIN_LEN`], or has a byte no host has.
pub fn normalize(name: &str, out: &mut [u8; MAX_DOMAIN_LEN]) -> Result<usize, BadName> {
    let name = name.trim().trim_end_matches('.');
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(BadName::Empty);
    }
    if bytes.len() > MAX_DOMAIN_LEN {
        return Err(BadName::TooLong);
    }
    let literal = bytes[0] == b'[' && bytes[bytes.len() - 1] == b']';
    for (n, &b) in bytes.iter().enumerate() {
        let ok = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_')
            || (literal && (b == b':' || n == 0 || n == bytes.len() - 1));
        if !ok {
            return Err(BadName::Character(b));
        }
        out[n] = b.to_ascii_lowercase();
    }
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<([u8; MAX_DOMAIN_LEN], usize), BadName> {
        let mut out = [0; MAX_DOMAIN_LEN];
        normalize(s, &mut out).map(|n| (out, n))
    }

    #[test]
    fn hashing_ignores_case_only() {
        assert_eq!(hash(b"PBX.Example.COM"), hash(b"pbx.example.com"));
        assert_ne!(hash(b"pbx.example.com"), hash(b"pbx.example.co"));
        assert_ne!(hash(b"pbx.example.com"), hash(b"pbx-example.com"));
        assert_ne!(hash(b"10.0.0.1"), hash(b"10.0.0.10"));
        // Letters fold, digits and punctuation do not collide with them.
        assert_ne!(hash(b"a1"), hash(b"aq"));
    }

    #[test]
    fn names_normalize() {
        let (out, n) = norm(" PBX.Example.com. ").unwrap();
        assert_eq!(&out[..n], b"pbx.example.com");
        assert_eq!(norm("2001:db8::1"), Err(BadName::Character(b':')));
        let (out, n) = norm("[2001:DB8::1]").unwrap();
        assert_eq!(&out[..n], b"[2001:db8::1]");
        assert_eq!(norm(""), Err(BadName::Empty));
        assert_eq!(norm("a b"), Err(BadName::Character(b' ')));
        assert_eq!(norm("sip:pbx"), Err(BadName::Character(b':')));
        assert_eq!(norm(&"a".repeat(128)), Err(BadName::TooLong));
        assert!(norm(&"a".repeat(127)).is_ok());
    }
}
