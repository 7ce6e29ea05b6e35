//! The measuring instrument: `BPF_PROG_TEST_RUN` called directly, so the floor (an XDP
//! program of two instructions, `r0 = XDP_PASS; exit`) and sipguard are timed through exactly
//! the same path, and the CPU pinning that makes the numbers repeatable.

use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd};

use anyhow::{Context as _, bail};

use sipguard::kernel::sys::bpf;

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// `union bpf_attr` for `BPF_PROG_TEST_RUN` (the `test` member), up to `flags`.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// The floor: an XDP program that only returns `XDP_PASS` (`r0 = 2; exit`).
pub fn load_empty_xdp() -> anyhow::Result<OwnedFd> {
    let mov_r0_2 = u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]);
    sipguard::kernel::sys::load_xdp_insns(&[mov_r0_2, 0x95], None)
        .context("loading the empty XDP program")
}

/// The response program's floor: a TC program that only returns `TC_ACT_UNSPEC` (-1).
pub fn load_empty_tc() -> anyhow::Result<OwnedFd> {
    let mov_r0_minus_1 = u64::from_le_bytes([0xb7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    sipguard::kernel::sys::load_insns(
        sipguard::kernel::sys::BPF_PROG_TYPE_SCHED_CLS,
        &[mov_r0_minus_1, 0x95],
        None,
    )
    .context("loading the empty TC program")
}

/// What one `BPF_PROG_TEST_RUN` of `repeat` runs measured.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub verdict: u32,
    /// The kernel's time per run, truncated to whole nanoseconds. Wall-clock time of the call is no use:
    /// with `repeat > 1` the kernel toggles a static key around the loop (`bpf_prog_change_xdp`),
    /// which costs milliseconds outside the timed loop.
    pub ns: f64,
}

pub fn run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> anyhow::Result<Sample> {
    run_on(prog, frame, repeat, 0)
}

/// [`run`] with the frame received on `ifindex` (of the calling thread's network namespace;
/// 0: the kernel's default, loopback).
pub fn run_on(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
    ifindex: u32,
) -> anyhow::Result<Sample> {
    let mut md = XdpMd {
        data_end: u32::try_from(frame.len()).context("frame size")?,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).context("fd")?,
        data_size_in: u32::try_from(frame.len()).context("frame size")?,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..TestAttr::default()
    };
    if ifindex != 0 {
        attr.ctx_size_in = u32::try_from(size_of::<XdpMd>()).expect("small");
        attr.ctx_in = (&raw mut md) as u64;
    }
    bpf(BPF_PROG_TEST_RUN, &mut attr).context("BPF_PROG_TEST_RUN")?;
    Ok(Sample { verdict: attr.retval, ns: f64::from(attr.duration) })
}

/// The typical time over `rounds` test runs of `repeat` each; every run must return `expect`.
///
/// The kernel truncates its per-run time to whole nanoseconds, which for the floor (an empty
/// program, 5 to 6 ns) is an error of up to a fifth, always downwards, and moves every
/// ratio to it. So: the mean of the middle half of the rounds (rounds whose true times
/// straddle a whole nanosecond then average out to between the two), plus half a
/// nanosecond, the expected truncation.
pub fn typical(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    repeat: u32,
    rounds: u32,
    expect: u32,
) -> anyhow::Result<Sample> {
    typical_on(prog, frame, 0, repeat, rounds, expect)
}

/// [`typical`] with the frame received on `ifindex` ([`run_on`]).
pub fn typical_on(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    rounds: u32,
    expect: u32,
) -> anyhow::Result<Sample> {
    let mut samples = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds.max(1) {
        let s = run_on(prog, frame, repeat, ifindex)?;
        if s.verdict != expect {
            bail!(
                "the program returned {}, expected {expect}: the scenario is not what it claims",
                s.verdict
            );
        }
        samples.push(s);
    }
    samples.sort_by(|a, b| a.ns.total_cmp(&b.ns));
    let quarter = samples.len() / 4;
    let middle = &samples[quarter..samples.len() - quarter];
    #[expect(clippy::cast_precision_loss, reason = "a handful of rounds")]
    let mean = middle.iter().map(|s| s.ns).sum::<f64>() / middle.len() as f64;
    Ok(Sample { verdict: expect, ns: mean + 0.5 })
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: frames the program passes go up the network stack of the
/// ingress interface, as if received there (Linux 5.18).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// `struct xdp_md` as `BPF_PROG_TEST_RUN` takes it for the context.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// What a live run cost.
#[derive(Clone, Copy, Debug)]
pub struct Live {
    pub wall: std::time::Duration,
    /// CPU time of this thread (the kernel does the whole receive path in the call).
    pub cpu: std::time::Duration,
}

fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into `ts` only.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Runs `prog` on `n` copies of `frame` in live mode, received on `ifindex` (of the calling
/// thread's network namespace): what the program passes is handed to the network stack,
/// in this thread, before the call returns.
pub fn run_live(prog: BorrowedFd<'_>, frame: &[u8], ifindex: u32, n: u32) -> anyhow::Result<Live> {
    // The kernel wants the context to describe the frame: data 0, data_end its length.
    let mut md = XdpMd {
        data_end: u32::try_from(frame.len()).context("frame size")?,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog.as_raw_fd()).context("fd")?,
        data_size_in: u32::try_from(frame.len()).context("frame size")?,
        data_in: frame.as_ptr() as u64,
        repeat: n,
        ctx_size_in: u32::try_from(size_of::<XdpMd>()).expect("small"),
        ctx_in: (&raw mut md) as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        ..TestAttr::default()
    };
    let cpu0 = thread_cpu();
    let start = std::time::Instant::now();
    bpf(BPF_PROG_TEST_RUN, &mut attr).context("BPF_PROG_TEST_RUN with live frames")?;
    Ok(Live { wall: start.elapsed(), cpu: thread_cpu().saturating_sub(cpu0) })
}

/// Whether this kernel runs programs on live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`), asked
/// with one copy of `frame` on `ifindex` (of the calling thread's namespace). Some kernel
/// builds refuse the flag with EPERM whatever the caller's capabilities (the Firecracker
/// guests' 6.18 among them); any other error is an error.
pub fn live_frames(prog: BorrowedFd<'_>, frame: &[u8], ifindex: u32) -> anyhow::Result<bool> {
    match run_live(prog, frame, ifindex, 1) {
        Ok(_) => Ok(true),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.raw_os_error() == Some(libc::EPERM)) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Pins this thread to the CPU it runs on (test runs execute on the calling CPU) and
/// returns it.
pub fn pin_to_one_cpu() -> anyhow::Result<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).context("sched_getcpu")?;
    pin(cpu)?;
    Ok(cpu)
}

/// Pins this thread to `cpu`.
pub fn pin(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
        }
    }
    Ok(())
}
