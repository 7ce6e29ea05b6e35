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

/// `Array<Automaton>`, two slots: the compiled signature set, double-buffered
/// (`Config::automaton_slot` names the live one).
pub const AUTOMATA: &str = "SG_AUTOMATA";
/// `Array<SigRecord>`: signature definitions, the source the automaton is compiled from.
pub const SIGS: &str = "SG_SIGS";
/// `PerCpuArray<u64>`: hits per signature slot.
pub const SIG_HITS: &str = "SG_SIG_HITS";
/// `LruHashMap<SourceKey, Ban>`: banned sources.
pub const BANS: &str = "SG_BANS";
/// `LruHashMap<SourceKey, RateState>`: per-source rate-limit state.
pub const RATE: &str = "SG_RATE";
/// `RingBuf`: incident records (`Event`).
pub const EVENTS: &str = "SG_EVENTS";
/// `Array<u64>`, one entry: GCRA state of the global event budget.
pub const EVENT_BUDGET: &str = "SG_EVENT_TAT";

/// `LpmTrie<[u8; 4], Policy>`: protected IPv4 destinations (prefixes) and their policies.
pub const DEST_V4: &str = "SG_DEST_V4";
/// `LpmTrie<[u8; 16], Policy>`: protected IPv6 destinations.
pub const DEST_V6: &str = "SG_DEST_V6";
/// `PerCpuArray<u64>`: packets dropped per policy id (0: the global policy).
pub const DEST_DROPS: &str = "SG_DEST_DROPS";
/// `HashMap<u32, DestInfo>`: what each policy protects and its name (userspace only).
pub const DEST_INFO: &str = "SG_DEST_INFO";

/// `Array<u64>`, memory-mappable: which IPv4 `/24`s the global lists may cover
/// (`lists::FILTER_BLOCK_BITS`).
pub const LIST_FILTER: &str = "SG_LIST_FILTER_V4";
/// The `/16` bitmaps an earlier sipguard kept (`Array<[u64; 1024]>`): unpinned at load.
pub const RETIRED_LIST_FILTER: &str = "SG_LIST_FILTER";

/// Every map, in a stable order (status output, pin checks).
pub const ALL: [&str; 19] = [
    CONFIG,
    PORTS,
    STATS,
    ALLOW_V4,
    ALLOW_V6,
    BLOCK_V4,
    BLOCK_V6,
    LIST_FILTER,
    AUTOMATA,
    SIGS,
    SIG_HITS,
    BANS,
    RATE,
    EVENTS,
    EVENT_BUDGET,
    DEST_V4,
    DEST_V6,
    DEST_DROPS,
    DEST_INFO,
];

/// Default number of protected destinations per address family.
pub const DEFAULT_DEST_CAPACITY: u32 = 16_384;

/// Default capacity of each source list (per address family), settable at first attach.
pub const DEFAULT_LIST_CAPACITY: u32 = 65_536;
/// Default capacity of the ban and rate-limit maps (sources tracked at once).
pub const DEFAULT_SOURCE_CAPACITY: u32 = 65_536;
/// Bytes of the event ring buffer.
pub const EVENT_RING_BYTES: u32 = 256 * 1024;
/// Entries of [`PORTS`]: 65536 ports / 64 bits.
pub const PORT_WORDS: u32 = 1024;
