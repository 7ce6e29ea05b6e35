//! Protected destinations: a provider's customer addresses, each with its own policy (default,
//! mode, allowlist, blocklist). The global policy covers everything else.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, bail};
use sipguard_common::{
    config::{DefaultAction, Mode},
    policy::{HAS_DOMAINS, MAX_DEST_NAME, MAX_POLICIES, Policy},
};

pub use crate::state::destinations::{Destination, protecting, update};
use crate::{
    cidr::Cidr,
    kernel::maps::{ListKind, PinnedMaps},
    state::{
        change::{self, Change},
        destinations::{
            info_cidr, info_name, remove_info, remove_policy, set_has_policies, write_info,
            write_policy,
        },
        domains, lists,
    },
};

/// Every protected destination, by prefix.
pub fn all(maps: &PinnedMaps) -> anyhow::Result<Vec<Destination>> {
    Ok(Registry::load(maps)?.by_cidr.into_values().collect())
}

/// The destination `target` names: its exact prefix, or the one protecting a plain address.
pub fn find(maps: &PinnedMaps, target: &Cidr) -> anyhow::Result<Destination> {
    Registry::load(maps)?.find(target).cloned()
}

/// Settings of a destination's policy.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub default_action: Option<DefaultAction>,
    pub mode: Option<Mode>,
    /// Its SIP domains, normalized (`domains::normalize_all`): `None` keeps them, an empty
    /// set turns its own domain check off.
    pub sip_domains: Option<Vec<String>>,
}

/// Protects `cidr` (or updates its settings and name). Returns the destination and whether
/// it is new.
pub fn add(
    maps: &PinnedMaps,
    cidr: Cidr,
    settings: &Settings,
    name: Option<&str>,
) -> anyhow::Result<(Destination, bool)> {
    change::run(maps, |tx| Registry::load(maps)?.upsert(tx, cidr, settings, name))
}

/// Stops protecting `target`'s destination; its lists and counters go with it.
pub fn remove(maps: &PinnedMaps, target: &Cidr) -> anyhow::Result<Destination> {
    change::run(maps, |tx| {
        let mut reg = Registry::load(maps)?;
        let d = reg.find(target)?.clone();
        if d.cidr != *target {
            bail!("{target} is not protected by itself: it is part of {}; remove that", d.label());
        }
        reg.remove(tx, &d.cidr, &mut None)?;
        reg.finish(tx)?;
        Ok(d)
    })
}

/// The protected destinations, read once: what single commands and bulk configuration
/// changes work on, so 100,000 destinations cost 100,000 updates, not 100,000 scans.
pub struct Registry<'m> {
    maps: &'m PinnedMaps,
    pub by_cidr: BTreeMap<Cidr, Destination>,
    used: BTreeSet<u32>,
    /// Destinations per family (IPv4, IPv6) and what each family holds at most.
    count: [usize; 2],
    capacity: [u32; 2],
    /// Every policy's SIP domains, read on first need.
    declared: Option<BTreeMap<u32, Vec<String>>>,
    /// Where the search for a free policy id starts: ids are handed out in a round, so
    /// allocating n destinations costs n steps rather than n² and a freed id is not reused
    /// at once (a packet still holding the old policy would find the new owner's lists).
    next_id: u32,
}

impl<'m> Registry<'m> {
    pub fn load(maps: &'m PinnedMaps) -> anyhow::Result<Self> {
        let mut by_cidr = BTreeMap::new();
        for entry in &maps.dest_info()? {
            let (id, info) = entry.context("reading destination names")?;
            let Some(cidr) = info_cidr(&info) else { continue };
            if let Some(policy) = maps.policy(&cidr)?
                && policy.id == id
            {
                by_cidr.insert(cidr, Destination { id, cidr, name: info_name(&info), policy });
            }
        }
        let used: BTreeSet<u32> = by_cidr.values().map(|d: &Destination| d.id).collect();
        let v4 = by_cidr.keys().filter(|c| c.is_ipv4()).count();
        Ok(Self {
            maps,
            count: [v4, by_cidr.len() - v4],
            capacity: [
                maps.capacity(sipguard_common::maps::DEST_V4)?,
                maps.capacity(sipguard_common::maps::DEST_V6)?,
            ],
            next_id: used.last().map_or(1, |last| last + 1),
            by_cidr,
            used,
            declared: None,
        })
    }

    /// How many destinations of a family are protected, and how many it may hold.
    #[must_use]
    pub fn family(&self, v4: bool) -> (usize, u32) {
        let i = usize::from(!v4);
        (self.count[i], self.capacity[i])
    }

    /// The destination `target` names: its exact prefix, or the one protecting a plain address.
    pub fn find(&self, target: &Cidr) -> anyhow::Result<&Destination> {
        if let Some(d) = self.by_cidr.get(target) {
            return Ok(d);
        }
        self.by_cidr
            .values()
            .filter(|d| d.cidr.contains(target.addr()) && d.cidr.prefix_len() <= target.prefix_len())
            .max_by_key(|d| d.cidr.prefix_len())
            .with_context(|| format!("{target} is not a protected destination (`sipguard protect add {target}` makes it one)"))
    }

    /// Protects `cidr` or updates it; returns it and whether it is new.
    pub fn upsert(
        &mut self,
        tx: &mut Change,
        cidr: Cidr,
        settings: &Settings,
        name: Option<&str>,
    ) -> anyhow::Result<(Destination, bool)> {
        if settings.default_action == Some(DefaultAction::Off) {
            bail!("`off` is only a global default; a protected destination passes or drops");
        }
        if let Some(n) = name
            && (n.is_empty() || n.len() > MAX_DEST_NAME || !n.bytes().all(|b| b.is_ascii_graphic()))
        {
            bail!(
                "destination name `{n}` must be 1 to {MAX_DEST_NAME} printable characters without spaces"
            );
        }
        if let Some(d) = self.by_cidr.get_mut(&cidr) {
            let (id, old_policy) = (d.id, d.policy);
            let mut policy = old_policy;
            if let Some(a) = settings.default_action {
                policy.default_action = a as u8;
            }
            if let Some(m) = settings.mode {
                policy.mode = m as u8;
            }
            if name.is_some() && name != d.name.as_deref() {
                write_info(tx, id, &cidr, name)?;
                d.name = name.map(str::to_owned);
            }
            let clear =
                self.declare_domains(tx, id, &mut policy, settings.sip_domains.as_deref())?;
            if policy != old_policy {
                write_policy(tx, &cidr, &policy)?;
            }
            if clear {
                let old = self.declared_of(id)?;
                domains::replace_known(tx, id, &old, &[])?;
                self.forget_domains(id);
            }
            let d = self.by_cidr.get_mut(&cidr).context("the destination looked up above")?;
            d.policy = policy;
            return Ok((d.clone(), false));
        }
        let (count, capacity) = self.family(cidr.is_ipv4());
        if count >= capacity as usize {
            bail!(
                "{capacity} destinations of this family are protected already, the most the filter holds (set by `attach --dest-capacity` when it is first attached)"
            );
        }
        let id = (self.next_id..MAX_POLICIES)
            .chain(1..self.next_id)
            .find(|i| !self.used.contains(i))
            .context("no free policy id")?;
        let mut policy = Policy {
            id,
            default_action: settings.default_action.unwrap_or(DefaultAction::Pass) as u8,
            mode: settings.mode.unwrap_or(Mode::Enforce) as u8,
            allow_gen: 0,
            block_gen: 0,
            flags: 0,
            reserved: 0,
        };
        // A new id starts with no drops (lists of an id's earlier owner were purged with it).
        self.maps.reset_dest_drops(id)?;
        write_info(tx, id, &cidr, name)?;
        self.declare_domains(tx, id, &mut policy, settings.sip_domains.as_deref())?;
        write_policy(tx, &cidr, &policy)?;
        let d = Destination { id, cidr, name: name.map(str::to_owned), policy };
        self.used.insert(id);
        self.next_id = id + 1;
        self.count[usize::from(!cidr.is_ipv4())] += 1;
        self.by_cidr.insert(cidr, d.clone());
        set_has_policies(tx, true)?;
        Ok((d, true))
    }

    /// Stops protecting `cidr` (exactly), purging its lists from the snapshots if given.
    pub fn remove(
        &mut self,
        tx: &mut Change,
        cidr: &Cidr,
        snaps: &mut Option<(&mut lists::Snapshot, &mut lists::Snapshot)>,
    ) -> anyhow::Result<()> {
        let d = self
            .by_cidr
            .get(cidr)
            .cloned()
            .with_context(|| format!("{cidr} is not a protected destination"))?;
        // Packets stop using the policy first; then its lists and domains can go.
        remove_policy(tx, &d.cidr)?;
        let old = self.declared_of(d.id)?;
        if !old.is_empty() {
            domains::replace_known(tx, d.id, &old, &[])?;
            self.forget_domains(d.id);
        }
        match snaps {
            Some((allow, block)) => {
                lists::purge_policy_in(tx, ListKind::Allow, d.id, allow)?;
                lists::purge_policy_in(tx, ListKind::Block, d.id, block)?;
            }
            None => lists::purge_policy(tx, d.id)?,
        }
        remove_info(tx, d.id)?;
        self.maps.reset_dest_drops(d.id)?;
        self.by_cidr.remove(cidr);
        self.used.remove(&d.id);
        self.count[usize::from(!cidr.is_ipv4())] -= 1;
        Ok(())
    }

    /// Clears the "policies exist" flag once the last destination is gone.
    pub fn finish(&self, tx: &mut Change) -> anyhow::Result<()> {
        set_has_policies(tx, !self.by_cidr.is_empty())
    }

    /// The SIP domains `id` declares, from one read of the map per registry.
    fn declared_of(&mut self, id: u32) -> anyhow::Result<Vec<String>> {
        if self.declared.is_none() {
            self.declared = Some(domains::all(self.maps)?);
        }
        Ok(self.declared.as_ref().and_then(|d| d.get(&id)).cloned().unwrap_or_default())
    }

    fn forget_domains(&mut self, id: u32) {
        if let Some(d) = self.declared.as_mut() {
            d.remove(&id);
        }
    }

    /// Declares a destination's domains before its policy says it has any. Returns whether
    /// the caller must clear them after writing the policy (without `HAS_DOMAINS`): the
    /// kernel never checks against an empty set.
    fn declare_domains(
        &mut self,
        tx: &mut Change,
        id: u32,
        policy: &mut Policy,
        names: Option<&[String]>,
    ) -> anyhow::Result<bool> {
        match names {
            None => Ok(false),
            Some([]) => {
                policy.flags &= !HAS_DOMAINS;
                Ok(true)
            }
            Some(names) => {
                let old = self.declared_of(id)?;
                domains::replace_known(tx, id, &old, names)?;
                if let Some(d) = self.declared.as_mut() {
                    d.insert(id, names.to_vec());
                }
                policy.flags |= HAS_DOMAINS;
                Ok(false)
            }
        }
    }
}
