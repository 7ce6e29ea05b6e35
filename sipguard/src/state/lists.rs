//! Allow/block list operations on a running filter, global or per protected destination:
//! validated in full before any change, rolled back if the kernel refuses part of a change,
//! and replaced atomically by generation (the new list is written under the other
//! generation's tag, then the live generation flips).

use std::{collections::BTreeSet, net::IpAddr};

use anyhow::Context as _;
use aya::maps::{LpmTrie, MapData};
use sipguard_common::{
    lists::{self, FILTER_SLOT_WORDS, GLOBAL_POLICY, filter_slot, tag},
    policy::{HAS_ALLOW, HAS_BLOCK},
};

use crate::{
    cidr::Cidr,
    kernel::maps::{ListKind, PinnedMaps, trie_keys},
    state::{
        change::{self, Change},
        destinations::{self, Destination},
    },
};

/// Whose list: the global one, or a protected destination's.
#[derive(Clone, Debug)]
pub enum Target {
    Global,
    Dest(Box<Destination>),
}

impl Target {
    fn policy(&self) -> u32 {
        match self {
            Target::Global => GLOBAL_POLICY,
            Target::Dest(d) => d.id,
        }
    }

    fn generation(&self, maps: &PinnedMaps, kind: ListKind) -> anyhow::Result<u8> {
        Ok(match (self, kind) {
            (Target::Global, ListKind::Allow) => maps.config()?.allow_gen & 1,
            (Target::Global, ListKind::Block) => maps.config()?.block_gen & 1,
            (Target::Dest(d), ListKind::Allow) => d.policy.allow_gen & 1,
            (Target::Dest(d), ListKind::Block) => d.policy.block_gen & 1,
        })
    }

    /// "the global allowlist", "the blocklist of 198.51.100.10/32 (customer-a)".
    #[must_use]
    pub fn describe(&self, kind: ListKind) -> String {
        match self {
            Target::Global => format!("the global {}", kind.name()),
            Target::Dest(d) => format!("the {} of {}", kind.name(), d.label()),
        }
    }

    /// Makes `generation` the live one (and marks a destination's list as in use).
    fn go_live(&mut self, tx: &mut Change, kind: ListKind, generation: u8) -> anyhow::Result<()> {
        match self {
            Target::Global => {
                tx.edit_config(
                    &format!("made generation {generation} of the {} live", kind.name()),
                    |config| match kind {
                        ListKind::Allow => config.allow_gen = generation,
                        ListKind::Block => config.block_gen = generation,
                    },
                )?;
                Ok(())
            }
            Target::Dest(d) => {
                match kind {
                    ListKind::Allow => {
                        d.policy.allow_gen = generation;
                        d.policy.flags |= HAS_ALLOW;
                    }
                    ListKind::Block => {
                        d.policy.block_gen = generation;
                        d.policy.flags |= HAS_BLOCK;
                    }
                }
                destinations::update(tx, d)
            }
        }
    }
}

/// Every key of both tries of a list kind, indexed by tag: read once, then kept up to date
/// by the operations that use it (bulk callers pass one snapshot through many changes).
pub struct Snapshot {
    by_tag: std::collections::HashMap<u32, Vec<Cidr>>,
    v4: usize,
    v6: usize,
}

impl Snapshot {
    pub fn read(maps: &PinnedMaps, kind: ListKind) -> anyhow::Result<Self> {
        let mut snap = Self { by_tag: std::collections::HashMap::new(), v4: 0, v6: 0 };
        for (t, c) in tagged(&maps.list_v4(kind)?)?.into_iter().chain(tagged(&maps.list_v6(kind)?)?)
        {
            snap.note(t, &[c], true);
        }
        Ok(snap)
    }

    fn with_tag(&self, t: u32) -> &[Cidr] {
        self.by_tag.get(&t).map_or(&[], Vec::as_slice)
    }

    /// Entries of one family in the tries, every tag.
    #[must_use]
    pub fn count(&self, v4: bool) -> usize {
        if v4 { self.v4 } else { self.v6 }
    }

    /// The entries of `policy`'s list in one generation.
    #[must_use]
    pub fn tagged(&self, policy: u32, generation: u8) -> &[Cidr] {
        self.with_tag(tag(policy, generation))
    }

    /// Entries of one family under either generation of `policy`'s list.
    #[must_use]
    pub fn policy_count(&self, policy: u32, v4: bool) -> usize {
        [tag(policy, 0), tag(policy, 1)]
            .iter()
            .flat_map(|t| self.with_tag(*t))
            .filter(|c| c.is_ipv4() == v4)
            .count()
    }

    /// Records entries added (`added`) or removed under `t`.
    fn note(&mut self, t: u32, cidrs: &[Cidr], added: bool) {
        let n4 = cidrs.iter().filter(|c| c.is_ipv4()).count();
        let n6 = cidrs.len() - n4;
        let list = self.by_tag.entry(t).or_default();
        if added {
            list.extend_from_slice(cidrs);
            self.v4 += n4;
            self.v6 += n6;
        } else {
            let gone: BTreeSet<&Cidr> = cidrs.iter().collect();
            list.retain(|c| !gone.contains(c));
            self.v4 -= n4;
            self.v6 -= n6;
        }
    }
}

fn tagged<K: aya::Pod + AsRef<[u8]>>(
    trie: &LpmTrie<MapData, K, u32>,
) -> anyhow::Result<Vec<(u32, Cidr)>> {
    Ok(trie_keys(trie)?
        .iter()
        .filter_map(|k| Cidr::from_key(k.prefix_len(), k.data().as_ref()))
        .collect())
}

/// The live entries of a list, sorted (IPv4 first).
pub fn entries(maps: &PinnedMaps, kind: ListKind, target: &Target) -> anyhow::Result<Vec<Cidr>> {
    entries_in(maps, kind, target, &Snapshot::read(maps, kind)?)
}

/// Like [`entries`], from a snapshot.
pub fn entries_in(
    maps: &PinnedMaps,
    kind: ListKind,
    target: &Target,
    snap: &Snapshot,
) -> anyhow::Result<Vec<Cidr>> {
    let live = tag(target.policy(), target.generation(maps, kind)?);
    let mut out = snap.with_tag(live).to_vec();
    out.sort();
    Ok(out)
}

/// What an `add` did.
#[derive(Debug, Default)]
pub struct Added {
    pub added: Vec<Cidr>,
    /// Already on the list; left as they were.
    pub present: Vec<Cidr>,
}

/// Checks that `extra` more entries per family fit in the tries.
fn check_capacity(
    maps: &PinnedMaps,
    kind: ListKind,
    snap: &Snapshot,
    extra: &[Cidr],
    what: &str,
) -> anyhow::Result<()> {
    let (cap4, cap6) = maps.list_capacity(kind)?;
    for (v4, cap, family) in [(true, cap4, "IPv4"), (false, cap6, "IPv6")] {
        let total = snap.count(v4) + extra.iter().filter(|c| c.is_ipv4() == v4).count();
        if total > cap as usize {
            return Err(change::refused(format!(
                "{what} would need {total} {family} {kind} entries in all, but the filter holds at most {cap} (the capacity is set by `attach --list-capacity` when the filter is first attached{swap})",
                kind = kind.name(),
                swap = if what.contains("replac") {
                    "; a replacement needs room for the old and the new list at once"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(())
}

/// Adds prefixes to a list. All or nothing.
pub fn add(
    maps: &PinnedMaps,
    kind: ListKind,
    target: &mut Target,
    cidrs: &[Cidr],
) -> anyhow::Result<Added> {
    change::run(maps, |tx| add_in(tx, kind, target, cidrs))
}

/// Like [`add`], as part of a larger change.
pub fn add_in(
    tx: &mut Change,
    kind: ListKind,
    target: &mut Target,
    cidrs: &[Cidr],
) -> anyhow::Result<Added> {
    let maps = tx.maps();
    let generation = target.generation(maps, kind)?;
    let live = tag(target.policy(), generation);
    let snap = Snapshot::read(maps, kind)?;
    let existing: BTreeSet<Cidr> = snap.with_tag(live).iter().copied().collect();
    let wanted: BTreeSet<Cidr> = cidrs.iter().copied().collect();
    let (present, new): (Vec<Cidr>, Vec<Cidr>) =
        wanted.into_iter().partition(|c| existing.contains(c));
    check_capacity(maps, kind, &snap, &new, &format!("adding to {}", target.describe(kind)))?;
    insert_all(tx, kind, live, &new)
        .with_context(|| format!("adding to {}", target.describe(kind)))?;
    if let Target::Dest(_) = target
        && !new.is_empty()
    {
        // A destination's list is looked up only once it is marked in use.
        target.go_live(tx, kind, generation)?;
    }
    Ok(Added { added: new, present })
}

/// Removes prefixes from a list. Every prefix must be on it; all or nothing.
pub fn remove(
    maps: &PinnedMaps,
    kind: ListKind,
    target: &Target,
    cidrs: &[Cidr],
) -> anyhow::Result<Vec<Cidr>> {
    change::run(maps, |tx| remove_in(tx, kind, target, cidrs))
}

/// Like [`remove`], as part of a larger change.
pub fn remove_in(
    tx: &mut Change,
    kind: ListKind,
    target: &Target,
    cidrs: &[Cidr],
) -> anyhow::Result<Vec<Cidr>> {
    let maps = tx.maps();
    let live = tag(target.policy(), target.generation(maps, kind)?);
    let existing: BTreeSet<Cidr> =
        Snapshot::read(maps, kind)?.with_tag(live).iter().copied().collect();
    let wanted: BTreeSet<Cidr> = cidrs.iter().copied().collect();
    let missing: Vec<String> = wanted.difference(&existing).map(ToString::to_string).collect();
    if !missing.is_empty() {
        return Err(change::refused(format!(
            "not on {}: {}",
            target.describe(kind),
            missing.join(", ")
        )));
    }
    let left: Vec<Cidr> = existing.difference(&wanted).copied().collect();
    let wanted: Vec<Cidr> = wanted.into_iter().collect();
    remove_all(tx, kind, live, &wanted)
        .with_context(|| format!("removing from {}", target.describe(kind)))?;
    // The removal stands either way: a filter left wide still covers every entry (it only
    // spares fewer lookups), so failing to narrow it is worth a warning, not an error.
    if let Some(generation) = global_generation(live)
        && let Err(e) = update_filter(maps, kind, generation, |f| *f = filter_of(&left))
    {
        log::warn!(
            "removed from {}, but its list filter was not narrowed ({e:#}); lookups stay correct, the next change narrows it",
            target.describe(kind)
        );
    }
    Ok(wanted)
}

/// What a `replace` did.
#[derive(Debug, Default)]
pub struct Replaced {
    pub entries: usize,
    pub added: usize,
    pub removed: usize,
}

/// Makes `cidrs` the whole list, atomically: packets see the old list or the new one.
pub fn replace(
    maps: &PinnedMaps,
    kind: ListKind,
    target: &mut Target,
    cidrs: &[Cidr],
) -> anyhow::Result<Replaced> {
    change::run(maps, |tx| {
        let mut snap = Snapshot::read(maps, kind)?;
        replace_in(tx, kind, target, &mut snap, cidrs)
    })
}

/// Like [`replace`], as part of a larger change, against a snapshot it keeps current.
pub fn replace_in(
    tx: &mut Change,
    kind: ListKind,
    target: &mut Target,
    snap: &mut Snapshot,
    cidrs: &[Cidr],
) -> anyhow::Result<Replaced> {
    let maps = tx.maps();
    let generation = target.generation(maps, kind)?;
    let live = tag(target.policy(), generation);
    let next = tag(target.policy(), generation ^ 1);
    let old: BTreeSet<Cidr> = snap.with_tag(live).iter().copied().collect();
    let new: BTreeSet<Cidr> = cidrs.iter().copied().collect();
    // Leftovers under the idle tag (an interrupted replacement) are not live: clear them.
    let stale = snap.with_tag(next).to_vec();
    remove_all(tx, kind, next, &stale).context("clearing an unfinished replacement")?;
    snap.note(next, &stale, false);
    let new_list: Vec<Cidr> = new.iter().copied().collect();
    check_capacity(maps, kind, snap, &new_list, &format!("replacing {}", target.describe(kind)))?;
    if let Some(generation) = global_generation(next) {
        // The idle generation is empty now: its filter starts afresh.
        journaled_filter(tx, kind, generation, |f| f.fill(0))
            .with_context(|| format!("replacing {}", target.describe(kind)))?;
    }
    insert_all(tx, kind, next, &new_list)
        .with_context(|| format!("replacing {}", target.describe(kind)))?;
    target
        .go_live(tx, kind, generation ^ 1)
        .with_context(|| format!("replacing {}", target.describe(kind)))?;
    snap.note(next, &new_list, true);
    // The old generation is idle now; failing to clear it only leaves dead entries.
    let old_list: Vec<Cidr> = old.iter().copied().collect();
    match remove_unjournaled(maps, kind, live, &old_list) {
        Ok(()) => {
            snap.note(live, &old_list, false);
            // Left wide, the idle filter is emptied by the next replacement before it is used.
            if let Some(generation) = global_generation(live)
                && let Err(e) = update_filter(maps, kind, generation, |f| f.fill(0))
            {
                log::warn!(
                    "the new list is live, but the old one's filter was not cleared ({e:#})"
                );
            }
        }
        Err(e) => log::warn!(
            "the new list is live, but clearing the old one failed ({e:#}); the next replacement retries"
        ),
    }
    Ok(Replaced {
        entries: new.len(),
        added: new.difference(&old).count(),
        removed: old.difference(&new).count(),
    })
}

/// Removes every entry (any generation) of `policy`'s lists: the destination is gone.
pub fn purge_policy(tx: &mut Change, policy: u32) -> anyhow::Result<()> {
    for kind in [ListKind::Allow, ListKind::Block] {
        let mut snap = Snapshot::read(tx.maps(), kind)?;
        purge_policy_in(tx, kind, policy, &mut snap)?;
    }
    Ok(())
}

/// Like [`purge_policy`] for one list kind, against a snapshot.
pub fn purge_policy_in(
    tx: &mut Change,
    kind: ListKind,
    policy: u32,
    snap: &mut Snapshot,
) -> anyhow::Result<()> {
    for generation in [0u8, 1] {
        let t = tag(policy, generation);
        let list = snap.with_tag(t).to_vec();
        remove_all(tx, kind, t, &list)?;
        snap.note(t, &list, false);
    }
    Ok(())
}

/// The generation of a global list's tag; `None` for a destination's list (whose lookups
/// are skipped by the policy's flags instead).
fn global_generation(t: u32) -> Option<u8> {
    (t >> 1 == GLOBAL_POLICY).then_some((t & 1) as u8)
}

/// Marks, in one slot's words, the `/24`s of the IPv4 prefixes in `cidrs`.
fn cover(words: &mut [u64], cidrs: &[Cidr]) {
    for c in cidrs {
        if let (IpAddr::V4(a), len) = (c.addr(), c.prefix_len()) {
            lists::cover(words, a.octets(), len);
        }
    }
}

fn filter_of(cidrs: &[Cidr]) -> Vec<u64> {
    let mut words = vec![0; FILTER_SLOT_WORDS as usize];
    cover(&mut words, cidrs);
    words
}

/// Rewrites the filter of a global list's generation. In a pin directory whose program
/// predates it there is none; that program may trust `/16` bitmaps this version does not
/// keep, so it is told to look every list up instead.
fn update_filter(
    maps: &PinnedMaps,
    kind: ListKind,
    generation: u8,
    change: impl FnOnce(&mut Vec<u64>),
) -> anyhow::Result<()> {
    let Some(map) = maps.list_filter(true)? else {
        return distrust_retired_filters(maps);
    };
    let slot = filter_slot(kind == ListKind::Allow, generation);
    let mut words = map.read(slot);
    change(&mut words);
    map.write(slot, &words).context("writing a list filter")
}

/// Rewrites a global list generation's bitmap, journaled. In a pin directory whose program
/// predates the bitmaps there are none; that program may trust `/16` bitmaps this version
/// does not keep, so it is told to look every list up instead.
fn journaled_filter(
    tx: &mut Change,
    kind: ListKind,
    generation: u8,
    change: impl FnOnce(&mut Vec<u64>),
) -> anyhow::Result<()> {
    if tx.rewrite_filter(kind, generation, change)? {
        Ok(())
    } else {
        distrust_retired_filters(tx.maps())
    }
}

fn distrust_retired_filters(maps: &PinnedMaps) -> anyhow::Result<()> {
    if maps.config()?.retired_list_filters != 0 {
        maps.set_list_filters(false)?;
    }
    Ok(())
}

/// Rebuilds every global list filter from the lists, then tells the program to use them.
/// Needed once per pin directory: a directory made by an older sipguard has lists but no
/// filters, and the program looks every list up until this has run.
pub fn refresh_filters(maps: &PinnedMaps) -> anyhow::Result<()> {
    let tx = Change::begin(maps)?;
    if maps.list_filter(false)?.is_none() {
        return distrust_retired_filters(maps);
    }
    for kind in [ListKind::Allow, ListKind::Block] {
        let snap = Snapshot::read(maps, kind)?;
        for generation in [0u8, 1] {
            let f = filter_of(snap.tagged(GLOBAL_POLICY, generation));
            update_filter(maps, kind, generation, |old| *old = f)?;
        }
    }
    maps.set_list_filters(true)?;
    // Rebuilding a bitmap from its list needs no undo: it is what the bitmap should be.
    tx.commit();
    Ok(())
}

/// Inserts entries under `t`, journaled. A global list's filter covers the new entries
/// before they exist (it may over-cover, never under-cover).
fn insert_all(tx: &mut Change, kind: ListKind, t: u32, cidrs: &[Cidr]) -> anyhow::Result<()> {
    if cidrs.is_empty() {
        return Ok(());
    }
    if let Some(generation) = global_generation(t) {
        journaled_filter(tx, kind, generation, |f| cover(f, cidrs))?;
    }
    tx.insert_entries(kind, t, cidrs)
}

/// Removes entries under `t`, journaled.
fn remove_all(tx: &mut Change, kind: ListKind, t: u32, cidrs: &[Cidr]) -> anyhow::Result<()> {
    tx.remove_entries(kind, t, cidrs)
}

/// Removes entries under `t` where the change stands whatever happens (a retired
/// generation): what cannot be removed is only dead weight.
fn remove_unjournaled(
    maps: &PinnedMaps,
    kind: ListKind,
    t: u32,
    cidrs: &[Cidr],
) -> anyhow::Result<()> {
    let mut tries = maps.list_tries(kind)?;
    for c in cidrs {
        tries.remove(t, c).with_context(|| format!("removing {c}"))?;
    }
    Ok(())
}
