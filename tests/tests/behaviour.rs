//! The real response program (TC egress) under `BPF_PROG_TEST_RUN`: crafted answers leaving a
//! protected server, every parse path, the behaviour rules with their defaults, and the ban
//! the XDP program then enforces.

use sipguard::kernel::maps::ListKind;
use sipguard_common::{
    config::{Config, Mode},
    counters::{Misc, Reason},
};
use sipguard_tests::{
    frames::{ETH_P_8021AD, ETH_P_8021Q, Ext, Frame, Transport},
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

/// What a TC program returns to leave the packet to the next program or the default:
/// `TC_ACT_UNSPEC`, which tcx calls `TCX_NEXT`.
const CARRY_ON: i32 = -1;
const SERVER: &str = "192.0.2.1";
const PARTY: &str = "198.51.100.7";

/// An answer to a registration, of a transaction of its own (a `CSeq` number no other answer
/// of the test has): the same answer sent twice is a retransmission, and a success is counted
/// once however often it is retransmitted.
fn answer(status: &str) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    answer_to(status, &format!("CSeq: {n} REGISTER"))
}

/// An answer whose `CSeq` line is `cseq`.
fn answer_to(status: &str, cseq: &str) -> Vec<u8> {
    format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK1\r\nFrom: <sip:100@192.0.2.1>;tag=1\r\nTo: <sip:100@192.0.2.1>;tag=2\r\nCall-ID: 1@198.51.100.7\r\n{cseq}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// An answer from the server's SIP port to `party`.
fn to(party: &str, status: &str) -> Vec<u8> {
    Frame::udp(if party.contains(':') { "2001:db8::1" } else { SERVER }, party, 5070)
        .payload(answer(status))
        .build()
}

/// A request from `party` to the server, for the XDP program.
fn request_from(party: &str) -> Vec<u8> {
    let server = if party.contains(':') { "2001:db8::1" } else { SERVER };
    Frame::new(
        party.parse().unwrap(),
        server.parse().unwrap(),
        Transport::Udp { sport: 5070, dport: 5060 },
    )
    .payload(b"REGISTER sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070\r\n\r\n")
    .build()
}

fn moved(m: &[(u32, u64)], c: Misc) -> u64 {
    m.iter().find(|(s, _)| *s == c.slot()).map_or(0, |(_, d)| *d)
}

/// Sends `frame` through the response program `n` times; returns the trips counted.
fn respond_n(f: &mut TestFilter, frame: &[u8], n: usize) -> u64 {
    let mut trips = 0;
    for _ in 0..n {
        let (ret, m) = f.respond(frame);
        assert_eq!(ret, CARRY_ON, "answers are handed on, never dropped");
        trips += moved(&m, Misc::BehaviourAuthFailures) + moved(&m, Misc::BehaviourNotFound);
    }
    trips
}

#[test]
fn a_brute_forcer_is_banned_by_its_answers_and_then_dropped() {
    let mut f = TestFilter::new();
    let (_, auth, _) = Config::default().behaviour();
    f.expect(&request_from(PARTY), XDP_PASS, Reason::DefaultPass);
    let challenge = to(PARTY, "401 Unauthorized");
    let (_, m) = f.respond(&challenge);
    assert_eq!(moved(&m, Misc::Responses), 1, "the answer is counted: {m:?}");
    // One short of the threshold: nothing happens.
    assert_eq!(respond_n(&mut f, &challenge, usize::from(auth) - 2), 0);
    assert!(f.ban_of(PARTY).is_none(), "banned before the threshold");
    let (ret, m) = f.respond(&to(PARTY, "403 Forbidden"));
    assert_eq!(ret, CARRY_ON);
    assert_eq!(moved(&m, Misc::BehaviourAuthFailures), 1, "{m:?}");
    assert_eq!(moved(&m, Misc::BansAdded), 1, "{m:?}");
    let ban = f.ban_of(PARTY).expect("the party is banned");
    assert_eq!(ban.rule, Some("auth_failures"));
    assert!(!ban.monitor);
    let events = f.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["reason"], "behaviour");
    assert_eq!(e["rule"], "auth_failures");
    assert_eq!(e["source"], PARTY, "the record names the party as its source");
    assert_eq!(e["destination"], SERVER);
    assert_eq!(e["source_port"], 5070);
    assert_eq!(e["destination_port"], 5060);
    assert_eq!(e["banned"], true);
    assert_eq!(e["counts"]["challenges"], u64::from(auth) - 1);
    assert_eq!(e["counts"]["forbidden"], 1);
    // The XDP program now drops the party before anything else.
    f.expect(&request_from(PARTY), XDP_DROP, Reason::Banned);
}

#[test]
fn challenges_answered_with_success_never_ban() {
    let mut f = TestFilter::new();
    // 50 phones behind one address, each challenged and then accepted, ten times over.
    for _ in 0..500 {
        let (challenge, ok) = (to(PARTY, "401 Unauthorized"), to(PARTY, "200 OK"));
        assert_eq!(respond_n(&mut f, &challenge, 1) + respond_n(&mut f, &ok, 1), 0);
    }
    assert!(f.ban_of(PARTY).is_none());
}

#[test]
fn pings_answered_with_success_do_not_offset_a_brute_forcers_failures() {
    let mut f = TestFilter::new();
    let (_, auth, _) = Config::default().behaviour();
    let frame = |status: &str, cseq: &str| {
        Frame::udp(SERVER, PARTY, 5070).payload(answer_to(status, cseq)).build()
    };
    let ping_ok = frame("200 OK", "CSeq: 7 OPTIONS");
    let no_cseq_ok = frame("200 OK", "X-Note: no CSeq here");
    let guess = frame("401 Unauthorized", "cseq :  8\tREGISTER");
    let mut trips = 0;
    for _ in 0..auth {
        trips += respond_n(&mut f, &ping_ok, 3) + respond_n(&mut f, &no_cseq_ok, 3);
        trips += respond_n(&mut f, &guess, 1);
    }
    assert_eq!(trips, 1, "banned at the threshold, pings or not");
    assert_eq!(f.ban_of(PARTY).map(|b| b.rule), Some(Some("auth_failures")));
    let counts = &f.events()[0]["counts"];
    assert_eq!(counts["successes"], 0, "{counts}");
    // A server that challenges OPTIONS: a keepalive's challenge is no failure either.
    let other = "198.51.100.9";
    let ping_challenged = Frame::udp(SERVER, other, 5070)
        .payload(answer_to("401 Unauthorized", "CSeq: 1 OPTIONS"))
        .build();
    assert_eq!(respond_n(&mut f, &ping_challenged, 200), 0);
    assert!(f.ban_of(other).is_none());
}

/// A success retransmitted (the 200 OK to an INVITE the party never acknowledges: a
/// voicemail answered a guesser's call, and the server sends it again for 32 s) counts once:
/// seven copies offset one failure. Seven calls answered offset seven.
#[test]
fn a_retransmitted_success_offsets_one_failure_not_seven() {
    let mut f = TestFilter::new();
    let (_, auth, _) = Config::default().behaviour();
    let auth = usize::from(auth);
    let frame = |party: &str, status: &str, cseq: &str, call: u32| {
        let text = String::from_utf8(answer_to(status, cseq)).unwrap();
        let text = text.replace("Call-ID: 1@", &format!("Call-ID: {call}@"));
        Frame::udp(SERVER, party, 5070).payload(text).build()
    };
    for (party, calls) in [(PARTY, [1; 7]), ("198.51.100.8", [1, 2, 3, 4, 5, 6, 7])] {
        let guess = frame(party, "401 Unauthorized", "CSeq: 8 REGISTER", 99);
        // Failures first, so that a success has something to offset.
        let mut trips = respond_n(&mut f, &guess, auth - 1);
        for call in calls {
            trips += respond_n(&mut f, &frame(party, "200 OK", "CSeq: 1 INVITE", call), 1);
        }
        trips += respond_n(&mut f, &guess, 2);
        let once = calls[1] == calls[0];
        assert_eq!(
            trips,
            u64::from(once),
            "{party}: the successes offset {}",
            if once { 1 } else { 7 }
        );
    }
    let counts = &f.events()[0]["counts"];
    assert_eq!(counts["successes"], 1, "{counts}");
}

#[test]
fn an_enumerator_is_banned_by_not_found_but_a_trunks_misdials_are_not() {
    let mut f = TestFilter::new();
    let (_, _, not_found) = Config::default().behaviour();
    // A trunk: 30 successes for each misdial.
    let trunk = "198.51.100.20";
    for _ in 0..100 {
        for _ in 0..30 {
            assert_eq!(respond_n(&mut f, &to(trunk, "200 OK"), 1), 0);
        }
        assert_eq!(respond_n(&mut f, &to(trunk, "404 Not Found"), 1), 0);
    }
    assert!(f.ban_of(trunk).is_none());
    // An enumerator: "not found" for nearly every extension, whichever code says it.
    let scanner = "198.51.100.21";
    let codes = ["404 Not Found", "484 Address Incomplete", "604 Does Not Exist Anywhere"];
    // Its one success answers no registration or call: it has no standing (`trust.rs`).
    let bye_ok =
        Frame::udp(SERVER, scanner, 5070).payload(answer_to("200 OK", "CSeq: 3 BYE")).build();
    let mut trips = respond_n(&mut f, &bye_ok, 1);
    for i in 0..usize::from(not_found) {
        trips += respond_n(&mut f, &to(scanner, codes[i % 3]), 1);
    }
    assert_eq!(trips, 1);
    assert_eq!(f.ban_of(scanner).expect("the enumerator is banned").rule, Some("not_found"));
}

#[test]
fn every_parse_path_reaches_the_rules() {
    let mut f = TestFilter::new();
    f.set_config(Config::default().with_behaviour(60, 3, 3));
    let variants: Vec<(&str, Frame)> = vec![
        ("198.51.100.31", Frame::udp(SERVER, "198.51.100.31", 5070)),
        ("2001:db8:9::31", Frame::udp("2001:db8::1", "2001:db8:9::31", 5070)),
        (
            "198.51.100.32",
            Frame::udp(SERVER, "198.51.100.32", 5070)
                .vlan(ETH_P_8021AD, 100)
                .vlan(ETH_P_8021Q, 200),
        ),
        ("198.51.100.33", Frame::udp(SERVER, "198.51.100.33", 5070).ipv4_options(&[1, 1, 1, 1])),
        (
            "2001:db8:9::34",
            Frame::udp("2001:db8::1", "2001:db8:9::34", 5070)
                .ext(Ext::HopByHop(1))
                .ext(Ext::DestOpts(2)),
        ),
        (
            "198.51.100.35",
            Frame::new(
                SERVER.parse().unwrap(),
                "198.51.100.35".parse().unwrap(),
                Transport::Tcp {
                    sport: 5060,
                    dport: 40000,
                    flags: 0x18,
                    options: vec![1, 1, 1, 1],
                },
            ),
        ),
    ];
    for (party, frame) in variants {
        let frame = frame.payload(answer("407 Proxy Authentication Required")).build();
        assert_eq!(respond_n(&mut f, &frame, 3), 1, "{party}");
        assert_eq!(f.ban_of(party).map(|b| b.rule), Some(Some("auth_failures")), "{party}");
    }
}

#[test]
fn what_is_not_an_answer_from_a_sip_port_is_ignored() {
    let mut f = TestFilter::new();
    let ignored = [
        // Not from a SIP port.
        Frame::new(
            SERVER.parse().unwrap(),
            PARTY.parse().unwrap(),
            Transport::Udp { sport: 5070, dport: 5060 },
        )
        .payload(answer("401 Unauthorized"))
        .build(),
        // A request, not an answer.
        Frame::udp(SERVER, PARTY, 5070).payload(b"OPTIONS sip:x SIP/2.0\r\n\r\n").build(),
        // Malformed status lines.
        Frame::udp(SERVER, PARTY, 5070).payload(b"SIP/2.0 40x Unauthorized\r\n\r\n").build(),
        Frame::udp(SERVER, PARTY, 5070).payload(b"SIP/2.0 4011 Unauthorized\r\n").build(),
        Frame::udp(SERVER, PARTY, 5070).payload(b"SIP/2.0 401").build(),
        Frame::udp(SERVER, PARTY, 5070).payload(b"").build(),
        // A non-first fragment.
        Frame::udp(SERVER, PARTY, 5070)
            .ipv4_fragment(100, false)
            .payload(answer("401 Unauthorized"))
            .build(),
    ];
    for frame in &ignored {
        for _ in 0..50 {
            let (ret, m) = f.respond(frame);
            assert_eq!(ret, CARRY_ON);
            assert_eq!(moved(&m, Misc::Responses), 0, "{m:?}");
        }
    }
    // Truncated at every byte of the headers and the status line: handed on, nothing
    // counted, no fault. (Newer kernels refuse to build a test skb whose IPv4 header is
    // incomplete, as no such packet reaches egress; from there on every cut must run.)
    let whole = to(PARTY, "401 Unauthorized");
    let ip_end = 14 + 20;
    for cut in 15..ip_end + 8 + 16 {
        let (ret, m) = match f.try_respond(&whole[..cut]) {
            Ok(run) => run,
            Err(_) if cut < ip_end => continue,
            Err(e) => panic!("cut at {cut}: {e}"),
        };
        assert_eq!(ret, CARRY_ON, "cut at {cut}");
        assert_eq!(moved(&m, Misc::Responses), 0, "cut at {cut}: {m:?}");
    }
    assert!(f.ban_of(PARTY).is_none());
}

#[test]
fn allowlisted_parties_are_never_judged() {
    let mut f = TestFilter::new();
    f.add(ListKind::Allow, &["198.51.100.0/24"]);
    assert_eq!(respond_n(&mut f, &to(PARTY, "401 Unauthorized"), 100), 0);
    assert!(f.ban_of(PARTY).is_none());
}

#[test]
fn monitor_mode_counts_the_ban_it_would_make() {
    let mut f = TestFilter::new();
    f.set_config(Config::default().with_mode(Mode::Monitor).with_behaviour(60, 5, 5));
    assert_eq!(respond_n(&mut f, &to(PARTY, "401 Unauthorized"), 5), 1);
    assert!(f.ban_of(PARTY).expect("a monitor ban").monitor);
    assert_eq!(f.events()[0]["monitor"], true);
    let o = f.expect(&request_from(PARTY), XDP_PASS, Reason::Banned);
    assert!(o.monitored);
}

#[test]
fn a_threshold_of_zero_turns_its_rule_off() {
    let mut f = TestFilter::new();
    f.set_config(Config::default().with_behaviour(60, 0, 5));
    assert_eq!(respond_n(&mut f, &to(PARTY, "401 Unauthorized"), 200), 0);
    assert!(f.ban_of(PARTY).is_none());
    assert_eq!(respond_n(&mut f, &to(PARTY, "404 Not Found"), 5), 1, "the other rule still works");
    f.set_config(Config::default().with_behaviour(0, 5, 5));
    assert_eq!(respond_n(&mut f, &to("198.51.100.8", "404 Not Found"), 50), 0, "window 0: all off");
}

/// An INVITE (or, with `tag`, a request inside a dialog) from `party` to `user`.
fn call(party: &str, user: &str, tag: bool) -> Vec<u8> {
    let tag = if tag { ";tag=9" } else { "" };
    Frame::udp(party, SERVER, 5060)
        .payload(format!(
            "INVITE sip:{user}@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bK{user}\r\nFrom: <sip:2000@192.0.2.1>;tag=1\r\nTo: <sip:{user}@192.0.2.1>{tag}\r\nCall-ID: {user}@198.51.100.7\r\nCSeq: 1 INVITE\r\nUser-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n\r\n"
        ))
        .build()
}

/// Sends requests to users `users` until one trips `extension_scan`; returns how many went.
fn sweep(f: &mut TestFilter, party: &str, users: std::ops::Range<u32>, tag: bool) -> Option<u32> {
    for (n, user) in (1..).zip(users) {
        let o = f.expect(&call(party, &user.to_string(), tag), XDP_PASS, Reason::DefaultPass);
        if moved(&o.moved, Misc::BehaviourExtensionScan) == 1 {
            return Some(n);
        }
    }
    None
}

#[test]
fn a_sweep_of_extensions_is_banned_by_the_users_it_addresses() {
    let mut f = TestFilter::new();
    f.events();
    let limit = f.config().extension_scan();
    let n = sweep(&mut f, PARTY, 100..400, false).expect("the sweep tripped the rule");
    // Linear counting over 64 bits: the threshold's worth of users, give or take a quarter.
    let limit32 = u32::from(limit);
    assert!((limit32 * 3 / 4..=limit32 * 3 / 2).contains(&n), "tripped after {n} users");
    let ban = f.ban_of(PARTY).expect("banned");
    assert_eq!((ban.rule, ban.reason), (Some("extension_scan"), "behaviour"));
    f.expect(&call(PARTY, "999", false), XDP_DROP, Reason::Banned);
    let events = f.events();
    let e = events.iter().find(|e| e["rule"] == "extension_scan").expect("a record");
    assert_eq!(
        (&e["reason"], &e["source"], &e["banned"]),
        (&"behaviour".into(), &PARTY.into(), &true.into())
    );
    assert!(e["counts"]["users"].as_u64().unwrap() >= u64::from(limit), "{e}");
    assert_eq!(e["counts"]["successes"], 0, "{e}");
}

#[test]
fn users_that_are_served_dialogs_and_one_user_again_are_not_a_sweep() {
    let mut f = TestFilter::new();
    // An office registering 100 phones behind one address, each accepted.
    for user in 100..200u32 {
        let register = Frame::udp(PARTY, SERVER, 5060)
            .payload(format!(
                "REGISTER sip:192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5070\r\nTo: <sip:{user}@192.0.2.1>\r\nFrom: <sip:{user}@192.0.2.1>;tag=1\r\nCSeq: 1 REGISTER\r\n\r\n"
            ))
            .build();
        let o = f.expect(&register, XDP_PASS, Reason::DefaultPass);
        assert_eq!(moved(&o.moved, Misc::BehaviourExtensionScan), 0, "user {user}");
        assert_eq!(respond_n(&mut f, &to(PARTY, "200 OK"), 1), 0);
    }
    // Requests inside dialogs go to the contact address and say nothing about a sweep.
    assert_eq!(sweep(&mut f, "198.51.100.8", 100..400, true), None);
    // A phone calling the same colleague all day.
    for _ in 0..300 {
        assert_eq!(sweep(&mut f, "198.51.100.9", 100..101, false), None);
    }
    assert!(f.ban_of(PARTY).is_none() && f.ban_of("198.51.100.8").is_none());
}

/// Calls `calls` distinct subscriber numbers from `party`, one in `answered_of` answered (a
/// 200 to the INVITE, which gives the party standing; 0: none); returns the call that
/// tripped `extension_scan`, if one did.
fn dial(f: &mut TestFilter, party: &str, calls: u32, answered_of: u32) -> Option<u32> {
    let answered =
        Frame::udp(SERVER, party, 5070).payload(answer_to("200 OK", "CSeq: 1 INVITE")).build();
    for n in 1..=calls {
        let number = format!("4930{:07}", 1_234_567 + n * 7919);
        let o = f.expect(&call(party, &number, false), XDP_PASS, Reason::DefaultPass);
        if moved(&o.moved, Misc::BehaviourExtensionScan) == 1 {
            return Some(n);
        }
        if answered_of != 0 && n % answered_of == 0 {
            f.respond(&answered);
        }
    }
    None
}

/// An outbound dialer on an IP-authenticated trunk: distinct numbers, a fifth of the calls
/// answered (issue 26's measurement: with the rule alone it tripped after about 40 numbers).
#[test]
fn a_dialer_with_standing_calling_numbers_is_not_a_sweep() {
    let mut f = TestFilter::new();
    // Without standing (the check off), numbers nobody answers are judged like a sweep, on
    // a sample of them (`behaviour::NUMBER_SAMPLE`): at about four times the 40 extensions.
    f.set_config(Config::default().with_standing(0));
    let tripped = dial(&mut f, "198.51.100.21", 600, 0).expect("numbers count without standing");
    assert!((100..=260).contains(&tripped), "tripped after {tripped} calls");

    // With standing, earned by its answered calls, the dialer calls on.
    f.set_config(Config::default());
    let dialer = "198.51.100.20";
    assert_eq!(dial(&mut f, dialer, 600, 5), None, "the dialer was judged a sweep");
    // A dialer starting cold: fifty calls ring before its first is answered (ten seconds at
    // 300 a minute); a sample of its numbers counts meanwhile, far from the threshold, and
    // none once an answer gives it standing.
    let cold = "198.51.100.22";
    assert_eq!(dial(&mut f, cold, 50, 0), None, "a cold dialer's first seconds");
    assert_eq!(dial(&mut f, cold, 600, 5), None, "the dialer went on");
    assert!(f.ban_of(dialer).is_none());

    // Standing does not cover a sweep of extensions from the same address.
    let n = sweep(&mut f, dialer, 100..400, false).expect("the extension sweep tripped the rule");
    assert!(n <= 80, "tripped after {n} extensions");
}

/// A "not found" answer to `party`'s INVITE for `user`: the answer repeats the request's `To`.
fn not_found_for(party: &str, user: &str) -> Vec<u8> {
    let text = String::from_utf8(answer_to("404 Not Found", "CSeq: 1 INVITE")).unwrap();
    let text = text.replace("To: <sip:100@", &format!("To: <sip:{user}@"));
    Frame::udp(SERVER, party, 5070).payload(text).build()
}

/// A dialer's list has stale numbers: "not found" for numbers that a party with standing
/// dialled is not counted (`numbers_not_found` instead); for extensions, or for a party
/// without standing, it is.
#[test]
fn a_dialers_stale_numbers_are_not_an_enumeration() {
    let mut f = TestFilter::new();
    let (_, _, threshold) = Config::default().behaviour();
    let answered = |party: &str| {
        Frame::udp(SERVER, party, 5070).payload(answer_to("200 OK", "CSeq: 1 INVITE")).build()
    };
    let dialer = "198.51.100.20";
    // Standing, from an answered call; then one answer for every four numbers gone.
    assert_eq!(respond_n(&mut f, &answered(dialer), 1), 0);
    let gone = 5 * u32::from(threshold);
    let mut excused = 0;
    for n in 0..gone {
        let (ret, m) = f.respond(&not_found_for(dialer, &format!("4930{:07}", 1_000_000 + n)));
        assert_eq!(ret, CARRY_ON);
        assert_eq!(moved(&m, Misc::BehaviourNotFound), 0, "a stale number tripped the rule");
        excused += moved(&m, Misc::NumbersNotFound);
        if n % 4 == 3 {
            respond_n(&mut f, &answered(dialer), 1);
        }
    }
    assert_eq!(excused, u64::from(gone), "each stale number is counted as one");
    assert!(f.ban_of(dialer).is_none());

    // The same address enumerating extensions: counted, standing or not (its standing then
    // withholds the ban the unverified evidence calls for, `trust.rs`).
    let (mut trips, mut withheld) = (0, 0);
    for n in 0..u32::from(threshold) {
        let (_, m) = f.respond(&not_found_for(dialer, &format!("{}", 200 + n)));
        trips += moved(&m, Misc::BehaviourNotFound);
        withheld += moved(&m, Misc::BansWithheldStanding);
    }
    assert_eq!((trips, withheld), (1, 1), "the enumeration of extensions tripped the rule");

    // Numbers, from a party that never had a call answered: counted.
    let stranger = "198.51.100.22";
    let mut trips = 0;
    for n in 0..u32::from(threshold) {
        let frame = not_found_for(stranger, &format!("4930{:07}", 2_000_000 + n));
        trips += respond_n(&mut f, &frame, 1);
    }
    assert_eq!(trips, 1);
    assert_eq!(f.ban_of(stranger).expect("banned").rule, Some("not_found"));
}

#[test]
fn extension_scan_is_off_at_zero_and_only_counts_in_monitor_mode() {
    let mut f = TestFilter::new();
    f.set_config(Config::default().with_extension_scan(0));
    assert_eq!(sweep(&mut f, PARTY, 100..400, false), None);
    f.set_config(Config::default().with_mode(Mode::Monitor));
    assert!(sweep(&mut f, PARTY, 100..400, false).is_some());
    let ban = f.ban_of(PARTY).expect("a monitor ban");
    assert!(ban.monitor);
    // Monitor mode: the banned source still passes.
    let o = f.run(&call(PARTY, "999", false));
    assert_eq!((o.action, o.monitored), (XDP_PASS, true));
}
