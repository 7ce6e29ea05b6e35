//! The real scanners from Debian's sipvicious package against a PBX that must accept SIP
//! from anywhere (default pass), protected by the real `sipguard run`; `sipp` places calls
//! from another source at the same time.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use sipguard_tests::{
    cli::Sipguard,
    netns::{ChildGuard, Lan, Netns, PbxLink, run_ok},
};

/// One host per scanner (the tools bind to any address, so each needs its own), a caller,
/// and the PBX, on one segment.
const PBX: &str = "10.79.0.1";
const CALLER: &str = "10.79.0.3";
const SVMAP_SRC: &str = "10.79.0.12";
const SVWAR_SRC: &str = "10.79.0.14";
const SVCRACK_SRC: &str = "10.79.0.15";
const BAN_TTL: u64 = 120;

/// Runs a tool to completion (bounded by `timeout`) and returns stdout+stderr.
fn tool(ns: &Netns, args: &[&str]) -> String {
    let out = ns.exec("timeout").arg("60").args(args).output().expect("running a tool");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Counts packets the PBX's stack sees from `src` (a net) to port 5060 while `f` runs: a
/// capture after XDP, so dropped packets never show.
fn captured_from(ns: &Netns, src: &str, f: impl FnOnce()) -> usize {
    let file = format!("/tmp/{}.pcap", sipguard_tests::unique("sgcap"));
    let mut cap: ChildGuard =
        ns.spawn(ns.exec("tcpdump").args([
            "-i", "eth0", "-U", "-w", &file, "src", "net", src, "and", "udp", "port", "5060",
        ]));
    std::thread::sleep(Duration::from_millis(700));
    f();
    std::thread::sleep(Duration::from_millis(300));
    cap.signal(libc::SIGINT);
    let _ = cap.wait_timeout(Duration::from_secs(5));
    let out = Command::new("tcpdump")
        .args(["-r", &file])
        .stderr(Stdio::null())
        .output()
        .expect("reading the capture");
    let _ = std::fs::remove_file(&file);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn sipvicious_is_stopped_and_reported_while_calls_go_through() {
    let lan = Lan::new(&[
        ("pbx", "10.79.0.1/24"),
        ("call", "10.79.0.3/24"),
        ("map", "10.79.0.12/24"),
        ("war", "10.79.0.14/24"),
        ("crk", "10.79.0.15/24"),
    ]);
    let [pbx, caller, svmap, svwar, svcrack] = &lan.hosts[..] else { unreachable!() };
    let sg = Sipguard::new(pbx);
    let mut uas = pbx
        .spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", "5060", "-aa", "-nostdin"]));
    let mut run = sg.spawn_run(
        pbx,
        &["-i", "eth0", "--ban-ttl", &BAN_TTL.to_string(), "--stats-interval", "0"],
    );
    sg.wait_attached("eth0", Duration::from_secs(10));

    let mut outputs = Vec::new();
    let seen = captured_from(pbx, "10.79.0.8/29", || {
        outputs.push(tool(svmap, &["svmap", "-t", "0.2", PBX]));
        outputs.push(tool(svmap, &["svmap", "-m", "INVITE", "-t", "0.2", PBX]));
        outputs.push(tool(svwar, &["svwar", "-e", "100-120", "-t", "0.2", PBX]));
        outputs.push(tool(svcrack, &["svcrack", "-u", "100", "-r", "1000-1010", "-t", "0.2", PBX]));
    });
    assert_eq!(seen, 0, "scanner packets reached the PBX's stack:\n{}", outputs.join("\n"));
    for out in &outputs {
        assert!(
            out.contains("found nothing")
                || out.contains("timed out")
                || out.contains("no server response"),
            "{out}"
        );
    }

    // A legitimate caller from another source: every call completes.
    let calls = caller
        .exec("sipp")
        .args([
            "-sn",
            "uac",
            &format!("{PBX}:5060"),
            "-i",
            CALLER,
            "-p",
            "5060",
            "-m",
            "10",
            "-r",
            "10",
            "-d",
            "100",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
        ])
        .output()
        .expect("sipp");
    assert!(
        calls.status.success(),
        "sipp calls failed: {}",
        String::from_utf8_lossy(&calls.stderr)
    );

    // Each scanner source is banned and reported exactly once.
    let bans = sg.ok(&["ban", "list", "--json"]);
    for src in [SVMAP_SRC, SVWAR_SRC, SVCRACK_SRC] {
        assert!(bans.contains(&format!("\"addr\":\"{src}\"")), "{src} not banned: {bans}");
    }
    assert!(!bans.contains(CALLER), "the caller was banned: {bans}");
    let stats = sg.stats();
    assert!(stats["reasons"]["signature"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(stats["counters"]["bans_added"], 3, "{stats}");

    run.signal(libc::SIGTERM);
    let out = run.wait_timeout(Duration::from_secs(5)).expect("run exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    for src in [SVMAP_SRC, SVWAR_SRC, SVCRACK_SRC] {
        let mine: Vec<&serde_json::Value> = events.iter().filter(|e| e["source"] == src).collect();
        assert_eq!(mine.len(), 1, "{src}: {stdout}");
        let e = mine[0];
        assert_eq!(e["type"], "event");
        assert_eq!(e["reason"], "signature");
        assert_eq!(e["banned"], true);
        assert_eq!(e["user_agent"], "friendly-scanner");
        assert_eq!(e["interface"], "eth0");
        assert!(e["signature"].as_str().is_some_and(|s| s.starts_with("sipvicious")), "{e}");
    }
    assert_eq!(events.len(), 3, "{stdout}");

    drop(uas.0.take());
}

/// Sends a plain OPTIONS from `from` and reports whether the PBX (sipp -aa) answered 200.
fn answered(from: &Netns, src: &str) -> bool {
    let sock = from.udp(&format!("{src}:0"));
    let options = format!(
        "OPTIONS sip:100@{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{port};branch=z9hG4bK77\r\nFrom: <sip:probe@{src}>;tag=1\r\nTo: <sip:100@{PBX}>\r\nCall-ID: {id}@{src}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        port = sock.local_addr().unwrap().port(),
        id = sipguard_tests::unique("sg"),
    );
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(options.as_bytes(), format!("{PBX}:5060")).unwrap();
    let mut buf = [0u8; 2048];
    sock.recv_from(&mut buf).is_ok_and(|(n, _)| buf[..n].starts_with(b"SIP/2.0 200"))
}

#[test]
fn a_banned_source_may_talk_again_after_the_ban_expires() {
    let lan = Lan::new(&[("pbx", "10.79.0.1/24"), ("map", "10.79.0.12/24")]);
    let [pbx, svmap] = &lan.hosts[..] else { unreachable!() };
    let sg = Sipguard::new(pbx);
    let _uas = pbx
        .spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", "5060", "-aa", "-nostdin"]));
    std::thread::sleep(Duration::from_millis(300));
    assert!(answered(svmap, SVMAP_SRC), "the PBX answers before any scan");
    sg.ok(&["attach", "-i", "eth0", "--ban-ttl", "6"]);
    tool(svmap, &["svmap", "-t", "0.2", PBX]);
    assert!(!answered(svmap, SVMAP_SRC), "banned: even a clean OPTIONS is dropped");
    std::thread::sleep(Duration::from_secs(7));
    assert!(answered(svmap, SVMAP_SRC), "the ban expired");
    assert!(sg.ok(&["ban", "list", "--json"]).contains("\"bans\":0"));
}

#[test]
fn monitor_mode_lets_scans_through_but_reports_them() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    let _uas = link.pbx.spawn(link.pbx.exec("sipp").args([
        "-sn",
        "uas",
        "-i",
        PbxLink::PBX_V4,
        "-p",
        "5060",
        "-aa",
        "-nostdin",
    ]));
    sg.ok(&["attach", "-i", "pbx0", "--mode", "monitor"]);
    let out = tool(&link.peer, &["svmap", "-t", "0.2", PbxLink::PBX_V4]);
    assert!(out.contains(PbxLink::PBX_V4), "svmap should find the PBX in monitor mode: {out}");
    let stats = sg.stats();
    assert!(stats["reasons"]["monitor_signature"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["dropped"], 0, "{stats}");
    run_ok(&mut sg.cmd(&["ban", "list"]));
}
