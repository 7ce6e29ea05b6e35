use std::fmt::Write as _;

use serde_json::json;
use sipguard::named::Named as _;
use sipguard_common::lists::{FILTER_BLOCK_BITS, filter_slot};

use super::{out, out_json};
use sipguard::{
    lists,
    maps::{ListKind, PinnedMaps},
    pin::PinLayout,
    privileges::{self, Need},
    program,
};

pub(super) fn status(layout: &PinLayout, json: bool) -> anyhow::Result<()> {
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
    let mode = config.mode().name();
    let fragments = config.fragment_action().name();
    let (list_info, destinations) = sizes(layout, &maps)?;
    let (dest4, dest6, dcap4, dcap6) = (
        &destinations["ipv4"],
        &destinations["ipv6"],
        &destinations["capacity_v4"],
        &destinations["capacity_v6"],
    );
    let signatures = sipguard::sigset::installed(&maps)?.len();
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
            "destinations": destinations,
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
    let _ = writeln!(
        text,
        "protected   {dest4} IPv4 and {dest6} IPv6 destinations (capacity {dcap4} and {dcap6})"
    );
    for (name, info) in &list_info {
        let _ = writeln!(text, "{}", list_line(name, info));
    }
    Ok(out(&text)?)
}

/// One list's line of the text status.
fn list_line(name: &str, info: &serde_json::Value) -> String {
    let bitmap = match info["bitmap_24s"].as_u64() {
        #[expect(clippy::cast_precision_loss, reason = "a percentage to two decimals")]
        Some(n) => format!(
            "; its bitmap marks {n} IPv4 /24s, {:.2}% of all",
            n as f64 * 100.0 / f64::from(1u32 << FILTER_BLOCK_BITS)
        ),
        None => "; no bitmap, every IPv4 source is looked up".to_owned(),
    };
    format!(
        "{name:<11} {} global entries, {} counting the destinations' (capacity {} IPv4, {} IPv6; {} of kernel memory{bitmap})",
        info["entries"],
        info["entries_all"],
        info["capacity_v4"],
        info["capacity_v6"],
        human_bytes(info["memory_bytes"].as_u64().unwrap_or(0)),
    )
}

/// Entries, capacity and kernel memory of each list; protected destinations per family.
fn sizes(
    layout: &PinLayout,
    maps: &PinnedMaps,
) -> anyhow::Result<(serde_json::Map<String, serde_json::Value>, serde_json::Value)> {
    let mut list_info = serde_json::Map::new();
    let config = maps.config()?;
    // The bitmaps count only once the program trusts them (see `lists::refresh_filters`).
    let filter = if config.list_filters == 0 { None } else { maps.list_filter(false)? };
    for kind in [ListKind::Allow, ListKind::Block] {
        let snap = lists::Snapshot::read(maps, kind)?;
        let global = lists::entries_in(maps, kind, &lists::Target::Global, &snap)?.len();
        let (cap4, cap6) = maps.list_capacity(kind)?;
        let memory = kind
            .maps()
            .iter()
            .map(|n| sipguard::sys::map_memory(&layout.map(n)).unwrap_or(0))
            .sum::<u64>();
        let allow = kind == ListKind::Allow;
        let generation = if allow { config.allow_gen } else { config.block_gen };
        let marked = filter.as_ref().map(|f| {
            f.read(filter_slot(allow, generation))
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum::<u64>()
        });
        list_info.insert(
            kind.name().to_owned(),
            json!({
                "entries": global,
                "entries_all": snap.count(true) + snap.count(false),
                "capacity_v4": cap4,
                "capacity_v6": cap6,
                "memory_bytes": memory,
                "bitmap_24s": marked,
            }),
        );
    }
    let registry = sipguard::protect::Registry::load(maps)?;
    let (dest4, dcap4) = registry.family(true);
    let (dest6, dcap6) = registry.family(false);
    let destinations = json!({
        "ipv4": dest4, "ipv6": dest6, "capacity_v4": dcap4, "capacity_v6": dcap6,
    });
    Ok((list_info, destinations))
}

fn human_bytes(b: u64) -> String {
    #[expect(clippy::cast_precision_loss, reason = "shown to one decimal")]
    let f = b as f64;
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", f / 1024.0),
        _ => format!("{:.1} MiB", f / 1_048_576.0),
    }
}
