//! The decision list in the kernel (`sipguard_common::decisions`): what the bouncer writes
//! and `decisions list` reads. Only `run`'s bouncer writes it; the operator's lists and the
//! bans are never touched here.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context as _, bail};
use sipguard_common::decisions::{
    DECISION_UNPROVEN, Decision, DecisionSet, Origin, SCENARIO_NAME_LEN, ScenarioName, scenario_key,
};

use crate::{
    cidr::Cidr,
    kernel::{
        maps::{PinnedMaps, TaggedTries},
        sys::monotonic_ns,
    },
};

/// One decision as the kernel enforces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforced {
    pub cidr: Cidr,
    /// `CLOCK_MONOTONIC` ns.
    pub expires_ns: u64,
    pub origin: Origin,
    pub scenario: String,
    /// Whether it stands on proven evidence (any decision but a sipguard edge's unproven
    /// ban, `sipguard_common::decisions::UNPROVEN_TYPE`): enforced whatever this edge knows
    /// of the source.
    pub proven: bool,
}

/// A decision as `decisions list` shows it.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub value: Cidr,
    pub origin: &'static str,
    pub scenario: String,
    pub expires_in_secs: u64,
    /// False for a sipguard edge's unproven ban: not enforced on a source with standing here.
    pub proven: bool,
}

/// The decision tries, their live generation and the scenario names, opened once.
pub struct DecisionList {
    tries: TaggedTries<Decision>,
    maps: PinnedMaps,
}

impl DecisionList {
    pub fn open(maps: &PinnedMaps) -> anyhow::Result<Self> {
        Ok(Self { tries: maps.decision_tries()?, maps: maps.clone() })
    }

    fn insert(&mut self, generation: u8, e: &Enforced) -> anyhow::Result<()> {
        let value = Decision {
            expires_ns: e.expires_ns,
            scenario: scenario_key(&e.scenario),
            origin: e.origin as u8,
            flags: if e.proven { 0 } else { DECISION_UNPROVEN },
            reserved: [0; 2],
        };
        self.tries
            .put(u32::from(generation), &e.cidr, value)
            .with_context(|| format!("enforcing a decision on {}", e.cidr))
    }

    fn delete(&mut self, generation: u8, cidr: &Cidr) -> anyhow::Result<bool> {
        self.tries
            .remove(u32::from(generation), cidr)
            .with_context(|| format!("lifting the decision on {cidr}"))
    }

    /// Every prefix stored under `generation`.
    fn stored(&self, generation: u8) -> anyhow::Result<Vec<(Cidr, Decision)>> {
        let mut out = Vec::new();
        for item in &self.tries.v4 {
            let (key, value) = item.context("reading the IPv4 decisions")?;
            push_stored(&mut out, generation, key.prefix_len(), &key.data(), value);
        }
        for item in &self.tries.v6 {
            let (key, value) = item.context("reading the IPv6 decisions")?;
            push_stored(&mut out, generation, key.prefix_len(), &key.data(), value);
        }
        Ok(out)
    }

    fn name_scenarios<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let Ok(mut map) = self.maps.scenarios() else { return };
        for name in names {
            let key = scenario_key(name);
            if map.get(&key, 0).is_ok() {
                continue;
            }
            let mut value = ScenarioName { len: 0, name: [0; SCENARIO_NAME_LEN] };
            let bytes = cut(name, SCENARIO_NAME_LEN).as_bytes();
            value.name[..bytes.len()].copy_from_slice(bytes);
            value.len = u32::try_from(bytes.len()).unwrap_or(0);
            // A full name map costs `decisions list` a name, never a decision.
            if let Err(e) = map.insert(key, value, 0) {
                log::debug!("scenario name {name:?} not kept: {e}");
            }
        }
    }

    /// Replaces the whole set: the other generation is written, then made live, then the
    /// old one is cleared. A failure leaves the set in force as it was.
    pub fn replace(&mut self, entries: &[Enforced]) -> anyhow::Result<()> {
        let live = self.maps.decision_set()?;
        let next = (live.generation ^ 1) & 1;
        // Leftovers of an interrupted replacement.
        self.clear(next)?;
        self.name_scenarios(entries.iter().map(|e| e.scenario.as_str()));
        for (i, e) in entries.iter().enumerate() {
            if let Err(err) = self.insert(next, e) {
                if let Err(undo) = self.clear(next) {
                    log::warn!("clearing a failed replacement of the decisions: {undo:#}");
                }
                return Err(err).with_context(|| {
                    format!(
                        "after {i} of {} decisions; the decisions in force are kept",
                        entries.len()
                    )
                });
            }
        }
        self.maps.set_decision_set(DecisionSet {
            generation: next,
            active: u8::from(!entries.is_empty()),
            reserved: [0; 6],
        })?;
        self.clear(live.generation & 1)?;
        self.forget_unused_scenarios(entries);
        Ok(())
    }

    /// Adds or updates one decision in the live set.
    pub fn put(&mut self, e: &Enforced) -> anyhow::Result<()> {
        let mut live = self.maps.decision_set()?;
        self.name_scenarios([e.scenario.as_str()]);
        self.insert(live.generation & 1, e)?;
        if live.active == 0 {
            live.active = 1;
            self.maps.set_decision_set(live)?;
        }
        Ok(())
    }

    /// Lifts the decision on `cidr`; `Ok(false)` when there was none.
    pub fn remove(&mut self, cidr: &Cidr) -> anyhow::Result<bool> {
        let live = self.maps.decision_set()?;
        self.delete(live.generation & 1, cidr)
    }

    fn clear(&mut self, generation: u8) -> anyhow::Result<()> {
        for (cidr, _) in self.stored(generation)? {
            self.delete(generation, &cidr)?;
        }
        Ok(())
    }

    fn forget_unused_scenarios(&self, entries: &[Enforced]) {
        let used: BTreeSet<u32> = entries.iter().map(|e| scenario_key(&e.scenario)).collect();
        let Ok(mut map) = self.maps.scenarios() else { return };
        let stale: Vec<u32> =
            map.keys().filter_map(Result::ok).filter(|k| !used.contains(k)).collect();
        for k in stale {
            map.remove(&k).ok();
        }
    }

    /// The live decisions in force now (expired ones the sweep has not removed are left
    /// out), longest-lived first.
    pub fn list(&self) -> anyhow::Result<Vec<Listed>> {
        let live = self.maps.decision_set()?;
        let names = self.maps.scenarios()?;
        let now = monotonic_ns();
        let mut out: Vec<Listed> = self
            .stored(live.generation & 1)?
            .into_iter()
            .filter(|(_, d)| d.expires_ns > now)
            .map(|(cidr, d)| Listed {
                value: cidr,
                origin: Origin::from_u8(d.origin).name(),
                scenario: names.get(&d.scenario, 0).map(|n| name_of(&n)).unwrap_or_default(),
                expires_in_secs: Duration::from_nanos(d.expires_ns - now).as_secs(),
                proven: d.flags & DECISION_UNPROVEN == 0,
            })
            .collect();
        out.sort_by(|a, b| b.expires_in_secs.cmp(&a.expires_in_secs).then(a.value.cmp(&b.value)));
        Ok(out)
    }

    /// The live decision that covers `addr` (a range counts), as the program would find it:
    /// `Some(proven)`, or `None` when no live decision does.
    pub fn cover(&self, addr: std::net::IpAddr) -> anyhow::Result<Option<bool>> {
        let live = self.maps.decision_set()?;
        if live.active == 0 {
            return Ok(None);
        }
        let cidr = Cidr::new_truncating(addr, if addr.is_ipv4() { 32 } else { 128 })
            .context("an address is a full-length prefix")?;
        let found = self.tries.longest_match(u32::from(live.generation & 1), &cidr);
        Ok(found
            .filter(|d| d.expires_ns > monotonic_ns())
            .map(|d| d.flags & DECISION_UNPROVEN == 0))
    }

    /// Removes the expired entries of the live set; returns how many.
    pub fn sweep(&mut self) -> anyhow::Result<usize> {
        let live = self.maps.decision_set()?;
        let now = monotonic_ns();
        let mut gone = 0;
        for (cidr, d) in self.stored(live.generation & 1)? {
            if d.expires_ns <= now && self.delete(live.generation & 1, &cidr)? {
                gone += 1;
            }
        }
        Ok(gone)
    }
}

fn push_stored(
    out: &mut Vec<(Cidr, Decision)>,
    generation: u8,
    prefix_len: u32,
    key: &[u8],
    value: Decision,
) {
    if let Some((tag, cidr)) = Cidr::from_key(prefix_len, key)
        && tag == u32::from(generation)
    {
        out.push((cidr, value));
    }
}

fn name_of(n: &ScenarioName) -> String {
    let len = (n.len as usize).min(SCENARIO_NAME_LEN);
    String::from_utf8_lossy(&n.name[..len]).into_owned()
}

/// `s` cut to at most `max` bytes, on a character boundary.
#[must_use]
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Refuses a sync that cannot be double-buffered (see `DECISION_CAPACITY`).
pub fn check_capacity(maps: &PinnedMaps, v4: usize, v6: usize) -> anyhow::Result<()> {
    use sipguard_common::maps as names;
    for (name, n) in [(names::DECISIONS_V4, v4), (names::DECISIONS_V6, v6)] {
        let cap = maps.capacity(name)? as usize;
        if n > cap / 2 {
            bail!(
                "{n} decisions are more than half of {name}'s {cap} entries (a full sync is written beside the set in force); the decisions in force are kept"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn names_are_cut_on_character_boundaries() {
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("abc", 10), "abc");
    }
}
