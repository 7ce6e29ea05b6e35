//! The datapath's map-free parts, compiled for the host too so `cargo test` exercises them
//! (the `sipguard-xdp` binary uses them from here).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![expect(
    clippy::inline_always,
    reason = "one flat function keeps packet pointers in registers the verifier can track"
)]
#![expect(
    clippy::cast_possible_truncation,
    reason = "fields are masked to their width before they are narrowed"
)]

pub mod active_policy;
pub mod address;
pub mod bound;
pub mod cseq;
pub mod packed;
pub mod walk;
pub mod window;
