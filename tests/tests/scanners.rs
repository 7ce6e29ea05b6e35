//! The real scanners from Debian's sipvicious package against a PBX that must accept SIP
//! from anywhere (default pass), protected by the real `sipguard run`; `sipp` places calls
//! from another source at the same time.

use std::{
    io::{BufRead as _, BufReader},
    sync::mpsc,
    time::{Duration, Instant},
};

use sipguard_tests::{
    cli::Sipguard,
    netns::{ChildGuard, Lan, Netns, PbxLink, run_ok},
    wait,
};

/// One host per scanner (the tools bind to any address, so each needs its own), a caller,
/// and the PBX, on one segment.
const PBX: &str = "10.79.0.1";
const CALLER: &str = "10.79.0.3";
const SVMAP_SRC: &str = "10.79.0.12";
const SVWAR_SRC: &str = "10.79.0.14";
const SVCRACK_SRC: &str = "10.79.0.15";
/// Inside the scanners' net (10.79.0.8/29) but no scanner: the capture's sentinel.
const SENTINEL_SRC: &str = "10.79.0.9";
const BAN_TTL: u64 = 120;

/// Runs a tool to completion (bounded by `timeout`, against a hang) and returns
/// stdout+stderr.
fn tool(ns: &Netns, args: &[&str]) -> String {
    let limit = wait::patience().as_secs().to_string();
    let out = ns.exec("timeout").arg(limit).args(args).output().expect("running a tool");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Counts packets the PBX's stack sees from `src` (a net) to port 5060 while `f` runs: a
/// capture after XDP, so dropped packets never show. The capture starts when tcpdump says it
/// listens, and ends when it has seen a sentinel that `sentinel` sends from inside `src`
/// after `f` (not SIP, so the filter passes it): whatever `f`'s tools sent before is in by
/// then, or was dropped.
fn captured_from(ns: &Netns, src: &str, sentinel: &Netns, f: impl FnOnce()) -> Vec<String> {
    let mut cap = ns.spawn(
        ns.exec("tcpdump")
            .args(["-i", "eth0", "-l", "-n", "src", "net", src, "and", "udp", "port", "5060"]),
    );
    let lines = lines_of(&mut cap);
    let (ready, lines) = (lines.stderr, lines.stdout);
    wait::until("tcpdump to listen", || match ready.try_recv() {
        Ok(l) if l.contains("listening on") => Ok(()),
        Ok(l) => Err(l),
        Err(e) => Err(e.to_string()),
    });
    f();
    let probe = sentinel.udp(&format!("{SENTINEL_SRC}:0"));
    let mut seen = Vec::new();
    wait::until("tcpdump to see the sentinel", || {
        probe.send_to(b"sentinel", format!("{PBX}:5060")).expect("sending the sentinel");
        while let Ok(line) = lines.recv_timeout(Duration::from_millis(50)) {
            let is_sentinel = line.contains(&format!("{SENTINEL_SRC}."));
            seen.push(line);
            if is_sentinel {
                return Ok(());
            }
        }
        Err(format!("{} lines so far", seen.len()))
    });
    cap.kill();
    seen.retain(|l| !l.contains(&format!("{SENTINEL_SRC}.")));
    seen
}

/// A child's stdout and stderr, line by line, as they come.
struct Lines {
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn lines_of(child: &mut ChildGuard) -> Lines {
    fn pump(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }
    let c = child.child();
    Lines {
        stdout: pump(c.stdout.take().expect("piped stdout")),
        stderr: pump(c.stderr.take().expect("piped stderr")),
    }
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
    let uas = pbx
        .spawn(pbx.exec("sipp").args(["-sn", "uas", "-i", PBX, "-p", "5060", "-aa", "-nostdin"]));
    pbx.wait_udp_bound(5060);
    let mut run =
        sg.run(&["-i", "eth0", "--ban-ttl", &BAN_TTL.to_string(), "--stats-interval", "0"]);
    caller.ip(&["addr", "add", &format!("{SENTINEL_SRC}/24"), "dev", "eth0"]);

    let mut outputs = Vec::new();
    let seen = captured_from(pbx, "10.79.0.8/29", caller, || {
        outputs.push(tool(svmap, &["svmap", "-t", "0.2", PBX]));
        outputs.push(tool(svmap, &["svmap", "-m", "INVITE", "-t", "0.2", PBX]));
        outputs.push(tool(svwar, &["svwar", "-e", "100-120", "-t", "0.2", PBX]));
        outputs.push(tool(svcrack, &["svcrack", "-u", "100", "-r", "1000-1010", "-t", "0.2", PBX]));
    });
    assert!(
        seen.is_empty(),
        "scanner packets reached the PBX's stack: {seen:#?}\n{}",
        outputs.join("\n")
    );
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
            &format!("{}s", wait::patience().as_secs()),
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
    let out = run.wait_exit();
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
    drop(uas);
}

/// Sends a plain OPTIONS from `from`; the socket receives the answer.
fn send_options(from: &Netns, src: &str) -> std::net::UdpSocket {
    let sock = from.udp(&format!("{src}:0"));
    let options = format!(
        "OPTIONS sip:100@{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:{port};branch=z9hG4bK77\r\nFrom: <sip:probe@{src}>;tag=1\r\nTo: <sip:100@{PBX}>\r\nCall-ID: {id}@{src}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        port = sock.local_addr().unwrap().port(),
        id = sipguard_tests::unique("sg"),
    );
    sock.send_to(options.as_bytes(), format!("{PBX}:5060")).unwrap();
    sock
}

/// Whether the PBX (sipp -aa) answered 200 on `sock` within `wait`.
fn answered(sock: &std::net::UdpSocket, wait: Duration) -> bool {
    sock.set_read_timeout(Some(wait)).unwrap();
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
    // The UAS is up when it answers (sipp has no readiness signal of its own).
    wait::until("the sipp UAS to answer", || {
        answered(&send_options(svmap, SVMAP_SRC), Duration::from_millis(200))
            .then_some(())
            .ok_or_else(|| "no answer".to_owned())
    });
    sg.ok(&["attach", "-i", "eth0", "--ban-ttl", "6"]);
    let before_scan = Instant::now();
    tool(svmap, &["svmap", "-t", "0.2", PBX]);
    // JSON Lines: one record per ban, then the summary.
    let bans = || {
        let out = sg.ok(&["ban", "list", "--json"]);
        let summary = out.lines().last().expect("a summary line");
        serde_json::from_str::<serde_json::Value>(summary).expect("JSON")
    };
    assert_eq!(bans()["bans"], 1, "svmap is banned");
    // Banned: even a clean OPTIONS is dropped, by the ban.
    let dropped = sg.reason("banned");
    let probe = send_options(svmap, SVMAP_SRC);
    sg.wait_reason("banned", dropped + 1);
    assert!(!answered(&probe, Duration::from_millis(1)), "a banned source was answered");
    // The ban's own clock: wait for it to lapse (bounded by patience).
    wait::until("the ban to expire", || {
        let b = bans();
        if b["bans"] == 0 { Ok(()) } else { Err(b.to_string()) }
    });
    // It started after `before_scan`; the coarse clock may round by a tick.
    assert!(before_scan.elapsed() >= Duration::from_millis(5_900), "the ban lapsed early");
    // The kernel's coarse clock may trail userspace's by a tick: ask until answered.
    wait::until("the PBX to answer the formerly banned source", || {
        answered(&send_options(svmap, SVMAP_SRC), Duration::from_millis(200))
            .then_some(())
            .ok_or_else(|| format!("no answer; bans: {}", bans()))
    });
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
    link.pbx.wait_udp_bound(5060);
    sg.ok(&["attach", "-i", "pbx0", "--mode", "monitor"]);
    let out = tool(&link.peer, &["svmap", "-t", "0.2", PbxLink::PBX_V4]);
    assert!(out.contains(PbxLink::PBX_V4), "svmap should find the PBX in monitor mode: {out}");
    let stats = sg.stats();
    assert!(stats["reasons"]["monitor_signature"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["dropped"], 0, "{stats}");
    run_ok(&mut sg.cmd(&["ban", "list"]));
}
