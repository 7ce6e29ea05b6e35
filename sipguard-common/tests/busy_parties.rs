//! The behaviour rules against the busy legitimate parties of a PBX host and the attackers
//! hiding among them, driven through the rule code the kernel runs (`behaviour`,
//! `challenges`), in the order the programs call it: the two measurements of issue 26 (a
//! call centre whose calls are all challenged, an outbound dialer on an IP-authenticated
//! trunk), each with the rule as it was (no credit for attempts, every user counted) and as
//! it is.

use sipguard_common::{
    behaviour::{
        Answer, Behaviour, DEFAULT_AUTH_FAILURES, DEFAULT_EXTENSION_SCAN, DEFAULT_NOT_FOUND,
        DEFAULT_WINDOW_SECS, Judgement, LONG_NUMBER_LEN, Limits, Rule, counts_user, sampled,
        user_bucket,
    },
    callee,
    challenges::{Challenges, call_id, nonce},
    domain,
};

const S: u64 = 1_000_000_000;
const MS: u64 = S / 1000;

const LIMITS: Limits = Limits {
    window_ns: DEFAULT_WINDOW_SECS as u64 * S,
    auth_failures: DEFAULT_AUTH_FAILURES as u32,
    not_found: DEFAULT_NOT_FOUND as u32,
    extension_scan: DEFAULT_EXTENSION_SCAN as u32,
};

/// One remote address as both programs see it: its behaviour state, and its record of
/// challenges once it has standing.
struct Party {
    behaviour: Behaviour,
    challenges: Option<Challenges>,
    standing: bool,
    /// Which rules judge it.
    era: Era,
}

impl Party {
    fn new(standing: bool, before: bool) -> Self {
        Self {
            behaviour: Behaviour::starting(0),
            challenges: None,
            standing,
            era: if before { Era::Before } else { Era::Now },
        }
    }

    /// The server challenges (or refuses: `answer`) a request of the call `call`, with a
    /// nonce of its own: what the response program does.
    fn challenged(&mut self, t: u64, call: &str, answer: Answer) -> Judgement {
        let window = LIMITS.window_ns;
        let accepted = match &mut self.challenges {
            Some(c) if self.era != Era::Before => {
                if c.awaiting() {
                    c.settles(call_id(call.as_bytes()), true, t, window);
                }
                c.accepted(t, window)
            }
            _ => 0,
        };
        if answer == Answer::Challenge && self.standing {
            self.challenges
                .get_or_insert_with(|| Challenges { window_start_ns: t, ..Challenges::default() })
                .challenged(nonce(format!("{call}-{t}").as_bytes()));
        }
        self.behaviour.observe(t, answer, accepted, 0, &LIMITS)
    }

    /// The party sends the request again with credentials for the challenge it was sent at
    /// `challenged_at`: what the XDP program does.
    fn attempt(&mut self, call: &str, challenged_at: u64) {
        self.attempt_as(call, call, challenged_at);
    }

    /// A request of the call `call` with credentials for the challenge the call `nonce_of`
    /// was sent at `challenged_at`.
    fn attempt_as(&mut self, call: &str, nonce_of: &str, challenged_at: u64) {
        if let Some(c) = &mut self.challenges {
            let n = nonce(format!("{nonce_of}-{challenged_at}").as_bytes());
            c.answers(n, call_id(call.as_bytes()));
        }
    }

    /// A ringing or final answer to the call's INVITE that is no refusal (180, 486, 480...):
    /// the server took the attempt's credentials.
    fn taken(&mut self, t: u64, call: &str) {
        if let Some(c) = &mut self.challenges {
            c.settles(call_id(call.as_bytes()), false, t, LIMITS.window_ns);
        }
    }

    /// A success answering a registration or a call: counted, and standing earned.
    fn success(&mut self, t: u64) -> Judgement {
        self.standing = true;
        self.behaviour.observe(t, Answer::Success, 0, 0, &LIMITS)
    }

    /// A request addressing `user`: what the addressee stage does.
    fn addresses(&mut self, t: u64, user: &str) -> Judgement {
        let long = user.len() >= LONG_NUMBER_LEN;
        let hash = domain::hash(user.as_bytes());
        // Before sampling, every number of a party without standing counted.
        let sampled = self.era != Era::Now || sampled(hash);
        if self.era != Era::Before && !counts_user(long, sampled, || self.standing) {
            return Judgement::Fine;
        }
        self.behaviour.address(t, user_bucket(hash), &LIMITS)
    }

    /// "Not found" to a request addressing `user`: what the response program does (it reads
    /// the user from the answer's `To`, `callee`).
    fn not_found(&mut self, t: u64, user: &str) -> Judgement {
        let answer = format!("SIP/2.0 404 Not Found\r\nTo: <sip:{user}@10.80.0.1>;tag=1\r\n\r\n");
        if self.era == Era::Now && self.standing && callee::names_number(answer.as_bytes()) {
            return Judgement::Fine;
        }
        self.behaviour.observe(t, Answer::NotFound, 0, 0, &LIMITS)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Step {
    Challenged,
    Attempt,
    Ringing,
    Answered,
}

/// A call centre behind one address: `calls` challenged calls, one every `every_ns`, each
/// answered with credentials 20 ms after its challenge and ringing (or busy) 100 ms after
/// that; `answered` of every ten are answered `ring_ns` later, the rest meet busy or ring
/// out (answers that count for no rule). Its phones registered first (standing). Returns
/// the call whose challenge tripped a rule.
fn call_centre(
    before: bool,
    calls: u64,
    every_ns: u64,
    answered: u64,
    ring_ns: u64,
) -> Option<(u64, Rule)> {
    let mut party = Party::new(true, before);
    let mut steps: Vec<(u64, Step, u64)> = Vec::new();
    for i in 0..calls {
        let t = S + i * every_ns;
        steps.push((t, Step::Challenged, i));
        steps.push((t + 20 * MS, Step::Attempt, i));
        steps.push((t + 120 * MS, Step::Ringing, i));
        if i % 10 < answered {
            steps.push((t + 20 * MS + ring_ns, Step::Answered, i));
        }
    }
    steps.sort_unstable();
    for (t, step, i) in steps {
        let call = format!("call-{i}");
        let judgement = match step {
            Step::Challenged => party.challenged(t, &call, Answer::Challenge),
            Step::Attempt => {
                party.attempt(&call, S + i * every_ns);
                Judgement::Fine
            }
            Step::Ringing => {
                party.taken(t, &call);
                Judgement::Fine
            }
            Step::Answered => party.success(t),
        };
        if let Judgement::Tripped(rule, _, _) = judgement {
            return Some((i + 1, rule));
        }
    }
    None
}

#[test]
fn a_call_centre_whose_calls_are_all_challenged_is_not_banned() {
    // The measurement: 120 calls a minute, 3 in 5 answered at once, 2 in 5 busy. The
    // rule as it was tripped at the 47th call.
    let was = call_centre(true, 7200, S / 2, 6, MS);
    assert!(
        was.is_some_and(|(call, rule)| rule == Rule::AuthFailures && (45..=50).contains(&call)),
        "{was:?}"
    );
    assert_eq!(call_centre(false, 7200, S / 2, 6, MS), None, "an hour of calls");
    // Harder: 300 calls a minute, 1 in 10 answered after ringing 10 s, for an hour.
    assert!(call_centre(true, 18_000, S / 5, 1, 10 * S).is_some());
    assert_eq!(call_centre(false, 18_000, S / 5, 1, 10 * S), None);
    // None answered at all.
    assert_eq!(call_centre(false, 18_000, S / 5, 0, 0), None);
}

/// A guesser at an address with standing: each guess challenged, answered with a wrong
/// password, and refused (`refusal`: challenged again or 403), `per_s` a second, beside an
/// office's phones registering. Returns the guess whose answer tripped `auth_failures`.
fn guesser(before: bool, refusal: Answer, per_s: u64) -> Option<u64> {
    let mut party = Party::new(true, before);
    for i in 0..1000u64 {
        let t = S + i * S / per_s;
        let call = format!("guess-{i}");
        let tripped = [
            party.challenged(t, &call, Answer::Challenge),
            {
                party.attempt(&call, t);
                Judgement::Fine
            },
            party.challenged(t + 2 * MS, &call, refusal),
        ]
        .into_iter()
        .any(|j| matches!(j, Judgement::Tripped(Rule::AuthFailures, _, _)));
        if tripped {
            return Some(i + 1);
        }
    }
    None
}

#[test]
fn a_guesser_with_standing_is_banned_at_the_same_count_as_before() {
    for refusal in [Answer::Challenge, Answer::Forbidden] {
        let before = guesser(true, refusal, 10);
        assert_eq!(before, Some(u64::from(LIMITS.auth_failures) / 2), "{refusal:?}");
        assert_eq!(guesser(false, refusal, 10), before, "{refusal:?}");
    }
}

#[test]
fn a_guesser_behind_a_call_centre_is_still_banned() {
    // The call centre's calls (two a second, all challenged and taken) and a guess a second
    // from the same address: the credit offsets the calls' challenges, never the guesses'.
    let mut party = Party::new(true, false);
    let mut tripped = None;
    for i in 0..600u64 {
        let t = S + i * S / 2;
        let call = format!("call-{i}");
        party.challenged(t, &call, Answer::Challenge);
        party.attempt(&call, t);
        party.taken(t + MS, &call);
        if i % 2 == 0 {
            let guess = format!("guess-{i}");
            let a = party.challenged(t + 10 * MS, &guess, Answer::Challenge);
            party.attempt(&guess, t + 10 * MS);
            let b = party.challenged(t + 12 * MS, &guess, Answer::Challenge);
            if [a, b].iter().any(|j| matches!(j, Judgement::Tripped(Rule::AuthFailures, _, _))) {
                tripped = Some(i / 2 + 1);
                break;
            }
        }
    }
    assert_eq!(tripped, Some(u64::from(LIMITS.auth_failures) / 2));
}

#[test]
fn challenges_drawn_in_a_call_centres_name_are_not_offset_by_its_credit_forever() {
    // A forger draws challenges to the call centre's address (no attempt answers them) while
    // the call centre makes 60 calls a minute: the credit offsets the centre's own
    // challenges only, and the forger's pile up as failures, as before this credit existed
    // (whether they ban is the trust checks' call: `standing::own_failures` finds no refused
    // attempt, and withholds it).
    let mut party = Party::new(true, false);
    let mut tripped = None;
    for i in 0..200u64 {
        let t = S + i * S;
        let call = format!("call-{i}");
        let own = party.challenged(t, &call, Answer::Challenge);
        party.attempt(&call, t);
        party.taken(t + MS, &call);
        let forged = party.challenged(t + 10 * MS, &format!("forged-{i}"), Answer::Challenge);
        if let Some(rule) = own.into_trip().or(forged.into_trip()) {
            tripped = Some((i + 1, rule));
            break;
        }
    }
    assert_eq!(tripped, Some((u64::from(LIMITS.auth_failures), Rule::AuthFailures)));
    let proven = party.challenges.map(|c| c.proven_failures(S * 21, LIMITS.window_ns));
    assert_eq!(proven, Some(0), "none of the failures is provably the centre's own");
}

#[test]
fn attempts_that_nothing_takes_earn_no_credit() {
    // A guesser with standing that, between guesses, echoes the latest nonce in requests the
    // server answers without checking it (an OPTIONS with credentials, answered 200): those
    // attempts are never settled as taken, so they offset nothing, and it is banned at the
    // same guess as before.
    let mut party = Party::new(true, false);
    let mut tripped = None;
    for i in 0..100u64 {
        let t = S + i * S / 10;
        let call = format!("guess-{i}");
        let a = party.challenged(t, &call, Answer::Challenge);
        for k in 0..5 {
            party.attempt_as(&format!("ping-{i}-{k}"), &call, t);
        }
        party.attempt(&call, t);
        let b = party.challenged(t + 2 * MS, &call, Answer::Challenge);
        if a.into_trip().or(b.into_trip()).is_some() {
            tripped = Some(i + 1);
            break;
        }
    }
    assert_eq!(tripped, Some(u64::from(LIMITS.auth_failures) / 2));
}

/// An outbound dialer on an IP-authenticated trunk: `calls` calls, one every `every_ns`, to
/// distinct ten-digit numbers, every `answered_of`-th answered 10 s later (which gives the
/// trunk standing, if it had none: `standing`), and (`not_found_of` non-zero) every `not_found_of`-th number not found,
/// answered 404 at once: a list's stale entries. Returns the call that tripped a rule, if any.
fn dialer(
    era: Era,
    standing: bool,
    calls: u64,
    every_ns: u64,
    answered_of: u64,
    not_found_of: u64,
) -> Option<(u64, Rule)> {
    let mut party = Party::new(standing, era == Era::Before);
    party.era = era;
    // (time, what, call): 0 the request, 1 its 404, 2 its answer.
    let mut steps: Vec<(u64, u8, u64)> = Vec::new();
    for i in 0..calls {
        let t = S + i * every_ns;
        steps.push((t, 0, i));
        if i % answered_of == answered_of - 1 {
            steps.push((t + 10 * S, 2, i));
        } else if not_found_of != 0 && i % not_found_of == not_found_of / 2 {
            steps.push((t + 20 * MS, 1, i));
        }
    }
    steps.sort_unstable();
    for (t, what, i) in steps {
        let number = format!("49301{:05}", 27_000 + i);
        let judgement = match what {
            0 => party.addresses(t, &number),
            1 => party.not_found(t, &number),
            _ => party.success(t),
        };
        if let Judgement::Tripped(rule, _, _) = judgement {
            return Some((i + 1, rule));
        }
    }
    None
}

/// Which rules a party is judged by.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Era {
    /// Before issue 26: no credit for attempts, every user and every "not found" counted.
    Before,
    /// Users of numbers excused, but every "not found" counted (the first step of issue 26).
    NumbersCounted,
    Now,
}

#[test]
fn a_dialer_calling_distinct_numbers_is_not_a_sweep() {
    // The measurement: 60 calls a minute, 1 in 5 answered. The rule as it was
    // tripped at 40 distinct users, 40 s in.
    let was = dialer(Era::Before, false, 3600, S, 5, 0);
    assert!(
        was.is_some_and(|(call, rule)| rule == Rule::ExtensionScan && (35..=60).contains(&call)),
        "{was:?}"
    );
    assert_eq!(dialer(Era::Now, false, 3600, S, 5, 0), None, "an hour of calls");
    // A tenth answered: the first answer comes at the 10th call, before the rule could trip.
    assert_eq!(dialer(Era::Now, false, 3600, S, 10, 0), None);
}

#[test]
fn a_cold_dialer_is_not_a_sweep_before_its_first_answer() {
    // A trunk that starts dialling at 300 calls a minute with no standing yet, its calls
    // ringing ten seconds before the first is answered: every number counted, it reached
    // 40 distinct users about seven seconds in, before any answer could give it standing.
    let was = dialer(Era::NumbersCounted, false, 3600, 200 * MS, 5, 0);
    assert!(
        was.is_some_and(|(call, rule)| rule == Rule::ExtensionScan && (30..=54).contains(&call)),
        "{was:?}"
    );
    // A sample of its numbers: by its first answer (50 calls in) far from the threshold, and
    // never counted again.
    assert_eq!(dialer(Era::Now, false, 18_000, 200 * MS, 5, 0), None, "an hour of calls");
    assert_eq!(dialer(Era::Now, false, 3600, 200 * MS, 10, 0), None, "a tenth answered");
}

#[test]
fn a_sweep_of_numbers_still_trips_at_a_multiple() {
    // A party without standing calling numbers that nobody answers: counted for a sample of
    // them, it trips at about four times the distinct users an extension sweep does.
    let mut party = Party::new(false, false);
    let tripped = (0..1000u64).find_map(|i| {
        let number = format!("49301{:05}", 27_000 + i);
        match party.addresses(S + i * 200 * MS, &number) {
            Judgement::Tripped(rule, _, _) => Some((i + 1, rule)),
            Judgement::Fine => None,
        }
    });
    assert!(
        tripped.is_some_and(|(n, rule)| rule == Rule::ExtensionScan && (100..=260).contains(&n)),
        "{tripped:?}"
    );
    // Extensions are all counted, from the 40th on.
    let mut party = Party::new(false, false);
    let tripped = (0..1000u64).find_map(|i| {
        match party.addresses(S + i * 200 * MS, &format!("{}", 100 + i)) {
            Judgement::Tripped(rule, _, _) => Some((i + 1, rule)),
            Judgement::Fine => None,
        }
    });
    assert!(tripped.is_some_and(|(n, _)| (35..=50).contains(&n)), "{tripped:?}");
}

#[test]
fn a_dialers_stale_numbers_are_not_an_enumeration() {
    // A dialer that has had calls answered (standing), at 300 calls a minute, 1 in 5
    // answered, 1 in 10 to a number that no longer exists: 30 "not found" a minute against
    // 60 answers. Counted, they trip `not_found` at its 20th,
    // about 40 s in; numbers dialled by a party with standing are not counted.
    let was = dialer(Era::NumbersCounted, true, 18_000, S / 5, 5, 10);
    assert!(
        was.is_some_and(|(call, rule)| rule == Rule::NotFound && (150..=250).contains(&call)),
        "{was:?}"
    );
    assert_eq!(dialer(Era::Now, true, 18_000, S / 5, 5, 10), None, "an hour of calls");
    // Half the numbers stale: still none counted.
    assert_eq!(dialer(Era::Now, true, 3000, S / 5, 5, 2), None);
}

#[test]
fn an_enumeration_is_still_counted() {
    // An enumerator of extensions that earned standing (it registered) meets 404s for short
    // user parts: counted, whatever its standing.
    let mut party = Party::new(true, false);
    let trip = (0..100u64).find_map(|i| {
        let user = format!("{}", 200 + i);
        party.not_found(S + i * S / 5, &user).into_trip()
    });
    assert_eq!(trip, Some(Rule::NotFound));
    // And numbers of a party without standing, which never had a call answered.
    let mut party = Party::new(false, false);
    let trip = (0..100u64).find_map(|i| {
        party.not_found(S + i * S / 5, &format!("{}", 4_930_000_000u64 + i)).into_trip()
    });
    assert_eq!(trip, Some(Rule::NotFound));
}

#[test]
fn a_sweep_from_an_address_with_standing_still_trips() {
    // Ghost calls to short extensions, two a second, from an address that registered: short
    // user parts are counted whatever the standing.
    let mut party = Party::new(true, false);
    let trip =
        (0..300u64).find_map(|i| match party.addresses(S + i * S / 2, &format!("{}", 100 + i)) {
            Judgement::Tripped(rule, _, users) => Some((rule, users)),
            Judgement::Fine => None,
        });
    assert!(
        trip.is_some_and(|(rule, users)| rule == Rule::ExtensionScan && users >= 40),
        "{trip:?}"
    );
    // And so is a sweep of long numbers from an address without standing.
    let mut party = Party::new(false, false);
    let trip = (0..300u64).find_map(|i| {
        party.addresses(S + i * S / 2, &format!("{}", 4_930_000_000u64 + i)).into_trip()
    });
    assert_eq!(trip, Some(Rule::ExtensionScan));
}

trait IntoTrip {
    fn into_trip(self) -> Option<Rule>;
}

impl IntoTrip for Judgement {
    fn into_trip(self) -> Option<Rule> {
        match self {
            Judgement::Tripped(rule, _, _) => Some(rule),
            Judgement::Fine => None,
        }
    }
}
