use std::fmt::Write as _;

use serde_json::json;

use super::{out, out_json};
use crate::cli::BanCommand;
use sipguard::{
    kernel::{
        maps::PinnedMaps,
        pin::PinLayout,
        privileges::{self, Need},
    },
    state::bans,
};

pub(super) fn ban_command(layout: &PinLayout, cmd: BanCommand) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    let maps = PinnedMaps::open(layout)?;
    match cmd {
        BanCommand::List(args) => {
            let list = bans::list(&maps)?;
            if args.json {
                for b in &list {
                    let mut v = serde_json::to_value(b)?;
                    v["type"] = json!("ban");
                    out_json(&v)?;
                }
                return Ok(out_json(&json!({"type": "summary", "bans": list.len()}))?);
            }
            let mut text = format!("{:<40} {:>10} {:>10}  CAUSE\n", "SOURCE", "EXPIRES", "PACKETS");
            for b in &list {
                let expires =
                    b.expires_in_secs.map_or_else(|| "never".to_owned(), |s| format!("{s}s"));
                let cause = match (&b.signature, b.rule, b.manual) {
                    (_, _, true) => "manual".to_owned(),
                    _ if b.reason == "unknown_domain" => "unknown_domain".to_owned(),
                    (Some(sig), _, _) => sig.clone(),
                    (None, Some(rule), _) => format!("behaviour: {rule}"),
                    (None, None, false) => "signature (since removed)".to_owned(),
                };
                let monitor = if b.monitor { " (monitor)" } else { "" };
                writeln!(
                    text,
                    "{:<40} {expires:>10} {:>10}  {cause}{monitor}",
                    b.addr.to_string(),
                    b.packets
                )
                .ok();
            }
            Ok(out(&text)?)
        }
        BanCommand::Add { addrs, ttl } => {
            let ttl = match ttl {
                Some(t) => t,
                None => match maps.config()?.ban_ttl_secs {
                    0 => sipguard_common::config::DEFAULT_BAN_TTL_SECS,
                    t => t,
                },
            };
            bans::add(&maps, &addrs, ttl)?;
            log::info!(
                "banned {} source(s) for {}",
                addrs.len(),
                if ttl == 0 { "good".to_owned() } else { format!("{ttl}s") }
            );
            Ok(())
        }
        BanCommand::Del { addrs } => {
            bans::remove(&maps, &addrs)?;
            log::info!("lifted {} ban(s)", addrs.len());
            Ok(())
        }
    }
}
