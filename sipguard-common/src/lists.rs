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
    // Built as one integer: as a byte array, BPF code stores it a byte at a time.
    let word = tag.swap_bytes() as u64 | (u32::from_le_bytes(addr) as u64) << 32;
    word.to_le_bytes()
}

#[must_use]
#[inline(always)]
pub fn v6_key(tag: u32, addr: [u8; 16]) -> [u8; V6_KEY_LEN] {
    let mut k = [0u8; V6_KEY_LEN];
    k[..4].copy_from_slice(&tag.to_be_bytes());
    k[4..].copy_from_slice(&addr);
    k
}

/// The global lists' IPv4 prefilter, `SG_LIST_FILTER_V4`: per list and generation (a *slot*),
/// one bit per IPv4 `/24`, set when an entry of the list may cover an address in it. The
/// program looks a global list up only when the source's bit is set, which for most sources
/// saves the LPM lookup, the dearest step before the payload. A `/24` grain keeps that true
/// for big lists: a million scattered entries cover nearly every `/16` but one `/24` in
/// sixteen. Userspace keeps every bitmap a superset of its list: bits are set before entries
/// are inserted and cleared only after they are removed.
///
/// The map is an array of `u64` words, 8 MiB for the four slots, memory-mapped by userspace
/// (`BPF_F_MMAPABLE`): rebuilding a slot is a copy, not a syscall per word.
pub const FILTER_BLOCK_BITS: u32 = 24;
/// Words of one slot's bitmap.
pub const FILTER_SLOT_WORDS: u32 = 1 << (FILTER_BLOCK_BITS - 6);
/// Slots: the allowlist and the blocklist, two generations each.
pub const FILTER_SLOTS: u32 = 4;
/// Entries (words) of `SG_LIST_FILTER_V4`.
pub const FILTER_WORDS: u32 = FILTER_SLOTS * FILTER_SLOT_WORDS;
/// `BPF_F_MMAPABLE`: the map can be memory-mapped by userspace.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// The slot of the global allowlist (`allow`) or blocklist in `generation`.
#[must_use]
#[inline(always)]
pub const fn filter_slot(allow: bool, generation: u8) -> u32 {
    (if allow { 0 } else { 2 }) | (generation as u32 & 1)
}

/// The `/24` of an IPv4 address: its bit's index within a slot.
#[must_use]
#[inline(always)]
pub const fn v4_block(addr: [u8; 4]) -> u32 {
    u32::from_be_bytes(addr) >> (32 - FILTER_BLOCK_BITS)
}

/// The map index of the word holding `addr`'s bit in `slot`.
#[must_use]
#[inline(always)]
pub const fn filter_word(slot: u32, addr: [u8; 4]) -> u32 {
    ((slot & (FILTER_SLOTS - 1)) * FILTER_SLOT_WORDS) | (v4_block(addr) / 64)
}

/// `addr`'s bit within its word.
#[must_use]
#[inline(always)]
pub const fn filter_bit(addr: [u8; 4]) -> u64 {
    1 << (v4_block(addr) % 64)
}

/// Sets, in one slot's `words`, the bit of every `/24` that `addr/len` overlaps.
pub fn cover(words: &mut [u64], addr: [u8; 4], len: u8) {
    let count = if u32::from(len) >= FILTER_BLOCK_BITS {
        1
    } else {
        1usize << (FILTER_BLOCK_BITS - u32::from(len))
    };
    let first = v4_block(addr) as usize & !(count - 1);
    if count >= 64 {
        // Whole words: a `/18` or shorter (a `/0` is every word).
        words[first / 64..(first + count) / 64].fill(u64::MAX);
    } else {
        for block in first..first + count {
            words[block / 64] |= 1 << (block % 64);
        }
    }
}

/// Whether one slot's `words` say an entry may cover `addr`.
#[must_use]
pub fn may_hold(words: &[u64], addr: [u8; 4]) -> bool {
    words[v4_block(addr) as usize / 64] & filter_bit(addr) != 0
}

/// Splits a key back into tag and address bytes.
#[must_use]
pub fn split_key(key: &[u8]) -> (u32, &[u8]) {
    let tag = u32::from_be_bytes([key[0], key[1], key[2], key[3]]);
    (tag, &key[4..])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

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
        let mut f = vec![0u64; FILTER_SLOT_WORDS as usize];
        cover(&mut f, [192, 0, 2, 20], 32);
        assert!(may_hold(&f, [192, 0, 2, 99]), "the same /24");
        assert!(!may_hold(&f, [192, 0, 3, 20]) && !may_hold(&f, [192, 1, 2, 20]));
        cover(&mut f, [198, 51, 100, 0], 22);
        assert!(may_hold(&f, [198, 51, 100, 1]) && may_hold(&f, [198, 51, 103, 255]));
        assert!(!may_hold(&f, [198, 51, 99, 255]) && !may_hold(&f, [198, 51, 104, 0]));
        cover(&mut f, [10, 200, 0, 0], 8);
        assert!(may_hold(&f, [10, 0, 0, 1]) && may_hold(&f, [10, 255, 255, 255]));
        assert!(!may_hold(&f, [11, 0, 0, 0]) && !may_hold(&f, [9, 255, 255, 255]));
        let mut all = vec![0u64; FILTER_SLOT_WORDS as usize];
        cover(&mut all, [0, 0, 0, 0], 0);
        assert!(all.iter().all(|w| *w == u64::MAX));
        assert_eq!(filter_slot(true, 0), 0);
        assert_eq!(filter_slot(true, 1), 1);
        assert_eq!(filter_slot(false, 0), 2);
        assert_eq!(filter_slot(false, 3), 3);
        // The program's view (map index and bit) agrees with the slot view.
        let a = [198, 51, 103, 7];
        let index = filter_word(3, a) as usize;
        assert_eq!(index / FILTER_SLOT_WORDS as usize, 3);
        assert_ne!(f[index % FILTER_SLOT_WORDS as usize] & filter_bit(a), 0);
        assert!(filter_word(3, [255; 4]) < FILTER_WORDS);
    }

    #[test]
    fn keys_put_the_tag_first_in_network_order() {
        assert_eq!(v4_key(0x0102_0304, [10, 0, 0, 1]), [1, 2, 3, 4, 10, 0, 0, 1]);
        let k = v6_key(7, [0xfe; 16]);
        assert_eq!(&k[..4], &[0, 0, 0, 7]);
        assert_eq!(split_key(&k), (7, &[0xfe; 16][..]));
    }
}
