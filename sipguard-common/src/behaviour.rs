//! What the protected servers' answers say about a remote party: the state behind the
//! behaviour rules, kept per remote source in `SG_BEHAVIOUR` and updated by the response
//! program (TC egress) as each answer leaves.
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

    /// Challenges and refusals that no success answered. A challenge followed by a success
    /// (the normal registration) nets out.
    #[must_use]
    #[inline(always)]
    pub const fn auth_failures(&self) -> u32 {
        (self.challenges.saturating_add(self.forbidden)).saturating_sub(self.successes)
    }
}

/// A remote source's recent answers: two fixed windows, the current one and the one before,
/// blended into a sliding estimate (the previous window weighs by how much of it still lies
/// within one window of now). Bounded memory per source, no timers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Behaviour {
    /// `CLOCK_MONOTONIC` nanoseconds when the current window began.
    pub window_start_ns: u64,
    pub current: Tally,
    pub previous: Tally,
}

const _: () = assert!(size_of::<Behaviour>() == 40);

/// The rules, in counter and record order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Rule {
    /// Challenges and refusals not answered by successes: credential guessing.
    AuthFailures = 0,
    /// "Not found" answers out of proportion to successes: extension or number scanning.
    NotFound = 1,
}

impl Rule {
    pub const ALL: [Rule; 2] = [Rule::AuthFailures, Rule::NotFound];

    /// Stable `snake_case` name (incident records, counters, metrics).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Rule::AuthFailures => "auth_failures",
            Rule::NotFound => "not_found",
        }
    }

    #[must_use]
    pub const fn from_u16(v: u16) -> Option<Rule> {
        match v {
            0 => Some(Rule::AuthFailures),
            1 => Some(Rule::NotFound),
            _ => None,
        }
    }
}

/// A rule bans only where "not found" answers exceed this share of the successes (1/4): a
/// trunk's misdials are a few percent of its calls, an enumerator's are nearly all.
pub const NOT_FOUND_SHARE_DIVISOR: u32 = 4;

/// The rules' thresholds (0 turns a rule off) and their window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub window_ns: u64,
    pub auth_failures: u32,
    pub not_found: u32,
}

/// What one answer did to a source's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Fine,
    /// A rule tripped, with the estimate that tripped it; the state starts afresh.
    Tripped(Rule, Tally),
}

impl Behaviour {
    #[must_use]
    #[inline(always)]
    pub const fn starting(now_ns: u64) -> Self {
        Self { window_start_ns: now_ns, current: Tally::zero(), previous: Tally::zero() }
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

    /// Counts `answer` and judges the rule it bears on.
    #[inline(always)]
    pub fn observe(&mut self, now_ns: u64, answer: Answer, limits: &Limits) -> Judgement {
        if limits.window_ns == 0 {
            return Judgement::Fine;
        }
        let elapsed = self.advance(now_ns, limits.window_ns);
        self.current.add(answer);
        let rule = match answer {
            Answer::Challenge | Answer::Forbidden if limits.auth_failures != 0 => {
                Rule::AuthFailures
            }
            Answer::NotFound if limits.not_found != 0 => Rule::NotFound,
            _ => return Judgement::Fine,
        };
        let seen = self.estimate(elapsed, limits.window_ns);
        let tripped = match rule {
            Rule::AuthFailures => seen.auth_failures() >= limits.auth_failures,
            Rule::NotFound => {
                seen.not_found >= limits.not_found
                    && seen.not_found.saturating_mul(NOT_FOUND_SHARE_DIVISOR) > seen.successes
            }
        };
        if !tripped {
            return Judgement::Fine;
        }
        *self = Self::starting(now_ns);
        Judgement::Tripped(rule, seen)
    }
}

/// The rules' defaults: a minute's window; 20 unanswered challenges or refusals, or 20 "not
/// found" answers (a quarter or more of the successes), ban.
pub const DEFAULT_WINDOW_SECS: u16 = 60;
pub const DEFAULT_AUTH_FAILURES: u16 = 20;
pub const DEFAULT_NOT_FOUND: u16 = 20;

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::{vec, vec::Vec};

    use super::*;

    const S: u64 = 1_000_000_000;
    const LIMITS: Limits = Limits {
        window_ns: DEFAULT_WINDOW_SECS as u64 * S,
        auth_failures: DEFAULT_AUTH_FAILURES as u32,
        not_found: DEFAULT_NOT_FOUND as u32,
    };

    /// Feeds `answers` at `every_ns` from `start`; returns the first trip and its index.
    fn run(
        b: &mut Behaviour,
        start: u64,
        every_ns: u64,
        answers: &[Answer],
    ) -> Option<(usize, Rule)> {
        for (i, a) in answers.iter().enumerate() {
            if let Judgement::Tripped(rule, _) = b.observe(start + i as u64 * every_ns, *a, &LIMITS)
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
        assert!(e.auth_failures() < 10, "{e:?}");
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
            assert_eq!(b.observe(i, Answer::Challenge, &off), Judgement::Fine);
        }
    }

    #[test]
    fn rules_round_trip() {
        for (i, r) in (0u16..).zip(Rule::ALL) {
            assert_eq!(Rule::from_u16(i), Some(r));
        }
        assert_eq!(Rule::from_u16(2), None);
    }
}
