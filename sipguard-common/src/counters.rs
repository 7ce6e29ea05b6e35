//! Layout of the per-CPU counter array [`crate::maps::STATS`].
//!
//! Every packet the program sees increments exactly one *verdict* slot, so the sum of all
//! verdict slots is the number of packets seen and `passed + dropped` always adds up. Packets
//! whose payload is looked at also increment one *payload class* slot, which is not a verdict.
//!
//! Slots `0..REASON_SLOTS` hold enforced verdicts by [`Reason`]; slots
//! `MONITOR_BASE + reason` hold drop verdicts that monitor mode turned into passes; slots
//! `CLASS_BASE + class` hold [`PayloadClass`] counts, [`method_slot`] counts requests by
//! method, and slots from `MISC_BASE` hold [`Misc`] counters. Per-signature hits live in their
//! own map (`SG_SIG_HITS`).

/// Why the program passed or dropped a packet. Each reason has one fixed [`Verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp = 0,
    /// IP traffic that is not UDP/TCP to a SIP port (ICMP, other ports, other protocols).
    NotSipPort = 1,
    /// Headers truncated or inconsistent; left to the kernel stack, which discards them.
    Malformed = 2,
    /// Non-first fragment passed by the fragment policy.
    FragmentPassed = 3,
    /// Source on the allowlist.
    Allowlisted = 4,
    /// SIP-port traffic from an unlisted source under the `pass` default.
    DefaultPass = 5,
    /// Non-first fragment dropped by the fragment policy.
    FragmentDropped = 6,
    /// Source on the blocklist.
    Blocklisted = 7,
    /// SIP-port traffic from an unlisted source under the `drop` default.
    DefaultDrop = 8,
    /// Source banned earlier (by a signature hit or by hand).
    Banned = 9,
    /// The message matched scanner signatures.
    Signature = 10,
    /// The source exceeded the per-source rate limit.
    RateLimited = 11,
    /// SIP-port traffic to a destination without a policy while the global default is `off`.
    NotProtected = 12,
    /// A request out of a dialog whose Request-URI host is none of the SIP domains its
    /// destination declares (typically a bare IP address: a "direct-IP" ghost call).
    UnknownDomain = 13,
    /// A packet that called for a ban (a signature, an unknown domain) from a source whose
    /// route back leaves by another interface than the one it arrived on (or, loose, by none):
    /// its source is forged. Dropped, never banned (`crate::trust`).
    Spoofed = 14,
    /// Source named by a decision of the fleet's decision store (CrowdSec's Local API: a ban
    /// another edge shared, the community blocklist, `cscli`), in `SG_DECISIONS_V4/V6`.
    Decision = 15,
}

/// Slots reserved for reasons; reasons added later fit without moving the other regions.
pub const REASON_SLOTS: u32 = 32;
/// Start of the "dropped in monitor mode, so passed" region.
pub const MONITOR_BASE: u32 = REASON_SLOTS;
/// Start of the payload class region.
pub const CLASS_BASE: u32 = 2 * REASON_SLOTS;
/// Slots reserved for payload classes.
pub const CLASS_SLOTS: u32 = 32;
/// Start of the [`Misc`] region.
pub const MISC_BASE: u32 = CLASS_BASE + CLASS_SLOTS;
/// Entries of [`crate::maps::STATS`].
pub const COUNTER_SLOTS: u32 = MISC_BASE + 32;

/// Counters that are neither verdicts nor payload classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Misc {
    /// Events written to the ring buffer.
    EventsSent = 0,
    /// Events not written: over the kernel's event budget, or the ring buffer was full.
    EventsSuppressed = 1,
    /// Bans created by signature hits and behaviour rules.
    BansAdded = 2,
    /// Messages whose header section did not end within the inspection window or line
    /// budget (inspected as far as it went).
    InspectionTruncated = 3,
    /// SIP messages whose headers were inspected.
    Inspected = 4,
    /// SIP responses the protected servers sent, seen by the response program.
    Responses = 5,
    /// Sources banned (or, in monitor mode, that would have been) by the behaviour rule
    /// `auth_failures`.
    BehaviourAuthFailures = 6,
    /// The same, by the rule `not_found`.
    BehaviourNotFound = 7,
    /// The same, by the rule `extension_scan`.
    BehaviourExtensionScan = 8,
    /// Bans the evidence called for, withheld because the source's route back leaves by
    /// another interface (`crate::trust::Withheld`).
    BansWithheldSpoofed = 9,
    /// The same, because the source has standing (a recent registration or call).
    BansWithheldStanding = 10,
    /// The same, because the budget of bans on unverified evidence was spent (a flood).
    BansWithheldBudget = 11,
    /// Standing granted or renewed (a success answering a REGISTER or an INVITE).
    StandingGranted = 12,
    /// Requests from a party with standing whose credentials echoed the nonce of a challenge
    /// it was sent (`crate::challenges::Challenges`).
    ChallengesAnswered = 13,
    /// Packets whose next stage was missing from the jump table (`SG_STAGES`), so they were
    /// passed unjudged. Zero unless a load was interrupted half-way: a sign to re-attach.
    StageMissing = 14,
    /// Attempts of a party with standing (requests that echoed a nonce) that the server
    /// refused: challenged again or answered 403 (`crate::challenges::Challenges`).
    AttemptsRefused = 15,
    /// Attempts of a party with standing that the server took: a ringing or final answer to
    /// their INVITE or REGISTER that was no refusal.
    AttemptsAccepted = 16,
    /// "Not found" answers to a party with standing for a number (a user part of
    /// `crate::behaviour::LONG_NUMBER_LEN` or more): a dialer's stale list, which `not_found`
    /// does not count.
    NumbersNotFound = 17,
    /// Packets of sources with standing that an unproven decision of another edge names
    /// (`crate::decisions::DECISION_UNPROVEN`), passed on this edge's own judgement.
    DecisionsWithheldStanding = 18,
}

impl Misc {
    pub const ALL: [Misc; 19] = [
        Misc::EventsSent,
        Misc::EventsSuppressed,
        Misc::BansAdded,
        Misc::InspectionTruncated,
        Misc::Inspected,
        Misc::Responses,
        Misc::BehaviourAuthFailures,
        Misc::BehaviourNotFound,
        Misc::BehaviourExtensionScan,
        Misc::BansWithheldSpoofed,
        Misc::BansWithheldStanding,
        Misc::BansWithheldBudget,
        Misc::StandingGranted,
        Misc::ChallengesAnswered,
        Misc::StageMissing,
        Misc::AttemptsRefused,
        Misc::AttemptsAccepted,
        Misc::NumbersNotFound,
        Misc::DecisionsWithheldStanding,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Misc::EventsSent => "events_sent",
            Misc::EventsSuppressed => "events_suppressed",
            Misc::BansAdded => "bans_added",
            Misc::InspectionTruncated => "inspection_truncated",
            Misc::Inspected => "inspected",
            Misc::Responses => "responses",
            Misc::BehaviourAuthFailures => "behaviour_auth_failures",
            Misc::BehaviourNotFound => "behaviour_not_found",
            Misc::BehaviourExtensionScan => "behaviour_extension_scan",
            Misc::BansWithheldSpoofed => "bans_withheld_spoofed",
            Misc::BansWithheldStanding => "bans_withheld_standing",
            Misc::BansWithheldBudget => "bans_withheld_budget",
            Misc::StandingGranted => "standing_granted",
            Misc::ChallengesAnswered => "challenges_answered",
            Misc::StageMissing => "stage_missing",
            Misc::AttemptsRefused => "attempts_refused",
            Misc::AttemptsAccepted => "attempts_accepted",
            Misc::NumbersNotFound => "numbers_not_found",
            Misc::DecisionsWithheldStanding => "decisions_withheld_standing",
        }
    }

    /// The counter of a behaviour rule's trips.
    #[must_use]
    #[inline(always)]
    pub const fn of_rule(rule: crate::behaviour::Rule) -> Misc {
        match rule {
            crate::behaviour::Rule::AuthFailures => Misc::BehaviourAuthFailures,
            crate::behaviour::Rule::NotFound => Misc::BehaviourNotFound,
            crate::behaviour::Rule::ExtensionScan => Misc::BehaviourExtensionScan,
        }
    }

    #[must_use]
    #[inline(always)]
    pub const fn slot(self) -> u32 {
        MISC_BASE + self as u32
    }
}

/// Start of the region that counts, per origin of the decision (`crate::decisions::Origin`,
/// eight of them), the packets a decision of the fleet's store dropped: the last eight slots
/// of the [`Misc`] region, which keeps its first 24 for its own counters. What a bouncer
/// reports to the Local API as `dropped` by origin.
pub const DECISION_ORIGIN_BASE: u32 = MISC_BASE + 24;

const _: () = assert!(Misc::ALL.len() <= 24);
const _: () = assert!(DECISION_ORIGIN_BASE + 8 <= COUNTER_SLOTS);

/// Slot of the packets dropped by decisions of `origin` (`Origin as u8`; any value past the
/// last origin counts as the last, `Other`).
#[must_use]
pub const fn decision_origin_slot(origin: u8) -> u32 {
    let origin = if origin > 7 { 7 } else { origin };
    DECISION_ORIGIN_BASE + origin as u32
}

/// What a reason does to the packet when enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

impl Reason {
    /// All reasons, in slot order.
    pub const ALL: [Reason; 16] = [
        Reason::NotIp,
        Reason::NotSipPort,
        Reason::Malformed,
        Reason::FragmentPassed,
        Reason::Allowlisted,
        Reason::DefaultPass,
        Reason::FragmentDropped,
        Reason::Blocklisted,
        Reason::DefaultDrop,
        Reason::Banned,
        Reason::Signature,
        Reason::RateLimited,
        Reason::NotProtected,
        Reason::UnknownDomain,
        Reason::Spoofed,
        Reason::Decision,
    ];

    #[must_use]
    #[inline(always)]
    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::NotIp
            | Reason::NotSipPort
            | Reason::Malformed
            | Reason::FragmentPassed
            | Reason::Allowlisted
            | Reason::DefaultPass
            | Reason::NotProtected => Verdict::Pass,
            Reason::FragmentDropped
            | Reason::Blocklisted
            | Reason::DefaultDrop
            | Reason::Banned
            | Reason::Signature
            | Reason::RateLimited
            | Reason::UnknownDomain
            | Reason::Spoofed
            | Reason::Decision => Verdict::Drop,
        }
    }

    /// Stable `snake_case` name, used in `stats --json` and metrics.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not_ip",
            Reason::NotSipPort => "not_sip_port",
            Reason::Malformed => "malformed",
            Reason::FragmentPassed => "fragment_passed",
            Reason::Allowlisted => "allowlisted",
            Reason::DefaultPass => "default_pass",
            Reason::FragmentDropped => "fragment_dropped",
            Reason::Blocklisted => "blocklisted",
            Reason::DefaultDrop => "default_drop",
            Reason::Banned => "banned",
            Reason::Signature => "signature",
            Reason::RateLimited => "rate_limited",
            Reason::NotProtected => "not_protected",
            Reason::UnknownDomain => "unknown_domain",
            Reason::Spoofed => "spoofed",
            Reason::Decision => "decision",
        }
    }

    /// The counter slot this reason uses, enforced or (for drop reasons) monitored.
    #[must_use]
    #[inline(always)]
    pub const fn slot(self, monitored: bool) -> u32 {
        if monitored { MONITOR_BASE + self as u32 } else { self as u32 }
    }
}

/// What the start of a payload sent to a SIP port looked like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum PayloadClass {
    /// No payload (TCP handshake and ACKs, empty datagrams).
    Empty = 0,
    /// A SIP request; the method is counted separately by [`crate::sip::Method`].
    SipRequest = 1,
    /// A SIP response (status line).
    SipResponse = 2,
    /// Payload that starts like no SIP message (keepalives, garbage, other protocols).
    NotSip = 3,
}

impl PayloadClass {
    pub const ALL: [PayloadClass; 4] = [
        PayloadClass::Empty,
        PayloadClass::SipRequest,
        PayloadClass::SipResponse,
        PayloadClass::NotSip,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            PayloadClass::Empty => "empty",
            PayloadClass::SipRequest => "sip_request",
            PayloadClass::SipResponse => "sip_response",
            PayloadClass::NotSip => "not_sip",
        }
    }

    #[must_use]
    #[inline(always)]
    pub const fn slot(self) -> u32 {
        CLASS_BASE + self as u32
    }
}

/// Slot of the per-method request counter (after the [`PayloadClass`] slots).
#[must_use]
#[inline(always)]
pub const fn method_slot(method: crate::sip::Method) -> u32 {
    CLASS_BASE + 8 + method as u32
}

const _: () = assert!(Reason::Decision as usize + 1 == Reason::ALL.len());
const _: () = assert!(Reason::ALL.len() <= REASON_SLOTS as usize);
const _: () = assert!(8 + crate::sip::Method::ALL.len() <= CLASS_SLOTS as usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_in_range() {
        let mut seen = [false; COUNTER_SLOTS as usize];
        let mut mark = |slot: u32| {
            assert!(slot < COUNTER_SLOTS, "slot {slot} out of range");
            assert!(!seen[slot as usize], "slot {slot} used twice");
            seen[slot as usize] = true;
        };
        for r in Reason::ALL {
            mark(r.slot(false));
            if r.verdict() == Verdict::Drop {
                mark(r.slot(true));
            }
        }
        for c in PayloadClass::ALL {
            mark(c.slot());
        }
        for m in crate::sip::Method::ALL {
            mark(method_slot(m));
        }
        for m in Misc::ALL {
            mark(m.slot());
        }
    }

    #[test]
    fn slot_order_matches_all() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.slot(false) as usize, i);
        }
    }
}
