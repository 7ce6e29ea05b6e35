//! `cargo xtask lab`: sipguard protecting a PBX from real SIPVicious scans while a trunk's
//! calls go through, in network namespaces of its own. Touches no real interface, ends by
//! itself, and removes everything it made.
//!
//! ```text
//!   trunk 10.201.0.2 (sipp UAC) ─────────┐
//!   phone 10.201.0.3 (sipp UAC) ─────────┤        PBX 10.201.0.1 (sipp UAS)
//!   attacker 10.201.0.66 (SIPVicious) ───┼── br0 ── registrar 10.201.0.4 (Kamailio)
//!   brute forcer 10.201.0.67 (disguised) ┘        (one host; sipguard on its eth0)
//! ```
//!
//! Act 1: no protection, svmap finds the PBX. Act 2: the edge setup (anyone may call, scanners
//! are caught by signature, banned and reported). Act 3: a brute forcer that looks like a
//! Cisco gateway is banned by what the registrar answers it. Act 4: allowlist-only (only the
//! trunk).

use std::{
    process::{Command, ExitCode, Output},
    sync::atomic::{AtomicBool, Ordering},
};

use sipguard_tests::{
    cli::Sipguard,
    netns::{ChildGuard, Lan, Netns},
    registrar::{Registrar, disguised_sipvicious, sipvicious_cmd},
};

const PBX: &str = "10.201.0.1";
const TRUNK: &str = "10.201.0.2";
const PHONE: &str = "10.201.0.3";
const ATTACKER: &str = "10.201.0.66";
const REGISTRAR: &str = "10.201.0.4";
const BRUTE_FORCER: &str = "10.201.0.67";
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

/// Prints a command's output indented under the current step.
fn indented(text: &str) {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        println!("    | {line}");
    }
}

/// Runs a tool to completion, under a time limit against a hang (scaled to this machine).
fn tool(cmd: &mut Command) -> Output {
    let mut full = Command::new("timeout");
    full.arg(patience_secs()).arg(cmd.get_program()).args(cmd.get_args());
    full.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn patience_secs() -> String {
    sipguard_tests::wait::patience().as_secs().to_string()
}

fn echo(out: &Output) {
    indented(&String::from_utf8_lossy(&out.stdout));
    indented(&String::from_utf8_lossy(&out.stderr));
}

/// Places `CALLS` calls from `from`; returns how many completed.
fn calls(ns: &Netns, from: &str) -> u32 {
    let out = tool(ns.exec("sipp").args([
        "-sn",
        "uac",
        &format!("{PBX}:5060"),
        "-i",
        from,
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
        &format!("{}s", patience_secs()),
        "-nostdin",
        "-trace_screen",
        "-screen_file",
        "/dev/stdout",
    ]));
    // The final screen's "Successful call" row: its cumulative column is the count.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("Successful call"))
        .filter_map(|l| l.split('|').nth(2).and_then(|c| c.trim().parse().ok()))
        .next_back()
        .unwrap_or(0)
}

/// Whether a SIPVicious tool found anything, by its own account: each says "found nothing"
/// when it did not (the attacker's view, independent of sipguard's counters).
fn found(out: &Output) -> bool {
    !String::from_utf8_lossy(&out.stderr).contains("found nothing")
}

/// The scanner's repertoire: map, ring (a ghost call), enumerate extensions, guess passwords.
/// Returns the tools that found something.
fn attack(attacker: &Netns) -> Vec<&'static str> {
    let mut succeeded = Vec::new();
    for args in [
        &["svmap", "-t", "0.2", PBX][..],
        &["svmap", "-m", "INVITE", "-t", "0.2", PBX][..],
        &["svwar", "-e", "100-130", "-t", "0.2", PBX][..],
        &["svcrack", "-u", "100", "-r", "1000-1020", "-t", "0.2", PBX][..],
    ] {
        println!("    $ {}", args.join(" "));
        let out = tool(attacker.exec(args[0]).args(&args[1..]));
        echo(&out);
        if found(&out) {
            succeeded.push(args[0]);
        }
    }
    succeeded
}

/// Act 1, the control: without sipguard the scanner finds the PBX, so what it misses later
/// is sipguard's doing.
fn unprotected_act(attacker: &Netns) -> Result<(), String> {
    step("Act 1, unprotected: the attacker's svmap finds the PBX");
    println!("    $ svmap -t 0.2 {PBX}");
    let out = tool(attacker.exec("svmap").args(["-t", "0.2", PBX]));
    echo(&out);
    if found(&out) && String::from_utf8_lossy(&out.stdout).contains(&format!("{PBX}:5060")) {
        Ok(())
    } else {
        Err("svmap did not find the unprotected PBX: the lab proves nothing".into())
    }
}

/// Act 3: Kamailio as the registrar beside the PBX; a copy of svcrack with every tell of the
/// catalog rewritten guesses passwords. Returns how many sources the behaviour rules banned.
fn behaviour_act(pbx: &Netns, brute: &Netns, sg: &Sipguard) -> u64 {
    step(
        "Act 3, a brute forcer that looks like a Cisco gateway: no signature names it, the registrar's answers do",
    );
    let registrar = Registrar::start(pbx, REGISTRAR, TRUNK, &format!("{PBX}:5060"));
    println!("    Kamailio on {REGISTRAR}:5060: digest authentication, users 100 to 149");
    let mut run = sg.run(&["--stats-interval", "0"]);
    let disguise = disguised_sipvicious(&registrar.dir);
    println!(
        "    $ svcrack -u 100 -r 1000-1300 -t 0.05 {REGISTRAR}   (a copy whose User-Agent is Cisco-SIPGateway/IOS-12.x, every SIPVicious tell rewritten)"
    );
    let out = tool(sipvicious_cmd(brute, &disguise, "svcrack").args([
        "-u",
        "100",
        "-r",
        "1000-1300",
        "-t",
        "0.05",
        REGISTRAR,
    ]));
    echo(&out);
    if found(&out) {
        println!("    the brute forcer found a password");
        return u64::MAX;
    }
    run.signal(libc::SIGINT);
    let out = run.wait_exit();
    println!("    incident log:");
    indented(&String::from_utf8_lossy(&out.stdout));
    let trips = sg.stats()["counters"]["behaviour_auth_failures"].as_u64().unwrap_or(0);
    println!("    sources banned by the auth_failures rule: {trips}");
    trips
}

fn counter(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["reasons"][reason].as_u64().unwrap_or(0)
}

/// `sipguard check`: the lab stops here, saying why, on a kernel that cannot run it.
fn can_run_sipguard() -> Result<(), String> {
    step("Checking that this kernel can run sipguard (`sipguard check`)");
    let check = Command::new(sipguard_tests::sipguard_bin())
        .args(["--pin-dir", &format!("/sys/fs/bpf/{}", sipguard_tests::unique("sglab"))])
        .arg("check")
        .output()
        .map_err(|e| format!("running sipguard check: {e}"))?;
    echo(&check);
    if check.status.success() {
        Ok(())
    } else {
        Err("this kernel cannot run sipguard (above): the lab stops here".into())
    }
}

fn run() -> Result<(), String> {
    sipguard_tests::require_root();
    for t in ["sipp", "svmap", "svwar", "svcrack", "kamailio"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{t} is not installed: run `cargo xtask setup`"));
        }
    }
    can_run_sipguard()?;
    step("Building the lab: a PBX, a SIP trunk, a remote phone and an attacker on one segment");
    let lan = Lan::new(&[
        ("pbx", "10.201.0.1/24"),
        ("trk", "10.201.0.2/24"),
        ("phn", "10.201.0.3/24"),
        ("atk", "10.201.0.66/24"),
        ("bru", "10.201.0.67/24"),
    ]);
    let [pbx, trunk, phone, attacker, brute] = &lan.hosts[..] else { unreachable!("five hosts") };
    pbx.ip(&["addr", "add", &format!("{REGISTRAR}/24"), "dev", "eth0"]);
    println!(
        "    PBX {PBX}   registrar {REGISTRAR}   trunk {TRUNK}   phone {PHONE}   attacker {ATTACKER}   brute forcer {BRUTE_FORCER}"
    );

    step("Starting the PBX: sipp as UAS on 5060, answering calls and OPTIONS");
    let mut uas: ChildGuard = pbx
        .spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", "5060", "-aa", "-nostdin"]));
    pbx.wait_udp_bound(5060);
    if let Ok(Some(status)) = uas.child().try_wait() {
        return Err(format!("the sipp UAS exited at once ({status})"));
    }

    unprotected_act(attacker)?;
    check_interrupt()?;

    step("Act 2, edge mode: anyone may call; scanners are caught by signature, banned, reported");
    let sg = Sipguard::with_pin_dir(pbx, sipguard_tests::stale::LAB_PIN_DIR);
    // A lab an earlier run left is removed first; whether there was one does not matter.
    sg.output(&["detach", "--quiet"]);
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0"]);
    println!(
        "    $ sipguard run -i eth0     (default pass, {} built-in signatures, bans for an hour)",
        sg.ok(&["sig", "list", "--json"]).lines().count().saturating_sub(1)
    );
    let trunk_calls = calls(trunk, TRUNK);
    let phone_calls = calls(phone, PHONE);
    println!(
        "    trunk: {trunk_calls}/{CALLS} calls completed; remote phone: {phone_calls}/{CALLS}"
    );
    let edge_found = attack(attacker);
    run.signal(libc::SIGINT);
    let out = run.wait_exit();
    println!("    incident log (sipguard run's stdout):");
    indented(&String::from_utf8_lossy(&out.stdout));
    let stats = sg.stats();
    let by_signature = counter(&stats, "signature") + counter(&stats, "banned");
    println!(
        "    dropped: {} by signature, {} more from banned sources",
        counter(&stats, "signature"),
        counter(&stats, "banned")
    );
    check_interrupt()?;

    let trips = behaviour_act(pbx, brute, &sg);
    check_interrupt()?;

    step("Act 4, allowlist-only: only the trunk may talk SIP");
    sg.ok(&["attach", "-i", "eth0", "--default", "drop"]);
    sg.ok(&["ban", "del", ATTACKER]);
    sg.ok(&["allow", "add", TRUNK]);
    let trunk_only = calls(trunk, TRUNK);
    println!("    trunk: {trunk_only}/{CALLS} calls completed");
    let allowlist_found = attack(attacker);

    step("sipguard's counters");
    indented(&sg.ok(&["stats"]));
    let stats = sg.stats();
    let by_default = counter(&stats, "default_drop");

    step("Cleaning up");
    sg.ok(&["detach"]);
    drop(uas);
    drop(lan);
    println!("    namespaces, links and pins removed");

    let dropped = by_signature + by_default;
    println!(
        "\n\x1b[1mSummary:\x1b[0m {}/{} calls completed; {dropped} scanner packets dropped by sipguard ({by_signature} by signature or ban, {by_default} by the allowlist); {trips} brute forcer with a phone's name banned by behaviour.",
        trunk_calls + phone_calls + trunk_only,
        3 * CALLS
    );
    if trips != 1 {
        return Err(format!(
            "the disguised brute forcer should be the one source banned by behaviour: {trips}"
        ));
    }
    if !edge_found.is_empty() || !allowlist_found.is_empty() {
        return Err(format!(
            "the attacker found something through sipguard: {edge_found:?} in edge mode, {allowlist_found:?} allowlist-only"
        ));
    }
    if trunk_calls != CALLS || phone_calls != CALLS || trunk_only != CALLS {
        return Err("not every call completed".into());
    }
    if by_signature == 0 || by_default == 0 {
        return Err("sipguard dropped no scanner packet in one of the acts".into());
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
