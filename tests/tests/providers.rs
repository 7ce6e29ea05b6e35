//! A hosting provider's setup: per-destination policies and lists, the `off` global default,
//! atomic list replacement, configuration reload under traffic, Prometheus metrics.

use std::{
    fmt::Write as _,
    io::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sipguard::{
    cidr::Cidr,
    kernel::maps::ListKind,
    state::{
        lists::{self, Target},
        protect::{self, Settings},
    },
};
use sipguard_common::{
    config::{Config, DefaultAction, Mode},
    counters::Reason,
};
use sipguard_tests::{
    cli::Sipguard,
    corpus,
    frames::Frame,
    netns::PbxLink,
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const OPTIONS: &[u8] =
    b"OPTIONS sip:100@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9\r\nCall-ID: a1@x\r\n\r\n";

fn cidr(s: &str) -> Cidr {
    s.parse().unwrap()
}

fn sip(src: &str, dst: &str) -> Vec<u8> {
    Frame::udp(src, dst, 5060).payload(OPTIONS).build()
}

#[test]
fn each_destination_is_judged_by_its_own_policy() {
    let mut f = TestFilter::new();
    f.set_config(Config::default().with_default_action(DefaultAction::Off));
    let drop_only = Settings { default_action: Some(DefaultAction::Drop), ..Settings::default() };
    let (a, _) =
        protect::add(&f.maps, cidr("198.51.100.10"), &drop_only, Some("customer-a")).unwrap();
    let (b, _) =
        protect::add(&f.maps, cidr("198.51.100.0/24"), &Settings::default(), Some("net-b"))
            .unwrap();
    lists::add(&f.maps, ListKind::Allow, &mut Target::Dest(Box::new(a)), &[cidr("203.0.113.0/24")])
        .unwrap();
    lists::add(&f.maps, ListKind::Block, &mut Target::Dest(Box::new(b)), &[cidr("192.0.2.66")])
        .unwrap();

    // customer-a: allowlist only; its allowlist is its own.
    f.expect(&sip("203.0.113.5", "198.51.100.10"), XDP_PASS, Reason::Allowlisted);
    f.expect(&sip("192.0.2.1", "198.51.100.10"), XDP_DROP, Reason::DefaultDrop);
    // net-b (the rest of the /24): default pass, its own blocklist.
    f.expect(&sip("192.0.2.1", "198.51.100.20"), XDP_PASS, Reason::DefaultPass);
    f.expect(&sip("192.0.2.66", "198.51.100.20"), XDP_DROP, Reason::Blocklisted);
    f.expect(&sip("192.0.2.66", "198.51.100.10"), XDP_DROP, Reason::DefaultDrop);
    // The same source to customer-a's allowlist address is not allowlisted elsewhere.
    f.expect(&sip("203.0.113.5", "198.51.100.20"), XDP_PASS, Reason::DefaultPass);
    // Everything else is not protected: passed without inspection.
    let o = f.expect(
        &Frame::udp("192.0.2.1", "203.0.113.1", 5060)
            .payload(corpus::message("scanners", "svmap-options.sip"))
            .build(),
        XDP_PASS,
        Reason::NotProtected,
    );
    assert_eq!(o.class, None);
    // Global lists apply to every destination.
    f.add(ListKind::Block, &["192.0.2.1"]);
    f.expect(&sip("192.0.2.1", "198.51.100.20"), XDP_DROP, Reason::Blocklisted);
    // Drops are counted per destination.
    let drops_a = f.maps.dest_drops_of(1).unwrap();
    assert_eq!(drops_a, 2, "customer-a dropped two packets");
    // Removing a destination removes its lists with it.
    protect::remove(&f.maps, &cidr("198.51.100.10")).unwrap();
    f.expect(&sip("203.0.113.5", "198.51.100.10"), XDP_PASS, Reason::DefaultPass);
    assert_eq!(f.maps.dest_drops_of(1).unwrap(), 0);
}

#[test]
fn a_destination_in_monitor_mode_passes_what_it_would_drop() {
    let mut f = TestFilter::new();
    f.catalog();
    let monitor = Settings {
        default_action: Some(DefaultAction::Drop),
        mode: Some(Mode::Monitor),
        sip_domains: None,
    };
    protect::add(&f.maps, cidr("2001:db8:1::/64"), &monitor, None).unwrap();
    let svmap = Frame::udp("2001:db8:9::9", "2001:db8:1::1", 5060)
        .payload(corpus::message("scanners", "svmap-options.sip"))
        .build();
    let o = f.expect(&svmap, XDP_PASS, Reason::DefaultDrop);
    assert!(o.monitored);
    // The global policy (enforce, pass) still drops scanners elsewhere.
    let elsewhere = Frame::udp("2001:db8:9::9", "2001:db8:2::1", 5060)
        .payload(corpus::message("scanners", "svmap-options.sip"))
        .build();
    f.expect(&elsewhere, XDP_DROP, Reason::Signature);
    // Incident records name the protected destination the packet was judged for.
    let open = Settings {
        default_action: Some(DefaultAction::Pass),
        mode: Some(Mode::Enforce),
        sip_domains: None,
    };
    protect::add(&f.maps, cidr("2001:db8:3::/48"), &open, Some("customer-c")).unwrap();
    let to_c = Frame::udp("2001:db8:9::10", "2001:db8:3::7", 5060)
        .payload(corpus::message("scanners", "svmap-options.sip"))
        .build();
    f.expect(&to_c, XDP_DROP, Reason::Signature);
    let events = f.events();
    let named: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["protected_destination"].as_str().unwrap_or("-"),
                e["destination_name"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(named.last(), Some(&("2001:db8:3::/48", "customer-c")), "{events:?}");
    assert!(named.contains(&("-", "-")), "the unprotected destination is named as none");
}

#[test]
fn replacing_a_list_keeps_its_verdicts_in_the_kernel() {
    let mut f = TestFilter::with_capacity(64);
    let probe_in = sip("192.0.2.7", "198.51.100.1");
    let probe_out = sip("192.0.2.200", "198.51.100.1");
    let list_a: Vec<Cidr> =
        (0..20).map(|i| cidr(&format!("10.0.{i}.0/24"))).chain([cidr("192.0.2.0/25")]).collect();
    let list_b: Vec<Cidr> =
        (20..40).map(|i| cidr(&format!("10.0.{i}.0/24"))).chain([cidr("192.0.2.7")]).collect();
    for round in 0..6 {
        let list = if round % 2 == 0 { &list_a } else { &list_b };
        let r = lists::replace(&f.maps, ListKind::Block, &mut Target::Global, list).unwrap();
        assert_eq!(r.entries, 21);
        f.expect(&probe_in, XDP_DROP, Reason::Blocklisted);
        f.expect(&probe_out, XDP_PASS, Reason::DefaultPass);
        assert_eq!(lists::entries(&f.maps, ListKind::Block, &Target::Global).unwrap().len(), 21);
    }
    // A replacement that would not fit beside the old list is refused, and nothing changes.
    let huge: Vec<Cidr> = (0..50).map(|i| cidr(&format!("10.1.{i}.0/24"))).collect();
    let e = lists::replace(&f.maps, ListKind::Block, &mut Target::Global, &huge).unwrap_err();
    assert!(format!("{e:#}").contains("holds at most 64"), "{e:#}");
    f.expect(&probe_in, XDP_DROP, Reason::Blocklisted);
}

/// A configuration whose destinations or lists would not fit is refused before anything
/// changes, at any point of applying it (a list being replaced needs its old and new entries).
#[test]
fn a_configuration_that_would_not_fit_changes_nothing() {
    let mut f = TestFilter::with_capacities(sipguard::kernel::program::Capacities {
        lists: 40,
        destinations: 3,
        ..sipguard::kernel::program::Capacities::default()
    });
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgfit"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("c.toml");
    let dest = |i: u32, allow: &[String]| {
        let quoted: Vec<String> = allow.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "[[protect]]\naddress = \"198.51.100.{i}\"\ndefault = \"drop\"\nallow.entries = [{}]\n",
            quoted.join(",")
        )
    };
    let hosts = |from: u32, n: u32| -> Vec<String> {
        (from..from + n).map(|i| format!("10.9.0.{i}")).collect()
    };
    let apply = |f: &TestFilter, text: &str| {
        std::fs::write(&conf, format!("interfaces = [\"x\"]\n{text}")).unwrap();
        let desired = sipguard::setup::configfile::load(&conf)?;
        sipguard::setup::configfile::apply_state(
            &f.maps,
            &desired,
            &mut sipguard::setup::configfile::Applied::default(),
        )
    };
    // Two destinations with 15 sources each: 30 of 40 entries.
    let good = dest(1, &hosts(0, 15)) + &dest(2, &hosts(100, 15));
    apply(&f, &good).unwrap();
    let snapshot = |f: &TestFilter| {
        (
            protect::all(&f.maps).unwrap().iter().map(|d| d.cidr).collect::<Vec<_>>(),
            lists::Snapshot::read(&f.maps, ListKind::Allow).unwrap().count(true),
        )
    };
    let before = snapshot(&f);
    let allowed = sip("10.9.0.3", "198.51.100.1");
    f.expect(&allowed, XDP_PASS, Reason::Allowlisted);
    // The final state fits (2 x 17 = 34), but replacing the second list needs 32 + 17 = 49.
    let e = apply(&f, &(dest(1, &hosts(0, 17)) + &dest(2, &hosts(100, 17)))).unwrap_err();
    assert!(format!("{e:#}").contains("room for 49 IPv4 allowlist entries"), "{e:#}");
    assert!(format!("{e:#}").contains("nothing was changed"), "{e:#}");
    // Four destinations where three fit.
    let four: String = (1..=4).map(|i| dest(i, &[])).collect();
    let e = apply(&f, &four).unwrap_err();
    assert!(format!("{e:#}").contains("4 IPv4 destinations"), "{e:#}");
    assert_eq!(snapshot(&f), before);
    f.expect(&allowed, XDP_PASS, Reason::Allowlisted);
    f.expect(&sip("10.9.0.99", "198.51.100.1"), XDP_DROP, Reason::DefaultDrop);
    // Shrinking one list first makes room: the same end state applies in two steps.
    apply(&f, &(dest(1, &hosts(0, 5)) + &dest(2, &hosts(100, 17)))).unwrap();
    apply(&f, &(dest(1, &hosts(0, 17)) + &dest(2, &hosts(100, 17)))).unwrap();
    assert_eq!(lists::Snapshot::read(&f.maps, ListKind::Allow).unwrap().count(true), 34);
    std::fs::remove_dir_all(&dir).ok();
}

/// Freezes a pinned map against writes from userspace (`BPF_MAP_FREEZE`): every later
/// update or deletion of it fails, which injects a failure into the middle of a change.
fn freeze(f: &TestFilter, map: &str) {
    freeze_at(&f.layout().map(map));
}

fn freeze_at(path: &std::path::Path) {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    let data = aya::maps::MapData::from_pin(path).expect("a pinned map");
    let mut attr = [data.fd().as_fd().as_raw_fd().cast_unsigned(), 0, 0, 0];
    sipguard::kernel::sys::bpf(22, &mut attr).expect("freezing the map");
}

/// A configuration that fails part-way (its blocklist cannot be written) is undone whole:
/// the destination it had already added, its allowlist and the global policy flag are put
/// back, the packets are judged as before, and the error says nothing was changed.
#[test]
fn a_configuration_that_fails_part_way_is_undone() {
    let mut f = TestFilter::new();
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgfit"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("c.toml");
    std::fs::write(
        &conf,
        "interfaces = [\"x\"]\n[[protect]]\naddress = \"198.51.100.1\"\ndefault = \"drop\"\n\
         allow.entries = [\"10.9.0.1\"]\nblock.entries = [\"10.9.0.66\"]\n",
    )
    .unwrap();
    let desired = sipguard::setup::configfile::load(&conf).unwrap();
    let state = |f: &TestFilter| {
        (
            protect::all(&f.maps).unwrap().iter().map(|d| d.cidr).collect::<Vec<_>>(),
            lists::Snapshot::read(&f.maps, ListKind::Allow).unwrap().count(true),
            f.maps.config().unwrap(),
        )
    };
    let before = state(&f);
    f.expect(&sip("10.9.0.7", "198.51.100.1"), XDP_PASS, Reason::DefaultPass);
    freeze(&f, sipguard_common::maps::BLOCK_V4);
    let e = sipguard::setup::configfile::apply_state(
        &f.maps,
        &desired,
        &mut sipguard::setup::configfile::Applied::default(),
    )
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("nothing was changed") && e.contains("10.9.0.66"), "{e}");
    assert_eq!(state(&f), before, "the destination and its allowlist were undone");
    f.expect(&sip("10.9.0.7", "198.51.100.1"), XDP_PASS, Reason::DefaultPass);
    std::fs::remove_dir_all(&dir).ok();
}

/// A reload is one change from the attach on: when it fails part-way, not even the settings
/// it had already written stay (here: the global default and the ports).
#[test]
fn a_reload_that_fails_part_way_keeps_the_running_configuration() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    let layout = sipguard::kernel::pin::PinLayout::new(&sg.pin_dir);
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgconf"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("c.toml");
    let apply = |text: &str| {
        std::fs::write(&conf, format!("interfaces = [\"pbx0\"]\n{text}")).unwrap();
        let desired = sipguard::setup::configfile::load(&conf).unwrap();
        let layout = layout.clone();
        // The interfaces are in the PBX's namespace; the pins on the host's bpffs.
        link.pbx.enter(move || sipguard::setup::configfile::apply(&layout, &desired).map(|_| ()))
    };
    apply("[policy]\ndefault = \"pass\"\n").expect("the first apply");
    // The program under the link is the same build loaded again (a reload loads before it
    // changes anything); everything else must be as it was.
    let state = || {
        let mut status = sg.json(&["status", "--json"]);
        status["interfaces"][0]["program_id"] = serde_json::Value::Null;
        (status, sg.ok(&["protect", "list", "--json"]))
    };
    let before = state();
    freeze_at(&layout.map(sipguard_common::maps::BLOCK_V4));
    let e = apply(
        "sip_ports = [5070]\n[policy]\ndefault = \"drop\"\n[block]\nentries = [\"10.77.0.2\"]\n\
         [[protect]]\naddress = \"10.77.0.1\"\n",
    )
    .expect_err("the blocklist cannot be written");
    assert!(format!("{e:#}").contains("nothing was changed"), "{e:#}");
    assert_eq!(state(), before, "the default, the ports and the destination were undone");
    std::fs::remove_dir_all(&dir).ok();
}

/// A step whose undo fails is named in the error, and every other step is still undone.
#[test]
fn an_undo_that_fails_is_reported_and_the_rest_is_undone() {
    use sipguard::state::change;
    let mut f = TestFilter::new();
    let entries =
        |f: &TestFilter| lists::entries(&f.maps, ListKind::Block, &Target::Global).unwrap();
    let before = entries(&f);
    let e = change::run(&f.maps, |tx| -> anyhow::Result<()> {
        lists::add_in(tx, ListKind::Block, &mut Target::Global, &[cidr("192.0.2.0/24")])?;
        tx.undo_with("a step that cannot be undone", |_| anyhow::bail!("its undo failed"));
        anyhow::bail!("a failure after both steps")
    })
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("a failure after both steps"), "{e}");
    assert!(e.contains("left as they are: a step that cannot be undone (its undo failed)"), "{e}");
    assert!(!e.contains("nothing was changed"), "{e}");
    assert_eq!(entries(&f), before, "the list change was undone");
    f.expect(&sip("192.0.2.1", "198.51.100.1"), XDP_PASS, Reason::DefaultPass);
}

/// One PBX host with two customer addresses under different policies.
#[test]
fn the_same_source_is_dropped_for_one_customer_and_served_for_the_other() {
    let link = PbxLink::new();
    link.pbx.ip(&["addr", "add", "10.77.0.10/24", "dev", "pbx0"]);
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--default", "off"]);
    sg.ok(&["protect", "add", "10.77.0.1", "--default", "drop", "--name", "strict"]);
    sg.ok(&["protect", "add", "10.77.0.10", "--default", "pass", "--name", "open"]);
    sg.ok(&["allow", "add", "10.77.0.3", "--for", "10.77.0.1"]);
    let strict = link.pbx.udp("10.77.0.1:5060");
    let open = link.pbx.udp("10.77.0.10:5060");
    let a = link.peer.udp("10.77.0.2:0");
    let b = link.peer.udp("10.77.0.3:0");
    assert!(sg.drops(&a, &strict, OPTIONS, "default_drop"), "strict drops the unlisted source");
    assert!(sg.arrives(&a, &open, OPTIONS), "open serves it");
    assert!(sg.arrives(&b, &strict, OPTIONS), "strict serves its allowlisted trunk");
    let list = sg.ok(&["protect", "list", "--json"]);
    assert!(list.contains("\"name\":\"strict\"") && list.contains("\"dropped\":1"), "{list}");
    // A feed piped in (as from `curl`), APIBAN-shaped, onto the open customer's blocklist.
    let mut import = sg.cmd(&["block", "import", "-", "--format", "apiban", "--for", "10.77.0.10"]);
    let mut child = import
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"ipaddress": ["10.77.0.2", "192.0.2.66"], "ID": "1234"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        sg.drops(&a, &open, OPTIONS, "blocklisted"),
        "blocked for the open customer by the feed"
    );
    assert!(sg.arrives(&b, &open, OPTIONS), "the other source still reaches it");
    let stats = sg.json(&["stats", "--json"]);
    assert_eq!(stats["top_destinations"][0]["name"], "strict", "{stats}");
    let one = sg.json(&["stats", "--json", "--for", "10.77.0.1"]);
    assert_eq!(one["dropped"], 1, "{one}");
    assert!(
        sg.fail(&["allow", "add", "10.77.0.4", "--for", "10.77.0.99"])
            .contains("not a protected destination")
    );
}

/// Swaps a large blocklist back and forth while two sources send without pause: the one on
/// both lists never gets through, the one on neither always does.
#[test]
fn atomic_replacement_under_load() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--list-capacity", "70000"]);
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgswap"));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, base: u32| {
        let mut text = String::from("10.77.0.2\n");
        for i in 0..30_000u32 {
            let v = base + i;
            writeln!(text, "{}.{}.{}.0/24", 100 + (v >> 16), (v >> 8) & 255, v & 255).ok();
        }
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let one = write("one.txt", 0);
    let two = write("two.txt", 40_000);
    sg.ok(&["block", "import", one.to_str().unwrap(), "--replace"]);

    let pbx = link.pbx.udp("10.77.0.1:5060");
    // Room for every packet of a long scheduling pause of the receiving thread (a busy CI
    // runner): what this test counts is the filter's verdicts, not the socket's overflows.
    sipguard_tests::netns::force_receive_buffer(&pbx, 32 << 20);
    let blocked = link.peer.udp("10.77.0.2:0");
    let clean = link.peer.udp("10.77.0.3:0");
    let passed_before = sg.reason("default_pass");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let (blocked, clean) = (blocked.try_clone().unwrap(), clean.try_clone().unwrap());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                blocked
                    .send_to(b"OPTIONS sip:x SIP/2.0\r\nfrom-blocked\r\n\r\n", "10.77.0.1:5060")
                    .unwrap();
                clean
                    .send_to(b"OPTIONS sip:x SIP/2.0\r\nfrom-clean\r\n\r\n", "10.77.0.1:5060")
                    .unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    // The receiver counts until it has every clean packet the sender sent (known once the
    // sender has stopped), so no packet still in flight is missed.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let counter = {
        let (expected, pbx) = (expected.clone(), pbx.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let (mut b, mut c) = (0u64, 0u64);
            pbx.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let bound = sipguard_tests::wait::patience();
            let mut since_last = Instant::now();
            while c < expected.load(Ordering::Relaxed) {
                match pbx.recv_from(&mut buf) {
                    Ok((n, _)) if buf[..n].ends_with(b"from-blocked\r\n\r\n") => b += 1,
                    Ok(_) => {
                        c += 1;
                        since_last = Instant::now();
                    }
                    Err(_) if since_last.elapsed() > bound => break,
                    Err(_) => {}
                }
            }
            (b, c)
        })
    };
    let start = Instant::now();
    let mut swaps = 0;
    while swaps < 4 || start.elapsed() < Duration::from_secs(3) {
        let file = if swaps % 2 == 0 { &two } else { &one };
        sg.ok(&["block", "import", file.to_str().unwrap(), "--replace"]);
        swaps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    expected.store(sent, Ordering::Relaxed);
    let (from_blocked, from_clean) = counter.join().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(sent > 1000, "the senders ran ({sent} pairs)");
    assert_eq!(from_blocked, 0, "a blocked packet got through during {swaps} swaps");
    let passed = sg.wait_reason("default_pass", passed_before + sent) - passed_before;
    assert_eq!(passed, sent, "the filter did not pass every clean packet during {swaps} swaps");
    assert_eq!(from_clean, sent, "a clean packet was lost during {swaps} swaps");
    assert_eq!(sg.wait_reason("blocklisted", sent), sent, "{}", sg.stats());
    let lists = &sg.json(&["status", "--json"])["lists"];
    assert_eq!(lists["blocklist"]["entries"], 30_001);
    // 30,000 /24 entries and one /32: after every swap the live bitmap marks exactly them.
    assert_eq!(lists["blocklist"]["bitmap_24s"], 30_001, "{lists}");
}

/// `name{labels} value` lines of a scrape, parsed.
fn series(body: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("a metric line has a value");
            (name.to_owned(), value.parse().expect("a numeric value"))
        })
        .collect()
}

/// Reloads `run` while `blocked` (a source both configurations block) sends to `pbx`
/// throughout: every packet must be dropped exactly once and none reach the PBX. Returns
/// the reload's status line.
fn reload_under_traffic(
    sg: &Sipguard,
    run: &mut sipguard_tests::cli::Run,
    a: &std::net::UdpSocket,
    pbx: &std::net::UdpSocket,
    pid_file: &std::path::Path,
) -> String {
    let blocked_before = sg.reason("blocklisted");
    let stop = AtomicBool::new(false);
    let status = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let mut sent = 0u64;
            // Bounded by the run's patience, not by a count: a slow guest may take longer
            // to reload than any fixed number of packets lasts, and the test needs packets
            // after the reload too. It still stops by itself if the reload never reports.
            let bound = sipguard_tests::wait::patience();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < bound {
                a.send_to(OPTIONS, "10.77.0.1:5060").expect("sending");
                sent += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            sent
        });
        // Under way before the reload starts.
        sg.wait_reason("blocklisted", blocked_before + 10);
        sg.ok(&["reload", "--pid-file", pid_file.to_str().unwrap()]);
        let status = run.reloaded();
        // And on for a while after it.
        let after = sg.reason("blocklisted");
        sg.wait_reason("blocklisted", after + 10);
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().unwrap();
        sg.wait_reason("blocklisted", blocked_before + sent);
        assert_eq!(sg.reason("blocklisted"), blocked_before + sent, "every one dropped, once");
        status
    });
    let mut buf = [0u8; 2048];
    while let Ok((_, from)) = pbx.recv_from(&mut buf) {
        assert_ne!(from.ip().to_string(), "10.77.0.2", "a blocked packet got through the reload");
    }
    status
}

#[test]
fn config_reload_under_traffic_and_metrics() {
    let link = PbxLink::new();
    let sg = Sipguard::new(&link.pbx);
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgconf"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sipguard.toml");
    let feed = dir.join("feed.txt");
    std::fs::write(&feed, "# blocked\n10.77.0.2\n").unwrap();
    let port = 19_000 + (std::process::id() % 1000) as u16;
    let base = format!(
        "interfaces = [\"pbx0\"]\nmetrics = \"127.0.0.1:{port}\"\n[policy]\ndefault = \"pass\"\n[block]\nfiles = [{{ path = \"feed.txt\" }}]\n"
    );
    std::fs::write(&conf, &base).unwrap();
    let pid_file = dir.join("run.pid");
    let mut run = sg.run(&[
        "--config",
        conf.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--stats-interval",
        "0",
    ]);
    assert!(pid_file.exists(), "run is ready before it wrote its pid file");
    let pbx = link.pbx.udp("10.77.0.1:5060");
    let a = link.peer.udp("10.77.0.2:0");
    let b = link.peer.udp("10.77.0.3:0");
    assert!(sg.drops(&a, &pbx, OPTIONS, "blocklisted"), "blocked by the feed");
    assert!(sg.arrives(&b, &pbx, OPTIONS));

    // A valid change: block the other source too, protect a destination. The blocked
    // source sends throughout the reload: the list replaced under it never lets one through.
    std::fs::write(&feed, "10.77.0.2\n10.77.0.3\n").unwrap();
    std::fs::write(&conf, format!("{base}[[protect]]\naddress = \"10.77.0.1\"\nname = \"pbx\"\n"))
        .unwrap();
    let status = reload_under_traffic(&sg, &mut run, &a, &pbx, &pid_file);
    assert!(status.starts_with("reloaded"), "{status}");
    assert!(sg.drops(&b, &pbx, OPTIONS, "blocklisted"), "the reload took effect");
    assert!(sg.ok(&["protect", "list"]).contains("pbx"));

    // An invalid file is reported, and nothing changes.
    std::fs::write(&conf, format!("{base}[[protect]]\naddress = \"10.77.0.1/8\"\n")).unwrap();
    let before = (sg.ok(&["block", "list"]), sg.ok(&["protect", "list"]));
    sg.ok(&["reload", "--pid-file", pid_file.to_str().unwrap()]);
    let status = run.reloaded();
    assert!(
        status.contains("configuration unchanged") && status.contains("10.0.0.0/8"),
        "{status}"
    );
    assert_eq!((sg.ok(&["block", "list"]), sg.ok(&["protect", "list"])), before);
    assert!(sg.drops(&b, &pbx, OPTIONS, "blocklisted"), "still blocked");

    // Metrics over HTTP, parsed.
    let body = link.pbx.scrape(&format!("127.0.0.1:{port}"));
    let s = series(&body);
    let get = |name: &str| s.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(get("sipguard_build_info{version=\"0.1.0\"}"), Some(1.0), "{body}");
    assert!(
        get("sipguard_packets_total{verdict=\"drop\",reason=\"blocklisted\",monitored=\"false\"}")
            .unwrap()
            >= 2.0,
        "{body}"
    );
    assert_eq!(get("sipguard_list_entries{list=\"blocklist\"}"), Some(2.0), "{body}");
    assert_eq!(get("sipguard_protected_destinations"), Some(1.0), "{body}");
    assert!(
        s.iter().any(|(n, _)| n.starts_with(
            "sipguard_destination_dropped_total{destination=\"10.77.0.1/32\",name=\"pbx\"}"
        )),
        "{body}"
    );
    for (name, _) in &s {
        assert!(name.starts_with("sipguard_"), "{name}");
    }
    // OpenMetrics, written by prometheus-client: a counter's family is named without
    // `_total`, its samples with it, and the page ends with `# EOF`.
    assert!(body.contains("# TYPE sipguard_packets counter"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    // The HTTP server's limits (hyper's settings): a head past 8 KiB is refused, only GET
    // of /metrics is served, and a client that sends nothing is hung up on.
    let metrics = format!("127.0.0.1:{port}");
    let big = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "p".repeat(16_384));
    assert!(link.pbx.exchange(&metrics, big.as_bytes()).starts_with("HTTP/1.1 431"));
    let posted = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    assert!(link.pbx.exchange(&metrics, posted).starts_with("HTTP/1.1 405"));
    let elsewhere = b"GET /secrets HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(link.pbx.exchange(&metrics, elsewhere).starts_with("HTTP/1.1 404"));
    assert!(link.pbx.hung_up_on(&metrics), "a silent client is hung up on");

    run.signal(libc::SIGTERM);
    let out = run.wait_exit();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did you mean 10.0.0.0/8") && stderr.contains("unchanged"), "{stderr}");
    assert!(!pid_file.exists(), "the pid file is removed on exit");
    std::fs::remove_dir_all(&dir).ok();
}
