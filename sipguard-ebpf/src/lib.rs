//! The datapath's pure parts, compiled for the host too so `cargo test` exercises them.
#![cfg_attr(target_arch = "bpf", no_std)]
