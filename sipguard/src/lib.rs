//! sipguard's userspace: load and attach the XDP program, manage its pinned state, and read
//! its counters. The `sipguard` binary is a thin CLI over this library.
//!
//! The folders are layers; a module imports only from its own layer's lower modules and
//! from the layers below (`cargo xtask modules` checks it):
//!
//! - `daemon`: the service `sipguard run` is, and its parts: the supervisor's protocol and
//!   the fleet's bouncer.
//! - `report`: what the filter did and holds, read back: status, counters, metrics, incidents.
//! - `setup`: a whole desired state (settings, configuration file, list files) applied as one
//!   attach.
//! - `state`: the pinned state as the product sees it (lists, destinations, bans, signatures,
//!   decisions, routes), every change journaled by `state::change`.
//! - `kernel`: the kernel's objects: the pin layout, the programs, the maps' schema, system
//!   calls, feature probes, privileges.
//!
//! Beside them, the vocabulary every layer speaks: addresses (`cidr`), named settings
//! (`named`), signatures and their compiler (`signatures`).

pub mod cidr;
pub mod daemon;
pub mod kernel;
pub mod named;
pub mod report;
pub mod setup;
pub mod signatures;
pub mod state;
