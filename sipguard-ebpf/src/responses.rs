//! The response path: a TC egress program that reads the status line of every SIP answer the
//! protected servers send (from a SIP port) and keeps what it says about the party it goes to
//! (`sipguard_common::behaviour`). A party whose answers trip a rule is banned, and the XDP
//! program drops what it sends from then on. Answers are never changed or held back.
//!
//! It runs for servers on the host and for servers behind a forwarding host alike: in both
//! cases the answer leaves through the protected interface.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::TC_ACT_UNSPEC,
    helpers::bpf_loop,
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use sipguard_common::{
    behaviour::{Answer, Judgement, Rule, Tally},
    callee::CalleeScan,
    challenges::{CallIdScan, NonceScan},
    config::Config,
    counters::Misc,
    sip::{START_WINDOW, status_code},
};
use sipguard_ebpf::{
    cseq::{self, Answered},
    packed::Trip,
};

use crate::{
    clock::now_ns,
    evidence::Evidence,
    maps::{ANSWER, BEHAVIOUR, CONFIG},
    packet::Packet,
    parse::{Headers, Segment, Side, parse},
    policy::{active, allowlisted},
    rules::{self, tripped},
    standing,
    verdict::count,
};

/// The answer goes on as if this program were not there: the next program (tcx) or the
/// qdisc's default (clsact) decides.
const CARRY_ON: i32 = TC_ACT_UNSPEC;

#[classifier]
#[expect(clippy::needless_pass_by_value, reason = "the macro passes the context by value")]
pub(crate) fn sipguard_responses(ctx: TcContext) -> i32 {
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let Ok(Headers::Segment(seg)) = parse(&pkt, Side::Leaving) else {
        return CARRY_ON;
    };
    let Some(handoff) = ANSWER_HANDOFF.get_ptr_mut(0) else {
        return CARRY_ON;
    };
    // SAFETY: this CPU's value.
    unsafe {
        *handoff = AnswerHandoff {
            seg,
            answer: Answer::Other,
            rule: NO_RULE,
            monitor: 0,
            users: 0,
            seen: Tally::zero(),
        };
    }
    // Nothing of the parse is used after this point but the handoff, so every parse path
    // reaches the answer stage in one state and it is verified once. The ban and its report
    // run after the answer stage returns, not inside it: BPF's 512 bytes of stack hold all
    // frames of a call chain, and the two stages' frames together would not fit with the
    // report's (6.1 counts them so).
    if answer_stage(ctx.skb.skb) {
        ban_stage(ctx.skb.skb);
    }
    CARRY_ON
}

/// What the parse hands to [`answer_stage`], through scratch memory.
#[derive(Clone, Copy)]
pub(crate) struct AnswerHandoff {
    seg: Segment,
    answer: Answer,
    /// Set by the answer stage when a rule tripped: the rule (else [`NO_RULE`]), the
    /// estimate, monitor mode. Plain fields: an `Option` would be stored with undefined
    /// padding the verifier refuses to read.
    rule: u8,
    monitor: u8,
    users: u32,
    seen: Tally,
}

const NO_RULE: u8 = 0xff;

/// The parse's results for the answer stage (declared here, beside its type, as the XDP
/// program's `SG_HANDOFF` is in `datapath`: `maps` imports from no stage).
#[map(name = "SG_ANS_HANDOFF")]
pub(crate) static ANSWER_HANDOFF: PerCpuArray<AnswerHandoff> = PerCpuArray::with_max_entries(1, 0);

/// The answer's party and its state, in a BPF function of its own whose inputs come through
/// scratch memory, and after which the caller uses nothing of its own but the result: every
/// parse path (IPv4 or IPv6, UDP or TCP, VLAN tags) reaches it in the same verifier state, so
/// the verifier checks it once (as the XDP program's payload stage, see
/// docs/architecture.md).
///
/// Returns whether a rule tripped (the handoff then says which).
#[inline(never)]
fn answer_stage(raw: *mut aya_ebpf::bindings::__sk_buff) -> bool {
    let ctx = TcContext::new(raw);
    let (Some(config), Some(h)) = (CONFIG.get(0), ANSWER_HANDOFF.get_ptr_mut(0)) else {
        return false;
    };
    // SAFETY: this CPU's value, written by the parse just before.
    let h = unsafe { &mut *h };
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let Some(status) = status(&ctx, &pkt, h.seg.payload_offset) else {
        return false;
    };
    count(Misc::Responses.slot());
    h.answer = Answer::of(status);
    // A ringing or final answer that is no challenge or refusal may say the server took one
    // of the party's attempts.
    if status >= 180 && !matches!(h.answer, Answer::Challenge | Answer::Forbidden) {
        settle_stage(raw);
    }
    if h.answer == Answer::Other {
        return false;
    }
    match observe(&ctx, config, &h.seg, h.answer) {
        Some((rule, seen, users, monitor)) => {
            h.rule = rule as u8;
            h.seen = seen;
            h.users = users;
            h.monitor = u8::from(monitor);
            true
        }
        None => false,
    }
}

/// Settles, as taken, the attempt of the party this answer names, if the answer is to its
/// INVITE or REGISTER (inputs from the handoff): the server accepted the attempt's
/// credentials. An answer to anything else (an OPTIONS carrying an echoed nonce, which a
/// server answers without checking it) earns nothing. Out of line: its search's frame is not
/// stacked under the answer stage's other calls.
#[inline(never)]
fn settle_stage(raw: *mut aya_ebpf::bindings::__sk_buff) {
    let ctx = TcContext::new(raw);
    let (Some(config), Some(h)) = (CONFIG.get(0), ANSWER_HANDOFF.get(0)) else {
        return;
    };
    let key = h.seg.dst.key();
    if !standing::awaiting(&key) {
        return;
    }
    if matches!(answered(&ctx, h.seg.payload_offset), Answered::Invite | Answered::Register) {
        standing::credit(&key, config, now_ns(), answer_call_id().unwrap_or(0), false);
    }
}

/// Bans the party of a tripped rule and reports it (inputs from the handoff).
#[inline(never)]
fn ban_stage(raw: *mut aya_ebpf::bindings::__sk_buff) {
    let ctx = TcContext::new(raw);
    if let Some(h) = ANSWER_HANDOFF.get(0)
        && let Some(rule) = Rule::from_u16(u16::from(h.rule))
    {
        // The record names the party as its source, like every other incident.
        let from_party = Segment {
            src: h.seg.dst,
            dst: h.seg.src,
            src_port: h.seg.dst_port,
            dst_port: h.seg.src_port,
            ..h.seg
        };
        // SAFETY: the context's buffer pointer is valid for the program's run.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        // The party's own packets are not at hand here: no reverse path to ask. What proves
        // the party is its attempts (answers to its challenges' nonces) that the server
        // refused, for the rule they bear on.
        let own = rule == Rule::AuthFailures
            && CONFIG.get(0).is_some_and(|c| standing::own_failures(&h.seg.dst.key(), c));
        let evidence = if own { Evidence::Verified } else { Evidence::Unverified };
        tripped(
            ifindex,
            &from_party,
            &h.seen,
            Trip::new(rule as u8, h.monitor != 0, h.users),
            evidence,
        );
    }
}

/// Counts the answer for its party; returns the rule it tripped, with the estimate and
/// whether the server's policy is in monitor mode.
#[inline(always)]
fn observe(
    ctx: &TcContext,
    config: &Config,
    seg: &Segment,
    answer: Answer,
) -> Option<(Rule, Tally, u32, bool)> {
    // The server is the answer's source: its policy says whether it is protected, and how.
    let policy = active(config, &seg.src)?;
    let party = &seg.dst;
    if allowlisted(config, &policy, party) {
        return None;
    }
    let key = party.key();
    let now = now_ns();
    // A success only offsets failures or users addressed: a party whose state has none to
    // offset (most callers, since the XDP program notes every caller's users) needs it not
    // counted. Nor does a party whose standing is fresh need it renewed. Such answers cost
    // lookups, not a CSeq search.
    let mut grant = false;
    if answer == Answer::Success {
        let limits = config.behaviour_limits();
        // SAFETY: a pointer from a successful lookup, only read.
        let offsets =
            BEHAVIOUR.get_ptr(key).is_some_and(|s| unsafe { (*s).offsets_success(&limits) });
        grant = standing::needs_standing(&key, config, now);
        if !offsets && !grant {
            return None;
        }
        if !offsets {
            // Only the standing is at stake.
            if matches!(answered(ctx, seg.payload_offset), Answered::Register | Answered::Invite) {
                standing::grant_standing(&key, now);
            }
            return None;
        }
    }
    let answer = match answer {
        // What was challenged, refused or accepted matters: answers to OPTIONS (keepalives,
        // which servers answer without asking for credentials) say nothing about a party's
        // credentials, and a success must show what it answers, or pings would offset a
        // brute forcer's failures. "Not found" counts whatever it answers. A success that
        // answers a registration or a call gives the party standing.
        a @ (Answer::Challenge | Answer::Forbidden | Answer::Success) => {
            match answered(ctx, seg.payload_offset) {
                Answered::Options => return None,
                Answered::Unknown if a == Answer::Success => return None,
                Answered::Register | Answered::Invite if grant => {
                    standing::grant_standing(&key, now);
                    a
                }
                _ => a,
            }
        }
        // "Not found" to a number that a party with standing dialled is a dialer's stale
        // list (as `behaviour::counts_user` has it for the users a request addresses): not
        // counted. An enumeration of extensions, or of numbers by a party without standing,
        // is. The lookup comes first: it spares most parties' answers a search.
        Answer::NotFound => {
            if standing::standing(&key, config, now) && answers_number(ctx, seg.payload_offset) {
                count(Misc::NumbersNotFound.slot());
                return None;
            }
            Answer::NotFound
        }
        a => a,
    };
    // A challenge or a refusal may answer one of the party's attempts (a request whose
    // credentials echoed a nonce it was sent), which it settles as refused; the attempts the
    // server took are the party's credit.
    let accepted = if matches!(answer, Answer::Challenge | Answer::Forbidden) {
        standing::credit(&key, config, now, answer_call_id().unwrap_or(0), true)
    } else {
        0
    };
    // A challenge to a party with standing (the only parties that need the proof): its
    // nonce, which only the party can answer with (`standing::own_failures`).
    if answer == Answer::Challenge
        && standing::standing(&key, config, now)
        && let Some(hash) = challenge_nonce()
    {
        standing::challenged(&key, hash, now);
    }
    // A success's transaction, its Call-ID and CSeq number, read in the same pass as its
    // method: its retransmissions count once.
    let call = if answer == Answer::Success { answer_transaction() } else { 0 };
    match rules::answered(config, &key, answer, accepted, call) {
        Judgement::Tripped(rule, seen, users) => Some((rule, seen, users, policy.monitor())),
        Judgement::Fine => None,
    }
}

/// The status code, read from the linear part of the buffer; an answer whose start is not
/// there yet (a paged buffer) is pulled in first.
#[inline(always)]
fn status(ctx: &TcContext, pkt: &Packet, offset: usize) -> Option<u16> {
    if let Ok(head) = pkt.bytes_at::<START_WINDOW>(offset) {
        return status_code(head);
    }
    if (ctx.len() as usize) < offset + START_WINDOW {
        return None;
    }
    ctx.pull_data((offset + START_WINDOW) as u32).ok()?;
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    pkt.bytes_at::<START_WINDOW>(offset).ok().and_then(status_code)
}

/// The method the answer answers, from its `CSeq` header in the first `cseq::WINDOW` bytes.
#[inline(always)]
fn answered(ctx: &TcContext, offset: usize) -> Answered {
    let Some(s) = ANSWER.get_ptr_mut(0) else {
        return Answered::Unknown;
    };
    // An answer whose search never starts must not leave an earlier answer's Call-ID behind.
    // SAFETY: this CPU's value; a field of it.
    unsafe {
        CallIdScan::restart(&raw mut (*s).call);
        CalleeScan::restart(&raw mut (*s).callee);
    }
    let total = ctx.len() as usize;
    // The offset came through memory: bound it again (no real frame puts it further in).
    if offset > crate::packet::OFFSET_MASK || total <= offset {
        return Answered::Unknown;
    }
    let len = (total - offset).min(cseq::WINDOW);
    // 1..=WINDOW, in a form the verifier bounds.
    let n = sipguard_ebpf::and_mask!(len - 1, 0x3ff) + 1;
    // SAFETY: copies `n` <= WINDOW bytes of the packet into this CPU's scratch buffer, which
    // holds `BUF` (twice that).
    let copied = unsafe {
        aya_ebpf::helpers::bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            offset as u32,
            (*s).buf.as_mut_ptr().cast(),
            n as u32,
        )
    };
    if copied != 0 {
        return Answered::Unknown;
    }
    // SAFETY: this CPU's value. (Only a transmit nested inside another, a tunnel over a
    // protected interface, could overwrite it mid-use: that costs one answer's method.)
    let steps = unsafe { cseq::start(&mut *s, n as u64) };
    let mut search = Search { scratch: s };
    // SAFETY: `scan` only dereferences the Search on this stack, which outlives the loop.
    unsafe { bpf_loop(steps as u32, scan as *mut c_void, (&raw mut search).cast(), 0) };
    // SAFETY: as above.
    unsafe { cseq::method(&*s) }
}

/// The hash of the nonce in the challenge `answered` copied into `SG_ANSWER`, if one is there.
#[inline(always)]
fn challenge_nonce() -> Option<u32> {
    let s = ANSWER.get_ptr_mut(0)?;
    // SAFETY: this CPU's value; plain loads and stores of its fields.
    unsafe {
        let len = core::ptr::read_volatile(&raw const (*s).len);
        if len == 0 || len > cseq::WINDOW as u64 {
            return None;
        }
        NonceScan::restart(&raw mut (*s).nonce, false);
        let mut search = Search { scratch: s };
        bpf_loop(len as u32, nonce_byte as *mut c_void, (&raw mut search).cast(), 0);
        (*s).nonce.found()
    }
}

/// Whether the answer names a number in its `To` (`sipguard_common::callee`), after the
/// search of `answered`.
#[inline(always)]
fn answers_number(ctx: &TcContext, offset: usize) -> bool {
    answered(ctx, offset);
    ANSWER.get(0).is_some_and(|s| s.callee.names_number())
}

/// The hash of the Call-ID `answered` found beside the `CSeq` header, if it found one.
#[inline(always)]
fn answer_call_id() -> Option<u32> {
    ANSWER.get(0).and_then(|s| s.call.found())
}

/// The transaction the answer `answered` searched belongs to: its Call-ID's hash mixed with
/// its `CSeq` number (0: no Call-ID found).
#[inline(always)]
fn answer_transaction() -> u32 {
    ANSWER.get(0).map_or(0, |s| match s.call.found() {
        Some(call) => call ^ cseq::sequence(s).wrapping_mul(0x9e37_79b1),
        None => 0,
    })
}

/// One byte of the nonce search; 1 stops the loop.
extern "C" fn nonce_byte(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Search on the program's stack; its pointer was checked non-null.
    let s = unsafe { &mut *(*ctx.cast::<Search>()).scratch };
    let at = sipguard_ebpf::and_mask!(index as usize, 0x3ff);
    // SAFETY: masked into the buffer, which holds twice the window.
    let b = unsafe { *s.buf.get_unchecked(at) };
    i64::from(s.nonce.step(b))
}

/// `bpf_loop` takes its context on the stack: a pointer to the scratch memory.
struct Search {
    scratch: *mut cseq::AnswerScratch,
}

/// One byte of the `CSeq` search (`cseq::step`); 1 stops the loop.
extern "C" fn scan(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Search on the program's stack; its pointer was checked non-null.
    let s = unsafe { &mut *(*ctx.cast::<Search>()).scratch };
    i64::from(cseq::step(s, index))
}
