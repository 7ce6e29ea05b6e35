//! The fleet: edge hosts that enforce the decisions of a real CrowdSec Local API (Debian's
//! 1.4.6, offline, in a namespace of its own) through the real `sipguard run`, on a LAN with
//! a scanner (`sipguard_tests::fleet`). Decisions are made with the real `cscli`. What
//! forged packets can and cannot do across the fleet is `fleet_trust.rs`.

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use sipguard_tests::{
    cli::Sipguard,
    fleet::{
        EDGES, Edge, Fleet, METRICS, PROBE, SCANNER, SCANNER_V6, SVMAP_WHILE_DOWN, run_args, svmap,
    },
    frames::scanner_probe_text,
    wait,
};

/// When `edge` banned `source`, by its incident record.
fn banned_at(edge: &Edge, source: &str) -> std::time::SystemTime {
    let text = std::fs::read_to_string(&edge.events).unwrap_or_default();
    let record = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["source"] == source && r["banned"] == true)
        .unwrap_or_else(|| panic!("no ban of {source} in {text}"));
    humantime::parse_rfc3339(record["time"].as_str().unwrap()).unwrap()
}

#[test]
fn cscli_decisions_reach_every_edge_ranges_included_and_so_do_their_deletions() {
    let fleet = Fleet::new();
    let interval = 1;
    let edges = [fleet.edge(0, interval), fleet.edge(1, interval)];
    let sockets: Vec<(String, UdpSocket)> =
        SCANNER.iter().chain(&SCANNER_V6).map(|a| ((*a).to_owned(), fleet.scanner(a))).collect();
    for e in &edges {
        for (src, s) in &sockets {
            assert!(e.sg.arrives(s, e.pbx_for(src), PROBE), "{src} before any decision");
        }
    }

    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER[0], "-d", "1h"]);
    fleet.api.cscli(&["decisions", "add", "--range", "10.88.7.0/24", "-d", "1h"]);
    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER_V6[0], "-d", "1h"]);
    fleet.api.cscli(&["decisions", "add", "--range", "fd88:0:7::/48", "-d", "1h"]);
    // From the last decision made to every edge's kernel holding all four: the issue's
    // bound is one poll interval plus a second.
    let made = Instant::now();
    let took = wait::until("both edges to enforce the four decisions", || {
        let counts: Vec<usize> = edges.iter().map(|e| e.decisions().len()).collect();
        if counts == [4, 4] { Ok(made.elapsed()) } else { Err(format!("{counts:?}")) }
    });
    eprintln!("both edges enforce the decisions {took:.2?} after the last was made");
    assert!(
        took <= Duration::from_secs(interval + 1),
        "{took:?} is more than one interval ({interval}s) plus a second"
    );
    for e in &edges {
        for (src, s) in sockets.iter().filter(|(a, _)| !a.ends_with("77")) {
            assert!(
                e.sg.drops(s, e.pbx_for(src), PROBE, "decision"),
                "{src} is named by a decision"
            );
        }
        for (src, s) in sockets.iter().filter(|(a, _)| a.ends_with("77")) {
            assert!(e.sg.arrives(s, e.pbx_for(src), PROBE), "{src} is named by no decision");
        }
        let listed = e.decisions();
        assert!(listed.iter().all(|d| d["origin"] == "cscli"), "{listed:?}");
        assert!(listed.iter().all(|d| d["proven"] == true), "cscli's are enforced as ever");
        assert!(e.sg.reason("decision") >= 4);
        let status = e.crowdsec();
        assert_eq!(status["decisions"]["cscli"], 4, "{status}");
        assert!(status["failing_since_ms"].is_null(), "{status}");
    }
    // The Local API knows each edge by the User-Agent's type and version.
    let bouncers: Vec<serde_json::Value> =
        serde_json::from_str(&fleet.api.cscli(&["bouncers", "list", "-o", "json"])).unwrap();
    assert_eq!(bouncers.len(), 2, "{bouncers:?}");
    for b in &bouncers {
        assert_eq!(b["type"], "sipguard-xdp-bouncer", "{b}");
        assert_eq!(b["version"], env!("CARGO_PKG_VERSION"), "{b}");
    }
    for ns in &fleet.lan.hosts[1..3] {
        let body = ns.scrape(METRICS);
        for line in [
            "sipguard_decisions_active{origin=\"cscli\"} 4",
            "sipguard_decision_sync_failing_since_timestamp_seconds 0.0",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} in {body}");
        }
        assert!(body.contains("sipguard_packets_total{verdict=\"drop\",reason=\"decision\""));
        // Per origin, as the usage metrics report them: four drops by each edge's check above.
        assert!(
            body.lines().any(|l| l == "sipguard_decision_dropped_total{origin=\"cscli\"} 4"),
            "{body}"
        );
    }
    // The 1.4.6 API has no usage-metrics endpoint: its 404 is "unsupported", and the pulls
    // go on regardless.
    for e in &edges {
        let (usage, syncs) = wait::until("a usage report answered", || {
            let status = e.crowdsec();
            let usage = status["usage_metrics"].clone();
            if usage["last"] == "not_yet" {
                Err(usage.to_string())
            } else {
                Ok((usage, status["syncs"].clone()))
            }
        });
        assert_eq!(usage["last"], "unsupported", "{usage}");
        assert_eq!(usage["sent"], 0, "{usage}");
        wait::until("a pull after it", || {
            let now = e.crowdsec()["syncs"].clone();
            if now.as_u64() > syncs.as_u64() { Ok(()) } else { Err(now.to_string()) }
        });
        assert!(e.sg.ok(&["status"]).contains("usage metrics: the API takes none"));
    }

    fleet.api.cscli(&["decisions", "delete", "--ip", SCANNER[0]]);
    fleet.api.cscli(&["decisions", "delete", "--range", "10.88.7.0/24"]);
    fleet.api.cscli(&["decisions", "delete", "--ip", SCANNER_V6[0]]);
    fleet.api.cscli(&["decisions", "delete", "--range", "fd88:0:7::/48"]);
    for e in &edges {
        for (src, s) in &sockets {
            e.until(s, src, false);
        }
        assert!(e.decisions().is_empty());
    }
}

#[test]
fn losing_the_api_or_the_daemon_keeps_the_last_decisions_and_both_recover() {
    let mut fleet = Fleet::new();
    // The API down when the edge starts: it protects anyway, says the pulls fail, and
    // catches up when the API comes.
    fleet.api.stop();
    let mut edge = fleet.sharing_edge(0, 1);
    wait::until("status to say the pulls fail", || {
        let c = edge.crowdsec();
        if c["failing_since_ms"].is_u64() && c["last_sync_ms"].is_null() {
            Ok(())
        } else {
            Err(c.to_string())
        }
    });
    fleet.api.restart();
    let (x, in_range, v6) =
        (fleet.scanner(SCANNER[0]), fleet.scanner(SCANNER[1]), fleet.scanner(SCANNER_V6[0]));

    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER[0], "-d", "1h"]);
    edge.until(&x, SCANNER[0], true);

    // The API goes away: the decisions in force stay, and status says since when.
    fleet.api.stop();
    let stale = wait::until("status to say the decisions are stale", || {
        let c = edge.crowdsec();
        if c["failing_since_ms"].is_u64() { Ok(c) } else { Err(c.to_string()) }
    });
    assert!(stale["error"].is_string() && stale["last_sync_ms"].is_u64(), "{stale}");
    assert!(!stale["error"].as_str().unwrap().contains("edge0"), "no key in errors: {stale}");
    assert!(
        edge.sg.drops(&x, edge.pbx_for(SCANNER[0]), PROBE, "decision"),
        "kept while the API is down"
    );
    // A scanner banned meanwhile waits in the queue to be shared.
    svmap(&fleet, &["-b", SVMAP_WHILE_DOWN, EDGES[0].0]);
    let waiting = wait::until("the ban to wait for the API", || {
        let c = edge.crowdsec();
        if c["alerts_queued"] == 1 { Ok(c) } else { Err(c.to_string()) }
    });
    assert_eq!(waiting["alerts_sent"], 0, "{waiting}");
    // It comes back: the bouncer recovers by itself and follows a deletion.
    fleet.api.restart();
    fleet.api.cscli(&["decisions", "delete", "--ip", SCANNER[0]]);
    edge.until(&x, SCANNER[0], false);
    // The queued ban is sent once the API is back, and comes back as a decision.
    wait::until("the queued ban to be sent", || {
        let c = edge.crowdsec();
        if c["alerts_sent"] == 1 && c["alerts_queued"] == 0 { Ok(()) } else { Err(c.to_string()) }
    });
    wait::until("the shared ban to come back as a decision", || {
        let listed = edge.decisions();
        let back = listed.iter().any(|d| {
            d["value"] == format!("{SVMAP_WHILE_DOWN}/32") && d["scenario"] == "sipguard/signature"
        });
        if back { Ok(()) } else { Err(format!("{listed:?}")) }
    });
    wait::until("status to say the pulls succeed again", || {
        let c = edge.crowdsec();
        if c["failing_since_ms"].is_null() { Ok(()) } else { Err(c.to_string()) }
    });

    // The daemon is killed: the kernel keeps enforcing what it had.
    fleet.api.cscli(&["decisions", "add", "--range", "10.88.7.0/24", "-d", "1h"]);
    edge.until(&in_range, SCANNER[1], true);
    edge.run.take().unwrap().child.kill();
    assert!(
        edge.sg.drops(&in_range, edge.pbx_for(SCANNER[1]), PROBE, "decision"),
        "kept without a daemon"
    );
    // Meanwhile the store changes; the next run resyncs from scratch.
    fleet.api.cscli(&["decisions", "delete", "--range", "10.88.7.0/24"]);
    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER[0], "-d", "1h"]);
    let args: Vec<&str> = edge.args.iter().map(String::as_str).collect();
    edge.run = Some(edge.sg.run(&args));
    edge.until(&in_range, SCANNER[1], false);
    edge.until(&x, SCANNER[0], true);

    // A decision that expires ends on time, by the kernel's own clock: the API is down from
    // before its end (it sends an expired decision's deletion only after it ended), so no
    // deletion can have ended it; the bouncer drops it from its book.
    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER_V6[0], "-d", "3s"]);
    edge.until(&v6, SCANNER_V6[0], true);
    fleet.api.stop();
    edge.until(&v6, SCANNER_V6[0], false);
    let c = edge.crowdsec();
    assert!(c["failing_since_ms"].is_u64(), "the pulls failed meanwhile: {c}");
    assert!(edge.sg.drops(&x, edge.pbx_for(SCANNER[0]), PROBE, "decision"), "the hour's stays");
    let left: Vec<_> = edge.decisions().into_iter().map(|d| d["value"].clone()).collect();
    assert_eq!(
        left,
        [format!("{}/32", SCANNER[0]), format!("{SVMAP_WHILE_DOWN}/32")],
        "only the hour-long decisions are left"
    );
}

#[test]
fn a_scanner_banned_on_one_edge_is_dropped_by_the_other_through_the_api() {
    let fleet = Fleet::new();
    let interval = 1;
    let edges = [fleet.sharing_edge(0, interval), fleet.sharing_edge(1, interval)];
    let scanner = SCANNER[0];

    // A real svmap against edge A: banned there by its signature, and shared. B is watched
    // while the scan runs.
    let limit = wait::patience().as_secs().to_string();
    let scanner_ns = &fleet.lan.hosts[3];
    let mut scan = scanner_ns.spawn(scanner_ns.exec("timeout").args([
        limit.as_str(),
        "svmap",
        "-t",
        "0.2",
        EDGES[0].0,
    ]));
    let (shared, held_at) = wait::until("edge B to hold the decision A shared", || {
        let listed = edges[1].decisions();
        let now = std::time::SystemTime::now();
        listed
            .into_iter()
            .find(|d| d["value"] == format!("{scanner}/32"))
            .map(|d| (d, now))
            .ok_or_else(|| "not yet".to_owned())
    });
    // From A's ban (its incident record) to B's kernel holding the decision.
    let took = held_at.duration_since(banned_at(&edges[0], scanner)).unwrap_or_default();
    eprintln!("edge B enforces A's ban {took:.2?} after A made it (interval {interval}s)");
    assert!(
        took <= Duration::from_secs(interval + 1),
        "{took:?}: more than an interval plus a second"
    );
    assert!(scan.wait_exit().status.success(), "svmap failed");
    assert_eq!(shared["origin"], "crowdsec", "{shared}");
    assert_eq!(shared["scenario"], "sipguard/signature", "{shared}");
    // One UDP scan proves nothing of its source: shared as unproven, and dropped by B, where
    // the scanner has no standing.
    assert_eq!(shared["proven"], false, "{shared}");
    assert!(shared["expires_in_secs"].as_u64().unwrap() > 3000, "the ban's hour: {shared}");

    // The same scanner against edge B never reaches its PBX: dropped by the decision before
    // any payload work, so B bans nothing and shares nothing back.
    let before = edges[1].sg.reason("decision");
    svmap(&fleet, &[EDGES[1].0]);
    assert!(edges[1].sg.wait_reason("decision", before + 1) > before);
    assert_eq!(edges[1].sg.reason("signature"), 0);
    assert!(edges[1].sg.banned().is_empty());
    let b = edges[1].crowdsec();
    assert_eq!((b["alerts_sent"].as_u64(), b["alerts_queued"].as_u64()), (Some(0), Some(0)), "{b}");
    let a = wait::until("edge A to report the alert sent", || {
        let c = edges[0].crowdsec();
        if c["alerts_sent"] == 1 { Ok(c) } else { Err(c.to_string()) }
    });
    assert_eq!(a["alerts_dropped"], 0, "{a}");
    // The store holds exactly one alert for it, from edge A.
    let alerts: Vec<serde_json::Value> =
        serde_json::from_str(&fleet.api.cscli(&["alerts", "list", "-o", "json"])).unwrap();
    let ours: Vec<_> = alerts.iter().filter(|a| a["scenario"] == "sipguard/signature").collect();
    assert_eq!(ours.len(), 1, "{alerts:?}");
    assert_eq!(ours[0]["source"]["value"], scanner, "{alerts:?}");

    // No credential leaves an edge: not the bouncer's key, not the machine's password, not
    // the session's token (a JWT: "eyJ..."), in the metrics, the status, the incident log
    // on stdout or the log on stderr.
    for (i, mut edge) in edges.into_iter().enumerate() {
        let secret = |ext: &str| {
            let file = fleet.api.dir.join(format!("edge{i}.{ext}"));
            std::fs::read_to_string(file).unwrap().trim().to_owned()
        };
        let mut seen = fleet.lan.hosts[1 + i].scrape(METRICS);
        seen.push_str(&edge.sg.ok(&["status", "--json"]));
        let mut run = edge.run.take().unwrap();
        run.signal(libc::SIGTERM);
        let out = run.wait_exit();
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("crowdsec"), "the log speaks of the store: {log}");
        seen.push_str(&log);
        for s in [secret("key"), secret("password")] {
            assert!(!seen.contains(&s), "edge {i} let a credential out: {seen}");
        }
        assert!(!seen.contains("eyJ"), "edge {i} let a token out: {seen}");
    }
}

#[test]
fn the_crowdsec_table_of_the_configuration_file_is_applied_and_reloaded() {
    let fleet = Fleet::new();
    let ns = &fleet.lan.hosts[1];
    let sg = Sipguard::new(ns);
    let key = fleet.api.bouncer("edge0");
    let pbx = ns.udp(&format!("{}:5060", EDGES[0].0));
    let x = fleet.scanner(SCANNER[0]);
    let conf = fleet.api.dir.join("sipguard.toml");
    let pid = fleet.api.dir.join("run.pid");
    let write = |table: &str| {
        std::fs::write(&conf, format!("interfaces = [\"eth0\"]\n{table}")).unwrap();
    };
    let table = |extra: &str| {
        format!(
            "[crowdsec]\nurl = \"{}\"\napi_key_file = \"{}\"\ninterval = 1\n{extra}",
            fleet.api.url(),
            key.display()
        )
    };
    // Only the store's own detections: a cscli decision is left out.
    write(&table("origins = [\"crowdsec\"]\n"));
    let mut run = sg.run(&[
        "--config",
        conf.to_str().unwrap(),
        "--pid-file",
        pid.to_str().unwrap(),
        "--stats-interval",
        "0",
    ]);
    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER[0], "-d", "1h"]);
    let syncs = |sg: &Sipguard| sg.json(&["status", "--json"])["crowdsec"]["syncs"].as_u64();
    let seen = syncs(&sg).unwrap_or(0);
    // Two pulls after the decision was made: the later one has surely seen it.
    wait::until("two more pulls", || {
        let n = syncs(&sg).unwrap_or(0);
        if n >= seen + 2 { Ok(()) } else { Err(format!("{n} pulls")) }
    });
    assert!(sg.arrives(&x, &pbx, PROBE), "a cscli decision is filtered out");
    assert!(sg.ok(&["decisions", "list", "--json"]).contains("\"decisions\":0"));

    // Reloaded without the filter: enforced.
    write(&table(""));
    run.signal(libc::SIGHUP);
    assert!(run.reloaded().starts_with("reloaded"));
    wait::until("the decision to be enforced after the reload", || {
        if sg.drops(&x, &pbx, PROBE, "decision") { Ok(()) } else { Err("delivered".into()) }
    });

    // A key file that does not exist: the reload is refused, the bouncer goes on.
    std::fs::write(
        &conf,
        format!("interfaces = [\"eth0\"]\n{}", table(""))
            .replace(&key.display().to_string(), "/nonexistent/bouncer.key"),
    )
    .unwrap();
    run.signal(libc::SIGHUP);
    let refused = run.reloaded();
    assert!(refused.contains("refused") && refused.contains("bouncer key"), "{refused}");
    assert!(sg.drops(&x, &pbx, PROBE, "decision"));

    // The table removed: no store, no decisions.
    write("");
    run.signal(libc::SIGHUP);
    assert!(run.reloaded().starts_with("reloaded"));
    assert!(sg.arrives(&x, &pbx, PROBE), "decisions end with the bouncer");
    assert!(sg.ok(&["decisions", "list", "--json"]).contains("\"decisions\":0"));
    run.signal(libc::SIGTERM);
    let out = run.wait_exit();
    // The key never reaches the log, the status or the metrics.
    let secret = std::fs::read_to_string(&key).unwrap().trim().to_owned();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("crowdsec"), "{log}");
    assert!(!log.contains(&secret), "{log}");
    assert!(!sg.ok(&["status", "--json"]).contains(&secret));
}

#[test]
fn a_local_api_over_tls_is_trusted_through_its_ca_and_not_otherwise() {
    let fleet = Fleet::tls();
    let ca = fleet.api.ca.clone().unwrap();
    let trusting = fleet.start_edge(0, 1, false, &["--crowdsec-ca-file", ca.to_str().unwrap()]);
    // The system's roots do not know the tests' CA: every pull fails, and says why.
    let strange = fleet.edge(1, 1);
    let x = fleet.scanner(SCANNER[0]);
    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER[0], "-d", "1h"]);
    trusting.until(&x, SCANNER[0], true);
    assert_eq!(trusting.crowdsec()["decisions"]["cscli"], 1);
    let refused = wait::until("the untrusting edge to report its failure", || {
        let c = strange.crowdsec();
        if c["failing_since_ms"].is_u64() { Ok(c) } else { Err(c.to_string()) }
    });
    let error = refused["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate"), "{refused}");
    assert!(strange.sg.arrives(&x, strange.pbx_for(SCANNER[0]), PROBE), "nothing enforced");
}

/// A key the API does not know: the real API answers 403, `status` and the log say so, and
/// neither shows the key.
#[test]
fn a_wrong_key_is_refused_by_the_api_and_said_without_the_key() {
    let fleet = Fleet::new();
    let sg = Sipguard::new(&fleet.lan.hosts[1]);
    let wrong = "not-a-key-this-api-knows-0123456789";
    let key = fleet.api.dir.join("wrong.key");
    std::fs::write(&key, format!("{wrong}\n")).unwrap();
    let args = run_args(&fleet.api.url(), &key, 1);
    let mut run = sg.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let refused = wait::until("the API's refusal", || {
        let c = sg.json(&["status", "--json"])["crowdsec"].clone();
        if c["failing_since_ms"].is_u64() { Ok(c) } else { Err(c.to_string()) }
    });
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("403"), "{refused}");
    assert!(!refused.to_string().contains(wrong), "{refused}");
    run.signal(libc::SIGTERM);
    let log = String::from_utf8_lossy(&run.wait_exit().stderr).into_owned();
    assert!(log.contains("403") && !log.contains(wrong), "{log}");
}

/// `run` as the packaged unit runs it (its capabilities, no new privileges) through every
/// path of its own: the bouncer over TLS, usage metrics, sharing a ban, the incident log
/// reopened on SIGUSR1, a route change followed. `cargo xtask test` runs this test on the
/// packaged binary under `strace`, and holds every system call these paths make against the
/// unit's `SystemCallFilter`.
#[test]
fn the_unit_runs_every_path_of_its_own_under_its_capabilities() {
    let fleet = Fleet::tls();
    let ns = &fleet.lan.hosts[1];
    let sg = Sipguard::new(ns);
    let wrapper = sipguard_tests::confine::setpriv(&sipguard_tests::confine::unit_capabilities());
    let unit = sg.confined(&wrapper.iter().map(String::as_str).collect::<Vec<_>>());
    let key = fleet.api.bouncer("edge0");
    let password = fleet.api.machine("edge0", "edge0-password-0123456789");
    let events = fleet.api.dir.join("edge0.events");
    let ca = fleet.api.ca.clone().unwrap();
    let mut args = run_args(&fleet.api.url(), &key, 1);
    for extra in [
        "--crowdsec-ca-file",
        ca.to_str().unwrap(),
        "--crowdsec-machine",
        "edge0",
        "--crowdsec-password-file",
        password.to_str().unwrap(),
        "--events-file",
        events.to_str().unwrap(),
    ] {
        args.push(extra.to_owned());
    }
    let mut run = unit.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let pbx = ns.udp(&format!("{}:5060", EDGES[0].0));

    // A scanner banned, and the ban shared over TLS; a decision pulled over TLS.
    let x = fleet.scanner(SCANNER[0]);
    assert!(sg.drops(
        &x,
        &pbx,
        scanner_probe_text(SCANNER[0], EDGES[0].0, 5060).as_bytes(),
        "signature"
    ));
    fleet.api.cscli(&["decisions", "add", "--ip", SCANNER[1], "-d", "1h"]);
    let crowdsec = || sg.json(&["status", "--json"])["crowdsec"].clone();
    wait::until("the ban shared, the decision pulled, usage reported", || {
        let c = crowdsec();
        let done = c["alerts_sent"] == 1
            && c["decisions"]["cscli"] == 1
            && c["usage_metrics"]["last"] == "unsupported";
        if done { Ok(()) } else { Err(c.to_string()) }
    });

    // The incident log rotated: the file renamed, SIGUSR1, the next record in a new file.
    std::fs::rename(&events, events.with_extension("1")).unwrap();
    run.signal(libc::SIGUSR1);
    let y = fleet.scanner(SCANNER[2]);
    assert!(sg.drops(
        &y,
        &pbx,
        scanner_probe_text(SCANNER[2], EDGES[0].0, 5060).as_bytes(),
        "signature"
    ));
    wait::until("the record in the reopened log", || {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if text.contains(SCANNER[2]) { Ok(()) } else { Err(text) }
    });

    // A route added and removed: the mirror follows.
    let routes = || sg.map_entries(sipguard_common::maps::ROUTES_V4);
    let before = routes();
    ns.ip(&["route", "add", "10.99.0.0/16", "dev", "eth0"]);
    wait::until("the mirror to take the route", || {
        let n = routes();
        if n > before { Ok(()) } else { Err(format!("{n} routes")) }
    });
    ns.ip(&["route", "del", "10.99.0.0/16", "dev", "eth0"]);
    wait::until("the mirror to drop it", || {
        let n = routes();
        if n == before { Ok(()) } else { Err(format!("{n} routes")) }
    });
    run.signal(libc::SIGTERM);
    assert!(run.wait_exit().status.success());
    sg.ok(&["detach"]);
}
