//! The writes a change makes, each journaled by its own hand: it reads what it overwrites,
//! writes, and records the undo (or, for a step that fails half-way, the part done).

use anyhow::Context as _;
use sipguard_common::{
    config::Config,
    inspect::SigRecord,
    lists::filter_slot,
    policy::{DestInfo, Policy},
    trust::BanBudget,
};

use super::{Change, Undo};
use crate::{cidr::Cidr, kernel::maps::ListKind};

impl Change<'_> {
    /// Rewrites the configuration through `edit`; an edit that changes nothing writes
    /// nothing. Returns the configuration in force after it.
    pub fn edit_config(
        &mut self,
        what: &str,
        edit: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Config> {
        let old = self.maps.config()?;
        let mut config = old;
        edit(&mut config);
        if config != old {
            self.maps.set_config(&config)?;
            self.done(what, Undo::Config(old));
        }
        Ok(config)
    }

    /// Makes `config` the configuration (`edit_config` with a whole value).
    pub fn set_config(&mut self, what: &str, config: &Config) -> anyhow::Result<()> {
        self.edit_config(what, |c| *c = *config).map(|_| ())
    }

    /// Replaces the SIP port set. A new filter's empty set is not put back (there is no
    /// empty set to write): a failed new filter is removed whole.
    pub fn set_ports(&mut self, ports: &[u16]) -> anyhow::Result<()> {
        let old = self.maps.ports()?;
        if old == ports {
            return Ok(());
        }
        self.maps.set_ports(ports)?;
        if !old.is_empty() {
            self.done("set the SIP ports", Undo::Ports(old));
        }
        Ok(())
    }

    /// Writes the policy of exactly `cidr`.
    pub fn put_policy(&mut self, cidr: &Cidr, policy: &Policy) -> anyhow::Result<()> {
        let old = self.maps.policy(cidr)?;
        self.maps
            .put_policy(cidr, Some(policy))
            .with_context(|| format!("writing the policy of {cidr}"))?;
        self.done(format!("wrote the policy of {cidr}"), Undo::Policy { cidr: *cidr, old });
        Ok(())
    }

    /// Removes the policy of exactly `cidr`, if it has one.
    pub fn remove_policy(&mut self, cidr: &Cidr) -> anyhow::Result<()> {
        let Some(old) = self.maps.policy(cidr)? else { return Ok(()) };
        self.maps
            .put_policy(cidr, None)
            .with_context(|| format!("removing the policy of {cidr}"))?;
        self.done(
            format!("removed the policy of {cidr}"),
            Undo::Policy { cidr: *cidr, old: Some(old) },
        );
        Ok(())
    }

    /// Writes the name record of policy `id`.
    pub fn put_dest_info(&mut self, id: u32, info: DestInfo) -> anyhow::Result<()> {
        let old = self.maps.dest_info_of(id)?;
        self.maps.put_dest_info(id, Some(info)).context("writing the destination's name")?;
        self.done(format!("wrote the name of policy {id}"), Undo::Info { id, old });
        Ok(())
    }

    /// Removes the name record of policy `id`, if it has one.
    pub fn remove_dest_info(&mut self, id: u32) -> anyhow::Result<()> {
        let Some(old) = self.maps.dest_info_of(id)? else { return Ok(()) };
        self.maps.put_dest_info(id, None).context("removing a destination's name")?;
        self.done(format!("removed the name of policy {id}"), Undo::Info { id, old: Some(old) });
        Ok(())
    }

    /// Rewrites a signature slot's definition; an unchanged one is not written. Returns
    /// whether it changed.
    pub fn set_sig_record(&mut self, slot: u16, record: &SigRecord) -> anyhow::Result<bool> {
        let old = self.maps.sig_record(slot)?;
        if old == *record {
            return Ok(false);
        }
        self.maps.set_sig_record(slot, record)?;
        self.done(format!("rewrote signature slot {slot}"), Undo::SigRecord { slot, old });
        Ok(true)
    }

    /// Makes `names` the SIP domains of `policy`, whose current set the caller read as
    /// `old` (read once for many policies). Journaled before it writes: a write that fails
    /// half-way is put back too.
    pub fn replace_domains(
        &mut self,
        policy: u32,
        old: &[String],
        names: &[String],
    ) -> anyhow::Result<()> {
        self.done(
            format!("declared the SIP domains of policy {policy}"),
            Undo::Domains { policy, old: old.to_vec() },
        );
        self.maps.change_domains(policy, old, names)
    }

    /// Replaces the budget of bans on unverified evidence.
    pub fn set_ban_budget(&mut self, budget: &BanBudget) -> anyhow::Result<()> {
        let old = self.maps.ban_budget()?;
        if old == *budget {
            return Ok(());
        }
        self.maps.set_ban_budget(budget)?;
        self.done("sized the ban budget", Undo::BanBudget(old));
        Ok(())
    }

    /// Inserts `cidrs` into a list under `tag`. On a failure part-way, what went in is
    /// journaled, so the change's undo takes it out.
    pub fn insert_entries(
        &mut self,
        kind: ListKind,
        tag: u32,
        cidrs: &[Cidr],
    ) -> anyhow::Result<()> {
        self.write_entries(kind, tag, cidrs, true)
    }

    /// Removes `cidrs` from a list under `tag`. On a failure part-way, what went out is
    /// journaled, so the change's undo puts it back.
    pub fn remove_entries(
        &mut self,
        kind: ListKind,
        tag: u32,
        cidrs: &[Cidr],
    ) -> anyhow::Result<()> {
        self.write_entries(kind, tag, cidrs, false)
    }

    /// Inserts (`insert`) or removes `cidrs` one by one, journaling the ones done.
    fn write_entries(
        &mut self,
        kind: ListKind,
        tag: u32,
        cidrs: &[Cidr],
        insert: bool,
    ) -> anyhow::Result<()> {
        if cidrs.is_empty() {
            return Ok(());
        }
        let mut tries = self.maps.list_tries(kind)?;
        let mut result = Ok(());
        let mut done = cidrs.len();
        for (i, c) in cidrs.iter().enumerate() {
            let step = if insert {
                tries.insert(tag, c).with_context(|| format!("adding {c}"))
            } else {
                tries.remove(tag, c).map(|_| ()).with_context(|| format!("removing {c}"))
            };
            if let Err(e) = step {
                (done, result) = (i, Err(e));
                break;
            }
        }
        if done > 0 {
            let cidrs = cidrs[..done].to_vec();
            let (what, undo) = if insert {
                (
                    format!("added {done} entries to the {}", kind.name()),
                    Undo::Inserted { kind, tag, cidrs },
                )
            } else {
                (
                    format!("removed {done} entries from the {}", kind.name()),
                    Undo::Removed { kind, tag, cidrs },
                )
            };
            self.done(what, undo);
        }
        result
    }

    /// Rewrites the bitmap of a global list's generation through `edit`. Returns `false`
    /// when the pin directory has no bitmaps (its program predates them).
    pub fn rewrite_filter(
        &mut self,
        kind: ListKind,
        generation: u8,
        edit: impl FnOnce(&mut Vec<u64>),
    ) -> anyhow::Result<bool> {
        let Some(map) = self.maps.list_filter(true)? else { return Ok(false) };
        let slot = filter_slot(kind == ListKind::Allow, generation);
        let old = map.read(slot);
        let mut words = old.clone();
        edit(&mut words);
        if words != old {
            map.write(slot, &words).context("writing a list filter")?;
            self.done(
                format!("rewrote the {}'s bitmap", kind.name()),
                Undo::Filter { kind, generation, words: old.into_boxed_slice() },
            );
        }
        Ok(true)
    }
}
