//! The real `sipguard` binary on a veth pair between network namespaces, with real sockets:
//! what an admin does from a shell, and what must happen to traffic.

use std::{
    net::UdpSocket,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use sipguard_tests::{
    cli::Sipguard,
    confine::{setpriv, unit_capabilities},
    netns::{Netns, PbxLink, drain, run_ok, veth},
    require_root,
};

const OPTIONS: &[u8] = b"OPTIONS sip:100@10.77.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.0.2:5060\r\nContent-Length: 0\r\n\r\n";

struct Hosts {
    pbx: UdpSocket,
    pbx6: UdpSocket,
    a: UdpSocket,
    b: UdpSocket,
    a6: UdpSocket,
    b6: UdpSocket,
}

fn hosts(link: &PbxLink) -> Hosts {
    Hosts {
        pbx: link.pbx.udp("10.77.0.1:5060"),
        pbx6: link.pbx.udp("[fd77::1]:5060"),
        a: link.peer.udp("10.77.0.2:0"),
        b: link.peer.udp("10.77.0.3:0"),
        a6: link.peer.udp("[fd77::2]:0"),
        b6: link.peer.udp("[fd77::3]:0"),
    }
}

fn arrives(sg: &Sipguard, from: &UdpSocket, to: &UdpSocket) -> bool {
    sg.arrives(from, to, OPTIONS)
}

/// Whether `from`'s OPTIONS to `to` is dropped as `reason`.
fn dropped_as(sg: &Sipguard, from: &UdpSocket, to: &UdpSocket, reason: &str) -> bool {
    sg.drops(from, to, OPTIONS, reason)
}

/// The same for the usual reason, a blocklist.
fn dropped(sg: &Sipguard, from: &UdpSocket, to: &UdpSocket) -> bool {
    dropped_as(sg, from, to, "blocklisted")
}

#[test]
fn lists_changed_while_attached_take_effect_at_once() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0"]);
    assert!(
        arrives(&sg, &h.a, &h.pbx) && arrives(&sg, &h.b, &h.pbx),
        "default pass lets everyone in"
    );

    sg.ok(&["block", "add", "10.77.0.2", "fd77::2"]);
    assert!(dropped(&sg, &h.a, &h.pbx), "blocked IPv4 source");
    assert!(dropped(&sg, &h.a6, &h.pbx6), "blocked IPv6 source");
    assert!(arrives(&sg, &h.b, &h.pbx) && arrives(&sg, &h.b6, &h.pbx6), "other sources unaffected");

    sg.ok(&["block", "del", "10.77.0.2", "fd77::2"]);
    assert!(arrives(&sg, &h.a, &h.pbx) && arrives(&sg, &h.a6, &h.pbx6), "unblocked at once");

    sg.ok(&["attach", "-i", "pbx0", "--default", "drop"]);
    assert!(
        dropped_as(&sg, &h.a, &h.pbx, "default_drop")
            && dropped_as(&sg, &h.b6, &h.pbx6, "default_drop"),
        "allowlist-only drops the unlisted"
    );
    sg.ok(&["allow", "add", "10.77.0.0/29", "fd77::3"]);
    assert!(arrives(&sg, &h.a, &h.pbx) && arrives(&sg, &h.b, &h.pbx), "allowlisted prefix");
    assert!(
        arrives(&sg, &h.b6, &h.pbx6) && dropped_as(&sg, &h.a6, &h.pbx6, "default_drop"),
        "allowlisted IPv6 host only"
    );

    let stats = sg.stats();
    assert_eq!(stats["reasons"]["blocklisted"], 2, "{stats}");
    assert_eq!(stats["reasons"]["default_drop"], 3, "{stats}");
    assert!(stats["reasons"]["allowlisted"].as_u64().unwrap() >= 3, "{stats}");
}

#[test]
fn stats_count_exactly_what_was_sent() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--block", "10.77.0.2"]);
    // Prime ARP so the counted packets are the only SIP-port traffic.
    assert!(arrives(&sg, &h.b, &h.pbx));
    let before = sg.stats();
    for _ in 0..7 {
        h.a.send_to(OPTIONS, "10.77.0.1:5060").unwrap();
    }
    for _ in 0..3 {
        assert!(arrives(&sg, &h.b, &h.pbx));
    }
    let blocked = before["reasons"]["blocklisted"].as_u64().unwrap() + 7;
    sg.wait_reason("blocklisted", blocked);
    let after = sg.stats();
    let delta = |path: &[&str]| {
        let get = |v: &serde_json::Value| {
            path.iter().fold(v.clone(), |v, k| v[k].clone()).as_u64().unwrap_or(0)
        };
        get(&after) - get(&before)
    };
    assert_eq!(delta(&["reasons", "blocklisted"]), 7);
    assert_eq!(delta(&["reasons", "default_pass"]), 3);
    assert_eq!(delta(&["payload", "sip_request"]), 3, "blocked packets are not read");
    assert_eq!(delta(&["methods", "OPTIONS"]), 3);
    // Each packet the test sent is counted once, under one reason, against the test's own
    // tally: ten SIP packets, ten counts (what else crossed the link meanwhile, ARP and
    // neighbour discovery, is not SIP), seven of them drops.
    let sip: u64 = after["reasons"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !matches!(k.as_str(), "not_ip" | "not_sip_port"))
        .map(|k| delta(&["reasons", k]))
        .sum();
    assert_eq!(sip, 10, "{after}");
    assert_eq!(delta(&["dropped"]), 7, "{after}");
    let table = sg.ok(&["stats"]);
    assert!(table.contains("blocklisted") && table.contains("dropped"), "{table}");
}

#[test]
fn monitor_mode_passes_everything_and_counts_what_it_would_drop() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&[
        "attach",
        "-i",
        "pbx0",
        "--default",
        "drop",
        "--mode",
        "monitor",
        "--block",
        "10.77.0.2",
    ]);
    for _ in 0..5 {
        assert!(arrives(&sg, &h.a, &h.pbx), "monitor mode passes blocked sources");
        assert!(arrives(&sg, &h.b, &h.pbx), "monitor mode passes unlisted sources");
    }
    let stats = sg.stats();
    assert_eq!(stats["reasons"]["monitor_blocklisted"], 5, "{stats}");
    assert_eq!(stats["reasons"]["monitor_default_drop"], 5, "{stats}");
    assert_eq!(stats["dropped"], 0, "{stats}");
    sg.ok(&["attach", "-i", "pbx0", "--mode", "enforce"]);
    assert!(
        dropped(&sg, &h.a, &h.pbx) && dropped_as(&sg, &h.b, &h.pbx, "default_drop"),
        "enforce mode drops"
    );
}

#[test]
fn non_sip_traffic_is_never_touched() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--default", "drop", "--block", "10.77.0.0/24,fd77::/64"]);
    assert!(dropped(&sg, &h.a, &h.pbx), "SIP from a blocked source is dropped");

    let other = link.pbx.udp("10.77.0.1:9999");
    assert!(sg.arrives(&h.a, &other, b"not sip"), "UDP to another port");
    let other6 = link.pbx.udp("[fd77::1]:9999");
    assert!(sg.arrives(&h.a6, &other6, b"not sip"), "UDP/IPv6 to another port");
    run_ok(link.peer.exec("ping").args(["-c", "2", "-i", "0.2", "-W", "2", "10.77.0.1"]));
    run_ok(link.peer.exec("ping").args(["-6", "-c", "2", "-i", "0.2", "-W", "2", "fd77::1"]));

    // TCP to another port: a full connection, data both ways.
    let listener = link.pbx.enter(|| std::net::TcpListener::bind("10.77.0.1:8080")).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let mut client = link.peer.enter(|| std::net::TcpStream::connect("10.77.0.1:8080")).unwrap();
    {
        use std::io::{Read as _, Write as _};
        client.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }
    server.join().unwrap();

    let stats = sg.stats();
    assert!(stats["reasons"]["not_sip_port"].as_u64().unwrap() >= 8, "{stats}");
    assert!(stats["reasons"]["not_ip"].as_u64().unwrap() >= 1, "ARP is seen and passed: {stats}");
}

#[test]
fn sigkill_of_run_keeps_protection() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    let mut run = sg.run(&["-i", "pbx0", "--block", "10.77.0.2", "--stats-interval", "0"]);
    assert!(dropped(&sg, &h.a, &h.pbx) && arrives(&sg, &h.b, &h.pbx));
    run.signal(libc::SIGKILL);
    run.wait_exit();
    assert!(dropped(&sg, &h.a, &h.pbx), "still protected after SIGKILL");
    assert!(arrives(&sg, &h.b, &h.pbx));
    assert_eq!(sg.json(&["status", "--json"])["attached"], true);
}

#[test]
fn sigterm_leaves_the_filter_unless_asked_to_detach() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    let mut run = sg.run(&["-i", "pbx0", "--block", "10.77.0.2"]);
    run.signal(libc::SIGTERM);
    let status = run.stopping();
    assert!(status.contains("stays attached"), "{status}");
    let out = run.wait_exit();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dropped(&sg, &h.a, &h.pbx), "the filter stays after SIGTERM");

    // A second run adopts the attachment (no --iface needed) and detaches on exit.
    let before = sg.program_id();
    let mut run = sg.run(&["--detach-on-exit"]);
    assert_ne!(sg.program_id(), before, "run is ready only once it runs its own program");
    run.signal(libc::SIGINT);
    let out = run.wait_exit();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("detaching"), "{stderr}");
    assert!(arrives(&sg, &h.a, &h.pbx), "detached on exit");
    assert!(!std::path::Path::new(&sg.pin_dir).exists(), "state removed with the last link");
}

#[test]
fn detach_removes_protection_and_state() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--block", "10.77.0.2"]);
    let xdp_on = |ns: &Netns| {
        let out = run_ok(Command::new("ip").args(["-n", &ns.name, "link", "show", "pbx0"]));
        String::from_utf8_lossy(&out.stdout).contains("xdp")
    };
    assert!(xdp_on(&link.pbx));
    assert!(dropped(&sg, &h.a, &h.pbx));
    sg.ok(&["detach"]);
    assert!(!xdp_on(&link.pbx), "no XDP program left on the interface");
    assert!(arrives(&sg, &h.a, &h.pbx));
    assert_eq!(sg.json(&["status", "--json"])["attached"], false);
    assert!(sg.fail(&["detach"]).contains("not attached"));
    assert!(sg.fail(&["block", "list"]).contains("not attached"));
}

#[test]
fn several_interfaces_attach_and_detach_independently() {
    let link = PbxLink::new();
    let other = Netns::new("o");
    veth(&link.pbx, "pbx1", &["10.78.0.1/24"], &other, "oth0", &["10.78.0.2/24"]);
    let h = hosts(&link);
    let pbx1 = link.pbx.udp("10.78.0.1:5060");
    let o = other.udp("10.78.0.2:0");
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "-i", "pbx1", "--default", "drop"]);
    assert!(
        dropped_as(&sg, &h.a, &h.pbx, "default_drop") && dropped_as(&sg, &o, &pbx1, "default_drop")
    );
    let status = sg.json(&["status", "--json"]);
    assert_eq!(status["interfaces"].as_array().unwrap().len(), 2, "{status}");
    sg.ok(&["detach", "-i", "pbx0"]);
    assert!(arrives(&sg, &h.a, &h.pbx), "pbx0 no longer filtered");
    assert!(dropped_as(&sg, &o, &pbx1, "default_drop"), "pbx1 still filtered");
    let status = sg.json(&["status", "--json"]);
    assert_eq!(status["interfaces"][0]["iface"], "pbx1", "{status}");
    sg.ok(&["detach"]);
    assert!(arrives(&sg, &o, &pbx1));
}

#[test]
fn run_adopts_an_attachment_without_a_gap() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--block", "10.77.0.2"]);
    assert!(dropped(&sg, &h.a, &h.pbx));
    let before = sg.stats()["reasons"]["blocklisted"].as_u64().unwrap();
    let old_prog = sg.json(&["status", "--json"])["interfaces"][0]["program_id"].clone();

    // A blocked source sends without pause while `run` replaces the program under the link.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let a = h.a.try_clone().unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                a.send_to(OPTIONS, "10.77.0.1:5060").unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let mut run = sg.run(&["--stats-interval", "0"]);
    assert_ne!(sg.program_id(), old_prog, "run is ready only once it runs its own program");
    // Packets keep coming under the new program (the sender has not been paused by the swap),
    // then across the SIGKILL of run.
    let swapped = sg.reason("blocklisted");
    sg.wait_reason("blocklisted", swapped + 50);
    run.signal(libc::SIGKILL);
    run.wait_exit();
    let killed = sg.reason("blocklisted");
    sg.wait_reason("blocklisted", killed + 50);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();

    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 100, "the sender ran ({sent} packets)");
    // Every packet sent is counted as dropped once it has passed the filter; the counter may
    // not go past that.
    let blocked = sg.wait_reason("blocklisted", before + sent) - before;
    assert_eq!(blocked, sent, "every packet sent across the program swap was dropped");
    drain(&h.pbx);
    assert!(dropped(&sg, &h.a, &h.pbx));
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&[
        "attach",
        "-i",
        "pbx0",
        "--default",
        "drop",
        "--allow",
        "10.77.0.3",
        "--block",
        "192.0.2.0/24",
        "--list-capacity",
        "4",
    ]);
    let snapshot = || {
        (
            sg.json(&["status", "--json"]),
            sg.ok(&["allow", "list", "--json"]),
            sg.ok(&["block", "list", "--json"]),
        )
    };
    let before = snapshot();
    let behaves = || dropped_as(&sg, &h.a, &h.pbx, "default_drop") && arrives(&sg, &h.b, &h.pbx);
    assert!(behaves());

    let cases: &[(&[&str], &str)] = &[
        (&["attach", "-i", "nosuch0"], "no such interface: nosuch0"),
        (&["attach", "-i", "pbx0", "-i", "nosuch0", "--default", "pass"], "no such interface"),
        (&["block", "del", "203.0.113.9"], "not on the global blocklist: 203.0.113.9/32"),
        (&["allow", "del", "10.77.0.3", "10.77.0.4"], "not on the global allowlist: 10.77.0.4/32"),
        (
            &["block", "add", "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"],
            "holds at most 4",
        ),
        (&["detach", "-i", "nosuch0"], "not attached to nosuch0"),
    ];
    for (args, message) in cases {
        let error = sg.fail(args);
        assert!(error.contains(message), "{args:?}: {error}");
        assert_eq!(snapshot(), before, "{args:?} changed the state");
    }

    // Usage errors: clap's exit code 2 and its explanation; nothing applied.
    for args in [
        &["allow", "add", "10.1.0.0/16", "10.0.0.1/8"][..],
        &["block", "add", "not-an-address"][..],
        &["attach", "-i", "pbx0", "--sip-port", "0"][..],
        &["attach", "-i", "pbx0", "--default", "maybe"][..],
    ] {
        let out = sg.output(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(snapshot(), before, "{args:?} changed the state");
    }
    let out = sg.output(&["allow", "add", "10.0.0.1/8"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 10.0.0.0/8"));

    // Without privileges.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(sipguard_tests::sipguard_bin())
        .args(["--pin-dir", &sg.pin_dir, "block", "add", "10.9.9.9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"), "{out:?}");
    assert_eq!(snapshot(), before);

    // A pin root that cannot be a bpffs.
    let error =
        Sipguard::with_pin_dir(&link.pbx, "/proc/sipguard-nope").fail(&["attach", "-i", "pbx0"]);
    assert!(error.contains("/proc/sipguard-nope"), "{error}");
    assert_eq!(snapshot(), before);
    assert!(behaves(), "traffic handled as before");
}

#[test]
fn privileges_are_checked_before_anything_else() {
    require_root();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(sipguard_tests::sipguard_bin())
        .args(["--pin-dir", "/sys/fs/bpf/sipguard-unused", "attach", "-i", "lo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(!std::path::Path::new("/sys/fs/bpf/sipguard-unused").exists());
}

/// The unit's capabilities are enough, and each is needed: `CAP_BPF`, `CAP_PERFMON` (the
/// verifier hardens the program against Spectre without it and refuses the packet parser)
/// and `CAP_NET_ADMIN`. Under exactly those, `run` attaches, serves metrics, takes list
/// changes, reloads and reports; with one fewer, attaching is refused up front, the
/// capability named. This proves the unit where systemd is not PID 1.
#[test]
fn the_units_capabilities_are_enough_and_each_is_needed() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    let caps = unit_capabilities();
    assert_eq!(caps, ["bpf", "perfmon", "net_admin"], "what the tests measured");
    for lacking in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != lacking).cloned().collect();
        let wrapper = setpriv(&fewer);
        let confined = sg.confined(&wrapper.iter().map(String::as_str).collect::<Vec<_>>());
        let out = confined.output(&["attach", "-i", "pbx0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "without {lacking}: {stderr}");
        let name = format!("CAP_{}", lacking.to_uppercase());
        assert!(stderr.contains(&format!("missing {name}")), "without {lacking}: {stderr}");
        // With that check out of the way, the kernel refuses by itself, each for its reason:
        // the check is no stricter than the kernel.
        let out = confined
            .with_env(sipguard::kernel::privileges::SKIP_CHECK_VAR, "1")
            .output(&["attach", "-i", "pbx0"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "without {lacking}, unchecked: {stderr}");
        assert!(!stderr.contains("missing CAP_"), "the kernel's answer: {stderr}");
        let kernel_says = match lacking.as_str() {
            "perfmon" => "pointer arithmetic",
            _ => "Operation not permitted",
        };
        assert!(stderr.contains(kernel_says), "without {lacking}, unchecked: {stderr}");
        eprintln!("without {lacking}, the kernel: {}", stderr.trim());
    }
    assert_eq!(sg.json(&["status", "--json"])["attached"], false, "nothing attached");
    // `check` loads without attaching, and the kernel wants CAP_NET_ADMIN for an XDP program
    // all the same: the check says so, and so does the kernel, before its verifier runs.
    let wrapper = setpriv(&["bpf".to_owned(), "perfmon".to_owned()]);
    let no_net = sg.confined(&wrapper.iter().map(String::as_str).collect::<Vec<_>>());
    let checked = no_net.output(&["check"]);
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success() && said.contains("missing CAP_NET_ADMIN"), "{said}");
    let unchecked =
        no_net.with_env(sipguard::kernel::privileges::SKIP_CHECK_VAR, "1").output(&["check"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&unchecked.stdout),
        String::from_utf8_lossy(&unchecked.stderr)
    );
    assert!(!unchecked.status.success(), "{said}");
    assert!(said.contains("before verifying it: Operation not permitted"), "{said}");

    let wrapper = setpriv(&caps);
    let unit = sg.confined(&wrapper.iter().map(String::as_str).collect::<Vec<_>>());
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgcap"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sipguard.toml");
    std::fs::write(&conf, "interfaces = [\"pbx0\"]\nmetrics = \"127.0.0.1:9479\"\n").unwrap();
    let pid = dir.join("run.pid");
    let mut run = unit.run(&[
        "--config",
        conf.to_str().unwrap(),
        "--pid-file",
        pid.to_str().unwrap(),
        "--stats-interval",
        "0",
    ]);
    unit.ok(&["block", "add", "10.77.0.2"]);
    let pbx = link.pbx.udp("10.77.0.1:5060");
    let a = link.peer.udp("10.77.0.2:0");
    assert!(unit.drops(&a, &pbx, b"OPTIONS sip:x SIP/2.0\r\n\r\n", "blocklisted"));
    let metrics = link.pbx.scrape("127.0.0.1:9479");
    assert!(metrics.contains("reason=\"blocklisted\""), "{metrics}");
    std::fs::write(&conf, "interfaces = [\"pbx0\"]\nmetrics = \"127.0.0.1:9479\"\n[block]\nentries = [\"10.77.0.3\"]\n")
        .unwrap();
    run.signal(libc::SIGHUP);
    assert!(run.reloaded().starts_with("reloaded"));
    let b = link.peer.udp("10.77.0.3:0");
    assert!(
        unit.drops(&b, &pbx, b"OPTIONS sip:x SIP/2.0\r\n\r\n", "blocklisted"),
        "the reload applied"
    );
    assert_eq!(unit.json(&["status", "--json"])["attached"], true);
    unit.ok(&["check"]);
    run.signal(libc::SIGTERM);
    assert!(run.wait_exit().status.success());
    // Maps alone need only CAP_BPF.
    let wrapper = setpriv(&["bpf".to_owned()]);
    let maps_only = sg.confined(&wrapper.iter().map(String::as_str).collect::<Vec<_>>());
    maps_only.ok(&["block", "del", "10.77.0.3"]);
    unit.ok(&["detach"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// The kernel's own refusal of a program says so in a few lines: which program, what the
/// verifier said and how far it got, the kernel, and where its whole log went; the log is in
/// that file, never on the terminal or in the supervisor's status line, and nothing is left
/// attached. (Without `CAP_PERFMON` and with sipguard's own check out of the way, the
/// verifier's Spectre hardening refuses the packet parser: a real refusal, from the kernel.)
#[test]
fn a_refused_load_says_so_in_a_few_lines_and_keeps_the_log_in_a_file() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    let wrapper = setpriv(&["bpf".to_owned(), "net_admin".to_owned()]);
    let confined = sg
        .confined(&wrapper.iter().map(String::as_str).collect::<Vec<_>>())
        .with_env(sipguard::kernel::privileges::SKIP_CHECK_VAR, "1");
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgrefusal"));
    std::fs::create_dir_all(&dir).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    for (what, args) in [("attach", vec!["attach", "-i", "pbx0"]), ("check", vec!["check"])] {
        let log = dir.join(format!("{what}.log"));
        let mut full = vec!["--verifier-log", log.to_str().unwrap()];
        full.extend(&args);
        let out = confined.output(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        let said = format!("{stdout}{stderr}");
        assert!(said.lines().count() < 10 + usize::from(what == "check") * 8, "{what}: {said}");
        assert!(said.contains("refused the program `sipguard`"), "{what}: {said}");
        assert!(said.contains(release.trim()), "{what} names the kernel: {said}");
        assert!(said.contains(log.to_str().unwrap()), "{what} names the log: {said}");
        assert!(said.contains("pointer arithmetic"), "{what} says why: {said}");
        assert!(!said.lines().any(|l| l.trim_start().starts_with("0: ")), "{what}: {said}");
        let kept = std::fs::read_to_string(&log).expect("the verifier's log");
        assert!(kept.lines().count() > 10, "{what}: the whole log is in the file: {kept}");
        assert!(kept.contains("pointer arithmetic"), "{what}: {kept}");
    }
    assert_eq!(sg.json(&["status", "--json"])["attached"], false, "nothing attached");
    // `run` tells its supervisor in one short line.
    let log = dir.join("run.log");
    let mut run = confined.spawn_run(&["--verifier-log", log.to_str().unwrap(), "-i", "pbx0"]);
    let status = run.stopping();
    assert!(status.len() <= 200 && !status.contains('\n'), "one short line: {status}");
    assert!(status.contains("refused"), "{status}");
    assert!(!run.wait_exit().status.success());
    assert!(log.exists(), "run's log is in its file too");
    std::fs::remove_dir_all(&dir).ok();
}

/// A test run killed mid-way (a CI timeout) leaves its namespace and pinned, attached filter
/// behind; the next run's first kernel test removes them, and nothing of a live process.
#[test]
fn leftovers_of_killed_runs_are_removed() {
    require_root();
    // A process that existed and is gone: its pid names the leftovers.
    let mut child = Command::new("ip")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawning ip");
    let dead = child.id();
    child.wait().expect("reaping ip");
    let ns = Netns { name: format!("sg{dead}x0p") };
    run_ok(Command::new("ip").args(["netns", "add", &ns.name]));
    ns.ip(&["link", "add", "pbx0", "type", "veth", "peer", "name", "peer0"]);
    ns.ip(&["link", "set", "pbx0", "up"]);
    ns.ip(&["link", "set", "peer0", "up"]);
    let sg = Sipguard::with_pin_dir(&ns, &format!("/sys/fs/bpf/sgcli{dead}x0"));
    sg.ok(&["attach", "-i", "pbx0", "--block", "10.77.0.2"]);
    let program = sg.json(&["status", "--json"])["interfaces"][0]["program_id"]
        .as_u64()
        .expect("a program id");
    let file = std::env::temp_dir().join(format!("sgcap{dead}x0.pcap"));
    std::fs::write(&file, b"").expect("a temporary file");
    // And one of this (live) process, which must stay.
    let mine = std::env::temp_dir().join(sipguard_tests::unique("sgcap"));
    std::fs::write(&mine, b"").expect("a temporary file");

    sipguard_tests::stale::sweep();

    assert!(!ns.path().exists(), "the dead run's namespace is gone");
    std::mem::forget(ns);
    assert!(!std::path::Path::new(&sg.pin_dir).exists(), "its pin directory is gone");
    assert!(!file.exists(), "its temporary file is gone");
    assert!(mine.exists(), "a live process's file stays");
    std::fs::remove_file(&mine).expect("removing our own file");
    // The kernel frees the program once the last reference (the pinned link) is gone.
    let loaded = || {
        aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .any(|p| u64::from(p.id()) == program)
    };
    sipguard_tests::wait::until("the kernel to free the dead run's program", || {
        if loaded() { Err(format!("program {program} is still loaded")) } else { Ok(()) }
    });
}

const REGISTER: &[u8] = b"REGISTER sip:10.77.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.0.2:5060\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
const UNAUTHORIZED: &[u8] = b"SIP/2.0 401 Unauthorized\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"pbx\", nonce=\"1\"\r\nContent-Length: 0\r\n\r\n";

/// `n` REGISTERs from `from`, each received by the PBX's socket and answered with a
/// challenge from it, one at a time. (The test answers itself: this checks the hook on real
/// interfaces; the rules are judged against a real registrar elsewhere.)
fn challenged(from: &UdpSocket, pbx: &UdpSocket, n: u16) {
    let mut buf = [0u8; 2048];
    pbx.set_read_timeout(Some(sipguard_tests::wait::patience())).unwrap();
    drain(pbx);
    for _ in 0..n {
        from.send_to(REGISTER, pbx.local_addr().unwrap()).unwrap();
        let (_, peer) = pbx.recv_from(&mut buf).expect("the REGISTER reaches the PBX");
        pbx.send_to(UNAUTHORIZED, peer).unwrap();
    }
}

fn ban_rule(sg: &Sipguard, addr: &str) -> Option<String> {
    let out = sg.ok(&["ban", "list", "--json"]);
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["addr"] == addr)
        .map(|v| v["rule"].as_str().unwrap_or("").to_owned())
}

/// The response program's hook on pbx0, as the kernel shows it: a clsact filter (kernels
/// before 6.6, seen by `tc`) or the tcx link sipguard pinned (by its id).
#[derive(Debug, PartialEq, Eq)]
enum Hook {
    Clsact,
    Tcx(u64),
}

fn hook(ns: &Netns, sg: &Sipguard) -> Option<Hook> {
    let out = run_ok(ns.exec("tc").args(["filter", "show", "dev", "pbx0", "egress"]));
    if String::from_utf8_lossy(&out.stdout).contains("sipguard_respon") {
        return Some(Hook::Clsact);
    }
    let pin = format!("{}/responses/pbx0", sg.pin_dir);
    let out = Command::new("bpftool").args(["-j", "link", "show", "pinned", &pin]).output().ok()?;
    let link: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    link["id"].as_u64().map(Hook::Tcx)
}

/// Whether `hook` is still in the kernel.
fn alive(ns: &Netns, sg: &Sipguard, seen: &Hook) -> bool {
    match seen {
        Hook::Clsact => hook(ns, sg) == Some(Hook::Clsact),
        Hook::Tcx(id) => Command::new("bpftool")
            .args(["link", "show", "id", &id.to_string()])
            .output()
            .is_ok_and(|o| o.status.success()),
    }
}

#[test]
fn answers_leaving_the_pbx_ban_the_party_that_collects_failures() {
    let link = PbxLink::new();
    let h = hosts(&link);
    let sg = Sipguard::new(&link.pbx);
    let mut run = sg.run(&["-i", "pbx0", "--stats-interval", "0"]);
    let on = hook(&link.pbx, &sg).expect("the response program is on pbx0's egress");
    let auth = sg.json(&["status", "--json"])["behaviour"]["auth_failures"].as_u64().unwrap();
    let auth = u16::try_from(auth).unwrap();
    challenged(&h.a, &h.pbx, auth - 1);
    assert_eq!(ban_rule(&sg, "10.77.0.2"), None, "not banned below the threshold");
    assert!(sg.stats()["counters"]["responses"].as_u64().unwrap() >= u64::from(auth - 1));
    challenged(&h.a, &h.pbx, 1);
    let rule = sipguard_tests::wait::until("the ban of 10.77.0.2", || {
        ban_rule(&sg, "10.77.0.2").ok_or_else(|| "no ban yet".to_owned())
    });
    assert_eq!(rule, "auth_failures");
    assert!(dropped_as(&sg, &h.a, &h.pbx, "banned"), "the banned party's requests are dropped");
    assert!(arrives(&sg, &h.b, &h.pbx), "another party is not");

    // The hook outlives a killed `run`, and keeps judging.
    run.signal(libc::SIGKILL);
    run.wait_exit();
    assert!(alive(&link.pbx, &sg, &on), "{on:?} outlives the process");
    challenged(&h.b, &h.pbx, auth);
    let rule = sipguard_tests::wait::until("the ban of 10.77.0.3", || {
        ban_rule(&sg, "10.77.0.3").ok_or_else(|| "no ban yet".to_owned())
    });
    assert_eq!(rule, "auth_failures");

    // A new run adopts the hook; detach removes it with the rest.
    let mut run = sg.run(&["--stats-interval", "0"]);
    assert_eq!(hook(&link.pbx, &sg).as_ref(), Some(&on), "the same hook, with the new program");
    run.signal(libc::SIGKILL);
    run.wait_exit();
    sg.ok(&["detach"]);
    assert!(!alive(&link.pbx, &sg, &on), "{on:?} is gone with the filter");
}
