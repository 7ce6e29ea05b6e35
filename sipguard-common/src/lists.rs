//! Key layout of the source lists (LPM tries).
//!
//! A key is a 32-bit big-endian *tag* followed by the address. The tag scopes an entry to a
//! list: today tag 0 is the global list; per-destination lists and double-buffered
//! generations get their own tags without changing the map layout. The trie's prefix length
//! counts the tag bits, so a `/24` entry is stored with prefix length `32 + 24`.

/// Bits of tag in front of the address in every key.
pub const TAG_BITS: u32 = 32;
/// Policy id of the global lists.
pub const GLOBAL_POLICY: u32 = 0;

/// The tag of a list: its policy (0 for the global lists, else a destination's policy id)
/// and its generation. Replacing a list writes the other generation, then flips the live
/// one, so packets see the old list or the new one and never a mixture or nothing.
#[must_use]
#[inline(always)]
pub const fn tag(policy: u32, generation: u8) -> u32 {
    (policy << 1) | (generation as u32 & 1)
}

/// Key bytes of an IPv4 entry.
pub const V4_KEY_LEN: usize = 8;
/// Key bytes of an IPv6 entry.
pub const V6_KEY_LEN: usize = 20;

#[must_use]
#[inline(always)]
pub const fn v4_key(tag: u32, addr: [u8; 4]) -> [u8; V4_KEY_LEN] {
    let t = tag.to_be_bytes();
    [t[0], t[1], t[2], t[3], addr[0], addr[1], addr[2], addr[3]]
}

#[must_use]
#[inline(always)]
pub fn v6_key(tag: u32, addr: [u8; 16]) -> [u8; V6_KEY_LEN] {
    let mut k = [0u8; V6_KEY_LEN];
    k[..4].copy_from_slice(&tag.to_be_bytes());
    k[4..].copy_from_slice(&addr);
    k
}

/// Splits a key back into tag and address bytes.
#[must_use]
pub fn split_key(key: &[u8]) -> (u32, &[u8]) {
    let tag = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    (tag, &key[4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_keep_policies_and_generations_apart() {
        assert_eq!(tag(GLOBAL_POLICY, 0), 0);
        assert_eq!(tag(GLOBAL_POLICY, 1), 1);
        assert_eq!(tag(5, 0), 10);
        assert_eq!(tag(5, 1), 11);
        assert_eq!(tag(5, 3), 11, "only the low bit is a generation");
    }

    #[test]
    fn keys_put_the_tag_first_in_network_order() {
        assert_eq!(v4_key(0x0102_0304, [10, 0, 0, 1]), [1, 2, 3, 4, 10, 0, 0, 1]);
        let k = v6_key(7, [0xfe; 16]);
        assert_eq!(&k[..4], &[0, 0, 0, 7]);
        assert_eq!(split_key(&k), (7, &[0xfe; 16][..]));
    }
}
