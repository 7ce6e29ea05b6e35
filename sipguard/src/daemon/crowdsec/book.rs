//! What the Local API has decided, as the bouncer keeps it: every decision by id, and per
//! prefix the one the kernel enforces (the longest-lived). Two decisions may name one prefix
//! (a `cscli` ban on an address the community list holds too): deleting one must leave the
//! other in force.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use sipguard_common::decisions::{Origin, UNPROVEN_TYPE};

use super::duration;
use crate::{cidr::Cidr, state::decisions::Enforced};

/// One decision as `/v1/decisions/stream` sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct Wire {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub scope: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub value: String,
}

/// An answer of `/v1/decisions/stream`.
#[derive(Debug, Default, Deserialize)]
pub struct Stream {
    #[serde(default)]
    pub new: Option<Vec<Wire>>,
    #[serde(default)]
    pub deleted: Option<Vec<Wire>>,
}

/// Which decisions to enforce (the `[crowdsec]` table's `origins` and `scenarios`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Origins to enforce (CrowdSec's names, any case); empty: all.
    pub origins: Vec<String>,
    /// Enforce only decisions whose scenario contains one of these; empty: all.
    pub scenarios: Vec<String>,
}

impl Filters {
    fn admits(&self, w: &Wire) -> bool {
        (self.origins.is_empty() || self.origins.iter().any(|o| o.eq_ignore_ascii_case(&w.origin)))
            && (self.scenarios.is_empty()
                || self.scenarios.iter().any(|s| w.scenario.contains(s.as_str())))
    }
}

/// Why a decision of the stream is not enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skipped {
    /// Neither a `ban` nor a sipguard edge's unproven ban (a captcha, a throttle): nothing XDP
    /// can do.
    NotBan,
    /// Neither `Ip` nor `Range` (a country, an AS, a user name).
    Scope,
    /// The value is no address or prefix.
    Value,
    /// The duration is unreadable, or already over.
    Duration,
    /// The origin and scenario filters leave it out.
    Filtered,
}

/// Who holds a decision on a prefix.
#[derive(Debug, Clone)]
struct Held {
    cidr: Cidr,
    expires_ns: u64,
    origin: Origin,
    scenario: String,
    /// A `ban`, not a sipguard edge's unproven one (`UNPROVEN_TYPE`).
    proven: bool,
}

/// The decisions in force.
#[derive(Debug, Default)]
pub struct Book {
    by_id: HashMap<Key, Held>,
    by_cidr: BTreeMap<Cidr, Vec<Key>>,
}

/// A decision's identity: its id, or without one what it says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(i64),
    Value(Cidr, String, String),
}

/// The prefix a decision names: `Ip` or `Range` in either case, IPv4 or IPv6, `/32` forms
/// included (host bits of a range are cleared, as the API does not always).
pub fn prefix(scope: &str, value: &str) -> Result<Cidr, Skipped> {
    if !(scope.eq_ignore_ascii_case("ip") || scope.eq_ignore_ascii_case("range")) {
        return Err(Skipped::Scope);
    }
    let value = value.trim();
    let (addr, len) = match value.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (value, None),
    };
    let addr: std::net::IpAddr = addr.parse().map_err(|_| Skipped::Value)?;
    let len = match len {
        Some(l) => l.parse::<u8>().map_err(|_| Skipped::Value)?,
        None if addr.is_ipv4() => 32,
        None => 128,
    };
    Cidr::new_truncating(addr, len).ok_or(Skipped::Value)
}

fn key_of(w: &Wire, cidr: Cidr) -> Key {
    w.id.map_or_else(|| Key::Value(cidr, w.origin.clone(), w.scenario.clone()), Key::Id)
}

impl Book {
    /// Takes a decision of the stream's `new` part; `now_ns` is when the answer came.
    pub fn add(&mut self, w: &Wire, filters: &Filters, now_ns: u64) -> Result<Cidr, Skipped> {
        let proven = w.kind.eq_ignore_ascii_case("ban");
        if !proven && !w.kind.eq_ignore_ascii_case(UNPROVEN_TYPE) {
            return Err(Skipped::NotBan);
        }
        let cidr = prefix(&w.scope, &w.value)?;
        if !filters.admits(w) {
            return Err(Skipped::Filtered);
        }
        let left =
            w.duration.as_deref().and_then(|d| duration::parse(d).ok()).ok_or(Skipped::Duration)?;
        if left <= 0 {
            return Err(Skipped::Duration);
        }
        let expires_ns = u64::try_from(i128::from(now_ns) + left).unwrap_or(u64::MAX);
        let key = key_of(w, cidr);
        if let Some(old) = self.by_id.insert(
            key.clone(),
            Held {
                cidr,
                expires_ns,
                origin: Origin::parse(&w.origin),
                scenario: w.scenario.clone(),
                proven,
            },
        ) {
            self.unlink(&key, old.cidr);
        }
        self.by_cidr.entry(cidr).or_default().push(key);
        Ok(cidr)
    }

    /// Takes a decision of the stream's `deleted` part; returns the prefix it named, if the
    /// book held it.
    pub fn delete(&mut self, w: &Wire) -> Option<Cidr> {
        let cidr = prefix(&w.scope, &w.value).ok();
        let key = match (w.id, cidr) {
            (Some(id), _) => Key::Id(id),
            (None, Some(c)) => Key::Value(c, w.origin.clone(), w.scenario.clone()),
            (None, None) => return None,
        };
        let held = self.by_id.remove(&key)?;
        self.unlink(&key, held.cidr);
        Some(held.cidr)
    }

    fn unlink(&mut self, key: &Key, cidr: Cidr) {
        if let Some(keys) = self.by_cidr.get_mut(&cidr) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_cidr.remove(&cidr);
            }
        }
    }

    /// What the kernel should enforce on `cidr`: the longest-lived decision, or none; it is
    /// enforced unconditionally while any proven decision holds the prefix.
    #[must_use]
    pub fn enforced(&self, cidr: &Cidr) -> Option<Enforced> {
        let held = self.longest(cidr)?;
        let proven = self
            .by_cidr
            .get(cidr)
            .is_some_and(|keys| keys.iter().filter_map(|k| self.by_id.get(k)).any(|h| h.proven));
        Some(Enforced {
            cidr: held.cidr,
            expires_ns: held.expires_ns,
            origin: held.origin,
            scenario: held.scenario.clone(),
            proven,
        })
    }

    /// Everything to enforce.
    #[must_use]
    pub fn all(&self) -> Vec<Enforced> {
        self.by_cidr.keys().filter_map(|c| self.enforced(c)).collect()
    }

    /// Forgets decisions over by `now_ns`; returns the prefixes no decision holds any more.
    pub fn expire(&mut self, now_ns: u64) -> Vec<Cidr> {
        let over: Vec<Key> = self
            .by_id
            .iter()
            .filter(|(_, h)| h.expires_ns <= now_ns)
            .map(|(k, _)| k.clone())
            .collect();
        let mut freed = Vec::new();
        for key in over {
            if let Some(h) = self.by_id.remove(&key) {
                self.unlink(&key, h.cidr);
                if !self.by_cidr.contains_key(&h.cidr) {
                    freed.push(h.cidr);
                }
            }
        }
        freed
    }

    /// The longest-lived decision on `cidr`.
    fn longest(&self, cidr: &Cidr) -> Option<&Held> {
        self.by_cidr
            .get(cidr)?
            .iter()
            .filter_map(|k| self.by_id.get(k))
            .max_by_key(|h| h.expires_ns)
    }

    /// Prefixes enforced, by origin (of the decision enforced on each).
    #[must_use]
    pub fn by_origin(&self) -> [u32; 8] {
        let mut counts = [0u32; 8];
        for held in self.by_cidr.keys().filter_map(|c| self.longest(c)) {
            counts[held.origin as usize] += 1;
        }
        counts
    }

    /// Prefixes enforced (IPv4, IPv6).
    #[must_use]
    pub fn families(&self) -> (usize, usize) {
        let v4 = self.by_cidr.keys().filter(|c| c.is_ipv4()).count();
        (v4, self.by_cidr.len() - v4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn wire(id: i64, value: &str, scope: &str, duration: &str) -> Wire {
        Wire {
            id: Some(id),
            duration: Some(duration.into()),
            origin: "cscli".into(),
            scenario: "manual 'ban' from 'x'".into(),
            scope: scope.into(),
            kind: "ban".into(),
            value: value.into(),
        }
    }

    #[test]
    fn reads_ips_and_ranges_in_either_case_and_family() {
        assert_eq!(prefix("Ip", "198.51.100.7").unwrap().to_string(), "198.51.100.7/32");
        assert_eq!(prefix("ip", "198.51.100.7/32").unwrap().to_string(), "198.51.100.7/32");
        assert_eq!(prefix("Range", "203.0.113.0/24").unwrap().to_string(), "203.0.113.0/24");
        assert_eq!(prefix("range", "203.0.113.9/24").unwrap().to_string(), "203.0.113.0/24");
        assert_eq!(prefix("Ip", "2001:db8::7").unwrap().to_string(), "2001:db8::7/128");
        assert_eq!(prefix("Range", "2001:db8:1::/48").unwrap().to_string(), "2001:db8:1::/48");
        assert_eq!(prefix("Country", "FR"), Err(Skipped::Scope));
        assert_eq!(prefix("Ip", "not an address"), Err(Skipped::Value));
        assert_eq!(prefix("Range", "10.0.0.0/33"), Err(Skipped::Value));
    }

    #[test]
    fn the_longest_lived_decision_on_a_prefix_is_enforced_and_survives_the_other() {
        let mut book = Book::default();
        let f = Filters::default();
        book.add(&wire(1, "192.0.2.1", "Ip", "10s"), &f, 0).unwrap();
        book.add(&wire(2, "192.0.2.1/32", "Ip", "1h"), &f, 0).unwrap();
        let c = prefix("Ip", "192.0.2.1").unwrap();
        assert_eq!(book.enforced(&c).unwrap().expires_ns, 3600 * S);
        assert_eq!(book.delete(&wire(2, "192.0.2.1", "Ip", "-1s")), Some(c));
        assert_eq!(book.enforced(&c).unwrap().expires_ns, 10 * S, "the other one holds");
        assert_eq!(book.delete(&wire(1, "192.0.2.1", "Ip", "-1s")), Some(c));
        assert!(book.enforced(&c).is_none());
        assert_eq!(book.delete(&wire(1, "192.0.2.1", "Ip", "-1s")), None, "twice is nothing");
    }

    #[test]
    fn an_unproven_ban_is_enforced_with_judgement_until_a_proven_one_holds_the_prefix() {
        let mut book = Book::default();
        let f = Filters::default();
        let unproven = Wire { kind: UNPROVEN_TYPE.into(), ..wire(1, "192.0.2.1", "Ip", "1h") };
        let c = book.add(&unproven, &f, 0).unwrap();
        assert!(!book.enforced(&c).unwrap().proven);
        book.add(&wire(2, "192.0.2.1", "Ip", "10s"), &f, 0).unwrap();
        let e = book.enforced(&c).unwrap();
        assert_eq!((e.proven, e.expires_ns), (true, 3600 * S), "proven, for the longer time");
        book.delete(&wire(2, "192.0.2.1", "Ip", "-1s"));
        assert!(!book.enforced(&c).unwrap().proven);
    }

    #[test]
    fn skips_what_xdp_cannot_enforce_or_the_filters_leave_out() {
        let mut book = Book::default();
        let mut captcha = wire(1, "192.0.2.1", "Ip", "1h");
        captcha.kind = "captcha".into();
        assert_eq!(book.add(&captcha, &Filters::default(), 0), Err(Skipped::NotBan));
        assert_eq!(
            book.add(&wire(2, "192.0.2.1", "Ip", "-2s"), &Filters::default(), 0),
            Err(Skipped::Duration)
        );
        assert_eq!(
            book.add(&wire(3, "192.0.2.1", "Ip", "soon"), &Filters::default(), 0),
            Err(Skipped::Duration)
        );
        let only_capi = Filters { origins: vec!["capi".into()], scenarios: vec![] };
        assert_eq!(
            book.add(&wire(4, "192.0.2.1", "Ip", "1h"), &only_capi, 0),
            Err(Skipped::Filtered)
        );
        let sip = Filters { origins: vec![], scenarios: vec!["sip".into()] };
        assert_eq!(book.add(&wire(5, "192.0.2.1", "Ip", "1h"), &sip, 0), Err(Skipped::Filtered));
        let mut scan = wire(6, "192.0.2.1", "Ip", "1h");
        scan.scenario = "sipguard/signature".into();
        assert!(book.add(&scan, &sip, 0).is_ok());
        assert_eq!(book.by_origin()[Origin::Cscli as usize], 1);
    }

    #[test]
    fn expiry_frees_prefixes_no_decision_holds() {
        let mut book = Book::default();
        let f = Filters::default();
        book.add(&wire(1, "192.0.2.1", "Ip", "10s"), &f, 0).unwrap();
        book.add(&wire(2, "192.0.2.1", "Ip", "20s"), &f, 0).unwrap();
        book.add(&wire(3, "2001:db8::/32", "Range", "10s"), &f, 0).unwrap();
        assert_eq!(book.families(), (1, 1));
        let freed = book.expire(15 * S);
        assert_eq!(freed, vec![prefix("Range", "2001:db8::/32").unwrap()]);
        assert!(book.enforced(&prefix("Ip", "192.0.2.1").unwrap()).is_some());
        assert_eq!(book.expire(25 * S).len(), 1);
        assert_eq!(book.families(), (0, 0));
    }
}
