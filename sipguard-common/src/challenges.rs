//! What a party's answers to its digest challenges prove (`SG_CHALLENGES`, for parties with
//! standing: `crate::trust`). The response program notes the nonce of every challenge it
//! sees leave for such a party; the XDP program keeps the Call-ID of each request whose
//! credentials echo one (an *attempt*: only the party that received the challenge can make
//! it), and the response program settles each attempt by the answer that names its Call-ID:
//! a refusal (challenged again, or 403) is a failure provably the party's own; a ringing or
//! final answer to its INVITE or REGISTER means the server took the credentials, a credit
//! against the party's challenges (`crate::behaviour`).

/// Nonces of recent challenges kept per party (a power of two).
pub const NONCES: usize = 8;

/// Attempts kept per party until an answer settles them (a power of two). The answer that
/// settles an attempt (a refusal, a ringing, a busy) follows it within milliseconds: a
/// handful of slots holds every attempt still unsettled, even for a busy call centre. One
/// pushed out unsettled earns nothing: the ring fails closed.
pub const ATTEMPTS: usize = 8;

/// What the server's digest challenges to a party with standing, and the party's answers to
/// them, prove (`SG_CHALLENGES`). A party that answers a challenge with its nonce received
/// it: the request is its own (an *attempt*), and so is the answer to it. A forger, who
/// never sees the nonces sent to the address it uses, cannot make an attempt, and cannot
/// name one's Call-ID.
///
/// Credit is earned only on evidence: an answer that names a waiting attempt's Call-ID,
/// answers an INVITE or a REGISTER, and is neither a challenge nor a refusal. A call
/// centre's challenged calls, answered with credentials and then ringing or busy, are not
/// failures; a guesser's wrong passwords are, and so is any attempt nothing settles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Challenges {
    /// [`nonce`] hashes of the last challenges sent to the party (a ring; 0: empty).
    pub nonces: [u32; NONCES],
    /// Where the next nonce goes.
    pub next: u32,
    /// Attempts the server took, in the current window of the behaviour rules and in the
    /// one before.
    pub accepted: u32,
    pub previous_accepted: u32,
    /// Attempts the server refused (challenged again, or 403), in the same windows.
    pub refused: u32,
    pub previous_refused: u32,
    /// [`call_id`] hashes of the latest attempts, until an answer settles each (a ring; 0:
    /// empty or settled).
    pub attempts: [u32; ATTEMPTS],
    /// Where the next attempt goes.
    pub next_attempt: u32,
    pub window_start_ns: u64,
}

const _: () = assert!(size_of::<Challenges>() == 96);

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
            self.accepted = 0;
            self.previous_accepted = 0;
            self.refused = 0;
            self.previous_refused = 0;
            self.window_start_ns = now_ns;
        } else if elapsed >= window_ns {
            self.previous_accepted = self.accepted;
            self.accepted = 0;
            self.previous_refused = self.refused;
            self.refused = 0;
            self.window_start_ns += window_ns;
        }
    }

    /// Whether `call` is an attempt waiting for its answer.
    #[inline(always)]
    fn waiting(&self, call: u32) -> bool {
        let mut found = false;
        let mut i = 0;
        while i < ATTEMPTS {
            found |= self.attempts[i] == call;
            i += 1;
        }
        found
    }

    /// A request from the party carried credentials for the nonce `hash`, in a message whose
    /// Call-ID hashes to `call` (0: none found): keeps the attempt, if the nonce is one the
    /// party was sent, for the answer that settles it (once: a retransmission, or another
    /// request of the same Call-ID before the answer, is the same attempt). Returns whether
    /// the nonce was the party's.
    #[inline(always)]
    pub fn answers(&mut self, hash: u32, call: u32) -> bool {
        if hash == 0 {
            return false;
        }
        let mut known = false;
        let mut i = 0;
        while i < NONCES {
            known |= self.nonces[i] == hash;
            i += 1;
        }
        // Without a Call-ID no answer can settle it: it earns nothing, and is not kept.
        if known && call != 0 && !self.waiting(call) {
            self.attempts[(self.next_attempt as usize) & (ATTEMPTS - 1)] = call;
            self.next_attempt = self.next_attempt.wrapping_add(1);
        }
        known
    }

    /// Whether an attempt still waits for its answer: only then is an answer's Call-ID worth
    /// reading.
    #[must_use]
    #[inline(always)]
    pub fn awaiting(&self) -> bool {
        let mut any = 0;
        let mut i = 0;
        while i < ATTEMPTS {
            any |= self.attempts[i];
            i += 1;
        }
        any != 0
    }

    /// An answer whose Call-ID hashes to `call` left for the party: if it names a waiting
    /// attempt, settles it, as refused (`refused`: a challenge or 403) or as taken (a ringing
    /// or final answer to an INVITE or REGISTER, which the caller checked). Returns whether
    /// it named one.
    #[inline(always)]
    pub fn settles(&mut self, call: u32, refused: bool, now_ns: u64, window_ns: u64) -> bool {
        if call == 0 {
            return false;
        }
        let mut hit = false;
        let mut i = 0;
        while i < ATTEMPTS {
            if self.attempts[i] == call {
                self.attempts[i] = 0;
                hit = true;
            }
            i += 1;
        }
        if hit {
            self.advance(now_ns, window_ns);
            let count = if refused { &mut self.refused } else { &mut self.accepted };
            *count = count.saturating_add(1);
        }
        hit
    }

    /// Attempts taken and refused over the last window before `now_ns`, estimated as the
    /// behaviour rules estimate the answers they weigh them against (`Behaviour`'s blend: an
    /// earlier window weighs by how much of it lies within one window of now).
    #[must_use]
    #[inline(always)]
    fn counts(&self, now_ns: u64, window_ns: u64) -> (u32, u32) {
        let elapsed = now_ns.saturating_sub(self.window_start_ns);
        if window_ns == 0 || elapsed >= 2 * window_ns {
            return (0, 0);
        }
        // In 1/1024ths of the earlier window's count (`window_ns` fits 54 bits, so the
        // products cannot wrap).
        let blend = |current: u32, earlier: u32, weight: u64| {
            let part = u32::try_from(u64::from(earlier) * weight / 1024).unwrap_or(earlier);
            current.saturating_add(part)
        };
        if elapsed >= window_ns {
            // The current window has ended: it is the earlier one now, and nothing is newer.
            let weight = (2 * window_ns - elapsed) * 1024 / window_ns;
            return (blend(0, self.accepted, weight), blend(0, self.refused, weight));
        }
        let weight = (window_ns - elapsed) * 1024 / window_ns;
        (
            blend(self.accepted, self.previous_accepted, weight),
            blend(self.refused, self.previous_refused, weight),
        )
    }

    /// Attempts the server took: challenges the party answered with credentials that were
    /// accepted, whatever the call then met (ringing, busy, declined, answered).
    #[must_use]
    #[inline(always)]
    pub fn accepted(&self, now_ns: u64, window_ns: u64) -> u32 {
        self.counts(now_ns, window_ns).0
    }

    /// The party's own failures: attempts the server refused. Each echoed a nonce sent to the
    /// party and carried a Call-ID only the party knew, so a forger can make none. A guess of
    /// a brute forcer is one; a phone's registration, a call centre's calls, none.
    #[must_use]
    #[inline(always)]
    pub fn proven_failures(&self, now_ns: u64, window_ns: u64) -> u32 {
        self.counts(now_ns, window_ns).1
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

/// The search for a message's `Call-ID` header (or its compact form `i`, in any case) and the
/// hash of its value, a byte at a time, as [`NonceScan`] searches for a nonce. The Call-ID
/// ties a refusal to the request it answers: a request's answers carry its Call-ID, and an
/// off-path forger cannot learn another party's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CallIdScan {
    /// The last bytes seen, as they came, the newest lowest.
    pub acc: u64,
    pub hash: u32,
    /// 0: searching; 1: after the header's name; 2: after its colon; 3: in the value;
    /// [`CallIdScan::DONE`]; [`CallIdScan::FAILED`].
    pub state: u32,
    pub len: u32,
    pub reserved: u32,
}

/// A line starting `Call-ID`, as [`CallIdScan::acc`] holds it once [`CALL_ID_LOWER`] lowers
/// its letters.
const CALL_ID_KEY: u64 = u64::from_be_bytes(*b"\ncall-id");
const CALL_ID_LOWER: u64 = 0x0020_2020_2000_2020;
/// A line starting `i` (the compact form), lowered the same way.
const COMPACT_KEY: u64 = u64::from_be_bytes([0, 0, 0, 0, 0, 0, b'\n', b'i']);

impl CallIdScan {
    /// Found: [`CallIdScan::hash`] is the Call-ID's.
    pub const DONE: u32 = 4;
    /// The header's value was empty.
    pub const FAILED: u32 = 5;

    /// Starts a new search in place (see [`NonceScan::restart`]).
    ///
    /// # Safety
    /// `p` must point to a `CallIdScan` the caller may write.
    #[inline(always)]
    pub unsafe fn restart(p: *mut CallIdScan) {
        // SAFETY: the caller's promise.
        unsafe {
            core::ptr::write_volatile(&raw mut (*p).acc, 0);
            core::ptr::write_volatile(&raw mut (*p).hash, 0);
            core::ptr::write_volatile(&raw mut (*p).state, 0);
            core::ptr::write_volatile(&raw mut (*p).len, 0);
        }
    }

    /// Feeds one byte; returns true when the scan is over (found or given up).
    #[inline(always)]
    pub fn step(&mut self, b: u8) -> bool {
        match self.state {
            1 if b == b':' => {
                self.state = 2;
                false
            }
            1 | 2 if b == b' ' || b == b'\t' => false,
            2 if b == b'\r' || b == b'\n' => {
                self.state = Self::FAILED;
                true
            }
            2 => {
                self.state = 3;
                self.hash = nonce_step(NONCE_START, b);
                self.len = 1;
                false
            }
            3 => {
                if b == b'\r' || b == b'\n' || b == b' ' || b == b'\t' || self.len >= MAX_NONCE {
                    self.state = Self::DONE;
                    self.hash = nonce_finish(self.hash);
                    return true;
                }
                self.hash = nonce_step(self.hash, b);
                self.len += 1;
                false
            }
            // Searching, or a name that was only the start of another (`In-Reply-To`).
            0 | 1 => {
                let acc = (self.acc << 8) | u64::from(b);
                self.acc = acc;
                let named =
                    (acc | CALL_ID_LOWER) == CALL_ID_KEY || ((acc & 0xffff) | 0x20) == COMPACT_KEY;
                self.state = u32::from(named);
                false
            }
            _ => true,
        }
    }

    /// The Call-ID's hash, once found.
    #[must_use]
    #[inline(always)]
    pub const fn found(&self) -> Option<u32> {
        if self.state == Self::DONE { Some(self.hash) } else { None }
    }
}

/// A Call-ID value's hash, whole (the programs run [`CallIdScan`] a byte at a time).
#[must_use]
pub fn call_id(value: &[u8]) -> u32 {
    nonce(value)
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::format;

    use super::*;

    const W: u64 = 60_000_000_000;

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
    fn only_answers_to_nonces_sent_are_kept() {
        let mut c = Challenges::default();
        for i in 0..10u32 {
            c.challenged(nonce(&i.to_le_bytes()));
        }
        // The two oldest are gone from the ring of eight.
        assert!(!c.answers(nonce(&0u32.to_le_bytes()), 7));
        assert!(c.answers(nonce(&9u32.to_le_bytes()), 8));
        assert!(!c.answers(nonce(b"made up"), 10));
        assert!(!c.settles(7, false, 1, W), "the attempt of an unknown nonce was not kept");
        assert!(c.settles(8, false, 1, W));
        assert_eq!((c.accepted(2, W), c.proven_failures(2, W)), (1, 0));
    }

    fn call_of(text: &str) -> Option<u32> {
        let mut s = CallIdScan::default();
        text.bytes().take_while(|&b| !s.step(b)).count();
        s.found()
    }

    #[test]
    fn call_ids_are_found_in_requests_and_answers() {
        let id = Some(call_id(b"a84b4c76e66710@pc33.example.com"));
        let answer = "SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP 10.0.0.2\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 2 INVITE\r\n\r\n";
        assert_eq!(call_of(answer), id);
        assert_eq!(call_of(&answer.replace("Call-ID", "CALL-ID")), id, "any case");
        assert_eq!(call_of(&answer.replace("Call-ID: ", "call-id :\t")), id, "blanks");
        assert_eq!(call_of(&answer.replace("Call-ID", "i")), id, "compact");
        let reply = answer.replace("Call-ID", "In-Reply-To: x\r\nCall-ID");
        assert_eq!(call_of(&reply), id, "a header that starts like the compact form");
        assert_eq!(call_of(&answer.replace("Call-ID", "X-Call-ID")), None, "another header");
        assert_eq!(call_of("SIP/2.0 401 Unauthorized\r\nCall-ID:\r\n"), None, "empty");
        assert_eq!(call_of("SIP/2.0 401 Unauthorized\r\nCSeq: 1 REGISTER\r\n"), None);
    }

    #[test]
    fn an_answer_settles_only_an_attempt_it_names() {
        let n = nonce(b"n1");
        let mut c = Challenges::default();
        c.challenged(n);
        assert!(!c.awaiting());
        assert!(c.answers(n, call_id(b"call-1")));
        assert!(c.answers(n, call_id(b"call-2")));
        assert!(c.awaiting());
        // Nothing is credited before an answer says the server took the credentials.
        assert_eq!(c.accepted(2, W), 0);
        // A challenge to another call (a forger's, drawn in the party's name) settles none.
        assert!(!c.settles(call_id(b"forged"), true, 3, W));
        assert!(c.settles(call_id(b"call-1"), true, 4, W));
        assert!(!c.settles(call_id(b"call-1"), true, 5, W), "settled once");
        assert!(c.settles(call_id(b"call-2"), false, 5, W));
        assert!(!c.awaiting());
        assert_eq!((c.accepted(5, W), c.proven_failures(5, W)), (1, 1));
        assert!(!c.settles(0, false, 6, W), "no Call-ID found");
        // Three more taken: the window's four weigh by how much of it is still recent.
        for i in 3..6u32 {
            c.answers(n, i);
            c.settles(i, false, 7, W);
        }
        assert_eq!(c.accepted(W / 2, W), 4);
        assert_eq!(c.accepted(W + W / 4, W), 3, "three quarters of the last window");
        assert_eq!(c.accepted(2 * W + 5, W), 0, "older does not count");
    }

    #[test]
    fn attempts_fail_closed() {
        let n = nonce(b"n1");
        let mut c = Challenges::default();
        c.challenged(n);
        // Without a Call-ID, an attempt is not kept, so nothing can credit it.
        assert!(c.answers(n, 0));
        assert!(!c.awaiting());
        // Many requests under one Call-ID before its answer are one attempt: one credit.
        for _ in 0..5 {
            c.answers(n, call_id(b"same"));
        }
        assert!(c.settles(call_id(b"same"), false, 1, W));
        assert!(!c.settles(call_id(b"same"), false, 2, W));
        assert_eq!(c.accepted(2, W), 1);
        // More attempts than slots: the oldest are pushed out unsettled, and earn nothing.
        for i in 0..20u32 {
            c.answers(n, call_id(&i.to_le_bytes()));
        }
        let settled = (0..20u32).filter(|i| c.settles(call_id(&i.to_le_bytes()), false, 3, W));
        assert_eq!(settled.count(), ATTEMPTS);
    }
}
