//! `cargo xtask`: everything around the product. Each command installs what it needs first
//! (see `setup`), so a fresh machine needs no other step.

mod cmd;
mod setup;
mod test;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup { check } => setup::run(check).map(|_| ()),
        Command::Build { release } => setup::ensure().and_then(|()| build(release)),
        Command::Test => test::run(),
        Command::Lab => lab(),
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
    cmd::cargo(&[
        "build",
        "--package",
        "sipguard",
        "--package",
        "sipguard-tests",
        "--bin",
        "sipguard",
        "--bin",
        "sipguard-lab",
    ])?;
    let root = cmd::workspace_root();
    cmd::run(
        std::process::Command::new(root.join("target/debug/sipguard-lab"))
            .env("SIPGUARD_BIN", root.join("target/debug/sipguard")),
    )
}
