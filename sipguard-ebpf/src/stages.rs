//! How one stage of the XDP program hands a packet to the next (`sipguard_common::stages`):
//! what it found goes into this CPU's [`Handoff`], then a tail call through the jump table
//! `SG_STAGES`. A tail call does not return; if it does (an empty slot), the packet is passed
//! and counted as `stage_missing`, so a half-made load can never drop what it cannot judge.
//!
//! Why stages and not functions: the verifier checks a program once from its entry, but a
//! function once per distinct state it is reached in. The header checks reach the payload in
//! dozens of states (each VLAN, option and extension layout, IPv4 or IPv6, UDP or TCP), and
//! every kernel version prunes them differently: the same object verified at 313,000
//! instructions on one 6.18 build and failed at a million on another. A stage starts from
//! its inputs in memory, so its cost is its own and adds up across stages instead of
//! multiplying.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use sipguard_common::{
    behaviour::Tally,
    counters::{Misc, Reason},
    stages::{STAGE_SLOTS, Stage},
};
use sipguard_ebpf::{
    active_policy::ActivePolicy,
    packed::{Finding, PayloadKind, Trip},
};

use crate::{
    parse::Segment,
    verdict::{count, finish},
};

/// The jump table: the stage programs of this load, filled by userspace at load time.
#[map(name = "SG_STAGES")]
static STAGES: ProgramArray = ProgramArray::with_max_entries(STAGE_SLOTS, 0);

/// What a stage hands to the next, in per-CPU memory. XDP does not nest on a CPU, so a
/// packet's stages have it to themselves.
#[derive(Clone, Copy)]
pub(crate) struct Handoff {
    pub seg: Segment,
    pub policy: ActivePolicy,
    /// What the payload starts with (set by the entry program).
    pub kind: PayloadKind,
    /// What calls for a ban, for [`Stage::Convict`]: [`Charge`].
    pub charge: u32,
    /// A decisive signature match (set by the inspection).
    pub finding: Finding,
    /// A behaviour rule's trip (`rules::addressed`'s result) and its estimate.
    pub trip: Trip,
    pub seen: Tally,
}

/// What calls for a ban ([`Handoff::charge`]).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Charge {
    /// A decisive signature match ([`Handoff::hit`]).
    Signature = 1,
    /// A request to an undeclared domain.
    UnknownDomain = 2,
    /// A behaviour rule tripped by the user this request addressed ([`Handoff::trip`]).
    Behaviour = 3,
}

#[map(name = "SG_HANDOFF")]
static HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's handoff.
#[inline(always)]
pub(crate) fn handoff() -> Option<&'static mut Handoff> {
    // SAFETY: this CPU's value; XDP does not nest, so nothing else uses it meanwhile.
    HANDOFF.get_ptr_mut(0).map(|h| unsafe { &mut *h })
}

/// Hands the packet to `stage`. Returns only if the stage is missing: the caller returns
/// what this returns (the packet passes, counted).
#[inline(always)]
pub(crate) fn hand_over(ctx: &XdpContext, stage: Stage, policy: &ActivePolicy) -> u32 {
    // SAFETY: the tail call replaces this program with the stage, which reads the handoff;
    // nothing of this program runs after it unless the slot is empty.
    unsafe { STAGES.tail_call(ctx, stage.slot()) };
    count(Misc::StageMissing.slot());
    finish(policy, Reason::DefaultPass)
}
