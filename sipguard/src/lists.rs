//! Allow/block list operations on a running filter: validated in full before any change, and
//! rolled back if the kernel refuses part of a change, so a failed command changes nothing.

use std::collections::BTreeSet;

use anyhow::{Context as _, bail};
use aya::maps::{LpmTrie, MapData, lpm_trie::Key};
use sipguard_common::lists::GLOBAL_TAG;

use crate::{
    cidr::Cidr,
    maps::{ListKind, PinnedMaps, trie_keys},
};

/// Entry value; reserved for later use (e.g. which feed an entry came from).
const ENTRY_VALUE: u32 = 0;

/// What an `add` did.
#[derive(Debug, Default)]
pub struct Added {
    pub added: Vec<Cidr>,
    /// Already on the list; left as they were.
    pub present: Vec<Cidr>,
}

/// The entries of a global list, sorted (IPv4 first).
pub fn entries(maps: &PinnedMaps, kind: ListKind) -> anyhow::Result<Vec<Cidr>> {
    let mut out = family_entries(&maps.list_v4(kind)?)?;
    out.extend(family_entries(&maps.list_v6(kind)?)?);
    out.sort();
    Ok(out)
}

fn family_entries<K: aya::Pod + AsRef<[u8]>>(
    trie: &LpmTrie<MapData, K, u32>,
) -> anyhow::Result<Vec<Cidr>> {
    Ok(trie_keys(trie)?
        .iter()
        .filter_map(|k| Cidr::from_key(k.prefix_len(), k.data().as_ref()))
        .filter(|(tag, _)| *tag == GLOBAL_TAG)
        .map(|(_, c)| c)
        .collect())
}

/// Adds prefixes to a global list. All or nothing.
pub fn add(maps: &PinnedMaps, kind: ListKind, cidrs: &[Cidr]) -> anyhow::Result<Added> {
    let wanted: BTreeSet<Cidr> = cidrs.iter().copied().collect();
    let existing: BTreeSet<Cidr> = entries(maps, kind)?.into_iter().collect();
    let (present, new): (Vec<Cidr>, Vec<Cidr>) =
        wanted.into_iter().partition(|c| existing.contains(c));

    let (cap4, cap6) = maps.list_capacity(kind)?;
    for (v4, cap, family) in [(true, cap4, "IPv4"), (false, cap6, "IPv6")] {
        let have = existing.iter().filter(|c| c.is_ipv4() == v4).count();
        let adding = new.iter().filter(|c| c.is_ipv4() == v4).count();
        if have + adding > cap as usize {
            bail!(
                "the {family} {} would hold {} entries but holds at most {cap}; nothing was changed (the capacity is set by `attach --list-capacity` when the filter is first attached)",
                kind.name(),
                have + adding
            );
        }
    }

    let mut v4 = maps.list_v4(kind)?;
    let mut v6 = maps.list_v6(kind)?;
    let mut done: Vec<Cidr> = Vec::with_capacity(new.len());
    for c in &new {
        let result = insert(&mut v4, &mut v6, c);
        if let Err(e) = result {
            for undo in &done {
                let _ = remove_one(&mut v4, &mut v6, undo);
            }
            return Err(e).with_context(|| {
                format!("adding {c} to the {}; nothing was changed", kind.name())
            });
        }
        done.push(*c);
    }
    Ok(Added { added: new, present })
}

/// Removes prefixes from a global list. Every prefix must be on it; all or nothing.
pub fn remove(maps: &PinnedMaps, kind: ListKind, cidrs: &[Cidr]) -> anyhow::Result<Vec<Cidr>> {
    let wanted: BTreeSet<Cidr> = cidrs.iter().copied().collect();
    let existing: BTreeSet<Cidr> = entries(maps, kind)?.into_iter().collect();
    let missing: Vec<String> = wanted.difference(&existing).map(ToString::to_string).collect();
    if !missing.is_empty() {
        bail!("not on the {}: {}; nothing was changed", kind.name(), missing.join(", "));
    }
    let mut v4 = maps.list_v4(kind)?;
    let mut v6 = maps.list_v6(kind)?;
    let mut done: Vec<Cidr> = Vec::with_capacity(wanted.len());
    for c in &wanted {
        if let Err(e) = remove_one(&mut v4, &mut v6, c) {
            for undo in &done {
                let _ = insert(&mut v4, &mut v6, undo);
            }
            return Err(e).with_context(|| {
                format!("removing {c} from the {}; nothing was changed", kind.name())
            });
        }
        done.push(*c);
    }
    Ok(done)
}

fn insert(
    v4: &mut LpmTrie<MapData, [u8; 8], u32>,
    v6: &mut LpmTrie<MapData, [u8; 20], u32>,
    c: &Cidr,
) -> anyhow::Result<()> {
    let result = if let Some((len, data)) = c.v4_key(GLOBAL_TAG) {
        v4.insert(&Key::new(len, data), ENTRY_VALUE, 0)
    } else if let Some((len, data)) = c.v6_key(GLOBAL_TAG) {
        v6.insert(&Key::new(len, data), ENTRY_VALUE, 0)
    } else {
        unreachable!("a prefix is IPv4 or IPv6")
    };
    result.map_err(explain_map_error)
}

fn remove_one(
    v4: &mut LpmTrie<MapData, [u8; 8], u32>,
    v6: &mut LpmTrie<MapData, [u8; 20], u32>,
    c: &Cidr,
) -> anyhow::Result<()> {
    let result = if let Some((len, data)) = c.v4_key(GLOBAL_TAG) {
        v4.remove(&Key::new(len, data))
    } else if let Some((len, data)) = c.v6_key(GLOBAL_TAG) {
        v6.remove(&Key::new(len, data))
    } else {
        unreachable!("a prefix is IPv4 or IPv6")
    };
    result.map_err(explain_map_error)
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
