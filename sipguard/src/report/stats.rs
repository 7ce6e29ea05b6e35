//! Counter snapshots: summed per-CPU slots turned into named totals.

use std::{collections::BTreeMap, fmt::Write as _};

use sipguard_common::{
    counters::{Misc, PayloadClass, Reason, Verdict, decision_origin_slot, method_slot},
    decisions::Origin,
    sip::Method,
};

use crate::kernel::maps::PinnedMaps;

/// The counters at one moment. Serialises as the `stats --json` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Packets passed, including those monitor mode let through.
    pub passed: u64,
    pub dropped: u64,
    /// Packets by reason. A drop reason that monitor mode turned into a pass appears as
    /// `monitor_<reason>`. The values add up to `passed + dropped`.
    pub reasons: BTreeMap<String, u64>,
    /// What SIP-port payloads looked like (only for packets whose payload was examined).
    pub payload: BTreeMap<String, u64>,
    /// SIP requests by method (a subset of `payload.sip_request`).
    pub methods: BTreeMap<String, u64>,
    /// Events sent and suppressed, bans added, messages inspected.
    pub counters: BTreeMap<String, u64>,
    /// Packets the decisions of the fleet's store dropped, by the decision's origin (origins
    /// with none are left out).
    pub decision_drops: BTreeMap<String, u64>,
    /// Hits per installed signature (signatures with none are left out).
    pub signatures: BTreeMap<String, u64>,
    /// Sources banned right now.
    pub bans_active: u64,
    /// Sources the ban table holds at most.
    pub ban_capacity: u64,
    /// Protected destinations with the most drops (at most [`TOP_DESTINATIONS`]).
    pub top_destinations: Vec<DestinationDrops>,
}

/// How many destinations `stats` lists.
pub const TOP_DESTINATIONS: usize = 10;

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DestinationDrops {
    pub destination: String,
    pub name: Option<String>,
    pub dropped: u64,
}

/// Name under which a monitored (would-drop) reason is reported.
#[must_use]
pub fn monitor_name(reason: Reason) -> String {
    format!("monitor_{}", reason.name())
}

impl Snapshot {
    /// Builds a snapshot from the summed counter slots.
    #[must_use]
    pub fn from_counters(slots: &[u64]) -> Self {
        let at = |slot: u32| slots.get(slot as usize).copied().unwrap_or(0);
        let mut s = Snapshot::default();
        for reason in Reason::ALL {
            let n = at(reason.slot(false));
            s.reasons.insert(reason.name().to_owned(), n);
            match reason.verdict() {
                Verdict::Pass => s.passed += n,
                Verdict::Drop => {
                    s.dropped += n;
                    let m = at(reason.slot(true));
                    s.reasons.insert(monitor_name(reason), m);
                    s.passed += m;
                }
            }
        }
        for class in PayloadClass::ALL {
            s.payload.insert(class.name().to_owned(), at(class.slot()));
        }
        for method in Method::ALL {
            let n = at(method_slot(method));
            if n > 0 {
                s.methods.insert(method.name().to_owned(), n);
            }
        }
        for m in Misc::ALL {
            s.counters.insert(m.name().to_owned(), at(m.slot()));
        }
        for origin in Origin::ALL {
            let n = at(decision_origin_slot(origin as u8));
            if n > 0 {
                s.decision_drops.insert(origin.name().to_owned(), n);
            }
        }
        s
    }

    /// Reads everything: counters, signature hits, active bans.
    pub fn read(maps: &PinnedMaps) -> anyhow::Result<Self> {
        let mut s = Self::from_counters(&maps.counters()?);
        let hits = maps.sig_hits()?;
        for (slot, sig) in crate::state::sigset::installed(maps)? {
            let n = hits[usize::from(slot)];
            if n > 0 {
                s.signatures.insert(sig.name, n);
            }
        }
        s.bans_active = crate::state::bans::list(maps)?.len() as u64;
        s.ban_capacity = u64::from(maps.capacity(sipguard_common::maps::BANS)?);
        s.top_destinations = top_destinations(maps, TOP_DESTINATIONS)?;
        Ok(s)
    }

    #[must_use]
    pub fn total(&self) -> u64 {
        self.passed + self.dropped
    }

    /// Counter-wise difference `self - earlier` (for rates).
    #[must_use]
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let diff = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(then.get(k).copied().unwrap_or(0))))
                .collect()
        };
        Snapshot {
            passed: self.passed.saturating_sub(earlier.passed),
            dropped: self.dropped.saturating_sub(earlier.dropped),
            reasons: diff(&self.reasons, &earlier.reasons),
            payload: diff(&self.payload, &earlier.payload),
            methods: diff(&self.methods, &earlier.methods),
            counters: diff(&self.counters, &earlier.counters),
            decision_drops: diff(&self.decision_drops, &earlier.decision_drops),
            signatures: diff(&self.signatures, &earlier.signatures),
            bans_active: self.bans_active,
            ban_capacity: self.ban_capacity,
            top_destinations: self.top_destinations.clone(),
        }
    }

    /// One line for logs: totals and the non-zero drop reasons.
    #[must_use]
    pub fn summary_line(&self) -> String {
        let mut line = format!("passed {} dropped {}", self.passed, self.dropped);
        for reason in Reason::ALL.iter().filter(|r| r.verdict() == Verdict::Drop) {
            for name in [reason.name().to_owned(), monitor_name(*reason)] {
                if let Some(n) = self.reasons.get(&name).filter(|n| **n > 0) {
                    write!(line, " {name}={n}").ok();
                }
            }
        }
        line
    }

    /// A human-readable table; `rate_secs` turns counts into per-second rates.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "rates are rounded for display anyway")]
    pub fn table(&self, rate: Option<&(Snapshot, f64)>) -> String {
        let mut out = String::new();
        let rate_of = |pick: &dyn Fn(&Snapshot) -> u64| match rate {
            Some((delta, secs)) => format!("{:>12.1}/s", pick(delta) as f64 / secs),
            None => String::new(),
        };
        writeln!(out, "{:<24} {:>14}{}", "passed", self.passed, rate_of(&|s| s.passed)).ok();
        writeln!(out, "{:<24} {:>14}{}", "dropped", self.dropped, rate_of(&|s| s.dropped)).ok();
        writeln!(out, "\n{:<24} {:<8} {:>14}", "REASON", "VERDICT", "PACKETS").ok();
        for reason in Reason::ALL {
            let verdict = match reason.verdict() {
                Verdict::Pass => "pass",
                Verdict::Drop => "drop",
            };
            let name = reason.name();
            let n = self.reasons.get(name).copied().unwrap_or(0);
            writeln!(
                out,
                "{name:<24} {verdict:<8} {n:>14}{}",
                rate_of(&|s| s.reasons.get(name).copied().unwrap_or(0))
            )
            .ok();
            if reason.verdict() == Verdict::Drop {
                let mname = monitor_name(reason);
                let m = self.reasons.get(&mname).copied().unwrap_or(0);
                if m > 0 {
                    writeln!(
                        out,
                        "{mname:<24} {:<8} {m:>14}{}",
                        "pass",
                        rate_of(&|s| s.reasons.get(&mname).copied().unwrap_or(0))
                    )
                    .ok();
                }
            }
        }
        writeln!(out, "\n{:<24} {:>23}", "PAYLOAD (examined)", "PACKETS").ok();
        for class in PayloadClass::ALL {
            let n = self.payload.get(class.name()).copied().unwrap_or(0);
            writeln!(out, "{:<24} {n:>23}", class.name()).ok();
        }
        if !self.methods.is_empty() {
            let methods: Vec<String> =
                self.methods.iter().map(|(m, n)| format!("{m} {n}")).collect();
            writeln!(out, "{:<24} {}", "requests by method", methods.join(", ")).ok();
        }
        out
    }
}

/// Protected destinations by drops, most first, only those with any.
pub fn top_destinations(maps: &PinnedMaps, n: usize) -> anyhow::Result<Vec<DestinationDrops>> {
    let dests = crate::state::protect::all(maps)?;
    if dests.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for d in dests {
        let dropped = maps.dest_drops_of(d.id)?;
        if dropped > 0 {
            out.push(DestinationDrops { destination: d.cidr.to_string(), name: d.name, dropped });
        }
    }
    out.sort_by(|a, b| b.dropped.cmp(&a.dropped).then(a.destination.cmp(&b.destination)));
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use sipguard_common::counters::COUNTER_SLOTS;

    use super::*;

    #[test]
    fn totals_add_up_including_monitored_drops() {
        let mut slots = vec![0u64; COUNTER_SLOTS as usize];
        slots[Reason::NotSipPort.slot(false) as usize] = 10;
        slots[Reason::Blocklisted.slot(false) as usize] = 3;
        slots[Reason::DefaultDrop.slot(true) as usize] = 4;
        slots[PayloadClass::SipRequest.slot() as usize] = 2;
        slots[method_slot(Method::Options) as usize] = 2;
        let s = Snapshot::from_counters(&slots);
        assert_eq!(s.passed, 14);
        assert_eq!(s.dropped, 3);
        assert_eq!(s.reasons.values().sum::<u64>(), s.total());
        assert_eq!(s.reasons["monitor_default_drop"], 4);
        assert_eq!(s.methods["OPTIONS"], 2);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["passed"], 14);
        assert_eq!(json["reasons"]["blocklisted"], 3);
    }

    #[test]
    fn since_subtracts() {
        let mut slots = vec![0u64; COUNTER_SLOTS as usize];
        slots[Reason::Blocklisted.slot(false) as usize] = 3;
        let a = Snapshot::from_counters(&slots);
        slots[Reason::Blocklisted.slot(false) as usize] = 10;
        let b = Snapshot::from_counters(&slots);
        assert_eq!(b.since(&a).dropped, 7);
        assert!(b.table(Some(&(b.since(&a), 2.0))).contains("3.5/s"));
    }
}
