use std::fmt::Write as _;

use serde_json::json;

use super::{out, out_json};
use crate::cli::DecisionsCommand;
use sipguard::{
    kernel::{
        maps::PinnedMaps,
        pin::PinLayout,
        privileges::{self, Need},
    },
    state::decisions::DecisionList,
};

pub(super) fn decisions_command(layout: &PinLayout, cmd: DecisionsCommand) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    let maps = PinnedMaps::open(layout)?;
    match cmd {
        DecisionsCommand::List(args) => {
            let list = DecisionList::open(&maps)?.list()?;
            if args.json {
                for d in &list {
                    let mut v = serde_json::to_value(d)?;
                    v["type"] = json!("decision");
                    out_json(&v)?;
                }
                return Ok(out_json(&json!({"type": "summary", "decisions": list.len()}))?);
            }
            let mut text =
                format!("{:<43} {:<12} {:>10}  SCENARIO\n", "VALUE", "ORIGIN", "EXPIRES");
            for d in &list {
                writeln!(
                    text,
                    "{:<43} {:<12} {:>10}  {}",
                    d.value.to_string(),
                    d.origin,
                    format!("{}s", d.expires_in_secs),
                    d.scenario
                )
                .ok();
            }
            Ok(out(&text)?)
        }
    }
}
