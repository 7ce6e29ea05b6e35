//! When evidence may ban a source (docs/architecture.md, "Trust"). A SIP packet over UDP can
//! carry any source address, so a ban on one unverified packet would let anyone ban a trunk,
//! an office's NAT address or a provider's peer. The evidence is still acted on (the packet
//! is dropped); only the ban goes through these checks, in order:
//!
//! 1. the reverse path ([`ReversePath`]): a source whose route back leaves by another
//!    interface (strict), or by none (loose), is forged: [`Withheld::Spoofed`];
//! 2. standing: a source that recently completed a registration or a call (a success the
//!    server sent it, answering a REGISTER or an INVITE) is not banned on evidence that does
//!    not prove it receives what is sent to it: [`Withheld::Standing`];
//! 3. the budget: bans on such evidence are admitted at a rate that can never fill more than
//!    half the ban table within a ban's lifetime ([`BanBudget::for_table`]), so a flood of
//!    forged sources cannot evict the bans already made: [`Withheld::Budget`].

/// How the reverse-path check judges a source, as the kernel's `rp_filter` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ReversePath {
    /// The route back to the source must leave by the interface the packet arrived on.
    /// Stored as 0: a configuration written before the check existed reads as strict.
    Strict = 0,
    /// There must be a route back to the source, by any interface.
    Loose = 1,
    /// No check.
    Off = 2,
}

impl ReversePath {
    #[must_use]
    #[inline(always)]
    pub const fn from_u8(v: u8) -> ReversePath {
        match v {
            1 => ReversePath::Loose,
            2 => ReversePath::Off,
            _ => ReversePath::Strict,
        }
    }
}

/// Why a ban the evidence called for was not made (`Event::withheld`, the
/// `bans_withheld_*` counters). 0 in an event: none was withheld.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Withheld {
    /// The source failed the reverse-path check.
    Spoofed = 1,
    /// The source has standing, and the evidence does not prove return routability.
    Standing = 2,
    /// Bans on unverified evidence are over their budget.
    Budget = 3,
}

impl Withheld {
    pub const ALL: [Withheld; 3] = [Withheld::Spoofed, Withheld::Standing, Withheld::Budget];

    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Withheld> {
        match v {
            1 => Some(Withheld::Spoofed),
            2 => Some(Withheld::Standing),
            3 => Some(Withheld::Budget),
            _ => None,
        }
    }

    /// Stable `snake_case` name (JSON, metrics).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Withheld::Spoofed => "spoofed",
            Withheld::Standing => "standing",
            Withheld::Budget => "budget",
        }
    }

    /// The counter of bans withheld for this cause.
    #[must_use]
    #[inline(always)]
    pub const fn counter(self) -> crate::counters::Misc {
        match self {
            Withheld::Spoofed => crate::counters::Misc::BansWithheldSpoofed,
            Withheld::Standing => crate::counters::Misc::BansWithheldStanding,
            Withheld::Budget => crate::counters::Misc::BansWithheldBudget,
        }
    }
}

/// Default seconds a success gives a source standing: a day, so a trunk that is quiet at
/// night keeps it, and a phone that re-registers hourly never loses it.
pub const DEFAULT_STANDING_SECS: u32 = 86_400;

/// The admission budget of bans on unverified evidence (GCRA, one entry of `SG_BAN_BUDGET`):
/// parameters written by userspace, the theoretical arrival time by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BanBudget {
    pub tat_ns: u64,
    /// One ban per interval on average (0: no budget, every ban admitted).
    pub interval_ns: u64,
    /// How far ahead of schedule admissions may run: the burst, times the interval.
    pub tolerance_ns: u64,
    pub reserved: u64,
}

const _: () = assert!(size_of::<BanBudget>() == 32);

impl BanBudget {
    /// The budget for a ban table of `capacity` entries and bans of `ttl_secs`: admitted at
    /// half the table per ban lifetime, with bursts of an eighth of it. However long a flood
    /// lasts, bans on unverified evidence then hold at most five eighths of the table, so
    /// the table never fills with them and nothing older is evicted to make room.
    #[must_use]
    pub const fn for_table(capacity: u32, ttl_secs: u32) -> BanBudget {
        if capacity < 8 || ttl_secs == 0 {
            return BanBudget { tat_ns: 0, interval_ns: 0, tolerance_ns: 0, reserved: 0 };
        }
        let interval_ns = ttl_secs as u64 * 2_000_000_000 / capacity as u64;
        BanBudget {
            tat_ns: 0,
            // At least a nanosecond: 0 would mean no budget at all.
            interval_ns: if interval_ns == 0 { 1 } else { interval_ns },
            tolerance_ns: interval_ns * (capacity as u64 / 8),
            reserved: 0,
        }
    }

    /// Bans admitted at once (the burst).
    #[must_use]
    pub const fn burst(&self) -> u64 {
        match self.tolerance_ns.checked_div(self.interval_ns) {
            Some(b) => b,
            None => 0,
        }
    }

    /// Takes one admission if there is one (GCRA). Racy across CPUs on purpose: an
    /// approximate budget costs no atomics.
    #[inline(always)]
    pub fn admit(&mut self, now: u64) -> bool {
        self.interval_ns == 0
            || crate::gcra::take(&mut self.tat_ns, now, self.interval_ns, self.tolerance_ns)
    }
}

/// Value of the route mirror (`SG_ROUTES_V4/V6`): where the main routing table sends a
/// prefix, for hosts that do not forward (`bpf_fib_lookup` answers only on interfaces that
/// forward).
pub type RouteIfindex = u32;
/// [`RouteIfindex`] of a route that sends nowhere (blackhole, unreachable, prohibit).
pub const ROUTE_REJECT: RouteIfindex = 0;

/// Nonces of recent challenges kept per party (a power of two).
pub const NONCES: usize = 8;

/// What the server's digest challenges to a party with standing, and the party's answers to
/// them, prove (`SG_CHALLENGES`). A party that answers a challenge with its nonce received
/// it: the request is its own, and so is the failure that answers it. A forger, who never
/// sees the nonces sent to the address it uses, cannot answer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Challenges {
    /// [`nonce`] hashes of the last challenges sent to the party (a ring; 0: empty).
    pub nonces: [u32; NONCES],
    /// Where the next nonce goes.
    pub next: u32,
    /// Requests whose credentials echoed one of those nonces, in the current window of the
    /// behaviour rules and in the one before.
    pub answered: u32,
    pub previous_answered: u32,
    pub reserved: u32,
    pub window_start_ns: u64,
}

const _: () = assert!(size_of::<Challenges>() == 56);

impl Challenges {
    /// Notes the nonce of a challenge sent to the party.
    #[inline(always)]
    pub fn challenged(&mut self, hash: u32) {
        self.nonces[(self.next as usize) & (NONCES - 1)] = hash;
        self.next = self.next.wrapping_add(1);
    }

    /// Moves the windows on to `now_ns` (as `Behaviour` does, without the blend).
    #[inline(always)]
    fn advance(&mut self, now_ns: u64, window_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.window_start_ns);
        if elapsed >= 2 * window_ns {
            self.answered = 0;
            self.previous_answered = 0;
            self.window_start_ns = now_ns;
        } else if elapsed >= window_ns {
            self.previous_answered = self.answered;
            self.answered = 0;
            self.window_start_ns += window_ns;
        }
    }

    /// A request from the party carried credentials for the nonce `hash`: counts it if the
    /// nonce is one the party was sent. Returns whether it was.
    #[inline(always)]
    pub fn answers(&mut self, hash: u32, now_ns: u64, window_ns: u64) -> bool {
        if hash == 0 {
            return false;
        }
        let mut known = false;
        let mut i = 0;
        while i < NONCES {
            known |= self.nonces[i] == hash;
            i += 1;
        }
        if known {
            self.advance(now_ns, window_ns);
            self.answered = self.answered.saturating_add(1);
        }
        known
    }

    /// The party's own failed answers to challenges, within one to two windows: requests
    /// that echoed a nonce, less the successes it was sent. A failed guess of a brute forcer
    /// is one; a phone's registration nets out with its success.
    #[must_use]
    #[inline(always)]
    pub fn proven_failures(&self, now_ns: u64, window_ns: u64, successes: u32) -> u32 {
        if now_ns.saturating_sub(self.window_start_ns) >= 2 * window_ns {
            return 0;
        }
        self.answered.saturating_add(self.previous_answered).saturating_sub(successes)
    }
}

/// FNV-1a, one byte at a time: the hash of a nonce value, as the response program computes
/// it over a challenge and the XDP program over an answer.
#[must_use]
#[inline(always)]
pub const fn nonce_step(h: u32, b: u8) -> u32 {
    (h ^ b as u32).wrapping_mul(16_777_619)
}

/// [`nonce_step`]'s starting value.
pub const NONCE_START: u32 = 2_166_136_261;

/// The finished hash (never 0: 0 marks an empty slot).
#[must_use]
#[inline(always)]
pub const fn nonce_finish(h: u32) -> u32 {
    if h == 0 { 1 } else { h }
}

/// A nonce value's hash, whole (the programs run [`NonceScan`] a byte at a time).
#[must_use]
pub fn nonce(value: &[u8]) -> u32 {
    let mut h = NONCE_START;
    for &b in value.iter().take(MAX_NONCE as usize) {
        h = nonce_step(h, b);
    }
    nonce_finish(h)
}

/// Longest nonce value hashed (longer ones are cut: both sides cut alike).
pub const MAX_NONCE: u32 = 128;

/// The search for a `nonce=` parameter on one line and the hash of its value, a byte at a
/// time (the programs feed it under `bpf_loop`, so the verifier checks one step). The name
/// matches in any case after a separator (so `cnonce=` is not it); the value may be quoted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NonceScan {
    /// The last bytes seen, lowered, the newest lowest.
    pub acc: u64,
    pub hash: u32,
    /// 0: searching; 1: at the value's first byte; 2: in a quoted value; 3: in a bare value;
    /// [`NonceScan::DONE`]; [`NonceScan::FAILED`].
    pub state: u32,
    pub len: u32,
    /// Nonzero: the search ends at the line's end (a header value's search).
    pub one_line: u32,
}

/// `nonce=` as [`NonceScan::acc`] holds it (`| 0x20` lowers letters and keeps `=`).
const NONCE_KEY: u64 = u64::from_be_bytes([0, 0, b'n', b'o', b'n', b'c', b'e', b'=']);

impl NonceScan {
    /// Found: [`NonceScan::hash`] is the nonce's.
    pub const DONE: u32 = 4;
    /// The line ended first, or the value was empty.
    pub const FAILED: u32 = 5;

    /// Starts a new search in place (in map memory: one store per field, where a struct
    /// literal would become a byte-wise `memset` loop in BPF).
    ///
    /// # Safety
    /// `p` must point to a `NonceScan` the caller may write.
    #[inline(always)]
    pub unsafe fn restart(p: *mut NonceScan, one_line: bool) {
        // SAFETY: the caller's promise.
        unsafe {
            core::ptr::write_volatile(&raw mut (*p).acc, 0);
            core::ptr::write_volatile(&raw mut (*p).hash, 0);
            core::ptr::write_volatile(&raw mut (*p).state, 0);
            core::ptr::write_volatile(&raw mut (*p).len, 0);
            core::ptr::write_volatile(&raw mut (*p).one_line, u32::from(one_line));
        }
    }

    /// Feeds one byte; returns true when the scan is over (found or given up).
    #[inline(always)]
    pub fn step(&mut self, b: u8) -> bool {
        match self.state {
            0 => {
                if b == b'\n' && self.one_line != 0 {
                    self.state = Self::FAILED;
                    return true;
                }
                let acc = (self.acc << 8) | u64::from(b | 0x20);
                self.acc = acc;
                let before = ((acc >> 48) & 0xff) as u8;
                if acc & 0xffff_ffff_ffff == NONCE_KEY && !before.is_ascii_alphanumeric() {
                    self.state = 1;
                    self.hash = NONCE_START;
                }
                false
            }
            1 if b == b'"' => {
                self.state = 2;
                false
            }
            1 => {
                self.state = 3;
                self.value(b, false)
            }
            2 => self.value(b, true),
            3 => self.value(b, false),
            _ => true,
        }
    }

    #[inline(always)]
    fn value(&mut self, b: u8, quoted: bool) -> bool {
        let end = if quoted {
            b == b'"' || b == b'\r' || b == b'\n'
        } else {
            b == b',' || b == b' ' || b == b'\t' || b == b'\r' || b == b'\n'
        };
        if end || self.len >= MAX_NONCE {
            self.state = if self.len > 0 { Self::DONE } else { Self::FAILED };
            self.hash = nonce_finish(self.hash);
            return true;
        }
        self.hash = nonce_step(self.hash, b);
        self.len += 1;
        false
    }

    /// The nonce's hash, once found.
    #[must_use]
    #[inline(always)]
    pub const fn found(&self) -> Option<u32> {
        if self.state == Self::DONE { Some(self.hash) } else { None }
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::format;

    use super::*;

    fn scan(text: &str) -> Option<u32> {
        let mut s = NonceScan { one_line: 1, ..NonceScan::default() };
        for &b in text.as_bytes() {
            if s.step(b) {
                break;
            }
        }
        s.found()
    }

    #[test]
    fn nonces_are_found_in_challenges_and_answers() {
        let n = Some(nonce(b"Zq8x1AbC"));
        assert_eq!(
            scan(r#"WWW-Authenticate: Digest realm="pbx", nonce="Zq8x1AbC", qop="auth""#),
            n
        );
        assert_eq!(
            scan(
                r#"Authorization: Digest username="100",realm="pbx",NONCE="Zq8x1AbC",uri="sip:pbx",cnonce="x""#
            ),
            n
        );
        assert_eq!(scan(r#"Authorization: Digest nonce=Zq8x1AbC, response="1""#), n, "bare");
        assert_eq!(scan(r#"Authorization: Digest cnonce="Zq8x1AbC""#), None, "the client's nonce");
        assert_eq!(
            scan("Authorization: Digest response=\"1\"\r\nX: nonce=\"Zq8x1AbC\""),
            None,
            "one line"
        );
        assert_eq!(scan(r#"nonce="""#), None, "empty");
        let long = format!("nonce=\"{}\"", "a".repeat(300));
        assert_eq!(scan(&long), Some(nonce("a".repeat(300).as_bytes())), "cut alike");
        // A whole answer is searched past its first line.
        let mut s = NonceScan::default();
        let answer = "SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest nonce=\"Zq8x1AbC\"\r\n";
        answer.bytes().take_while(|&b| !s.step(b)).count();
        assert_eq!(s.found(), n);
    }

    #[test]
    fn only_answers_to_nonces_sent_count() {
        const W: u64 = 60_000_000_000;
        let mut c = Challenges::default();
        for i in 0..10u32 {
            c.challenged(nonce(&i.to_le_bytes()));
        }
        // The two oldest are gone from the ring of eight.
        assert!(!c.answers(nonce(&0u32.to_le_bytes()), 1, W));
        assert!(c.answers(nonce(&9u32.to_le_bytes()), 1, W));
        assert!(c.answers(nonce(&2u32.to_le_bytes()), 2, W));
        assert!(!c.answers(nonce(b"made up"), 3, W));
        assert_eq!(c.proven_failures(3, W, 0), 2);
        assert_eq!(c.proven_failures(3, W, 2), 0, "each answered with success");
        assert_eq!(c.proven_failures(W + 3, W, 0), 2, "the last window still counts");
        assert_eq!(c.proven_failures(2 * W + 3, W, 0), 0, "older does not");
    }

    #[test]
    fn a_flood_is_admitted_at_the_budgets_pace() {
        let mut b = BanBudget::for_table(65_536, 3600);
        assert_eq!(b.burst(), 8192);
        let now = 1_000_000_000_000;
        let admitted = (0..100_000).filter(|_| b.admit(now)).count();
        // The burst, and the one ahead of schedule GCRA lets through.
        assert_eq!(admitted, 8193);
        // A ban lifetime later, at most half the table more.
        let later = now + 3600 * 1_000_000_000;
        let more = (0..100_000).filter(|_| b.admit(later)).count();
        assert!(more <= 65_536 / 2 + 1, "{more}");
    }

    #[test]
    fn no_table_or_no_bans_means_no_budget() {
        let mut b = BanBudget::for_table(65_536, 0);
        assert!((0..1000).all(|_| b.admit(5)));
    }

    #[test]
    fn reverse_path_bytes_read_safely() {
        assert_eq!(ReversePath::from_u8(0), ReversePath::Strict);
        assert_eq!(ReversePath::from_u8(1), ReversePath::Loose);
        assert_eq!(ReversePath::from_u8(2), ReversePath::Off);
        assert_eq!(ReversePath::from_u8(9), ReversePath::Strict);
        for w in Withheld::ALL {
            assert_eq!(Withheld::from_u8(w as u8), Some(w));
        }
    }
}
