//! `cargo xtask test`: the whole suite, in the order that fails fastest.

use crate::{
    cmd::{self, cargo, workspace_root},
    leftovers, setup,
};

pub(crate) fn run() -> anyhow::Result<()> {
    setup::ensure()?;
    cmd::require_root("the kernel tests load XDP programs and create network namespaces")?;
    leftovers::adopt_orphans()?;
    leftovers::open_journal()?;
    let result = suites();
    section("leftovers: nothing of the run may outlive it");
    let clean = leftovers::check();
    result?;
    clean?;
    section("all tests passed");
    Ok(())
}

fn suites() -> anyhow::Result<()> {
    section("format");
    cargo(&["fmt", "--all", "--check"])?;

    section("module graph: no import circles");
    crate::modules::run()?;

    section("lints (clippy, warnings are errors)");
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;

    section("the library builds without the command line (no clap)");
    cargo(&["check", "--package", "sipguard", "--lib", "--no-default-features"])?;

    section("build");
    cargo(&["build", "--workspace", "--all-targets"])?;

    section(
        "the verifier budget on this kernel: each program at most 200,000 instructions, all loaded within 2 s",
    );
    crate::budget::host(&workspace_root().join("target/debug/sipguard"))?;

    section("generated references are current (docs/cli.md, docs/maps.md)");
    crate::docs::run(true)?;

    section("host unit tests, and the behaviour rules against busy parties (sipguard-common)");
    cargo(&["test", "--workspace", "--lib", "--bins"])?;
    cargo(&["test", "--package", "sipguard-common", "--test", "busy_parties"])?;

    package()?;

    let bin = workspace_root().join("target/debug/sipguard");
    section(
        "kernel: the XDP and response programs under BPF_PROG_TEST_RUN (parsing, lists, signatures, behaviour, domains, trust, decisions)",
    );
    cmd::run(
        cmd::cargo_cmd()
            .args([
                "test",
                "-p",
                "sipguard-tests",
                "--test",
                "datapath",
                "--test",
                "behaviour",
                "--test",
                "domains",
                "--test",
                "signatures",
                "--test",
                "trust",
                "--test",
                "decisions",
            ])
            .env("SIPGUARD_BIN", &bin),
    )?;

    section(
        "kernel: namespaces, the real binary and sockets, real SIPVicious, sippts, sipp, Kamailio and CrowdSec",
    );
    cmd::run(
        cmd::cargo_cmd()
            .args([
                "test",
                "-p",
                "sipguard-tests",
                "--test",
                "netns",
                "--test",
                "scanners",
                "--test",
                "providers",
                "--test",
                "registrar",
                "--test",
                "sippts",
                "--test",
                "spoofing",
                "--test",
                "upgrade",
                "--test",
                "commands",
                "--test",
                "fleet",
                "--test",
                "fleet_trust",
                "--test",
                "package",
                "--test",
                "bouncer",
            ])
            .env("SIPGUARD_BIN", &bin),
    )?;

    section("the lab (README's first command), end to end");
    crate::lab()?;

    section("benchmarks, smoke mode (every scenario briefly, each verdict checked)");
    crate::bench(true, None, None, &[])?;

    section(
        "kernel matrix: the kernel suites in QEMU guests on bookworm's 6.1 and Debian's 6.12, each within the verifier budget",
    );
    crate::vm::run(&[], std::time::Duration::from_mins(45), false)
}

/// The Debian package, then the packaged binary itself under exactly the unit's capabilities
/// (`setpriv`, as root, no new privileges): attach, metrics, lists, reload, check, one
/// capability fewer refused; and every path of its own under them (the bouncer over TLS,
/// usage metrics, sharing, SIGUSR1, a route change: a real Local API, so a host suite).
/// Traced, so that its system calls can be held against the unit's filter.
fn package() -> anyhow::Result<()> {
    section(
        "the Debian package: contents, the unit (systemd-analyze), man pages, install and removal",
    );
    let deb = crate::package::check()?;
    let traces = crate::package::out_dir().join("traces");
    let wrapper = crate::package::traced_binary(&traces)?;
    for (suite, test) in [
        ("netns", "the_units_capabilities_are_enough_and_each_is_needed"),
        ("fleet", "the_unit_runs_every_path_of_its_own_under_its_capabilities"),
    ] {
        cmd::run(
            cmd::cargo_cmd()
                .args(["test", "-p", "sipguard-tests", "--test", suite, "--", "--exact", test])
                .env("SIPGUARD_BIN", &wrapper),
        )?;
    }
    crate::package::check_syscall_filter(&traces)?;
    println!("package: {} passes under the unit's capabilities", deb.display());
    Ok(())
}

fn section(title: &str) {
    println!("\n\x1b[1m== {title}\x1b[0m");
}
