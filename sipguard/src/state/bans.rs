//! Banned sources: listing, banning by hand, lifting bans.

use std::net::{IpAddr, Ipv6Addr};

use anyhow::Context as _;
use sipguard_common::{
    behaviour::Rule,
    sources::{
        BAN_MANUAL, BAN_MONITOR, BEHAVIOUR_SIG, Ban, DOMAIN_SIG, NO_SIG, SourceKey, v4_source,
    },
};

use crate::kernel::{maps::PinnedMaps, sys::monotonic_ns};

/// A ban as shown to users.
#[derive(Debug, serde::Serialize)]
pub struct BanInfo {
    pub addr: IpAddr,
    /// Seconds left; `None` for a ban without end.
    pub expires_in_secs: Option<u64>,
    pub age_secs: u64,
    pub packets: u64,
    /// Name of the signature that caused it (`None` for manual bans and behaviour bans).
    pub signature: Option<String>,
    /// The behaviour rule that caused it (`auth_failures`, `not_found`, `extension_scan`),
    /// if one did.
    pub rule: Option<&'static str>,
    /// Why: `signature`, `behaviour`, `unknown_domain` or `manual`.
    pub reason: &'static str,
    pub manual: bool,
    pub monitor: bool,
}

#[must_use]
pub fn key(addr: IpAddr) -> SourceKey {
    match addr {
        IpAddr::V4(a) => v4_source(a.octets()),
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or_else(|| a.octets(), |v4| v4_source(v4.octets())),
    }
}

#[must_use]
pub fn addr(key: &SourceKey) -> IpAddr {
    let v6 = Ipv6Addr::from(*key);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

/// Live bans (expired ones the kernel has not met again are skipped), longest-lived first.
pub fn list(maps: &PinnedMaps) -> anyhow::Result<Vec<BanInfo>> {
    let names: Vec<Option<String>> = {
        let mut v = vec![None; sipguard_common::inspect::SIG_CAPACITY as usize];
        for (slot, sig) in crate::state::sigset::installed(maps)? {
            v[usize::from(slot)] = Some(sig.name);
        }
        v
    };
    let now = monotonic_ns();
    let bans = maps.bans()?;
    let mut out = Vec::new();
    for entry in &bans {
        let (k, ban) = entry.context("reading the ban map")?;
        if ban.expires_ns <= now {
            continue;
        }
        let rule = ban.sig.checked_sub(BEHAVIOUR_SIG).and_then(Rule::from_u16).map(Rule::name);
        let reason = if ban.flags & BAN_MANUAL != 0 {
            "manual"
        } else if rule.is_some() {
            "behaviour"
        } else if ban.sig == DOMAIN_SIG {
            "unknown_domain"
        } else {
            "signature"
        };
        out.push(BanInfo {
            addr: addr(&k),
            expires_in_secs: (ban.expires_ns != u64::MAX)
                .then(|| (ban.expires_ns - now) / 1_000_000_000),
            age_secs: now.saturating_sub(ban.created_ns) / 1_000_000_000,
            packets: ban.packets,
            signature: (ban.sig != NO_SIG)
                .then(|| names.get(usize::from(ban.sig)).cloned().flatten())
                .flatten(),
            rule,
            reason,
            manual: ban.flags & BAN_MANUAL != 0,
            monitor: ban.flags & BAN_MONITOR != 0,
        });
    }
    out.sort_by(|a, b| b.expires_in_secs.cmp(&a.expires_in_secs).then(a.addr.cmp(&b.addr)));
    Ok(out)
}

/// Bans `addrs` for `ttl_secs` (0: until lifted).
pub fn add(maps: &PinnedMaps, addrs: &[IpAddr], ttl_secs: u32) -> anyhow::Result<()> {
    let mut bans = maps.bans()?;
    let now = monotonic_ns();
    let ban = Ban {
        expires_ns: if ttl_secs == 0 {
            u64::MAX
        } else {
            now + u64::from(ttl_secs) * 1_000_000_000
        },
        created_ns: now,
        packets: 0,
        sig: NO_SIG,
        flags: BAN_MANUAL,
        reserved: 0,
    };
    for a in addrs {
        bans.insert(key(*a), ban, 0)
            .map_err(crate::kernel::maps::explain_map_error)
            .with_context(|| format!("banning {a}"))?;
    }
    Ok(())
}

/// Lifts the bans of `addrs`; each must be banned.
pub fn remove(maps: &PinnedMaps, addrs: &[IpAddr]) -> anyhow::Result<()> {
    let mut bans = maps.bans()?;
    let now = monotonic_ns();
    let missing: Vec<String> = addrs
        .iter()
        .filter(|a| bans.get(&key(**a), 0).map_or(true, |b| b.expires_ns <= now))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(crate::state::change::refused(format!("not banned: {}", missing.join(", "))));
    }
    for a in addrs {
        bans.remove(&key(*a)).with_context(|| format!("lifting the ban of {a}"))?;
    }
    Ok(())
}

/// Removes the bans that have expired. The kernel removes an expired ban when the source
/// comes back; a forged source never does, and its ban would stay until the LRU evicted it,
/// possibly in place of a live one. `run` sweeps once a minute.
pub fn sweep(maps: &PinnedMaps) -> anyhow::Result<usize> {
    let mut bans = maps.bans()?;
    let now = monotonic_ns();
    let mut expired = Vec::new();
    for entry in &bans {
        let (k, ban) = entry.context("reading the ban map")?;
        if ban.expires_ns <= now {
            expired.push(k);
        }
    }
    // One the kernel removed meanwhile is gone either way.
    Ok(expired.iter().filter(|k| bans.remove(k).is_ok()).count())
}
