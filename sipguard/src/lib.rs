//! sipguard's userspace: load and attach the XDP program, manage its pinned state, and read
//! its counters. The `sipguard` binary is a thin CLI over this library.

pub mod bans;
pub mod change;
pub mod cidr;
pub mod configfile;
pub mod crowdsec;
pub mod decisions;
pub mod destinations;
pub mod domains;
pub mod events;
pub mod filter;
pub mod import;
pub mod kernel;
pub mod list_filter;
pub mod lists;
pub mod maps;
pub mod metrics;
pub mod named;
pub mod notify;
pub mod pin;
pub mod privileges;
pub mod program;
pub mod protect;
pub mod report;
pub mod routes;
pub mod settings;
pub mod signatures;
pub mod sigset;
pub mod stats;
pub mod sys;
pub mod upgrade;
