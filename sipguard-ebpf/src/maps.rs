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
    behaviour::Behaviour,
    challenges::Challenges,
    config::Config,
    counters::COUNTER_SLOTS,
    decisions::{BouncerReport, Decision, DecisionSet, ScenarioName},
    domain::{DomainKey, DomainName},
    inspect::{Automaton, SIG_CAPACITY, SigRecord},
    lists::{BPF_F_MMAPABLE, FILTER_WORDS, V4_KEY_LEN, V6_KEY_LEN},
    maps::{
        DECISION_CAPACITY, DEFAULT_BEHAVIOUR_CAPACITY, DEFAULT_DEST_CAPACITY,
        DEFAULT_LIST_CAPACITY, DEFAULT_SOURCE_CAPACITY, DEFAULT_STANDING_CAPACITY, DOMAIN_CAPACITY,
        EVENT_RING_BYTES, PORT_WORDS, ROUTE_CAPACITY, SCENARIO_CAPACITY,
    },
    policy::{DestInfo, MAX_POLICIES, Policy},
    sources::{Ban, RateState, SourceKey},
    trust::{BanBudget, RouteIfindex},
};
use sipguard_ebpf::{cseq::AnswerScratch, window::Scratch};

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

#[map(name = "SG_BEHAVIOUR")]
pub(crate) static BEHAVIOUR: LruHashMap<SourceKey, Behaviour> =
    LruHashMap::pinned(DEFAULT_BEHAVIOUR_CAPACITY, 0);

#[map(name = "SG_STANDING")]
pub(crate) static STANDING: LruHashMap<SourceKey, u64> =
    LruHashMap::pinned(DEFAULT_STANDING_CAPACITY, 0);

#[map(name = "SG_CHALLENGES")]
pub(crate) static CHALLENGES: LruHashMap<SourceKey, Challenges> =
    LruHashMap::pinned(DEFAULT_STANDING_CAPACITY, 0);

#[map(name = "SG_BAN_BUDGET")]
pub(crate) static BAN_BUDGET: Array<BanBudget> = Array::pinned(1, 0);

#[map(name = "SG_ROUTES_V4")]
pub(crate) static ROUTES_V4: LpmTrie<[u8; 4], RouteIfindex> = LpmTrie::pinned(ROUTE_CAPACITY, 0);

#[map(name = "SG_ROUTES_V6")]
pub(crate) static ROUTES_V6: LpmTrie<[u8; 16], RouteIfindex> = LpmTrie::pinned(ROUTE_CAPACITY, 0);

#[map(name = "SG_DOMAINS")]
pub(crate) static DOMAINS: HashMap<DomainKey, DomainName> =
    HashMap::pinned(DOMAIN_CAPACITY, BPF_F_NO_PREALLOC);

#[map(name = "SG_DECISIONS_V4")]
pub(crate) static DECISIONS_V4: LpmTrie<[u8; V4_KEY_LEN], Decision> =
    LpmTrie::pinned(DECISION_CAPACITY, 0);

#[map(name = "SG_DECISIONS_V6")]
pub(crate) static DECISIONS_V6: LpmTrie<[u8; V6_KEY_LEN], Decision> =
    LpmTrie::pinned(DECISION_CAPACITY, 0);

#[map(name = "SG_DECISION_SET")]
pub(crate) static DECISION_SET: Array<DecisionSet> = Array::pinned(1, 0);

/// Declared here so the loader creates and pins it with the rest; only userspace reads it.
#[map(name = "SG_SCENARIOS")]
pub(crate) static SCENARIOS: HashMap<u32, ScenarioName> =
    HashMap::pinned(SCENARIO_CAPACITY, BPF_F_NO_PREALLOC);

/// Only userspace reads and writes it.
#[map(name = "SG_BOUNCER")]
pub(crate) static BOUNCER: Array<BouncerReport> = Array::pinned(1, 0);

#[map(name = "SG_EVENTS")]
pub(crate) static EVENTS: RingBuf = RingBuf::pinned(EVENT_RING_BYTES, 0);

#[map(name = "SG_EVENT_TAT")]
pub(crate) static EVENT_TAT: Array<u64> = Array::pinned(1, 0);

/// The inspection's per-CPU working memory ([`sipguard_ebpf::window::Scratch`]).
#[map(name = "SG_SCRATCH")]
pub(crate) static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The response program's per-CPU working memory ([`sipguard_ebpf::cseq::AnswerScratch`]).
#[map(name = "SG_ANSWER")]
pub(crate) static ANSWER: PerCpuArray<AnswerScratch> = PerCpuArray::with_max_entries(1, 0);
