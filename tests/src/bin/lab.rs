//! `cargo xtask lab`: sipguard protecting a PBX from real SIPVicious scans while a trunk's
//! calls go through, in network namespaces of its own. Touches no real interface, ends by
//! itself, and removes everything it made.
//!
//! ```text
//!   trunk 10.201.0.2 (sipp UAC) ─┐
//!                                ├─ br0 (ns "wan") ─ wan0 10.201.0.1 PBX (sipp UAS, sipguard on wan0)
//!   attacker 10.201.0.66 (svmap, svwar) ─┘
//! ```

use std::{
    process::{Command, ExitCode, Output},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use sipguard_tests::{
    cli::Sipguard,
    netns::{ChildGuard, Netns, veth},
};

const PBX: &str = "10.201.0.1";
const TRUNK: &str = "10.201.0.2";
const ATTACKER: &str = "10.201.0.66";
const CALLS: u32 = 20;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn step(title: &str) {
    println!("\n\x1b[1m==> {title}\x1b[0m");
}

fn check_interrupt() -> Result<(), String> {
    if INTERRUPTED.load(Ordering::Relaxed) { Err("interrupted".into()) } else { Ok(()) }
}

/// Runs a tool to completion under a time limit, echoing its output indented unless `quiet`.
fn tool(cmd: &mut Command, limit_secs: u32, quiet: bool) -> Output {
    let mut full = Command::new("timeout");
    full.arg(limit_secs.to_string()).arg(cmd.get_program()).args(cmd.get_args());
    let out = full.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if quiet {
        return out;
    }
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        if !line.trim().is_empty() {
            println!("    | {line}");
        }
    }
    out
}

/// Prints a command's output indented under the current step.
fn indented(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

struct Lab {
    pbx: Netns,
    trunk: Netns,
    attacker: Netns,
    _wan: Netns,
}

fn build_lab() -> Lab {
    let wan = Netns::new("wan");
    wan.ip(&["link", "add", "br0", "type", "bridge"]);
    wan.ip(&["link", "set", "br0", "up"]);
    let pbx = Netns::new("pbx");
    let trunk = Netns::new("trk");
    let attacker = Netns::new("atk");
    for (ns, ifname, port, addr) in [
        (&pbx, "wan0", "p-pbx", "10.201.0.1/24"),
        (&trunk, "eth0", "p-trunk", "10.201.0.2/24"),
        (&attacker, "eth0", "p-atk", "10.201.0.66/24"),
    ] {
        veth(ns, ifname, &[addr], &wan, port, &[]);
        wan.ip(&["link", "set", port, "master", "br0"]);
    }
    Lab { pbx, trunk, attacker, _wan: wan }
}

/// Places `CALLS` calls from the trunk; returns how many completed.
fn calls(lab: &Lab) -> u32 {
    let out = tool(
        lab.trunk.exec("sipp").args([
            "-sn",
            "uac",
            &format!("{PBX}:5060"),
            "-i",
            TRUNK,
            "-p",
            "5060",
            "-m",
            &CALLS.to_string(),
            "-r",
            "10",
            "-l",
            "10",
            "-d",
            "200",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_screen",
            "-screen_file",
            "/dev/stdout",
        ]),
        60,
        true,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The final screen has a "Successful call" row: its cumulative column is the count.
    text.lines()
        .filter(|l| l.contains("Successful call"))
        .filter_map(|l| l.split('|').nth(2).and_then(|c| c.trim().parse().ok()))
        .next_back()
        .unwrap_or(0)
}

fn scan(lab: &Lab) {
    println!("    $ svmap -t 0.2 {PBX}");
    tool(lab.attacker.exec("svmap").args(["-t", "0.2", PBX]), 60, false);
}

/// The rest of a scanner's repertoire: a ghost call, extension enumeration, password guessing.
fn attack(lab: &Lab) {
    for args in [
        &["svmap", "-m", "INVITE", "-t", "0.2", PBX][..],
        &["svwar", "-e", "100-130", "-t", "0.2", PBX][..],
        &["svcrack", "-u", "100", "-r", "1000-1020", "-t", "0.2", PBX][..],
    ] {
        println!("    $ {}", args.join(" "));
        tool(lab.attacker.exec(args[0]).args(&args[1..]), 60, false);
    }
}

fn run() -> Result<(), String> {
    sipguard_tests::require_root();
    for t in ["sipp", "svmap", "svwar"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{t} is not installed: run `cargo xtask setup`"));
        }
    }
    step(
        "Building the lab: a PBX, a SIP trunk and an attacker on one WAN segment (namespaces, veth, a bridge)",
    );
    let lab = build_lab();
    println!("    PBX {PBX} (wan0)   trunk {TRUNK}   attacker {ATTACKER}");

    step("Starting the PBX: sipp as UAS on 5060, answering calls and OPTIONS");
    let mut uas: ChildGuard = lab.pbx.spawn(
        lab.pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", "5060", "-aa", "-nostdin"]),
    );
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(Some(status)) = uas.child().try_wait() {
        return Err(format!("the sipp UAS exited at once ({status})"));
    }

    step("Unprotected: the attacker's svmap finds the PBX");
    scan(&lab);
    check_interrupt()?;

    step("Attaching sipguard to the PBX's wan0: only the trunk may talk SIP");
    let sg = Sipguard::with_pin_dir(&lab.pbx, "/sys/fs/bpf/sipguard-lab");
    let _ = sg.output(&["detach", "--quiet"]);
    let out = sg.output(&["attach", "-i", "wan0", "--default", "drop", "--allow", TRUNK]);
    if !out.status.success() {
        return Err(format!(
            "sipguard attach failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    indented(&sg.ok(&["status"]));

    step(&format!("Protected: the trunk places {CALLS} calls"));
    let completed = calls(&lab);
    println!("    {completed}/{CALLS} calls completed");
    check_interrupt()?;

    step("Protected: the attacker scans, rings extensions, enumerates them and guesses passwords");
    scan(&lab);
    attack(&lab);
    check_interrupt()?;

    step("sipguard's counters");
    let stats = sg.stats();
    indented(&sg.ok(&["stats"]));
    let dropped = stats["reasons"]["default_drop"].as_u64().unwrap_or(0);

    step("Cleaning up");
    sg.ok(&["detach"]);
    drop(uas);
    drop(lab);
    println!("    namespaces, links and pins removed");

    println!(
        "\n\x1b[1mSummary:\x1b[0m {completed}/{CALLS} trunk calls completed; {dropped} scanner packets dropped by sipguard."
    );
    if completed != CALLS {
        return Err("not every trunk call completed".into());
    }
    if dropped == 0 {
        return Err("sipguard dropped no scanner packet".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    // SAFETY: installs an async-signal-safe handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipguard-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
