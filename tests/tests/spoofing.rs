//! Forged packets through real interfaces against the real `sipguard run`: a PBX with a
//! trunk side and an internet side, where packets forged with the trunk's address must not
//! ban it while `sipp` calls from the trunk complete (scanner probes, and requests a real
//! registrar would answer to the trunk); and a flood of forged scanner packets from random
//! sources that must not lift a real `svmap`'s ban.

use sipguard_common::trust::BanBudget;
use std::{path::PathBuf, time::Instant};

use sipguard_tests::{
    cli::Sipguard,
    frames::{Frame, Transport, scanner_probe},
    netns::{Lan, Netns, forge, veth},
    registrar::Registrar,
    wait,
};

/// The PBX's two sides, and who is on them.
const PBX_INET: &str = "10.77.1.1";
const ATTACKER: &str = "10.77.1.2";
const PBX_TRUNK_SIDE: &str = "10.77.2.1";
const TRUNK: &str = "10.77.2.2";

/// A file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(prefix: &str) -> Self {
        Self(std::env::temp_dir().join(sipguard_tests::unique(prefix)))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// Runs a tool to completion in `ns` (bounded against a hang); returns stdout+stderr and
/// whether it succeeded.
fn tool(ns: &Netns, args: &[&str]) -> (bool, String) {
    let limit = wait::patience().as_secs().to_string();
    let out = ns.exec("timeout").arg(limit).args(args).output().expect("running a tool");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `sipp` calls from the trunk to the PBX's phones: every one must complete.
fn trunk_calls(trunk: &Netns, calls: u32) {
    let calls = calls.to_string();
    let (ok, out) = tool(
        trunk,
        &[
            "sipp",
            "-sn",
            "uac",
            "-i",
            TRUNK,
            "-m",
            &calls,
            "-r",
            "20",
            "-nostdin",
            "-default_behaviors",
            "all,-abortunexp",
            &format!("{PBX_TRUNK_SIDE}:5060"),
        ],
    );
    assert!(ok, "every call from the trunk completes:\n{out}");
}

#[test]
fn packets_forged_with_the_trunks_address_do_not_ban_the_trunk() {
    let pbx = Netns::new("pbx");
    let internet = Netns::new("net");
    let trunk = Netns::new("trk");
    veth(
        &pbx,
        "inet",
        &[&format!("{PBX_INET}/24")],
        &internet,
        "eth0",
        &[&format!("{ATTACKER}/24")],
    );
    veth(
        &pbx,
        "trunk",
        &[&format!("{PBX_TRUNK_SIDE}/24")],
        &trunk,
        "eth0",
        &[&format!("{TRUNK}/24")],
    );
    pbx.ip(&["route", "add", "default", "via", ATTACKER, "dev", "inet"]);
    let _phones = pbx.spawn(pbx.exec("sipp").args([
        "-sn",
        "uas",
        "-i",
        PBX_TRUNK_SIDE,
        "-p",
        "5060",
        "-nostdin",
    ]));
    pbx.wait_udp_bound(5060);
    let events = TempFile::new("sgevt");
    let sg = Sipguard::new(&pbx);
    let mut run = sg.run(&[
        "-i",
        "inet",
        "-i",
        "trunk",
        "--stats-interval",
        "0",
        "--events-file",
        events.path(),
    ]);
    let trust = sg.json(&["status", "--json"])["trust"].clone();
    assert_eq!(trust["reverse_path"], "strict", "{trust}");
    assert_eq!(trust["route_mirror"], true, "the PBX does not forward: {trust}");

    // From the internet side, with the trunk's address: before any call, so the trunk has
    // no standing to protect it, only its route.
    let forged: Vec<Vec<u8>> = (0..20).map(|i| scanner_probe(TRUNK, PBX_INET, 5060 + i)).collect();
    assert_eq!(forge(&internet, forged), 20);
    sg.wait_reason("spoofed", 20);
    trunk_calls(&trunk, 100);
    // And again while the trunk calls.
    std::thread::scope(|s| {
        let during = s.spawn(|| {
            let forged = (0..200).map(|i| scanner_probe(TRUNK, PBX_INET, 6000 + i)).collect();
            forge(&internet, forged)
        });
        trunk_calls(&trunk, 100);
        assert_eq!(during.join().unwrap(), 200);
    });
    sg.wait_reason("spoofed", 220);
    assert!(!sg.banned().contains(&TRUNK.to_owned()), "the trunk was banned");
    let stats = sg.stats();
    assert_eq!(stats["counters"]["bans_withheld_spoofed"], 220, "{stats}");
    assert_eq!(stats["reasons"]["signature"], 0, "{stats}");

    // The records say why no ban was made (as many as the event budget let through).
    let records = events.records();
    let spoofed: Vec<_> = records.iter().filter(|r| r["ban_withheld"] == "spoofed").collect();
    assert!(!spoofed.is_empty(), "{records:?}");
    assert!(spoofed.iter().all(|r| r["source"] == TRUNK && r["banned"] == false));

    // A real scanner on the internet side, from its own address, is banned as ever.
    let (_, out) = tool(&internet, &["svmap", "-t", "0.2", PBX_INET]);
    wait::until("svmap to be banned", || {
        let now = sg.banned();
        if now.contains(&ATTACKER.to_owned()) { Ok(()) } else { Err(format!("{now:?}\n{out}")) }
    });
    assert_eq!(sg.banned(), vec![ATTACKER.to_owned()]);
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

#[test]
fn a_flood_of_forged_probes_does_not_lift_a_real_scanners_ban() {
    const PBX: &str = "10.81.0.1";
    const SVMAP: &str = "10.81.0.12";
    let lan =
        Lan::new(&[("pbx", "10.81.0.1/24"), ("map", "10.81.0.12/24"), ("fgr", "10.81.0.13/24")]);
    let [pbx, svmap, attacker] = &lan.hosts[..] else { unreachable!() };
    // An internet-facing PBX: every source has a route back, through its one interface.
    pbx.ip(&["route", "add", "default", "dev", "eth0"]);
    let _uas =
        pbx.spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", "5060", "-nostdin"]));
    pbx.wait_udp_bound(5060);
    let events = TempFile::new("sgevt");
    let sg = Sipguard::new(pbx);
    let mut run = sg.run(&["-i", "eth0", "--stats-interval", "0", "--events-file", events.path()]);
    let (_, out) = tool(svmap, &["svmap", "-t", "0.2", PBX]);
    wait::until("svmap to be banned", || {
        let now = sg.banned();
        if now.contains(&SVMAP.to_owned()) { Ok(()) } else { Err(format!("{now:?}\n{out}")) }
    });
    let before = sg.json(&["status", "--json"])["trust"].clone();
    // A thousand bans no packet touches again (by hand): the first an LRU evicts when the
    // table fills. (Which ones it evicts first is the kernel's approximation of LRU: the
    // control below counts them, it does not name one.)
    let cold: Vec<String> =
        (0..1000u32).map(|i| format!("10.82.{}.{}", i / 250, i % 250 + 1)).collect();
    let mut add = vec!["ban", "add", "--ttl", "3600"];
    add.extend(cold.iter().map(String::as_str));
    sg.ok(&add);
    let cold_left = || {
        let banned = sg.banned();
        cold.iter().filter(|c| banned.contains(c)).count()
    };

    // 100,000 probes, each from its own random address (outside the LAN, so each is a new
    // source), while svmap scans again.
    let start = Instant::now();
    let mut rng = sipguard_tests::corpus::Rng::new(15);
    let forged: Vec<Vec<u8>> = (0..100_000u32)
        .map(|i| {
            let a = rng.below(1 << 22);
            let src = format!("100.{}.{}.{}", 64 + (a >> 16), (a >> 8) & 255, a & 255);
            scanner_probe(&src, PBX, 1024 + u16::try_from(i % 60_000).unwrap())
        })
        .collect();
    let rescan = std::thread::scope(|s| {
        let flood = s.spawn(|| forge(attacker, forged));
        let (_, rescan) = tool(svmap, &["svmap", "-t", "0.2", PBX]);
        assert_eq!(flood.join().unwrap(), 100_000);
        rescan
    });
    let elapsed = start.elapsed();
    // Every forged probe is judged: dropped by its signature, or by a ban the budget let in.
    let judged = sg.wait_reason("signature", 1);
    let trust = sg.json(&["status", "--json"])["trust"].clone();
    wait::until("every forged probe to be judged", || {
        let s = sg.stats();
        let n =
            s["reasons"]["signature"].as_u64().unwrap() + s["reasons"]["banned"].as_u64().unwrap();
        if n >= 100_000 { Ok(()) } else { Err(format!("{n} judged (first read {judged})")) }
    });

    // The real scanner's ban holds, and its rescan was dropped by it: svmap itself found
    // nothing.
    assert!(sg.banned().contains(&SVMAP.to_owned()), "svmap's ban was lifted\n{rescan}");
    assert!(rescan.contains("found nothing"), "svmap's rescan found the PBX:\n{rescan}");
    assert_eq!(cold_left(), 1000, "the table never filled: nothing evicted");
    let trust_after = sg.json(&["status", "--json"])["trust"].clone();
    let withheld = trust_after["bans_withheld"]["budget"].as_u64().unwrap();
    let burst = before["ban_burst"].as_u64().unwrap();
    // The bans by hand are no forgery's.
    let by_hand = cold.len() as u64;
    let active = trust_after["bans_active"].as_u64().unwrap() - by_hand;
    let capacity = trust_after["ban_capacity"].as_u64().unwrap();
    // The pressure shows: the budget admitted its burst and what it refilled, and withheld
    // the rest; the table stayed far from full.
    let per_minute = before["bans_per_minute"].as_u64().unwrap();
    let refill = per_minute * (elapsed.as_secs() + 60) / 60;
    assert!(active <= burst + refill + 2, "{active} bans: {trust_after}");
    assert!(withheld >= 100_000 - burst - refill, "{trust_after}");
    assert!(active < capacity * 5 / 8, "{trust_after}");
    // And from the kernel's map itself (bpftool): the burst was admitted, no more than the
    // budget allows.
    let entries = sg.ban_entries() as u64 - by_hand;
    assert!(entries > burst && entries <= burst + refill + 2, "{entries} entries, burst {burst}");
    assert_eq!(trust["ban_capacity"], capacity);
    println!(
        "100,000 forged probes in {elapsed:?}: {active} bans of {capacity}, {withheld} withheld by the budget"
    );
    // The events stayed within the kernel's budget (1,000 a second, a second's burst).
    let records = events.records().len() as u64;
    let bound = 1000 * (start.elapsed().as_secs() + 2) + 10;
    assert!(records <= bound, "{records} records in {:?}", start.elapsed());

    // The control: a flood with the budget off (written to the pinned map by the test: no
    // flag offers it) fills the table, and its LRU evicts the bans no packet touched since.
    let layout = sipguard::kernel::pin::PinLayout::new(&sg.pin_dir);
    let maps = sipguard::kernel::maps::PinnedMaps::open(&layout).unwrap();
    sipguard::state::change::run(&maps, |tx| tx.set_ban_budget(&BanBudget::default())).unwrap();
    let flood: Vec<Vec<u8>> = (0..3 * u32::try_from(capacity).unwrap())
        .map(|i| {
            let a = rng.below(1 << 22);
            let src = format!("100.{}.{}.{}", 64 + (a >> 16), (a >> 8) & 255, a & 255);
            scanner_probe(&src, PBX, 1024 + u16::try_from(i % 60_000).unwrap())
        })
        .collect();
    let sent = flood.len() as u64;
    let judged = sg.reason("signature") + sg.reason("banned");
    assert_eq!(forge(attacker, flood) as u64, sent);
    wait::until("the second flood to be judged", || {
        let n = sg.reason("signature") + sg.reason("banned");
        if n >= judged + sent { Ok(()) } else { Err(format!("{} of {sent}", n - judged)) }
    });
    let entries = sg.ban_entries() as u64;
    assert!(entries > capacity * 7 / 8, "the table fills: {entries} of {capacity}");
    let left = cold_left();
    println!("without the budget: {entries} entries, {left} of the 1,000 cold bans left");
    assert!(left < 500, "without the budget, {left} of the 1,000 cold bans stay");
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

/// logrotate's way (rename, then SIGUSR1) under a flood of scanner probes: every record the
/// kernel sent is in exactly one of the files, whole. Bans are off so that every probe keeps
/// calling for a record, and the kernel's event budget (1,000 a second) sets the pace.
#[test]
fn the_incident_log_is_rotated_under_a_flood_without_losing_or_repeating_a_record() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const PBX: &str = "10.82.0.1";
    let lan = Lan::new(&[("pbx", "10.82.0.1/24"), ("fgr", "10.82.0.13/24")]);
    let [pbx, attacker] = &lan.hosts[..] else { unreachable!() };
    pbx.ip(&["route", "add", "default", "dev", "eth0"]);
    let events = TempFile::new("sgevt");
    let sg = Sipguard::new(pbx);
    let mut run = sg.run(&[
        "-i",
        "eth0",
        "--stats-interval",
        "0",
        "--ban-ttl",
        "0",
        "--events-file",
        events.path(),
    ]);
    let lines = |path: &str| std::fs::read_to_string(path).unwrap_or_default().lines().count();
    let rotated: Vec<String> = (1..=4).map(|k| format!("{}.{k}", events.path())).collect();
    let stop = AtomicBool::new(false);
    let sent = std::thread::scope(|s| {
        // Probes until told to stop, each with its own source address and port.
        let flood = s.spawn(|| {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                let burst: Vec<Vec<u8>> = (n..n + 2000)
                    .map(|i| {
                        let src = format!(
                            "100.{}.{}.{}",
                            64 + (i >> 24),
                            (i >> 16) & 255,
                            (i >> 8) & 255
                        );
                        scanner_probe(&src, PBX, 1024 + u16::try_from(i & 255).unwrap())
                    })
                    .collect();
                n += u32::try_from(forge(attacker, burst)).unwrap();
            }
            n
        });
        // Rotate four times while it runs, each once the current file has records.
        for old in &rotated {
            wait::until("records in the current file", || {
                let n = lines(events.path());
                if n >= 20 { Ok(()) } else { Err(format!("{n} lines")) }
            });
            std::fs::rename(events.path(), old).unwrap();
            run.signal(libc::SIGUSR1);
        }
        wait::until("records after the last rotation", || {
            let n = lines(events.path());
            if n >= 20 { Ok(()) } else { Err(format!("{n} lines")) }
        });
        stop.store(true, Ordering::Relaxed);
        flood.join().unwrap()
    });

    // Every record the kernel sent is written once: across the five files, as many lines as
    // the kernel's count, each a whole record, no probe twice.
    let files: Vec<&str> =
        rotated.iter().map(String::as_str).chain(std::iter::once(events.path())).collect();
    let total = wait::until("every record sent to be written", || {
        let sent = sg.stats()["counters"]["events_sent"].as_u64().unwrap();
        let written: usize = files.iter().map(|f| lines(f)).sum();
        if written as u64 == sent { Ok(sent) } else { Err(format!("{written} written of {sent}")) }
    });
    let mut probes = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        assert!(text.is_empty() || text.ends_with('\n'), "{f} ends mid-record");
        for line in text.lines() {
            let r: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{f}: {e}: {line}"));
            let probe = format!("{}:{}", r["source"], r["source_port"]);
            assert!(probes.insert(probe), "repeated: {line}");
        }
        assert!(lines(f) >= 20, "{f} holds records");
    }
    assert_eq!(probes.len() as u64, total);
    println!("{sent} probes, {total} records in five files across four rotations");
    run.signal(libc::SIGTERM);
    run.wait_exit();
    for old in &rotated {
        std::fs::remove_file(old).ok();
    }
}

/// Requests that call for no ban but draw answers: INVITEs to extensions the registrar does
/// not know, and REGISTERs for user 101 with a wrong password, from `src:5070` to `dst`
/// (`n` of each; `from` is the INVITEs' caller).
fn answered_requests(src: &str, dst: &str, from: &str, n: u32) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(format!(
            "INVITE sip:5{i:02}@{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5070;branch=z9hG4bKi{i}\r\nFrom: <sip:{from}@{dst}>;tag={i}\r\nTo: <sip:5{i:02}@{dst}>\r\nCall-ID: i{i}@{src}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from}@{src}:5070>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ));
        out.push(format!(
            "REGISTER sip:{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5070;branch=z9hG4bKr{i}\r\nFrom: <sip:101@{dst}>;tag=r{i}\r\nTo: <sip:101@{dst}>\r\nCall-ID: r{i}@{src}\r\nCSeq: {i} REGISTER\r\nAuthorization: Digest username=\"101\", realm=\"{dst}\", nonce=\"0a1b2c{i}\", uri=\"sip:{dst}\", response=\"00112233445566778899aabbccddeeff\"\r\nContact: <sip:101@{src}:5070>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ));
    }
    out
}

/// Issue 27: a forger on the internet side sends requests with the trunk's address that a
/// registrar answers (404 to unknown numbers, 401 to a wrong password), so that the answers,
/// sent to the trunk, trip the behaviour rules against it. Such requests fail the reverse
/// path and are dropped as `spoofed` on arrival: the registrar never answers them, nothing
/// is banned, and the trunk's calls complete. The same requests sent for real from the
/// internet side still trip the rules.
#[test]
fn requests_forged_for_the_registrars_answers_never_reach_it() {
    const ATTACKER_2: &str = "10.77.1.3";
    let pbx = Netns::new("pbx");
    let internet = Netns::new("net");
    let trunk = Netns::new("trk");
    veth(
        &pbx,
        "inet",
        &[&format!("{PBX_INET}/24")],
        &internet,
        "eth0",
        &[&format!("{ATTACKER}/24"), &format!("{ATTACKER_2}/24")],
    );
    veth(
        &pbx,
        "trunk",
        &[&format!("{PBX_TRUNK_SIDE}/24")],
        &trunk,
        "eth0",
        &[&format!("{TRUNK}/24")],
    );
    pbx.ip(&["route", "add", "default", "via", ATTACKER, "dev", "inet"]);
    let phones = format!("{PBX_INET}:5070");
    let _registrar = Registrar::start_on(&pbx, &[PBX_INET, PBX_TRUNK_SIDE], TRUNK, &phones);
    let _phones =
        pbx.spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX_INET, "-p", "5070", "-nostdin"]));
    pbx.wait_udp_bound(5070);
    let sg = Sipguard::new(&pbx);
    let mut run = sg.run(&["-i", "inet", "-i", "trunk", "--stats-interval", "0"]);

    // Before the trunk ever calls (no standing): 25 of each, over both rules' thresholds.
    let forged: Vec<Vec<u8>> = answered_requests(TRUNK, PBX_INET, "trunk", 25)
        .iter()
        .map(|text| {
            Frame::new(
                TRUNK.parse().unwrap(),
                PBX_INET.parse().unwrap(),
                Transport::Udp { sport: 5070, dport: 5060 },
            )
            .payload(text.as_bytes())
            .build()
        })
        .collect();
    assert_eq!(forge(&internet, forged), 50);
    sg.wait_reason("spoofed", 50);
    let stats = sg.stats();
    assert_eq!(stats["counters"]["responses"], 0, "the registrar answered a forgery: {stats}");
    assert!(sg.banned().is_empty(), "{:?}", sg.banned());

    // The trunk calls an extension (taken without authentication from its address).
    let (ok, out) = tool(
        &trunk,
        &[
            "sipp",
            "-sn",
            "uac",
            "-s",
            "100",
            "-i",
            TRUNK,
            "-m",
            "50",
            "-r",
            "20",
            "-nostdin",
            "-default_behaviors",
            "all,-abortunexp",
            &format!("{PBX_TRUNK_SIDE}:5060"),
        ],
    );
    assert!(ok, "every call from the trunk completes:\n{out}");

    // The same requests for real, from two addresses on the internet side: the INVITEs
    // (from a known user, so challenged) and the REGISTERs trip the rules.
    for (src, skip) in [(ATTACKER, 1), (ATTACKER_2, 0)] {
        let socket = internet.udp(&format!("{src}:5070"));
        let requests = answered_requests(src, PBX_INET, "101", 25);
        for text in requests.iter().skip(skip).step_by(2) {
            socket.send_to(text.as_bytes(), format!("{PBX_INET}:5060")).expect("sending");
        }
    }
    wait::until("both real senders to be banned", || {
        let now = sg.banned();
        if now.len() == 2 { Ok(()) } else { Err(format!("{now:?}\n{}", sg.stats())) }
    });
    assert_eq!(sg.banned(), [ATTACKER, ATTACKER_2]);
    let stats = sg.stats();
    assert_eq!(stats["counters"]["behaviour_auth_failures"], 2, "{stats}");
    run.signal(libc::SIGTERM);
    run.wait_exit();
}
