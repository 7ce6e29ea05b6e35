//! Builds the XDP program for `bpfel-unknown-none` and leaves it in `OUT_DIR/sipguard`, where
//! `src/program.rs` embeds it.
//!
//! The program is compiled by the rustup toolchain `sipguard-bpf`, which `cargo xtask setup`
//! links to Debian's Rust (it ships the library source that `-Z build-std=core` needs, which
//! rustup cannot download here). With `SIPGUARD_SKIP_EBPF=1` (or aya's `AYA_BUILD_SKIP=1`) an
//! empty stub is embedded instead, so `cargo check` and clippy work without bpf-linker; such a
//! binary refuses to attach and says why.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, bail};

const TOOLCHAIN_ENV: &str = "SIPGUARD_BPF_TOOLCHAIN";
const DEFAULT_TOOLCHAIN: &str = "sipguard-bpf";

/// The commit this build is of (`sipguard --version` names it): `git rev-parse`, rerun when
/// the checked-out commit changes; "unknown" outside a git checkout.
fn commit() -> String {
    let workspace = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default()).join("..");
    let git = workspace.join(".git");
    println!("cargo:rerun-if-changed={}", git.join("HEAD").display());
    if let Ok(head) = fs::read_to_string(git.join("HEAD"))
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed={}", git.join(reference).display());
        println!("cargo:rerun-if-changed={}", git.join("packed-refs").display());
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&workspace)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown".to_owned(), |c| c.trim().to_owned())
}

fn main() -> anyhow::Result<()> {
    println!("cargo:rustc-env=SIPGUARD_COMMIT={}", commit());
    println!("cargo:rerun-if-env-changed=SIPGUARD_SKIP_EBPF");
    println!("cargo:rerun-if-env-changed={TOOLCHAIN_ENV}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("sipguard-xdp");

    let skip =
        |name: &str| env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip("SIPGUARD_SKIP_EBPF") || skip("AYA_BUILD_SKIP") {
        println!("cargo:warning=eBPF build skipped: this sipguard binary embeds no XDP program");
        fs::write(&object, []).context("writing the stub object")?;
        return Ok(());
    }

    if which::which("bpf-linker").is_err() {
        bail!(
            "bpf-linker is not on PATH: run `cargo xtask setup` (or build with SIPGUARD_SKIP_EBPF=1 for a check-only build)"
        );
    }
    let toolchain = env::var(TOOLCHAIN_ENV).unwrap_or_else(|_| DEFAULT_TOOLCHAIN.to_owned());
    // The linked toolchain is a stable release; RUSTC_BOOTSTRAP lets it take `-Z build-std`,
    // and aya-build passes that flag when it sees the variable. Scoped to this build script.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    // aya-build relays every line the inner cargo prints as a build warning; keep it to errors.
    // SAFETY: as above.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };

    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?)
        .parent()
        .context("workspace root")?
        .join("sipguard-ebpf");
    let root = root.to_str().context("non-UTF-8 workspace path")?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "sipguard-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::Custom(&toolchain),
    )
    .with_context(|| format!("building the XDP program with toolchain `{toolchain}` (run `cargo xtask setup` if it is missing)"))
}
