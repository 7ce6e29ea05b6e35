//! Attaching and detaching the filter as one all-or-nothing operation: validate, load, apply
//! settings and starting lists, attach; on any failure put everything back as it was.

use std::collections::BTreeSet;

use anyhow::bail;
use sipguard_common::{
    config::{Config, DEFAULT_SIP_PORTS},
    lists::GLOBAL_POLICY,
    maps::{DEFAULT_DEST_CAPACITY, DEFAULT_LIST_CAPACITY},
    trust::BanBudget,
};

use crate::{
    kernel::{
        maps::{ListKind, PinnedMaps},
        pin::PinLayout,
        privileges::{self, Need},
        program::{self, Attached},
        sys,
    },
    setup::settings::{FilterSettings, Setup},
    signatures,
    state::{
        change::{self, Change},
        domains, lists, routes, sigset,
    },
};

/// Burst allowed above `--rate-limit` unless `--rate-burst` says otherwise.
pub const DEFAULT_RATE_BURST: u32 = 20;

/// What an attach did.
#[derive(Debug)]
pub struct AttachReport {
    /// The filter did not exist before: maps were created with the defaults.
    pub fresh: bool,
    pub ifaces: Vec<(String, Attached)>,
}

/// Attaches to `ifaces` (adopting existing attachments) with `setup`. All or nothing.
pub fn attach(
    layout: &PinLayout,
    ifaces: &[String],
    setup: &Setup,
) -> anyhow::Result<AttachReport> {
    let (mut pending, maps) = prepare(layout, ifaces, setup)?;
    let result = change::run(&maps, |tx| pending.attach_in(tx, setup));
    pending.finish(result)
}

/// A loaded program waiting to be attached: what [`prepare`] found, for [`Pending::attach_in`]
/// (the maps' part, inside a change) and [`Pending::finish`] (a new filter's removal when the
/// change failed).
pub struct Pending {
    layout: PinLayout,
    ifaces: Vec<String>,
    loaded: program::Loaded,
    before: Option<(Config, Vec<u16>)>,
    already: BTreeSet<String>,
}

/// Validates the interfaces and loads the program over the pinned maps (creating them for a
/// new filter). Nothing is attached yet.
pub fn prepare(
    layout: &PinLayout,
    ifaces: &[String],
    setup: &Setup,
) -> anyhow::Result<(Pending, PinnedMaps)> {
    privileges::require(Need::Attach)?;
    let ifaces: Vec<String> = ifaces.iter().collect::<BTreeSet<_>>().into_iter().cloned().collect();
    if ifaces.is_empty() {
        bail!("no interface given: use --iface IF");
    }
    for iface in &ifaces {
        if sys::ifindex(iface).is_none() {
            bail!("no such interface: {iface}");
        }
    }

    let capacity = program::Capacities {
        lists: setup.capacity.lists.unwrap_or(DEFAULT_LIST_CAPACITY),
        destinations: setup.capacity.destinations.unwrap_or(DEFAULT_DEST_CAPACITY),
        behaviour: setup
            .capacity
            .behaviour
            .unwrap_or(sipguard_common::maps::DEFAULT_BEHAVIOUR_CAPACITY),
    };
    let loaded = program::load(layout, capacity)?;
    // Pins of an earlier version are brought to this one's layout before anything reads
    // them; each upgrade is idempotent, and a current directory costs a map read.
    if let Err(e) = crate::state::upgrade::pin_layout(layout) {
        if loaded.fresh
            && let Err(cleanup) = layout.remove_all()
        {
            log::warn!("removing the half-made filter: {cleanup:#}");
        }
        return Err(e.context("bringing the pin directory to this version's layout"));
    }
    let maps = PinnedMaps::open(layout)?;
    if !loaded.fresh
        && let Some(asked) = setup.capacity.lists
    {
        let (v4, _) = maps.list_capacity(ListKind::Allow)?;
        if v4 != asked {
            log::warn!(
                "--list-capacity {asked} ignored: the lists were created with {v4} entries; `sipguard detach` first to change it"
            );
        }
    }
    let before = if loaded.fresh { None } else { Some((maps.config()?, maps.ports()?)) };
    let already: BTreeSet<String> = layout.attached_ifaces()?.into_iter().collect();
    Ok((Pending { layout: layout.clone(), ifaces, loaded, before, already }, maps))
}

impl Pending {
    /// The maps' part of an attach, journaled in `tx`: settings, the built-in signatures of a
    /// new filter, the starting lists, and each new attachment (undone by unpinning its link).
    pub fn attach_in(
        &mut self,
        tx: &mut Change,
        setup: &Setup,
    ) -> anyhow::Result<Vec<(String, Attached)>> {
        apply_settings(tx, &setup.settings, self.before.as_ref())?;
        if self.loaded.fresh {
            let diff = sigset::replace_in(tx, signatures::catalog())?;
            log::debug!(
                "installed {} built-in signatures ({} automaton states)",
                diff.added.len(),
                diff.states
            );
        }
        for (kind, cidrs) in [(ListKind::Allow, &setup.allow), (ListKind::Block, &setup.block)] {
            if !cidrs.is_empty() {
                lists::add_in(tx, kind, &mut lists::Target::Global, cidrs)?;
            }
        }
        let mut attached = Vec::new();
        for iface in &self.ifaces {
            let how = self.loaded.attach(&self.layout, iface, setup.xdp_mode)?;
            if matches!(how, Attached::New(_)) && !self.already.contains(iface) {
                let (layout, iface) = (self.layout.clone(), iface.clone());
                tx.undo_with(format!("attached to {iface}"), move |_| {
                    program::detach_responses(&layout, &iface)?;
                    unlink(&layout, &iface)
                });
            }
            // Adopted interfaces get it too: a filter made before the response path existed
            // gains it here. Without it the filter still protects (lists, signatures, bans);
            // only the behaviour rules go blind on this interface, which must not cost the
            // rest.
            if let Err(e) = self.loaded.attach_responses(&self.layout, iface) {
                log::warn!(
                    "{iface}: the response program could not hook into egress, so the behaviour rules see no answers here: {e:#}"
                );
            }
            attached.push((iface.clone(), how));
        }
        // The route mirror copies the host's state, not a setting: a failure to read it
        // costs only the reverse-path check where the kernel's FIB cannot answer.
        match routes::sync(tx.maps()) {
            Ok(s) if s.too_many => log::warn!(
                "the routing table ({} IPv4, {} IPv6 routes) is too large to mirror: the reverse-path check asks the kernel's FIB only, which answers on interfaces that forward",
                s.v4,
                s.v6
            ),
            Ok(s) => log::debug!("mirrored {} IPv4 and {} IPv6 routes", s.v4, s.v6),
            Err(e) => log::warn!("the route mirror was not updated: {e:#}"),
        }
        Ok(attached)
    }

    /// The outcome of the change `attach_in` was part of: a new filter that failed is removed
    /// whole (its pinned maps too); maps the load set aside (an earlier version's shape) are
    /// removed once the change committed, and put back where it failed.
    pub fn finish(
        mut self,
        result: anyhow::Result<Vec<(String, Attached)>>,
    ) -> anyhow::Result<AttachReport> {
        let fresh = self.loaded.fresh;
        match result {
            Ok(ifaces) => {
                self.loaded.commit();
                Ok(AttachReport { fresh, ifaces })
            }
            Err(e) if fresh => {
                if let Err(cleanup) = self.layout.remove_all() {
                    return Err(e.context(format!(
                        "removing the new filter's pinned state failed too ({cleanup:#}); `sipguard detach` removes it"
                    )));
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

/// Writes the settings given over the current (or default) ones, journaled.
fn apply_settings(
    tx: &mut Change,
    settings: &FilterSettings,
    before: Option<&(Config, Vec<u16>)>,
) -> anyhow::Result<()> {
    let mut config = before.map_or_else(Config::default, |(c, _)| *c);
    let policy = &settings.policy;
    if let Some(d) = policy.default_action {
        config = config.with_default_action(d);
    }
    if let Some(m) = policy.mode {
        config = config.with_mode(m);
    }
    if let Some(f) = policy.fragments {
        config = config.with_fragment_action(f);
    }
    if let Some(ttl) = policy.ban_ttl {
        config.ban_ttl_secs = ttl;
    }
    let (window, auth, not_found) = config.behaviour();
    config = config.with_behaviour(
        policy.behaviour_window.unwrap_or(window),
        policy.auth_failures.unwrap_or(auth),
        policy.not_found.unwrap_or(not_found),
    );
    if let Some(users) = policy.extension_scan {
        config = config.with_extension_scan(users);
    }
    if let Some(mode) = policy.reverse_path {
        config = config.with_reverse_path(mode);
    }
    if let Some(secs) = policy.standing {
        config = config.with_standing(secs);
    }
    if let Some(pps) = policy.rate_limit {
        let burst = policy.rate_burst.unwrap_or(DEFAULT_RATE_BURST);
        config = config.with_rate_limit(pps, burst);
    } else if let Some(burst) = policy.rate_burst
        && let Some((pps, _)) = config.rate_limit()
    {
        config = config.with_rate_limit(u32::try_from(pps).unwrap_or(u32::MAX), burst);
    }
    // Ports first: a filter that starts with a port set must never see an empty one.
    let ports: Option<&[u16]> = if !settings.sip_ports.is_empty() {
        Some(&settings.sip_ports)
    } else if before.is_none() {
        Some(&DEFAULT_SIP_PORTS)
    } else {
        None
    };
    if let Some(ports) = ports {
        tx.set_ports(ports)?;
    }
    // Domains: a first set is declared before the check turns on, a last one cleared after
    // it turns off, so the kernel never checks against an empty set.
    let domains = settings.sip_domains.as_deref();
    if let Some(names) = domains {
        config.has_domains = u8::from(!names.is_empty());
        if !names.is_empty() {
            domains::replace(tx, GLOBAL_POLICY, names)?;
        }
    }
    if before.is_none_or(|(c, _)| *c != config) {
        tx.set_config("wrote the configuration", &config)?;
    }
    if let Some(names) = domains
        && names.is_empty()
    {
        domains::replace(tx, GLOBAL_POLICY, names)?;
    }
    set_ban_budget(tx, config.ban_ttl_secs)
}

/// Sizes the budget of bans on unverified evidence to the ban table and the ban lifetime
/// (`BanBudget::for_table`), journaled. What the kernel spent of it is kept.
fn set_ban_budget(tx: &mut Change, ttl_secs: u32) -> anyhow::Result<()> {
    let maps = tx.maps();
    let old = maps.ban_budget()?;
    let capacity = maps.capacity(sipguard_common::maps::BANS)?;
    let new = BanBudget { tat_ns: old.tat_ns, ..BanBudget::for_table(capacity, ttl_secs) };
    tx.set_ban_budget(&new)
}

/// Detaches from `ifaces` (all when empty). Removes the maps when no interface is left,
/// unless `keep_state`. Returns the interfaces detached.
pub fn detach(
    layout: &PinLayout,
    ifaces: &[String],
    keep_state: bool,
) -> anyhow::Result<Vec<String>> {
    privileges::require(Need::Attach)?;
    let attached = layout.attached_ifaces()?;
    if attached.is_empty() && !layout.has_maps() {
        bail!("sipguard is not attached (nothing pinned under {})", layout.root().display());
    }
    let targets: Vec<String> = if ifaces.is_empty() {
        attached.clone()
    } else {
        let missing: Vec<&String> = ifaces.iter().filter(|i| !attached.contains(i)).collect();
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(change::refused(format!(
                "sipguard is not attached to {}",
                names.join(", ")
            )));
        }
        ifaces.iter().collect::<BTreeSet<_>>().into_iter().cloned().collect()
    };
    for iface in &targets {
        program::detach_responses(layout, iface)?;
        unlink(layout, iface)?;
    }
    if layout.attached_ifaces()?.is_empty() && !keep_state {
        layout.remove_all()?;
    }
    Ok(targets)
}

/// Detaches the XDP link pinned for `iface` at once, then unpins it and its jump table.
fn unlink(layout: &PinLayout, iface: &str) -> anyhow::Result<()> {
    program::detach_pinned(&layout.link(iface), &format!("from {iface}"))?;
    program::unpin_stages(layout, iface)
}
