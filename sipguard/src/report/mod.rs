//! What the filter did and holds, read back as typed values: status and checks, counters,
//! Prometheus metrics, incident records.

pub mod events;
pub mod metrics;
pub mod stats;
pub mod status;
