use std::fmt::Write as _;

use serde_json::json;
use sipguard::named::Named as _;
use sipguard_common::{
    config::{DefaultAction, Mode},
    policy::{HAS_ALLOW, HAS_BLOCK},
};

use super::{out, out_json};
use crate::cli::ProtectCommand;
use sipguard::{
    kernel::{
        maps::{ListKind, PinnedMaps},
        pin::PinLayout,
        privileges::{self, Need},
    },
    state::{
        lists::{self, Target},
        protect::{self, Settings},
    },
};

pub(super) fn protect_command(layout: &PinLayout, cmd: ProtectCommand) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    let maps = PinnedMaps::open(layout)?;
    match cmd {
        ProtectCommand::Add { dest, default_action, mode, name, sip_domains, no_sip_domains } => {
            let sip_domains = crate::cli::domain_setting(&sip_domains, no_sip_domains);
            let settings = Settings { default_action, mode, sip_domains };
            let (d, new) = protect::add(&maps, dest, &settings, name.as_deref())?;
            log::info!("{} {}", d.label(), if new { "is now protected" } else { "updated" });
        }
        ProtectCommand::Del { dest } => {
            let d = protect::remove(&maps, &dest)?;
            log::info!("{} is no longer protected on its own", d.label());
        }
        ProtectCommand::List(args) => {
            let mut text = format!(
                "{:<44} {:<18} {:<8} {:<8} {:>7} {:>7} {:>10} {}\n",
                "DESTINATION", "NAME", "DEFAULT", "MODE", "ALLOW", "BLOCK", "DROPS", "SIP DOMAINS"
            );
            let mut declared = sipguard::state::domains::all(&maps)?;
            for d in protect::all(&maps)? {
                let sip_domains = declared.remove(&d.id).unwrap_or_default();
                let t = Target::Dest(Box::new(d.clone()));
                let count = |kind, flag| -> anyhow::Result<usize> {
                    if d.policy.flags & flag == 0 {
                        Ok(0)
                    } else {
                        Ok(lists::entries(&maps, kind, &t)?.len())
                    }
                };
                let allow = count(ListKind::Allow, HAS_ALLOW)?;
                let block = count(ListKind::Block, HAS_BLOCK)?;
                let default = DefaultAction::from_u8(d.policy.default_action).name();
                let mode = if d.policy.mode == Mode::Monitor as u8 {
                    Mode::Monitor
                } else {
                    Mode::Enforce
                };
                let mode = mode.name();
                let dropped = maps.dest_drops_of(d.id)?;
                if args.json {
                    out_json(&json!({
                        "type": "destination",
                        "destination": d.cidr,
                        "name": d.name,
                        "default": default,
                        "mode": mode,
                        "allowlist": allow,
                        "blocklist": block,
                        "dropped": dropped,
                        "sip_domains": sip_domains,
                    }))?;
                } else {
                    writeln!(
                        text,
                        "{:<44} {:<18} {default:<8} {mode:<8} {allow:>7} {block:>7} {dropped:>10} {}",
                        d.cidr.to_string(),
                        d.name.as_deref().unwrap_or("-"),
                        if sip_domains.is_empty() { "-".to_owned() } else { sip_domains.join(",") },
                    )
                    .ok();
                }
            }
            if !args.json {
                out(&text)?;
            }
        }
    }
    Ok(())
}
