//! sippts, SIPVicious' maintained successor, against the real registrar (Kamailio, digest
//! authentication, a dial plan) under the default settings: with its defaults, each mode
//! names itself and is dropped and banned by the signature catalog; disguised as a phone
//! (`-ua`), each mode is still dropped by the two weak tells `-ua` leaves; and rewritten to
//! look like a phone beyond that, its extension sweeps and its password cracker are banned
//! by what the registrar answers them.

use std::path::Path;

use serde_json::Value;
use sipguard_tests::{
    cli::Sipguard,
    netns::Lan,
    registrar::{PHONE_UA, Registrar},
    sippts, wait,
};

const PBX: &str = "10.80.0.1";
const PHONES: &str = "10.80.0.1:5070";
const TRUNK: &str = "10.80.0.3";

/// The incident records of `source` in the events file.
fn records(events: &Path, source: &str) -> Vec<Value> {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "event" && e["source"] == source)
        .collect()
}

/// The record that banned `source`, once it is there.
fn ban_of(events: &Path, source: &str, out: &std::process::Output) -> Value {
    wait::until(&format!("a ban of {source}"), || {
        records(events, source).into_iter().find(|e| e["banned"] == true).ok_or_else(|| {
            format!(
                "{:?}\n{}",
                records(events, source),
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    })
}

/// A wordlist of `n` wrong passwords for the cracker.
fn wordlist(dir: &Path, n: usize) -> String {
    let path = dir.join("words.txt");
    let words: Vec<String> = (0..n).map(|i| format!("guess{i}")).collect();
    std::fs::write(&path, words.join("\n") + "\n").expect("writing the wordlist");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// Runs sippts' `scan`, `exten`, `rcrack` and `invite` modes, each with `extra` arguments,
/// from four hosts (`10.80.0.N+1` to `N+4`) against the registrar under `sipguard run`, each
/// until it is banned, and checks that all four are, and nothing else. Returns each mode's
/// arguments and the record that banned it.
fn every_mode(n: u8, extra: &[&str]) -> Vec<(Vec<String>, Value)> {
    let addr = |i: u8| format!("10.80.0.{}", n + i);
    let cidr = |i: u8| format!("{}/24", addr(i));
    let (c1, c2, c3, c4) = (cidr(1), cidr(2), cidr(3), cidr(4));
    let lan = Lan::new(&[
        ("pbx", "10.80.0.1/24"),
        ("scn", &c1),
        ("ext", &c2),
        ("crk", &c3),
        ("inv", &c4),
    ]);
    let [pbx, scan, exten, crack, invite] = &lan.hosts[..] else { unreachable!() };
    let registrar = Registrar::start(pbx, PBX, TRUNK, PHONES);
    let sg = Sipguard::new(pbx);
    let events = registrar.file("events.jsonl");
    let events_arg = events.to_str().unwrap();
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--events-file", events_arg]);
    let words = wordlist(&registrar.dir, 20);

    let modes: [(&sipguard_tests::netns::Netns, String, Vec<&str>); 4] = [
        (scan, addr(1), vec!["scan", "-i", PBX, "-th", "1", "-t", "1"]),
        (exten, addr(2), vec!["exten", "-i", PBX, "-e", "100-120", "-th", "5", "-t", "1"]),
        (
            crack,
            addr(3),
            vec!["rcrack", "-i", PBX, "-e", "100", "-w", &words, "-th", "5", "-t", "1"],
        ),
        (invite, addr(4), vec!["invite", "-i", PBX, "-tu", "101", "-th", "1"]),
    ];
    let mut bans = Vec::new();
    for (ns, source, args) in &modes {
        let args: Vec<&str> = args.iter().chain(extra).copied().collect();
        let out = sippts::cmd(ns, &args).output().expect("running sippts");
        let e = ban_of(&events, source, &out);
        bans.push((args.iter().map(ToString::to_string).collect(), e));
    }
    let banned = sg.banned();
    assert_eq!(banned.len(), modes.len(), "{banned:?}");
    for (_, source, _) in &modes {
        assert!(banned.iter().any(|b| b == source), "{source} not in {banned:?}");
    }
    run.signal(libc::SIGTERM);
    run.wait_exit();
    bans
}

#[test]
fn sippts_with_its_defaults_is_banned_by_its_user_agent_in_every_mode() {
    for (args, e) in every_mode(20, &[]) {
        assert_eq!(
            (&e["reason"], &e["user_agent"]),
            (&"signature".into(), &"pplsip".into()),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn sippts_disguised_as_a_phone_is_banned_by_the_tells_its_user_agent_option_leaves() {
    for (args, e) in every_mode(30, &["-ua", PHONE_UA]) {
        assert_eq!(
            (&e["reason"], &e["user_agent"]),
            (&"signature".into(), &PHONE_UA.into()),
            "{args:?}: {e}"
        );
        let signature = e["signature"].as_str().unwrap_or_default();
        assert!(signature.starts_with("sippts-"), "{args:?}: {e}");
    }
}

#[test]
fn sippts_rewritten_to_look_like_a_phone_is_banned_by_what_the_registrar_answers() {
    let lan = Lan::new(&[
        ("pbx", "10.80.0.1/24"),
        ("reg", "10.80.0.25/24"),
        ("inv", "10.80.0.26/24"),
        ("crk", "10.80.0.27/24"),
    ]);
    let [pbx, register, invite, crack] = &lan.hosts[..] else { unreachable!() };
    let registrar = Registrar::start(pbx, PBX, TRUNK, PHONES);
    let sg = Sipguard::new(pbx);
    let events = registrar.file("events.jsonl");
    let events_arg = events.to_str().unwrap();
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--events-file", events_arg]);
    let words = wordlist(&registrar.dir, 60);
    sippts::disguise(&registrar.dir);
    let auth = sg.json(&["status", "--json"])["behaviour"]["auth_failures"].as_u64().unwrap();

    // Each runs until it is banned: what it sends after is dropped, and it gives up on each
    // request after its one-second timeout.
    let attacks: [(&sipguard_tests::netns::Netns, &str, Vec<&str>); 3] = [
        // Registrations for 100 to 220: challenges for the users that exist, "not found" for
        // the rest.
        (register, "10.80.0.25", vec!["exten", "-i", PBX, "-e", "100-220", "-m", "register"]),
        // Calls from user 100 to each extension: every one challenged.
        (invite, "10.80.0.26", vec!["exten", "-i", PBX, "-e", "100-220", "-m", "invite"]),
        // Passwords for user 100, every one refused.
        (crack, "10.80.0.27", vec!["rcrack", "-i", PBX, "-e", "100", "-w", &words]),
    ];
    for (ns, source, args) in &attacks {
        let args: Vec<&str> =
            args.iter().copied().chain(["-ua", PHONE_UA, "-th", "5", "-t", "1"]).collect();
        let out =
            sippts::disguised_cmd(ns, &registrar.dir, &args).output().expect("running sippts");
        let e = ban_of(&events, source, &out);
        // Each sweep starts with extensions that exist, every one challenged; each guess is
        // challenged twice: the rule trips at exactly its threshold of failures.
        let (reason, rule) = (&e["reason"], &e["rule"]);
        assert_eq!((reason, rule), (&"behaviour".into(), &"auth_failures".into()), "{args:?}: {e}");
        let c = &e["counts"];
        let failures = c["challenges"].as_u64().unwrap() + c["forbidden"].as_u64().unwrap()
            - c["successes"].as_u64().unwrap();
        assert_eq!(failures, auth, "{args:?}: {e}");
        assert!(records(&events, source).iter().all(|r| r["reason"] != "signature"), "{source}");
    }
    assert_eq!(sg.banned().len(), attacks.len(), "{:?}", sg.banned());
    run.signal(libc::SIGTERM);
    run.wait_exit();
}
