//! Behaviour detection against a real registrar (Kamailio, digest authentication, a dial
//! plan): attackers that no signature can name are banned by what the registrar answers
//! them, while an office behind one address, a busy trunk with misdials and a phone with a
//! wrong password keep being served, all under the default thresholds. A registrar that
//! declares its SIP domain is no longer reachable by its bare address. And a phone that
//! registered is not banned by a probe forged with its address, nor by the challenges
//! forged requests in its name draw, but is by failures that answer its own challenges.

use std::path::Path;

use sipguard_tests::{
    cli::Sipguard,
    frames::{Frame, Transport, scanner_probe},
    netns::{ChildGuard, Lan, Netns, forge},
    registrar::{CARRIER_PORT, DOMAIN, Registrar, disguised_sipvicious, sipvicious_cmd},
    wait,
};

const PBX: &str = "10.80.0.1";
const PHONES: &str = "10.80.0.1:5070";
const OFFICE: &str = "10.80.0.2";
const TRUNK: &str = "10.80.0.3";
const TYPO: &str = "10.80.0.4";
const SVCRACK: &str = "10.80.0.11";
const SVWAR: &str = "10.80.0.12";
const BRUTE: &str = "10.80.0.13";
const PROBER: &str = "10.80.0.14";
const DIRECT_IP: &str = "10.80.0.4";
const SVMAP: &str = "10.80.0.15";
const SWEEPER: &str = "10.80.0.16";
const CALL_CENTRE: &str = "10.80.0.5";

/// How long a sipp run of `-m CALLS -r RATE` takes by its own schedule, in seconds.
fn scheduled_secs(args: &[&str]) -> u64 {
    let value = |flag: &str| {
        args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)?.parse::<u64>().ok())
    };
    match (value("-m"), value("-r")) {
        (Some(calls), Some(rate)) if rate > 0 => calls.div_ceil(rate),
        _ => 0,
    }
}

/// Runs a sipp client in `ns` against the registrar to its end; returns whether every call
/// succeeded, and its output. The bound against a hang is the run's own schedule plus the
/// patience measured in this run.
fn sipp(ns: &Netns, args: &[&str]) -> (bool, String) {
    sipp_to(ns, args, &format!("{PBX}:5060"))
}

/// [`sipp`] against `target`.
fn sipp_to(ns: &Netns, args: &[&str], target: &str) -> (bool, String) {
    let limit = (wait::patience().as_secs() + scheduled_secs(args)).to_string();
    let out = ns
        .exec("timeout")
        .arg(limit)
        .arg("sipp")
        .args(args)
        .args(["-nostdin", target])
        .output()
        .expect("running sipp");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Kamailio on the PBX, and the phones it routes calls to (a `sipp` UAS at [`PHONES`]),
/// listening.
fn registrar_with_phones(pbx: &Netns) -> (Registrar, ChildGuard) {
    let registrar = Registrar::start(pbx, PBX, TRUNK, PHONES);
    let phones =
        pbx.spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", "5070", "-nostdin"]));
    pbx.wait_udp_bound(5070);
    (registrar, phones)
}

/// The `sipp` brute forcer from `ns`: 200 guesses at 20 a second, each answering the
/// registrar's challenge with a wrong password.
fn brute_force(ns: &Netns, registrar: &Registrar) -> (bool, String) {
    let (scenario, guesses) = (registrar.file("brute_force.xml"), registrar.file("wrong.csv"));
    let args = ["-sf", path(&scenario), "-inf", path(&guesses), "-m", "200", "-r", "20"];
    sipp(ns, &[&args[..], &["-recv_timeout", "2000"]].concat())
}

/// The behaviour incident of `source` in the events file, once it is there.
fn incident(events: &Path, source: &str) -> serde_json::Value {
    record(events, "behaviour", source)
}

/// The first incident record of `source` for `reason`, once it is there.
fn record(events: &Path, reason: &str, source: &str) -> serde_json::Value {
    wait::until(&format!("a {reason} incident for {source}"), || {
        let text = std::fs::read_to_string(events).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["reason"] == reason && e["source"] == source)
            .ok_or_else(|| format!("{} records, none for {source}", text.lines().count()))
    })
}

/// The trunk: 300 calls at 17 a second (1,000 a minute), and 30 misdials (404) beside them
/// (two a second, so 30 within the rules' minute: above the "not found" threshold, and 5% of
/// the successes); every call completes.
fn trunk_calls(trunk: &Netns, registrar: &Registrar) {
    let misdials = {
        let file = registrar.file("misdial.xml");
        let trunk_ns = trunk.name.clone();
        // Its schedule: 30 misdials at two a second.
        let limit = (wait::patience().as_secs() + 15).to_string();
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args(["netns", "exec", &trunk_ns, "timeout", &limit, "sipp", "-sf"])
                .arg(file)
                .args(["-s", "4999", "-m", "30", "-r", "2", "-p", "5061", "-nostdin"])
                .arg(format!("{PBX}:5060"))
                .output()
                .expect("running sipp")
        })
    };
    // A 200 retransmitted because an ACK came late (a loaded machine) is not a failed call.
    let calls = ["-sn", "uac", "-s", "101", "-m", "300", "-r", "17", "-p", "5062"];
    let (ok, out) = sipp(trunk, &[&calls[..], &["-default_behaviors", "all,-abortunexp"]].concat());
    assert!(ok, "every call of the trunk completes:\n{out}");
    let misdialled = misdials.join().unwrap();
    assert!(
        misdialled.status.success(),
        "every misdial got its 404:\n{}",
        String::from_utf8_lossy(&misdialled.stdout)
    );
}

#[test]
fn attackers_that_look_like_phones_are_banned_while_the_office_and_the_trunk_are_served() {
    let lan = Lan::new(&[
        ("pbx", "10.80.0.1/24"),
        ("off", "10.80.0.2/24"),
        ("trk", "10.80.0.3/24"),
        ("crk", "10.80.0.11/24"),
        ("war", "10.80.0.12/24"),
        ("bru", "10.80.0.13/24"),
        ("prb", "10.80.0.14/24"),
    ]);
    let [pbx, office, trunk, svcrack, svwar, brute, prober] = &lan.hosts[..] else {
        unreachable!()
    };
    let (registrar, _phones) = registrar_with_phones(pbx);
    let sg = Sipguard::new(pbx);
    let events = registrar.file("events.jsonl");
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--events-file", path(&events)]);
    let auth = sg.json(&["status", "--json"])["behaviour"]["auth_failures"].as_u64().unwrap();

    // The office: 50 phones behind one address, each registering three times at 50 a second.
    let (scenario, users) = (registrar.file("register.xml"), registrar.file("users.csv"));
    let register = ["-sf", path(&scenario), "-inf", path(&users), "-m", "150", "-r", "50"];
    let (ok, out) = sipp(office, &register);
    assert!(ok, "every registration of the office succeeds:\n{out}");

    trunk_calls(trunk, &registrar);

    // The attackers, each looking like a phone or a gateway; each runs until it is banned
    // (its requests then go unanswered, and it gives up).
    let disguise = disguised_sipvicious(&registrar.dir);
    let crack = sipvicious_cmd(svcrack, &disguise, "svcrack")
        .args(["-u", "100", "-r", "1000-1300", "-t", "0.02", PBX])
        .output()
        .expect("running svcrack");
    let e = incident(&events, SVCRACK);
    assert_eq!(e["rule"], "auth_failures", "{e}\n{crack:?}");
    let war = sipvicious_cmd(svwar, &disguise, "svwar")
        .args(["-e", "200-600", "-t", "0.02", PBX])
        .output()
        .expect("running svwar");
    let e = incident(&events, SVWAR);
    assert_eq!(e["rule"], "not_found", "{e}\n{war:?}");
    let (_, out) = brute_force(brute, &registrar);
    let e = incident(&events, BRUTE);
    assert_eq!(e["rule"], "auth_failures", "{e}\n{out}");
    let (_, out) = sipp(
        prober,
        &[
            "-sf",
            path(&registrar.file("probe.xml")),
            "-s",
            "0044163296",
            "-m",
            "200",
            "-r",
            "20",
            "-recv_timeout",
            "2000",
        ],
    );
    let e = incident(&events, PROBER);
    assert_eq!(e["rule"], "auth_failures", "{e}\n{out}");

    // Each was banned at the threshold: the kernel counted exactly `auth` failures (or "not
    // found" answers), and dropped what came after.
    for source in [SVCRACK, BRUTE, PROBER] {
        let c = &incident(&events, source)["counts"];
        let failures = c["challenges"].as_u64().unwrap() + c["forbidden"].as_u64().unwrap()
            - c["successes"].as_u64().unwrap();
        assert_eq!(failures, auth, "{source}: {c}");
    }
    // No signature knew any of them.
    let text = std::fs::read_to_string(&events).expect("reading the events file");
    let by_signature: Vec<&str> =
        text.lines().filter(|l| l.contains(r#""reason":"signature""#)).collect();
    assert!(by_signature.is_empty(), "caught by a signature, not by behaviour: {by_signature:?}");
    let banned_now = sg.banned();
    for source in [SVCRACK, SVWAR, BRUTE, PROBER] {
        assert!(banned_now.iter().any(|a| a == source), "{source} not in {banned_now:?}");
    }
    assert!(
        !banned_now.iter().any(|a| a == OFFICE || a == TRUNK),
        "a legitimate party was banned: {banned_now:?}"
    );
    let stats = sg.stats();
    assert!(stats["counters"]["behaviour_auth_failures"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["counters"]["behaviour_not_found"].as_u64().unwrap() >= 1, "{stats}");

    // The office keeps registering.
    let (ok, out) = sipp(office, &register);
    assert!(ok, "the office still registers after the attacks:\n{out}");
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

#[test]
fn a_call_centre_and_an_outbound_dialer_are_served_and_a_guesser_among_the_agents_is_banned() {
    let lan = Lan::new(&[("pbx", "10.80.0.1/24"), ("cc", "10.80.0.5/24"), ("trk", "10.80.0.3/24")]);
    let [pbx, centre, trunk] = &lan.hosts[..] else { unreachable!() };
    let (registrar, _phones) = registrar_with_phones(pbx);
    let _carrier =
        pbx.spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", CARRIER_PORT, "-nostdin"]));
    pbx.wait_udp_bound(CARRIER_PORT.parse().unwrap());
    let sg = Sipguard::new(pbx);
    let events = registrar.file("events.jsonl");
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--events-file", path(&events)]);
    let users = registrar.file("users.csv");
    let (reg, agent, dial) = (
        registrar.file("register.xml"),
        registrar.file("agent_calls.xml"),
        registrar.file("dialer_calls.xml"),
    );

    // The call centre: 50 agents' phones register behind one address (standing), then call
    // subscribers at 300 calls a minute. Every INVITE is challenged and sent again with the
    // agent's credentials; the carrier answers 1 in 5, 1 in 10 is not found and the rest are
    // busy: 150 challenges, 15 "not found" and 105 busy signals within the rules' minute, and
    // 30 successes.
    let register = ["-sf", path(&reg), "-inf", path(&users)];
    let (ok, out) = sipp(centre, &[&register[..], &["-m", "50", "-r", "50"]].concat());
    assert!(ok, "every agent registers:\n{out}");
    // The carrier's 180 may come after its 200 (the registrar relays them from two
    // workers): a late provisional answer is no failed call.
    let calls =
        ["-sf", path(&agent), "-inf", path(&users), "-default_behaviors", "all,-abortunexp"];
    let (ok, out) = sipp(centre, &[&calls[..], &["-m", "150", "-r", "5"]].concat());
    assert!(
        ok,
        "every call of the call centre completes (busy or answered):\n{out}\n{}\n{}",
        sg.stats(),
        std::fs::read_to_string(&events).unwrap_or_default()
    );
    let stats = sg.stats();
    let counters = &stats["counters"];
    assert!(counters["challenges_answered"].as_u64().unwrap() >= 150, "{counters}");
    assert!(counters["attempts_accepted"].as_u64().unwrap() >= 150, "{counters}");
    assert_eq!(counters["attempts_refused"], 0, "{counters}");

    // An outbound dialer on the trunk (known to the registrar by its address, never
    // challenged): 250 distinct numbers at 300 calls a minute, 1 in 5 answered and 1 in 10
    // gone from the network (404): 25 "not found" within the rules' minute, over the
    // threshold of 20, which stale numbers dialled by a party with standing do not reach.
    let dialer = ["-sf", path(&dial), "-p", "5063", "-default_behaviors", "all,-abortunexp"];
    let (ok, out) = sipp(trunk, &[&dialer[..], &["-m", "250", "-r", "5"]].concat());
    assert!(ok, "every call of the dialer completes:\n{out}");

    let stats = sg.stats();
    for rule in ["behaviour_auth_failures", "behaviour_not_found", "behaviour_extension_scan"] {
        assert_eq!(stats["counters"][rule], 0, "{rule}: {stats}");
    }
    // The agents' 15 stale numbers and the dialer's 25 (more if a 404 was sent again).
    let stale = stats["counters"]["numbers_not_found"].as_u64().unwrap();
    assert!(stale >= 40, "stale numbers seen: {stale}\n{stats}");
    assert!(sg.banned().is_empty(), "a legitimate party was banned: {:?}", sg.banned());

    // Someone at the call centre guesses an agent's password in the middle of its calls:
    // the calls' credit does not cover the guesses, each refused with the guesser's own
    // Call-ID, so the ban is verified.
    let traffic = {
        let (centre_ns, calls) = (centre.name.clone(), calls.map(str::to_owned));
        let limit = (wait::patience().as_secs() + 30).to_string();
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args(["netns", "exec", &centre_ns, "timeout", &limit, "sipp"])
                .args(&calls)
                .args(["-m", "100", "-r", "5", "-p", "5064", "-nostdin", "-recv_timeout", "2000"])
                .arg(format!("{PBX}:5060"))
                .output()
                .expect("running sipp")
        })
    };
    // The guesser starts once the calls are under way (their attempts being taken).
    let taken = sg.stats()["counters"]["attempts_accepted"].as_u64().unwrap();
    wait::until("the agents' calls under way", || {
        let now = sg.stats()["counters"]["attempts_accepted"].as_u64().unwrap();
        if now >= taken + 5 { Ok(()) } else { Err(format!("{now} attempts taken")) }
    });
    let (_, out) = brute_force(centre, &registrar);
    let e = incident(&events, CALL_CENTRE);
    assert_eq!(
        (&e["rule"], &e["verified"], &e["banned"]),
        (&"auth_failures".into(), &true.into(), &true.into()),
        "{e}\n{out}"
    );
    let refused = sg.stats()["counters"]["attempts_refused"].as_u64().unwrap();
    let auth = sg.json(&["status", "--json"])["behaviour"]["auth_failures"].as_u64().unwrap();
    // About the count of a guesser alone (half the threshold), less the challenges of the
    // calls still waiting for their attempts when it tripped.
    assert!((auth / 4..=auth).contains(&refused), "guesses refused before the ban: {refused}\n{e}");
    traffic.join().unwrap();
    assert_eq!(sg.banned(), [CALL_CENTRE]);
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

#[test]
fn a_phone_with_a_wrong_password_is_not_banned() {
    // Time scaled by 30: a window of 2 s and an attempt every second stand for the default
    // minute and a phone retrying every 30 s; 30 attempts here stand for 15 minutes (the
    // host unit test in sipguard-common runs the whole hour).
    let lan = Lan::new(&[("pbx", "10.80.0.1/24"), ("typ", "10.80.0.4/24")]);
    let [pbx, typo] = &lan.hosts[..] else { unreachable!() };
    let registrar = Registrar::start(pbx, PBX, TRUNK, PHONES);
    let sg = Sipguard::new(pbx);
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--behaviour-window", "2"]);
    let (ok, out) = sipp(
        typo,
        &[
            "-sf",
            path(&registrar.file("register_refused.xml")),
            "-inf",
            path(&registrar.file("wrong.csv")),
            "-m",
            "30",
            "-r",
            "1",
        ],
    );
    assert!(ok, "every attempt was answered (challenged again):\n{out}");
    assert!(!sg.banned().iter().any(|a| a == TYPO), "the phone with a typo was banned");
    assert_eq!(sg.stats()["counters"]["behaviour_auth_failures"], 0);
    // The same phone retrying ten times as fast is a brute forcer at this scale.
    let (_, _) = sipp(
        typo,
        &[
            "-sf",
            path(&registrar.file("register_refused.xml")),
            "-inf",
            path(&registrar.file("wrong.csv")),
            "-m",
            "40",
            "-r",
            "10",
            "-recv_timeout",
            "2000",
        ],
    );
    assert!(sg.banned().iter().any(|a| a == TYPO));
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

#[test]
fn a_registrar_that_declares_its_domain_drops_direct_ip_requests() {
    let lan = Lan::new(&[
        ("pbx", "10.80.0.1/24"),
        ("off", "10.80.0.2/24"),
        ("trk", "10.80.0.3/24"),
        ("typ", "10.80.0.4/24"),
        ("map", "10.80.0.15/24"),
    ]);
    let [pbx, office, trunk, by_ip, scanner] = &lan.hosts[..] else { unreachable!() };
    let (registrar, _phones) = registrar_with_phones(pbx);
    let sg = Sipguard::new(pbx);
    let events = registrar.file("events.jsonl");
    // The trunk addresses the PBX by its address, as IP-authenticated trunks do: it is
    // allowlisted, as a trunk should be.
    let mut run = sg.run(&[
        "-i",
        "eth0",
        "--stats-interval",
        "0",
        "--events-file",
        path(&events),
        "--sip-domain",
        DOMAIN,
        "--allow",
        TRUNK,
    ]);
    assert_eq!(sg.json(&["status", "--json"])["sip_domains"], serde_json::json!([DOMAIN]));

    // 50 phones registering to the domain are served.
    let (users, scenario) = (registrar.file("users.csv"), registrar.file("register_domain.xml"));
    let by_domain = ["-sf", path(&scenario), "-inf", path(&users), "-m", "50", "-r", "50"];
    let (ok, out) = sipp(office, &by_domain);
    assert!(ok, "every registration to the domain succeeds:\n{out}");
    trunk_calls(trunk, &registrar);

    // A phone that registers to the bare address gets no answer, and its address is banned.
    let (ok, out) = sipp(
        by_ip,
        &["-sf", path(&registrar.file("register.xml")), "-inf", path(&users), "-m", "1"],
    );
    assert!(!ok, "a registration to the bare address was answered:\n{out}");
    let e = record(&events, "unknown_domain", DIRECT_IP);
    assert_eq!((&e["method"], &e["banned"]), (&"REGISTER".into(), &true.into()), "{e}");

    // A scanner that names itself like a gateway and sweeps by address finds nothing.
    let disguise = disguised_sipvicious(&registrar.dir);
    let map = sipvicious_cmd(scanner, &disguise, "svmap").arg(PBX).output().expect("svmap");
    let found = String::from_utf8_lossy(&map.stdout);
    assert!(!found.contains(PBX), "svmap found the PBX:\n{found}");
    let e = record(&events, "unknown_domain", SVMAP);
    assert_eq!(e["method"], "OPTIONS", "{e}");
    let stats = sg.stats();
    assert!(stats["reasons"]["unknown_domain"].as_u64().unwrap() >= 2, "{stats}");

    // The office is still served; only the two that came by address are banned.
    let (ok, out) = sipp(office, &by_domain);
    assert!(ok, "the office still registers:\n{out}");
    let mut banned_now = sg.banned();
    banned_now.sort();
    assert_eq!(banned_now, [SVMAP, DIRECT_IP], "sorted as text");
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

#[test]
fn a_ghost_call_sweep_is_banned_by_the_users_it_addresses() {
    // A desk phone reachable on 5061 rings at every INVITE and then declines: nothing a sweep
    // collects is a challenge, a refusal or a "not found" (the other rules never see it).
    let lan =
        Lan::new(&[("pbx", "10.80.0.1/24"), ("trk", "10.80.0.3/24"), ("swp", "10.80.0.16/24")]);
    let [pbx, trunk, sweeper] = &lan.hosts[..] else { unreachable!() };
    let registrar = Registrar::start(pbx, PBX, TRUNK, PHONES);
    let ring = registrar.file("ring_decline.xml");
    let _phone =
        pbx.spawn(pbx.exec("sipp").args(["-sf", path(&ring), "-i", PBX, "-p", "5061", "-nostdin"]));
    pbx.wait_udp_bound(5061);
    let sg = Sipguard::new(pbx);
    let events = registrar.file("events.jsonl");
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--events-file", path(&events)]);
    let limit = sg.json(&["status", "--json"])["behaviour"]["extension_scan"].as_u64().unwrap();

    // The trunk calls the phone again and again: one user, however many calls.
    let calls = ["-sn", "uac", "-s", "2001", "-m", "40", "-r", "10", "-recv_timeout", "2000"];
    let _declined = sipp_to(trunk, &calls, &format!("{PBX}:5061"));

    // A copy of svwar with every tell rewritten sweeps extensions with INVITEs (ghost calls).
    let disguise = disguised_sipvicious(&registrar.dir);
    let war = sipvicious_cmd(sweeper, &disguise, "svwar")
        .args(["-m", "INVITE", "-e", "100-400", "-p", "5061", "-t", "0.02", PBX])
        .output()
        .expect("running svwar");
    let e = incident(&events, SWEEPER);
    assert_eq!(e["rule"], "extension_scan", "{e}\n{war:?}");
    let users = e["counts"]["users"].as_u64().unwrap();
    assert!(users >= limit, "{e}");
    assert_eq!(e["counts"]["successes"], 0, "{e}");
    assert_eq!(sg.banned(), [SWEEPER], "only the sweeper is banned");
    let stats = sg.stats();
    assert_eq!(stats["counters"]["behaviour_extension_scan"], 1, "{stats}");
    // It rang at most a few phones past the threshold: what came after the ban was dropped.
    assert!(stats["reasons"]["banned"].as_u64().unwrap() > 0, "{stats}");
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

#[test]
fn a_registered_phone_is_not_banned_by_a_probe_forged_with_its_address() {
    let lan = Lan::new(&[
        ("pbx", "10.80.0.1/24"),
        ("off", "10.80.0.2/24"),
        ("fgr", "10.80.0.20/24"),
        ("map", "10.80.0.15/24"),
    ]);
    let [pbx, office, elsewhere, scanner] = &lan.hosts[..] else { unreachable!() };
    let (registrar, _phones) = registrar_with_phones(pbx);
    let sg = Sipguard::new(pbx);
    let events = registrar.file("events.jsonl");
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--events-file", path(&events)]);

    // The office's phones register (digest authentication: the registrar's 200 OK comes
    // only to a party that received its challenge): the office earns standing.
    let (scenario, users) = (registrar.file("register.xml"), registrar.file("users.csv"));
    let register = ["-sf", path(&scenario), "-inf", path(&users), "-m", "50", "-r", "50"];
    let (ok, out) = sipp(office, &register);
    assert!(ok, "every registration of the office succeeds:\n{out}");
    let trust = sg.json(&["status", "--json"])["trust"].clone();
    assert_eq!(trust["standing_sources"], 1, "{trust}");

    // A forger elsewhere on the segment sends a scanner's probe with the office's address.
    assert_eq!(forge(elsewhere, vec![scanner_probe(OFFICE, PBX, 5060)]), 1);
    let e = record(&events, "signature", OFFICE);
    assert_eq!((&e["banned"], &e["ban_withheld"]), (&false.into(), &"standing".into()), "{e}");
    assert_eq!(sg.stats()["counters"]["bans_withheld_standing"], 1);
    assert!(sg.banned().is_empty(), "the office was banned");
    let (ok, out) = sipp(office, &register);
    assert!(ok, "the office still registers:\n{out}");

    // The forger sends REGISTERs in the office's name, for a user that exists: the
    // registrar challenges the office for each, enough to trip `auth_failures`, whose ban
    // the office's standing withholds (no challenge was answered with its nonce).
    let user = sipguard_tests::registrar::USERS.start;
    let forged: Vec<Vec<u8>> = (0..30u16)
        .map(|i| {
            let text = format!(
                "REGISTER sip:{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP {OFFICE}:5090;branch=z9hG4bKf{i}\r\nFrom: <sip:{user}@{PBX}>;tag=f{i}\r\nTo: <sip:{user}@{PBX}>\r\nCall-ID: forged{i}@{OFFICE}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{OFFICE}:5090>\r\nMax-Forwards: 70\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
            );
            Frame::new(
                OFFICE.parse().unwrap(),
                PBX.parse().unwrap(),
                Transport::Udp { sport: 5090, dport: 5060 },
            )
            .payload(text)
            .build()
        })
        .collect();
    assert_eq!(forge(elsewhere, forged), 30);
    let e = incident(&events, OFFICE);
    assert_eq!(
        (&e["rule"], &e["ban_withheld"]),
        (&"auth_failures".into(), &"standing".into()),
        "{e}"
    );
    assert!(sg.banned().is_empty(), "the forger banned the office");
    let (ok, out) = sipp(office, &register);
    assert!(ok, "the office still registers:\n{out}");

    // A real svmap from an address without standing is banned as ever.
    let out = scanner
        .exec("timeout")
        .arg(wait::patience().as_secs().to_string())
        .args(["svmap", "-t", "0.2", PBX])
        .output()
        .expect("running svmap");
    let e = record(&events, "signature", SVMAP);
    assert_eq!(e["banned"], true, "{e}\n{out:?}");
    assert_eq!(sg.banned(), [SVMAP]);

    // Someone at the office's address guesses passwords: each guess answers its challenge
    // with the registrar's nonce, which proves the failures are the office address's own.
    let (_, out) = brute_force(office, &registrar);
    let e = wait::until("the guesser's ban", || {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["source"] == OFFICE && e["banned"] == true)
            .ok_or_else(|| format!("{}\n{out}", sg.stats()["counters"]))
    });
    assert_eq!((&e["rule"], &e["verified"]), (&"auth_failures".into(), &true.into()), "{e}");
    assert!(sg.stats()["counters"]["challenges_answered"].as_u64().unwrap() >= 10);
    run.signal(libc::SIGTERM);
    run.wait_exit();
}
