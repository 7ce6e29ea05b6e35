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

/// One bit per IPv4 `/16`: set when an entry of the list may cover an address in it. The
/// program looks a global list up only when the source's bit is set, which for most sources
/// (nowhere near a listed prefix) saves the LPM lookup, the dearest step before the payload.
/// Userspace keeps every bitmap a superset of its list: bits are set before entries are
/// inserted and cleared only after they are removed.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ListFilter {
    pub words: [u64; FILTER_WORDS],
}

pub const FILTER_WORDS: usize = 65_536 / 64;
const _: () = assert!(size_of::<ListFilter>() == FILTER_WORDS * 8);

/// Entries of `SG_LIST_FILTER`: a bitmap per global list and generation.
pub const FILTER_SLOTS: u32 = 4;

/// The bitmap of the global allowlist (`allow`) or blocklist in `generation`.
#[must_use]
#[inline(always)]
pub const fn filter_slot(allow: bool, generation: u8) -> u32 {
    (if allow { 0 } else { 2 }) | (generation as u32 & 1)
}

/// The `/16` of an IPv4 address: its bit in a [`ListFilter`].
#[must_use]
#[inline(always)]
pub const fn v4_block(addr: [u8; 4]) -> usize {
    ((addr[0] as usize) << 8) | addr[1] as usize
}

impl ListFilter {
    #[must_use]
    pub const fn empty() -> Self {
        Self { words: [0; FILTER_WORDS] }
    }

    /// Marks every `/16` that the prefix `addr/len` overlaps.
    pub fn cover(&mut self, addr: [u8; 4], len: u8) {
        let first = v4_block(addr);
        let count = if len >= 16 { 1 } else { 1usize << (16 - len) };
        let first = first & !(count - 1);
        for block in first..first + count {
            self.words[block / 64] |= 1 << (block % 64);
        }
    }

    #[must_use]
    #[inline(always)]
    pub const fn may_hold(&self, addr: [u8; 4]) -> bool {
        let block = v4_block(addr);
        self.words[block / 64] & (1 << (block % 64)) != 0
    }
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
    fn filters_cover_every_block_a_prefix_overlaps() {
        let mut f = ListFilter::empty();
        f.cover([192, 0, 2, 20], 32);
        assert!(f.may_hold([192, 0, 99, 1]), "the same /16");
        assert!(!f.may_hold([192, 1, 2, 20]));
        f.cover([10, 200, 0, 0], 8);
        assert!(f.may_hold([10, 0, 0, 1]) && f.may_hold([10, 255, 255, 255]));
        assert!(!f.may_hold([11, 0, 0, 0]) && !f.may_hold([9, 255, 0, 0]));
        let mut all = ListFilter::empty();
        all.cover([0, 0, 0, 0], 0);
        assert!(all.words.iter().all(|w| *w == u64::MAX));
        assert_eq!(filter_slot(true, 0), 0);
        assert_eq!(filter_slot(true, 1), 1);
        assert_eq!(filter_slot(false, 0), 2);
        assert_eq!(filter_slot(false, 3), 3);
    }

    #[test]
    fn keys_put_the_tag_first_in_network_order() {
        assert_eq!(v4_key(0x0102_0304, [10, 0, 0, 1]), [1, 2, 3, 4, 10, 0, 0, 1]);
        let k = v6_key(7, [0xfe; 16]);
        assert_eq!(&k[..4], &[0, 0, 0, 7]);
        assert_eq!(split_key(&k), (7, &[0xfe; 16][..]));
    }
}
