//! The one clock the program reads.

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;

/// `CLOCK_MONOTONIC_COARSE`: the clock userspace compares ban expiries with, to a tick
/// (1 to 10 ms). Everything timed here is seconds (bans, reports) or at worst tens of
/// milliseconds (the rate limit's interval), and the coarse clock costs a memory read where
/// the fine one reads the TSC: a tenth of a dropped scanner packet's cost.
#[inline(always)]
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no arguments, no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}
