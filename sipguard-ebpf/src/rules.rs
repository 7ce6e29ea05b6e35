//! The behaviour rules' state (`SG_BEHAVIOUR`, `sipguard_common::behaviour`) as both programs
//! update it: the response program with each answer a party is sent, the XDP program with
//! the users a party's requests address. A rule that trips bans the party and reports it.

use sipguard_common::{
    behaviour::{Answer, Behaviour, Judgement, Rule, Tally},
    config::Config,
    counters::Misc,
    events::{NO_METHOD, REASON_BEHAVIOUR, pack_counts},
    sources::BEHAVIOUR_SIG,
};

use aya_ebpf::{macros::map, maps::PerCpuArray};
use sipguard_ebpf::packed::Trip;

use crate::{
    clock::now_ns,
    events::{Detail, Incident, report},
    evidence::Evidence,
    maps::{BEHAVIOUR, CONFIG},
    parse::{Addr, Segment},
    sources::sentence,
    verdict::count,
};

/// Applies `step` to the party's state (a new state if it has none); returns what it
/// returned.
#[inline(always)]
fn update<T>(key: &[u8; 16], step: impl FnOnce(&mut Behaviour, u64) -> T) -> T {
    let now = now_ns();
    if let Some(state) = BEHAVIOUR.get_ptr_mut(key) {
        // SAFETY: pointer from a successful lookup. Two CPUs updating the same party at once
        // may lose a count: the rules' thresholds are estimates anyway.
        return step(unsafe { &mut *state }, now);
    }
    let mut fresh = Behaviour::starting(now);
    let result = step(&mut fresh, now);
    // A full LRU evicts its oldest party; a failed insert only loses this step.
    BEHAVIOUR.insert(key, fresh, 0).ok();
    result
}

/// Counts an answer the party was sent; `accepted` is its credit of attempts the server took.
#[inline(always)]
pub(crate) fn answered(
    config: &Config,
    key: &[u8; 16],
    answer: Answer,
    accepted: u32,
    call: u32,
) -> Judgement {
    let limits = config.behaviour_limits();
    // Inlined, not a function of its own: 6.1 counts each frame of a call chain at 32 bytes
    // or more, and the answer stage's chain has none to spare.
    update(
        key,
        #[inline(always)]
        |b, now| b.observe(now, answer, accepted, call, &limits),
    )
}

/// Per CPU, for a few recent sources (a slot each, by a fold of the address), which users
/// `SG_BEHAVIOUR` held for them when this CPU last updated it: a request to one of those
/// users costs no update of the shared map (a phone calling the same colleagues, a
/// retransmission). A sweep addresses a new user with every request, and each is counted.
/// What a skipped update could change: a user addressed again after two windows, when the
/// state no longer holds it, is not counted again until the slot is refreshed by a new user.
/// That only ever lowers the count, never raises it: no ban comes of it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Seen {
    key: [u64; 2],
    /// The state's users after that update (this window's and the last).
    users: u64,
}

const SEEN_SLOTS: u32 = 64;

#[map(name = "SG_USERS_SEEN")]
static USERS_SEEN: PerCpuArray<Seen> = PerCpuArray::with_max_entries(SEEN_SLOTS, 0);

/// Notes the user (its bucket, `behaviour::user_bucket`) a request from the party addressed.
/// Returns the rule it tripped, if it tripped one, and the estimate in `seen`: a word, not a
/// `Judgement` in the caller's frame, so the verifier checks what follows once rather than
/// once per way this function can end. Out of line: its frame (a fresh state) is not stacked
/// under the report's.
#[inline(never)]
pub(crate) fn addressed(
    config: &Config,
    source: &Addr,
    bucket: u64,
    monitor: bool,
    seen: &mut Tally,
) -> Trip {
    let key = source.key();
    let limits = config.behaviour_limits();
    let words = source.words();
    let slot =
        ((words[0] ^ words[1]).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as u32 & (SEEN_SLOTS - 1);
    let bit = 1u64 << (bucket & 63);
    let cached = USERS_SEEN.get_ptr_mut(slot);
    if let Some(c) = cached {
        // SAFETY: this CPU's slot; XDP does not nest.
        let c = unsafe { &*c };
        if c.users & bit != 0 && c.key == words {
            return Trip::NONE;
        }
    }
    // The judgement is taken apart inside the step: a `Judgement::Fine` carried out of it
    // leaves its payload undefined, and code that copies it reads a register the verifier
    // knows was never written ("R0 !read_ok").
    let mut trip = Trip::NONE;
    let users = update(&key, |b, now| {
        if let Judgement::Tripped(rule, estimate, distinct) = b.address(now, bucket, &limits) {
            *seen = estimate;
            trip = Trip::new(rule as u8, monitor, distinct);
        }
        b.users | b.previous_users
    });
    if let Some(c) = cached {
        // SAFETY: as above.
        unsafe { *c = Seen { key: words, users } };
    }
    trip
}

/// A rule tripped: ban the party (monitor mode: a ban that only counts) and report it.
/// `party` is the segment as the party sent it (the party its source).
#[inline(always)]
pub(crate) fn tripped(ifindex: u32, party: &Segment, seen: &Tally, trip: Trip, evidence: Evidence) {
    let (Some(config), Some(rule)) = (CONFIG.get(0), Rule::from_u16(trip.rule())) else {
        return;
    };
    let monitor = trip.monitor();
    count(Misc::of_rule(rule).slot());
    let (flags, withheld) =
        sentence(&party.src.key(), config, BEHAVIOUR_SIG + rule as u16, monitor, evidence);
    let (first, second) = pack_counts(seen);
    let incident = Incident {
        reason: REASON_BEHAVIOUR,
        sig: rule as u16,
        method: NO_METHOD,
        flags,
        withheld,
        detail: Detail::Counts(first, second, u64::from(trip.users())),
    };
    report(config, ifindex, party, &incident);
}
