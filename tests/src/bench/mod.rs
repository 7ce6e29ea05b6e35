//! Benchmarks, run as a command (`cargo xtask bench`), never as timed tests: every figure is
//! measured side by side with its baseline in the same run and checked for the verdict it
//! claims before it is believed.

pub mod ban_path;
pub mod baseline;
pub mod cost;
pub mod e2e;
pub mod inputs;
pub mod report;
pub mod scale;
pub mod testrun;

/// How long to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Smoke mode: every scenario, briefly (what `cargo xtask test` runs).
    pub quick: bool,
    /// Runs per `BPF_PROG_TEST_RUN` call.
    pub repeat: u32,
    /// Calls per figure; see `testrun::typical` for how they make one.
    pub rounds: u32,
}

impl Options {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self { quick, repeat: 10_000, rounds: 3 }
        } else {
            Self { quick, repeat: 1_000_000, rounds: 9 }
        }
    }
}
