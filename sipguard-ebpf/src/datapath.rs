//! The per-packet pipeline, cheapest decisions first (see docs/architecture.md):
//! L2-L4 parse, SIP port, source lists, payload class, default policy.

use aya_ebpf::{bindings::xdp_action, macros::xdp, maps::lpm_trie::Key, programs::XdpContext};
use sipguard_common::{
    config::{Config, DefaultAction, FragmentAction, Mode},
    counters::{PayloadClass, Reason, Verdict, method_slot},
    lists::{GLOBAL_TAG, TAG_BITS, v4_key, v6_key},
    sip::{START_WINDOW, StartLine, classify_start_line},
};

use crate::{
    maps::{ALLOW_V4, ALLOW_V6, BLOCK_V4, BLOCK_V6, CONFIG, PORTS, STATS},
    packet::Packet,
    parse::{Addr, Headers, Segment, parse},
};

#[xdp]
#[expect(clippy::needless_pass_by_value, reason = "the #[xdp] macro passes the context by value")]
pub fn sipguard(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let config = CONFIG.get(0).copied().unwrap_or_default();
    let reason = match parse(&pkt) {
        Ok(Headers::NotIp) => Reason::NotIp,
        Ok(Headers::OtherProtocol) => Reason::NotSipPort,
        Ok(Headers::Fragment) => match config.fragment_action() {
            FragmentAction::Pass => Reason::FragmentPassed,
            FragmentAction::Drop => Reason::FragmentDropped,
        },
        Ok(Headers::Segment(seg)) => segment(&pkt, &config, &seg),
        Err(_) => Reason::Malformed,
    };
    finish(&config, reason)
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
fn count(slot: u32) {
    if let Some(c) = STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot is only touched by this CPU, and XDP does not nest.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn segment(pkt: &Packet, config: &Config, seg: &Segment) -> Reason {
    if !is_sip_port(seg.dst_port) {
        return Reason::NotSipPort;
    }
    if listed(&seg.src, true) {
        return Reason::Allowlisted;
    }
    if listed(&seg.src, false) {
        return Reason::Blocklisted;
    }
    // Allowlist-only: nothing from an unlisted source is worth reading.
    if config.default_action() == DefaultAction::Drop {
        return Reason::DefaultDrop;
    }
    count_payload_class(pkt, seg.payload_offset);
    Reason::DefaultPass
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

#[inline(always)]
fn count_payload_class(pkt: &Packet, offset: usize) {
    let class = match pkt.bytes::<START_WINDOW>(offset) {
        Ok(head) => match classify_start_line(head) {
            StartLine::Request(method) => {
                count(method_slot(method));
                PayloadClass::SipRequest
            }
            StartLine::Response => PayloadClass::SipResponse,
            StartLine::NotSip => PayloadClass::NotSip,
        },
        Err(_) if pkt.has_byte(offset) => PayloadClass::NotSip,
        Err(_) => PayloadClass::Empty,
    };
    count(class.slot());
}
