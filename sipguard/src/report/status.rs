//! What `status` and `check` report, as typed values: the library gathers them, the binary
//! prints them as JSON (their serde form, a `type` field first) or renders text from the
//! same fields. Nothing reads a report back by string key.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context as _;
use serde::{Serialize, Serializer};
use sipguard_common::{
    config::{Config, DefaultAction, FragmentAction, Mode},
    lists::filter_slot,
    trust::{ReversePath, Withheld},
};

use crate::{
    kernel::{
        maps::{ListKind, PinnedMaps},
        pin::PinLayout,
        privileges::{self, Need},
        probe,
        program::{self, LinkStatus},
        sys,
    },
    named::Named,
    state::{
        lists::{self, Snapshot, Target},
        protect::Registry,
        sigset,
    },
};

fn by_name<T: Named, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.name())
}

/// `sipguard status`.
#[derive(Debug, Serialize)]
pub struct Status {
    #[serde(rename = "type")]
    pub record: &'static str,
    /// An interface runs the filter.
    pub attached: bool,
    pub pin_dir: PathBuf,
    /// The filter's state, when anything is pinned.
    #[serde(flatten)]
    pub filter: Option<FilterStatus>,
}

/// The pinned filter's state.
#[derive(Debug, Serialize)]
pub struct FilterStatus {
    pub interfaces: Vec<LinkStatus>,
    #[serde(serialize_with = "by_name")]
    pub default: DefaultAction,
    #[serde(serialize_with = "by_name")]
    pub mode: Mode,
    #[serde(serialize_with = "by_name")]
    pub fragments: FragmentAction,
    pub sip_ports: Vec<u16>,
    /// The global policy's SIP domains (empty: no domain check but destinations' own).
    pub sip_domains: Vec<String>,
    /// By list name (`allowlist`, `blocklist`).
    pub lists: BTreeMap<&'static str, ListStatus>,
    pub destinations: DestinationCounts,
    /// Installed signatures.
    pub signatures: usize,
    /// 0: bans are off.
    pub ban_ttl_secs: u32,
    pub rate_limit: Option<RateLimit>,
    pub behaviour: BehaviourStatus,
    pub trust: TrustStatus,
    /// The bouncer of the fleet's decision store, once a `run` has pulled from it.
    pub crowdsec: Option<CrowdsecStatus>,
}

/// What `run`'s bouncer last did (`sipguard_common::decisions::BouncerReport`). Times are
/// Unix milliseconds.
#[derive(Debug, Serialize)]
pub struct CrowdsecStatus {
    pub interval_secs: f64,
    /// The last pull applied.
    pub last_sync_ms: Option<u64>,
    /// Since when pulls fail: the decisions in force are those of `last_sync_ms` (stale).
    pub failing_since_ms: Option<u64>,
    pub syncs: u64,
    pub sync_errors: u64,
    /// The last pull's error, while they fail.
    pub error: Option<String>,
    /// Prefixes enforced, by origin.
    pub decisions: BTreeMap<&'static str, u32>,
    /// This host's bans shared as alerts: sent, waiting for the API, and lost because the
    /// queue was full.
    pub alerts_sent: u64,
    pub alerts_queued: u32,
    pub alerts_dropped: u64,
    /// Usage-metrics reports to the API (`POST /v1/usage-metrics`).
    pub usage_metrics: UsageStatus,
    /// When `run` last wrote this (a `run` that is gone leaves its last report).
    pub reported_ms: u64,
}

/// How `run`'s usage-metrics reports go.
#[derive(Debug, Serialize)]
pub struct UsageStatus {
    /// `not_yet`, `sent`, `unsupported` (the API has no such endpoint: older than 1.6) or
    /// `failed`.
    pub last: &'static str,
    /// When the last one was tried.
    pub tried_ms: Option<u64>,
    /// Reports the API took.
    pub sent: u64,
}

fn crowdsec_status(maps: &PinnedMaps) -> anyhow::Result<Option<CrowdsecStatus>> {
    use sipguard_common::decisions::{Origin, UsageOutcome};
    let r = maps.bouncer_report()?;
    if r.written_ms == 0 {
        return Ok(None);
    }
    let end = r.error.iter().position(|&b| b == 0).unwrap_or(r.error.len());
    let error = String::from_utf8_lossy(&r.error[..end]).into_owned();
    Ok(Some(CrowdsecStatus {
        interval_secs: f64::from(r.interval_ms) / 1000.0,
        last_sync_ms: (r.synced_ms != 0).then_some(r.synced_ms),
        failing_since_ms: (r.failing_since_ms != 0).then_some(r.failing_since_ms),
        syncs: r.syncs,
        sync_errors: r.sync_errors,
        error: (!error.is_empty()).then_some(error),
        decisions: Origin::ALL
            .into_iter()
            .filter(|o| r.by_origin[*o as usize] != 0)
            .map(|o| (o.name(), r.by_origin[o as usize]))
            .collect(),
        alerts_sent: r.alerts_sent,
        alerts_queued: r.alerts_queued,
        alerts_dropped: r.alerts_dropped,
        usage_metrics: UsageStatus {
            last: UsageOutcome::from_byte(r.usage_outcome).name(),
            tried_ms: (r.usage_tried_ms != 0).then_some(r.usage_tried_ms),
            sent: r.usage_sent,
        },
        reported_ms: r.written_ms,
    }))
}

/// When evidence may ban (`sipguard_common::trust`), and the pressure on the ban table.
#[derive(Debug, Serialize)]
pub struct TrustStatus {
    #[serde(serialize_with = "by_name")]
    pub reverse_path: ReversePath,
    /// Whether the route mirror is kept (the check's answer where the FIB cannot give one).
    pub route_mirror: bool,
    /// Seconds a success gives standing (0: none).
    pub standing_secs: u32,
    /// Sources with standing now.
    pub standing_sources: usize,
    /// Bans on unverified evidence admitted at once, and per minute after (0: no budget).
    pub ban_burst: u64,
    pub bans_per_minute: u64,
    pub bans_active: usize,
    pub ban_capacity: u32,
    /// Bans withheld since the filter was created, by cause.
    pub bans_withheld: BTreeMap<&'static str, u64>,
}

/// The behaviour rules' settings (0: a rule is off; a window of 0 turns all off) and the
/// size of the per-source state.
#[derive(Debug, Serialize)]
pub struct BehaviourStatus {
    pub window_secs: u16,
    pub auth_failures: u16,
    pub not_found: u16,
    pub extension_scan: u16,
    /// Remote sources tracked at once (an LRU: the oldest make way).
    pub capacity: u32,
}

/// One list's size.
#[derive(Debug, Serialize)]
pub struct ListStatus {
    /// Entries of the global list.
    pub entries: usize,
    /// Entries of every generation and destination in the list's maps.
    pub entries_all: usize,
    pub capacity_v4: u32,
    pub capacity_v6: u32,
    /// Kernel memory of the list's maps.
    pub memory_bytes: u64,
    /// IPv4 `/24`s the global list's bitmap marks; `None` when the program does not use the
    /// bitmaps (every IPv4 source is looked up).
    pub bitmap_24s: Option<u64>,
}

/// Protected destinations per family, and how many each family holds.
#[derive(Debug, Serialize)]
pub struct DestinationCounts {
    pub ipv4: usize,
    pub ipv6: usize,
    pub capacity_v4: u32,
    pub capacity_v6: u32,
}

#[derive(Debug, Serialize)]
pub struct RateLimit {
    pub pps: u64,
    pub burst: u64,
}

/// Reads the status of the filter pinned at `layout`.
pub fn status(layout: &PinLayout) -> anyhow::Result<Status> {
    privileges::require(Need::Maps)?;
    let pin_dir = layout.root().to_path_buf();
    if !layout.has_maps() {
        return Ok(Status { record: "status", attached: false, pin_dir, filter: None });
    }
    let maps = PinnedMaps::open(layout)?;
    let config = maps.config()?;
    let interfaces: Vec<LinkStatus> = layout
        .attached_ifaces()?
        .iter()
        .map(|i| program::link_status(layout, i))
        .collect::<anyhow::Result<_>>()?;
    let registry = Registry::load(&maps)?;
    let ((ipv4, capacity_v4), (ipv6, capacity_v6)) =
        (registry.family(true), registry.family(false));
    let filter = FilterStatus {
        default: config.default_action(),
        mode: config.mode(),
        fragments: config.fragment_action(),
        sip_ports: maps.ports()?,
        sip_domains: crate::state::domains::of(&maps, sipguard_common::lists::GLOBAL_POLICY)?,
        lists: list_status(layout, &maps)?,
        destinations: DestinationCounts { ipv4, ipv6, capacity_v4, capacity_v6 },
        signatures: sigset::installed(&maps)?.len(),
        ban_ttl_secs: config.ban_ttl_secs,
        rate_limit: config.rate_limit().map(|(pps, burst)| RateLimit { pps, burst }),
        behaviour: {
            let (window_secs, auth_failures, not_found) = config.behaviour();
            BehaviourStatus {
                window_secs,
                auth_failures,
                not_found,
                extension_scan: config.extension_scan(),
                capacity: maps.capacity(sipguard_common::maps::BEHAVIOUR)?,
            }
        },
        trust: trust_status(&maps, &config)?,
        crowdsec: crowdsec_status(&maps)?,
        interfaces,
    };
    Ok(Status {
        record: "status",
        attached: !filter.interfaces.is_empty(),
        pin_dir,
        filter: Some(filter),
    })
}

fn trust_status(maps: &PinnedMaps, config: &Config) -> anyhow::Result<TrustStatus> {
    let now = sys::monotonic_ns();
    let standing_ns = u64::from(config.standing_secs()) * 1_000_000_000;
    let mut standing_sources = 0;
    for entry in &maps.standing()? {
        let (_, since) = entry.context("reading the standing map")?;
        if now.saturating_sub(since) < standing_ns {
            standing_sources += 1;
        }
    }
    let budget = maps.ban_budget()?;
    let counters = crate::report::stats::Snapshot::from_counters(&maps.counters()?).counters;
    Ok(TrustStatus {
        reverse_path: config.reverse_path(),
        route_mirror: config.routes != 0,
        standing_secs: config.standing_secs(),
        standing_sources,
        ban_burst: budget.burst(),
        bans_per_minute: 60_000_000_000u64.checked_div(budget.interval_ns).unwrap_or(0),
        bans_active: crate::state::bans::list(maps)?.len(),
        ban_capacity: maps.capacity(sipguard_common::maps::BANS)?,
        bans_withheld: Withheld::ALL
            .iter()
            .map(|w| (w.name(), counters.get(w.counter().name()).copied().unwrap_or(0)))
            .collect(),
    })
}

/// Entries, capacity and kernel memory of each list.
fn list_status(
    layout: &PinLayout,
    maps: &PinnedMaps,
) -> anyhow::Result<BTreeMap<&'static str, ListStatus>> {
    let config = maps.config()?;
    // The bitmaps count only once the program trusts them (see `lists::refresh_filters`).
    let filter = if config.list_filters == 0 { None } else { maps.list_filter(false)? };
    let mut out = BTreeMap::new();
    for kind in [ListKind::Allow, ListKind::Block] {
        let snap = Snapshot::read(maps, kind)?;
        let (capacity_v4, capacity_v6) = maps.list_capacity(kind)?;
        let allow = kind == ListKind::Allow;
        let generation = if allow { config.allow_gen } else { config.block_gen };
        let status = ListStatus {
            entries: lists::entries_in(maps, kind, &Target::Global, &snap)?.len(),
            entries_all: snap.count(true) + snap.count(false),
            capacity_v4,
            capacity_v6,
            memory_bytes: kind
                .maps()
                .iter()
                .map(|n| sys::map_memory(&layout.map(n)).unwrap_or(0))
                .sum(),
            bitmap_24s: filter.as_ref().map(|f| {
                f.read(filter_slot(allow, generation))
                    .iter()
                    .map(|w| u64::from(w.count_ones()))
                    .sum()
            }),
        };
        out.insert(kind.name(), status);
    }
    Ok(out)
}

/// `sipguard check`: can this kernel run sipguard.
#[derive(Debug, Serialize)]
pub struct Check {
    #[serde(rename = "type")]
    pub record: &'static str,
    pub kernel: String,
    pub minimum: &'static str,
    pub features: Vec<probe::Feature>,
    pub btf: bool,
    pub loaded: bool,
    /// Each program's load: the XDP entry program, its stages, the response program.
    pub programs: Vec<program::ProgramLoad>,
    /// The most any one program cost the verifier.
    pub max_verified_instructions: Option<u32>,
    /// The verifier's limit per program.
    pub verifier_limit: u32,
    /// How long loading them all took, verifier included.
    pub load_seconds: Option<f64>,
    /// Why the load failed.
    pub error: Option<String>,
    pub ok: bool,
}

/// Probes the kernel's features and, when none is missing, loads the program once over
/// scratch maps beside `layout`'s root (a running filter is not touched), then removes them.
pub fn check(layout: &PinLayout) -> anyhow::Result<Check> {
    privileges::require(Need::Load)?;
    let features = probe::probe();
    let missing = features.iter().any(|f| !f.available);
    let mut report = Check {
        record: "check",
        kernel: probe::release(),
        minimum: probe::MINIMUM,
        btf: probe::has_btf(),
        loaded: false,
        programs: Vec::new(),
        max_verified_instructions: None,
        verifier_limit: program::VERIFIER_LIMIT,
        load_seconds: None,
        error: None,
        ok: false,
        features,
    };
    if missing {
        return Ok(report);
    }
    let scratch =
        PinLayout::new(format!("{}-check-{}", layout.root().display(), std::process::id()));
    let start = std::time::Instant::now();
    let result = program::load(&scratch, program::Capacities::default()).map(|l| l.programs);
    let seconds = start.elapsed().as_secs_f64();
    if let Err(e) = scratch.remove_all() {
        log::warn!("removing the scratch maps under {}: {e:#}", scratch.root().display());
    }
    match result {
        Ok(programs) => {
            report.loaded = true;
            report.max_verified_instructions =
                programs.iter().filter_map(|p| p.verified_instructions).max();
            report.programs = programs;
            report.load_seconds = Some(seconds);
            report.ok = true;
        }
        Err(e) => report.error = Some(format!("{e:#}")),
    }
    Ok(report)
}
