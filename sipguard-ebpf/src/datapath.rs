//! The entry program, the one attached: L2-L4 parse, SIP port, the destination's policy, the
//! allowlists, bans, decisions, blocklists and the default, cheapest first (see
//! docs/architecture.md). What it cannot decide from the headers it hands to the inspection
//! stage (`crate::stages`).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sipguard_common::{
    behaviour::Tally,
    config::{Config, DefaultAction, FragmentAction},
    counters::{PayloadClass, Reason, method_slot},
    events::NO_METHOD,
    lists::tag,
    policy::{HAS_ALLOW, HAS_BLOCK},
    sip::{START_WINDOW, StartLine, classify_start_line},
    stages::Stage,
};
use sipguard_ebpf::active_policy::ActivePolicy;

use crate::{
    maps::CONFIG,
    packet::Packet,
    parse::{Headers, Segment, Side, parse},
    policy::{decided, global_listed, listed, policy_for},
    sources::banned,
    stages::{Handoff, INSPECT, RESPONSE, hand_over, handoff},
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
        Ok(Headers::Segment(seg)) => match segment(&pkt, config, &seg) {
            (Judged::Done(reason), policy) => (reason, policy),
            (Judged::Payload { kind, payload_offset }, policy) => {
                let Some(h) = handoff() else {
                    return finish(&policy, Reason::DefaultPass);
                };
                *h = Handoff {
                    seg: Segment { payload_offset, ..seg },
                    policy,
                    kind,
                    charge: 0,
                    hit: 0,
                    trip: 0,
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
    /// The payload decides: signatures (for SIP messages) and the rate limit.
    Payload { kind: u32, payload_offset: usize },
}

#[inline(always)]
fn segment(pkt: &Packet, config: &Config, seg: &Segment) -> (Judged, ActivePolicy) {
    let global = ActivePolicy::global(config);
    let policy = match if config.has_policies != 0 { policy_for(&seg.dst) } else { None } {
        Some(p) => ActivePolicy::of(p),
        None if global.default_action() == DefaultAction::Off as u8 => {
            return (Judged::Done(Reason::NotProtected), global);
        }
        None => global,
    }
    .laundered(config.opaque_zero);
    (judge(pkt, config, seg, &policy), policy)
}

/// The checks of SIP-port traffic under `policy` that need no payload.
#[inline(always)]
fn judge(pkt: &Packet, config: &Config, seg: &Segment, policy: &ActivePolicy) -> Judged {
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
    if (policy.flags() & HAS_ALLOW != 0
        && listed(&seg.src, true, tag(policy.id(), policy.allow_gen())))
        || global_listed(config, &seg.src, true, config.allow_gen)
    {
        return Judged::Done(Reason::Allowlisted);
    }
    if banned(&seg.src.key()) {
        return Judged::Done(Reason::Banned);
    }
    if decided(&seg.src) {
        return Judged::Done(Reason::Decision);
    }
    if (policy.flags() & HAS_BLOCK != 0
        && listed(&seg.src, false, tag(policy.id(), policy.block_gen())))
        || global_listed(config, &seg.src, false, config.block_gen)
    {
        return Judged::Done(Reason::Blocklisted);
    }
    // Allowlist-only: nothing from an unlisted source is worth reading.
    if policy.default_action() == DefaultAction::Drop as u8 {
        return Judged::Done(Reason::DefaultDrop);
    }
    let (start, method) = classify_payload(pkt, seg.payload_offset);
    let inspect = if let StartLine::Request(_) | StartLine::Response = start { INSPECT } else { 0 };
    let response = if start == StartLine::Response { RESPONSE } else { 0 };
    Judged::Payload {
        kind: u32::from(method) | response | inspect,
        payload_offset: seg.payload_offset,
    }
}

/// Classifies and counts the payload's start line; returns it with the method byte for events.
#[inline(always)]
fn classify_payload(pkt: &Packet, offset: usize) -> (StartLine, u8) {
    let (start, class, method) = match pkt.bytes_at::<START_WINDOW>(offset) {
        Ok(head) => match classify_start_line(head) {
            s @ StartLine::Request(m) => {
                count(method_slot(m));
                (s, PayloadClass::SipRequest, m as u8)
            }
            s @ StartLine::Response => (s, PayloadClass::SipResponse, NO_METHOD),
            s @ StartLine::NotSip => (s, PayloadClass::NotSip, NO_METHOD),
        },
        Err(_) if pkt.has_byte(crate::packet::mask_offset(offset)) => {
            (StartLine::NotSip, PayloadClass::NotSip, NO_METHOD)
        }
        Err(_) => (StartLine::NotSip, PayloadClass::Empty, NO_METHOD),
    };
    count(class.slot());
    (start, method)
}
