use std::fmt::Write as _;

use serde_json::json;

use super::{out, out_json};
use crate::cli::ListCommand;
use sipguard::{
    cidr::Cidr,
    kernel::{
        maps::{ListKind, PinnedMaps},
        pin::PinLayout,
        privileges::{self, Need},
    },
    setup::import,
    state::{
        lists::{self, Target},
        protect,
    },
};

/// The list `--for` names: a destination's, or the global one.
pub(super) fn target(maps: &PinnedMaps, dest: Option<&Cidr>) -> anyhow::Result<Target> {
    Ok(match dest {
        Some(d) => Target::Dest(Box::new(protect::find(maps, d)?)),
        None => Target::Global,
    })
}

pub(super) fn list_command(
    layout: &PinLayout,
    kind: ListKind,
    cmd: ListCommand,
) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    let maps = PinnedMaps::open(layout)?;
    match cmd {
        ListCommand::Add { cidrs, dest } => {
            let mut t = target(&maps, dest.as_ref())?;
            let done = lists::add(&maps, kind, &mut t, &cidrs)?;
            for c in &done.present {
                log::info!("{c} is already on {}", t.describe(kind));
            }
            log::info!(
                "added {} entr{} to {}",
                done.added.len(),
                plural(done.added.len()),
                t.describe(kind)
            );
        }
        ListCommand::Del { cidrs, dest } => {
            let t = target(&maps, dest.as_ref())?;
            let removed = lists::remove(&maps, kind, &t, &cidrs)?;
            log::info!(
                "removed {} entr{} from {}",
                removed.len(),
                plural(removed.len()),
                t.describe(kind)
            );
        }
        ListCommand::Import { file, dest, replace, format } => {
            let entries = import::read(&file, format)?;
            let mut t = target(&maps, dest.as_ref())?;
            if replace {
                let r = lists::replace(&maps, kind, &mut t, &entries)?;
                log::info!(
                    "{} now holds {} entries ({} added, {} removed), swapped in at once",
                    t.describe(kind),
                    r.entries,
                    r.added,
                    r.removed
                );
            } else {
                let done = lists::add(&maps, kind, &mut t, &entries)?;
                log::info!(
                    "added {} entr{} to {} ({} already there)",
                    done.added.len(),
                    plural(done.added.len()),
                    t.describe(kind),
                    done.present.len()
                );
            }
        }
        ListCommand::List { json, dest } => {
            let t = target(&maps, dest.as_ref())?;
            let entries = lists::entries(&maps, kind, &t)?;
            if json {
                let for_dest = dest.map(|d| d.to_string());
                for c in &entries {
                    out_json(
                        &json!({"type": "entry", "list": kind.name(), "for": for_dest, "cidr": c}),
                    )?;
                }
                out_json(
                    &json!({"type": "summary", "list": kind.name(), "for": for_dest, "entries": entries.len()}),
                )?;
            } else {
                let mut text = String::with_capacity(entries.len() * 20);
                for c in &entries {
                    writeln!(text, "{c}").ok();
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
