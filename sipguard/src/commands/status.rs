use std::fmt::Write as _;

use serde_json::json;
use sipguard_common::config::{FragmentAction, Mode};

use super::{out, out_json};
use crate::{
    lists,
    maps::{ListKind, PinnedMaps},
    pin::PinLayout,
    privileges::{self, Need},
    program,
};

pub fn status(layout: &PinLayout, json: bool) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    if !layout.has_maps() {
        return if json {
            Ok(out_json(&json!({"type": "status", "attached": false, "pin_dir": layout.root()}))?)
        } else {
            Ok(out(&format!(
                "sipguard is not attached (nothing pinned under {})\n",
                layout.root().display()
            ))?)
        };
    }
    let maps = PinnedMaps::open(layout)?;
    let config = maps.config()?;
    let ports = maps.ports()?;
    let links: Vec<program::LinkStatus> = layout
        .attached_ifaces()?
        .iter()
        .map(|i| program::link_status(layout, i))
        .collect::<anyhow::Result<_>>()?;
    let default = config.default_action().name();
    let mode = match config.mode() {
        Mode::Enforce => "enforce",
        Mode::Monitor => "monitor",
    };
    let fragments = match config.fragment_action() {
        FragmentAction::Pass => "pass",
        FragmentAction::Drop => "drop",
    };
    let mut list_info = serde_json::Map::new();
    for kind in [ListKind::Allow, ListKind::Block] {
        let entries = lists::entries(&maps, kind, &lists::Target::Global)?.len();
        let (cap4, cap6) = maps.list_capacity(kind)?;
        list_info.insert(
            kind.name().to_owned(),
            json!({"entries": entries, "capacity_v4": cap4, "capacity_v6": cap6}),
        );
    }
    let signatures = crate::sigset::installed(&maps)?.len();
    let ban_ttl = config.ban_ttl_secs;
    let rate = config.rate_limit().map(|(pps, burst)| json!({"pps": pps, "burst": burst}));
    if json {
        return Ok(out_json(&json!({
            "type": "status",
            "attached": !links.is_empty(),
            "pin_dir": layout.root(),
            "interfaces": links,
            "default": default,
            "mode": mode,
            "fragments": fragments,
            "sip_ports": ports,
            "lists": list_info,
            "signatures": signatures,
            "ban_ttl_secs": ban_ttl,
            "rate_limit": rate,
        }))?);
    }
    let mut text = String::new();
    let _ = writeln!(text, "pin root    {}", layout.root().display());
    if links.is_empty() {
        let _ = writeln!(text, "interfaces  none (state kept)");
    }
    for l in &links {
        let state = if l.ifindex == 0 { " (interface gone: inactive)" } else { "" };
        let _ = writeln!(
            text,
            "interface   {} (ifindex {}, link {}, program {}){state}",
            l.iface, l.ifindex, l.link_id, l.program_id
        );
    }
    let _ = writeln!(text, "policy      default {default}, mode {mode}, fragments {fragments}");
    let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
    let _ = writeln!(text, "sip ports   {}", ports.join(", "));
    let _ = writeln!(
        text,
        "detection   {signatures} signatures, bans {}, rate limit {}",
        if ban_ttl == 0 { "off".to_owned() } else { format!("for {ban_ttl}s") },
        config
            .rate_limit()
            .map_or_else(|| "off".to_owned(), |(pps, burst)| format!("{pps}/s burst {burst}"))
    );
    for (name, info) in &list_info {
        let _ = writeln!(
            text,
            "{name:<11} {} entries (capacity {} IPv4, {} IPv6)",
            info["entries"], info["capacity_v4"], info["capacity_v6"]
        );
    }
    Ok(out(&text)?)
}
