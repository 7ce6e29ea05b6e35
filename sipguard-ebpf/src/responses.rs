//! The response path: a TC egress program that reads the status line of every SIP answer the
//! protected servers send (from a SIP port) and keeps what it says about the party it goes to
//! (`sipguard_common::behaviour`). A party whose answers trip a rule is banned, and the XDP
//! program drops what it sends from then on. Answers are never changed or held back.
//!
//! It runs for servers on the host and for servers behind a forwarding host alike: in both
//! cases the answer leaves through the protected interface.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use sipguard_common::{
    behaviour::{Answer, Behaviour, Judgement, Rule, Tally},
    config::{Config, DefaultAction},
    counters::Misc,
    events::{EV_BANNED, EV_MONITOR, NO_METHOD, REASON_BEHAVIOUR, pack_counts},
    lists::tag,
    policy::HAS_ALLOW,
    sip::{START_WINDOW, status_code},
    sources::BEHAVIOUR_SIG,
};
use sipguard_ebpf::active_policy::ActivePolicy;

use crate::{
    clock::now_ns,
    events::{Detail, Incident, report},
    maps::{BEHAVIOUR, CONFIG},
    packet::Packet,
    parse::{Headers, Segment, Side, parse},
    policy::{global_listed, listed, policy_for},
    sources::ban,
    verdict::count,
};

/// The answer goes on as if this program were not there: the next program (tcx) or the
/// qdisc's default (clsact) decides.
const CARRY_ON: i32 = TC_ACT_UNSPEC;

#[classifier]
#[expect(clippy::needless_pass_by_value, reason = "the macro passes the context by value")]
pub(crate) fn sipguard_responses(ctx: TcContext) -> i32 {
    observe(&ctx);
    CARRY_ON
}

#[inline(always)]
fn observe(ctx: &TcContext) {
    let Some(config) = CONFIG.get(0) else {
        return;
    };
    let pkt = Packet::new(ctx.data(), ctx.data_end());
    let Ok(Headers::Segment(seg)) = parse(&pkt, Side::Leaving) else {
        return;
    };
    let Some(status) = status(ctx, &pkt, seg.payload_offset) else {
        return;
    };
    count(Misc::Responses.slot());
    let answer = Answer::of(status);
    if answer == Answer::Other {
        return;
    }
    // The server is the answer's source: its policy says whether it is protected, and how.
    let global = ActivePolicy::global(config);
    let policy = match if config.has_policies != 0 { policy_for(&seg.src) } else { None } {
        Some(p) => ActivePolicy::of(p),
        None if global.default_action() == DefaultAction::Off as u8 => return,
        None => global,
    };
    let party = &seg.dst;
    if (policy.flags() & HAS_ALLOW != 0
        && listed(party, true, tag(policy.id(), policy.allow_gen())))
        || global_listed(config, party, true, config.allow_gen)
    {
        return;
    }
    if let Judgement::Tripped(rule, seen) = judge(config, &party.key(), answer) {
        tripped(ctx, &seg, policy.monitor(), rule, &seen);
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

/// Counts the answer in the party's state (a new state if it has none).
#[inline(always)]
fn judge(config: &Config, key: &[u8; 16], answer: Answer) -> Judgement {
    let now = now_ns();
    let limits = config.behaviour_limits();
    if let Some(state) = BEHAVIOUR.get_ptr_mut(key) {
        // SAFETY: pointer from a successful lookup. Two CPUs answering the same party at once
        // may lose a count: the rules' thresholds are estimates anyway.
        return unsafe { (*state).observe(now, answer, &limits) };
    }
    let mut fresh = Behaviour::starting(now);
    let judgement = fresh.observe(now, answer, &limits);
    // A full LRU evicts its oldest party; a failed insert only loses this answer.
    BEHAVIOUR.insert(key, fresh, 0).ok();
    judgement
}

/// A rule tripped: ban the party (monitor mode: a ban that only counts) and report it. Out of
/// line (it runs once per ban), so within BPF's five arguments.
#[inline(never)]
fn tripped(ctx: &TcContext, seg: &Segment, monitor: bool, rule: Rule, seen: &Tally) {
    let Some(config) = CONFIG.get(0) else {
        return;
    };
    count(Misc::of_rule(rule).slot());
    let mut flags = if monitor { EV_MONITOR } else { 0 };
    if ban(&seg.dst.key(), config, BEHAVIOUR_SIG + rule as u16, monitor) {
        count(Misc::BansAdded.slot());
        flags |= EV_BANNED;
    }
    let (first, second) = pack_counts(seen);
    // The record names the party as its source, like every other incident.
    let from_party = Segment {
        src: seg.dst,
        dst: seg.src,
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        ..*seg
    };
    let incident = Incident {
        reason: REASON_BEHAVIOUR,
        sig: rule as u16,
        method: NO_METHOD,
        flags,
        detail: Detail::Counts(first, second),
    };
    // SAFETY: the context's buffer pointer is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    report(config, ifindex, &from_party, &incident);
}
