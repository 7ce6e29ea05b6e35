//! The per-packet pipeline, cheapest decisions first (see docs/architecture.md):
//! L2-L4 parse, SIP port, allowlist, bans, blocklist, default, payload inspection, rate limit.

use aya_ebpf::{bindings::xdp_action, macros::xdp, maps::lpm_trie::Key, programs::XdpContext};
use sipguard_common::{
    config::{Config, DefaultAction, FragmentAction, Mode},
    counters::{Misc, PayloadClass, Reason, Verdict, method_slot},
    events::{EV_BANNED, EV_MONITOR, NO_METHOD},
    lists::{GLOBAL_TAG, TAG_BITS, v4_key, v6_key},
    sip::{START_WINDOW, StartLine, classify_start_line},
    sources::NO_SIG,
};

use crate::{
    events::{Incident, report},
    inspect::inspect,
    maps::{ALLOW_V4, ALLOW_V6, BLOCK_V4, BLOCK_V6, CONFIG, PORTS, STATS},
    packet::Packet,
    parse::{Addr, Headers, Segment, parse},
    sources::{Rate, ban, banned, rate},
};

/// No real frame puts its payload further in (two VLAN tags, IPv6 and six extension headers
/// of the usual sizes, a TCP header with options are far below).
const MAX_PAYLOAD_OFFSET: usize = 0x3fff;
/// Flag in the `kind` passed to [`inspect_message`]: the message is a response.
const RESPONSE: u32 = 0x100;

#[xdp]
#[expect(clippy::needless_pass_by_value, reason = "the #[xdp] macro passes the context by value")]
pub fn sipguard(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    // An array's index 0 always exists; the fallback only satisfies the type system.
    let Some(config) = CONFIG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let reason = match parse(&pkt) {
        Ok(Headers::NotIp) => Reason::NotIp,
        Ok(Headers::OtherProtocol) => Reason::NotSipPort,
        Ok(Headers::Fragment) => match config.fragment_action() {
            FragmentAction::Pass => Reason::FragmentPassed,
            FragmentAction::Drop => Reason::FragmentDropped,
        },
        Ok(Headers::Segment(seg)) => segment(&ctx, &pkt, config, &seg),
        Err(_) => Reason::Malformed,
    };
    finish(config, reason)
}

/// Counts the verdict once and turns it into an XDP action, honouring monitor mode.
#[inline(always)]
fn finish(config: &Config, reason: Reason) -> u32 {
    match reason.verdict() {
        Verdict::Pass => {
            count(reason.slot(false));
            xdp_action::XDP_PASS
        }
        Verdict::Drop if config.mode() == Mode::Monitor => {
            count(reason.slot(true));
            xdp_action::XDP_PASS
        }
        Verdict::Drop => {
            count(reason.slot(false));
            xdp_action::XDP_DROP
        }
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
fn segment(ctx: &XdpContext, pkt: &Packet, config: &Config, seg: &Segment) -> Reason {
    if !is_sip_port(seg.dst_port) {
        return Reason::NotSipPort;
    }
    // Every parse path (VLAN tags, IP options, extension headers) reaches here with its own
    // exact payload offset. Made opaque, the rest of the program is verified once, not once
    // per path; the bound keeps packet access provably in range.
    let zero = config.opaque_zero;
    let mut seg = *seg;
    seg.payload_offset = seg.payload_offset.wrapping_add(zero as usize);
    if seg.payload_offset > MAX_PAYLOAD_OFFSET {
        return Reason::Malformed;
    }
    seg.tcp = seg.tcp.wrapping_add(zero as u8);
    let seg = &seg;
    if listed(&seg.src, true) {
        return Reason::Allowlisted;
    }
    let source = seg.src.key();
    if banned(&source) {
        return Reason::Banned;
    }
    if listed(&seg.src, false) {
        return Reason::Blocklisted;
    }
    // Allowlist-only: nothing from an unlisted source is worth reading.
    if config.default_action() == DefaultAction::Drop {
        return Reason::DefaultDrop;
    }
    let (start, method) = classify_payload(pkt, seg.payload_offset);
    if let StartLine::Request(_) | StartLine::Response = start {
        // One verifier state for every method, not one per method constant.
        let kind = (u32::from(method) | if start == StartLine::Response { RESPONSE } else { 0 })
            .wrapping_add(zero);
        if let Some(reason) = inspect_message(ctx, config, seg, kind) {
            return reason;
        }
    }
    match rate(&source, config) {
        Rate::Conforms => Reason::DefaultPass,
        Rate::Exceeds { report: true } => {
            let incident = Incident {
                reason: Reason::RateLimited as u8,
                sig: NO_SIG,
                method,
                flags: monitor_flag(config),
                ua: None,
            };
            report(config, ctx.ingress_ifindex() as u32, seg, &incident);
            Reason::RateLimited
        }
        Rate::Exceeds { report: false } => Reason::RateLimited,
    }
}

/// Looks for signatures; on a decisive match bans the source and reports it. A separate BPF
/// function: its stack frame (the line walker) does not add to the main one's.
#[inline(never)]
fn inspect_message(ctx: &XdpContext, config: &Config, seg: &Segment, kind: u32) -> Option<Reason> {
    let method = (kind & 0xff) as u8;
    let request = kind & RESPONSE == 0;
    let (finding, scratch) = inspect(ctx, seg.payload_offset, config, request)?;
    count(Misc::Inspected.slot());
    if finding.truncated {
        count(Misc::InspectionTruncated.slot());
    }
    let sig = finding.decisive?;
    let mut flags = monitor_flag(config);
    if ban(&seg.src.key(), config, sig, flags != 0) {
        count(Misc::BansAdded.slot());
        flags |= EV_BANNED;
    }
    // SAFETY: per-CPU scratch memory filled by this very inspection.
    let ua = (finding.ua_len > 0).then(|| (unsafe { &*scratch }, finding.ua_off, finding.ua_len));
    let incident = Incident { reason: Reason::Signature as u8, sig, method, flags, ua };
    report(config, ctx.ingress_ifindex() as u32, seg, &incident);
    Some(Reason::Signature)
}

#[inline(always)]
fn monitor_flag(config: &Config) -> u8 {
    if config.mode() == Mode::Monitor { EV_MONITOR } else { 0 }
}

#[inline(always)]
fn is_sip_port(port: u16) -> bool {
    PORTS.get(u32::from(port >> 6)).is_some_and(|word| word & (1u64 << (port & 63)) != 0)
}

/// Looks the source up in the global allowlist (`allow`) or blocklist.
#[inline(always)]
fn listed(src: &Addr, allow: bool) -> bool {
    match src {
        Addr::V4(a) => {
            let key = Key::new(TAG_BITS + 32, v4_key(GLOBAL_TAG, *a));
            let map = if allow { &ALLOW_V4 } else { &BLOCK_V4 };
            map.get(&key).is_some()
        }
        Addr::V6(a) => {
            let key = Key::new(TAG_BITS + 128, v6_key(GLOBAL_TAG, *a));
            let map = if allow { &ALLOW_V6 } else { &BLOCK_V6 };
            map.get(&key).is_some()
        }
    }
}

/// Classifies and counts the payload's start line; returns it with the method byte for events.
#[inline(always)]
fn classify_payload(pkt: &Packet, offset: usize) -> (StartLine, u8) {
    let (start, class, method) = match pkt.bytes::<START_WINDOW>(offset) {
        Ok(head) => match classify_start_line(head) {
            s @ StartLine::Request(m) => {
                count(method_slot(m));
                (s, PayloadClass::SipRequest, m as u8)
            }
            s @ StartLine::Response => (s, PayloadClass::SipResponse, NO_METHOD),
            s @ StartLine::NotSip => (s, PayloadClass::NotSip, NO_METHOD),
        },
        Err(_) if pkt.has_byte(offset) => (StartLine::NotSip, PayloadClass::NotSip, NO_METHOD),
        Err(_) => (StartLine::NotSip, PayloadClass::Empty, NO_METHOD),
    };
    count(class.slot());
    (start, method)
}
