//! The verdict: one counter per decision, per-destination drop counts, and monitor mode
//! turning drops into passes counted apart.

use aya_ebpf::bindings::xdp_action;
use sipguard_common::counters::{Reason, Verdict};
use sipguard_ebpf::active_policy::ActivePolicy;

use crate::maps::{DEST_DROPS, STATS};

#[inline(always)]
pub(crate) fn count(slot: u32) {
    if let Some(c) = STATS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot is only touched by this CPU. XDP does not nest, and the
        // response program runs with bottom halves off (the transmit path), so XDP cannot
        // interrupt it on its CPU.
        unsafe { *c += 1 };
    }
}

/// Counts the verdict once and turns it into an XDP action, honouring monitor mode.
#[inline(always)]
pub(crate) fn finish(policy: &ActivePolicy, reason: Reason) -> u32 {
    match reason.verdict() {
        Verdict::Pass => {
            count(reason.slot(false));
            xdp_action::XDP_PASS
        }
        Verdict::Drop => {
            if let Some(c) = DEST_DROPS.get_ptr_mut(policy.id()) {
                // SAFETY: per-CPU slot, touched only by this CPU.
                unsafe { *c += 1 };
            }
            let monitor = policy.monitor();
            count(reason.slot(monitor));
            if monitor { xdp_action::XDP_PASS } else { xdp_action::XDP_DROP }
        }
    }
}
