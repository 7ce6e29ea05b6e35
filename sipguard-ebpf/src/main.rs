//! sipguard's kernel programs: the XDP program (parse, classify, decide, count) and the
//! response program (TC egress: what the servers' answers say about each party).
//!
//! Built for `bpfel-unknown-none` by the `sipguard` crate's build script. On the host it
//! compiles as an empty binary so that clippy and `cargo test --workspace` cover it too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![expect(
    clippy::inline_always,
    reason = "one flat function keeps packet pointers in registers the verifier can track"
)]
#![expect(
    clippy::cast_possible_truncation,
    reason = "BPF is 64-bit, and every narrowed value is bounded by a mask or a comparison the verifier checks"
)]

mod addressee;
mod clock;
mod convict;
mod datapath;
mod events;
mod evidence;
mod inspect;
mod maps;
mod packet;
mod parse;
mod policy;
mod responses;
mod rules;
mod sources;
mod stages;
mod standing;
mod verdict;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic (it would be an unbounded
    // loop), so this never runs: its presence is what proves the datapath cannot panic.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
