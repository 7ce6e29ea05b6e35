//! The per-packet pipeline, cheapest decisions first (see docs/architecture.md):
//! L2-L4 parse, SIP port, allowlist, bans, blocklist, default, payload inspection, rate limit.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use sipguard_common::{
    behaviour::Tally,
    config::{Config, DefaultAction, FragmentAction},
    counters::{Misc, PayloadClass, Reason, method_slot},
    events::{EV_MONITOR, NO_METHOD},
    lists::tag,
    policy::{HAS_ALLOW, HAS_BLOCK},
    sip::{START_WINDOW, StartLine, classify_start_line},
    sources::{DOMAIN_SIG, NO_SIG},
    trust::Withheld,
};
use sipguard_ebpf::active_policy::ActivePolicy;

use crate::{
    addressee,
    events::{Detail, Incident, report},
    inspect::inspect,
    maps::CONFIG,
    packet::Packet,
    parse::{Headers, Segment, Side, parse},
    policy::{decided, global_listed, listed, policy_for},
    rules,
    sources::{Rate, banned, rate, sentence},
    trust::{self, Evidence},
    verdict::{count, finish},
};

/// No real frame puts its payload further in (two VLAN tags, IPv6 and six extension headers
/// of the usual sizes, a TCP header with options are far below).
const MAX_PAYLOAD_OFFSET: usize = crate::packet::OFFSET_MASK;
/// Flag in the `kind` passed to [`inspect_message`]: the message is a response.
const RESPONSE: u32 = 0x100;
/// Flag in the `kind` handed to the payload stage: the payload is a SIP message.
const INSPECT: u32 = 0x200;

/// What the header checks hand to [`payload_stage`], through scratch memory.
#[derive(Clone, Copy)]
pub(crate) struct Handoff {
    pub seg: Segment,
    pub policy: ActivePolicy,
    /// Method byte, [`RESPONSE`], [`INSPECT`].
    pub kind: u32,
    /// Set by the payload stage for `extension_scan`: [`USER_NOTED`] and the bucket of the
    /// user the request addressed (0: none).
    pub user: u64,
    /// Set when that user tripped a rule (`rules::addressed`'s result), with the estimate:
    /// [`trip_stage`] reports it.
    pub trip: u64,
    pub seen: Tally,
}

/// The header checks' results for the payload stage (see `datapath::payload_stage`).
#[map(name = "SG_HANDOFF")]
pub(crate) static HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);

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
                let Some(handoff) = HANDOFF.get_ptr_mut(0) else {
                    return finish(&policy, Reason::DefaultPass);
                };
                // SAFETY: this CPU's value; XDP does not nest.
                unsafe {
                    *handoff = Handoff {
                        seg: Segment { payload_offset, ..seg },
                        policy,
                        kind,
                        user: 0,
                        trip: 0,
                        seen: Tally::zero(),
                    };
                };
                let action = payload_stage(ctx.ctx);
                // SAFETY: as above. The user the request addressed is counted, and a trip
                // banned and reported, here, after the payload stage returned: within it,
                // their frames would be stacked on its own and the inspection's, past BPF's
                // 512 bytes (6.1 counts them so).
                unsafe {
                    let user = (*handoff).user;
                    if user != 0 {
                        let h = &mut *handoff;
                        let bucket = user & 63;
                        h.trip = rules::addressed(
                            config,
                            &h.seg.src,
                            bucket,
                            policy.monitor(),
                            &mut h.seen,
                        );
                        if h.trip != 0 {
                            trip_stage(ctx.ctx);
                        }
                    }
                }
                return action;
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

/// The payload stage: inspection, bans, events, the rate limit, and the verdict. A separate
/// BPF function, entered only in tail position and with its inputs in scratch memory
/// ([`Handoff`], `SG_HANDOFF`), so every parse path reaches it in the same verifier state and it is verified
/// once. (Passed in registers or on the stack, the inputs would differ per path: IPv4 or
/// IPv6, UDP or TCP, each VLAN layout. Older verifiers, 6.1's, then verify the whole
/// inspection once per path and exceed the instruction limit.)
#[inline(never)]
fn payload_stage(raw: *mut aya_ebpf::bindings::xdp_md) -> u32 {
    let ctx = XdpContext::new(raw);
    let (Some(config), Some(h)) = (CONFIG.get(0), HANDOFF.get(0)) else {
        return xdp_action::XDP_PASS;
    };
    // Read in place, not copied: this frame's stack adds to the walker's.
    let reason = payload_verdict(&ctx, config, &h.seg, &h.policy, h.kind);
    finish(&h.policy, reason)
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

/// The verdict from the payload: a decisive signature match, else the rate limit.
#[inline(always)]
fn payload_verdict(
    ctx: &XdpContext,
    config: &Config,
    seg: &Segment,
    policy: &ActivePolicy,
    kind: u32,
) -> Reason {
    let method = (kind & 0xff) as u8;
    if kind & INSPECT != 0 {
        let hit = inspect_message(ctx, config, seg, kind);
        if hit & HIT != 0 {
            return caught(ctx, config, seg, hit, method, policy.monitor());
        }
        if hit & WALKED != 0 && kind & RESPONSE == 0 {
            if config.standing_secs() != 0 {
                trust::credentials(config, &seg.src);
            }
            let domains = addressee::declared(config, policy);
            let users = addressee::counting_users(config);
            if domains || users {
                let found = addressee::addressee(config, policy, domains, users);
                if found & addressee::UNKNOWN_DOMAIN != 0 {
                    return misaddressed(ctx, config, seg, method, policy.monitor());
                }
                if found & addressee::USER != 0 {
                    addressed(found & 63);
                }
            }
        }
    }
    match rate(&seg.src.key(), config) {
        Rate::Conforms => Reason::DefaultPass,
        Rate::Exceeds { report: true } => {
            let incident = Incident {
                reason: Reason::RateLimited as u8,
                sig: NO_SIG,
                method,
                flags: if policy.monitor() { EV_MONITOR } else { 0 },
                withheld: 0,
                detail: Detail::Nothing,
            };
            report(config, ctx.ingress_ifindex() as u32, seg, &incident);
            Reason::RateLimited
        }
        Rate::Exceeds { report: false } => Reason::RateLimited,
    }
}

/// Looks for signatures. A separate BPF function whose frame (the line walker) does not add
/// to the main one's. Returns 0 when nothing was inspected, [`WALKED`] when the message was
/// and nothing decided, or a decisive match packed as
/// `sig | ua_off << 16 | ua_len << 32 | HIT`: a register, not a struct on the stack.
#[inline(never)]
fn inspect_message(ctx: &XdpContext, config: &Config, seg: &Segment, kind: u32) -> u64 {
    let request = kind & RESPONSE == 0;
    let Some(finding) = inspect(ctx, seg.payload_offset, config, request) else {
        return 0;
    };
    count(Misc::Inspected.slot());
    if finding.truncated {
        count(Misc::InspectionTruncated.slot());
    }
    match finding.decisive {
        Some(sig) => {
            u64::from(sig) | (finding.ua_off as u64) << 16 | (finding.ua_len as u64) << 32 | HIT
        }
        None => WALKED,
    }
}

/// Set in an [`inspect_message`] result with a decisive match.
const HIT: u64 = 1 << 63;
/// Set in an [`inspect_message`] result when the walk ran to its end and decided nothing:
/// the scratch window holds this message and what the walk noted about it.
const WALKED: u64 = 1 << 62;

/// Marks [`Handoff::user`] as set.
const USER_NOTED: u64 = 1 << 8;

/// Hands the user a request addressed (its bucket) to the main function, which counts it for
/// `extension_scan`; a trip bans the source from its next packet on (this one goes on to
/// the rate limit).
#[inline(always)]
fn addressed(bucket: u64) {
    if let Some(h) = HANDOFF.get_ptr_mut(0) {
        // SAFETY: this CPU's value; XDP does not nest.
        unsafe { (*h).user = USER_NOTED | (bucket & 63) };
    }
}

/// Bans and reports the source whose request tripped a behaviour rule (from the handoff).
#[inline(never)]
fn trip_stage(raw: *mut aya_ebpf::bindings::xdp_md) {
    let ctx = XdpContext::new(raw);
    if let Some(h) = HANDOFF.get(0) {
        let ifindex = ctx.ingress_ifindex() as u32;
        let evidence = CONFIG
            .get(0)
            .map_or(Evidence::Unverified, |config| Evidence::of(ctx.ctx, config, &h.seg, ifindex));
        rules::tripped(ifindex, &h.seg, &h.seen, h.trip & !rules::TRIPPED, evidence);
    }
}

/// A request to an unknown domain: ban the source and report it, as for a signature.
#[inline(always)]
fn misaddressed(
    ctx: &XdpContext,
    config: &Config,
    seg: &Segment,
    method: u8,
    monitor: bool,
) -> Reason {
    let (flags, withheld) = convict(ctx, config, seg, DOMAIN_SIG, monitor);
    let incident = Incident {
        reason: Reason::UnknownDomain as u8,
        sig: NO_SIG,
        method,
        flags,
        withheld,
        detail: Detail::Nothing,
    };
    report(config, ctx.ingress_ifindex() as u32, seg, &incident);
    verdict(Reason::UnknownDomain, withheld)
}

/// A decisive match: ban the source and report it. Separate from the inspection so their
/// stack frames are never stacked on each other.
#[inline(always)]
fn caught(
    ctx: &XdpContext,
    config: &Config,
    seg: &Segment,
    hit: u64,
    method: u8,
    monitor: bool,
) -> Reason {
    let sig = (hit & 0xffff) as u16;
    let ua_off = ((hit >> 16) & 0xffff) as usize;
    let ua_len = ((hit >> 32) & 0xffff) as usize;
    let (flags, withheld) = convict(ctx, config, seg, sig, monitor);
    let detail = if ua_len > 0 { Detail::UserAgent(ua_off, ua_len) } else { Detail::Nothing };
    let incident =
        Incident { reason: Reason::Signature as u8, sig, method, flags, withheld, detail };
    report(config, ctx.ingress_ifindex() as u32, seg, &incident);
    verdict(Reason::Signature, withheld)
}

/// Bans the source of a packet that called for it, through the trust checks, asking what
/// the packet proves. Returns the incident's flags and the cause of a withheld ban.
#[inline(always)]
fn convict(ctx: &XdpContext, config: &Config, seg: &Segment, sig: u16, monitor: bool) -> (u8, u8) {
    let evidence = Evidence::of(ctx.ctx, config, seg, ctx.ingress_ifindex() as u32);
    sentence(&seg.src.key(), config, sig, monitor, evidence)
}

/// A forged source's packet is dropped as `spoofed`, whatever else it did.
#[inline(always)]
fn verdict(reason: Reason, withheld: u8) -> Reason {
    if withheld == Withheld::Spoofed as u8 { Reason::Spoofed } else { reason }
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
