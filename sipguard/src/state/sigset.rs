//! The signature set of a running filter. Every change compiles the whole new set, writes it
//! to the automaton slot the kernel is not using, then flips the live slot in the config: a
//! packet sees the old set or the new one, never a mixture, and a failed change leaves the
//! old set in place.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};
use sipguard_common::inspect::{SIG_CAPACITY, SigRecord};

use crate::{
    kernel::maps::PinnedMaps,
    signatures::{Signature, compile},
    state::change::{self, Change},
};

/// The installed signatures with their slots, in slot order.
pub fn installed(maps: &PinnedMaps) -> anyhow::Result<Vec<(u16, Signature)>> {
    let mut out = Vec::new();
    for (slot, record) in (0u16..).zip(maps.sig_records()?) {
        if let Some(sig) =
            Signature::from_record(&record).with_context(|| format!("signature slot {slot}"))?
        {
            out.push((slot, sig));
        }
    }
    Ok(out)
}

/// What a change did, by signature name.
#[derive(Debug, Default)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Automaton states of the new set.
    pub states: usize,
}

/// Makes `wanted` the signature set.
pub fn replace(maps: &PinnedMaps, wanted: Vec<Signature>) -> anyhow::Result<Diff> {
    change::run(maps, |tx| replace_in(tx, wanted))
}

/// Like [`replace`], as part of a larger change.
pub fn replace_in(tx: &mut Change, wanted: Vec<Signature>) -> anyhow::Result<Diff> {
    let maps = tx.maps();
    let mut names = BTreeSet::new();
    for s in &wanted {
        if !names.insert(s.name.clone()) {
            bail!("signature `{}` is given twice", s.name);
        }
    }
    if wanted.len() > SIG_CAPACITY as usize {
        bail!("{} signatures given, at most {SIG_CAPACITY} fit", wanted.len());
    }
    let old = installed(maps)?;
    let old_by_name: BTreeMap<&str, &(u16, Signature)> =
        old.iter().map(|e| (e.1.name.as_str(), e)).collect();

    // Slots: a signature keeps its slot (and its hit count) while its name stays.
    let mut used: BTreeSet<u16> = BTreeSet::new();
    let mut placed: Vec<(u16, Signature)> = Vec::with_capacity(wanted.len());
    let mut fresh: Vec<Signature> = Vec::new();
    let mut change = Diff::default();
    for sig in wanted {
        match old_by_name.get(sig.name.as_str()) {
            Some((slot, old_sig)) => {
                if *old_sig != sig {
                    change.changed.push(sig.name.clone());
                }
                used.insert(*slot);
                placed.push((*slot, sig));
            }
            None => fresh.push(sig),
        }
    }
    let mut free = (0u16..)
        .take(SIG_CAPACITY as usize)
        .filter(|s| !used.contains(s) && !old.iter().any(|(o, _)| o == s));
    // Prefer slots nobody used before, so a removed signature's count is not handed on.
    let mut recycled =
        old.iter().map(|(s, _)| *s).filter(|s| !used.contains(s)).collect::<Vec<_>>().into_iter();
    for sig in fresh {
        let slot = free.next().or_else(|| recycled.next()).context("no free signature slot")?;
        change.added.push(sig.name.clone());
        placed.push((slot, sig));
    }
    let wanted_names: BTreeSet<&str> = placed.iter().map(|(_, s)| s.name.as_str()).collect();
    change.removed = old
        .iter()
        .filter(|(_, s)| !wanted_names.contains(s.name.as_str()))
        .map(|(_, s)| s.name.clone())
        .collect();
    placed.sort_by_key(|(slot, _)| *slot);

    let compiled = compile::compile(&placed)?;
    change.states = compiled.states;

    let inactive = maps.config()?.automaton_slot ^ 1;
    maps.set_automaton(inactive, &compiled.automaton)?;

    // Definitions, each journaled; then the flip to the new automaton.
    let records = maps.sig_records()?;
    let new_by_slot: BTreeMap<u16, &Signature> = placed.iter().map(|(s, g)| (*s, g)).collect();
    for (slot, old_record) in (0u16..).zip(records.iter()) {
        let record = new_by_slot.get(&slot).map_or_else(empty_record, |s| s.record());
        if tx.set_sig_record(slot, &record)?
            && record.used == 1
            && (old_record.used == 0 || old_record.name != record.name)
        {
            maps.reset_sig_hits(slot)?;
        }
    }
    tx.edit_config("switched to the new automaton", |c| c.automaton_slot = inactive)?;
    Ok(change)
}

fn empty_record() -> SigRecord {
    SigRecord {
        used: 0,
        scope: 0,
        kind: 0,
        weight: 0,
        name_len: 0,
        value_len: 0,
        reserved: [0; 2],
        name: [0; sipguard_common::inspect::MAX_NAME_LEN],
        value: [0; sipguard_common::inspect::MAX_PATTERN_LEN],
    }
}

/// Adds signatures; their names must be new.
pub fn add(maps: &PinnedMaps, sigs: Vec<Signature>) -> anyhow::Result<Diff> {
    let mut set: Vec<Signature> = installed(maps)?.into_iter().map(|(_, s)| s).collect();
    for s in &sigs {
        if set.iter().any(|o| o.name == s.name) {
            return Err(change::refused(format!(
                "a signature named `{}` exists already (`sig del` it first, or `sig load --replace`)",
                s.name
            )));
        }
    }
    set.extend(sigs);
    replace(maps, set)
}

/// Removes signatures by name; every name must exist.
pub fn remove(maps: &PinnedMaps, names: &[String]) -> anyhow::Result<Diff> {
    let set: Vec<Signature> = installed(maps)?.into_iter().map(|(_, s)| s).collect();
    let missing: Vec<&str> =
        names.iter().filter(|n| !set.iter().any(|s| &s.name == *n)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(change::refused(format!("no signature named {}", missing.join(", "))));
    }
    replace(maps, set.into_iter().filter(|s| !names.contains(&s.name)).collect())
}
