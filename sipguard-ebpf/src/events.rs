//! Incident records to userspace, within a global budget so a flood cannot flood the ring.
//! Records are written straight into the reserved ring-buffer slot: the BPF stack (512
//! bytes) has no room for a copy.

use sipguard_common::{
    config::Config,
    counters::Misc,
    events::{EV_TCP, EV_UA_TRUNCATED, Event, UA_BYTES},
    gcra,
    inspect::{WINDOW, keep},
    trust::Withheld,
};

use crate::{
    clock::now_ns,
    maps::{EVENT_TAT, EVENTS, SCRATCH},
    parse::Segment,
    verdict::count,
};

/// GCRA over all CPUs (racy on purpose: an approximate budget costs no atomics). Takes one
/// event's share of the budget when there is one.
#[inline(always)]
fn within_budget(config: &Config) -> bool {
    let Some(tat) = EVENT_TAT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: pointer from a successful lookup.
    let tat = unsafe { &mut *tat };
    gcra::take(tat, now_ns(), config.event_interval_ns, config.event_tolerance_ns)
}

/// Whether an event could be sent now, without taking any of the budget. When it could not,
/// a message already decided need not be read further for its User-Agent: that is the state
/// of a flood, where the per-packet cost counts.
#[inline(always)]
pub(crate) fn budget_left(config: &Config) -> bool {
    EVENT_TAT.get(0).is_some_and(|tat| gcra::has(*tat, now_ns(), config.event_tolerance_ns))
}

/// What happened, beyond the packet's addressing.
pub(crate) struct Incident {
    pub reason: u8,
    pub sig: u16,
    pub method: u8,
    pub flags: u8,
    /// The cause of a withheld ban (`sipguard_common::trust::Withheld`), or 0.
    pub withheld: u8,
    pub detail: Detail,
}

/// What fills the record's last 64 bytes.
pub(crate) enum Detail {
    Nothing,
    /// The User-Agent value in this CPU's inspection window: (offset, length).
    UserAgent(usize, usize),
    /// A behaviour rule's estimate (`sipguard_common::events::pack_counts`) and the distinct
    /// users addressed.
    Counts(u64, u64, u64),
}

/// Not inlined: two call sites, and its frame (the record being filled) stays off the hot
/// path's stack.
#[inline(never)]
pub(crate) fn report(config: &Config, ifindex: u32, seg: &Segment, incident: &Incident) {
    // A ban withheld for the ban budget is a flood's: its record would spend the incident
    // budget that the bans made meanwhile need (the counter has it).
    if incident.withheld == Withheld::Budget as u8 {
        return;
    }
    if !within_budget(config) {
        count(Misc::EventsSuppressed.slot());
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count(Misc::EventsSuppressed.slot());
        return;
    };
    let e = entry.as_mut_ptr();
    let mut flags = incident.flags;
    if seg.tcp != 0 {
        flags |= EV_TCP;
    }
    // SAFETY: `e` is the reserved, writable ring-buffer record; every field is written
    // before it is submitted.
    unsafe {
        (*e).time_ns = now_ns();
        (*e).src = seg.src.key();
        (*e).dst = seg.dst.key();
        (*e).ifindex = ifindex;
        (*e).src_port = seg.src_port;
        (*e).dst_port = seg.dst_port;
        (*e).sig = incident.sig;
        (*e).reason = incident.reason;
        (*e).method = incident.method;
        (*e).withheld = incident.withheld;
        (*e).ban_ttl_secs = config.ban_ttl_secs;
        let mut n = 0usize;
        #[expect(clippy::cast_ptr_alignment, reason = "only written with write_unaligned")]
        let ua = (*e).user_agent.as_mut_ptr().cast::<u64>();
        let mut i = 0;
        let scratch = match incident.detail {
            Detail::UserAgent(..) => SCRATCH.get(0),
            _ => None,
        };
        if let (&Detail::UserAgent(off, len), Some(scratch)) = (&incident.detail, scratch) {
            n = if len > UA_BYTES {
                flags |= EV_UA_TRUNCATED;
                UA_BYTES
            } else {
                len
            };
            // Word copies, cut at the value's end.
            while i < UA_BYTES / 8 {
                let src = scratch.buf.as_ptr().add((off + i * 8) & (WINDOW - 1));
                let word = core::ptr::read_unaligned(src.cast::<u64>());
                let have = n.saturating_sub(i * 8);
                core::ptr::write_unaligned(ua.add(i), keep(word, have));
                i += 1;
            }
        } else {
            let (first, second, third) = match incident.detail {
                Detail::Counts(first, second, third) => (first, second, third),
                _ => (0, 0, 0),
            };
            core::ptr::write_unaligned(ua, first);
            core::ptr::write_unaligned(ua.add(1), second);
            core::ptr::write_unaligned(ua.add(2), third);
            i = 3;
            while i < UA_BYTES / 8 {
                core::ptr::write_unaligned(ua.add(i), 0);
                i += 1;
            }
        }
        (*e).ua_len = n as u16;
        (*e).flags = flags;
    }
    entry.submit(0);
    count(Misc::EventsSent.slot());
}
