use std::fmt::Write as _;

use serde_json::json;

use super::{out, out_json};
use crate::{
    cli::ListCommand,
    lists,
    maps::{ListKind, PinnedMaps},
    pin::PinLayout,
    privileges::{self, Need},
};

pub fn list_command(layout: &PinLayout, kind: ListKind, cmd: ListCommand) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    let maps = PinnedMaps::open(layout)?;
    match cmd {
        ListCommand::Add { cidrs } => {
            let done = lists::add(&maps, kind, &cidrs)?;
            for c in &done.present {
                log::info!("{c} is already on the {}", kind.name());
            }
            log::info!(
                "added {} entr{} to the {}",
                done.added.len(),
                plural(done.added.len()),
                kind.name()
            );
        }
        ListCommand::Del { cidrs } => {
            let removed = lists::remove(&maps, kind, &cidrs)?;
            log::info!(
                "removed {} entr{} from the {}",
                removed.len(),
                plural(removed.len()),
                kind.name()
            );
        }
        ListCommand::List(args) => {
            let entries = lists::entries(&maps, kind)?;
            if args.json {
                for c in &entries {
                    out_json(&json!({"type": "entry", "list": kind.name(), "cidr": c}))?;
                }
                out_json(
                    &json!({"type": "summary", "list": kind.name(), "entries": entries.len()}),
                )?;
            } else {
                let mut text = String::with_capacity(entries.len() * 20);
                for c in &entries {
                    let _ = writeln!(text, "{c}");
                }
                out(&text)?;
            }
        }
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "y" } else { "ies" }
}
