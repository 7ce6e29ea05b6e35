//! Per-source state kept by the kernel: bans and rate-limit buckets, keyed by address.

/// Key of per-source maps: the IPv6 address, or the IPv4-mapped form (`::ffff:a.b.c.d`).
pub type SourceKey = [u8; 16];

#[must_use]
#[inline(always)]
pub const fn v4_source(a: [u8; 4]) -> SourceKey {
    // Built as one integer: as a byte array literal, BPF code zeroes it with a byte-wise
    // memset loop on every packet.
    let low = (u32::from_le_bytes(a) as u128) << 96 | 0xffff << 80;
    low.to_le_bytes()
}

/// A banned source, in the LRU map `SG_BANS` (an LRU so a flood of spoofed sources evicts
/// old bans, never allowlist entries or memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Ban {
    /// `CLOCK_MONOTONIC` nanoseconds when the ban ends (`u64::MAX`: never).
    pub expires_ns: u64,
    pub created_ns: u64,
    /// Packets dropped because of this ban (updated without atomics: approximate).
    pub packets: u64,
    /// Signature that caused it, [`BEHAVIOUR_SIG`] plus a behaviour rule, or [`NO_SIG`] for
    /// manual bans.
    pub sig: u16,
    /// [`BAN_MONITOR`], [`BAN_MANUAL`].
    pub flags: u16,
    pub reserved: u32,
}

const _: () = assert!(size_of::<Ban>() == 32);

pub const NO_SIG: u16 = 0xffff;
/// `Ban::sig` from here on names a behaviour rule (`BEHAVIOUR_SIG + rule`), not a signature.
pub const BEHAVIOUR_SIG: u16 = 0xff00;
/// `Ban::sig` of a ban for a request to an unknown SIP domain (`crate::domain`).
pub const DOMAIN_SIG: u16 = 0xfe00;
const _: () = assert!(crate::inspect::SIG_CAPACITY < BEHAVIOUR_SIG as u32);
/// Made in monitor mode: its packets are counted, not dropped.
pub const BAN_MONITOR: u16 = 1;
/// Added by `sipguard ban add`.
pub const BAN_MANUAL: u16 = 2;

/// A source's rate-limit state (GCRA), in the LRU map `SG_RATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct RateState {
    /// Theoretical arrival time of the next conforming packet.
    pub tat_ns: u64,
    /// When an event was last reported for this source.
    pub reported_ns: u64,
}

const _: () = assert!(size_of::<RateState>() == 16);

#[cfg(test)]
mod tests {
    #[test]
    fn v4_sources_are_mapped() {
        let k = super::v4_source([192, 0, 2, 1]);
        assert_eq!(k[..12], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(k[12..], [192, 0, 2, 1]);
    }
}
