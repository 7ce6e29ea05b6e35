//! What a remote party does: the state behind the behaviour rules, kept per remote source in
//! `SG_BEHAVIOUR`, updated by the response program (TC egress) as each answer the protected
//! servers send it leaves, and by the XDP program with the user parts its requests address.
//!
//! A scanner that names itself like a phone still gives itself away by what it collects: a
//! brute forcer gathers authentication challenges and refusals, an extension enumerator
//! gathers "not found". Legitimate parties collect those too (every REGISTER is challenged
//! first), so the rules weigh them against the successes the same party gets.

/// A SIP answer, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Success,
    /// 401 or 407: a digest challenge (the first answer to most REGISTERs).
    Challenge,
    /// 403: a refusal, often of wrong credentials.
    Forbidden,
    /// 404, 484 or 604: no such user or number.
    NotFound,
    /// Anything else (provisional answers, redirects, server errors...).
    Other,
}

impl Answer {
    #[must_use]
    #[inline(always)]
    pub const fn of(status: u16) -> Answer {
        match status {
            200..=299 => Answer::Success,
            401 | 407 => Answer::Challenge,
            403 => Answer::Forbidden,
            404 | 484 | 604 => Answer::NotFound,
            _ => Answer::Other,
        }
    }
}

/// Answers counted in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Tally {
    pub challenges: u32,
    pub forbidden: u32,
    pub not_found: u32,
    pub successes: u32,
}

const _: () = assert!(size_of::<Tally>() == 16);

impl Tally {
    #[must_use]
    #[inline(always)]
    pub const fn zero() -> Self {
        Self { challenges: 0, forbidden: 0, not_found: 0, successes: 0 }
    }

    #[inline(always)]
    fn add(&mut self, answer: Answer) {
        let slot = match answer {
            Answer::Success => &mut self.successes,
            Answer::Challenge => &mut self.challenges,
            Answer::Forbidden => &mut self.forbidden,
            Answer::NotFound => &mut self.not_found,
            Answer::Other => return,
        };
        *slot = slot.saturating_add(1);
    }

    /// Challenges and refusals that nothing the party did right answers: neither a success
    /// (a registration's challenge nets out with its 200) nor an attempt the server took
    /// (`accepted`: a challenge answered with its nonce and not refused,
    /// `crate::challenges::Challenges::accepted`), so a call centre's challenged calls that
    /// then meet busy or no answer net out too. The larger of the two offsets, not their sum:
    /// a registration brings both, and must not bank a spare credit.
    #[must_use]
    #[inline(always)]
    pub const fn auth_failures(&self, accepted: u32) -> u32 {
        let credit = if accepted > self.successes { accepted } else { self.successes };
        (self.challenges.saturating_add(self.forbidden)).saturating_sub(credit)
    }
}

/// A remote source's recent answers: two fixed windows, the current one and the one before,
/// blended into a sliding estimate (the previous window weighs by how much of it still lies
/// within one window of now). Beside them, the user parts its requests addressed in each
/// window, a bit per user hash (linear counting: [`distinct_users`]). Bounded memory per
/// source, no timers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Behaviour {
    /// `CLOCK_MONOTONIC` nanoseconds when the current window began.
    pub window_start_ns: u64,
    pub current: Tally,
    pub previous: Tally,
    pub users: u64,
    pub previous_users: u64,
    /// The Call-ID hash of the last success counted (0: none), and when, in seconds of
    /// `CLOCK_MONOTONIC`: its retransmissions are not counted again.
    pub success_call: u32,
    pub success_s: u32,
}

const _: () = assert!(size_of::<Behaviour>() == 64);

/// How long a server retransmits a final answer that is not acknowledged: 64 times T1
/// (RFC 3261, timer H), 32 s. A success with the Call-ID of the last one counted, within
/// this, is that success again: a party that never acknowledges a call answered by a
/// voicemail must not collect seven successes for it, each offsetting a failure.
pub const RETRANSMIT_SECS: u32 = 32;

/// Distinct user parts behind `k` set bits of a 64-bit user bitmap: the linear counting
/// estimate `-64 ln(1 - k/64)`, rounded; a full bitmap says "more than 266".
const DISTINCT: [u16; 65] = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 15, 16, 17, 18, 20, 21, 23, 24, 25, 27, 28, 30, 32,
    33, 35, 37, 39, 40, 42, 44, 46, 48, 51, 53, 55, 58, 60, 63, 65, 68, 71, 74, 78, 81, 85, 89, 93,
    97, 102, 107, 113, 119, 126, 133, 142, 151, 163, 177, 196, 222, 266, 300,
];

/// `MurmurHash3`'s 64-bit finalizer. The host hash spreads numbered extensions (100, 101, ...)
/// more evenly than chance over its top bits, and linear counting assumes chance: without
/// this, 33 sequential extensions read as 40.
#[must_use]
#[inline(always)]
pub const fn scatter(h: u64) -> u64 {
    let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bit of a user bitmap that a user part with this [`crate::domain::hash`] sets.
#[must_use]
#[inline(always)]
pub const fn user_bucket(hash: u64) -> u64 {
    scatter(hash) >> 58
}

/// How many distinct user parts a user bitmap stands for.
#[must_use]
#[inline(always)]
pub fn distinct_users(bits: u64) -> u32 {
    let ones = bits.count_ones() as usize;
    // Through memory: the compiler knows a population count is at most 64 and would drop
    // the bound below; BPF has no such instruction, and the verifier, which sees the
    // count's arithmetic, needs the bound to allow the table read.
    // SAFETY: a volatile load of a local.
    let k = unsafe { core::ptr::read_volatile(&raw const ones) };
    u32::from(DISTINCT[if k > 64 { 64 } else { k }])
}

/// The rules, in counter and record order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Rule {
    /// Challenges and refusals not answered by successes: credential guessing.
    AuthFailures = 0,
    /// "Not found" answers out of proportion to successes: extension or number scanning.
    NotFound = 1,
    /// Many distinct user parts addressed, few of them answered with success: a sweep of
    /// extensions whatever the server answers (ghost calls ring, then are cancelled).
    ExtensionScan = 2,
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::AuthFailures, Rule::NotFound, Rule::ExtensionScan];

    /// Stable `snake_case` name (incident records, counters, metrics).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Rule::AuthFailures => "auth_failures",
            Rule::NotFound => "not_found",
            Rule::ExtensionScan => "extension_scan",
        }
    }

    #[must_use]
    pub const fn from_u16(v: u16) -> Option<Rule> {
        match v {
            0 => Some(Rule::AuthFailures),
            1 => Some(Rule::NotFound),
            2 => Some(Rule::ExtensionScan),
            _ => None,
        }
    }
}

/// A rule bans only where "not found" answers exceed this share of the successes (1/4): a
/// trunk's misdials are a few percent of its calls, an enumerator's are nearly all.
pub const NOT_FOUND_SHARE_DIVISOR: u32 = 4;

/// `extension_scan` bans only where the distinct users addressed outnumber this many times the
/// successes: an office's phones each register successfully, a sweep's ring unanswered.
pub const USERS_SUCCESS_RATIO: u32 = 4;

/// A user part this long or longer is a number, not an extension: `extension_scan` does not
/// count the numbers a party with standing calls. A sweep for ringing phones addresses short
/// extensions (100, 101, ...); a dialer or a call centre calls subscribers' numbers (seven
/// digits or more in every national plan), and earned its standing with answered calls or
/// registrations.
pub const LONG_NUMBER_LEN: usize = 7;

/// Of the numbers a party without standing calls, `extension_scan` counts one in this many
/// (chosen by the number's hash, [`sampled`]): a dialer's first seconds, before its first
/// answered call gives it standing (ten seconds of ringing at 300 calls a minute is 50
/// numbers), do not read as a sweep, while a sweep of numbers still trips, at this many
/// times the distinct users. Extensions are all counted.
pub const NUMBER_SAMPLE: u64 = 4;

/// Whether a number with this [`crate::domain::hash`] is one of those [`NUMBER_SAMPLE`]
/// counts: the low bits of the scattered hash, independent of its bucket (the top bits).
#[must_use]
#[inline(always)]
pub const fn sampled(hash: u64) -> bool {
    scatter(hash) & (NUMBER_SAMPLE - 1) == 0
}

const _: () = assert!(NUMBER_SAMPLE.is_power_of_two());

/// Whether `extension_scan` counts a user part a request addresses: every extension; of the
/// numbers (a user part of [`LONG_NUMBER_LEN`] or more), none a party with standing calls,
/// and the [`sampled`] ones of a party without. `standing` is asked only for those (it
/// costs a lookup).
#[inline(always)]
pub fn counts_user(long_number: bool, sampled: bool, standing: impl FnOnce() -> bool) -> bool {
    !long_number || (sampled && !standing())
}

/// The rules' thresholds (0 turns a rule off) and their window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub window_ns: u64,
    pub auth_failures: u32,
    pub not_found: u32,
    pub extension_scan: u32,
}

/// What one answer or request did to a source's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Fine,
    /// A rule tripped, with the estimate that tripped it (the answers, and the distinct
    /// users addressed); the state starts afresh.
    Tripped(Rule, Tally, u32),
}

impl Behaviour {
    #[must_use]
    #[inline(always)]
    pub const fn starting(now_ns: u64) -> Self {
        Self {
            window_start_ns: now_ns,
            current: Tally::zero(),
            previous: Tally::zero(),
            users: 0,
            previous_users: 0,
            success_call: 0,
            success_s: 0,
        }
    }

    /// Moves the windows on to `now_ns`; returns how far into the current window it is.
    #[inline(always)]
    fn advance(&mut self, now_ns: u64, window_ns: u64) -> u64 {
        let elapsed = now_ns.wrapping_sub(self.window_start_ns);
        // A clock behind the window (a state written by another CPU a moment later) counts
        // as its start.
        if now_ns < self.window_start_ns {
            return 0;
        }
        if elapsed >= 2 * window_ns {
            *self = Self::starting(now_ns);
            return 0;
        }
        if elapsed >= window_ns {
            self.previous = self.current;
            self.current = Tally::zero();
            self.previous_users = self.users;
            self.users = 0;
            self.window_start_ns += window_ns;
            return elapsed - window_ns;
        }
        elapsed
    }

    /// The sliding estimate over the last window, `elapsed` into the current one.
    #[must_use]
    #[inline(always)]
    fn estimate(&self, elapsed: u64, window_ns: u64) -> Tally {
        // In 1/1024ths; `window_ns` fits 54 bits (u16 seconds), so the product cannot wrap.
        let weight = (window_ns - elapsed.min(window_ns)) * 1024 / window_ns;
        let blend = |cur: u32, prev: u32| {
            // At most `prev`: the weight is at most 1024/1024.
            let old = u32::try_from(u64::from(prev) * weight / 1024).unwrap_or(prev);
            cur.saturating_add(old)
        };
        Tally {
            challenges: blend(self.current.challenges, self.previous.challenges),
            forbidden: blend(self.current.forbidden, self.previous.forbidden),
            not_found: blend(self.current.not_found, self.previous.not_found),
            successes: blend(self.current.successes, self.previous.successes),
        }
    }

    /// Counts `answer` and judges the rule it bears on; `accepted` is the party's attempts
    /// the server took (see [`Tally::auth_failures`]), `call` the hash of the answer's
    /// Call-ID (0: unknown), by which a success's retransmissions are counted once
    /// ([`RETRANSMIT_SECS`]).
    #[inline(always)]
    pub fn observe(
        &mut self,
        now_ns: u64,
        answer: Answer,
        accepted: u32,
        call: u32,
        limits: &Limits,
    ) -> Judgement {
        if limits.window_ns == 0 {
            return Judgement::Fine;
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "seconds of uptime fit 32 bits for 136 years, and only differences count"
        )]
        let seconds = (now_ns / 1_000_000_000) as u32;
        let success = answer == Answer::Success && call != 0;
        if success
            && call == self.success_call
            && seconds.wrapping_sub(self.success_s) < RETRANSMIT_SECS
        {
            return Judgement::Fine;
        }
        let elapsed = self.advance(now_ns, limits.window_ns);
        if success {
            self.success_call = call;
            self.success_s = seconds;
        }
        self.current.add(answer);
        let seen = self.estimate(elapsed, limits.window_ns);
        let (rule, tripped) = match answer {
            Answer::Challenge | Answer::Forbidden if limits.auth_failures != 0 => {
                (Rule::AuthFailures, seen.auth_failures(accepted) >= limits.auth_failures)
            }
            Answer::NotFound if limits.not_found != 0 => (
                Rule::NotFound,
                seen.not_found >= limits.not_found
                    && seen.not_found.saturating_mul(NOT_FOUND_SHARE_DIVISOR) > seen.successes,
            ),
            _ => return Judgement::Fine,
        };
        if !tripped {
            return Judgement::Fine;
        }
        let users = self.distinct();
        *self = Self::starting(now_ns);
        Judgement::Tripped(rule, seen, users)
    }

    /// Whether a success would offset anything the rules weigh: failures or "not found" in
    /// either window, or users enough to approach `extension_scan` (half its threshold). A
    /// success that offsets nothing need not be counted (nor its method read).
    #[must_use]
    #[inline(always)]
    pub fn offsets_success(&self, limits: &Limits) -> bool {
        let (c, p) = (&self.current, &self.previous);
        c.challenges | c.forbidden | c.not_found | p.challenges | p.forbidden | p.not_found != 0
            || (limits.extension_scan != 0
                && self.distinct().saturating_mul(2) >= limits.extension_scan)
    }

    /// Distinct user parts addressed in this window and the one before.
    #[must_use]
    #[inline(always)]
    pub fn distinct(&self) -> u32 {
        distinct_users(self.users | self.previous_users)
    }

    /// Notes a request that addressed a user part (its [`user_bucket`]) and judges
    /// `extension_scan`.
    #[inline(always)]
    pub fn address(&mut self, now_ns: u64, bucket: u64, limits: &Limits) -> Judgement {
        if limits.window_ns == 0 || limits.extension_scan == 0 {
            return Judgement::Fine;
        }
        let elapsed = self.advance(now_ns, limits.window_ns);
        self.users |= 1 << (bucket & 63);
        let users = self.distinct();
        if users < limits.extension_scan {
            return Judgement::Fine;
        }
        let seen = self.estimate(elapsed, limits.window_ns);
        if users <= seen.successes.saturating_mul(USERS_SUCCESS_RATIO) {
            return Judgement::Fine;
        }
        *self = Self::starting(now_ns);
        Judgement::Tripped(Rule::ExtensionScan, seen, users)
    }
}

/// The rules' defaults: a minute's window; 20 unanswered challenges or refusals, 20 "not
/// found" answers (a quarter or more of the successes), or 40 distinct users addressed
/// (more than four times the successes) within one to two windows, ban.
pub const DEFAULT_WINDOW_SECS: u16 = 60;
pub const DEFAULT_AUTH_FAILURES: u16 = 20;
pub const DEFAULT_NOT_FOUND: u16 = 20;
pub const DEFAULT_EXTENSION_SCAN: u16 = 40;

#[cfg(test)]
mod tests {
    extern crate alloc;
    extern crate std;
    use alloc::{vec, vec::Vec};

    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    const LIMITS: Limits = Limits {
        window_ns: DEFAULT_WINDOW_SECS as u64 * S,
        auth_failures: DEFAULT_AUTH_FAILURES as u32,
        not_found: DEFAULT_NOT_FOUND as u32,
        extension_scan: DEFAULT_EXTENSION_SCAN as u32,
    };

    /// Feeds `answers` at `every_ns` from `start`; returns the first trip and its index.
    fn run(
        b: &mut Behaviour,
        start: u64,
        every_ns: u64,
        answers: &[Answer],
    ) -> Option<(usize, Rule)> {
        for (i, a) in answers.iter().enumerate() {
            if let Judgement::Tripped(rule, _, _) =
                b.observe(start + i as u64 * every_ns, *a, 0, 0, &LIMITS)
            {
                return Some((i, rule));
            }
        }
        None
    }

    #[test]
    fn statuses_map_to_answers() {
        assert_eq!(Answer::of(200), Answer::Success);
        assert_eq!(Answer::of(202), Answer::Success);
        assert_eq!(Answer::of(401), Answer::Challenge);
        assert_eq!(Answer::of(407), Answer::Challenge);
        assert_eq!(Answer::of(403), Answer::Forbidden);
        for nf in [404, 484, 604] {
            assert_eq!(Answer::of(nf), Answer::NotFound);
        }
        assert_eq!(Answer::of(100), Answer::Other);
        assert_eq!(Answer::of(180), Answer::Other);
        assert_eq!(Answer::of(486), Answer::Other);
    }

    #[test]
    fn a_brute_forcer_trips_after_the_threshold() {
        let mut b = Behaviour::starting(0);
        // Each guess: challenged, then refused (or challenged again).
        let guesses = [Answer::Challenge; 100];
        let trip = run(&mut b, 0, S / 100, &guesses);
        assert_eq!(trip, Some((DEFAULT_AUTH_FAILURES as usize - 1, Rule::AuthFailures)));
        assert_eq!(b, Behaviour::starting(19 * S / 100), "starts afresh after a trip");
    }

    #[test]
    fn registrations_that_succeed_never_trip() {
        // 50 phones behind one address, each challenged then accepted, every minute, for an
        // hour (each phone's answer comes back before the next phone's request).
        let mut b = Behaviour::starting(0);
        for minute in 0..60u64 {
            let flow: Vec<Answer> =
                (0..50).flat_map(|_| [Answer::Challenge, Answer::Success]).collect();
            assert_eq!(run(&mut b, minute * 60 * S, S / 1000, &flow), None, "minute {minute}");
        }
    }

    #[test]
    fn a_phone_with_a_wrong_password_every_30_s_is_not_banned() {
        let mut b = Behaviour::starting(0);
        for attempt in 0..120u64 {
            let t = attempt * 30 * S;
            assert_eq!(run(&mut b, t, S / 100, &[Answer::Challenge, Answer::Challenge]), None);
        }
        let elapsed = b.advance(120 * 30 * S, LIMITS.window_ns);
        let e = b.estimate(elapsed, LIMITS.window_ns);
        assert!(e.auth_failures(0) < 10, "{e:?}");
    }

    #[test]
    fn a_trunk_with_a_few_misdials_is_not_banned() {
        // 1,000 calls a minute for ten minutes, 3% to unknown numbers.
        let mut b = Behaviour::starting(0);
        let calls: Vec<Answer> = (0..10_000)
            .map(|i| if i % 33 == 0 { Answer::NotFound } else { Answer::Success })
            .collect();
        assert_eq!(run(&mut b, 0, 60 * S / 1000, &calls), None);
    }

    #[test]
    fn an_enumerator_trips_on_not_found() {
        let mut b = Behaviour::starting(0);
        let mut scan = vec![Answer::Success; 5];
        scan.extend([Answer::NotFound; 100]);
        assert_eq!(run(&mut b, 0, S / 50, &scan), Some((5 + 19, Rule::NotFound)));
    }

    #[test]
    fn slow_attempts_fall_out_of_the_window() {
        let mut b = Behaviour::starting(0);
        // One failure every 10 s: at most about 12 in any sliding minute.
        let slow = [Answer::Forbidden; 500];
        assert_eq!(run(&mut b, 0, 10 * S, &slow), None);
        // The same count within a minute trips.
        let mut b = Behaviour::starting(0);
        assert!(run(&mut b, 0, S, &slow).is_some());
    }

    #[test]
    fn zero_turns_a_rule_off() {
        let off = Limits { auth_failures: 0, ..LIMITS };
        let mut b = Behaviour::starting(0);
        for i in 0..1000 {
            assert_eq!(b.observe(i, Answer::Challenge, 0, 0, &off), Judgement::Fine);
        }
    }

    fn user(n: u64) -> u64 {
        user_bucket(crate::domain::hash(std::format!("{n}").as_bytes()))
    }

    #[test]
    fn distinct_users_are_estimated_closely() {
        for n in [10u64, 20, 40, 80] {
            let bits = (0..n).fold(0u64, |b, i| b | 1 << user(1000 + i));
            let est = u64::from(distinct_users(bits));
            assert!(est.abs_diff(n) <= n / 4 + 3, "{n} users estimated as {est}");
        }
        assert_eq!(distinct_users(0), 0);
        assert_eq!(distinct_users(u64::MAX), 300);
    }

    #[test]
    fn a_sweep_of_extensions_trips_extension_scan() {
        // Ghost calls to 100, 101, ... two a second: answered by ringing, never by a success.
        let mut b = Behaviour::starting(0);
        let trip = (0..200u64).find_map(|i| match b.address(i * S / 2, user(100 + i), &LIMITS) {
            Judgement::Tripped(rule, _, users) => Some((i, rule, users)),
            Judgement::Fine => None,
        });
        let (i, rule, users) = trip.expect("tripped");
        assert_eq!(rule, Rule::ExtensionScan);
        assert!(users >= 40 && (40..80).contains(&i), "after {i} calls, {users} users");
    }

    #[test]
    fn an_office_and_a_trunk_addressing_many_users_are_fine() {
        // 50 phones behind one address, each registering every minute and accepted.
        let mut b = Behaviour::starting(0);
        for minute in 0..10u64 {
            for phone in 0..50u64 {
                let t = minute * 60 * S + phone * S;
                assert_eq!(b.address(t, user(phone), &LIMITS), Judgement::Fine);
                b.observe(t + S / 10, Answer::Challenge, 0, 0, &LIMITS);
                b.observe(t + S / 5, Answer::Success, 0, 0, &LIMITS);
            }
        }
        // A trunk: 1,000 calls a minute to distinct numbers, 3% unknown.
        let mut b = Behaviour::starting(0);
        for i in 0..5000u64 {
            let t = i * 60 * S / 1000;
            assert_eq!(b.address(t, user(4_930_000_000 + i), &LIMITS), Judgement::Fine);
            let answer = if i % 33 == 0 { Answer::NotFound } else { Answer::Success };
            assert_eq!(b.observe(t + S / 100, answer, 0, 0, &LIMITS), Judgement::Fine, "call {i}");
        }
        // One phone addressing the same few users all day.
        let mut b = Behaviour::starting(0);
        for i in 0..10_000u64 {
            assert_eq!(b.address(i * S, user(i % 5), &LIMITS), Judgement::Fine);
        }
        // Off.
        let off = Limits { extension_scan: 0, ..LIMITS };
        let mut b = Behaviour::starting(0);
        assert!((0..500).all(|i| b.address(i, user(i), &off) == Judgement::Fine));
    }

    #[test]
    fn only_states_with_something_to_offset_count_successes() {
        let mut b = Behaviour::starting(0);
        assert!(!b.offsets_success(&LIMITS), "a caller with nothing pending");
        b.address(S, user(1), &LIMITS);
        assert!(!b.offsets_success(&LIMITS), "one user is far from a sweep");
        b.observe(2 * S, Answer::Challenge, 0, 0, &LIMITS);
        assert!(b.offsets_success(&LIMITS), "a challenge waits for its success");
        let mut b = Behaviour::starting(0);
        for i in 0..40 {
            b.address(S, user(100 + i), &LIMITS);
        }
        assert!(b.offsets_success(&LIMITS), "many users: successes tell an office from a sweep");
        // An office whose registrar accepts refreshes without a challenge: its successes count
        // only from half the threshold on, which is enough.
        let mut b = Behaviour::starting(0);
        for minute in 0..10u64 {
            for phone in 0..50u64 {
                let t = minute * 60 * S + phone * S;
                assert_eq!(b.address(t, user(phone), &LIMITS), Judgement::Fine, "{minute} {phone}");
                if b.offsets_success(&LIMITS) {
                    assert_eq!(
                        b.observe(t + S / 10, Answer::Success, 0, 0, &LIMITS),
                        Judgement::Fine
                    );
                }
            }
        }
    }

    #[test]
    fn a_retransmitted_success_counts_once() {
        // A guesser that gets one call answered (a voicemail) and never acknowledges it: the
        // server sends the 200 OK seven times over 32 s, one success.
        let mut b = Behaviour::starting(0);
        for (i, at) in [0, 500, 1500, 3500, 7500, 11500, 15500].into_iter().enumerate() {
            let t = S + at * MS;
            assert_eq!(b.observe(t, Answer::Success, 0, 0xca11, &LIMITS), Judgement::Fine, "{i}");
        }
        assert_eq!(b.current.successes, 1);
        // Another call is another success; so is the same Call-ID past the retransmission
        // span (a registration refreshed on its Call-ID an hour later).
        b.observe(20 * S, Answer::Success, 0, 0xca12, &LIMITS);
        b.observe(40 * S, Answer::Success, 0, 0xca12, &LIMITS);
        assert_eq!(b.current.successes, 2);
        b.observe(40 * S + 32 * S, Answer::Success, 0, 0xca12, &LIMITS);
        assert_eq!(b.current.successes + b.previous.successes, 3);
        // So the seven answers offset one failure, not seven.
        let mut b = Behaviour::starting(0);
        for i in 0..19 {
            b.observe(S + i * MS, Answer::Challenge, 0, 0, &LIMITS);
        }
        for i in 0..7 {
            b.observe(2 * S + i * S, Answer::Success, 0, 0xca11, &LIMITS);
        }
        let tripped = (0..2).map(|i| b.observe(10 * S + i * MS, Answer::Challenge, 0, 0, &LIMITS));
        assert!(
            tripped.into_iter().any(|j| matches!(j, Judgement::Tripped(Rule::AuthFailures, ..)))
        );
    }

    #[test]
    fn rules_round_trip() {
        for (i, r) in (0u16..).zip(Rule::ALL) {
            assert_eq!(Rule::from_u16(i), Some(r));
        }
        assert_eq!(Rule::from_u16(3), None);
    }
}
