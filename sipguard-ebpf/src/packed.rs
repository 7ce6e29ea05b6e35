//! The words the kernel's stages hand each other, packed: what a result of several fields
//! is, in one register or one word of the handoff, with named bits and the host's tests of
//! the packing. (A struct of several fields on the stack is stored and reloaded field by field,
//! and a branch on each field makes a path of its own for the verifier; one word is one
//! value.) `ActivePolicy` is the model.

/// What inspecting a message found: nothing inspected, a message walked to its end with no
/// decision, or a decisive signature with where the User-Agent sits in the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding(u64);

const DECISIVE: u64 = 1 << 63;
const WALKED: u64 = 1 << 62;
const UA_OFF_AT: u32 = 16;
const UA_LEN_AT: u32 = 32;
const HALF: u64 = 0xffff;

impl Finding {
    /// Nothing was inspected (no payload to copy, or too short to be a message).
    pub const NOTHING: Self = Self(0);
    /// The message was walked to its end and nothing decided it: the window holds it, and
    /// what the walk noted about it.
    pub const WALKED: Self = Self(WALKED);

    /// Signature `sig` decided the message; its User-Agent is `ua_len` bytes at `ua_off` of
    /// the window (0 bytes: not seen).
    #[inline(always)]
    #[must_use]
    pub const fn decisive(sig: u16, ua_off: usize, ua_len: usize) -> Self {
        Self(
            sig as u64
                | (ua_off as u64 & HALF) << UA_OFF_AT
                | (ua_len as u64 & HALF) << UA_LEN_AT
                | DECISIVE,
        )
    }

    #[inline(always)]
    #[must_use]
    pub const fn is_decisive(self) -> bool {
        self.0 & DECISIVE != 0
    }

    #[inline(always)]
    #[must_use]
    pub const fn walked(self) -> bool {
        self.0 & WALKED != 0
    }

    /// The decisive signature's slot.
    #[inline(always)]
    #[must_use]
    pub const fn sig(self) -> u16 {
        (self.0 & HALF) as u16
    }

    /// Where the User-Agent sits in the window, and its length (0: not seen).
    #[inline(always)]
    #[must_use]
    pub const fn user_agent(self) -> (usize, usize) {
        (((self.0 >> UA_OFF_AT) & HALF) as usize, ((self.0 >> UA_LEN_AT) & HALF) as usize)
    }

    #[inline(always)]
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }

    #[inline(always)]
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// What the inspection stage found at the start of a payload: the method byte of a request
/// (`sipguard_common::events::NO_METHOD` otherwise), whether it is a response, and whether it
/// is a SIP message at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadKind(u32);

const METHOD: u32 = 0xff;
const RESPONSE: u32 = 0x100;
const SIP: u32 = 0x200;

impl PayloadKind {
    /// Not classified yet (what the entry program hands on): no method, not SIP.
    pub const UNCLASSIFIED: Self = Self::new(sipguard_common::events::NO_METHOD, false, false);

    #[inline(always)]
    #[must_use]
    pub const fn new(method: u8, response: bool, sip: bool) -> Self {
        Self(method as u32 | if response { RESPONSE } else { 0 } | if sip { SIP } else { 0 })
    }

    #[inline(always)]
    #[must_use]
    pub const fn method(self) -> u8 {
        (self.0 & METHOD) as u8
    }

    #[inline(always)]
    #[must_use]
    pub const fn is_response(self) -> bool {
        self.0 & RESPONSE != 0
    }

    /// A request or a response: the inspection reads it.
    #[inline(always)]
    #[must_use]
    pub const fn is_sip(self) -> bool {
        self.0 & SIP != 0
    }
}

/// A behaviour rule's trip, as the stage that counts a user hands it to the stage that bans:
/// the rule (`sipguard_common::behaviour::Rule` as its number), whether the server's policy is
/// in monitor mode, and the distinct users the party addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip(u64);

const TRIPPED: u64 = 1 << 16;
const MONITOR_AT: u32 = 8;
const USERS_AT: u32 = 32;

impl Trip {
    /// No rule tripped.
    pub const NONE: Self = Self(0);

    #[inline(always)]
    #[must_use]
    pub const fn new(rule: u8, monitor: bool, users: u32) -> Self {
        Self(rule as u64 | (monitor as u64) << MONITOR_AT | (users as u64) << USERS_AT | TRIPPED)
    }

    #[inline(always)]
    #[must_use]
    pub const fn tripped(self) -> bool {
        self.0 & TRIPPED != 0
    }

    /// The rule's number (`Rule::from_u16` turns it back).
    #[inline(always)]
    #[must_use]
    pub const fn rule(self) -> u16 {
        (self.0 & 0xff) as u16
    }

    #[inline(always)]
    #[must_use]
    pub const fn monitor(self) -> bool {
        (self.0 >> MONITOR_AT) & 1 != 0
    }

    #[inline(always)]
    #[must_use]
    pub const fn users(self) -> u32 {
        (self.0 >> USERS_AT) as u32
    }

    #[inline(always)]
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }

    #[inline(always)]
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

/// Whom a request addresses, as far as the addressee stage judges it: an undeclared domain,
/// or the bucket of the user it names (`sipguard_common::behaviour::user_bucket`), or
/// neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressee(u64);

const UNKNOWN_DOMAIN: u64 = 1 << 63;
const USER: u64 = 1 << 62;
const LONG_NUMBER: u64 = 1 << 61;
const SAMPLED: u64 = 1 << 60;
const BUCKET: u64 = 63;

impl Addressee {
    /// Nothing to judge: inside a dialog, no domain to check, no user to count.
    pub const NONE: Self = Self(0);
    /// The request goes to a host no declared domain names.
    pub const UNKNOWN_DOMAIN: Self = Self(UNKNOWN_DOMAIN);

    /// A request to a user: its bucket, whether the user part is a number
    /// (`sipguard_common::behaviour::LONG_NUMBER_LEN`), not an extension, and whether it is
    /// one of the numbers a party without standing is counted for
    /// (`sipguard_common::behaviour::sampled`).
    #[inline(always)]
    #[must_use]
    pub const fn user(bucket: u64, long_number: bool, sampled: bool) -> Self {
        Self(
            USER | if long_number { LONG_NUMBER } else { 0 }
                | if sampled { SAMPLED } else { 0 }
                | (bucket & BUCKET),
        )
    }

    /// Whether the user is one of the sampled numbers.
    #[inline(always)]
    #[must_use]
    pub const fn is_sampled(self) -> bool {
        self.0 & SAMPLED != 0
    }

    /// Whether the user the request names is a long number.
    #[inline(always)]
    #[must_use]
    pub const fn is_long_number(self) -> bool {
        self.0 & LONG_NUMBER != 0
    }

    #[inline(always)]
    #[must_use]
    pub const fn is_unknown_domain(self) -> bool {
        self.0 & UNKNOWN_DOMAIN != 0
    }

    /// The bucket of the user the request names, if it names one.
    #[inline(always)]
    #[must_use]
    pub const fn user_bucket(self) -> Option<u64> {
        if self.0 & USER != 0 { Some(self.0 & BUCKET) } else { None }
    }
}

/// Where a search in the window stopped, and whether at the line's end (LF) or at the byte
/// it looked for: one word, so that it can pass through memory (`window::launder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop(usize);

impl Stop {
    #[inline(always)]
    #[must_use]
    pub const fn new(at: usize, line_end: bool) -> Self {
        Self(at << 1 | line_end as usize)
    }

    #[inline(always)]
    #[must_use]
    pub const fn at(self) -> usize {
        self.0 >> 1
    }

    #[inline(always)]
    #[must_use]
    pub const fn line_end(self) -> bool {
        self.0 & 1 != 0
    }

    #[inline(always)]
    #[must_use]
    pub const fn raw(self) -> usize {
        self.0
    }

    #[inline(always)]
    #[must_use]
    pub const fn from_raw(raw: usize) -> Self {
        Self(raw)
    }
}

/// What became of a ban the trust checks were asked for: made, withheld for a cause
/// (`sipguard_common::trust::Withheld`), or not asked (bans off, or the table refused it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanOutcome(u8);

const BANNED: u8 = 0x80;

impl BanOutcome {
    pub const NOT_MADE: Self = Self(0);
    pub const BANNED: Self = Self(BANNED);

    /// Withheld for `cause` (a `Withheld` as its number, never 0).
    #[inline(always)]
    #[must_use]
    pub const fn withheld(cause: u8) -> Self {
        Self(cause & !BANNED)
    }

    #[inline(always)]
    #[must_use]
    pub const fn banned(self) -> bool {
        self.0 == BANNED
    }

    /// The cause a withheld ban is reported with (0: none).
    #[inline(always)]
    #[must_use]
    pub const fn cause(self) -> u8 {
        if self.0 == BANNED { 0 } else { self.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_keeps_its_fields_apart() {
        let f = Finding::decisive(1023, 2047, 300);
        assert!(f.is_decisive() && !f.walked());
        assert_eq!((f.sig(), f.user_agent()), (1023, (2047, 300)));
        assert_eq!(Finding::from_raw(f.raw()), f);
        assert!(Finding::WALKED.walked() && !Finding::WALKED.is_decisive());
        assert!(!Finding::NOTHING.walked() && !Finding::NOTHING.is_decisive());
        assert_eq!(Finding::decisive(0, 0, 0).user_agent(), (0, 0));
    }

    #[test]
    fn a_payload_kind_keeps_its_fields_apart() {
        for (method, response, sip) in [(0, false, false), (255, true, true), (3, false, true)] {
            let k = PayloadKind::new(method, response, sip);
            assert_eq!((k.method(), k.is_response(), k.is_sip()), (method, response, sip));
        }
    }

    #[test]
    fn a_trip_keeps_its_fields_apart() {
        let t = Trip::new(2, true, u32::MAX);
        assert!(t.tripped());
        assert_eq!((t.rule(), t.monitor(), t.users()), (2, true, u32::MAX));
        assert_eq!(Trip::from_raw(t.raw()), t);
        let t = Trip::new(0, false, 0);
        assert!(t.tripped() && !t.monitor() && t.users() == 0);
        assert!(!Trip::NONE.tripped());
    }

    #[test]
    fn an_addressee_is_one_of_three() {
        assert!(Addressee::UNKNOWN_DOMAIN.is_unknown_domain());
        assert_eq!(Addressee::UNKNOWN_DOMAIN.user_bucket(), None);
        assert_eq!(Addressee::user(63, false, false).user_bucket(), Some(63));
        assert_eq!(
            Addressee::user(64 + 5, false, false).user_bucket(),
            Some(5),
            "a bucket is six bits"
        );
        assert_eq!(Addressee::user(0, false, false).user_bucket(), Some(0), "bucket 0 too");
        assert!(!Addressee::user(0, true, true).is_unknown_domain());
        assert_eq!(Addressee::user(7, true, true).user_bucket(), Some(7), "a number's bucket");
        assert!(Addressee::user(7, true, false).is_long_number());
        assert!(!Addressee::user(7, false, true).is_long_number());
        assert!(Addressee::user(7, true, true).is_sampled());
        assert!(!Addressee::user(63, true, false).is_sampled(), "the bucket is not the sample");
        assert!(!Addressee::NONE.is_long_number() && !Addressee::UNKNOWN_DOMAIN.is_long_number());
        assert_eq!(Addressee::NONE.user_bucket(), None);
    }

    #[test]
    fn a_stop_keeps_its_place_and_kind() {
        for (at, end) in [(0, true), (2047, false), (12345, true)] {
            let s = Stop::from_raw(Stop::new(at, end).raw());
            assert_eq!((s.at(), s.line_end()), (at, end));
        }
    }

    #[test]
    fn a_ban_outcome_tells_made_from_withheld() {
        assert!(BanOutcome::BANNED.banned());
        assert_eq!(BanOutcome::BANNED.cause(), 0);
        assert!(!BanOutcome::withheld(2).banned());
        assert_eq!(BanOutcome::withheld(2).cause(), 2);
        assert_eq!(BanOutcome::NOT_MADE.cause(), 0);
        assert!(!BanOutcome::NOT_MADE.banned());
    }
}
