//! The entry program, the one attached: L2-L4 parse, SIP port, the destination's policy, the
//! allowlists, bans, decisions, blocklists and the default, cheapest first (see
//! docs/architecture.md). What it cannot decide from the headers it hands to the inspection
//! stage (`crate::stages`).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sipguard_common::{
    behaviour::Tally,
    config::{Config, DefaultAction, FragmentAction},
    counters::{Misc, Reason, decision_origin_slot},
    stages::Stage,
};
use sipguard_ebpf::{
    active_policy::ActivePolicy,
    packed::{Finding, PayloadKind, Trip},
};

use crate::{
    clock::now_ns,
    maps::CONFIG,
    packet::Packet,
    parse::{Headers, Segment, Side, parse},
    policy::{Decided, active, allowlisted, blocklisted, decided},
    sources::banned,
    stages::{Handoff, hand_over, handoff},
    standing::standing,
    verdict::{count, finish},
};

/// No real frame puts its payload further in (two VLAN tags, IPv6 and six extension headers
/// of the usual sizes, a TCP header with options are far below).
const MAX_PAYLOAD_OFFSET: usize = crate::packet::OFFSET_MASK;

#[xdp]
#[expect(clippy::needless_pass_by_value, reason = "the #[xdp] macro passes the context by value")]
pub(crate) fn sipguard(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // An array's index 0 always exists; the fallback only satisfies the type system.
    let Some(config) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let global = ActivePolicy::global(config);
    let (reason, policy) = match parse(&pkt, Side::Arriving) {
        Ok(Headers::NotIp) => (Reason::NotIp, global),
        Ok(Headers::NotSip) => (Reason::NotSipPort, global),
        Ok(Headers::Fragment) => match config.fragment_action() {
            FragmentAction::Pass => (Reason::FragmentPassed, global),
            FragmentAction::Drop => (Reason::FragmentDropped, global),
        },
        Ok(Headers::Segment(seg)) => match segment(config, &seg) {
            (Judged::Done(reason), policy) => (reason, policy),
            (Judged::Payload { payload_offset }, policy) => {
                let Some(h) = handoff() else {
                    return finish(&policy, Reason::DefaultPass);
                };
                *h = Handoff {
                    seg: Segment { payload_offset, ..seg },
                    policy,
                    kind: PayloadKind::UNCLASSIFIED,
                    charge: 0,
                    finding: Finding::NOTHING,
                    trip: Trip::NONE,
                    seen: Tally::zero(),
                };
                return hand_over(&ctx, Stage::Inspect, &policy);
            }
        },
        Err(_) => (Reason::Malformed, global),
    };
    finish(&policy, reason)
}

/// How far the header checks got.
enum Judged {
    /// Decided without the payload.
    Done(Reason),
    /// The payload decides: signatures (for SIP messages) and the rate limit. Its start line
    /// is classified by the inspection stage: here it would be verified once per state the
    /// header checks end in (hundreds on 6.1), there once.
    Payload { payload_offset: usize },
}

#[inline(always)]
fn segment(config: &Config, seg: &Segment) -> (Judged, ActivePolicy) {
    let Some(policy) = active(config, &seg.dst) else {
        return (Judged::Done(Reason::NotProtected), ActivePolicy::global(config));
    };
    let policy = policy.laundered(config.opaque_zero);
    (judge(config, seg, &policy), policy)
}

/// A drop by a decision of the fleet's store, counted by the decision's origin as well (what
/// the bouncer reports to the Local API), unless monitor mode lets it through.
#[inline(always)]
fn dropped_by_decision(policy: &ActivePolicy, origin: u8) -> Judged {
    if !policy.monitor() {
        count(decision_origin_slot(origin));
    }
    Judged::Done(Reason::Decision)
}

/// The checks of SIP-port traffic under `policy` that need no payload.
#[inline(always)]
fn judge(config: &Config, seg: &Segment, policy: &ActivePolicy) -> Judged {
    // Every parse path (VLAN tags, IP options, extension headers) reaches here with its own
    // exact payload offset. Made opaque, the rest of the program is verified once, not once
    // per path; the bound keeps packet access provably in range.
    let zero = config.opaque_zero;
    let mut seg = *seg;
    seg.payload_offset = seg.payload_offset.wrapping_add(zero as usize);
    if seg.payload_offset > MAX_PAYLOAD_OFFSET {
        return Judged::Done(Reason::Malformed);
    }
    let seg = &seg;
    if allowlisted(config, policy, &seg.src) {
        return Judged::Done(Reason::Allowlisted);
    }
    if banned(&seg.src.key()) {
        return Judged::Done(Reason::Banned);
    }
    match decided(&seg.src) {
        Decided::Proven { origin } => return dropped_by_decision(policy, origin),
        // An unproven ban another edge shared: this edge's own judgement of the source
        // stands (issue 27), so one forged packet at another edge cannot cut off a party
        // this edge has seen register or call.
        Decided::Unproven { origin } => {
            if standing(&seg.src.key(), config, now_ns()) {
                count(Misc::DecisionsWithheldStanding.slot());
            } else {
                return dropped_by_decision(policy, origin);
            }
        }
        Decided::Nothing => {}
    }
    if blocklisted(config, policy, &seg.src) {
        return Judged::Done(Reason::Blocklisted);
    }
    // Allowlist-only: nothing from an unlisted source is worth reading.
    if policy.default_action() == DefaultAction::Drop as u8 {
        return Judged::Done(Reason::DefaultDrop);
    }
    Judged::Payload { payload_offset: seg.payload_offset }
}
