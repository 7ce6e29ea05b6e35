//! Types and pure logic shared by the XDP program (`sipguard-ebpf`) and userspace (`sipguard`).
//!
//! Everything here is `no_std`, free of allocation and of padding: each type that crosses a map
//! boundary is `#[repr(C)]` with a size asserted at compile time, so both sides agree on the
//! bytes without relying on the compiler's layout choices.
#![no_std]
#![expect(
    clippy::inline_always,
    reason = "the XDP program calls these per packet; BPF-to-BPF calls cost and confuse the verifier's packet-pointer tracking"
)]

pub mod behaviour;
pub mod callee;
pub mod challenges;
pub mod config;
pub mod counters;
pub mod decisions;
pub mod domain;
pub mod events;
pub mod gcra;
pub mod inspect;
pub mod lists;
pub mod maps;
pub mod policy;
pub mod sip;
pub mod sources;
pub mod stages;
pub mod trust;

#[cfg(feature = "user")]
mod pod {
    /// Marks map value types as plain old data for aya.
    macro_rules! pod {
        ($($t:path),* $(,)?) => {$(
            // SAFETY: each type is `#[repr(C)]`, built only from integers and byte arrays,
            // and has no padding (its size is asserted next to its definition).
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(
        crate::config::Config,
        crate::policy::Policy,
        crate::policy::DestInfo,
        crate::inspect::Automaton,
        crate::inspect::SigRecord,
        crate::sources::Ban,
        crate::sources::RateState,
        crate::events::Event,
        crate::behaviour::Behaviour,
        crate::domain::DomainKey,
        crate::domain::DomainName,
        crate::trust::BanBudget,
        crate::challenges::Challenges,
        crate::decisions::Decision,
        crate::decisions::DecisionSet,
        crate::decisions::ScenarioName,
        crate::decisions::BouncerReport,
    );
}
