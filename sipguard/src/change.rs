//! One change to the pinned state, all or nothing by construction.
//!
//! A [`Change`] owns the lists' lock, so changes from different processes take turns and no
//! function can take the lock a second time (the only way to write is through a `Change`
//! handed down, never a new one). Every step that overwrites something records how to put it
//! back in the change's journal; a change that fails replays the journal, newest first, and
//! its error says either that nothing was changed or exactly what could not be put back.
//! Steps whose failure leaves the filter correct (clearing a retired generation, narrowing a
//! list's bitmap) are not journaled: they warn and the change stands.
//! Counters a step resets (a new destination's drops, a new signature's hits) are not put
//! back: they count packets, not state.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::maps::lpm_trie::Key;
use sipguard_common::{
    config::Config,
    inspect::SigRecord,
    lists::filter_slot,
    policy::{DestInfo, Policy},
};

use crate::{
    cidr::Cidr,
    maps::{ListKind, ListsLock, PinnedMaps, explain_map_error},
};

/// An undo step that is not a map write of the kinds above (unpinning a link, say).
pub type UndoFn = Box<dyn FnOnce(&PinnedMaps) -> anyhow::Result<()>>;

/// How to put back one step.
pub enum Undo {
    /// Entries were inserted under `tag` (some may not have been, if the step failed).
    Inserted { kind: ListKind, tag: u32, cidrs: Vec<Cidr> },
    /// Entries were removed from under `tag`.
    Removed { kind: ListKind, tag: u32, cidrs: Vec<Cidr> },
    /// A slot of a list's bitmap was rewritten; these were its words.
    Filter { kind: ListKind, generation: u8, words: Box<[u64]> },
    /// The configuration was rewritten.
    Config(Config),
    /// The SIP port set was rewritten.
    Ports(Vec<u16>),
    /// A destination's policy was written (`None`: it had none).
    Policy { cidr: Cidr, old: Option<Policy> },
    /// A policy id's name record was written (`None`: it had none).
    Info { id: u32, old: Option<DestInfo> },
    /// A signature definition was rewritten.
    SigRecord { slot: u16, old: SigRecord },
    /// A policy's SIP domains were replaced; these were they.
    Domains { policy: u32, old: Vec<String> },
    /// Anything else, as a function.
    Other(UndoFn),
}

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undo::Inserted { kind, cidrs, .. } => {
                write!(f, "remove {} entries added to the {}", cidrs.len(), kind.name())
            }
            Undo::Removed { kind, cidrs, .. } => {
                write!(f, "put back {} entries removed from the {}", cidrs.len(), kind.name())
            }
            Undo::Filter { kind, .. } => write!(f, "restore the {}'s bitmap", kind.name()),
            Undo::Config(_) => f.write_str("restore the configuration"),
            Undo::Ports(_) => f.write_str("restore the SIP ports"),
            Undo::Policy { cidr, .. } => write!(f, "restore the policy of {cidr}"),
            Undo::Info { id, .. } => write!(f, "restore the name of policy {id}"),
            Undo::SigRecord { slot, .. } => write!(f, "restore signature slot {slot}"),
            Undo::Domains { policy, .. } => write!(f, "restore the SIP domains of policy {policy}"),
            Undo::Other(_) => f.write_str("undo a step"),
        }
    }
}

/// A change in progress: the lock, and the journal of what to undo.
pub struct Change<'m> {
    maps: &'m PinnedMaps,
    _lock: ListsLock,
    /// `(what the step did, how to undo it)`, oldest first.
    journal: Vec<(String, Undo)>,
}

/// Runs `f` as one change: it stands when `f` returns `Ok`, and is undone when `f` fails.
pub fn run<T>(
    maps: &PinnedMaps,
    f: impl FnOnce(&mut Change<'_>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut change = Change::begin(maps)?;
    match f(&mut change) {
        Ok(v) => {
            change.commit();
            Ok(v)
        }
        Err(e) => Err(change.fail(e)),
    }
}

impl<'m> Change<'m> {
    /// Takes the lists' lock (waiting for another process's change to end).
    pub fn begin(maps: &'m PinnedMaps) -> anyhow::Result<Self> {
        Ok(Self { maps, _lock: maps.lock_lists()?, journal: Vec::new() })
    }

    /// The maps the change writes.
    #[must_use]
    pub fn maps(&self) -> &'m PinnedMaps {
        self.maps
    }

    /// Records a step done: `what` it did, and how to undo it.
    pub fn done(&mut self, what: impl Into<String>, undo: Undo) {
        self.journal.push((what.into(), undo));
    }

    /// Whether any step has been recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.journal.is_empty()
    }

    /// The change stands.
    pub fn commit(mut self) {
        self.journal.clear();
    }

    /// Undoes every step, newest first, and returns `error` with an account of the state:
    /// unchanged (when some step was undone, the error says so), or the steps that could not
    /// be undone and are left as they are.
    #[must_use]
    pub fn fail(mut self, error: anyhow::Error) -> anyhow::Error {
        if self.journal.is_empty() {
            // Refused before anything was written. Most refusals say so themselves.
            if format!("{error:#}").contains("nothing was changed") {
                return error;
            }
            return error.context("nothing was changed");
        }
        let failed = self.rollback();
        if failed.is_empty() {
            error.context("nothing was changed (what was done is undone)")
        } else {
            error.context(format!(
                "undoing it failed, so these are left as they are: {}",
                failed.join("; ")
            ))
        }
    }

    /// Replays the journal, newest first; returns the steps that could not be undone.
    fn rollback(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        while let Some((what, undo)) = self.journal.pop() {
            if let Err(e) = apply(self.maps, undo) {
                failed.push(format!("{what} ({e:#})"));
            }
        }
        failed
    }
}

impl Drop for Change<'_> {
    /// A change dropped neither committed nor failed (a panic, an early return): undone.
    fn drop(&mut self) {
        if !self.journal.is_empty() {
            let failed = self.rollback();
            log::warn!(
                "an unfinished change was undone{}",
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(", except: {}", failed.join("; "))
                }
            );
        }
    }
}

fn apply(maps: &PinnedMaps, undo: Undo) -> anyhow::Result<()> {
    match undo {
        Undo::Inserted { kind, tag, cidrs } => {
            let mut tries = maps.list_tries(kind)?;
            for c in &cidrs {
                // A step that failed part-way did not insert the rest: absent is fine.
                tries.remove(tag, c).with_context(|| format!("removing {c} again"))?;
            }
            Ok(())
        }
        Undo::Removed { kind, tag, cidrs } => {
            let mut tries = maps.list_tries(kind)?;
            for c in &cidrs {
                tries.insert(tag, c).with_context(|| format!("putting {c} back"))?;
            }
            Ok(())
        }
        Undo::Filter { kind, generation, words } => match maps.list_filter(true)? {
            Some(map) => map.write(filter_slot(kind == ListKind::Allow, generation), &words),
            None => Ok(()),
        },
        Undo::Config(c) => maps.set_config(&c),
        Undo::Ports(p) => maps.set_ports(&p),
        Undo::Policy { cidr, old } => restore_policy(maps, &cidr, old.as_ref()),
        Undo::Info { id, old } => {
            let mut info = maps.dest_info()?;
            match old {
                Some(i) => info.insert(id, i, 0).map_err(explain_map_error),
                None => match info.remove(&id) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                    Err(e) => Err(explain_map_error(e)),
                },
            }
        }
        Undo::SigRecord { slot, old } => {
            maps.set_sig_record(slot, &old).with_context(|| format!("signature slot {slot}"))
        }
        Undo::Domains { policy, old } => maps.set_domains(policy, &old),
        Undo::Other(f) => f(maps),
    }
}

fn restore_policy(maps: &PinnedMaps, cidr: &Cidr, old: Option<&Policy>) -> anyhow::Result<()> {
    let len = u32::from(cidr.prefix_len());
    let result = match (cidr.addr(), old) {
        (IpAddr::V4(a), Some(p)) => maps.dest_v4()?.insert(&Key::new(len, a.octets()), p, 0),
        (IpAddr::V6(a), Some(p)) => maps.dest_v6()?.insert(&Key::new(len, a.octets()), p, 0),
        (IpAddr::V4(a), None) => maps.dest_v4()?.remove(&Key::new(len, a.octets())),
        (IpAddr::V6(a), None) => maps.dest_v6()?.remove(&Key::new(len, a.octets())),
    };
    match result {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(explain_map_error(e)),
    }
}
