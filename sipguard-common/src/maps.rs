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
/// `LruHashMap<SourceKey, Behaviour>`: what the servers' answers say about each remote source.
pub const BEHAVIOUR: &str = "SG_BEHAVIOUR";
/// `HashMap<DomainKey, DomainName>`: the SIP domains each policy declares.
pub const DOMAINS: &str = "SG_DOMAINS";
/// `LruHashMap<SourceKey, u64>`: when each source last earned standing (`crate::trust`).
pub const STANDING: &str = "SG_STANDING";
/// `LruHashMap<SourceKey, Challenges>`: the nonces of the digest challenges sent to each
/// party with standing, and how many it answered (`crate::challenges::Challenges`).
pub const CHALLENGES: &str = "SG_CHALLENGES";
/// `Array<BanBudget>`, one entry: the admission budget of bans on unverified evidence.
pub const BAN_BUDGET: &str = "SG_BAN_BUDGET";
/// `LpmTrie<[u8; 4], u32>`: the main routing table's IPv4 routes and their interfaces.
pub const ROUTES_V4: &str = "SG_ROUTES_V4";
/// `LpmTrie<[u8; 16], u32>`: the same for IPv6.
pub const ROUTES_V6: &str = "SG_ROUTES_V6";
/// `LpmTrie<[u8; 8], Decision>`: IPv4 sources the decision store says to drop
/// (`crate::decisions`), keys from [`crate::lists::v4_key`] with the generation as tag.
pub const DECISIONS_V4: &str = "SG_DECISIONS_V4";
/// `LpmTrie<[u8; 20], Decision>`: the same for IPv6.
pub const DECISIONS_V6: &str = "SG_DECISIONS_V6";
/// `Array<DecisionSet>`, one entry: the live generation of the decision tries.
pub const DECISION_SET: &str = "SG_DECISION_SET";
/// `HashMap<u32, ScenarioName>`: the scenario names decisions refer to (userspace only).
pub const SCENARIOS: &str = "SG_SCENARIOS";
/// `Array<BouncerReport>`, one entry: what `run`'s bouncer last did (userspace only).
pub const BOUNCER: &str = "SG_BOUNCER";
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

/// The kind of a map, as the kernel numbers it (`enum bpf_map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MapKind {
    Hash = 1,
    Array = 2,
    PerCpuArray = 6,
    LruHash = 9,
    LpmTrie = 11,
    RingBuf = 27,
}

/// `BPF_F_NO_PREALLOC`: entries are allocated as they are inserted.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// One map shared by the program and userspace: the single declaration of its shape. The
/// program's declarations (in `sipguard-ebpf`) are checked against it by a host test that
/// reads the built object; userspace checks pinned maps against it before loading over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    /// Entries the object declares; userspace may size lists and destinations otherwise at
    /// first attach.
    pub max_entries: u32,
    pub flags: u32,
    /// What it holds, for the generated reference (docs/maps.md).
    pub about: &'static str,
}

#[expect(clippy::cast_possible_truncation, reason = "keys and values are far below 4 GiB")]
const fn size<T>() -> u32 {
    size_of::<T>() as u32
}

const fn spec(
    name: &'static str,
    kind: MapKind,
    (key_size, value_size): (u32, u32),
    max_entries: u32,
    flags: u32,
    about: &'static str,
) -> MapSpec {
    MapSpec { name, kind, key_size, value_size, max_entries, flags, about }
}

/// Every pinned map, in a stable order (status output, pin checks).
pub const SCHEMA: [MapSpec; 31] = {
    use crate::behaviour::Behaviour;
    use crate::domain::{DomainKey, DomainName};
    use crate::{
        challenges::Challenges,
        config::Config,
        counters::COUNTER_SLOTS,
        decisions::{BouncerReport, Decision, DecisionSet, ScenarioName},
        inspect::{Automaton, SIG_CAPACITY, SigRecord},
        lists::{BPF_F_MMAPABLE, FILTER_WORDS, V4_KEY_LEN, V6_KEY_LEN},
        policy::{DestInfo, MAX_POLICIES, Policy},
        sources::{Ban, RateState, SourceKey},
        trust::{BanBudget, RouteIfindex},
    };
    use MapKind::{Array, Hash, LpmTrie, LruHash, PerCpuArray, RingBuf};
    let tagged_v4 = 4 + size::<[u8; V4_KEY_LEN]>();
    let tagged_v6 = 4 + size::<[u8; V6_KEY_LEN]>();
    let list = DEFAULT_LIST_CAPACITY;
    let dests = DEFAULT_DEST_CAPACITY;
    let sources = DEFAULT_SOURCE_CAPACITY;
    [
        spec(
            CONFIG,
            Array,
            (4, size::<Config>()),
            1,
            0,
            "`Config`: the global policy and runtime knobs",
        ),
        spec(
            PORTS,
            Array,
            (4, 8),
            PORT_WORDS,
            0,
            "bitmap of SIP destination ports: bit `p % 64` of word `p / 64`",
        ),
        spec(
            STATS,
            PerCpuArray,
            (4, 8),
            COUNTER_SLOTS,
            0,
            "counters: reasons, monitored reasons, payload classes and methods, other events (`counters`)",
        ),
        spec(
            ALLOW_V4,
            LpmTrie,
            (tagged_v4, 4),
            list,
            BPF_F_NO_PREALLOC,
            "IPv4 allowlists: `[tag: u32 BE][address]`, tag = policy id << 1 | generation; sized by `--list-capacity`",
        ),
        spec(
            ALLOW_V6,
            LpmTrie,
            (tagged_v6, 4),
            list,
            BPF_F_NO_PREALLOC,
            "IPv6 allowlists, keyed the same way",
        ),
        spec(
            BLOCK_V4,
            LpmTrie,
            (tagged_v4, 4),
            list,
            BPF_F_NO_PREALLOC,
            "IPv4 blocklists, keyed the same way",
        ),
        spec(
            BLOCK_V6,
            LpmTrie,
            (tagged_v6, 4),
            list,
            BPF_F_NO_PREALLOC,
            "IPv6 blocklists, keyed the same way",
        ),
        spec(
            LIST_FILTER,
            Array,
            (4, 8),
            FILTER_WORDS,
            BPF_F_MMAPABLE,
            "per global list and generation, one bit per IPv4 `/24` an entry may cover; written by userspace through `mmap`",
        ),
        spec(
            AUTOMATA,
            Array,
            (4, size::<Automaton>()),
            2,
            0,
            "the compiled signature set, double-buffered (`Config::automaton_slot` names the live one)",
        ),
        spec(
            SIGS,
            Array,
            (4, size::<SigRecord>()),
            SIG_CAPACITY,
            0,
            "signature definitions, the source the automaton is compiled from",
        ),
        spec(SIG_HITS, PerCpuArray, (4, 8), SIG_CAPACITY, 0, "hits per signature slot"),
        spec(
            BANS,
            LruHash,
            (size::<SourceKey>(), size::<Ban>()),
            sources,
            0,
            "banned sources (IPv4-mapped for IPv4): expiry, cause, packets dropped",
        ),
        spec(
            RATE,
            LruHash,
            (size::<SourceKey>(), size::<RateState>()),
            sources,
            0,
            "per-source rate-limit state (GCRA) and last report time",
        ),
        spec(
            BEHAVIOUR,
            LruHash,
            (size::<SourceKey>(), size::<Behaviour>()),
            DEFAULT_BEHAVIOUR_CAPACITY,
            0,
            "per remote source, the servers' recent answers (`Behaviour`: two windows of challenges, refusals, not-found, successes); sized by `--behaviour-capacity`",
        ),
        spec(
            STANDING,
            LruHash,
            (size::<SourceKey>(), 8),
            DEFAULT_STANDING_CAPACITY,
            0,
            "when each remote source last earned standing (a success answering its REGISTER or INVITE, `CLOCK_MONOTONIC` ns); only the response program inserts",
        ),
        spec(
            CHALLENGES,
            LruHash,
            (size::<SourceKey>(), size::<Challenges>()),
            DEFAULT_STANDING_CAPACITY,
            0,
            "per party with standing, the nonces of the last digest challenges it was sent and the requests that echoed one (`Challenges`)",
        ),
        spec(
            BAN_BUDGET,
            Array,
            (4, size::<BanBudget>()),
            1,
            0,
            "GCRA admission budget of bans on unverified evidence (`BanBudget`: parameters from userspace, the arrival time from the kernel)",
        ),
        spec(
            ROUTES_V4,
            LpmTrie,
            (4 + 4, size::<RouteIfindex>()),
            ROUTE_CAPACITY,
            BPF_F_NO_PREALLOC,
            "the main routing table's IPv4 prefixes and the interface each leaves by (0: rejected), for the reverse-path check on hosts that do not forward",
        ),
        spec(
            ROUTES_V6,
            LpmTrie,
            (4 + 16, size::<RouteIfindex>()),
            ROUTE_CAPACITY,
            BPF_F_NO_PREALLOC,
            "the same for IPv6",
        ),
        spec(
            DECISIONS_V4,
            LpmTrie,
            (tagged_v4, size::<Decision>()),
            DECISION_CAPACITY,
            BPF_F_NO_PREALLOC,
            "IPv4 sources the decision store (CrowdSec) says to drop: `[generation: u32 BE][address]`, value `Decision` (expiry, origin, scenario key)",
        ),
        spec(
            DECISIONS_V6,
            LpmTrie,
            (tagged_v6, size::<Decision>()),
            DECISION_CAPACITY,
            BPF_F_NO_PREALLOC,
            "the same for IPv6",
        ),
        spec(
            DECISION_SET,
            Array,
            (4, size::<DecisionSet>()),
            1,
            0,
            "`DecisionSet`: the live generation of the decision tries, and whether it holds any",
        ),
        spec(
            SCENARIOS,
            Hash,
            (4, size::<ScenarioName>()),
            SCENARIO_CAPACITY,
            BPF_F_NO_PREALLOC,
            "the scenario names decisions refer to, by `scenario_key` (userspace only)",
        ),
        spec(
            BOUNCER,
            Array,
            (4, size::<BouncerReport>()),
            1,
            0,
            "`BouncerReport`: what `run`'s bouncer last did (syncs, errors, active decisions by origin, alerts shared; userspace only)",
        ),
        spec(
            DOMAINS,
            Hash,
            (size::<DomainKey>(), size::<DomainName>()),
            DOMAIN_CAPACITY,
            BPF_F_NO_PREALLOC,
            "SIP domains declared per policy id (0: global), keyed by the name's length and hash (`domain::hash`); the value is the name",
        ),
        spec(
            EVENTS,
            RingBuf,
            (0, 0),
            EVENT_RING_BYTES,
            0,
            "incident records (`Event`); entries are its bytes",
        ),
        spec(EVENT_BUDGET, Array, (4, 8), 1, 0, "GCRA state of the global event budget"),
        spec(
            DEST_V4,
            LpmTrie,
            (4 + 4, size::<Policy>()),
            dests,
            BPF_F_NO_PREALLOC,
            "protected IPv4 destinations and their `Policy`; sized by `--dest-capacity`",
        ),
        spec(
            DEST_V6,
            LpmTrie,
            (4 + 16, size::<Policy>()),
            dests,
            BPF_F_NO_PREALLOC,
            "protected IPv6 destinations and their `Policy`",
        ),
        spec(
            DEST_DROPS,
            PerCpuArray,
            (4, 8),
            MAX_POLICIES,
            0,
            "packets dropped per policy id (0: the global policy)",
        ),
        spec(
            DEST_INFO,
            Hash,
            (4, size::<DestInfo>()),
            MAX_POLICIES,
            BPF_F_NO_PREALLOC,
            "what each policy id protects and its name (userspace only)",
        ),
    ]
};

/// Pinned maps whose entries the programs rebuild from traffic alone: what each party did in
/// the last minutes, when it last succeeded, its rate. One pinned by a version whose shape
/// differs is replaced at load, losing only those recent observations; any other map of
/// another shape refuses the load.
pub const REBUILT_FROM_TRAFFIC: [&str; 4] = [BEHAVIOUR, CHALLENGES, STANDING, RATE];

/// Pinned maps that `run` rewrites whole at each step (the bouncer's report): one of another
/// shape is replaced at load like those above, losing only a report the next step rewrites.
pub const REWRITTEN_BY_RUN: [&str; 1] = [BOUNCER];

/// Maps private to the program (per-CPU working memory, not pinned, never opened by
/// userspace): their shapes are the program's business.
pub const PRIVATE: [&str; 6] =
    ["SG_SCRATCH", "SG_HANDOFF", "SG_ANSWER", "SG_ANS_HANDOFF", "SG_USERS_SEEN", STAGES];

/// `ProgramArray`: the XDP program's jump table (`crate::stages`). Private to each load, so a
/// program only ever hands over to stages of its own build; pinned per interface
/// (`<root>/stages/<ifname>`) for as long as a link runs it, because the kernel empties a
/// jump table when the last file descriptor or pin of it goes.
pub const STAGES: &str = "SG_STAGES";

/// The spec of the pinned map `name`.
#[must_use]
pub fn spec_of(name: &str) -> Option<&'static MapSpec> {
    SCHEMA.iter().find(|m| m.name == name)
}

/// Default number of protected destinations per address family.
pub const DEFAULT_DEST_CAPACITY: u32 = 16_384;

/// Default capacity of each source list (per address family), settable at first attach.
pub const DEFAULT_LIST_CAPACITY: u32 = 65_536;
/// Default capacity of the ban and rate-limit maps (sources tracked at once).
pub const DEFAULT_SOURCE_CAPACITY: u32 = 65_536;
/// Default capacity of the behaviour map (remote sources whose answers are tracked).
pub const DEFAULT_BEHAVIOUR_CAPACITY: u32 = 65_536;
/// Default capacity of the standing map (remote sources with standing at once).
pub const DEFAULT_STANDING_CAPACITY: u32 = 65_536;
/// Routes the mirror holds per address family (a host with more forwards, and asks the
/// kernel's FIB directly).
pub const ROUTE_CAPACITY: u32 = 16_384;
/// Decisions each decision trie holds, both generations together (a full sync of more than
/// half of it cannot be double-buffered and is refused, keeping the set in force).
pub const DECISION_CAPACITY: u32 = 1 << 20;
/// Distinct scenario names the decisions may refer to.
pub const SCENARIO_CAPACITY: u32 = 4096;
/// SIP domains all policies together may declare.
pub const DOMAIN_CAPACITY: u32 = 65_536;
/// Bytes of the event ring buffer.
pub const EVENT_RING_BYTES: u32 = 256 * 1024;
/// Entries of [`PORTS`]: 65536 ports / 64 bits.
pub const PORT_WORDS: u32 = 1024;
