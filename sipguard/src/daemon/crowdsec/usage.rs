//! Usage metrics for the Local API (`POST /v1/usage-metrics`, CrowdSec 1.6 and later), in the
//! shape CrowdSec's own bouncers send: per window, the packets the decisions of each origin
//! dropped, the packets judged, and the decisions in force by origin. `cscli metrics` and
//! the console show them beside the other bouncers'.
//!
//! An API without the endpoint answers 404: there reports are `unsupported`, said once in the
//! log, and nothing else changes; they are tried again each interval, in case the API is
//! upgraded. A window's counts stay until a report is taken, so a failed send loses none: the
//! next report covers the longer window and says so.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sipguard_common::decisions::{Origin, UsageOutcome};

use super::http::{Refused, USER_AGENT};
use crate::report::stats::Snapshot;

/// The counters a report is made of, cumulative since the filter was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets judged (passed or dropped).
    pub processed: u64,
    /// Packets dropped by decisions, by [`Origin`].
    pub dropped: [u64; 8],
}

impl Counts {
    #[must_use]
    pub fn of(s: &Snapshot) -> Self {
        let mut dropped = [0; 8];
        for o in Origin::ALL {
            dropped[o as usize] = s.decision_drops.get(o.name()).copied().unwrap_or(0);
        }
        Self { processed: s.total(), dropped }
    }
}

/// What moved since `then`. A counter below its earlier value was reset (the filter was
/// created anew): all of it is new.
fn moved(now: u64, then: u64) -> u64 {
    if now >= then { now - then } else { now }
}

/// The reports' state: where the current window starts, and how the last report went.
#[derive(Debug)]
pub struct Usage {
    started_unix: u64,
    since: Counts,
    since_at: Instant,
    os: (String, String),
    pub sent: u64,
    pub outcome: UsageOutcome,
}

impl Usage {
    /// Starts the first window at `counts`.
    #[must_use]
    pub fn new(counts: Counts, started_unix: u64) -> Self {
        Self {
            started_unix,
            since: counts,
            since_at: Instant::now(),
            os: os(),
            sent: 0,
            outcome: UsageOutcome::NotYet,
        }
    }

    /// The report of the window from the last one taken to `now`.
    #[must_use]
    pub fn payload(&self, now: &Counts, active: [u32; 8], now_unix: u64) -> Value {
        window_payload(&Report {
            started_unix: self.started_unix,
            length: self.since_at.elapsed(),
            now_unix,
            then: &self.since,
            now,
            active,
            os: (&self.os.0, &self.os.1),
        })
    }

    /// Records how the report of the window up to `now` went; a report the API took starts
    /// the next window. Logs a change of outcome, not every repeat.
    pub fn settle(&mut self, result: &anyhow::Result<()>, now: Counts) {
        let outcome = match result {
            Ok(()) => UsageOutcome::Sent,
            Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404) => {
                UsageOutcome::Unsupported
            }
            Err(_) => UsageOutcome::Failed,
        };
        if outcome != self.outcome {
            match (outcome, result) {
                (UsageOutcome::Sent, _) => log::info!("crowdsec: usage metrics sent"),
                (UsageOutcome::Unsupported, _) => log::info!(
                    "crowdsec: the Local API takes no usage metrics (404: older than 1.6); tried again each interval"
                ),
                (_, Err(e)) => log::warn!("crowdsec: usage metrics: {e:#}; the counts wait"),
                _ => {}
            }
        }
        self.outcome = outcome;
        if outcome == UsageOutcome::Sent {
            self.sent += 1;
            self.since = now;
            self.since_at = Instant::now();
        }
    }
}

/// One report's inputs.
struct Report<'a> {
    started_unix: u64,
    length: Duration,
    now_unix: u64,
    then: &'a Counts,
    now: &'a Counts,
    active: [u32; 8],
    os: (&'a str, &'a str),
}

fn window_payload(w: &Report<'_>) -> Value {
    let mut items = Vec::new();
    for o in Origin::ALL {
        let dropped = moved(w.now.dropped[o as usize], w.then.dropped[o as usize]);
        if dropped > 0 {
            items.push(json!({
                "name": "dropped", "value": dropped, "unit": "packet",
                "labels": {"origin": o.name(), "remediation": "ban"},
            }));
        }
    }
    items.push(json!({
        "name": "processed", "value": moved(w.now.processed, w.then.processed), "unit": "packet",
    }));
    for o in Origin::ALL {
        let active = w.active[o as usize];
        if active > 0 {
            items.push(json!({
                "name": "active_decisions", "value": active, "unit": "ip",
                "labels": {"origin": o.name()},
            }));
        }
    }
    let (kind, version) = USER_AGENT.split_once('/').unwrap_or((USER_AGENT, ""));
    json!({"remediation_components": [{
        "type": kind,
        "version": version,
        "os": {"name": w.os.0, "version": w.os.1},
        "feature_flags": [],
        "utc_startup_timestamp": w.started_unix,
        "metrics": [{
            "meta": {
                // At least a second: the API refuses an empty window.
                "window_size_seconds": w.length.as_secs().max(1),
                "utc_now_timestamp": w.now_unix,
            },
            "items": items,
        }],
    }]})
}

/// The distribution and its version (`/etc/os-release`), or the kernel's when it has none.
fn os() -> (String, String) {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        release.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_owned())
        })
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    match (field("ID"), field("VERSION_ID")) {
        (Some(id), Some(version)) => (id, version),
        (Some(id), None) => (id, kernel),
        _ => ("linux".to_owned(), kernel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(processed: u64, cscli: u64, capi: u64) -> Counts {
        let mut dropped = [0; 8];
        dropped[Origin::Cscli as usize] = cscli;
        dropped[Origin::Capi as usize] = capi;
        Counts { processed, dropped }
    }

    fn items(v: &Value) -> Vec<Value> {
        v["remediation_components"][0]["metrics"][0]["items"].as_array().unwrap().clone()
    }

    #[test]
    fn a_report_holds_what_moved_in_its_window_by_origin() {
        let mut active = [0; 8];
        active[Origin::Cscli as usize] = 3;
        let v = window_payload(&Report {
            started_unix: 100,
            length: Duration::from_mins(15),
            now_unix: 1000,
            then: &counts(50, 2, 7),
            now: &counts(80, 12, 7),
            active,
            os: ("debian", "12"),
        });
        let c = &v["remediation_components"][0];
        assert_eq!(c["type"], "sipguard-xdp-bouncer");
        assert_eq!(c["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(c["utc_startup_timestamp"], 100);
        assert_eq!(c["metrics"][0]["meta"]["window_size_seconds"], 15 * 60);
        assert_eq!(
            items(&v),
            [
                json!({"name": "dropped", "value": 10, "unit": "packet",
                    "labels": {"origin": "cscli", "remediation": "ban"}}),
                json!({"name": "processed", "value": 30, "unit": "packet"}),
                json!({"name": "active_decisions", "value": 3, "unit": "ip",
                    "labels": {"origin": "cscli"}}),
            ],
            "an origin that dropped nothing in the window is left out"
        );
    }

    #[test]
    fn a_counter_reset_counts_all_it_holds() {
        assert_eq!(moved(5, 40), 5);
        assert_eq!(moved(45, 40), 5);
    }

    #[test]
    fn only_a_report_the_api_took_starts_the_next_window() {
        let mut u = Usage::new(counts(0, 0, 0), 1);
        let refused: anyhow::Result<()> = Err(anyhow::Error::new(Refused {
            status: hyper::StatusCode::NOT_FOUND,
            body: "404 page not found".into(),
        })
        .context("/v1/usage-metrics at http://x"));
        u.settle(&refused, counts(10, 4, 0));
        assert_eq!(u.outcome, UsageOutcome::Unsupported);
        let v = u.payload(&counts(20, 6, 0), [0; 8], 2);
        assert_eq!(items(&v)[0]["value"], 6, "the unsent window's drops wait: {v}");
        u.settle(&Err(anyhow::anyhow!("no answer")), counts(20, 6, 0));
        assert_eq!(u.outcome, UsageOutcome::Failed);
        u.settle(&Ok(()), counts(20, 6, 0));
        assert_eq!((u.outcome, u.sent), (UsageOutcome::Sent, 1));
        let v = u.payload(&counts(25, 6, 0), [0; 8], 3);
        assert_eq!(items(&v), [json!({"name": "processed", "value": 5, "unit": "packet"})]);
    }
}
