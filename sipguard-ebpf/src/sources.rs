//! Per-source verdicts that need state: bans and the rate limit.

use aya_ebpf::programs::XdpContext;
use sipguard_common::{
    config::Config,
    counters::{Misc, Reason},
    events::{EV_BANNED, EV_MONITOR, EV_VERIFIED},
    gcra,
    sources::{BAN_MONITOR, Ban, NO_SIG, RateState, SourceKey},
    trust::ReversePath,
};
use sipguard_ebpf::packed::BanOutcome;

use crate::{
    clock::now_ns,
    events::{Detail, Incident, report},
    evidence::{Evidence, spoofed},
    maps::{BANS, RATE},
    stages::Handoff,
    standing::withheld,
    verdict::count,
};

/// Whether `key` is banned now. Expired bans are removed on sight; live ones count the packet.
#[inline(always)]
pub(crate) fn banned(key: &SourceKey) -> bool {
    let Some(ban) = BANS.get_ptr_mut(key) else {
        return false;
    };
    let now = now_ns();
    // SAFETY: the pointer came from a successful lookup; concurrent updates only race on a
    // statistics counter.
    unsafe {
        if now < (*ban).expires_ns {
            (*ban).packets += 1;
            return true;
        }
    }
    // Another CPU may have removed it first: gone is gone.
    BANS.remove(key).ok();
    false
}

/// Bans `key` through the trust checks ([`ban`]) and says what became of it in an incident's
/// terms: its flags (`EV_MONITOR`, `EV_VERIFIED`, `EV_BANNED`) and the cause of a withheld
/// ban (0: none). Counts a ban made.
#[inline(always)]
pub(crate) fn sentence(
    key: &SourceKey,
    config: &Config,
    sig: u16,
    monitor: bool,
    evidence: Evidence,
) -> (u8, u8) {
    let mut flags = if monitor { EV_MONITOR } else { 0 };
    if evidence == Evidence::Verified {
        flags |= EV_VERIFIED;
    }
    let outcome = ban(key, config, sig, monitor, evidence);
    if outcome.banned() {
        count(Misc::BansAdded.slot());
        return (flags | EV_BANNED, 0);
    }
    (flags, outcome.cause())
}

/// Bans `key` for the configured time, if the trust checks let it (`crate::standing`; `evidence`
/// is what the packet that called for it proves).
#[inline(always)]
fn ban(
    key: &SourceKey,
    config: &Config,
    sig: u16,
    monitor: bool,
    evidence: Evidence,
) -> BanOutcome {
    if config.ban_ttl_secs == 0 {
        return BanOutcome::NOT_MADE;
    }
    let now = now_ns();
    if let Some(cause) = withheld(key, config, now, evidence) {
        return BanOutcome::withheld(cause as u8);
    }
    let ban = Ban {
        expires_ns: now + u64::from(config.ban_ttl_secs) * 1_000_000_000,
        created_ns: now,
        packets: 0,
        sig,
        flags: if monitor { BAN_MONITOR } else { 0 },
        reserved: 0,
    };
    if BANS.insert(key, ban, 0).is_ok() { BanOutcome::BANNED } else { BanOutcome::NOT_MADE }
}

/// The verdict on a packet whose payload no stage dropped, before the server sees it: a
/// source whose reverse path fails (`crate::evidence::spoofed`, as configured) is forged and
/// dropped as `spoofed`, whatever it says, so the server never answers it (its answers,
/// sent to the address the forgery named, would count against that party, issue 27); the
/// rest meets the rate limit.
#[inline(always)]
pub(crate) fn admitted(ctx: &XdpContext, config: &Config, h: &Handoff) -> Reason {
    if config.reverse_path() != ReversePath::Off
        && spoofed(ctx.ctx, config, &h.seg, ctx.ingress_ifindex() as u32)
    {
        return Reason::Spoofed;
    }
    limited(ctx, config, h)
}

/// The rate limit's verdict, reported once a minute per source.
#[inline(always)]
pub(crate) fn limited(ctx: &XdpContext, config: &Config, h: &Handoff) -> Reason {
    match rate(&h.seg.src.key(), config) {
        Rate::Conforms => Reason::DefaultPass,
        Rate::Exceeds { report: true } => {
            let incident = Incident {
                reason: Reason::RateLimited as u8,
                sig: NO_SIG,
                method: h.kind.method(),
                flags: if h.policy.monitor() { EV_MONITOR } else { 0 },
                withheld: 0,
                detail: Detail::Nothing,
            };
            report(config, ctx.ingress_ifindex() as u32, &h.seg, &incident);
            Reason::RateLimited
        }
        Rate::Exceeds { report: false } => Reason::RateLimited,
    }
}

/// What the rate limiter says about one more packet from a source.
pub(crate) enum Rate {
    Conforms,
    /// Over the limit; `report` is set once a minute per source.
    Exceeds {
        report: bool,
    },
}

const REPORT_EVERY_NS: u64 = 60_000_000_000;

/// The source's rate (`sipguard_common::gcra`): each packet pushes its theoretical arrival
/// time one interval ahead; a packet arriving more than the tolerance before it exceeds the
/// limit.
#[inline(always)]
fn rate(key: &SourceKey, config: &Config) -> Rate {
    let interval = config.rate_interval_ns;
    if interval == 0 {
        return Rate::Conforms;
    }
    let now = now_ns();
    let Some(state) = RATE.get_ptr_mut(key) else {
        let fresh = RateState { tat_ns: now + interval, reported_ns: 0 };
        // A full LRU evicts; a failed insert only means this packet starts no state.
        RATE.insert(key, fresh, 0).ok();
        return Rate::Conforms;
    };
    // SAFETY: pointer from a successful lookup; races between CPUs only blur the estimate.
    let state = unsafe { &mut *state };
    if gcra::take(&mut state.tat_ns, now, interval, config.rate_tolerance_ns) {
        return Rate::Conforms;
    }
    // 0: never reported (a clock read shortly after boot is itself below a minute).
    let last = state.reported_ns;
    let report = last == 0 || now.saturating_sub(last) >= REPORT_EVERY_NS;
    if report {
        state.reported_ns = now;
    }
    Rate::Exceeds { report }
}
