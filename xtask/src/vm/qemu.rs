//! Booting a guest: the accelerator that works here, the console streamed line by line, and
//! a deadline, so a panic or a hang ends the run instead of stalling it.

use std::{
    io::{BufReader, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::Context as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub(super) fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What a boot printed and how it ended.
pub(super) struct Boot {
    pub lines: Vec<String>,
    pub timed_out: bool,
    pub panicked: bool,
}

/// KVM only where a normal KVM module is loaded and a probe boot of this very kernel and
/// initramfs comes back: on some hosts `/dev/kvm` opens, yet guests hang or die in emulation,
/// and QEMU does not fall back to TCG by itself.
pub(super) fn choose_accel(vmlinuz: &Path, initrd: &Path, log: &Path) -> (Accel, String) {
    let module =
        ["kvm_intel", "kvm_amd"].into_iter().find(|m| Path::new("/sys/module").join(m).exists());
    let Some(module) = module else {
        return (Accel::Tcg, "no kvm_intel or kvm_amd module on the host".into());
    };
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return (Accel::Tcg, format!("{module} is loaded but /dev/kvm cannot be opened"));
    }
    match boot(Accel::Kvm, vmlinuz, initrd, "sgvm.probe", Duration::from_secs(30), log, None) {
        Ok(b) if b.lines.iter().any(|l| l.contains("SGVM probe-ok")) => {
            (Accel::Kvm, format!("{module} works (probe boot succeeded)"))
        }
        _ => (Accel::Tcg, format!("{module} is loaded but a probe boot under KVM failed")),
    }
}

/// Boots and streams the console (prefixed with `echo`'s label when given) until the guest
/// powers off, panics, or `limit` passes.
pub(super) fn boot(
    accel: Accel,
    vmlinuz: &Path,
    initrd: &Path,
    cmdline: &str,
    limit: Duration,
    log: &Path,
    echo: Option<&str>,
) -> anyhow::Result<Boot> {
    let mut qemu = Command::new("qemu-system-x86_64");
    match accel {
        Accel::Kvm => qemu.args(["-accel", "kvm", "-cpu", "host"]),
        // One host thread for both virtual CPUs. With a thread each (MTTCG), a CPU can run a
        // stale translation of code another CPU has just patched: the XDP dispatcher's
        // text poke then meets its own int3 and the guest panics (seen on 6.12 while `run`
        // replaced the program under veth traffic).
        Accel::Tcg => qemu.args(["-accel", "tcg,thread=single", "-cpu", "max"]),
    };
    qemu.args(["-smp", "2", "-m", "2G", "-no-reboot", "-nographic", "-nic", "none"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!("console=ttyS0 panic=-1 quiet {cmdline}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let tx2 = tx.clone();
    let readers = [
        std::thread::spawn(move || forward(BufReader::new(stdout), &tx)),
        std::thread::spawn(move || forward(BufReader::new(stderr), &tx2)),
    ];
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let deadline = Instant::now() + limit;
    let mut out = Boot { lines: Vec::new(), timed_out: false, panicked: false };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                writeln!(file, "{line}")?;
                if let Some(label) = echo {
                    println!("  [{label}] {line}");
                }
                if line.contains("Kernel panic") {
                    out.panicked = true;
                }
                out.lines.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= deadline {
            out.timed_out = true;
            child.kill().ok();
            break;
        }
        // After a panic, QEMU ends by itself (panic=-1 reboots, -no-reboot exits): the loop
        // reads the rest of the trace until its output closes, bounded by the deadline.
    }
    child.wait().ok();
    for r in readers {
        r.join().ok();
    }
    Ok(out)
}

fn forward(reader: impl std::io::BufRead, tx: &mpsc::Sender<String>) {
    for line in reader.split(b'\n').map_while(Result::ok) {
        let text = String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned();
        if tx.send(text).is_err() {
            break;
        }
    }
}
