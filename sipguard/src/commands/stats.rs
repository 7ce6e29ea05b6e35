use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::{out, out_json};
use crate::cli::StatsArgs;
use sipguard::{
    kernel::{
        maps::PinnedMaps,
        pin::PinLayout,
        privileges::{self, Need},
    },
    report::stats::Snapshot,
};

fn record(s: &Snapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(s).expect("a snapshot serialises");
    v["type"] = json!("stats");
    v
}

pub(super) fn stats(layout: &PinLayout, args: &StatsArgs) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    let maps = PinnedMaps::open(layout)?;
    if let Some(dest) = &args.dest {
        let d = sipguard::state::protect::find(&maps, dest)?;
        let dropped = maps.dest_drops_of(d.id)?;
        return if args.json {
            Ok(out_json(
                &json!({"type": "stats", "destination": d.cidr, "name": d.name, "dropped": dropped}),
            )?)
        } else {
            Ok(out(&format!("{:<24} {}\n{:<24} {dropped}\n", "destination", d.label(), "dropped"))?)
        };
    }
    let Some(every) = args.watch else {
        let s = Snapshot::read(&maps)?;
        return if args.json { Ok(out_json(&record(&s))?) } else { Ok(out(&s.table(None))?) };
    };
    let every = Duration::from_secs(every);
    let mut last = (Snapshot::read(&maps)?, Instant::now());
    let mut reports = 0u64;
    loop {
        std::thread::sleep(every);
        let now = Snapshot::read(&maps).context("the filter went away")?;
        let elapsed = last.1.elapsed().as_secs_f64();
        let delta = now.since(&last.0);
        if args.json {
            let mut v = record(&now);
            v["interval_secs"] = json!(elapsed);
            v["delta"] = serde_json::to_value(&delta)?;
            out_json(&v)?;
        } else {
            let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            out(&format!("--- {stamp}\n{}\n", now.table(Some(&(delta, elapsed)))))?;
        }
        last = (now, Instant::now());
        reports += 1;
        if args.count.is_some_and(|n| reports >= n) {
            return Ok(());
        }
    }
}
