//! The build chain of docs/architecture.md ("Toolchain"), installed idempotently:
//!
//! 1. Debian's Rust (`rustc-web`, with the library source `-Z build-std` needs) and the LLVM
//!    it was built with (`llvm-NN-dev`);
//! 2. bpf-linker built against that LLVM;
//! 3. the rustup toolchain `sipguard-bpf` linked to Debian's Rust (aya-build runs
//!    `rustup run sipguard-bpf cargo build` for the XDP program);
//! 4. the test and demo tools (iproute2, sipvicious, sipp, ...) and a mounted bpffs;
//! 5. CrowdSec's Local API for the fleet tests, unpacked from Debian's package into
//!    [`CROWDSEC_ROOT`], not installed: installing it registers with the Central API and
//!    enables a service, and the tests start their own, offline, in namespaces;
//! 6. sippts, the modern attacker of the behaviour tests, from its upstream source beside the
//!    repository (`../shared/tools/sippts`) into a virtual environment at [`SIPPTS_ROOT`]
//!    (its Python dependencies from PyPI): a separate program the tests run.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cmd::{self, output};

pub(crate) const TOOLCHAIN: &str = "sipguard-bpf";
const BPF_LINKER: &str = "0.13.0";

/// The Rust that compiles the XDP program, and the library source it needs.
const RUST_PACKAGES: [&str; 3] = ["rustc-web", "cargo-web", "rust-web-src"];
/// Tools the tests, the lab, the benchmarks and the VM tests drive.
const TOOL_PACKAGES: [&str; 22] = [
    "iproute2",
    "iputils-ping",
    "util-linux",
    "bpftool",
    "sipvicious",
    "sip-tester",
    // The registrar the behaviour tests attack (its service is never started: see
    // `apt_install`).
    "kamailio",
    // sippts' virtual environment.
    "python3-venv",
    "procps",
    // The package checks: `systemd-analyze verify`, the man pages' rendering.
    "systemd",
    "man-db",
    "groff-base",
    // Which system calls `run` makes, against the unit's filter.
    "strace",
    "tcpdump",
    "iptables",
    "nftables",
    // The VM tests: QEMU, a static busybox for the guest's init, cpio and binutils (strip)
    // to pack the initramfs, xz and zstd for kernels that ship compressed modules (6.12).
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "binutils",
    "xz-utils",
    "zstd",
];

/// Where the fleet tests find `usr/bin/crowdsec`, `usr/bin/cscli` and `etc/crowdsec` (the
/// tests' `crowdsec::ROOT` is the same path).
pub(crate) const CROWDSEC_ROOT: &str = "/opt/sipguard-tests/crowdsec";

/// The virtual environment sippts is installed into (the tests' `sippts::ROOT` is the same).
pub(crate) const SIPPTS_ROOT: &str = "/opt/sipguard-tests/sippts";
/// Written last, so a half-done install is never taken for a whole one.
const SIPPTS_STAMP: &str = "installed-4.1.2";

/// sippts' upstream source, beside the repository.
fn sippts_source() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/sippts")
}

fn sippts_installed() -> bool {
    let root = std::path::Path::new(SIPPTS_ROOT);
    root.join(SIPPTS_STAMP).exists() && root.join("bin/sippts").exists()
}

/// A virtual environment at [`SIPPTS_ROOT`] (a venv cannot move once made, so it is made in
/// place, and stamped when whole), with sippts installed from a copy of its source: pip
/// writes build files into the tree it installs, and CI lays the source out read-only.
fn install_sippts() -> anyhow::Result<()> {
    let source = sippts_source();
    if !source.join("pyproject.toml").exists() && !source.join("setup.py").exists() {
        bail!("sippts' source is not at {}", source.display());
    }
    let root = std::path::Path::new(SIPPTS_ROOT);
    if root.exists() {
        std::fs::remove_dir_all(root)?;
    }
    let copy = std::env::temp_dir().join("sipguard-sippts-source");
    if copy.exists() {
        std::fs::remove_dir_all(&copy)?;
    }
    cmd::run(Command::new("cp").arg("-r").arg(&source).arg(&copy))?;
    cmd::run(Command::new("python3").args(["-m", "venv"]).arg(root))?;
    cmd::run(Command::new(root.join("bin/pip")).args(["install", "-q"]).arg(&copy))?;
    std::fs::remove_dir_all(&copy)?;
    std::fs::write(root.join(SIPPTS_STAMP), "")?;
    Ok(())
}

fn crowdsec_unpacked() -> bool {
    std::path::Path::new(CROWDSEC_ROOT).join("usr/bin/cscli").exists()
        && std::path::Path::new(CROWDSEC_ROOT).join("usr/bin/crowdsec").exists()
}

/// `apt-get download` then `dpkg-deb -x`: the package's files without its maintainer
/// scripts. Unpacked beside the root and renamed into place, so a half-done unpack is never
/// taken for a whole one.
fn unpack_crowdsec() -> anyhow::Result<()> {
    let work = std::path::Path::new(CROWDSEC_ROOT).with_extension("partial");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    cmd::run(Command::new("apt-get").args(["-q", "download", "crowdsec"]).current_dir(&work))?;
    let deb = std::fs::read_dir(&work)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no crowdsec package")?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&work))?;
    std::fs::remove_file(&deb)?;
    if std::path::Path::new(CROWDSEC_ROOT).exists() {
        std::fs::remove_dir_all(CROWDSEC_ROOT)?;
    }
    std::fs::rename(&work, CROWDSEC_ROOT)?;
    Ok(())
}

fn installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

/// LLVM major version of Debian's rustc (bpf-linker must be built against the same).
fn debian_llvm_major() -> Option<u32> {
    let vv = output(Command::new("/usr/bin/rustc").arg("-vV"))?;
    let line = vv.lines().find_map(|l| l.strip_prefix("LLVM version: "))?;
    line.split('.').next()?.trim().parse().ok()
}

fn bpf_linker_ok() -> bool {
    let linker = cmd::cargo_bin().join("bpf-linker");
    output(Command::new(&linker).arg("--version")).is_some_and(|v| v.trim().ends_with(BPF_LINKER))
}

fn toolchain_linked() -> bool {
    output(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|l| l.lines().any(|t| t.split_whitespace().next() == Some(TOOLCHAIN)))
}

fn bpffs_mounted() -> bool {
    output(Command::new("stat").args(["-f", "-c", "%T", "/sys/fs/bpf"]))
        .is_some_and(|t| t.trim() == "bpf_fs")
}

/// What is missing, in install order.
fn missing() -> Vec<String> {
    let mut m: Vec<String> = RUST_PACKAGES
        .iter()
        .chain(&TOOL_PACKAGES)
        .filter(|p| !installed(p))
        .map(|p| format!("package {p}"))
        .collect();
    match debian_llvm_major() {
        Some(v) if !installed(&format!("llvm-{v}-dev")) => m.push(format!("package llvm-{v}-dev")),
        None if m.is_empty() => m.push("a working /usr/bin/rustc".into()),
        _ => {}
    }
    if !bpf_linker_ok() {
        m.push(format!("bpf-linker {BPF_LINKER}"));
    }
    if !toolchain_linked() {
        m.push(format!("rustup toolchain {TOOLCHAIN}"));
    }
    if !bpffs_mounted() {
        m.push("bpffs on /sys/fs/bpf".into());
    }
    if !crowdsec_unpacked() {
        m.push(format!("CrowdSec's Local API in {CROWDSEC_ROOT}"));
    }
    if !sippts_installed() {
        m.push(format!("sippts in {SIPPTS_ROOT}"));
    }
    m
}

fn apt_install(pkgs: &[String]) -> anyhow::Result<()> {
    if pkgs.is_empty() {
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", pkgs.join(" "));
    cmd::run(
        Command::new("apt-get").args(["-q", "update"]).env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    // Packages with a service (kamailio) must not start it: the tests start their own, in
    // namespaces. Debian's maintainer scripts ask policy-rc.d; one that says "no" is put in
    // place for the install unless the machine has its own.
    let policy = std::path::Path::new(POLICY_RC_D);
    let ours = !policy.exists();
    if ours {
        std::fs::write(
            policy,
            "#!/bin/sh\n# sipguard's setup: no service starts while it installs.\nexit 101\n",
        )?;
        std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let result = cmd::run(
        Command::new("apt-get")
            .args(["-q", "-y", "install", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
    if ours {
        std::fs::remove_file(policy)?;
    }
    result
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

fn install() -> anyhow::Result<()> {
    let pkgs: Vec<String> = RUST_PACKAGES
        .iter()
        .chain(&TOOL_PACKAGES)
        .filter(|p| !installed(p))
        .map(ToString::to_string)
        .collect();
    apt_install(&pkgs)?;
    let llvm = debian_llvm_major()
        .context("/usr/bin/rustc (Debian's rustc-web) does not report its LLVM version")?;
    let llvm_dev = format!("llvm-{llvm}-dev");
    if !installed(&llvm_dev) {
        apt_install(&[llvm_dev])?;
    }
    if !bpf_linker_ok() {
        println!("setup: building bpf-linker {BPF_LINKER} against LLVM {llvm} (about a minute)");
        cmd::run(
            Command::new("cargo")
                .args([
                    "install",
                    &format!("bpf-linker@{BPF_LINKER}"),
                    "--no-default-features",
                    "--features",
                    &format!("llvm-{llvm}"),
                    "--locked",
                    "--force",
                ])
                .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm}"))
                .current_dir(std::env::temp_dir()),
        )?;
    }
    if !toolchain_linked() {
        println!("setup: linking Debian's Rust as rustup toolchain {TOOLCHAIN}");
        cmd::run(Command::new("rustup").args(["toolchain", "link", TOOLCHAIN, "/usr"]))?;
    }
    if !bpffs_mounted() {
        println!("setup: mounting bpffs on /sys/fs/bpf");
        cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    if !crowdsec_unpacked() {
        println!("setup: unpacking Debian's crowdsec into {CROWDSEC_ROOT} (not installed)");
        unpack_crowdsec()?;
    }
    if !sippts_installed() {
        println!("setup: installing sippts into {SIPPTS_ROOT} (a virtual environment)");
        install_sippts()?;
    }
    Ok(())
}

/// `cargo xtask setup`: reports, then installs what is missing (unless `check_only`).
/// Returns whether everything is in place.
pub(crate) fn run(check_only: bool) -> anyhow::Result<bool> {
    let before = missing();
    if before.is_empty() {
        println!(
            "setup: everything is in place (Debian Rust, LLVM, bpf-linker {BPF_LINKER}, toolchain {TOOLCHAIN}, test tools, bpffs, CrowdSec, sippts)"
        );
        return Ok(true);
    }
    println!("setup: missing: {}", before.join(", "));
    if check_only {
        return Ok(false);
    }
    if !cmd::is_root() {
        bail!("installing needs root (apt-get, mount): run `sudo -E cargo xtask setup`");
    }
    install()?;
    let after = missing();
    if !after.is_empty() {
        bail!("still missing after setup: {}", after.join(", "));
    }
    println!("setup: done");
    Ok(true)
}

/// Installs what is missing, saying nothing when nothing is.
pub(crate) fn ensure() -> anyhow::Result<()> {
    if missing().is_empty() {
        return Ok(());
    }
    run(false).map(|_| ())
}
