//! Policies of protected destinations (`SG_DEST_V4` / `SG_DEST_V6`, LPM tries keyed by the
//! destination address): a provider's customers each get their own default, mode and lists.

/// Policy ids run from 1 (0 is the global policy) to this, exclusive.
pub const MAX_POLICIES: u32 = 131_072;

/// The policy of a protected destination. Updating the trie entry replaces it atomically, so
/// a flip of a list generation is one map update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Policy {
    /// Index of the policy's lists (its tags) and counters.
    pub id: u32,
    /// A [`crate::config::DefaultAction`] (never `Off`).
    pub default_action: u8,
    /// A [`crate::config::Mode`].
    pub mode: u8,
    /// Live generations of the policy's own allowlist and blocklist.
    pub allow_gen: u8,
    pub block_gen: u8,
    /// [`HAS_ALLOW`], [`HAS_BLOCK`]: skip lookups of empty per-destination lists;
    /// [`HAS_DOMAINS`].
    pub flags: u32,
    pub reserved: u32,
}

pub const HAS_ALLOW: u32 = 1;
pub const HAS_BLOCK: u32 = 2;
/// The policy declares SIP domains (`crate::domain`): requests to any other host are dropped.
pub const HAS_DOMAINS: u32 = 4;

const _: () = assert!(size_of::<Policy>() == 16);

/// Longest destination name.
pub const MAX_DEST_NAME: usize = 40;

/// What userspace keeps about a policy (`SG_DEST_INFO`, by policy id): which prefix it
/// protects and its label. The kernel never reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DestInfo {
    pub addr: [u8; 16],
    pub prefix_len: u8,
    /// 1 for IPv6 (`addr` then holds all 16 bytes), 0 for IPv4 (the first 4).
    pub v6: u8,
    pub name_len: u8,
    pub reserved: [u8; 5],
    pub name: [u8; MAX_DEST_NAME],
}

const _: () = assert!(size_of::<DestInfo>() == 64);
