//! Whether a ban may be made on evidence that does not prove its source
//! (`sipguard_common::trust`): the source's standing (a recent registration or call), the
//! answers to its own challenges, and the budget of such bans. Asked only on the way to a
//! ban, never on the pass path.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use sipguard_common::{
    challenges::{CallIdScan, Challenges, NonceScan},
    config::Config,
    counters::Misc,
    sources::SourceKey,
    trust::Withheld,
};
use sipguard_ebpf::window::{Scratch, data_len, window_index};

use crate::{
    clock::now_ns,
    evidence::Evidence,
    maps::{BAN_BUDGET, CHALLENGES, SCRATCH, STANDING},
    parse::Addr,
    verdict::count,
};

/// How long ago the source earned standing, and how long standing lasts (ns); `None` without
/// standing on record or with standing off.
#[inline(always)]
fn standing_age(key: &SourceKey, config: &Config, now: u64) -> Option<(u64, u64)> {
    let secs = config.standing_secs();
    if secs == 0 {
        return None;
    }
    // SAFETY: the value is copied out at once; a concurrent update only changes a timestamp.
    let since = *unsafe { STANDING.get(key) }?;
    Some((now.saturating_sub(since), u64::from(secs) * 1_000_000_000))
}

/// Whether the source earned standing within the configured time.
#[inline(always)]
pub(crate) fn standing(key: &SourceKey, config: &Config, now: u64) -> bool {
    standing_age(key, config, now).is_some_and(|(age, lasts)| age < lasts)
}

/// Whether a success to the party should renew its standing: it has none, or earned it
/// more than a quarter of the standing time ago (so a party's every success does not
/// rewrite the shared map). The caller reads what the success answers only then.
#[inline(always)]
pub(crate) fn needs_standing(key: &SourceKey, config: &Config, now: u64) -> bool {
    config.standing_secs() != 0
        && standing_age(key, config, now).is_none_or(|(age, lasts)| age >= lasts / 4)
}

/// Gives the party standing from `now`.
#[inline(always)]
pub(crate) fn grant_standing(key: &SourceKey, now: u64) {
    // A full LRU evicts the party that earned standing longest ago.
    if STANDING.insert(key, now, 0).is_ok() {
        count(Misc::StandingGranted.slot());
    }
}

/// Why a ban must not be made now, if it must not: the evidence is unverified (not
/// [`Evidence::Verified`]) and the source is forged ([`Evidence::Spoofed`]), has standing,
/// or the budget is spent. Counts the cause.
#[inline(always)]
pub(crate) fn withheld(
    key: &SourceKey,
    config: &Config,
    now: u64,
    evidence: Evidence,
) -> Option<Withheld> {
    let cause = if evidence == Evidence::Verified {
        return None;
    } else if evidence == Evidence::Spoofed {
        Withheld::Spoofed
    } else if standing(key, config, now) {
        Withheld::Standing
    } else if !admitted(now) {
        Withheld::Budget
    } else {
        return None;
    };
    count(cause.counter().slot());
    Some(cause)
}

/// Takes one admission from the ban budget, if there is one.
#[inline(always)]
fn admitted(now: u64) -> bool {
    match BAN_BUDGET.get_ptr_mut(0) {
        // SAFETY: pointer from a successful lookup; CPUs race on it on purpose (see
        // `BanBudget::admit`).
        Some(b) => unsafe { (*b).admit(now) },
        None => true,
    }
}

/// Notes the nonce of a digest challenge sent to the party.
#[inline(always)]
pub(crate) fn challenged(key: &SourceKey, hash: u32, now: u64) {
    if let Some(c) = CHALLENGES.get_ptr_mut(key) {
        // SAFETY: pointer from a successful lookup; racing CPUs may lose a nonce, which only
        // leaves an answer unproven.
        unsafe { (*c).challenged(hash) };
        return;
    }
    let mut fresh = Challenges { window_start_ns: now, ..Challenges::default() };
    fresh.challenged(hash);
    // A full LRU evicts the party challenged longest ago.
    CHALLENGES.insert(key, fresh, 0).ok();
}

/// Whether the failures that tripped `auth_failures` for a party with standing are its own:
/// its attempts the server refused account for half the threshold or more (each accounts
/// for two failures, its challenge and its refusal, so a quarter of the threshold in
/// refusals). A brute forcer's guesses reach that with the rule, even among the calls of a
/// busy address whose challenges wait for their attempts; a forger that draws challenges to
/// the party makes no attempt, and a phone retrying a wrong password twice a minute does not
/// lend it the proof.
#[inline(always)]
pub(crate) fn own_failures(key: &SourceKey, config: &Config) -> bool {
    let limits = config.behaviour_limits();
    // SAFETY: the value is read at once; a concurrent update only changes counts.
    let Some(c) = (unsafe { CHALLENGES.get(key) }) else {
        return false;
    };
    let proven = c.proven_failures(now_ns(), limits.window_ns);
    limits.auth_failures != 0 && proven.saturating_mul(4) >= limits.auth_failures
}

/// An answer whose Call-ID hashes to `call` (0: none found) leaves for the party: if it
/// names one of the party's waiting attempts, settles it, as refused (`refused`: a challenge
/// or a 403) or as taken (a ringing or final answer to its INVITE or REGISTER, which the
/// caller checked). Returns the party's attempts the server took, its credit against its
/// challenges (`sipguard_common::behaviour::Tally::auth_failures`); 0 for a party with no
/// record. Out of line: inlined, its values would stay live across the response program's
/// answer stage and grow that frame past what 6.1 allows the call chain under it.
#[inline(never)]
pub(crate) fn credit(key: &SourceKey, config: &Config, now: u64, call: u32, refused: bool) -> u32 {
    let Some(c) = CHALLENGES.get_ptr_mut(key) else {
        return 0;
    };
    let window = config.behaviour_limits().window_ns;
    // SAFETY: pointer from a successful lookup; racing CPUs may lose a count.
    unsafe {
        if (*c).awaiting() && (*c).settles(call, refused, now, window) {
            let counter = if refused { Misc::AttemptsRefused } else { Misc::AttemptsAccepted };
            count(counter.slot());
        }
        (*c).accepted(now, window)
    }
}

/// Whether the party has attempts waiting for the answer that settles them.
#[inline(always)]
pub(crate) fn awaiting(key: &SourceKey) -> bool {
    // SAFETY: the value is read at once; a concurrent update only changes a slot.
    unsafe { CHALLENGES.get(key) }.is_some_and(Challenges::awaiting)
}

/// Bytes of credentials searched for their nonce.
const CREDENTIALS: u32 = 512;

/// Counts a request whose credentials (the walk noted where: `WalkState::auth_at`) echo the
/// nonce of a challenge the party was sent (an attempt), and keeps its Call-ID for the
/// answer that settles it. Out of line, after the walk; only for parties that have a record
/// of challenges, which only parties with standing get.
#[inline(never)]
pub(crate) fn credentials(src: &Addr) {
    let Some(s) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // Most requests carry no credentials: they cost this load, not the map lookup.
    // SAFETY: this CPU's scratch value; a plain load of one of its fields.
    let from = unsafe { core::ptr::read_volatile(&raw const (*s).walk.auth_at) };
    if from == 0 {
        return;
    }
    let key = src.key();
    let Some(c) = CHALLENGES.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: this CPU's scratch value; plain loads and stores of its fields.
    let found = unsafe {
        let len = data_len(&*s) as u64;
        if from >= len {
            return;
        }
        NonceScan::restart(&raw mut (*s).nonce, true);
        (*s).nonce_from = from;
        let steps = (len - from).min(u64::from(CREDENTIALS));
        let mut search = Credentials { scratch: s };
        bpf_loop(steps as u32, credential_byte as *mut c_void, (&raw mut search).cast(), 0);
        (*s).nonce.found()
    };
    let Some(hash) = found else {
        return;
    };
    let call = call_id(s);
    // SAFETY: pointer from a successful lookup; racing CPUs may lose an attempt, which only
    // leaves it uncredited.
    if unsafe { (*c).answers(hash, call) } {
        count(Misc::ChallengesAnswered.slot());
    }
}

/// The hash of the Call-ID in the window (0: none found), searched from its start.
#[inline(always)]
fn call_id(s: *mut Scratch) -> u32 {
    // SAFETY: this CPU's scratch value; plain loads and stores of its fields.
    unsafe {
        let len = data_len(&*s) as u64;
        CallIdScan::restart(&raw mut (*s).call);
        let mut search = Credentials { scratch: s };
        bpf_loop(len as u32, call_byte as *mut c_void, (&raw mut search).cast(), 0);
        (*s).call.found().unwrap_or(0)
    }
}

/// One byte of the Call-ID's search; 1 stops the loop.
extern "C" fn call_byte(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Credentials on the caller's stack, which outlives the loop; its
    // pointer was checked non-null.
    let s = unsafe { &mut *(*ctx.cast::<Credentials>()).scratch };
    let at = window_index(index as usize);
    // SAFETY: masked into the window, which the buffer holds.
    let b = unsafe { *s.buf.get_unchecked(at) };
    i64::from(s.call.step(b))
}

/// `bpf_loop` takes its context on the stack: a pointer to the scratch memory.
struct Credentials {
    scratch: *mut Scratch,
}

/// One byte of the credentials' search; 1 stops the loop.
extern "C" fn credential_byte(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Credentials on the caller's stack, which outlives the loop; its
    // pointer was checked non-null.
    let s = unsafe { &mut *(*ctx.cast::<Credentials>()).scratch };
    let at = window_index((s.nonce_from as usize).wrapping_add(index as usize));
    // SAFETY: masked into the window, which the buffer holds.
    let b = unsafe { *s.buf.get_unchecked(at) };
    i64::from(s.nonce.step(b))
}
