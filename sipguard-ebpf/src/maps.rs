//! The program's maps. Names come from `sipguard_common::maps`; every map but the per-CPU
//! scratch space is pinned by name so a restarted userspace adopts it, and list, ban and rate
//! capacities set here are defaults userspace may override at load time. (`LpmTrie` adds
//! `BPF_F_NO_PREALLOC` itself: tries allocate per entry.)

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use sipguard_common::{
    config::Config,
    counters::COUNTER_SLOTS,
    inspect::{Automaton, SIG_CAPACITY, SigRecord, WINDOW},
    lists::{BPF_F_MMAPABLE, FILTER_WORDS, V4_KEY_LEN, V6_KEY_LEN},
    maps::{
        DEFAULT_DEST_CAPACITY, DEFAULT_LIST_CAPACITY, DEFAULT_SOURCE_CAPACITY, EVENT_RING_BYTES,
        PORT_WORDS,
    },
    policy::{DestInfo, MAX_POLICIES, Policy},
    sources::{Ban, RateState, SourceKey},
};

#[map(name = "SG_CONFIG")]
pub(crate) static CONFIG: Array<Config> = Array::pinned(1, 0);

#[map(name = "SG_PORTS")]
pub(crate) static PORTS: Array<u64> = Array::pinned(PORT_WORDS, 0);

#[map(name = "SG_STATS")]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_SLOTS, 0);

#[map(name = "SG_ALLOW_V4")]
pub(crate) static ALLOW_V4: LpmTrie<[u8; V4_KEY_LEN], u32> =
    LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);

#[map(name = "SG_ALLOW_V6")]
pub(crate) static ALLOW_V6: LpmTrie<[u8; V6_KEY_LEN], u32> =
    LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);

#[map(name = "SG_BLOCK_V4")]
pub(crate) static BLOCK_V4: LpmTrie<[u8; V4_KEY_LEN], u32> =
    LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);

#[map(name = "SG_BLOCK_V6")]
pub(crate) static BLOCK_V6: LpmTrie<[u8; V6_KEY_LEN], u32> =
    LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);

#[map(name = "SG_LIST_FILTER_V4")]
pub(crate) static LIST_FILTER: Array<u64> = Array::pinned(FILTER_WORDS, BPF_F_MMAPABLE);

#[map(name = "SG_DEST_V4")]
pub(crate) static DEST_V4: LpmTrie<[u8; 4], Policy> = LpmTrie::pinned(DEFAULT_DEST_CAPACITY, 0);

#[map(name = "SG_DEST_V6")]
pub(crate) static DEST_V6: LpmTrie<[u8; 16], Policy> = LpmTrie::pinned(DEFAULT_DEST_CAPACITY, 0);

#[map(name = "SG_DEST_DROPS")]
pub(crate) static DEST_DROPS: PerCpuArray<u64> = PerCpuArray::pinned(MAX_POLICIES, 0);

#[map(name = "SG_DEST_INFO")]
pub(crate) static DEST_INFO: HashMap<u32, DestInfo> =
    HashMap::pinned(MAX_POLICIES, BPF_F_NO_PREALLOC);

#[map(name = "SG_AUTOMATA")]
pub(crate) static AUTOMATA: Array<Automaton> = Array::pinned(2, 0);

#[map(name = "SG_SIGS")]
pub(crate) static SIGS: Array<SigRecord> = Array::pinned(SIG_CAPACITY, 0);

#[map(name = "SG_SIG_HITS")]
pub(crate) static SIG_HITS: PerCpuArray<u64> = PerCpuArray::pinned(SIG_CAPACITY, 0);

#[map(name = "SG_BANS")]
pub(crate) static BANS: LruHashMap<SourceKey, Ban> = LruHashMap::pinned(DEFAULT_SOURCE_CAPACITY, 0);

#[map(name = "SG_RATE")]
pub(crate) static RATE: LruHashMap<SourceKey, RateState> =
    LruHashMap::pinned(DEFAULT_SOURCE_CAPACITY, 0);

#[map(name = "SG_EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::pinned(EVENT_RING_BYTES, 0);

#[map(name = "SG_EVENT_TAT")]
pub(crate) static EVENT_TAT: Array<u64> = Array::pinned(1, 0);

/// Per-CPU working memory of the inspection: the payload window (plus a zeroed word past
/// its end, which ends every walk), the signatures already counted for this message, and the
/// line walker's state.
#[repr(C)]
pub(crate) struct Scratch {
    pub buf: [u8; WINDOW + 16],
    pub seen: [u64; SIG_CAPACITY as usize / 64],
    pub walk: WalkState,
}

/// The walker's state lives in map memory, not on the stack, on purpose: every value the
/// per-line callback reads back is then a fresh unknown to the verifier, so all iterations
/// look alike and the callback is verified once. (On the stack, exact offsets would make
/// each iteration a new state.) Callers bound each value again where they use it.
#[repr(C)]
pub(crate) struct WalkState {
    /// The payload was longer than the window.
    pub truncated: u64,
    pub len: u64,
    pub off: u64,
    pub request: u64,
    pub score: u64,
    pub decisive: u64,
    /// Words of `seen` this message has written, a bit each.
    pub seen_used: u64,
    pub last_scope: u64,
    pub mid_line: u64,
    pub ua_off: u64,
    pub ua_len: u64,
    pub ended: u64,
    /// The current line's scope and value offset, stored and loaded back (see `line`).
    pub scope: u64,
    pub value: u64,
    /// A URI walk queued for the next step: its start and entry state (0: none).
    pub uri_start: u64,
    pub uri_entry: u64,
    /// Matches met by the walks of the current line, scored after them (at most
    /// [`PENDING`] per line; more overwrite the oldest).
    pub pending_n: u64,
    pub pending: [u32; PENDING],
    /// Where positions pass through memory between loops (see `inspect::launder`).
    pub relay: u64,
}

pub(crate) const PENDING: usize = 8;

#[map(name = "SG_SCRATCH")]
pub(crate) static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);
