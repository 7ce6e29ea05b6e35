//! `cargo xtask vm-test`: the kernel suites inside QEMU guests, one kernel at a time.
//!
//! Runs in the guest: `datapath` and `signatures` (`BPF_PROG_TEST_RUN`), `netns` and
//! `providers` (network namespaces, veth, the real binary). Not run there: `scanners` and the
//! lab need Python (SIPVicious), sipp and tcpdump, a whole distribution's userland, and they
//! test nothing kernel-specific that the suites above do not; the benchmarks measure the host,
//! not an emulated CPU; the host unit tests do not touch the kernel.

mod initramfs;
mod kernel;
mod qemu;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

pub(crate) use kernel::DEFAULT_SPECS;

use crate::cmd::{self, workspace_root};

const SUITES: [&str; 8] =
    ["datapath", "behaviour", "domains", "signatures", "trust", "decisions", "netns", "providers"];
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// One kernel's outcome.
struct Outcome {
    kernel: String,
    accel: qemu::Accel,
    seconds: f64,
    /// `(suite, exit code if it finished, passed, failed)`.
    suites: Vec<(String, Option<i32>, u32, u32)>,
    check: Option<Value>,
    problem: Option<String>,
    /// Suites expected to run (none with `--check-only`).
    expected: usize,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.problem.is_none()
            && self.suites.len() == self.expected
            && self.suites.iter().all(|(_, rc, _, failed)| *rc == Some(0) && *failed == 0)
    }
}

/// Boots each kernel and runs the suites (or, with `check_only`, only `sipguard check`: does
/// the program load, and what does it cost the verifier).
pub(crate) fn run(specs: &[String], limit: Duration, check_only: bool) -> anyhow::Result<()> {
    crate::setup::ensure()?;
    let root = workspace_root();
    let work = root.join("target/vm");
    std::fs::create_dir_all(&work)?;
    let payload = build_payload(&root, check_only)?;
    let specs: Vec<String> = if specs.is_empty() {
        DEFAULT_SPECS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        specs.to_vec()
    };
    let mut outcomes = Vec::new();
    for spec in &specs {
        let kernel = kernel::resolve(spec, &work.join("kernels"))?;
        let initrd = work.join(format!("initramfs-{}.cpio.gz", kernel.label));
        initramfs::build(&kernel, &payload, &initrd)?;
        let log = work.join(format!("console-{}.log", kernel.label));
        let (accel, why) = qemu::choose_accel(&kernel.vmlinuz, &initrd, &log);
        println!(
            "\nvm-test: booting {} under {} ({why}); console in {}",
            kernel.label,
            accel.name(),
            log.display()
        );
        let start = Instant::now();
        let boot =
            qemu::boot(accel, &kernel.vmlinuz, &initrd, "", limit, &log, Some(&kernel.label))?;
        let mut outcome = judge(&kernel.label, accel, start.elapsed(), &boot, limit);
        outcome.expected = payload.suites.len();
        outcomes.push(outcome);
    }
    report(&outcomes, &work.join("report.json"))?;
    let failed: Vec<&str> =
        outcomes.iter().filter(|o| !o.passed()).map(|o| o.kernel.as_str()).collect();
    if !failed.is_empty() {
        bail!("the kernel suites failed on {}", failed.join(", "));
    }
    Ok(())
}

/// The suites and sipguard, statically linked so they run in a guest with no libc.
fn build_payload(root: &Path, check_only: bool) -> anyhow::Result<initramfs::Payload> {
    let static_flags =
        [("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", "-C target-feature=+crt-static")];
    let sipguard = root.join("target").join(TARGET).join("debug/sipguard");
    let corpus = root.join("tests/corpus");
    if check_only {
        cmd::run(
            cmd::cargo_cmd()
                .args(["build", "--target", TARGET, "-p", "sipguard", "--bin", "sipguard"])
                .envs(static_flags),
        )?;
        return Ok(initramfs::Payload { suites: Vec::new(), sipguard, corpus });
    }
    let mut test = cmd::cargo_cmd();
    test.args([
        "test",
        "--no-run",
        "--target",
        TARGET,
        "-p",
        "sipguard-tests",
        "--message-format=json-render-diagnostics",
    ]);
    for s in SUITES {
        test.args(["--test", s]);
    }
    test.envs(static_flags).stderr(std::process::Stdio::inherit());
    let out = test.output().context("building the suites for the guest")?;
    if !out.status.success() {
        bail!("building the suites for the guest failed");
    }
    let mut suites = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else { continue };
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        if let (Some(exe), true) = (msg["executable"].as_str(), SUITES.contains(&name)) {
            suites.push((name.to_owned(), PathBuf::from(exe)));
        }
    }
    suites.sort_by_key(|(n, _)| SUITES.iter().position(|s| s == n));
    if suites.len() != SUITES.len() {
        bail!("cargo reported {} of the {} suites", suites.len(), SUITES.len());
    }
    cmd::run(
        cmd::cargo_cmd()
            .args(["build", "--target", TARGET, "-p", "sipguard", "--bin", "sipguard"])
            .envs(static_flags),
    )?;
    Ok(initramfs::Payload { suites, sipguard, corpus })
}

/// Reads the guest's marker lines and libtest summaries.
fn judge(
    label: &str,
    accel: qemu::Accel,
    took: Duration,
    boot: &qemu::Boot,
    limit: Duration,
) -> Outcome {
    let mut o = Outcome {
        kernel: label.to_owned(),
        accel,
        seconds: took.as_secs_f64(),
        suites: Vec::new(),
        check: None,
        problem: None,
        expected: SUITES.len(),
    };
    let mut current: Option<(String, u32, u32)> = None;
    for line in &boot.lines {
        if let Some(json) = line.strip_prefix("SGVM check ") {
            o.check = serde_json::from_str(json.trim()).ok();
        } else if let Some(name) = line.strip_prefix("SGVM begin ") {
            current = Some((name.trim().to_owned(), 0, 0));
        } else if let Some(rest) = line.strip_prefix("SGVM end ") {
            let rc = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok());
            if let Some((name, p, f)) = current.take() {
                o.suites.push((name, rc, p, f));
            }
        } else if let (Some(summary), Some((_, p, f))) =
            (line.strip_prefix("test result: "), current.as_mut())
        {
            let count = |what: &str| {
                summary
                    .split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(what)
                    })
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .unwrap_or(0)
            };
            *p += count(" passed");
            *f += count(" failed");
        }
    }
    if let Some((name, p, f)) = current {
        o.suites.push((name, None, p, f));
    }
    let done = boot.lines.iter().any(|l| l == "SGVM done");
    o.problem = if boot.panicked {
        Some("the guest kernel panicked".into())
    } else if boot.timed_out {
        Some(format!("no result within {} s: the guest hung or is too slow", limit.as_secs()))
    } else if !done {
        Some("the guest stopped before the suites finished".into())
    } else if let Some(check) = &o.check {
        // Load times under software emulation say nothing of the host's: only the counts.
        let broken = crate::budget::breaches(check, false);
        (!broken.is_empty()).then(|| format!("the verifier budget: {}", broken.join("; ")))
    } else {
        Some("`sipguard check` printed no report in the guest".into())
    };
    o
}

fn report(outcomes: &[Outcome], path: &Path) -> anyhow::Result<()> {
    println!("\n\x1b[1mvm-test results\x1b[0m");
    println!("  {:<24} {:<5} {:>8}  {:<10}  suites", "kernel", "accel", "time", "result");
    let mut json_out = Vec::new();
    for o in outcomes {
        let suites: Vec<String> = o
            .suites
            .iter()
            .map(|(n, rc, p, f)| match rc {
                Some(0) => format!("{n} {p} ok"),
                Some(_) => format!("{n} {f} FAILED of {}", p + f),
                None => format!("{n} unfinished"),
            })
            .collect();
        println!(
            "  {:<24} {:<5} {:>7.0}s  {:<10}  {}",
            o.kernel,
            o.accel.name(),
            o.seconds,
            if o.passed() { "passed" } else { "FAILED" },
            suites.join(", ")
        );
        if let Some(p) = &o.problem {
            println!("  {:<24} {p}", "");
        }
        json_out.push(json!({
            "kernel": o.kernel,
            "accel": o.accel.name(),
            "seconds": o.seconds,
            "passed": o.passed(),
            "problem": o.problem,
            "verified_instructions": o.check.as_ref().map(|c| crate::budget::figures(c).iter().map(|f| (f.program.clone(), json!(f.instructions))).collect::<serde_json::Map<_, _>>()),
            "check": o.check,
            "suites": o.suites.iter().map(|(n, rc, p, f)| json!({"suite": n, "exit": rc, "passed": p, "failed": f})).collect::<Vec<_>>(),
        }));
    }
    println!(
        "\n  verifier, per program (budget {} instructions; load times under emulation are no measure)",
        crate::budget::MAX_INSTRUCTIONS
    );
    for o in outcomes {
        if let Some(check) = &o.check {
            crate::budget::print(&o.kernel, check);
        }
    }
    std::fs::write(path, serde_json::to_string_pretty(&json_out)?)?;
    println!("  report: {}", path.display());
    Ok(())
}
