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
//!
//! The writers are the change's own (`edit_config`, `set_ports`, `put_policy`, ...): each
//! reads what it overwrites and journals it, so no caller can write and forget the undo.
//! A request refused before anything is written says so with a [`Refused`] error.

mod raw;
mod writers;

use anyhow::Context as _;
use sipguard_common::{
    config::Config,
    inspect::SigRecord,
    lists::filter_slot,
    policy::{DestInfo, Policy},
    trust::BanBudget,
};

use crate::{
    cidr::Cidr,
    kernel::maps::{ListKind, ListsLock, PinnedMaps},
};

/// An undo step that is not a map write of the kinds below (unpinning a link, say).
pub type UndoFn = Box<dyn FnOnce(&PinnedMaps) -> anyhow::Result<()>>;

/// A request refused before anything was written: the reason, and the promise that the
/// state is as it was.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; nothing was changed", self.0)
    }
}

impl std::error::Error for Refused {}

/// Refuses a request before anything is written, for `reason`.
#[must_use]
pub fn refused(reason: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused(reason.into()))
}

/// How to put back one step.
enum Undo {
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
    /// The budget of bans on unverified evidence was resized.
    BanBudget(BanBudget),
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
            Undo::BanBudget(_) => f.write_str("restore the ban budget"),
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
    fn done(&mut self, what: impl Into<String>, undo: Undo) {
        self.journal.push((what.into(), undo));
    }

    /// Records a step done outside the maps (a link pinned, say): `what` it did, and the
    /// function that undoes it.
    pub fn undo_with(
        &mut self,
        what: impl Into<String>,
        undo: impl FnOnce(&PinnedMaps) -> anyhow::Result<()> + 'static,
    ) {
        self.done(what, Undo::Other(Box::new(undo)));
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
            // Refused before anything was written; a `Refused` says so itself.
            if error.chain().any(<dyn std::error::Error>::is::<Refused>) {
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
        Undo::Policy { cidr, old } => maps.put_policy(&cidr, old.as_ref()),
        Undo::Info { id, old } => maps.put_dest_info(id, old),
        Undo::SigRecord { slot, old } => {
            maps.set_sig_record(slot, &old).with_context(|| format!("signature slot {slot}"))
        }
        Undo::Domains { policy, old } => maps.set_domains(policy, &old),
        Undo::BanBudget(b) => maps.set_ban_budget(&b),
        Undo::Other(f) => f(maps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_once_that_nothing_was_changed() {
        let e = refused("not banned: 192.0.2.1");
        assert_eq!(format!("{e:#}"), "not banned: 192.0.2.1; nothing was changed");
        let wrapped = e.context("lifting bans");
        assert!(wrapped.chain().any(<dyn std::error::Error>::is::<Refused>));
        assert_eq!(
            format!("{wrapped:#}").matches("nothing was changed").count(),
            1,
            "context does not repeat it"
        );
    }
}
