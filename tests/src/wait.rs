//! Waiting for events, not for a clock.
//!
//! A test waits for the thing it needs: a readiness message, a counter moving, a packet
//! arriving. The only deadline is a bound against a hang, and it is not a constant tuned on
//! one machine: [`patience`] scales it from how long this machine, in this run, took to load
//! the real program (the slowest step sipguard takes before it protects), so a guest under
//! software emulation or a loaded CI runner gets the time it needs.

use std::{
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The bound is at least this, however fast the machine: it covers the quick steps (a
/// socket's delivery, a process's start) that a program load does not measure.
const FLOOR: Duration = Duration::from_secs(30);
/// And at least this many program loads: every wait in the suites is for something that
/// costs at most a few loads (a `run` that loads and attaches, a reload that recompiles).
const LOADS: u32 = 25;

/// How long a wait may last before the test calls it a hang. Measured once per test process
/// by timing `sipguard check` (a real load of the program, verifier included); the
/// `SIPGUARD_TEST_PATIENCE_SECS` variable overrides it.
pub fn patience() -> Duration {
    static PATIENCE: OnceLock<Duration> = OnceLock::new();
    *PATIENCE.get_or_init(|| {
        if let Some(secs) =
            std::env::var("SIPGUARD_TEST_PATIENCE_SECS").ok().and_then(|v| v.parse::<u64>().ok())
        {
            return Duration::from_secs(secs);
        }
        let (took, bound) = measure();
        eprintln!(
            "patience: loading the program took {took:.2?} here; a wait gives up after {bound:.0?}"
        );
        bound
    })
}

fn measure() -> (Duration, Duration) {
    let pin_dir = format!("/sys/fs/bpf/{}", crate::unique("sgcli"));
    let start = Instant::now();
    let out = Command::new(crate::sipguard_bin())
        .args(["--pin-dir", &pin_dir, "check", "--json"])
        .output();
    let took = start.elapsed();
    match out {
        Ok(o) if o.status.success() => (took, FLOOR.max(took * LOADS)),
        // Nothing that waits for the filter can pass where the program does not load: say
        // why at once rather than let each wait run out.
        Ok(o) => panic!(
            "`sipguard check` failed, so nothing that waits for the filter can pass here: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("running `sipguard check`: {e}"),
    }
}

/// Polls `probe` until it returns `Ok`, backing off from 2 ms to 100 ms between tries.
/// Panics after [`patience`] with what it waited for and the last thing `probe` saw.
pub fn until<T>(what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    until_beyond(Duration::ZERO, what, probe)
}

/// The same, for an event that comes only after `known` has passed (a deadline of the
/// program's own, such as a pull's): the bound is that, and [`patience`] beyond it.
pub fn until_beyond<T>(
    known: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let bound = known + patience();
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() > bound => {
                panic!("gave up after {bound:.0?} waiting for {what}; last seen: {seen}")
            }
            Err(_) => {}
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
