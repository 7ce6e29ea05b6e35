//! Records the kernel sends through the ring buffer `SG_EVENTS`.

/// One incident: a newly banned source, a signature hit (when bans are off), or a source that
/// started exceeding the rate limit.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Event {
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub time_ns: u64,
    /// Source and destination address (IPv4 as `::ffff:a.b.c.d`).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    pub src_port: u16,
    pub dst_port: u16,
    /// Signature index, or [`crate::sources::NO_SIG`]; for [`REASON_BEHAVIOUR`], the
    /// [`crate::behaviour::Rule`].
    pub sig: u16,
    /// Bytes of `user_agent` filled.
    pub ua_len: u16,
    /// A [`crate::counters::Reason`], or [`REASON_BEHAVIOUR`].
    pub reason: u8,
    /// A [`crate::sip::Method`], or [`NO_METHOD`] for responses and non-requests.
    pub method: u8,
    /// [`EV_MONITOR`], [`EV_BANNED`], [`EV_UA_TRUNCATED`], [`EV_TCP`], [`EV_VERIFIED`].
    pub flags: u8,
    /// Why the ban the incident called for was withheld (`crate::trust::Withheld`), or 0.
    pub withheld: u8,
    pub ban_ttl_secs: u32,
    /// The User-Agent (or Server) value as seen, up to 64 bytes. For [`REASON_BEHAVIOUR`]
    /// (`ua_len` 0), the estimate that tripped the rule: [`Event::behaviour_counts`].
    pub user_agent: [u8; UA_BYTES],
}

/// `Event::reason` of a ban by a behaviour rule: not a packet verdict (the response program
/// judges answers, and never drops them), so outside the [`crate::counters::Reason`] range.
pub const REASON_BEHAVIOUR: u8 = 64;

impl Event {
    /// The distinct users addressed, as the kernel wrote them after the counts (the third
    /// word of `user_agent`).
    #[must_use]
    pub fn behaviour_users(&self) -> u32 {
        let b = &self.user_agent[16..20];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The answers that tripped a behaviour rule, as the kernel packed them
    /// ([`pack_counts`]).
    #[must_use]
    pub fn behaviour_counts(&self) -> crate::behaviour::Tally {
        let w = |i: usize| {
            let b = &self.user_agent[i * 4..i * 4 + 4];
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        crate::behaviour::Tally {
            challenges: w(0),
            forbidden: w(1),
            not_found: w(2),
            successes: w(3),
        }
    }
}

/// A tally in two words, for the first 16 bytes of `user_agent` (written word by word by the
/// kernel).
#[must_use]
#[inline(always)]
pub const fn pack_counts(t: &crate::behaviour::Tally) -> (u64, u64) {
    (
        t.challenges as u64 | (t.forbidden as u64) << 32,
        t.not_found as u64 | (t.successes as u64) << 32,
    )
}

pub const UA_BYTES: usize = 64;
pub const NO_METHOD: u8 = 0xff;
/// Monitor mode: the packet was passed.
pub const EV_MONITOR: u8 = 1;
/// The source was banned by this event.
pub const EV_BANNED: u8 = 2;
/// The User-Agent was longer than [`UA_BYTES`].
pub const EV_UA_TRUNCATED: u8 = 4;
/// The packet was TCP (else UDP).
pub const EV_TCP: u8 = 8;
/// The packet proved its source (a TCP connection past its handshake): the ban skipped the
/// trust checks (`crate::trust`).
pub const EV_VERIFIED: u8 = 16;

const _: () = assert!(size_of::<Event>() == 128);
