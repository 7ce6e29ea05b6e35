//! The SIP domains the policies declare (`SG_DOMAINS`; see `sipguard_common::domain`): the
//! global policy's (id 0) and each protected destination's. Names are stored normalized and
//! keyed by their hash, which is all the kernel compares.

use std::{collections::BTreeMap, net::Ipv6Addr};

use anyhow::bail;
use sipguard_common::{
    domain::{BadName, MAX_DOMAIN_LEN, normalize as normalize_name},
    lists::GLOBAL_POLICY,
};

use crate::{kernel::maps::PinnedMaps, state::change::Change};

/// `name` as it is stored and matched: lower case, an IPv6 address bracketed and in its
/// canonical form (RFC 5952), as a Request-URI writes it.
///
/// # Errors
/// When `name` is not a host name or an address.
pub fn normalize(name: &str) -> anyhow::Result<String> {
    let trimmed = name.trim();
    let inner = trimmed.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(trimmed);
    let candidate = if inner.contains(':') {
        let addr: Ipv6Addr = inner.parse().map_err(|_| {
            anyhow::anyhow!(
                "`{name}` is not a SIP domain: a name with a colon must be an IPv6 address (no port, no scheme)"
            )
        })?;
        format!("[{addr}]")
    } else {
        trimmed.to_owned()
    };
    let mut out = [0; MAX_DOMAIN_LEN];
    match normalize_name(&candidate, &mut out) {
        Ok(n) => Ok(String::from_utf8_lossy(&out[..n]).into_owned()),
        Err(BadName::Empty) => bail!("an empty SIP domain"),
        Err(BadName::TooLong) => {
            bail!("`{name}` is not a SIP domain: longer than {MAX_DOMAIN_LEN} bytes")
        }
        Err(BadName::Character(b)) => bail!(
            "`{name}` is not a SIP domain: `{}` is in no host name",
            char::from(b).escape_default()
        ),
    }
}

/// `names` normalized, sorted, without repeats.
///
/// # Errors
/// On the first name that is not one.
pub fn normalize_all(names: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = names.iter().map(|n| normalize(n)).collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every policy's domains, sorted.
///
/// # Errors
/// When the map cannot be read.
pub fn all(maps: &PinnedMaps) -> anyhow::Result<BTreeMap<u32, Vec<String>>> {
    maps.declared_domains()
}

/// The domains of `policy`, sorted.
///
/// # Errors
/// When the map cannot be read.
pub fn of(maps: &PinnedMaps, policy: u32) -> anyhow::Result<Vec<String>> {
    Ok(all(maps)?.remove(&policy).unwrap_or_default())
}

/// Replaces `policy`'s domains with `names` (normalized), journaled. Returns whether they
/// changed. The caller turns the policy's check on after declaring a first set, and off
/// before clearing one, so the kernel never checks against an empty set.
pub fn replace(tx: &mut Change, policy: u32, names: &[String]) -> anyhow::Result<bool> {
    let old = of(tx.maps(), policy)?;
    replace_known(tx, policy, &old, names)
}

/// [`replace`] for a caller that knows the current set (`old`), read once for many
/// policies (`protect::Registry`).
pub fn replace_known(
    tx: &mut Change,
    policy: u32,
    old: &[String],
    names: &[String],
) -> anyhow::Result<bool> {
    if old == names {
        return Ok(false);
    }
    tx.replace_domains(policy, old, names)?;
    Ok(true)
}

/// Makes `names` (normalized) the global policy's domains, turning its check on or off to
/// match: one change, all or nothing. (`attach` and `run` do the same within theirs.)
///
/// # Errors
/// When the maps cannot be written; nothing is changed then.
pub fn declare_global(maps: &PinnedMaps, names: &[String]) -> anyhow::Result<()> {
    crate::state::change::run(maps, |tx| {
        if !names.is_empty() {
            replace(tx, GLOBAL_POLICY, names)?;
        }
        tx.edit_config("wrote the configuration", |c| c.has_domains = u8::from(!names.is_empty()))?;
        if names.is_empty() {
            replace(tx, GLOBAL_POLICY, names)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalize_or_say_why_not() {
        assert_eq!(normalize("PBX.Example.com").unwrap(), "pbx.example.com");
        assert_eq!(normalize("2001:DB8:0::1").unwrap(), "[2001:db8::1]");
        assert_eq!(normalize("[2001:db8::1]").unwrap(), "[2001:db8::1]");
        assert_eq!(normalize("192.0.2.10").unwrap(), "192.0.2.10");
        let e = normalize("pbx.example.com:5060").unwrap_err().to_string();
        assert!(e.contains("IPv6"), "{e}");
        let e = normalize("pbx example").unwrap_err().to_string();
        assert!(e.contains("` `"), "{e}");
        assert_eq!(
            normalize_all(&["b.example".into(), "A.example".into(), "a.example".into()]).unwrap(),
            ["a.example", "b.example"]
        );
    }
}
