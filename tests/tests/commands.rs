//! Commands no other suite runs, driven through the binary as a user would (issue 28): the
//! `sig` family, `ban add` and `del`, `protect del`, `stats --watch`, `detach --keep-state`,
//! the periodic sweep of expired bans, `--xdp-mode` as the kernel reports it.
//! Each checks what the kernel then does with real packets, and that a command refused for
//! bad input changes nothing.

use std::{net::UdpSocket, path::PathBuf};

use sipguard_tests::{cli::Sipguard, netns::PbxLink};

const PBX: &str = "10.77.0.1";
const PEER: &str = "10.77.0.2";

/// An OPTIONS from a dialer whose User-Agent no built-in signature names.
const DIALER: &[u8] = b"OPTIONS sip:100@10.77.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:200@10.77.0.1>;tag=1\r\nTo: <sip:100@10.77.0.1>\r\nCall-ID: c1@10.77.0.2\r\nCSeq: 1 OPTIONS\r\nUser-Agent: acme-dialer 4.2\r\nContent-Length: 0\r\n\r\n";

/// A file in the temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn with(text: &[u8]) -> Self {
        let path = std::env::temp_dir().join(sipguard_tests::unique("sgcmd"));
        std::fs::write(&path, text).expect("writing a scratch file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// The names and hits of `sig list --json`.
fn signatures(sg: &Sipguard) -> Vec<(String, u64)> {
    sg.ok(&["sig", "list", "--json"])
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .filter(|v| v["type"] == "signature")
        .map(|v| (v["name"].as_str().unwrap().to_owned(), v["hits"].as_u64().unwrap_or(0)))
        .collect()
}

fn sockets(link: &PbxLink) -> (UdpSocket, UdpSocket) {
    (link.pbx.udp(&format!("{PBX}:5060")), link.peer.udp(&format!("{PEER}:5060")))
}

#[test]
fn signatures_are_added_tested_listed_loaded_and_deleted() {
    let link = PbxLink::new();
    let (pbx, peer) = sockets(&link);
    let sg = Sipguard::new(&link.pbx);
    // No bans: each packet meets the signatures afresh.
    sg.ok(&["attach", "-i", "pbx0", "--ban-ttl", "0"]);
    let catalog = signatures(&sg);
    assert!(catalog.len() > 10, "the built-in catalog is installed: {catalog:?}");
    assert!(sg.arrives(&peer, &pbx, DIALER));

    // `sig test` on the captured message: nothing matches yet.
    let capture = Scratch::with(DIALER);
    let verdict = sg.json(&["sig", "test", capture.path(), "--json"]);
    assert_eq!((&verdict["dropped"], &verdict["sip"]), (&false.into(), &true.into()), "{verdict}");

    sg.ok(&["sig", "add", "--scope", "user-agent", "--prefix", "acme-dialer", "--name", "acme"]);
    assert!(sg.drops(&peer, &pbx, DIALER, "signature"));
    assert_eq!(sg.reason("signature"), 1);
    let verdict = sg.json(&["sig", "test", capture.path(), "--json"]);
    assert_eq!(verdict["dropped"], true, "{verdict}");
    assert_eq!(verdict["matched"], serde_json::json!(["acme"]), "{verdict}");
    assert!(signatures(&sg).contains(&("acme".to_owned(), 1)), "{:?}", signatures(&sg));

    // A second signature of the same name is refused, and nothing changes.
    let err = sg.fail(&["sig", "add", "--scope", "via", "--contains", "x", "--name", "acme"]);
    assert!(err.contains("acme"), "{err}");
    assert_eq!(signatures(&sg).len(), catalog.len() + 1);

    sg.ok(&["sig", "del", "acme"]);
    assert!(sg.arrives(&peer, &pbx, DIALER));
    let err = sg.fail(&["sig", "del", "acme"]);
    assert!(err.contains("acme"), "{err}");
    assert_eq!(signatures(&sg).len(), catalog.len());

    // `sig load` of a file in the catalog's format; a malformed one changes nothing.
    let file = Scratch::with(b"[[signature]]\nname = \"acme-file\"\nscope = \"user-agent\"\nprefix = \"acme-dialer\"\nsource = \"test\"\n",
    );
    sg.ok(&["sig", "load", file.path()]);
    assert!(sg.drops(&peer, &pbx, DIALER, "signature"));
    let bad = Scratch::with(b"[[signature]]\nname = \"x\"\nscope = \"nowhere\"\n");
    let err = sg.fail(&["sig", "load", bad.path()]);
    assert!(err.lines().count() <= 4, "a few lines: {err}");
    assert_eq!(signatures(&sg).len(), catalog.len() + 1, "the failed load changed nothing");
    assert!(sg.drops(&peer, &pbx, DIALER, "signature"));

    // `sig catalog` prints a file `sig load --replace` takes back: the built-in set alone.
    let printed = Scratch::with(sg.ok(&["sig", "catalog"]).as_bytes());
    sg.ok(&["sig", "load", "--replace", printed.path()]);
    let names: Vec<String> = signatures(&sg).into_iter().map(|(n, _)| n).collect();
    let built_in: Vec<String> = catalog.into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, built_in);
    assert!(sg.arrives(&peer, &pbx, DIALER));
    sg.ok(&["detach", "-i", "pbx0"]);
}

/// A ban ends on time in the kernel by itself (the program checks its expiry, and removes
/// the entry when the source comes back); `run` removes the entries of sources that never
/// come back: at its start, then every minute.
#[test]
fn an_expired_ban_passes_at_once_and_run_sweeps_away_those_never_seen_again() {
    const RETURNING: &str = "10.77.0.3";
    let link = PbxLink::new();
    let (pbx, peer) = sockets(&link);
    let returning = link.peer.udp(&format!("{RETURNING}:5060"));
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0"]);
    sg.ok(&["ban", "add", PEER, RETURNING, "--ttl", "3"]);
    assert!(sg.drops(&peer, &pbx, DIALER, "banned"));
    sipguard_tests::wait::until("both bans to end", || {
        let listed = sg.banned();
        if listed.is_empty() { Ok(()) } else { Err(format!("{listed:?}")) }
    });
    assert_eq!(sg.ban_entries(), 2, "ended, but no packet and no daemon removed them");
    assert!(sg.arrives(&returning, &pbx, DIALER), "an ended ban passes at once");
    assert_eq!(sg.ban_entries(), 1, "the kernel removed the entry of the source that came back");
    let _run = sg.run(&["-i", "pbx0", "--stats-interval", "0"]);
    sipguard_tests::wait::until("run to sweep the other", || {
        let n = sg.ban_entries();
        if n == 0 { Ok(()) } else { Err(format!("{n} entries")) }
    });
}

#[test]
fn bans_by_hand_drop_and_lift_and_a_bad_address_changes_nothing() {
    let link = PbxLink::new();
    let (pbx, peer) = sockets(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0"]);
    assert!(sg.arrives(&peer, &pbx, DIALER));
    sg.ok(&["ban", "add", PEER, "--ttl", "600"]);
    assert!(sg.drops(&peer, &pbx, DIALER, "banned"));
    assert_eq!(sg.reason("banned"), 1);
    assert_eq!(sg.banned(), [PEER]);
    let out = sg.output(&["ban", "add", "10.77.0.9", "not-an-address"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not-an-address"), "{err}");
    assert_eq!(sg.banned(), [PEER], "the failed command banned nothing");
    sg.ok(&["ban", "del", PEER]);
    assert!(sg.banned().is_empty());
    assert!(sg.arrives(&peer, &pbx, DIALER));
    sg.ok(&["detach", "-i", "pbx0"]);
}

#[test]
fn a_destination_policy_removed_gives_the_global_policy_back() {
    let link = PbxLink::new();
    let (pbx, peer) = sockets(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0"]);
    sg.ok(&["protect", "add", PBX, "--default", "drop", "--name", "pbx"]);
    assert!(sg.drops(&peer, &pbx, DIALER, "default_drop"));
    assert_eq!(sg.reason("default_drop"), 1);
    let err = sg.fail(&["protect", "del", "10.77.0.0/24"]);
    assert!(err.contains("10.77.0.0/24"), "only as it was added: {err}");
    assert!(sg.drops(&peer, &pbx, DIALER, "default_drop"), "the failed command changed nothing");
    sg.ok(&["protect", "del", PBX]);
    assert!(sg.arrives(&peer, &pbx, DIALER));
    let listed = sg.ok(&["protect", "list", "--json"]);
    assert!(!listed.contains(PBX), "{listed}");
    sg.ok(&["detach", "-i", "pbx0"]);
}

#[test]
fn stats_watch_reports_a_given_number_of_times_and_stops() {
    let link = PbxLink::new();
    let (pbx, peer) = sockets(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0"]);
    assert!(sg.arrives(&peer, &pbx, DIALER));
    let out = sg.ok(&["stats", "--watch", "1", "--count", "2", "--json"]);
    let reports: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("a JSON report")).collect();
    assert_eq!(reports.len(), 2, "{out}");
    assert!(reports.iter().all(|r| r["passed"].as_u64().unwrap() >= 1), "{out}");
    sg.ok(&["detach", "-i", "pbx0"]);
}

#[test]
fn detach_keep_state_keeps_the_lists_for_the_next_attach() {
    let link = PbxLink::new();
    let (pbx, peer) = sockets(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--block", PEER]);
    assert!(sg.drops(&peer, &pbx, DIALER, "blocklisted"));
    sg.ok(&["detach", "-i", "pbx0", "--keep-state"]);
    assert!(sg.arrives(&peer, &pbx, DIALER), "detached: nothing filters");
    let maps = format!("{}/maps", sg.pin_dir);
    assert!(std::path::Path::new(&maps).is_dir(), "the maps stay pinned");
    sg.ok(&["attach", "-i", "pbx0"]);
    assert!(sg.drops(&peer, &pbx, DIALER, "blocklisted"), "the blocklist came back with the maps");
    sg.ok(&["detach", "-i", "pbx0"]);
    assert!(!std::path::Path::new(&sg.pin_dir).exists(), "a plain detach removes it all");
}

/// The settings `status --json` reads back from the kernel's configuration map, as the
/// expected values of [`the_rules_flags_reach_the_kernel`] and its file twin.
fn assert_settings(status: &serde_json::Value) {
    let want = serde_json::json!({
        "ban_ttl_secs": 120,
        "fragments": "drop",
        "mode": "monitor",
        "default": "drop",
        "behaviour": {"auth_failures": 7, "not_found": 9, "extension_scan": 11, "window_secs": 30, "capacity": 5000},
        "rate_limit": {"pps": 50, "burst": 21},
        "destinations": {"capacity_v4": 300},
        "trust": {"reverse_path": "loose", "standing_secs": 600},
    });
    for (key, value) in want.as_object().unwrap() {
        match value.as_object() {
            Some(fields) => {
                for (field, v) in fields {
                    assert_eq!(&status[key][field], v, "{key}.{field} in {status:#}");
                }
            }
            None => assert_eq!(&status[key], value, "{key} in {status:#}"),
        }
    }
}

/// Issue 28: every flag of the behaviour and trust rules (and the policy's) reaches the
/// kernel's configuration, as `status --json` reads it back from the map: distinct values,
/// so a swapped field shows.
#[test]
fn the_rules_flags_reach_the_kernel() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&[
        "attach",
        "-i",
        "pbx0",
        "--reverse-path",
        "loose",
        "--standing",
        "600",
        "--auth-failures",
        "7",
        "--not-found",
        "9",
        "--extension-scan",
        "11",
        "--rate-limit",
        "50",
        "--rate-burst",
        "21",
        "--fragments",
        "drop",
        "--behaviour-capacity",
        "5000",
        "--dest-capacity",
        "300",
        "--ban-ttl",
        "120",
        "--behaviour-window",
        "30",
        "--mode",
        "monitor",
        "--default",
        "drop",
    ]);
    assert_settings(&sg.json(&["status", "--json"]));
    sg.ok(&["detach", "-i", "pbx0"]);
}

/// The same settings from the configuration file's `[policy]` and `[capacity]` tables.
#[test]
fn the_rules_keys_of_the_file_reach_the_kernel() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    let file = Scratch::with(
        b"interfaces = [\"pbx0\"]\n\
          [capacity]\nbehaviour = 5000\ndestinations = 300\n\
          [policy]\ndefault = \"drop\"\nmode = \"monitor\"\nfragments = \"drop\"\nban_ttl = 120\n\
          rate_limit = 50\nrate_burst = 21\nbehaviour_window = 30\nauth_failures = 7\n\
          not_found = 9\nextension_scan = 11\nreverse_path = \"loose\"\nstanding = 600\n",
    );
    let mut run = sg.run(&["--config", file.path(), "--stats-interval", "0"]);
    assert_settings(&sg.json(&["status", "--json"]));
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

/// Issue 28: the route mirror follows the host's routes while `run` is up. A source with no
/// route back is forged (dropped as `spoofed` on arrival); once a route to it by the PBX's
/// interface is added, its packets pass; once the route is gone, they are forged again.
#[test]
fn the_route_mirror_follows_a_route_change_under_run() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    let mut run = sg.run(&["-i", "pbx0", "--stats-interval", "0"]);
    assert_eq!(sg.json(&["status", "--json"])["trust"]["route_mirror"], true);
    let probe = |n: u16| {
        let frame = sipguard_tests::frames::Frame::new(
            "203.0.113.5".parse().unwrap(),
            PBX.parse().unwrap(),
            sipguard_tests::frames::Transport::Udp { sport: 6000 + n, dport: 5060 },
        )
        .payload(DIALER)
        .build();
        assert_eq!(sipguard_tests::netns::forge(&link.peer, vec![frame]), 1);
    };
    // Sends one probe at a time until the counter of `reason` moves.
    let until_counted = |reason: &str, what: &str| {
        let mut n = 0u16;
        sipguard_tests::wait::until(what, || {
            let before = sg.reason(reason);
            n = n.wrapping_add(1);
            probe(n);
            if sg.reason(reason) > before {
                Ok(())
            } else {
                Err(format!("{reason} = {}", sg.reason(reason)))
            }
        });
    };
    until_counted("spoofed", "a source with no route back to be judged forged");
    link.pbx.ip(&["route", "add", "203.0.113.0/24", "via", PEER, "dev", "pbx0"]);
    until_counted("default_pass", "the mirror to learn the new route");
    link.pbx.ip(&["route", "del", "203.0.113.0/24"]);
    until_counted("spoofed", "the mirror to forget the route");
    run.signal(libc::SIGTERM);
    run.wait_exit();
}

/// The XDP mode of `iface` in the namespace as the kernel reports it (`ip -d link`): 1 for
/// native (driver), 2 for generic (skb), `None` for no program.
fn kernel_xdp_mode(link: &PbxLink, iface: &str) -> Option<u64> {
    let out = sipguard_tests::netns::run_ok(std::process::Command::new("ip").args([
        "-n",
        &link.pbx.name,
        "-j",
        "-d",
        "link",
        "show",
        "dev",
        iface,
    ]));
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip's JSON");
    links[0]["xdp"]["mode"].as_u64()
}

/// `--xdp-mode` reaches the kernel as asked, read back by `ip`: `skb` is generic, `driver`
/// native, and `auto` native where the driver has it (veth) and generic where it has none
/// (loopback), with a warning.
#[test]
fn the_xdp_mode_flag_reaches_the_kernel() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    for (mode, kernel) in [("skb", 2), ("driver", 1), ("auto", 1)] {
        sg.ok(&["attach", "-i", "pbx0", "--xdp-mode", mode]);
        assert_eq!(kernel_xdp_mode(&link, "pbx0"), Some(kernel), "{mode}");
        sg.ok(&["detach"]);
        assert_eq!(kernel_xdp_mode(&link, "pbx0"), None, "detached");
    }
    let out = sg.output(&["attach", "-i", "lo", "--xdp-mode", "auto"]);
    assert!(out.status.success());
    assert_eq!(kernel_xdp_mode(&link, "lo"), Some(2), "loopback has no native mode");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("native XDP failed") && said.contains("generic (skb) mode"), "{said}");
    sg.ok(&["detach"]);
}
