//! When evidence may ban (`sipguard_common::trust`), under `BPF_PROG_TEST_RUN`: standing
//! earned from the server's answers, the budget of bans on unverified evidence, and the
//! reverse path, asked of the kernel's FIB and of the route mirror in a namespace with two
//! interfaces. Bad packets are dropped in every case; only the ban is withheld.

use sipguard::state::routes;
use sipguard_common::{
    config::Config,
    counters::{Misc, Reason},
    trust::{BanBudget, ReversePath},
};
use sipguard_tests::{
    frames::{Frame, Transport, scanner_probe, scanner_probe_text},
    netns::{Netns, two_sided_host},
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const SERVER: &str = "192.0.2.1";
const PHONE: &str = "198.51.100.7";

/// The server's answer to `party` for a request of `method`.
fn answer(party: &str, status: &str, method: &str) -> Vec<u8> {
    let text = format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP {party}:5070;branch=z9hG4bK1\r\nFrom: <sip:100@{SERVER}>;tag=1\r\nTo: <sip:100@{SERVER}>;tag=2\r\nCall-ID: 1@x\r\nCSeq: 2 {method}\r\nContent-Length: 0\r\n\r\n"
    );
    Frame::udp(SERVER, party, 5070).payload(text.as_bytes()).build()
}

fn moved(m: &[(u32, u64)], c: Misc) -> u64 {
    m.iter().find(|(s, _)| *s == c.slot()).map_or(0, |(_, d)| *d)
}

fn filter() -> TestFilter {
    let f = TestFilter::new();
    f.catalog();
    f
}

#[test]
fn a_party_with_standing_is_dropped_but_not_banned() {
    let mut f = filter();
    // A keepalive's success gives no standing; a registration's does.
    let (_, m) = f.respond(&answer(PHONE, "200 OK", "OPTIONS"));
    assert_eq!(moved(&m, Misc::StandingGranted), 0, "{m:?}");
    let (_, m) = f.respond(&answer(PHONE, "200 OK", "REGISTER"));
    assert_eq!(moved(&m, Misc::StandingGranted), 1, "{m:?}");
    // Fresh standing is not rewritten by the next success.
    let (_, m) = f.respond(&answer(PHONE, "200 OK", "REGISTER"));
    assert_eq!(moved(&m, Misc::StandingGranted), 0, "{m:?}");

    // A forged probe with the phone's address: dropped, counted, reported, no ban.
    let o = f.expect(&scanner_probe(PHONE, SERVER, 5070), XDP_DROP, Reason::Signature);
    assert_eq!(moved(&o.moved, Misc::BansWithheldStanding), 1, "{o:?}");
    assert_eq!(moved(&o.moved, Misc::BansAdded), 0);
    assert!(f.ban_of(PHONE).is_none(), "the phone keeps working");
    let events = f.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (&events[0]["banned"], &events[0]["ban_withheld"]),
        (&false.into(), &"standing".into())
    );
    f.expect(&scanner_probe(PHONE, SERVER, 5070), XDP_DROP, Reason::Signature);

    // A call's success gives standing too; without any, a source is banned as ever.
    let caller = "198.51.100.8";
    let (_, m) = f.respond(&answer(caller, "200 OK", "INVITE"));
    assert_eq!(moved(&m, Misc::StandingGranted), 1, "{m:?}");
    f.expect(&scanner_probe(caller, SERVER, 5070), XDP_DROP, Reason::Signature);
    assert!(f.ban_of(caller).is_none());
    let stranger = "203.0.113.9";
    f.expect(&scanner_probe(stranger, SERVER, 5070), XDP_DROP, Reason::Signature);
    assert_eq!(f.ban_of(stranger).expect("banned").reason, "signature");
    f.expect(&scanner_probe(stranger, SERVER, 5070), XDP_DROP, Reason::Banned);

    // Standing off: the phone is banned like anyone.
    f.set_config(Config::default().with_standing(0));
    f.expect(&scanner_probe(PHONE, SERVER, 5070), XDP_DROP, Reason::Signature);
    assert!(f.ban_of(PHONE).is_some());
}

#[test]
fn answers_induced_for_a_party_with_standing_do_not_ban_it() {
    let mut f = filter();
    let (_, auth, _) = Config::default().behaviour();
    f.respond(&answer(PHONE, "200 OK", "REGISTER"));
    // Forged REGISTERs in the phone's name draw challenges to it: the rule trips, the ban
    // is withheld.
    let mut withheld = 0;
    let mut trips = 0;
    for _ in 0..auth {
        let (_, m) = f.respond(&answer(PHONE, "401 Unauthorized", "REGISTER"));
        withheld += moved(&m, Misc::BansWithheldStanding);
        trips += moved(&m, Misc::BehaviourAuthFailures);
    }
    assert_eq!((trips, withheld), (1, 1));
    assert!(f.ban_of(PHONE).is_none());
    let e = f.events();
    assert_eq!(
        (&e[0]["rule"], &e[0]["ban_withheld"]),
        (&"auth_failures".into(), &"standing".into())
    );
    // A brute forcer without standing is banned as before.
    let guesser = "203.0.113.10";
    for _ in 0..auth {
        f.respond(&answer(guesser, "401 Unauthorized", "REGISTER"));
    }
    assert_eq!(f.ban_of(guesser).expect("banned").rule, Some("auth_failures"));
}

#[test]
fn a_flood_of_forged_sources_is_admitted_at_the_budgets_pace() {
    let mut f = filter();
    let capacity = f.maps.capacity(sipguard_common::maps::BANS).unwrap();
    let budget = BanBudget::for_table(capacity, Config::default().ban_ttl_secs);
    sipguard::state::change::run(&f.maps, |tx| tx.set_ban_budget(&budget)).unwrap();
    // A real scanner, banned before the flood.
    let scanner = "203.0.113.77";
    f.expect(&scanner_probe(scanner, SERVER, 5070), XDP_DROP, Reason::Signature);
    let start = std::time::Instant::now();
    let flood = budget.burst() + 1000;
    let mut dropped = 0;
    for i in 0..flood {
        let src = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if f.run(&scanner_probe(&src, SERVER, 5070)).action == XDP_DROP {
            dropped += 1;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(dropped, flood, "every forged probe is dropped");
    let bans = sipguard::state::bans::list(&f.maps).unwrap().len() as u64;
    // The burst, the scanner's, and what the budget refilled meanwhile.
    let refill = u64::try_from(elapsed.as_nanos()).unwrap() / budget.interval_ns + 2;
    assert!(bans <= budget.burst() + 1 + refill, "{bans} bans after {elapsed:?}");
    assert!(bans >= budget.burst(), "{bans}");
    let withheld = f.maps.counters().unwrap()[Misc::BansWithheldBudget.slot() as usize];
    assert_eq!(withheld + bans - 1, flood, "every forged probe was banned or withheld");
    assert!(bans < u64::from(capacity) / 4, "the table never fills: {bans} of {capacity}");
    f.expect(&scanner_probe(scanner, SERVER, 5070), XDP_DROP, Reason::Banned);
    // Only bans are reported: the withheld ones would spend the incident budget real bans
    // need. (The kernel's event budget, 1,000 a second with a second's burst, bounds them
    // further.)
    let events = f.events().len() as u64;
    assert!(events <= bans, "{events} records for {bans} bans");
    assert!(events <= 1000 * (start.elapsed().as_secs() + 2), "{events} records");
}

/// Runs the probes of the reverse-path test in the namespace: the trunk's address from the
/// internet side, the trunk from its own side, a stranger from the internet side, and a
/// source routed nowhere. Returns each outcome's reason and whether it banned.
fn reverse_path_outcomes(
    ns: &Netns,
    (inet, trunk): (u32, u32),
    mode: ReversePath,
    mirror: bool,
) -> Vec<(Reason, bool)> {
    ns.enter(move || {
        let mut f = filter();
        f.judge_reverse_path();
        f.set_config(Config::default().with_reverse_path(mode));
        if mirror {
            let synced = routes::sync(&f.maps).expect("mirroring the routes");
            assert!(!synced.too_many && synced.v4 >= 3, "{synced:?}");
        }
        let cases =
            [("10.77.2.2", inet), ("10.77.2.3", trunk), ("203.0.113.5", inet), ("10.66.1.1", inet)];
        cases
            .iter()
            .map(|&(src, on)| {
                let o = f.run_on(&scanner_probe(src, "10.77.1.1", 5070), on);
                assert_eq!(o.action, XDP_DROP, "{src}: {o:?}");
                (o.reason, f.ban_of(src).is_some())
            })
            .collect()
    })
}

#[test]
fn forged_sources_fail_the_reverse_path_and_are_never_banned() {
    let strict = vec![
        (Reason::Spoofed, false),
        (Reason::Signature, true),
        (Reason::Signature, true),
        (Reason::Spoofed, false),
    ];
    let loose = vec![
        (Reason::Signature, true),
        (Reason::Signature, true),
        (Reason::Signature, true),
        (Reason::Spoofed, false),
    ];
    // A host that does not forward: the route mirror answers.
    let (ns, inet, trunk) = two_sided_host(false);
    assert_eq!(reverse_path_outcomes(&ns, (inet, trunk), ReversePath::Strict, true), strict);
    assert_eq!(reverse_path_outcomes(&ns, (inet, trunk), ReversePath::Loose, true), loose);
    // Without the mirror such a host cannot tell: nothing is judged forged.
    let unjudged = vec![(Reason::Signature, true); 4];
    assert_eq!(reverse_path_outcomes(&ns, (inet, trunk), ReversePath::Strict, false), unjudged);
    assert_eq!(reverse_path_outcomes(&ns, (inet, trunk), ReversePath::Off, true), unjudged);
    drop(ns);
    // A router: the kernel's FIB answers, mirror or not.
    let (ns, inet, trunk) = two_sided_host(true);
    assert_eq!(reverse_path_outcomes(&ns, (inet, trunk), ReversePath::Strict, false), strict);
    assert_eq!(reverse_path_outcomes(&ns, (inet, trunk), ReversePath::Loose, false), loose);
}

/// A request no signature matches from `src` to the server at 10.77.1.1: an INVITE to a
/// number, or a REGISTER for a real user with a wrong password.
fn plain_requests(src: &str) -> [Vec<u8>; 2] {
    let invite = format!(
        "INVITE sip:4930999999@10.77.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5070;branch=z9hG4bK7\r\nFrom: <sip:trunk@10.77.1.1>;tag=1\r\nTo: <sip:4930999999@10.77.1.1>\r\nCall-ID: 7@{src}\r\nCSeq: 1 INVITE\r\nContact: <sip:trunk@{src}:5070>\r\nContent-Length: 0\r\n\r\n"
    );
    let register = format!(
        "REGISTER sip:10.77.1.1 SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5070;branch=z9hG4bK8\r\nFrom: <sip:101@10.77.1.1>;tag=1\r\nTo: <sip:101@10.77.1.1>\r\nCall-ID: 8@{src}\r\nCSeq: 2 REGISTER\r\nAuthorization: Digest username=\"101\", realm=\"pbx\", nonce=\"abc\", uri=\"sip:10.77.1.1\", response=\"0123\"\r\nContact: <sip:101@{src}:5070>\r\nContent-Length: 0\r\n\r\n"
    );
    [invite, register].map(|text| {
        Frame::new(
            src.parse().unwrap(),
            "10.77.1.1".parse().unwrap(),
            Transport::Udp { sport: 5070, dport: 5060 },
        )
        .payload(text.as_bytes())
        .build()
    })
}

/// Requests that call for no ban are judged by the reverse path too, before the server can
/// answer them (issue 27): forged with the trunk's address from the internet side they are
/// dropped as `spoofed`, so no answer of the server goes to the trunk; sent by the trunk on
/// its own side, or by a stranger from the internet side, they pass. Off, nothing is judged.
#[test]
fn requests_that_fail_the_reverse_path_are_dropped_before_the_server_answers() {
    let (ns, inet, trunk) = two_sided_host(false);
    let outcomes = ns.enter(move || {
        let mut all = Vec::new();
        for (mode, mirror) in [
            (ReversePath::Strict, true),
            (ReversePath::Loose, true),
            (ReversePath::Strict, false),
            (ReversePath::Off, true),
        ] {
            // A new filter each time: its mirror is not kept until a sync.
            let mut f = filter();
            f.judge_reverse_path();
            f.set_config(Config::default().with_reverse_path(mode));
            if mirror {
                routes::sync(&f.maps).expect("mirroring the routes");
            }
            let mut row = Vec::new();
            for (src, on) in [
                ("10.77.2.2", inet),
                ("10.77.2.2", trunk),
                ("203.0.113.5", inet),
                ("10.66.1.1", inet),
            ] {
                for frame in plain_requests(src) {
                    let o = f.run_on(&frame, on);
                    assert!(f.ban_of(src).is_none(), "{src}: {o:?}");
                    row.push(o.reason);
                }
            }
            all.push(row);
        }
        all
    });
    let (pass, spoofed) = (Reason::DefaultPass, Reason::Spoofed);
    let both = |r: Reason| [r, r];
    let row = |a, b, c, d| [both(a), both(b), both(c), both(d)].concat();
    assert_eq!(outcomes[0], row(spoofed, pass, pass, spoofed), "strict");
    assert_eq!(outcomes[1], row(pass, pass, pass, spoofed), "loose");
    assert_eq!(
        outcomes[2],
        row(pass, pass, pass, pass),
        "no mirror on a host that does not forward"
    );
    assert_eq!(outcomes[3], row(pass, pass, pass, pass), "off");
}

#[test]
fn a_spoofed_probe_is_reported_and_counted_as_spoofed() {
    let (ns, inet, _) = two_sided_host(false);
    let (o, events) = ns.enter(move || {
        let mut f = filter();
        f.judge_reverse_path();
        f.set_config(Config::default());
        routes::sync(&f.maps).expect("mirroring the routes");
        let o = f.run_on(&scanner_probe("10.77.2.2", "10.77.1.1", 5070), inet);
        (o, f.events())
    });
    assert_eq!((o.action, o.reason), (XDP_DROP, Reason::Spoofed));
    assert_eq!(moved(&o.moved, Misc::BansWithheldSpoofed), 1, "{o:?}");
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (&e["reason"], &e["ban_withheld"], &e["banned"]),
        (&"signature".into(), &"spoofed".into(), &false.into())
    );
    assert!(e["signature"].is_string(), "{e}");
    // In monitor mode the probe passes, counted as a spoofed drop that was not made.
    let o = ns.enter(move || {
        let mut f = filter();
        f.judge_reverse_path();
        f.set_config(Config::default().with_mode(sipguard_common::config::Mode::Monitor));
        routes::sync(&f.maps).expect("mirroring the routes");
        f.run_on(&scanner_probe("10.77.2.2", "10.77.1.1", 5070), inet)
    });
    assert_eq!((o.action, o.reason, o.monitored), (XDP_PASS, Reason::Spoofed, true));
}

/// A TCP connection from `from` (one of the namespace's addresses) to `to`:5060, made by the
/// kernel; returns the client's socket (kept open by the caller) and its port.
fn connect_from(from: [u8; 4], to: [u8; 4]) -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    let addr = |a: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap(),
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a) },
        sin_zero: [0; 8],
    };
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_in>()).unwrap();
    // SAFETY: plain socket calls on a descriptor owned from its creation; the addresses are
    // sockaddr_in of the length passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let local = addr(from, 0);
        assert_eq!(libc::bind(fd.as_raw_fd(), (&raw const local).cast(), len), 0, "bind");
        let remote = addr(to, 5060);
        let rc = libc::connect(fd.as_raw_fd(), (&raw const remote).cast(), len);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        let mut bound = addr([0; 4], 0);
        let mut n = len;
        libc::getsockname(fd.as_raw_fd(), (&raw mut bound).cast(), &raw mut n);
        (fd, u16::from_be(bound.sin_port))
    }
}

#[test]
fn a_probe_on_an_established_tcp_connection_bans_at_once() {
    let (ns, inet, _) = two_sided_host(false);
    // The trunk's address, here for the client end of a real connection.
    ns.ip(&["addr", "add", "10.77.2.2/32", "dev", "lo"]);
    let (stray, verified, events) = ns.enter(move || {
        let mut f = filter();
        f.judge_reverse_path();
        f.set_config(Config::default());
        routes::sync(&f.maps).expect("mirroring the routes");
        let listener = std::net::TcpListener::bind("10.77.1.1:5060").expect("listening");
        let (_client, port) = connect_from([10, 77, 2, 2], [10, 77, 1, 1]);
        let _server = listener.accept().expect("accepting");
        // The source has standing too: a proven source is banned all the same.
        f.respond(&answer("10.77.2.2", "200 OK", "REGISTER"));
        let segment = |sport: u16| {
            Frame::new(
                "10.77.2.2".parse().unwrap(),
                "10.77.1.1".parse().unwrap(),
                Transport::Tcp { sport, dport: 5060, flags: 0x18, options: vec![] },
            )
            .payload(scanner_probe_text("10.77.2.2", "10.77.1.1", sport))
            .build()
        };
        // A segment of no connection (another port) proves nothing: it arrived on the
        // internet side with the trunk side's address, so it is spoofed.
        let stray = f.run_on(&segment(port.wrapping_add(1)), inet);
        let verified = f.run_on(&segment(port), inet);
        (stray, verified, f.events())
    });
    assert_eq!((stray.action, stray.reason), (XDP_DROP, Reason::Spoofed), "{stray:?}");
    assert_eq!((verified.action, verified.reason), (XDP_DROP, Reason::Signature), "{verified:?}");
    assert_eq!(moved(&verified.moved, Misc::BansAdded), 1, "{verified:?}");
    let e = events.last().expect("a record");
    assert_eq!(
        (&e["verified"], &e["banned"], &e["transport"]),
        (&true.into(), &true.into(), &"tcp".into()),
        "{e}"
    );
    assert_eq!(events[0]["verified"], false);
}

/// A digest challenge to `party` with `nonce`.
fn challenge(party: &str, nonce: &str) -> Vec<u8> {
    let text = format!(
        "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP {party}:5070;branch=z9hG4bK1\r\nFrom: <sip:100@{SERVER}>;tag=1\r\nTo: <sip:100@{SERVER}>;tag=2\r\nCall-ID: 1@x\r\nCSeq: 2 REGISTER\r\nWWW-Authenticate: Digest realm=\"pbx\", nonce=\"{nonce}\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n"
    );
    Frame::udp(SERVER, party, 5070).payload(text.as_bytes()).build()
}

/// A registration from `party` answering the challenge with `nonce`.
fn answering(party: &str, nonce: &str) -> Vec<u8> {
    let text = format!(
        "REGISTER sip:{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP {party}:5070;branch=z9hG4bK2\r\nFrom: <sip:100@{SERVER}>;tag=1\r\nTo: <sip:100@{SERVER}>\r\nCall-ID: 1@x\r\nCSeq: 3 REGISTER\r\nAuthorization: Digest username=\"100\", realm=\"pbx\", nonce=\"{nonce}\", uri=\"sip:{SERVER}\", response=\"0123\", cnonce=\"{nonce}x\"\r\nContent-Length: 0\r\n\r\n"
    );
    Frame::new(
        party.parse().unwrap(),
        SERVER.parse().unwrap(),
        Transport::Udp { sport: 5070, dport: 5060 },
    )
    .payload(text.as_bytes())
    .build()
}

#[test]
fn a_party_with_standing_is_banned_by_failures_that_answer_its_own_challenges() {
    let mut f = filter();
    let (_, auth, _) = Config::default().behaviour();
    f.respond(&answer(PHONE, "200 OK", "REGISTER"));
    // A forger draws challenges to the phone and answers them with nonces it never saw.
    let mut answered = 0;
    for i in 0..auth {
        f.respond(&challenge(PHONE, &format!("sent{i}")));
        let o = f.expect(&answering(PHONE, &format!("guess{i}")), XDP_PASS, Reason::DefaultPass);
        answered += moved(&o.moved, Misc::ChallengesAnswered);
    }
    assert_eq!(answered, 0);
    assert!(f.ban_of(PHONE).is_none(), "the forger banned the phone");
    // Someone at the phone's address guesses passwords: each guess answers its challenge.
    let mut trips = 0;
    for i in 0..auth {
        f.respond(&challenge(PHONE, &format!("nonce{i}")));
        let o = f.expect(&answering(PHONE, &format!("nonce{i}")), XDP_PASS, Reason::DefaultPass);
        answered += moved(&o.moved, Misc::ChallengesAnswered);
        let (_, m) = f.respond(&answer(PHONE, "403 Forbidden", "REGISTER"));
        trips += moved(&m, Misc::BehaviourAuthFailures);
        if f.ban_of(PHONE).is_some() {
            break;
        }
    }
    assert_eq!(trips, 1);
    assert_eq!(answered, u64::from(auth) / 2, "a guess costs two failures");
    let ban = f.ban_of(PHONE).expect("the guesser is banned");
    assert_eq!(ban.rule, Some("auth_failures"));
    let e = f.events().into_iter().last().expect("a record");
    assert_eq!((&e["verified"], &e["banned"]), (&true.into(), &true.into()), "{e}");
}

/// A proxy challenge to `party` for its call `call` (an INVITE's first answer).
fn proxy_challenge(party: &str, call: &str, nonce: &str) -> Vec<u8> {
    let text = format!(
        "SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP {party}:5070;branch=z9hG4bK1\r\nFrom: <sip:100@{SERVER}>;tag=1\r\nTo: <sip:4930123456@{SERVER}>;tag=2\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\nProxy-Authenticate: Digest realm=\"pbx\", nonce=\"{nonce}\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n"
    );
    Frame::udp(SERVER, party, 5070).payload(text.as_bytes()).build()
}

/// The call `call` from `party` again, with credentials for the challenge with `nonce`.
fn credentialed_invite(party: &str, call: &str, nonce: &str) -> Vec<u8> {
    let text = format!(
        "INVITE sip:4930123456@{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP {party}:5070;branch=z9hG4bK3\r\nFrom: <sip:100@{SERVER}>;tag=1\r\nTo: <sip:4930123456@{SERVER}>\r\nCall-ID: {call}\r\nCSeq: 2 INVITE\r\nProxy-Authorization: Digest username=\"100\", realm=\"pbx\", nonce=\"{nonce}\", uri=\"sip:4930123456@{SERVER}\", response=\"0123\"\r\nContact: <sip:100@{party}:5070>\r\nContent-Length: 0\r\n\r\n"
    );
    Frame::new(
        party.parse().unwrap(),
        SERVER.parse().unwrap(),
        Transport::Udp { sport: 5070, dport: 5060 },
    )
    .payload(text.as_bytes())
    .build()
}

/// The final answer `status` to the credentialed INVITE of the call `call`.
fn call_answer(party: &str, call: &str, status: &str) -> Vec<u8> {
    let text = format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP {party}:5070;branch=z9hG4bK3\r\nFrom: <sip:100@{SERVER}>;tag=1\r\nTo: <sip:4930123456@{SERVER}>;tag=3\r\ni: {call}\r\nCSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    Frame::udp(SERVER, party, 5070).payload(text.as_bytes()).build()
}

#[test]
fn challenged_calls_taken_with_credentials_are_not_failures_and_refused_ones_are() {
    let mut f = filter();
    let (_, auth, _) = Config::default().behaviour();
    f.respond(&answer(PHONE, "200 OK", "REGISTER"));
    // A call centre: every call challenged, answered with its nonce, then busy or unanswered
    // (no success at all), five times the threshold over.
    let mut answered = 0;
    for i in 0..5 * auth {
        let call = format!("cc{i}@10.1.1.1");
        let (_, m) = f.respond(&proxy_challenge(PHONE, &call, &format!("n{i}")));
        assert_eq!(moved(&m, Misc::BehaviourAuthFailures), 0, "call {i}: {m:?}");
        let o = f.expect(
            &credentialed_invite(PHONE, &call, &format!("n{i}")),
            XDP_PASS,
            Reason::DefaultPass,
        );
        answered += moved(&o.moved, Misc::ChallengesAnswered);
        let status = if i % 2 == 0 { "486 Busy Here" } else { "480 Temporarily Unavailable" };
        let (_, m) = f.respond(&call_answer(PHONE, &call, status));
        assert_eq!(moved(&m, Misc::AttemptsRefused), 0, "{m:?}");
        assert_eq!(moved(&m, Misc::AttemptsAccepted), 1, "{m:?}");
    }
    assert_eq!(answered, u64::from(5 * auth));
    assert!(f.ban_of(PHONE).is_none(), "the call centre was banned");
    assert!(f.events().is_empty());

    // Challenges drawn by calls the party never made (other Call-IDs) are no refusal of its
    // attempts; a refusal of one of its own calls is.
    let call = "cc-last@10.1.1.1";
    f.respond(&proxy_challenge(PHONE, call, "last"));
    f.expect(&credentialed_invite(PHONE, call, "last"), XDP_PASS, Reason::DefaultPass);
    let (_, m) = f.respond(&proxy_challenge(PHONE, "forged@10.9.9.9", "other"));
    assert_eq!(moved(&m, Misc::AttemptsRefused), 0, "{m:?}");
    let (_, m) = f.respond(&call_answer(PHONE, call, "407 Proxy Authentication Required"));
    assert_eq!(moved(&m, Misc::AttemptsRefused), 1, "{m:?}");
    let (_, m) = f.respond(&call_answer(PHONE, call, "407 Proxy Authentication Required"));
    assert_eq!(moved(&m, Misc::AttemptsRefused), 0, "a retransmission refuses nothing more: {m:?}");
}

#[test]
fn credentials_the_server_never_takes_earn_no_credit() {
    let mut f = filter();
    let (_, auth, _) = Config::default().behaviour();
    f.respond(&answer(PHONE, "200 OK", "REGISTER"));
    // Each challenge's nonce is echoed in a request of the same Call-ID that the server
    // answers without checking credentials (a 200 to an OPTIONS): no answer to an INVITE or
    // a REGISTER takes the attempt, so every challenge stays a failure.
    let mut tripped_at = None;
    for i in 0..2 * auth {
        let (_, m) = f.respond(&challenge(PHONE, &format!("n{i}")));
        if moved(&m, Misc::BehaviourAuthFailures) == 1 {
            tripped_at = Some(i + 1);
            break;
        }
        f.expect(&answering(PHONE, &format!("n{i}")), XDP_PASS, Reason::DefaultPass);
        let (_, m) = f.respond(&answer(PHONE, "200 OK", "OPTIONS"));
        assert_eq!(moved(&m, Misc::AttemptsAccepted), 0, "{m:?}");
    }
    assert_eq!(tripped_at, Some(auth), "tripped at the threshold, as without the attempts");
}
