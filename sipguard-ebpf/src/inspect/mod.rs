//! The inspection stage (`Stage::Inspect`): the payload's start line is classified and
//! counted, then, for a SIP message, the payload window is copied to per-CPU scratch
//! memory, then walked one header line per `bpf_loop` step ([`line`]). Each line costs a few
//! word-sized operations to find its colon and end, a compare or two to name its header, and
//! a DFA walk over the value that, for legitimate traffic, dies within a few bytes (see
//! docs/architecture.md). A decisive match goes on to the convict stage; a request walked to
//! its end, to the addressee stage when something there wants it; everything else meets the
//! rate limit here.

mod line;
mod score;

use core::ffi::c_void;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_loop, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::xdp,
    programs::XdpContext,
};
use sipguard_common::{
    config::Config,
    counters::{Misc, PayloadClass, method_slot},
    events::NO_METHOD,
    inspect::{MAX_LINES, TABLE_LEN, WINDOW},
    sip::{START_WINDOW, StartLine, classify_start_line},
    stages::Stage,
};
use sipguard_ebpf::{
    packed::{Finding, PayloadKind},
    window::{WalkState, load},
};

use crate::{
    addressee,
    maps::{AUTOMATA, CONFIG, SCRATCH},
    packet::Packet,
    sources::admitted,
    stages::{Charge, hand_over, handoff},
    verdict::{count, finish},
};
use line::{NO_SCOPE, Walker};

const MASK: usize = WINDOW - 1;
const _: () = assert!(TABLE_LEN == 1 << 20, "the table index mask is spelled out in `walk`");

#[xdp]
#[expect(clippy::needless_pass_by_value, reason = "the #[xdp] macro passes the context by value")]
pub(crate) fn sipguard_inspect(ctx: XdpContext) -> u32 {
    let (Some(config), Some(h)) = (CONFIG.get(0), handoff()) else {
        return xdp_action::XDP_PASS;
    };
    let policy = h.policy;
    h.kind = classify_payload(&Packet::new(ctx.data(), ctx.data_end()), h.seg.payload_offset);
    if h.kind.is_sip() {
        let request = !h.kind.is_response();
        let finding = inspect_message(&ctx, config, h.seg.payload_offset, request);
        if finding.is_decisive() {
            h.finding = finding;
            h.charge = Charge::Signature as u32;
            return hand_over(&ctx, Stage::Convict, &policy);
        }
        if finding.walked() && request && addressee::wanted(config, &policy) {
            return hand_over(&ctx, Stage::Addressee, &policy);
        }
    }
    finish(&policy, admitted(&ctx, config, h))
}

/// Classifies and counts the payload's start line.
#[inline(always)]
fn classify_payload(pkt: &Packet, offset: usize) -> PayloadKind {
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
    let sip = matches!(start, StartLine::Request(_) | StartLine::Response);
    PayloadKind::new(method, start == StartLine::Response, sip)
}

/// Looks for signatures in the SIP message at `payload_offset`; `request` says whether it
/// starts with a request line (whose Request-URI is walked too).
#[inline(always)]
fn inspect_message(
    ctx: &XdpContext,
    config: &Config,
    payload_offset: usize,
    request: bool,
) -> Finding {
    let Some(automaton) = AUTOMATA.get_ptr(u32::from(config.automaton_slot & 1)) else {
        return Finding::NOTHING;
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Finding::NOTHING;
    };
    // SAFETY: a plain helper call on the program's own context.
    let total = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    // The offset came through memory: bound it again (no real frame puts it further in).
    if total <= payload_offset || payload_offset > crate::packet::OFFSET_MASK {
        return Finding::NOTHING;
    }
    let mut len = total - payload_offset;
    let truncated = len > WINDOW;
    if truncated {
        len = WINDOW;
    }
    if len < 16 {
        return Finding::NOTHING;
    }
    // SAFETY: the buffer has room for WINDOW bytes plus the zero word written after them;
    // the scratch value is this CPU's alone for the duration of the program.
    let s = unsafe { &mut *scratch };
    // SAFETY: the copy's length is at most WINDOW, the buffer's size (checked above).
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, payload_offset as u32, s.buf.as_mut_ptr().cast(), len as u32)
            != 0
        {
            return Finding::NOTHING;
        }
        // A zero word after the data: NUL ends every walk, so no walk reads stale bytes.
        core::ptr::write_unaligned(s.buf.as_mut_ptr().add(len).cast::<u64>(), 0);
    }
    reset(&mut s.walk, len, truncated, request);
    let mut walker = Walker { scratch, automaton, config };
    // SAFETY: `line` only dereferences the Walker passed as its context.
    unsafe {
        bpf_loop(MAX_LINES, line::line as *mut c_void, (&raw mut walker).cast(), 0);
    }
    count(Misc::Inspected.slot());
    let st = &s.walk;
    let decisive = load(&st.decisive);
    if load(&st.truncated) != 0 || (load(&st.ended) == 0 && decisive == 0) {
        count(Misc::InspectionTruncated.slot());
    }
    if decisive == 0 {
        return Finding::WALKED;
    }
    let ua_off = load(&st.ua_off) as usize & MASK;
    let ua_len = load(&st.ua_len) as usize & MASK;
    Finding::decisive(((decisive - 1) & 0xffff) as u16, ua_off, ua_len)
}

/// Starts the walk state for a message. Field by field with volatile word stores: a struct
/// literal becomes a call to `memset`, which on BPF is a loop of byte stores (a tenth of the
/// inspection's time).
#[inline(always)]
fn reset(w: &mut WalkState, len: usize, truncated: bool, request: bool) {
    let fields: [(&mut u64, u64); 21] = [
        (&mut w.truncated, u64::from(truncated)),
        (&mut w.len, len as u64),
        (&mut w.off, 0),
        (&mut w.request, u64::from(request)),
        (&mut w.score, 0),
        (&mut w.decisive, 0),
        (&mut w.seen_used, 0),
        (&mut w.last_scope, NO_SCOPE),
        (&mut w.mid_line, 0),
        (&mut w.ua_off, 0),
        (&mut w.ua_len, 0),
        (&mut w.ended, 0),
        (&mut w.scope, 0),
        (&mut w.value, 0),
        (&mut w.uri_start, 0),
        (&mut w.uri_entry, 0),
        (&mut w.pending_n, 0),
        (&mut w.relay, 0),
        (&mut w.ruri, 0),
        (&mut w.to_at, 0),
        (&mut w.auth_at, 0),
    ];
    for (field, value) in fields {
        // SAFETY: a store to a field of this CPU's scratch value.
        unsafe { core::ptr::write_volatile(field, value) };
    }
}
