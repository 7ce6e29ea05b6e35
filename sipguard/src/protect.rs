//! Protected destinations: a provider's customer addresses, each with its own policy (default,
//! mode, allowlist, blocklist). The global policy covers everything else.

use std::net::IpAddr;

use anyhow::{Context as _, bail};
use aya::maps::lpm_trie::Key;
use sipguard_common::{
    config::{DefaultAction, Mode},
    policy::{DestInfo, MAX_DEST_NAME, MAX_POLICIES, Policy},
};

use crate::{cidr::Cidr, maps::PinnedMaps};

/// A protected destination.
#[derive(Clone, Debug)]
pub struct Destination {
    pub id: u32,
    pub cidr: Cidr,
    pub name: Option<String>,
    pub policy: Policy,
}

impl Destination {
    /// `198.51.100.10/32 (customer-a)`.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{} ({n})", self.cidr),
            None => self.cidr.to_string(),
        }
    }
}

fn info_cidr(info: &DestInfo) -> Option<Cidr> {
    let addr = if info.v6 == 1 {
        IpAddr::from(info.addr)
    } else {
        IpAddr::from([info.addr[0], info.addr[1], info.addr[2], info.addr[3]])
    };
    Cidr::new(addr, info.prefix_len).ok()
}

fn info_name(info: &DestInfo) -> Option<String> {
    (info.name_len > 0).then(|| {
        String::from_utf8_lossy(&info.name[..usize::from(info.name_len).min(MAX_DEST_NAME)])
            .into_owned()
    })
}

fn read_policy(maps: &PinnedMaps, cidr: &Cidr) -> anyhow::Result<Option<Policy>> {
    // The tries answer longest-prefix queries; an exact entry is the one whose id we know.
    let found = match cidr.addr() {
        IpAddr::V4(a) => {
            maps.dest_v4()?.get(&Key::new(u32::from(cidr.prefix_len()), a.octets()), 0)
        }
        IpAddr::V6(a) => {
            maps.dest_v6()?.get(&Key::new(u32::from(cidr.prefix_len()), a.octets()), 0)
        }
    };
    match found {
        Ok(p) => Ok(Some(p)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e).context("reading a destination policy"),
    }
}

fn write_policy(maps: &PinnedMaps, cidr: &Cidr, policy: &Policy) -> anyhow::Result<()> {
    let result = match cidr.addr() {
        IpAddr::V4(a) => {
            maps.dest_v4()?.insert(&Key::new(u32::from(cidr.prefix_len()), a.octets()), policy, 0)
        }
        IpAddr::V6(a) => {
            maps.dest_v6()?.insert(&Key::new(u32::from(cidr.prefix_len()), a.octets()), policy, 0)
        }
    };
    result
        .map_err(crate::lists::explain_map_error)
        .with_context(|| format!("writing the policy of {cidr}"))
}

fn remove_policy(maps: &PinnedMaps, cidr: &Cidr) -> anyhow::Result<()> {
    match cidr.addr() {
        IpAddr::V4(a) => {
            maps.dest_v4()?.remove(&Key::new(u32::from(cidr.prefix_len()), a.octets()))
        }
        IpAddr::V6(a) => {
            maps.dest_v6()?.remove(&Key::new(u32::from(cidr.prefix_len()), a.octets()))
        }
    }
    .with_context(|| format!("removing the policy of {cidr}"))
}

/// Every protected destination, by id.
pub fn all(maps: &PinnedMaps) -> anyhow::Result<Vec<Destination>> {
    let infos = maps.dest_info()?;
    let mut out = Vec::new();
    for entry in &infos {
        let (id, info) = entry.context("reading destination names")?;
        let Some(cidr) = info_cidr(&info) else { continue };
        // An exact match may be shadowed by a longer prefix only if one covers the whole of
        // this one, which `protect add` does not create, so the lookup finds this entry.
        if let Some(policy) = read_policy(maps, &cidr)?
            && policy.id == id
        {
            out.push(Destination { id, cidr, name: info_name(&info), policy });
        }
    }
    out.sort_by_key(|d| d.cidr);
    Ok(out)
}

/// The destination `target` names: its exact prefix, or the one protecting a plain address.
pub fn find(maps: &PinnedMaps, target: &Cidr) -> anyhow::Result<Destination> {
    let all = all(maps)?;
    if let Some(d) = all.iter().find(|d| d.cidr == *target) {
        return Ok(d.clone());
    }
    all.into_iter()
        .filter(|d| d.cidr.contains(target.addr()) && d.cidr.prefix_len() <= target.prefix_len())
        .max_by_key(|d| d.cidr.prefix_len())
        .with_context(|| format!("{target} is not a protected destination (`sipguard protect add {target}` makes it one)"))
}

/// Settings of a destination's policy.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub default_action: Option<DefaultAction>,
    pub mode: Option<Mode>,
}

/// Protects `cidr` (or updates its settings and name). Returns the destination and whether
/// it is new.
pub fn add(
    maps: &PinnedMaps,
    cidr: Cidr,
    settings: Settings,
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
    let existing = all(maps)?;
    if let Some(d) = existing.iter().find(|d| d.cidr == cidr) {
        let mut policy = d.policy;
        if let Some(a) = settings.default_action {
            policy.default_action = a as u8;
        }
        if let Some(m) = settings.mode {
            policy.mode = m as u8;
        }
        if let Some(n) = name {
            write_info(maps, d.id, &cidr, Some(n))?;
        }
        write_policy(maps, &cidr, &policy)?;
        let updated = Destination {
            policy,
            name: name.map(str::to_owned).or_else(|| d.name.clone()),
            ..d.clone()
        };
        return Ok((updated, false));
    }
    let capacity = maps.capacity(if cidr.is_ipv4() {
        sipguard_common::maps::DEST_V4
    } else {
        sipguard_common::maps::DEST_V6
    })?;
    if existing.iter().filter(|d| d.cidr.is_ipv4() == cidr.is_ipv4()).count() >= capacity as usize {
        bail!(
            "{capacity} destinations of this family are protected already, the most the filter holds (set by `attach --dest-capacity` when it is first attached)"
        );
    }
    let used: std::collections::BTreeSet<u32> = existing.iter().map(|d| d.id).collect();
    let id = (1..MAX_POLICIES).find(|i| !used.contains(i)).context("no free policy id")?;
    let policy = Policy {
        id,
        default_action: settings.default_action.unwrap_or(DefaultAction::Pass) as u8,
        mode: settings.mode.unwrap_or(Mode::Enforce) as u8,
        allow_gen: 0,
        block_gen: 0,
        flags: 0,
        reserved: 0,
    };
    // Leftovers of a destination that used this id before are no one's: clear them first.
    crate::lists::purge_policy(maps, id)?;
    maps.reset_dest_drops(id)?;
    write_info(maps, id, &cidr, name)?;
    if let Err(e) = write_policy(maps, &cidr, &policy) {
        let _ = maps.dest_info()?.remove(&id);
        return Err(e);
    }
    set_has_policies(maps, true)?;
    Ok((Destination { id, cidr, name: name.map(str::to_owned), policy }, true))
}

fn write_info(maps: &PinnedMaps, id: u32, cidr: &Cidr, name: Option<&str>) -> anyhow::Result<()> {
    let mut info = DestInfo {
        addr: [0; 16],
        prefix_len: cidr.prefix_len(),
        v6: 0,
        name_len: 0,
        reserved: [0; 5],
        name: [0; MAX_DEST_NAME],
    };
    match cidr.addr() {
        IpAddr::V4(a) => info.addr[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => {
            info.addr = a.octets();
            info.v6 = 1;
        }
    }
    if let Some(n) = name {
        info.name[..n.len()].copy_from_slice(n.as_bytes());
        info.name_len = u8::try_from(n.len()).expect("validated");
    }
    maps.dest_info()?
        .insert(id, info, 0)
        .map_err(crate::lists::explain_map_error)
        .context("writing the destination's name")
}

fn set_has_policies(maps: &PinnedMaps, on: bool) -> anyhow::Result<()> {
    let mut config = maps.config()?;
    if (config.has_policies != 0) != on {
        config.has_policies = u8::from(on);
        maps.set_config(&config)?;
    }
    Ok(())
}

/// Stops protecting `target`'s destination; its lists and counters go with it.
pub fn remove(maps: &PinnedMaps, target: &Cidr) -> anyhow::Result<Destination> {
    let d = find(maps, target)?;
    if d.cidr != *target {
        bail!("{target} is not protected by itself: it is part of {}; remove that", d.label());
    }
    // Packets stop using the policy first; then its lists can go.
    remove_policy(maps, &d.cidr)?;
    crate::lists::purge_policy(maps, d.id)?;
    let _ = maps.dest_info()?.remove(&d.id);
    maps.reset_dest_drops(d.id)?;
    if all(maps)?.is_empty() {
        set_has_policies(maps, false)?;
    }
    Ok(d)
}

/// Writes a destination's policy (a list generation flip, a flag).
pub fn update(maps: &PinnedMaps, d: &Destination) -> anyhow::Result<()> {
    write_policy(maps, &d.cidr, &d.policy)
}
