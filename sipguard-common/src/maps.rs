//! Names of the maps the XDP program declares. Both sides refer to maps only through these.
//!
//! The kernel truncates object names to 15 bytes; every name here fits and carries the `SG_`
//! prefix so `bpftool map list` shows at a glance which maps belong to sipguard.

/// `Array<Config>`, one entry: the global policy and runtime knobs.
pub const CONFIG: &str = "SG_CONFIG";
/// `Array<u64>`: bitmap of SIP destination ports, bit `p % 64` of entry `p / 64`.
pub const PORTS: &str = "SG_PORTS";
/// `PerCpuArray<u64>`: one counter per slot of [`crate::counters`].
pub const STATS: &str = "SG_STATS";
/// `LpmTrie<[u8; 8], u32>`: IPv4 source allowlist, keys from [`crate::lists::v4_key`].
pub const ALLOW_V4: &str = "SG_ALLOW_V4";
/// `LpmTrie<[u8; 20], u32>`: IPv6 source allowlist, keys from [`crate::lists::v6_key`].
pub const ALLOW_V6: &str = "SG_ALLOW_V6";
/// `LpmTrie<[u8; 8], u32>`: IPv4 source blocklist.
pub const BLOCK_V4: &str = "SG_BLOCK_V4";
/// `LpmTrie<[u8; 20], u32>`: IPv6 source blocklist.
pub const BLOCK_V6: &str = "SG_BLOCK_V6";

/// Every map, in a stable order (status output, pin checks).
pub const ALL: [&str; 7] = [CONFIG, PORTS, STATS, ALLOW_V4, ALLOW_V6, BLOCK_V4, BLOCK_V6];

/// Default capacity of each source list (per address family), settable at first attach.
pub const DEFAULT_LIST_CAPACITY: u32 = 65_536;
/// Entries of [`PORTS`]: 65536 ports / 64 bits.
pub const PORT_WORDS: u32 = 1024;
