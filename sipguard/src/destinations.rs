//! The store of protected destinations' policies: the destination tries (`SG_DEST_V4/V6`)
//! that the kernel looks packets' destinations up in, and the names beside them
//! (`SG_DEST_INFO`). The policies' lists live in `lists`; the registry that keeps both in
//! step, in `protect`.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::maps::lpm_trie::Key;
use sipguard_common::policy::{DestInfo, MAX_DEST_NAME, Policy};

use crate::{
    change::{Change, Undo},
    cidr::Cidr,
    maps::{PinnedMaps, explain_map_error},
};

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

pub(crate) fn info_cidr(info: &DestInfo) -> Option<Cidr> {
    let addr = if info.v6 == 1 {
        IpAddr::from(info.addr)
    } else {
        IpAddr::from([info.addr[0], info.addr[1], info.addr[2], info.addr[3]])
    };
    Cidr::new(addr, info.prefix_len).ok()
}

pub(crate) fn info_name(info: &DestInfo) -> Option<String> {
    (info.name_len > 0).then(|| {
        String::from_utf8_lossy(&info.name[..usize::from(info.name_len).min(MAX_DEST_NAME)])
            .into_owned()
    })
}

pub(crate) fn read_policy(maps: &PinnedMaps, cidr: &Cidr) -> anyhow::Result<Option<Policy>> {
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

/// Writes `cidr`'s policy, journaled.
pub(crate) fn write_policy(tx: &mut Change, cidr: &Cidr, policy: &Policy) -> anyhow::Result<()> {
    let maps = tx.maps();
    let old = read_policy(maps, cidr)?;
    let result = match cidr.addr() {
        IpAddr::V4(a) => {
            maps.dest_v4()?.insert(&Key::new(u32::from(cidr.prefix_len()), a.octets()), policy, 0)
        }
        IpAddr::V6(a) => {
            maps.dest_v6()?.insert(&Key::new(u32::from(cidr.prefix_len()), a.octets()), policy, 0)
        }
    };
    result.map_err(explain_map_error).with_context(|| format!("writing the policy of {cidr}"))?;
    tx.done(format!("wrote the policy of {cidr}"), Undo::Policy { cidr: *cidr, old });
    Ok(())
}

/// Removes `cidr`'s policy, journaled.
pub(crate) fn remove_policy(tx: &mut Change, cidr: &Cidr) -> anyhow::Result<()> {
    let maps = tx.maps();
    let old = read_policy(maps, cidr)?;
    match cidr.addr() {
        IpAddr::V4(a) => {
            maps.dest_v4()?.remove(&Key::new(u32::from(cidr.prefix_len()), a.octets()))
        }
        IpAddr::V6(a) => {
            maps.dest_v6()?.remove(&Key::new(u32::from(cidr.prefix_len()), a.octets()))
        }
    }
    .with_context(|| format!("removing the policy of {cidr}"))?;
    tx.done(format!("removed the policy of {cidr}"), Undo::Policy { cidr: *cidr, old });
    Ok(())
}

/// The protected destination whose policy applies to packets to `ip` (longest prefix), as
/// the kernel finds it: its prefix and label.
pub fn protecting(maps: &PinnedMaps, ip: IpAddr) -> anyhow::Result<Option<(Cidr, Option<String>)>> {
    let host = Cidr::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("a host prefix");
    let Some(policy) = read_policy(maps, &host)? else { return Ok(None) };
    match maps.dest_info()?.get(&policy.id, 0) {
        Ok(info) => Ok(info_cidr(&info).map(|c| (c, info_name(&info)))),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e).context("reading a destination's name"),
    }
}

/// Writes a destination's policy (a list generation flip, a flag).
pub fn update(tx: &mut Change, d: &Destination) -> anyhow::Result<()> {
    write_policy(tx, &d.cidr, &d.policy)
}

fn read_info(maps: &PinnedMaps, id: u32) -> anyhow::Result<Option<DestInfo>> {
    match maps.dest_info()?.get(&id, 0) {
        Ok(info) => Ok(Some(info)),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(e) => Err(e).context("reading a destination's name"),
    }
}

/// Removes a policy id's name record, journaled.
pub(crate) fn remove_info(tx: &mut Change, id: u32) -> anyhow::Result<()> {
    let maps = tx.maps();
    let Some(old) = read_info(maps, id)? else { return Ok(()) };
    maps.dest_info()?
        .remove(&id)
        .map_err(explain_map_error)
        .context("removing a destination's name")?;
    tx.done(format!("removed the name of policy {id}"), Undo::Info { id, old: Some(old) });
    Ok(())
}

/// Writes a policy id's name record, journaled.
pub(crate) fn write_info(
    tx: &mut Change,
    id: u32,
    cidr: &Cidr,
    name: Option<&str>,
) -> anyhow::Result<()> {
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
    let maps = tx.maps();
    let old = read_info(maps, id)?;
    maps.dest_info()?
        .insert(id, info, 0)
        .map_err(explain_map_error)
        .context("writing the destination's name")?;
    tx.done(format!("wrote the name of policy {id}"), Undo::Info { id, old });
    Ok(())
}

/// Tells the program whether any destination has a policy of its own, journaled.
pub(crate) fn set_has_policies(tx: &mut Change, on: bool) -> anyhow::Result<()> {
    let maps = tx.maps();
    let old = maps.config()?;
    if (old.has_policies != 0) != on {
        let mut config = old;
        config.has_policies = u8::from(on);
        maps.set_config(&config)?;
        tx.done("changed whether policies exist", Undo::Config(old));
    }
    Ok(())
}
