//! The generic cell rate algorithm, as the kernel's three budgets use it: the per-source rate
//! limit (`SG_RATE`), the incident records' budget (`SG_EVENT_TAT`) and the budget of bans on
//! unverified evidence (`SG_BAN_BUDGET`). One event takes one `interval` from a theoretical
//! arrival time that may run at most `tolerance` ahead of now: a steady rate of one per
//! interval, with bursts of `tolerance / interval` more. The state is one word, and CPUs race
//! on it on purpose: an approximate budget costs no atomics.

/// Takes one event's share of the budget whose theoretical arrival time is `tat`, if the
/// budget has it; returns whether it did.
#[inline(always)]
pub fn take(tat: &mut u64, now: u64, interval: u64, tolerance: u64) -> bool {
    let t = if *tat > now { *tat } else { now };
    if t - now > tolerance {
        return false;
    }
    *tat = t + interval;
    true
}

/// Whether the budget has an event's share now, without taking it.
#[must_use]
#[inline(always)]
pub const fn has(tat: u64, now: u64, tolerance: u64) -> bool {
    tat <= now || tat - now <= tolerance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        // One a second, bursts of three more.
        let (interval, tolerance) = (1_000, 3_000);
        let mut tat = 0;
        let now = 10_000;
        let taken = (0..10).filter(|_| take(&mut tat, now, interval, tolerance)).count();
        assert_eq!(taken, 4, "the burst: one now and three ahead");
        assert!(!has(tat, now, tolerance));
        assert!(!take(&mut tat, now + 999, interval, tolerance));
        assert!(has(tat, now + 1_000, tolerance));
        assert!(take(&mut tat, now + 1_000, interval, tolerance));
        // An idle budget does not save up more than its burst.
        let later = now + 1_000_000;
        let taken = (0..10).filter(|_| take(&mut tat, later, interval, tolerance)).count();
        assert_eq!(taken, 4);
    }

    #[test]
    fn a_zero_tolerance_admits_one_per_interval() {
        let mut tat = 0;
        assert!(take(&mut tat, 5, 10, 0));
        assert!(!take(&mut tat, 14, 10, 0));
        assert!(take(&mut tat, 15, 10, 0));
    }
}
