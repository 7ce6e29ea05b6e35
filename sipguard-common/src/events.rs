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
    /// Signature index, or [`crate::sources::NO_SIG`].
    pub sig: u16,
    /// Bytes of `user_agent` filled.
    pub ua_len: u16,
    /// A [`crate::counters::Reason`].
    pub reason: u8,
    /// A [`crate::sip::Method`], or [`NO_METHOD`] for responses and non-requests.
    pub method: u8,
    /// [`EV_MONITOR`], [`EV_BANNED`], [`EV_UA_TRUNCATED`], [`EV_TCP`].
    pub flags: u8,
    pub reserved: u8,
    pub ban_ttl_secs: u32,
    /// The User-Agent (or Server) value as seen, up to 64 bytes.
    pub user_agent: [u8; UA_BYTES],
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

const _: () = assert!(size_of::<Event>() == 128);
