//! `cargo xtask`: everything around the product. Each command installs what it needs first
//! (see `setup`), so a fresh machine needs no other step.

mod budget;
mod cmd;
mod docs;
mod leftovers;
mod modules;
mod package;
mod setup;
mod test;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "sipguard's build, test and demo automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the build chain and test tools (idempotent): Debian packages, bpf-linker, the
    /// linked `sipguard-bpf` toolchain, a mounted bpffs.
    Setup {
        /// Only report what is missing; install nothing.
        #[arg(long)]
        check: bool,
    },
    /// Build sipguard (the XDP program embedded).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Run the whole test suite: lints, host tests, kernel tests (program test runs and
    /// network namespaces with real SIP peers). Needs root.
    Test,
    /// The demonstration: a PBX, a trunk and an attacker in network namespaces; sipguard
    /// stops real SIPVicious scans while the trunk's calls go through. Needs root.
    Lab,
    /// Measure sipguard: program cost against an empty XDP program, end to end against
    /// iptables and nftables, and lists at a hosting provider's scale. Prints tables and
    /// writes a JSON report (default target/bench/report.json). Needs root.
    Bench {
        /// Every scenario, briefly (what `cargo xtask test` runs so the benchmark never rots).
        #[arg(long)]
        quick: bool,
        /// Where to write the JSON report.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Another build's XDP object (its `sipguard-xdp`) to measure this one against, side
        /// by side: the suite `baseline`.
        #[arg(long, value_name = "OBJECT")]
        baseline: Option<std::path::PathBuf>,
        /// Suites to run [default: all]: cost, e2e, scale; and baseline, with --baseline.
        suites: Vec<String>,
    },
    /// Regenerate the references made from the code: docs/cli.md (the clap definitions) and
    /// docs/maps.md (the map schema).
    Docs {
        /// Only check that the committed files are current.
        #[arg(long)]
        check: bool,
    },
    /// List each crate's module import graph in layers; fails if imports run in a circle.
    Modules,
    /// Build the Debian package (target/debian/); prints its path as the last line.
    Package {
        /// Also check it as `cargo xtask test` does: contents, the unit, the man pages, an
        /// install and removal in a throwaway root.
        #[arg(long)]
        check: bool,
    },
    /// Run the kernel suites (program test runs, network namespaces) inside QEMU guests, one
    /// kernel after another; reports passed/failed and the verifier's cost per kernel.
    VmTest {
        /// A vmlinuz path, or a Debian kernel package (`name` or `name=version`) fetched with
        /// apt-get download and cached, or a named line: `bookworm-6.1-cloud`,
        /// `debian-6.12-cloud` (the newest cloud kernel of each). Repeat for several [default:
        /// both lines].
        #[arg(long = "kernel", value_name = "SPEC")]
        kernels: Vec<String>,
        /// Give up on a guest after this many minutes (a hang or a panic is not waited on).
        #[arg(long, value_name = "MINUTES", default_value_t = 45)]
        timeout: u64,
        /// Only load the program in each guest (`sipguard check`): quick verifier feedback.
        #[arg(long)]
        check_only: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { check } => setup::run(check).map(|_| ()),
        Command::Build { release } => setup::ensure().and_then(|()| build(release)),
        Command::Test => test::run(),
        Command::Lab => lab(),
        Command::Modules => modules::run(),
        Command::Package { check } => if check { package::check() } else { package::build() }
            .map(|deb| println!("{}", deb.display())),
        Command::Docs { check } => docs::run(check),
        Command::Bench { quick, out, baseline, suites } => {
            bench(quick, out, baseline.as_deref(), &suites)
        }
        Command::VmTest { kernels, timeout, check_only } => {
            vm::run(&kernels, std::time::Duration::from_secs(timeout * 60), check_only)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build(release: bool) -> anyhow::Result<()> {
    let mut args = vec!["build", "--package", "sipguard"];
    if release {
        args.push("--release");
    }
    cmd::cargo(&args)
}

pub(crate) fn lab() -> anyhow::Result<()> {
    setup::ensure()?;
    cmd::require_root("the lab creates network namespaces and attaches XDP programs")?;
    let mut c = driver("sipguard-lab", false)?;
    cmd::run(&mut c)
}

/// Builds `sipguard` and one of the `sipguard-tests` binaries that drive it, and returns a
/// command for the latter with `SIPGUARD_BIN` pointing at the former.
fn driver(bin: &str, release: bool) -> anyhow::Result<std::process::Command> {
    let mut args = vec!["build"];
    if release {
        args.push("--release");
    }
    args.extend(["--package", "sipguard", "--package", "sipguard-tests"]);
    args.extend(["--bin", "sipguard", "--bin", bin]);
    cmd::cargo(&args)?;
    let dir = cmd::workspace_root().join(if release { "target/release" } else { "target/debug" });
    let mut c = std::process::Command::new(dir.join(bin));
    c.env("SIPGUARD_BIN", dir.join("sipguard"));
    Ok(c)
}

pub(crate) fn bench(
    quick: bool,
    out: Option<std::path::PathBuf>,
    baseline: Option<&std::path::Path>,
    suites: &[String],
) -> anyhow::Result<()> {
    setup::ensure()?;
    cmd::require_root("the benchmarks load XDP programs and create network namespaces")?;
    // Release builds: the CLI's import time is part of what is measured.
    let mut c = driver("sipguard-bench", true)?;
    let root = cmd::workspace_root();
    let out = out.unwrap_or_else(|| {
        root.join(if quick { "target/bench/quick.json" } else { "target/bench/report.json" })
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    c.arg("--out").arg(&out);
    if let Some(object) = baseline {
        c.arg("--baseline").arg(std::fs::canonicalize(object)?);
    }
    if quick {
        c.arg("--quick");
    } else if suites.is_empty() {
        // A full run is the one whose figures the project quotes: it writes the page itself.
        c.arg("--markdown").arg(root.join("docs/performance.md"));
    }
    c.args(suites);
    cmd::run(&mut c)
}
