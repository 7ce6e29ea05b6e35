//! The kernel's objects, and nothing of the product's meaning: where they are pinned, the
//! programs and their links, the maps' schema and raw access, system calls, feature probes,
//! and the privileges all of it needs.

pub mod list_filter;
pub mod maps;
pub mod pin;
pub mod privileges;
pub mod probe;
pub mod program;
pub mod sys;
