//! The decision list: sources an outside decision store (CrowdSec's Local API) says to drop.
//!
//! It is kept apart from the bans (`SG_BANS`, an LRU that evicts) and from the operator's
//! blocklists: a community list of a hundred thousand entries must neither evict local bans
//! nor be evicted by them, and a resync must not touch what the operator listed by hand.
//!
//! Entries live in two LPM tries (`SG_DECISIONS_V4/V6`) keyed like the source lists
//! (`crate::lists::v4_key`), the tag being the generation alone: a full sync writes the other
//! generation, then flips [`DecisionSet::generation`], so packets see the old set or the new
//! one and never a mixture or nothing. Each entry carries its own expiry, which the kernel
//! checks: a decision ends on time even while no userspace runs.

/// Where a decision came from, as CrowdSec names its origins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Origin {
    /// A detection of a CrowdSec agent (or a sipguard edge sharing its bans).
    Crowdsec = 0,
    /// Added by hand with `cscli decisions add`.
    Cscli = 1,
    /// The community blocklist from the Central API.
    Capi = 2,
    /// A blocklist subscribed to through the console.
    Lists = 3,
    /// Added from the console.
    Console = 4,
    /// `cscli decisions import`.
    CscliImport = 5,
    /// The application security component.
    Appsec = 6,
    /// Any origin this version does not know.
    Other = 7,
}

impl Origin {
    pub const ALL: [Origin; 8] = [
        Origin::Crowdsec,
        Origin::Cscli,
        Origin::Capi,
        Origin::Lists,
        Origin::Console,
        Origin::CscliImport,
        Origin::Appsec,
        Origin::Other,
    ];

    /// The name CrowdSec uses on the wire.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Origin::Crowdsec => "crowdsec",
            Origin::Cscli => "cscli",
            Origin::Capi => "CAPI",
            Origin::Lists => "lists",
            Origin::Console => "console",
            Origin::CscliImport => "cscli-import",
            Origin::Appsec => "appsec",
            Origin::Other => "other",
        }
    }

    /// The origin named `name` (CrowdSec's spelling, case-insensitive); unknown names are
    /// [`Origin::Other`].
    #[must_use]
    pub fn parse(name: &str) -> Origin {
        Origin::ALL
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
            .unwrap_or(Origin::Other)
    }

    #[must_use]
    pub const fn from_u8(v: u8) -> Origin {
        match v {
            0 => Origin::Crowdsec,
            1 => Origin::Cscli,
            2 => Origin::Capi,
            3 => Origin::Lists,
            4 => Origin::Console,
            5 => Origin::CscliImport,
            6 => Origin::Appsec,
            _ => Origin::Other,
        }
    }
}

/// One entry of `SG_DECISIONS_V4/V6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Decision {
    /// When it ends, on the program's clock (`CLOCK_MONOTONIC`, ns).
    pub expires_ns: u64,
    /// The scenario's key in `SG_SCENARIOS` ([`scenario_key`]).
    pub scenario: u32,
    /// [`Origin`] as a byte.
    pub origin: u8,
    /// [`DECISION_UNPROVEN`] or 0.
    pub flags: u8,
    pub reserved: [u8; 2],
}

const _: () = assert!(size_of::<Decision>() == 16);

/// [`Decision::flags`]: the decision stands on evidence nobody proved (a sipguard edge's ban
/// on one UDP packet, shared as [`UNPROVEN_TYPE`]): a source with standing on this edge is
/// not dropped by it (counted as withheld). A byte that was reserved (0) before: older
/// entries read as proven, as they were enforced.
pub const DECISION_UNPROVEN: u8 = 1;

/// The decision type sipguard edges share an unproven ban as: other bouncers enforce only
/// `ban` (cs-firewall-bouncer leaves other types alone), sipguard edges enforce it with
/// their own judgement.
pub const UNPROVEN_TYPE: &str = "sipguard_unproven";

/// The single entry of `SG_DECISION_SET`: which generation of the tries is live, and whether
/// it holds anything (an empty set costs a packet one array read, no trie lookup).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DecisionSet {
    pub generation: u8,
    /// Non-zero while the live generation may hold entries.
    pub active: u8,
    pub reserved: [u8; 6],
}

const _: () = assert!(size_of::<DecisionSet>() == 8);

/// Bytes of a scenario name kept in `SG_SCENARIOS` (longer names are cut).
pub const SCENARIO_NAME_LEN: usize = 124;

/// A scenario's name, as `SG_SCENARIOS` holds it (userspace only: the kernel never reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ScenarioName {
    pub len: u32,
    pub name: [u8; SCENARIO_NAME_LEN],
}

const _: () = assert!(size_of::<ScenarioName>() == 128);

/// The key of a scenario name: its FNV-1a hash. Two names with one key would show one name
/// for both in `decisions list`, nothing worse: the kernel never reads it.
#[must_use]
pub fn scenario_key(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// Bytes of the last error kept in [`BouncerReport`].
pub const REPORT_ERROR_LEN: usize = 128;

/// The single entry of `SG_BOUNCER` (userspace only): what `run`'s bouncer last did, for
/// `status` and the metrics of any process. Times are Unix milliseconds, 0 for never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct BouncerReport {
    /// The last sync the API answered and that was applied.
    pub synced_ms: u64,
    /// Since when syncs fail (0: the last one succeeded).
    pub failing_since_ms: u64,
    pub syncs: u64,
    pub sync_errors: u64,
    /// When `run` last wrote this report (a report of a `run` that is gone stays behind).
    pub written_ms: u64,
    /// Alerts (shared bans) sent, waiting, and dropped because the queue was full.
    pub alerts_sent: u64,
    pub alerts_queued: u32,
    pub interval_ms: u32,
    pub alerts_dropped: u64,
    /// Active decisions by [`Origin`].
    pub by_origin: [u32; 8],
    /// Usage-metrics reports the Local API took (`POST /v1/usage-metrics`).
    pub usage_sent: u64,
    /// When the last report was tried (0: never).
    pub usage_tried_ms: u64,
    /// How the last one went: [`UsageOutcome`] as a byte.
    pub usage_outcome: u8,
    pub reserved: [u8; 7],
    /// The last error, UTF-8, NUL-padded (never holds a credential).
    pub error: [u8; REPORT_ERROR_LEN],
}

const _: () = assert!(size_of::<BouncerReport>() == 64 + 32 + 24 + REPORT_ERROR_LEN);

/// How the bouncer's last usage-metrics report went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum UsageOutcome {
    /// None was tried yet (or reports are off).
    NotYet = 0,
    /// The Local API took it.
    Sent = 1,
    /// The Local API has no such endpoint (404: older than 1.6): nothing is lost, reports
    /// are tried again each interval in case it is upgraded.
    Unsupported = 2,
    /// Any other failure.
    Failed = 3,
}

impl UsageOutcome {
    #[must_use]
    pub const fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::Sent,
            2 => Self::Unsupported,
            3 => Self::Failed,
            _ => Self::NotYet,
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotYet => "not_yet",
            Self::Sent => "sent",
            Self::Unsupported => "unsupported",
            Self::Failed => "failed",
        }
    }
}

impl BouncerReport {
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            synced_ms: 0,
            failing_since_ms: 0,
            syncs: 0,
            sync_errors: 0,
            written_ms: 0,
            alerts_sent: 0,
            alerts_queued: 0,
            interval_ms: 0,
            alerts_dropped: 0,
            by_origin: [0; 8],
            usage_sent: 0,
            usage_tried_ms: 0,
            usage_outcome: 0,
            reserved: [0; 7],
            error: [0; REPORT_ERROR_LEN],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip_by_name_and_byte() {
        for o in Origin::ALL {
            assert_eq!(Origin::parse(o.name()), o);
            assert_eq!(Origin::from_u8(o as u8), o);
        }
        assert_eq!(Origin::parse("capi"), Origin::Capi, "either case");
        assert_eq!(Origin::parse("someday"), Origin::Other);
    }

    #[test]
    fn scenario_keys_differ_for_different_names() {
        assert_ne!(scenario_key("sipguard/signature"), scenario_key("sipguard/behaviour"));
        assert_eq!(scenario_key(""), 0x811c_9dc5);
    }
}
