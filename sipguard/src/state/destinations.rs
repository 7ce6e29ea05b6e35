//! The store of protected destinations' policies: the destination tries (`SG_DEST_V4/V6`)
//! that the kernel looks packets' destinations up in, and the names beside them
//! (`SG_DEST_INFO`). The policies' lists live in `lists`; the registry that keeps both in
//! step, in `protect`.

use std::net::IpAddr;

use anyhow::Context as _;

use sipguard_common::policy::{DestInfo, MAX_DEST_NAME, Policy};

use crate::{cidr::Cidr, kernel::maps::PinnedMaps, state::change::Change};

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

/// Writes `cidr`'s policy, journaled.
pub(crate) fn write_policy(tx: &mut Change, cidr: &Cidr, policy: &Policy) -> anyhow::Result<()> {
    tx.put_policy(cidr, policy)
}

/// Removes `cidr`'s policy, journaled.
pub(crate) fn remove_policy(tx: &mut Change, cidr: &Cidr) -> anyhow::Result<()> {
    tx.remove_policy(cidr)
}

/// The protected destination whose policy applies to packets to `ip` (longest prefix), as
/// the kernel finds it: its prefix and label.
pub fn protecting(maps: &PinnedMaps, ip: IpAddr) -> anyhow::Result<Option<(Cidr, Option<String>)>> {
    let host = Cidr::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("a host prefix");
    let Some(policy) = maps.policy(&host)? else { return Ok(None) };
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

/// Removes a policy id's name record, journaled.
pub(crate) fn remove_info(tx: &mut Change, id: u32) -> anyhow::Result<()> {
    tx.remove_dest_info(id)
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
    tx.put_dest_info(id, info)
}

/// Tells the program whether any destination has a policy of its own, journaled.
pub(crate) fn set_has_policies(tx: &mut Change, on: bool) -> anyhow::Result<()> {
    tx.edit_config("changed whether policies exist", |c| c.has_policies = u8::from(on))?;
    Ok(())
}
