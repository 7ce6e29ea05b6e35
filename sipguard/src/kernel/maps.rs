//! Typed access to the pinned maps of a running filter. Every other module goes through here;
//! none opens a map by name on its own. The writers of settings (configuration, ports,
//! policies, names, signature records, domains, the ban budget) are not here but in
//! `state/change/raw.rs`, callable only by `state::change::Change`, which journals each.
//! The writers left here are of state no command puts back: the inactive automaton slot
//! (live only once a journaled configuration names it), counters reset for a reused slot,
//! the maintenance flags of the list filters and the route mirror, the decision list's
//! generation (the bouncer's own, replaced whole) and the bouncer's report.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Context as _;
use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuValues, lpm_trie::Key};
use sipguard_common::{
    config::Config,
    counters::COUNTER_SLOTS,
    decisions::{BouncerReport, Decision, DecisionSet, ScenarioName},
    domain::{DomainKey, DomainName, MAX_DOMAIN_LEN},
    inspect::{Automaton, SIG_CAPACITY, SigRecord},
    lists::{V4_KEY_LEN, V6_KEY_LEN},
    maps as names,
    policy::{DestInfo, Policy},
    sources::{Ban, SourceKey},
    trust::{BanBudget, RouteIfindex},
};

/// The route mirror's IPv4 trie.
pub type RoutesV4 = LpmTrie<MapData, [u8; 4], RouteIfindex>;
/// The route mirror's IPv6 trie.
pub type RoutesV6 = LpmTrie<MapData, [u8; 16], RouteIfindex>;

use crate::{
    cidr::Cidr,
    kernel::{list_filter::ListFilterMap, pin::PinLayout},
};

/// Which source list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Allow,
    Block,
}

impl ListKind {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Allow => "allowlist",
            ListKind::Block => "blocklist",
        }
    }

    /// The pinned map names of this list (IPv4, IPv6).
    #[must_use]
    pub fn maps(self) -> [&'static str; 2] {
        let (v4, v6) = self.map_names();
        [v4, v6]
    }

    fn map_names(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Allow => (names::ALLOW_V4, names::ALLOW_V6),
            ListKind::Block => (names::BLOCK_V4, names::BLOCK_V6),
        }
    }
}

pub type TrieV4 = LpmTrie<MapData, [u8; V4_KEY_LEN], u32>;
pub type TrieV6 = LpmTrie<MapData, [u8; V6_KEY_LEN], u32>;

/// Entry value; reserved for later use (e.g. which feed an entry came from).
const ENTRY_VALUE: u32 = 0;

/// A pair of tries keyed `[tag][address]` (`sipguard_common::lists::v4_key`), IPv4 and IPv6,
/// opened once for many entries: the source lists (`V` = `u32`) and the decision list.
pub struct TaggedTries<V: aya::Pod> {
    pub v4: LpmTrie<MapData, [u8; V4_KEY_LEN], V>,
    pub v6: LpmTrie<MapData, [u8; V6_KEY_LEN], V>,
}

/// Both tries of one list kind.
pub type ListTries = TaggedTries<u32>;

impl<V: aya::Pod> TaggedTries<V> {
    /// Stores `value` for `c` under `tag`, replacing what was there.
    pub fn put(&mut self, tag: u32, c: &Cidr, value: V) -> anyhow::Result<()> {
        let result = if let Some((len, data)) = c.v4_key(tag) {
            self.v4.insert(&Key::new(len, data), value, 0)
        } else if let Some((len, data)) = c.v6_key(tag) {
            self.v6.insert(&Key::new(len, data), value, 0)
        } else {
            unreachable!("a prefix is IPv4 or IPv6")
        };
        result.map_err(explain_map_error)
    }

    /// Removes `c` from under `tag`; `Ok(false)` when it was not there.
    pub fn remove(&mut self, tag: u32, c: &Cidr) -> anyhow::Result<bool> {
        let result = if let Some((len, data)) = c.v4_key(tag) {
            self.v4.remove(&Key::new(len, data))
        } else if let Some((len, data)) = c.v6_key(tag) {
            self.v6.remove(&Key::new(len, data))
        } else {
            unreachable!("a prefix is IPv4 or IPv6")
        };
        match result {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            // A trie says "not found" as a plain ENOENT.
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(e) => Err(explain_map_error(e)),
        }
    }

    /// The value of the longest prefix under `tag` that covers `c`'s address, if any.
    #[must_use]
    pub fn longest_match(&self, tag: u32, c: &Cidr) -> Option<V> {
        if let Some((len, data)) = c.v4_key(tag) {
            self.v4.get(&Key::new(len, data), 0).ok()
        } else if let Some((len, data)) = c.v6_key(tag) {
            self.v6.get(&Key::new(len, data), 0).ok()
        } else {
            unreachable!("a prefix is IPv4 or IPv6")
        }
    }
}

impl ListTries {
    /// Inserts `c` under `tag` (an existing entry stays).
    pub fn insert(&mut self, tag: u32, c: &Cidr) -> anyhow::Result<()> {
        self.put(tag, c, ENTRY_VALUE)
    }
}

/// Held while the lists change (see [`PinnedMaps::lock_lists`]); closing the descriptor
/// releases the lock.
pub struct ListsLock {
    _dir: std::fs::File,
}

/// Handles on the pinned maps under one pin root.
#[derive(Clone)]
pub struct PinnedMaps {
    layout: PinLayout,
}

impl PinnedMaps {
    /// Opens the state of a running filter, failing readably when nothing is attached.
    pub fn open(layout: &PinLayout) -> anyhow::Result<Self> {
        layout.require_state()?;
        Ok(Self { layout: layout.clone() })
    }

    /// A handle on one pinned map. Outside this module it is for the journaled writers of
    /// `state::change` (`state/change/raw.rs`), the only code that writes settings.
    pub(crate) fn map(&self, name: &str) -> anyhow::Result<Map> {
        let path = self.layout.map(name);
        let data = MapData::from_pin(&path)
            .with_context(|| format!("opening pinned map {}", path.display()))?;
        Map::from_map_data(data).with_context(|| format!("reading map {name}"))
    }

    pub fn config(&self) -> anyhow::Result<Config> {
        let map: Array<_, Config> = self.map(names::CONFIG)?.try_into()?;
        map.get(&0, 0).context("reading the configuration map")
    }

    /// Marks the route mirror as kept (or not), leaving the rest of the configuration.
    pub(crate) fn set_routes_kept(&self, on: bool) -> anyhow::Result<()> {
        self.edit_config(|config| config.routes = u8::from(on))
    }

    /// The route mirror's tries (IPv4, IPv6).
    pub fn routes(&self) -> anyhow::Result<(RoutesV4, RoutesV6)> {
        Ok((self.map(names::ROUTES_V4)?.try_into()?, self.map(names::ROUTES_V6)?.try_into()?))
    }

    pub fn ban_budget(&self) -> anyhow::Result<BanBudget> {
        let map: Array<_, BanBudget> = self.map(names::BAN_BUDGET)?.try_into()?;
        map.get(&0, 0).context("reading the ban budget")
    }

    /// When each source last earned standing.
    pub fn standing(&self) -> anyhow::Result<HashMap<MapData, SourceKey, u64>> {
        Ok(self.map(names::STANDING)?.try_into()?)
    }

    /// Serializes changes to the lists between sipguard processes (a `run --config` reload
    /// and an admin's `block add`, say): an exclusive advisory lock on the pin directory,
    /// held until the guard is dropped. Take it once, at the outermost operation: a second
    /// lock from the same process would wait for the first.
    pub fn lock_lists(&self) -> anyhow::Result<ListsLock> {
        let root = self.layout.root();
        let dir = std::fs::File::open(root)
            .with_context(|| format!("opening {} to lock the lists", root.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&dir), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("locking the lists under {}", root.display()));
        }
        Ok(ListsLock { _dir: dir })
    }

    /// Marks the list filters as maintained (or not), leaving the rest of the configuration.
    /// Either way the earlier `/16` bitmaps are marked unmaintained: this version never
    /// updates them.
    pub(crate) fn set_list_filters(&self, on: bool) -> anyhow::Result<()> {
        self.edit_config(|config| {
            config.list_filters = u8::from(on);
            config.retired_list_filters = 0;
        })
    }

    /// Rewrites the stored configuration through `edit`: for the bytes userspace keeps that
    /// are not settings, which `set_config` carries over.
    fn edit_config(&self, edit: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
        let mut map: Array<_, Config> = self.map(names::CONFIG)?.try_into()?;
        let mut config = map.get(&0, 0).context("reading the configuration map")?;
        edit(&mut config);
        map.set(0, config, 0).context("writing the configuration map")
    }

    /// The IPv4 prefilter of the global lists, mapped for reading and, if `write`, writing;
    /// `None` in a pin directory whose program predates it.
    pub fn list_filter(&self, write: bool) -> anyhow::Result<Option<ListFilterMap>> {
        let path = self.layout.map(names::LIST_FILTER);
        if !path.exists() {
            return Ok(None);
        }
        ListFilterMap::open(&path, write).map(Some)
    }

    /// The configured SIP ports, ascending.
    pub fn ports(&self) -> anyhow::Result<Vec<u16>> {
        let map: Array<_, u64> = self.map(names::PORTS)?.try_into()?;
        let mut ports = Vec::new();
        for word_index in 0..names::PORT_WORDS {
            let word = map.get(&word_index, 0).context("reading the port map")?;
            for bit in 0..64u32 {
                if word & (1 << bit) != 0 {
                    ports.push(u16::try_from(word_index * 64 + bit).expect("port fits in u16"));
                }
            }
        }
        Ok(ports)
    }

    /// Counter slots summed over all CPUs.
    pub fn counters(&self) -> anyhow::Result<Vec<u64>> {
        let map: PerCpuArray<_, u64> = self.map(names::STATS)?.try_into()?;
        (0..COUNTER_SLOTS)
            .map(|slot| {
                let per_cpu = map.get(&slot, 0).context("reading the statistics map")?;
                Ok(per_cpu.iter().sum())
            })
            .collect()
    }

    /// Writes a compiled automaton into `slot` (0 or 1) of `SG_AUTOMATA`.
    pub(crate) fn set_automaton(&self, slot: u8, automaton: &Automaton) -> anyhow::Result<()> {
        let mut map: Array<_, Automaton> = self.map(names::AUTOMATA)?.try_into()?;
        map.set(u32::from(slot & 1), automaton, 0).context("writing the signature automaton")
    }

    /// Every signature slot's stored definition.
    pub fn sig_records(&self) -> anyhow::Result<Vec<SigRecord>> {
        let map: Array<_, SigRecord> = self.map(names::SIGS)?.try_into()?;
        (0..SIG_CAPACITY).map(|i| map.get(&i, 0).context("reading the signature map")).collect()
    }

    /// One signature slot's stored definition.
    pub fn sig_record(&self, slot: u16) -> anyhow::Result<SigRecord> {
        let map: Array<_, SigRecord> = self.map(names::SIGS)?.try_into()?;
        map.get(&u32::from(slot), 0).context("reading the signature map")
    }

    /// Hits per signature slot, summed over CPUs.
    pub fn sig_hits(&self) -> anyhow::Result<Vec<u64>> {
        let map: PerCpuArray<_, u64> = self.map(names::SIG_HITS)?.try_into()?;
        (0..SIG_CAPACITY)
            .map(|i| Ok(map.get(&i, 0).context("reading signature hits")?.iter().sum()))
            .collect()
    }

    /// Zeroes the hit counters of a slot (it is being given to another signature).
    pub(crate) fn reset_sig_hits(&self, slot: u16) -> anyhow::Result<()> {
        let mut map: PerCpuArray<_, u64> = self.map(names::SIG_HITS)?.try_into()?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
        let zeros = PerCpuValues::try_from(vec![0u64; cpus]).context("per-CPU zeros")?;
        map.set(u32::from(slot), zeros, 0).context("resetting signature hits")
    }

    pub(crate) fn dest_v4(&self) -> anyhow::Result<LpmTrie<MapData, [u8; 4], Policy>> {
        Ok(self.map(names::DEST_V4)?.try_into()?)
    }

    pub(crate) fn dest_v6(&self) -> anyhow::Result<LpmTrie<MapData, [u8; 16], Policy>> {
        Ok(self.map(names::DEST_V6)?.try_into()?)
    }

    pub(crate) fn dest_info(&self) -> anyhow::Result<HashMap<MapData, u32, DestInfo>> {
        Ok(self.map(names::DEST_INFO)?.try_into()?)
    }

    /// The policy stored for exactly `cidr` (the tries answer longest-prefix queries; an
    /// exact entry is the one whose prefix length is asked).
    pub fn policy(&self, cidr: &Cidr) -> anyhow::Result<Option<Policy>> {
        let len = u32::from(cidr.prefix_len());
        let found = match cidr.addr() {
            IpAddr::V4(a) => self.dest_v4()?.get(&Key::new(len, a.octets()), 0),
            IpAddr::V6(a) => self.dest_v6()?.get(&Key::new(len, a.octets()), 0),
        };
        match found {
            Ok(p) => Ok(Some(p)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading a destination policy"),
        }
    }

    /// The name record of a policy id.
    pub fn dest_info_of(&self, id: u32) -> anyhow::Result<Option<DestInfo>> {
        match self.dest_info()?.get(&id, 0) {
            Ok(info) => Ok(Some(info)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading a destination's name"),
        }
    }

    /// Drops of one policy id, summed over CPUs.
    pub fn dest_drops_of(&self, id: u32) -> anyhow::Result<u64> {
        let map: PerCpuArray<_, u64> = self.map(names::DEST_DROPS)?.try_into()?;
        Ok(map.get(&id, 0).context("reading destination drops")?.iter().sum())
    }

    pub(crate) fn reset_dest_drops(&self, id: u32) -> anyhow::Result<()> {
        let mut map: PerCpuArray<_, u64> = self.map(names::DEST_DROPS)?.try_into()?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e).context("counting CPUs")?;
        let zeros = PerCpuValues::try_from(vec![0u64; cpus]).context("per-CPU zeros")?;
        map.set(id, zeros, 0).context("resetting destination drops")
    }

    pub(crate) fn domains(&self) -> anyhow::Result<HashMap<MapData, DomainKey, DomainName>> {
        Ok(self.map(names::DOMAINS)?.try_into()?)
    }

    /// Every policy's SIP domains (`SG_DOMAINS`), sorted.
    pub fn declared_domains(&self) -> anyhow::Result<BTreeMap<u32, Vec<String>>> {
        let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for entry in &self.domains()? {
            let (k, v) = entry.context("reading the SIP domains")?;
            let n = usize::from(v.len).min(MAX_DOMAIN_LEN);
            out.entry(k.policy)
                .or_default()
                .push(String::from_utf8_lossy(&v.name[..n]).into_owned());
        }
        for names in out.values_mut() {
            names.sort();
        }
        Ok(out)
    }

    /// The decision tries.
    pub(crate) fn decision_tries(&self) -> anyhow::Result<TaggedTries<Decision>> {
        Ok(TaggedTries {
            v4: self.map(names::DECISIONS_V4)?.try_into()?,
            v6: self.map(names::DECISIONS_V6)?.try_into()?,
        })
    }

    pub fn decision_set(&self) -> anyhow::Result<DecisionSet> {
        let map: Array<_, DecisionSet> = self.map(names::DECISION_SET)?.try_into()?;
        map.get(&0, 0).context("reading the decision set")
    }

    pub(crate) fn set_decision_set(&self, set: DecisionSet) -> anyhow::Result<()> {
        let mut map: Array<_, DecisionSet> = self.map(names::DECISION_SET)?.try_into()?;
        map.set(0, set, 0).context("writing the decision set")
    }

    pub fn scenarios(&self) -> anyhow::Result<HashMap<MapData, u32, ScenarioName>> {
        Ok(self.map(names::SCENARIOS)?.try_into()?)
    }

    pub fn bouncer_report(&self) -> anyhow::Result<BouncerReport> {
        let map: Array<_, BouncerReport> = self.map(names::BOUNCER)?.try_into()?;
        map.get(&0, 0).context("reading the bouncer report")
    }

    pub(crate) fn set_bouncer_report(&self, report: &BouncerReport) -> anyhow::Result<()> {
        let mut map: Array<_, BouncerReport> = self.map(names::BOUNCER)?.try_into()?;
        map.set(0, *report, 0).context("writing the bouncer report")
    }

    pub(crate) fn bans(&self) -> anyhow::Result<HashMap<MapData, SourceKey, Ban>> {
        Ok(self.map(names::BANS)?.try_into()?)
    }

    /// Both tries of a list kind.
    pub(crate) fn list_tries(&self, kind: ListKind) -> anyhow::Result<ListTries> {
        Ok(ListTries { v4: self.list_v4(kind)?, v6: self.list_v6(kind)? })
    }

    pub(crate) fn list_v4(&self, kind: ListKind) -> anyhow::Result<TrieV4> {
        Ok(self.map(kind.map_names().0)?.try_into()?)
    }

    pub(crate) fn list_v6(&self, kind: ListKind) -> anyhow::Result<TrieV6> {
        Ok(self.map(kind.map_names().1)?.try_into()?)
    }

    /// Capacity of a map, as fixed when it was created.
    pub fn capacity(&self, name: &str) -> anyhow::Result<u32> {
        let path = self.layout.map(name);
        let info = aya::maps::MapInfo::from_pin(&path)
            .with_context(|| format!("reading map info of {}", path.display()))?;
        Ok(info.max_entries())
    }

    pub fn list_capacity(&self, kind: ListKind) -> anyhow::Result<(u32, u32)> {
        let (v4, v6) = kind.map_names();
        Ok((self.capacity(v4)?, self.capacity(v6)?))
    }
}

/// Every key of a trie (its `keys()` iterator, with errors given context).
pub fn trie_keys<K: aya::Pod>(trie: &LpmTrie<MapData, K, u32>) -> anyhow::Result<Vec<Key<K>>> {
    trie.keys().collect::<Result<Vec<_>, _>>().context("iterating a list map")
}

/// Names the kernel's "map is full" errno, which otherwise reads as a bare E2BIG/ENOSPC.
#[must_use]
pub fn explain_map_error(e: aya::maps::MapError) -> anyhow::Error {
    if let aya::maps::MapError::SyscallError(ref s) = e
        && matches!(s.io_error.raw_os_error(), Some(libc::E2BIG | libc::ENOSPC))
    {
        return anyhow::Error::new(e).context("the map is full");
    }
    anyhow::Error::new(e)
}
