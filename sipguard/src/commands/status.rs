use std::fmt::Write as _;

use sipguard::{
    kernel::pin::PinLayout,
    named::Named as _,
    report::status::{self, CrowdsecStatus, ListStatus, Status},
};
use sipguard_common::lists::FILTER_BLOCK_BITS;

use super::{out, out_json};

pub(super) fn status(layout: &PinLayout, json: bool) -> anyhow::Result<()> {
    let status = status::status(layout)?;
    if json {
        return Ok(out_json(&serde_json::to_value(&status)?)?);
    }
    Ok(out(&text(&status))?)
}

fn text(status: &Status) -> String {
    let Some(f) = &status.filter else {
        return format!(
            "sipguard is not attached (nothing pinned under {})\n",
            status.pin_dir.display()
        );
    };
    let mut text = String::new();
    writeln!(text, "pin root    {}", status.pin_dir.display()).ok();
    if f.interfaces.is_empty() {
        writeln!(text, "interfaces  none (state kept)").ok();
    }
    for l in &f.interfaces {
        let state = if l.ifindex == 0 { " (interface gone: inactive)" } else { "" };
        writeln!(
            text,
            "interface   {} (ifindex {}, link {}, program {}){state}",
            l.iface, l.ifindex, l.link_id, l.program_id
        )
        .ok();
    }
    writeln!(
        text,
        "policy      default {}, mode {}, fragments {}",
        f.default.name(),
        f.mode.name(),
        f.fragments.name()
    )
    .ok();
    let ports: Vec<String> = f.sip_ports.iter().map(ToString::to_string).collect();
    writeln!(text, "sip ports   {}", ports.join(", ")).ok();
    if !f.sip_domains.is_empty() {
        writeln!(text, "sip domains {}", f.sip_domains.join(", ")).ok();
    }
    writeln!(
        text,
        "detection   {} signatures, bans {}, rate limit {}",
        f.signatures,
        if f.ban_ttl_secs == 0 { "off".to_owned() } else { format!("for {}s", f.ban_ttl_secs) },
        f.rate_limit
            .as_ref()
            .map_or_else(|| "off".to_owned(), |r| format!("{}/s burst {}", r.pps, r.burst))
    )
    .ok();
    let b = &f.behaviour;
    let rule = |n: u16| if n == 0 || b.window_secs == 0 { "off".to_owned() } else { n.to_string() };
    writeln!(
        text,
        "behaviour   per {}s: auth failures {}, not found {}, extension scan {} ({} sources tracked at most)",
        b.window_secs,
        rule(b.auth_failures),
        rule(b.not_found),
        rule(b.extension_scan),
        b.capacity
    )
    .ok();
    let t = &f.trust;
    writeln!(
        text,
        "trust       reverse path {}{}, standing {}; bans {} of {}, unverified ones {} at once then {}/min; withheld: {}",
        t.reverse_path.name(),
        if t.route_mirror { " (route mirror kept)" } else { "" },
        if t.standing_secs == 0 {
            "off".to_owned()
        } else {
            format!("{}s ({} sources)", t.standing_secs, t.standing_sources)
        },
        t.bans_active,
        t.ban_capacity,
        t.ban_burst,
        t.bans_per_minute,
        t.bans_withheld.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    )
    .ok();
    if let Some(c) = &f.crowdsec {
        crowdsec_line(&mut text, c);
    }
    let d = &f.destinations;
    writeln!(
        text,
        "protected   {} IPv4 and {} IPv6 destinations (capacity {} and {})",
        d.ipv4, d.ipv6, d.capacity_v4, d.capacity_v6
    )
    .ok();
    for (name, info) in &f.lists {
        writeln!(text, "{}", list_line(name, info)).ok();
    }
    text
}

/// One list's line of the text status.
fn list_line(name: &str, info: &ListStatus) -> String {
    let bitmap = match info.bitmap_24s {
        #[expect(clippy::cast_precision_loss, reason = "a percentage to two decimals")]
        Some(n) => format!(
            "; its bitmap marks {n} IPv4 /24s, {:.2}% of all",
            n as f64 * 100.0 / f64::from(1u32 << FILTER_BLOCK_BITS)
        ),
        None => "; no bitmap, every IPv4 source is looked up".to_owned(),
    };
    format!(
        "{name:<11} {} global entries, {} counting the destinations' (capacity {} IPv4, {} IPv6; {} of kernel memory{bitmap})",
        info.entries,
        info.entries_all,
        info.capacity_v4,
        info.capacity_v6,
        human_bytes(info.memory_bytes),
    )
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

/// The bouncer's line: what it enforces, and whether that is stale.
fn crowdsec_line(text: &mut String, c: &CrowdsecStatus) {
    let ago = |ms: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        format!("{}s ago", now.saturating_sub(ms) / 1000)
    };
    let decisions = if c.decisions.is_empty() {
        "none".to_owned()
    } else {
        c.decisions.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    writeln!(
        text,
        "crowdsec    decisions: {decisions}; last sync {}{}; bans shared {} (waiting {}, lost {}){}",
        c.last_sync_ms.map_or_else(|| "never".to_owned(), ago),
        match (&c.failing_since_ms, &c.error) {
            (Some(since), Some(e)) => format!("; STALE: failing since {} ({e})", ago(*since)),
            (Some(since), None) => format!("; STALE: failing since {}", ago(*since)),
            _ => String::new(),
        },
        c.alerts_sent,
        c.alerts_queued,
        c.alerts_dropped,
        match c.usage_metrics.last {
            "not_yet" => String::new(),
            "unsupported" => "; usage metrics: the API takes none (older than 1.6)".to_owned(),
            last => format!("; usage metrics: {last} ({} taken)", c.usage_metrics.sent),
        }
    )
    .ok();
}
