//! `sipguard run --config FILE`: the whole filter declared in one TOML file, applied at start
//! and again on SIGHUP or `sipguard reload`. The file is the source of truth: a reload makes
//! the running filter match it (destinations, lists and interfaces it no longer names go).
//! Everything is read and checked before anything changes; an invalid file changes nothing.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    str::FromStr as _,
};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sipguard_common::{
    config::{DefaultAction, FragmentAction, Mode},
    lists::GLOBAL_POLICY,
    trust::ReversePath,
};

use crate::{
    cidr::Cidr,
    kernel::{
        maps::{ListKind, PinnedMaps},
        pin::PinLayout,
        program::AttachMode,
    },
    named,
    setup::{
        attach, import,
        settings::{Capacity, CrowdsecSettings, FilterSettings, PolicySettings, Setup},
    },
    signatures::{self, Signature},
    state::{
        change::{self, Change},
        domains,
        lists::{self, Snapshot, Target},
        protect::{self, Settings},
        sigset,
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interfaces: Vec<String>,
    #[serde(default)]
    sip_ports: Vec<u16>,
    /// The global policy's SIP domains (none: no domain check).
    #[serde(default)]
    sip_domains: Vec<String>,
    #[serde(default, deserialize_with = "named::option")]
    xdp_mode: Option<AttachMode>,
    #[serde(default)]
    capacity: Capacity,
    #[serde(default)]
    policy: PolicySettings,
    #[serde(default)]
    allow: ListSpec,
    #[serde(default)]
    block: ListSpec,
    #[serde(default)]
    protect: Vec<DestSpec>,
    /// Load the built-in catalog (in addition to `[[signature]]` entries).
    #[serde(default = "yes")]
    builtin_signatures: bool,
    #[serde(default)]
    signature: Vec<toml::Value>,
    #[serde(default)]
    metrics: Option<String>,
    #[serde(default, rename = "events_file")]
    incident_log: Option<PathBuf>,
    /// The fleet's decision store, which the daemon's bouncer follows.
    #[serde(default)]
    crowdsec: Option<CrowdsecSettings>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListSpec {
    #[serde(default)]
    entries: Vec<String>,
    #[serde(default)]
    files: Vec<ListFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListFile {
    path: PathBuf,
    #[serde(default, deserialize_with = "named::required")]
    format: import::Format,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DestSpec {
    address: String,
    name: Option<String>,
    #[serde(default, deserialize_with = "named::option")]
    default: Option<DefaultAction>,
    #[serde(default, deserialize_with = "named::option")]
    mode: Option<Mode>,
    #[serde(default)]
    allow: ListSpec,
    #[serde(default)]
    block: ListSpec,
    #[serde(default)]
    sip_domains: Vec<String>,
}

/// A destination as the file wants it, resolved.
#[derive(Debug, Clone)]
pub struct DesiredDest {
    pub cidr: Cidr,
    pub name: Option<String>,
    pub default_action: DefaultAction,
    pub mode: Mode,
    pub allow: Vec<Cidr>,
    pub block: Vec<Cidr>,
    pub sip_domains: Vec<String>,
}

/// A configuration file, read, resolved (list files loaded) and checked.
#[derive(Debug, Clone)]
pub struct Desired {
    pub interfaces: Vec<String>,
    pub setup: Setup,
    pub allow: Vec<Cidr>,
    pub block: Vec<Cidr>,
    pub destinations: Vec<DesiredDest>,
    pub signatures: Vec<Signature>,
    pub metrics: Option<String>,
    pub events_file: Option<PathBuf>,
    pub crowdsec: Option<CrowdsecSettings>,
}

fn resolve_list(spec: &ListSpec, base: &Path, what: &str) -> anyhow::Result<Vec<Cidr>> {
    let mut out = Vec::new();
    for (i, e) in spec.entries.iter().enumerate() {
        out.push(
            Cidr::from_str(e).map_err(|err| anyhow::anyhow!("{what}, entry {}: {err}", i + 1))?,
        );
    }
    for f in &spec.files {
        let path = if f.path.is_absolute() { f.path.clone() } else { base.join(&f.path) };
        out.extend(
            import::read(&path, f.format)
                .with_context(|| format!("{what}, file {}", path.display()))?,
        );
    }
    let unique: BTreeSet<Cidr> = out.into_iter().collect();
    Ok(unique.into_iter().collect())
}

/// Deserializes TOML text. A syntax error is TOML's own (with the line); an error in a value
/// names the key it is about (`policy.default `maybe`: expected one of pass, drop, off`).
fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    let document: toml::Value = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." { anyhow::anyhow!("{inner}") } else { anyhow::anyhow!("{path} {inner}") }
    })
}

/// Reads and checks a configuration file; list files are read too, relative to it.
pub fn load(path: &Path) -> anyhow::Result<Desired> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: File = from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    resolve(file, base).with_context(|| format!("{}", path.display()))
}

fn resolve_settings(file: &File) -> anyhow::Result<FilterSettings> {
    use sipguard_common::behaviour;
    if file.sip_ports.contains(&0) {
        bail!("sip_ports: port 0 is not a port");
    }
    let p = &file.policy;
    // The file states the whole policy: what it leaves out takes the default, so removing
    // a line from the file and reloading undoes it.
    Ok(FilterSettings {
        policy: PolicySettings {
            default_action: Some(p.default_action.unwrap_or(DefaultAction::Pass)),
            mode: Some(p.mode.unwrap_or(Mode::Enforce)),
            fragments: Some(p.fragments.unwrap_or(FragmentAction::Pass)),
            ban_ttl: Some(p.ban_ttl.unwrap_or(sipguard_common::config::DEFAULT_BAN_TTL_SECS)),
            rate_limit: Some(p.rate_limit.unwrap_or(0)),
            rate_burst: p.rate_burst,
            behaviour_window: Some(p.behaviour_window.unwrap_or(behaviour::DEFAULT_WINDOW_SECS)),
            auth_failures: Some(p.auth_failures.unwrap_or(behaviour::DEFAULT_AUTH_FAILURES)),
            not_found: Some(p.not_found.unwrap_or(behaviour::DEFAULT_NOT_FOUND)),
            extension_scan: Some(p.extension_scan.unwrap_or(behaviour::DEFAULT_EXTENSION_SCAN)),
            reverse_path: Some(p.reverse_path.unwrap_or(ReversePath::Strict)),
            standing: Some(p.standing.unwrap_or(sipguard_common::trust::DEFAULT_STANDING_SECS)),
        },
        sip_ports: if file.sip_ports.is_empty() {
            sipguard_common::config::DEFAULT_SIP_PORTS.to_vec()
        } else {
            file.sip_ports.clone()
        },
        sip_domains: Some(
            domains::normalize_all(&file.sip_domains)
                .map_err(|e| anyhow::anyhow!("sip_domains: {e:#}"))?,
        ),
    })
}

fn resolve_destinations(specs: &[DestSpec], base: &Path) -> anyhow::Result<Vec<DesiredDest>> {
    let mut destinations = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, d) in specs.iter().enumerate() {
        let what = format!("protect #{} ({})", i + 1, d.address);
        let cidr = Cidr::from_str(&d.address).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        if !seen.insert(cidr) {
            bail!("{what}: the destination is listed twice");
        }
        let default_action = d.default.unwrap_or(DefaultAction::Pass);
        if default_action == DefaultAction::Off {
            bail!("{what}: default `off` is only for the global policy: expected pass or drop");
        }
        let mode = d.mode.unwrap_or(Mode::Enforce);
        destinations.push(DesiredDest {
            cidr,
            name: d.name.clone(),
            default_action,
            mode,
            allow: resolve_list(&d.allow, base, &format!("{what}: allow"))?,
            block: resolve_list(&d.block, base, &format!("{what}: block"))?,
            sip_domains: domains::normalize_all(&d.sip_domains)
                .map_err(|e| anyhow::anyhow!("{what}: sip_domains: {e:#}"))?,
        });
    }
    Ok(destinations)
}

fn resolve_signatures(builtin: bool, extra: Vec<toml::Value>) -> anyhow::Result<Vec<Signature>> {
    let mut sigs = if builtin { signatures::catalog() } else { Vec::new() };
    if !extra.is_empty() {
        let table = toml::Value::Table(toml::map::Map::from_iter([(
            "signature".to_owned(),
            toml::Value::Array(extra),
        )]));
        for s in signatures::parse_file(&toml::to_string(&table)?)? {
            if let Some(existing) = sigs.iter_mut().find(|o| o.name == s.name) {
                *existing = s;
            } else {
                sigs.push(s);
            }
        }
    }
    // Compiling here proves the set fits before anything is touched.
    let slots: Vec<(u16, Signature)> = (0..).zip(sigs.iter().cloned()).collect();
    signatures::compile::compile(&slots).context("signatures")?;
    Ok(sigs)
}

fn resolve(file: File, base: &Path) -> anyhow::Result<Desired> {
    if file.interfaces.is_empty() {
        bail!("`interfaces` names no interface");
    }
    let settings = resolve_settings(&file)?;
    let allow = resolve_list(&file.allow, base, "allow")?;
    let block = resolve_list(&file.block, base, "block")?;
    let destinations = resolve_destinations(&file.protect, base)?;
    let signatures = resolve_signatures(file.builtin_signatures, file.signature)?;
    let crowdsec = file
        .crowdsec
        .map(|mut c| {
            // Key and password files are relative to the configuration, like list files.
            c.api_key_file = base.join(&c.api_key_file);
            c.password_file = c.password_file.map(|p| base.join(p));
            c.ca_file = c.ca_file.map(|p| base.join(p));
            c.check().context("crowdsec")?;
            anyhow::Ok(c)
        })
        .transpose()?;
    Ok(Desired {
        interfaces: file.interfaces,
        setup: Setup {
            settings,
            xdp_mode: file.xdp_mode.unwrap_or_default(),
            capacity: file.capacity,
            allow: Vec::new(),
            block: Vec::new(),
        },
        allow,
        block,
        destinations,
        signatures,
        metrics: file.metrics,
        events_file: file.incident_log,
        crowdsec,
    })
}

/// What applying a configuration changed, for the log.
#[derive(Debug, Default)]
pub struct Applied {
    pub lists_replaced: usize,
    pub destinations_added: usize,
    pub destinations_removed: usize,
    pub interfaces_detached: Vec<String>,
}

/// Makes the running filter match `desired` (attaching first if needed), as one change: a
/// failure anywhere undoes the settings, destinations, lists, signatures and new attachments
/// alike. Interfaces the file no longer names are detached after the change stands. Works
/// from one read of the destinations and lists, so large files apply in time linear in their
/// size.
pub fn apply(layout: &PinLayout, desired: &Desired) -> anyhow::Result<Applied> {
    let mut applied = Applied::default();
    let attached_before: BTreeSet<String> = layout.attached_ifaces()?.into_iter().collect();
    let (mut pending, maps) = attach::prepare(layout, &desired.interfaces, &desired.setup)?;
    let result = change::run(&maps, |tx| {
        let attached = pending.attach_in(tx, &desired.setup)?;
        apply_in(tx, desired, &mut applied)?;
        Ok(attached)
    });
    for (iface, how) in &pending.finish(result)?.ifaces {
        log::debug!("{iface}: {how:?}");
    }
    let gone: Vec<String> =
        attached_before.into_iter().filter(|i| !desired.interfaces.contains(i)).collect();
    if !gone.is_empty() {
        attach::detach(layout, &gone, true).with_context(|| {
            format!("the file was applied, but detaching {} failed", gone.join(", "))
        })?;
        applied.interfaces_detached = gone;
    }
    Ok(applied)
}

/// The part of [`apply`] that works on the maps alone: destinations, lists, signatures, as
/// one change (a failure part-way undoes what was done).
pub fn apply_state(
    maps: &PinnedMaps,
    desired: &Desired,
    applied: &mut Applied,
) -> anyhow::Result<()> {
    change::run(maps, |tx| apply_in(tx, desired, applied))
}

fn apply_in(tx: &mut Change, desired: &Desired, applied: &mut Applied) -> anyhow::Result<()> {
    let maps = tx.maps();
    let mut reg = protect::Registry::load(maps)?;
    let mut allow = Snapshot::read(maps, ListKind::Allow)?;
    let mut block = Snapshot::read(maps, ListKind::Block)?;
    check_fits(maps, desired, &reg, &allow, &block)?;
    // Destinations that go, first: their capacity and lists are freed for the new ones.
    let wanted: BTreeSet<Cidr> = desired.destinations.iter().map(|d| d.cidr).collect();
    let gone: Vec<Cidr> = reg.by_cidr.keys().filter(|c| !wanted.contains(c)).copied().collect();
    for cidr in &gone {
        reg.remove(tx, cidr, &mut Some((&mut allow, &mut block)))?;
        applied.destinations_removed += 1;
    }
    for d in &desired.destinations {
        let settings = Settings {
            default_action: Some(d.default_action),
            mode: Some(d.mode),
            sip_domains: Some(d.sip_domains.clone()),
        };
        let (dest, new) = reg.upsert(tx, d.cidr, &settings, d.name.as_deref())?;
        applied.destinations_added += usize::from(new);
        let mut target = Target::Dest(Box::new(dest));
        applied.lists_replaced +=
            usize::from(sync_list(tx, ListKind::Allow, &mut target, &mut allow, &d.allow)?);
        applied.lists_replaced +=
            usize::from(sync_list(tx, ListKind::Block, &mut target, &mut block, &d.block)?);
    }
    reg.finish(tx)?;
    applied.lists_replaced += usize::from(sync_list(
        tx,
        ListKind::Allow,
        &mut Target::Global,
        &mut allow,
        &desired.allow,
    )?);
    applied.lists_replaced += usize::from(sync_list(
        tx,
        ListKind::Block,
        &mut Target::Global,
        &mut block,
        &desired.block,
    )?);
    let installed: Vec<Signature> = sigset::installed(maps)?.into_iter().map(|(_, s)| s).collect();
    if installed != desired.signatures {
        sigset::replace_in(tx, desired.signatures.clone())?;
    }
    Ok(())
}

/// A list in the maps: its policy id and live generation.
type LiveList = (u32, u8);

/// Refuses, before anything changes, a file whose destinations or lists would not fit at
/// any point of [`apply_state`]: removed destinations free their room first, then each list
/// replacement needs room for its old and new entries at once.
fn check_fits(
    maps: &PinnedMaps,
    desired: &Desired,
    reg: &protect::Registry,
    allow: &Snapshot,
    block: &Snapshot,
) -> anyhow::Result<()> {
    let wanted: BTreeSet<Cidr> = desired.destinations.iter().map(|d| d.cidr).collect();
    let most = sipguard_common::policy::MAX_POLICIES - 1;
    if wanted.len() > most as usize {
        return Err(change::refused(format!(
            "the file protects {} destinations, but sipguard holds at most {most} in all",
            wanted.len()
        )));
    }
    for (v4, family) in [(true, "IPv4"), (false, "IPv6")] {
        let (_, capacity) = reg.family(v4);
        let n = wanted.iter().filter(|c| c.is_ipv4() == v4).count();
        if n > capacity as usize {
            return Err(change::refused(format!(
                "the file protects {n} {family} destinations, but the filter holds at most {capacity} (`dest-capacity`, set when the filter is first attached)"
            )));
        }
    }
    let config = maps.config()?;
    for (kind, snap) in [(ListKind::Allow, allow), (ListKind::Block, block)] {
        let (cap4, cap6) = maps.list_capacity(kind)?;
        let pick = |allow: &'_ [Cidr], block: &'_ [Cidr]| -> Vec<Cidr> {
            if kind == ListKind::Allow { allow.to_vec() } else { block.to_vec() }
        };
        // Each list the file names: (policy and live generation if it exists, wanted entries).
        let mut steps: Vec<(Option<LiveList>, Vec<Cidr>)> = desired
            .destinations
            .iter()
            .map(|d| {
                let live = reg.by_cidr.get(&d.cidr).map(|x| {
                    let g = if kind == ListKind::Allow {
                        x.policy.allow_gen
                    } else {
                        x.policy.block_gen
                    };
                    (x.id, g & 1)
                });
                (live, pick(&d.allow, &d.block))
            })
            .collect();
        let global_gen =
            if kind == ListKind::Allow { config.allow_gen } else { config.block_gen } & 1;
        steps.push((Some((GLOBAL_POLICY, global_gen)), pick(&desired.allow, &desired.block)));
        for (v4, cap, family) in [(true, cap4, "IPv4"), (false, cap6, "IPv6")] {
            let gone: usize = reg
                .by_cidr
                .iter()
                .filter(|(c, _)| !wanted.contains(c))
                .map(|(_, d)| snap.policy_count(d.id, v4))
                .sum();
            let mut now = snap.count(v4) - gone;
            let mut peak = now;
            for (live, list) in &steps {
                let live_entries = live.map_or(&[][..], |(p, g)| snap.tagged(p, g));
                let unchanged = live_entries.iter().collect::<BTreeSet<_>>()
                    == list.iter().collect::<BTreeSet<_>>();
                if unchanged {
                    continue;
                }
                let family_of = |l: &[Cidr]| l.iter().filter(|c| c.is_ipv4() == v4).count();
                let (old, stale) = live.map_or((0, 0), |(p, g)| {
                    (family_of(snap.tagged(p, g)), family_of(snap.tagged(p, g ^ 1)))
                });
                now -= stale;
                peak = peak.max(now + family_of(list));
                now = now - old + family_of(list);
            }
            if peak > cap as usize {
                return Err(change::refused(format!(
                    "applying the file needs room for {peak} {family} {kind} entries at once, but the filter holds at most {cap} (`list-capacity`, set when the filter is first attached)",
                    kind = kind.name()
                )));
            }
        }
    }
    Ok(())
}

/// Replaces a list when its content differs. Returns whether it did.
fn sync_list(
    tx: &mut Change,
    kind: ListKind,
    target: &mut Target,
    snap: &mut Snapshot,
    wanted: &[Cidr],
) -> anyhow::Result<bool> {
    let current: BTreeSet<Cidr> =
        lists::entries_in(tx.maps(), kind, target, snap)?.into_iter().collect();
    let wanted_set: BTreeSet<Cidr> = wanted.iter().copied().collect();
    if current == wanted_set {
        return Ok(false);
    }
    lists::replace_in(tx, kind, target, snap, wanted)?;
    Ok(true)
}

#[cfg(test)]
mod tests;
