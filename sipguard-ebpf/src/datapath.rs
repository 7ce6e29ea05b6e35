//! The per-packet pipeline, cheapest decisions first (see docs/architecture.md):
//! L2-L4 parse, SIP port, allowlist, bans, blocklist, default, payload inspection, rate limit.

use aya_ebpf::{bindings::xdp_action, macros::xdp, maps::lpm_trie::Key, programs::XdpContext};
use sipguard_common::{
    config::{Config, DefaultAction, FragmentAction, Mode},
    counters::{Misc, PayloadClass, Reason, Verdict, method_slot},
    events::{EV_BANNED, EV_MONITOR, NO_METHOD},
    lists::{GLOBAL_POLICY, TAG_BITS, filter_bit, filter_slot, filter_word, tag, v4_key, v6_key},
    policy::{HAS_ALLOW, HAS_BLOCK, MAX_POLICIES, Policy},
    sip::{START_WINDOW, StartLine, classify_start_line},
    sources::NO_SIG,
};

use crate::{
    events::{Incident, report},
    inspect::inspect,
    maps::{
        ALLOW_V4, ALLOW_V6, BLOCK_V4, BLOCK_V6, CONFIG, DEST_DROPS, DEST_V4, DEST_V6, HANDOFF,
        LIST_FILTER, STATS,
    },
    packet::Packet,
    parse::{Addr, Headers, Segment, parse},
    sources::{Rate, ban, banned, rate},
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
pub struct Handoff {
    pub seg: Segment,
    pub scope: Scope,
    /// Method byte, [`RESPONSE`], [`INSPECT`].
    pub kind: u32,
}

#[xdp]
#[expect(clippy::needless_pass_by_value, reason = "the #[xdp] macro passes the context by value")]
pub fn sipguard(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // An array's index 0 always exists; the fallback only satisfies the type system.
    let Some(config) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let global = Scope::global(config);
    let (reason, scope) = match parse(&pkt) {
        Ok(Headers::NotIp) => (Reason::NotIp, global),
        Ok(Headers::NotSip) => (Reason::NotSipPort, global),
        Ok(Headers::Fragment) => match config.fragment_action() {
            FragmentAction::Pass => (Reason::FragmentPassed, global),
            FragmentAction::Drop => (Reason::FragmentDropped, global),
        },
        Ok(Headers::Segment(seg)) => match segment(&pkt, config, &seg) {
            (Judged::Done(reason), scope) => (reason, scope),
            (Judged::Payload { kind, payload_offset }, scope) => {
                let Some(handoff) = HANDOFF.get_ptr_mut(0) else {
                    return finish(&scope, Reason::DefaultPass);
                };
                // SAFETY: this CPU's value; XDP does not nest.
                unsafe {
                    *handoff = Handoff { seg: Segment { payload_offset, ..seg }, scope, kind }
                };
                return payload_stage(ctx.ctx);
            }
        },
        Err(_) => (Reason::Malformed, global),
    };
    finish(&scope, reason)
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
    let reason = payload_verdict(&ctx, config, &h.seg, &h.scope, h.kind);
    finish(&h.scope, reason)
}

/// The policy a packet is judged by: a protected destination's own, or the global one.
/// Fields stay the raw values read from maps: turned into enums and options here, each
/// variant would be a separate path through everything after (see docs, "Verifier"). Packed
/// in one word: as six fields, they took six registers, and with BPF's four callee-saved
/// registers, six stack slots of the main function, whose frame the inspection's frames are
/// stacked on.
#[derive(Clone, Copy)]
pub struct Scope(u64);

/// Bit positions in a [`Scope`]: the policy id (0: global; selects the per-destination lists
/// and drop counter), a `DefaultAction` and a `Mode` as stored, the generations of the
/// destination's lists and its `HAS_ALLOW`/`HAS_BLOCK` flags.
const ID_BITS: u32 = MAX_POLICIES.trailing_zeros();
const DEFAULT_AT: u32 = 24;
const MODE_AT: u32 = 32;
const ALLOW_GEN_AT: u32 = 40;
const BLOCK_GEN_AT: u32 = 41;
const FLAGS_AT: u32 = 48;
const _: () = assert!(MAX_POLICIES.is_power_of_two() && ID_BITS <= DEFAULT_AT);

impl Scope {
    #[inline(always)]
    fn pack(
        id: u32,
        default_action: u8,
        mode: u8,
        allow_gen: u8,
        block_gen: u8,
        flags: u32,
    ) -> Self {
        Self(
            u64::from(id & (MAX_POLICIES - 1))
                | u64::from(default_action) << DEFAULT_AT
                | u64::from(mode) << MODE_AT
                | u64::from(allow_gen & 1) << ALLOW_GEN_AT
                | u64::from(block_gen & 1) << BLOCK_GEN_AT
                | u64::from(flags & (HAS_ALLOW | HAS_BLOCK)) << FLAGS_AT,
        )
    }

    #[inline(always)]
    fn global(config: &Config) -> Self {
        let (default_action, mode) = config.raw_policy();
        Self::pack(GLOBAL_POLICY, default_action, mode, 0, 0, 0)
    }

    /// The same value, unknown to the verifier: the global and per-destination paths then
    /// meet in one state, and what follows is verified once. (Every field is masked where it
    /// is read.)
    #[inline(always)]
    fn laundered(self, zero: u32) -> Self {
        Self(self.0.wrapping_add(u64::from(zero)))
    }

    #[inline(always)]
    fn of(p: &Policy) -> Self {
        Self::pack(p.id, p.default_action, p.mode, p.allow_gen, p.block_gen, p.flags)
    }

    #[inline(always)]
    fn id(self) -> u32 {
        (self.0 as u32) & (MAX_POLICIES - 1)
    }

    #[inline(always)]
    fn default_action(self) -> u8 {
        (self.0 >> DEFAULT_AT) as u8
    }

    #[inline(always)]
    fn allow_gen(self) -> u8 {
        (self.0 >> ALLOW_GEN_AT) as u8 & 1
    }

    #[inline(always)]
    fn block_gen(self) -> u8 {
        (self.0 >> BLOCK_GEN_AT) as u8 & 1
    }

    #[inline(always)]
    fn flags(self) -> u32 {
        (self.0 >> FLAGS_AT) as u32 & (HAS_ALLOW | HAS_BLOCK)
    }

    #[inline(always)]
    fn monitor(self) -> bool {
        (self.0 >> MODE_AT) as u8 == Mode::Monitor as u8
    }
}

/// Counts the verdict once and turns it into an XDP action, honouring monitor mode.
#[inline(always)]
fn finish(scope: &Scope, reason: Reason) -> u32 {
    match reason.verdict() {
        Verdict::Pass => {
            count(reason.slot(false));
            xdp_action::XDP_PASS
        }
        Verdict::Drop => {
            if let Some(c) = DEST_DROPS.get_ptr_mut(scope.id()) {
                // SAFETY: per-CPU slot, touched only by this CPU.
                unsafe { *c += 1 };
            }
            let monitor = scope.monitor();
            count(reason.slot(monitor));
            if monitor { xdp_action::XDP_PASS } else { xdp_action::XDP_DROP }
        }
    }
}

/// The policy of a protected destination, if it has one.
#[inline(always)]
fn policy_for(dst: &Addr) -> Option<&'static Policy> {
    match dst {
        Addr::V4(a) => DEST_V4.get(Key::new(32, *a)),
        Addr::V6(a) => DEST_V6.get(Key::new(128, *a)),
    }
}

#[inline(always)]
pub fn count(slot: u32) {
    if let Some(c) = STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot is only touched by this CPU, and XDP does not nest.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn segment(pkt: &Packet, config: &Config, seg: &Segment) -> (Judged, Scope) {
    let global = Scope::global(config);
    let scope = match if config.has_policies != 0 { policy_for(&seg.dst) } else { None } {
        Some(p) => Scope::of(p),
        None if global.default_action() == DefaultAction::Off as u8 => {
            return (Judged::Done(Reason::NotProtected), global);
        }
        None => global,
    }
    .laundered(config.opaque_zero);
    (judge(pkt, config, seg, &scope), scope)
}

/// The checks of SIP-port traffic under `scope` that need no payload.
#[inline(always)]
fn judge(pkt: &Packet, config: &Config, seg: &Segment, scope: &Scope) -> Judged {
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
    if (scope.flags() & HAS_ALLOW != 0
        && listed(&seg.src, true, tag(scope.id(), scope.allow_gen())))
        || global_listed(config, &seg.src, true, config.allow_gen)
    {
        return Judged::Done(Reason::Allowlisted);
    }
    if banned(&seg.src.key()) {
        return Judged::Done(Reason::Banned);
    }
    if (scope.flags() & HAS_BLOCK != 0
        && listed(&seg.src, false, tag(scope.id(), scope.block_gen())))
        || global_listed(config, &seg.src, false, config.block_gen)
    {
        return Judged::Done(Reason::Blocklisted);
    }
    // Allowlist-only: nothing from an unlisted source is worth reading.
    if scope.default_action() == DefaultAction::Drop as u8 {
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
    scope: &Scope,
    kind: u32,
) -> Reason {
    let method = (kind & 0xff) as u8;
    if kind & INSPECT != 0 {
        let hit = inspect_message(ctx, config, seg, kind);
        if hit != 0 {
            return caught(ctx, config, seg, hit, method, scope.monitor());
        }
    }
    match rate(&seg.src.key(), config) {
        Rate::Conforms => Reason::DefaultPass,
        Rate::Exceeds { report: true } => {
            let incident = Incident {
                reason: Reason::RateLimited as u8,
                sig: NO_SIG,
                method,
                flags: if scope.monitor() { EV_MONITOR } else { 0 },
                ua: None,
            };
            report(config, ctx.ingress_ifindex() as u32, seg, &incident);
            Reason::RateLimited
        }
        Rate::Exceeds { report: false } => Reason::RateLimited,
    }
}

/// Looks for signatures. A separate BPF function whose frame (the line walker) does not add
/// to the main one's. Returns 0, or a decisive match packed as
/// `sig | ua_off << 16 | ua_len << 32`: a register, not a struct on the stack.
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
        None => 0,
    }
}

/// Set in a non-zero [`inspect_message`] result.
const HIT: u64 = 1 << 63;

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
    let mut flags = if monitor { EV_MONITOR } else { 0 };
    if ban(&seg.src.key(), config, sig, monitor) {
        count(Misc::BansAdded.slot());
        flags |= EV_BANNED;
    }
    let ua = (ua_len > 0).then_some((ua_off, ua_len));
    let incident = Incident { reason: Reason::Signature as u8, sig, method, flags, ua };
    report(config, ctx.ingress_ifindex() as u32, seg, &incident);
    Reason::Signature
}

/// Looks the source up in the allowlist (`allow`) or blocklist tagged `tag`.
#[inline(always)]
fn listed(src: &Addr, allow: bool, tag: u32) -> bool {
    match src {
        Addr::V4(a) => {
            let key = Key::new(TAG_BITS + 32, v4_key(tag, *a));
            let map = if allow { &ALLOW_V4 } else { &BLOCK_V4 };
            map.get(&key).is_some()
        }
        Addr::V6(a) => {
            let key = Key::new(TAG_BITS + 128, v6_key(tag, *a));
            let map = if allow { &ALLOW_V6 } else { &BLOCK_V6 };
            map.get(&key).is_some()
        }
    }
}

/// Looks the source up in a global list, unless its bitmap says no entry covers the source's
/// IPv4 `/24` (see `sipguard_common::lists::FILTER_BLOCK_BITS`; IPv6 sources are always
/// looked up).
#[inline(always)]
fn global_listed(config: &Config, src: &Addr, allow: bool, generation: u8) -> bool {
    if config.list_filters != 0
        && let Addr::V4(a) = src
        && let Some(word) = LIST_FILTER.get(filter_word(filter_slot(allow, generation), *a))
        && word & filter_bit(*a) == 0
    {
        return false;
    }
    listed(src, allow, tag(GLOBAL_POLICY, generation))
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
