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
pub mod config;
pub mod counters;
pub mod decisions;
pub mod domain;
pub mod events;
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
    // SAFETY: each type is `#[repr(C)]`, built only from integers and byte arrays, and has
    // no padding (its size is asserted next to its definition).
    unsafe impl aya::Pod for crate::config::Config {}
    unsafe impl aya::Pod for crate::policy::Policy {}
    unsafe impl aya::Pod for crate::policy::DestInfo {}
    unsafe impl aya::Pod for crate::inspect::Automaton {}
    unsafe impl aya::Pod for crate::inspect::SigRecord {}
    unsafe impl aya::Pod for crate::sources::Ban {}
    unsafe impl aya::Pod for crate::sources::RateState {}
    unsafe impl aya::Pod for crate::events::Event {}
    unsafe impl aya::Pod for crate::behaviour::Behaviour {}
    unsafe impl aya::Pod for crate::domain::DomainKey {}
    unsafe impl aya::Pod for crate::domain::DomainName {}
    unsafe impl aya::Pod for crate::trust::BanBudget {}
    unsafe impl aya::Pod for crate::trust::Challenges {}
    unsafe impl aya::Pod for crate::decisions::Decision {}
    unsafe impl aya::Pod for crate::decisions::DecisionSet {}
    unsafe impl aya::Pod for crate::decisions::ScenarioName {}
    unsafe impl aya::Pod for crate::decisions::BouncerReport {}
}
