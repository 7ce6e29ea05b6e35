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

#[cfg(test)]
mod tests {
    use super::*;

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
