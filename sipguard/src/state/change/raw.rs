//! The map writes a change journals: the configuration, the ports, the ban budget, the
//! signature records, the destinations' policies and names, the SIP domains. They are
//! methods of `PinnedMaps` defined here, visible only inside `state::change`: code anywhere
//! else cannot call them, so it cannot write one of these without its undo.

use std::net::IpAddr;

use anyhow::{Context as _, bail};
use aya::maps::{Array, lpm_trie::Key};
use sipguard_common::{
    config::Config,
    domain::{DomainKey, DomainName, MAX_DOMAIN_LEN, hash as domain_hash},
    inspect::SigRecord,
    maps as names,
    policy::{DestInfo, Policy},
    trust::BanBudget,
};

use crate::{
    cidr::Cidr,
    kernel::maps::{PinnedMaps, explain_map_error},
};

impl PinnedMaps {
    /// Writes the configuration. Whether the list filters are maintained is not a setting:
    /// it is carried over from the map (see [`crate::state::lists::refresh_filters`]).
    pub(super) fn set_config(&self, config: &Config) -> anyhow::Result<()> {
        let mut map: Array<_, Config> = self.map(names::CONFIG)?.try_into()?;
        let mut config = *config;
        let stored = map.get(&0, 0).ok();
        config.list_filters = stored.map_or(0, |c| c.list_filters);
        config.retired_list_filters = stored.map_or(0, |c| c.retired_list_filters);
        config.routes = stored.map_or(0, |c| c.routes);
        map.set(0, config, 0).context("writing the configuration map")
    }

    pub(super) fn set_ban_budget(&self, budget: &BanBudget) -> anyhow::Result<()> {
        let mut map: Array<_, BanBudget> = self.map(names::BAN_BUDGET)?.try_into()?;
        map.set(0, *budget, 0).context("writing the ban budget")
    }

    /// Replaces the SIP port set. The union of old and new is written first, so a port that
    /// stays configured is never briefly uninspected.
    pub(super) fn set_ports(&self, ports: &[u16]) -> anyhow::Result<()> {
        if ports.is_empty() {
            bail!("at least one SIP port is required");
        }
        let mut map: Array<_, u64> = self.map(names::PORTS)?.try_into()?;
        let mut wanted = vec![0u64; names::PORT_WORDS as usize];
        for &p in ports {
            wanted[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        for pass in 0..2 {
            for (index, &want) in (0u32..).zip(&wanted) {
                let current = map.get(&index, 0).context("reading the port map")?;
                let value = if pass == 0 { current | want } else { want };
                if value != current {
                    map.set(index, value, 0).context("writing the port map")?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn set_sig_record(&self, slot: u16, record: &SigRecord) -> anyhow::Result<()> {
        let mut map: Array<_, SigRecord> = self.map(names::SIGS)?.try_into()?;
        map.set(u32::from(slot), record, 0).context("writing the signature map")
    }

    /// Writes (`Some`) or removes (`None`) the policy of exactly `cidr`; removing one that
    /// is not there is no error.
    pub(super) fn put_policy(&self, cidr: &Cidr, policy: Option<&Policy>) -> anyhow::Result<()> {
        let len = u32::from(cidr.prefix_len());
        let result = match (cidr.addr(), policy) {
            (IpAddr::V4(a), Some(p)) => self.dest_v4()?.insert(&Key::new(len, a.octets()), p, 0),
            (IpAddr::V6(a), Some(p)) => self.dest_v6()?.insert(&Key::new(len, a.octets()), p, 0),
            (IpAddr::V4(a), None) => self.dest_v4()?.remove(&Key::new(len, a.octets())),
            (IpAddr::V6(a), None) => self.dest_v6()?.remove(&Key::new(len, a.octets())),
        };
        match result {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) if policy.is_none() => Ok(()),
            Err(e) => Err(explain_map_error(e)),
        }
    }

    /// Writes (`Some`) or removes (`None`) the name record of a policy id; removing one that
    /// is not there is no error.
    pub(super) fn put_dest_info(&self, id: u32, info: Option<DestInfo>) -> anyhow::Result<()> {
        let mut map = self.dest_info()?;
        let result = match info {
            Some(i) => map.insert(id, i, 0),
            None => map.remove(&id),
        };
        match result {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) if info.is_none() => Ok(()),
            Err(e) => Err(explain_map_error(e)),
        }
    }

    /// Makes `policy`'s SIP domains exactly `names` (normalized): the new ones first, then
    /// the old ones go, so a request to a name in both sets is never refused on the way.
    pub(super) fn set_domains(&self, policy: u32, names: &[String]) -> anyhow::Result<()> {
        let old = self.declared_domains()?.remove(&policy).unwrap_or_default();
        self.change_domains(policy, &old, names)
    }

    /// [`Self::set_domains`] for a caller that read the current set (`old`) already: a bulk
    /// change then reads the map once, not once per policy.
    pub(super) fn change_domains(
        &self,
        policy: u32,
        old: &[String],
        names: &[String],
    ) -> anyhow::Result<()> {
        let key = |name: &str| DomainKey::new(policy, name.len(), domain_hash(name.as_bytes()));
        let mut map = self.domains()?;
        for name in names.iter().filter(|n| !old.contains(n)) {
            let mut value = DomainName { len: 0, name: [0; MAX_DOMAIN_LEN] };
            value.name[..name.len()].copy_from_slice(name.as_bytes());
            value.len = u8::try_from(name.len()).context("a SIP domain too long")?;
            map.insert(key(name), value, 0)
                .map_err(explain_map_error)
                .with_context(|| format!("declaring the SIP domain {name}"))?;
        }
        for name in old.iter().filter(|n| !names.contains(n)) {
            match map.remove(&key(name)) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => {
                    return Err(explain_map_error(e))
                        .with_context(|| format!("removing the SIP domain {name}"));
                }
            }
        }
        Ok(())
    }
}
