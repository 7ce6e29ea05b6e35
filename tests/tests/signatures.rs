//! Scanner detection in the real XDP program under `BPF_PROG_TEST_RUN`: every scope, header
//! forms, whitespace and case, URI anchoring, weights, truncation, bans, the rate limit,
//! events, the corpora, and a differential test against the reference matcher.

use sipguard::signatures::{Signature, reference};
use sipguard_common::{
    config::{Config, Mode},
    counters::Reason,
    inspect::{Kind, Scope},
};
use sipguard_tests::{
    corpus,
    frames::Frame,
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const SRC: &str = "198.51.100.7";
const PBX: &str = "192.0.2.1";

fn sig(name: &str, scope: Scope, kind: Kind, value: &str, weight: u8) -> Signature {
    Signature::new(name, scope, kind, value, weight).unwrap()
}

fn udp(payload: &[u8]) -> Vec<u8> {
    Frame::udp(SRC, PBX, 5060).payload(payload).build()
}

/// A filter without bans (so one source can send many messages) and the given signatures.
fn filter(sigs: Vec<Signature>) -> TestFilter {
    let f = TestFilter::new();
    f.set_config(Config::default().with_ban_ttl(0));
    f.signatures(sigs);
    f
}

fn msg(start: &str, headers: &[&str]) -> Vec<u8> {
    let mut text = format!("{start}\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

fn dropped(f: &mut TestFilter, payload: &[u8]) -> bool {
    let o = f.run(&udp(payload));
    match o.reason {
        Reason::Signature => {
            assert_eq!(o.action, XDP_DROP);
            true
        }
        Reason::DefaultPass => false,
        other => panic!("unexpected reason {other:?} for {}", String::from_utf8_lossy(payload)),
    }
}

#[test]
fn every_scope_matches_its_own_header_only() {
    let scopes = [
        (Scope::Via, "Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1 token-v"),
        (Scope::From, "From", "<sip:1@x>;tag=1 token-f"),
        (Scope::To, "To", "<sip:1@x> token-t"),
        (Scope::Contact, "Contact", "<sip:1@x> token-m"),
        (Scope::CallId, "Call-ID", "abc@x token-i"),
        (Scope::UserAgent, "User-Agent", "phone token-u"),
    ];
    let mut sigs: Vec<Signature> = scopes
        .iter()
        .enumerate()
        .map(|(i, (s, _, v))| {
            sig(&format!("s{i}"), *s, Kind::Contains, v.rsplit(' ').next().unwrap(), 100)
        })
        .collect();
    sigs.push(sig("ruri", Scope::RequestUri, Kind::Prefix, "sip:evil@", 100));
    sigs.push(sig("any", Scope::Any, Kind::Contains, "token-any", 100));
    let mut f = filter(sigs);
    for (i, (_, name, value)) in scopes.iter().enumerate() {
        let header = format!("{name}: {value}");
        assert!(dropped(&mut f, &msg("OPTIONS sip:100@pbx SIP/2.0", &[&header])), "{header}");
        // The same value in another header does not match.
        let other = scopes[(i + 1) % scopes.len()].1;
        let elsewhere = format!("{other}: {value}");
        assert!(
            !dropped(&mut f, &msg("OPTIONS sip:100@pbx SIP/2.0", &[&elsewhere])),
            "{elsewhere}"
        );
    }
    assert!(dropped(&mut f, &msg("INVITE sip:evil@pbx SIP/2.0", &["Via: x"])));
    assert!(!dropped(&mut f, &msg("INVITE sip:100@pbx SIP/2.0", &["Via: sip:evil@"])));
    assert!(dropped(&mut f, &msg("REGISTER sip:pbx SIP/2.0", &["X-Anything: 1 token-any 2"])));
    assert!(
        dropped(&mut f, &msg("SUBSCRIBE sip:evil@pbx SIP/2.0", &["Event: dialog"])),
        "a method longer than 8 bytes"
    );
    // Server is the User-Agent of responses.
    assert!(dropped(&mut f, &msg("SIP/2.0 200 OK", &["Server: box token-u"])));
    assert!(!dropped(&mut f, &msg("SIP/2.0 200 OK", &["Warning: token-u"])));
}

#[test]
fn header_forms_case_and_whitespace() {
    let mut f = filter(vec![
        sig("ua", Scope::UserAgent, Kind::Prefix, "friendly-scanner", 100),
        sig("from", Scope::From, Kind::Prefix, "\"sipvicious\"", 100),
        sig("cid", Scope::CallId, Kind::Equals, r"\d+", 100),
    ]);
    for h in [
        "User-Agent: friendly-scanner",
        "user-agent:friendly-scanner",
        "USER-AGENT :   Friendly-Scanner",
        "User-Agent\t:\tFRIENDLY-SCANNER/1.0",
        "From: \"sipvicious\"<sip:100@1.1.1.1>",
        "f: \"SIPVicious\" <sip:100@1.1.1.1>",
        "F  :\"sipvicious\"",
        "Call-ID: 18270739203491303020298",
        "i: 123",
        "CALL-ID:  42  ",
    ] {
        assert!(
            dropped(
                &mut f,
                &msg("OPTIONS sip:100@pbx SIP/2.0", &["Via: SIP/2.0/UDP x", h, "CSeq: 1 OPTIONS"])
            ),
            "{h}"
        );
    }
    for h in [
        "User-Agent: not friendly-scanner",
        "User-Agentx: friendly-scanner",
        "X-User-Agent: friendly-scanner",
        "From: <sip:sipvicious@x>",
        "Call-ID: 123@host",
        "Call-ID: 12a3",
    ] {
        assert!(
            !dropped(&mut f, &msg("OPTIONS sip:100@pbx SIP/2.0", &["Via: SIP/2.0/UDP x", h])),
            "{h}"
        );
    }
    // A folded continuation of the User-Agent value.
    assert!(dropped(
        &mut f,
        &msg("OPTIONS sip:100@pbx SIP/2.0", &["User-Agent:", "  friendly-scanner"])
    ));
    // Short lines without a colon: the colon of the next line, within the same 16 bytes, is
    // not theirs, and the next line is still inspected.
    for before in ["X", "ab", "Junk-No-Colon"] {
        assert!(
            dropped(
                &mut f,
                &msg("OPTIONS sip:100@pbx SIP/2.0", &[before, "User-Agent: friendly-scanner"])
            ),
            "{before}"
        );
    }
}

#[test]
fn name_addr_headers_anchor_at_the_uri_too() {
    let mut f = filter(vec![
        sig("uri", Scope::To, Kind::Prefix, "sip:100@1.1.1.1", 100),
        sig("eq", Scope::Contact, Kind::Equals, "sip:123@1.1.1.1", 100),
    ]);
    for h in [
        "To: <sip:100@1.1.1.1>",
        "To: \"anyone\"<sip:100@1.1.1.1>;tag=1",
        "t: office <sip:100@1.1.1.1:5060>",
        "To: sip:100@1.1.1.1",
    ] {
        assert!(dropped(&mut f, &msg("OPTIONS sip:100@pbx SIP/2.0", &[h])), "{h}");
    }
    for h in ["To: <sip:1000@1.1.1.1>", "To: <sip:1@x>;x=sip:100@1.1.1.1"] {
        assert!(!dropped(&mut f, &msg("OPTIONS sip:100@pbx SIP/2.0", &[h])), "{h}");
    }
    for h in [
        "Contact: sip:123@1.1.1.1",
        "m: <sip:123@1.1.1.1>",
        "Contact: \"x\" <sip:123@1.1.1.1>;expires=60",
    ] {
        assert!(dropped(&mut f, &msg("REGISTER sip:pbx SIP/2.0", &[h])), "{h}");
    }
    assert!(!dropped(&mut f, &msg("REGISTER sip:pbx SIP/2.0", &["Contact: <sip:123@1.1.1.1;ob>"])));
}

#[test]
fn weak_signatures_need_a_second_tell() {
    let mut f = filter(vec![
        sig("weak-cid", Scope::CallId, Kind::Equals, r"\d+", 50),
        sig("weak-via", Scope::Via, Kind::Prefix, "SIP/2.0/UDP 127.0.0.1:", 50),
    ]);
    let one =
        msg("REGISTER sip:pbx SIP/2.0", &["Via: SIP/2.0/UDP 127.0.0.1:5060", "Call-ID: abc@x"]);
    let twice = msg(
        "REGISTER sip:pbx SIP/2.0",
        &["Via: SIP/2.0/UDP 127.0.0.1:5060", "Via: SIP/2.0/UDP 127.0.0.1:5061"],
    );
    let both = msg(
        "REGISTER sip:pbx SIP/2.0",
        &["Via: SIP/2.0/UDP 127.0.0.1:5060", "Call-ID: 2571551857"],
    );
    assert!(!dropped(&mut f, &one));
    assert!(!dropped(&mut f, &twice), "one signature counts once per message");
    assert!(dropped(&mut f, &both));
    let hits = f.hits();
    assert_eq!(hits["weak-via"], 3, "{hits:?}");
    assert_eq!(hits["weak-cid"], 1, "{hits:?}");
}

#[test]
fn a_signature_in_the_last_header_of_a_large_message() {
    let mut f = filter(vec![sig("ua", Scope::UserAgent, Kind::Prefix, "friendly-scanner", 100)]);
    let mut headers: Vec<String> =
        (0..40).map(|i| format!("X-Filler-{i:02}: {}", "v".repeat(20))).collect();
    headers.push("User-Agent: friendly-scanner".into());
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let big = msg("INVITE sip:100@pbx SIP/2.0", &refs);
    assert!(big.len() > 1300 && big.len() <= 1472, "{} bytes", big.len());
    assert!(dropped(&mut f, &big));
    // Over TCP too (the first segment of a stream).
    let tcp = Frame::tcp(SRC, PBX, 5060, 0x18).payload(&big).build();
    assert_eq!(f.run(&tcp).reason, Reason::Signature);
    // Without the header, the same message passes, and inspection reached its end.
    headers.pop();
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    assert!(!dropped(&mut f, &msg("INVITE sip:100@pbx SIP/2.0", &refs)));
}

#[test]
fn truncated_and_garbage_payloads_follow_the_reference() {
    let cat = sipguard::signatures::catalog();
    let mut f = filter(cat.clone());
    for file in
        ["svmap-options.sip", "svmap-register.sip", "svcrack-register.sip", "nmap-options.sip"]
    {
        let full = corpus::message("scanners", file);
        for n in 0..=full.len() {
            let part = &full[..n];
            let expect = reference::judge(part, &cat).dropped;
            let o = f.run(&udp(part));
            assert_eq!(o.reason == Reason::Signature, expect, "{file} cut at {n}: {o:?}");
        }
    }
    let mut rng = corpus::Rng::new(7);
    for _ in 0..300 {
        let n = rng.below(1400);
        let mut junk: Vec<u8> = (0..n).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
        if rng.chance(50) && n > 30 {
            junk[..8].copy_from_slice(b"OPTIONS ");
        }
        let o = f.run(&udp(&junk));
        assert_eq!(
            o.reason == Reason::Signature,
            reference::judge(&junk, &cat).dropped,
            "{junk:?}"
        );
    }
}

#[test]
fn the_corpora_drop_every_scanner_and_no_legitimate_message() {
    let mut f = filter(sipguard::signatures::catalog());
    for (name, m) in corpus::messages("scanners") {
        assert!(dropped(&mut f, &m), "scanner message {name} passed");
    }
    let before = f.hits();
    for (name, m) in corpus::messages("legit") {
        assert!(!dropped(&mut f, &m), "legitimate message {name} dropped");
        let tcp = Frame::tcp(SRC, PBX, 5060, 0x18).payload(&m).build();
        assert_eq!(f.run(&tcp).reason, Reason::DefaultPass, "{name} over TCP");
    }
    for ua in corpus::user_agents() {
        for header in ["User-Agent", "Server"] {
            let h = format!("{header}: {ua}");
            assert!(
                !dropped(
                    &mut f,
                    &msg(
                        "OPTIONS sip:100@pbx SIP/2.0",
                        &["Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx", &h]
                    )
                ),
                "{h}"
            );
        }
    }
    assert_eq!(f.hits(), before, "legitimate traffic hit no signature at all");
}

#[test]
fn a_hit_bans_the_source_and_reports_it_once() {
    let mut f = TestFilter::new();
    f.catalog();
    let svmap = udp(&corpus::message("scanners", "svmap-options.sip"));
    let o = f.expect(&svmap, XDP_DROP, Reason::Signature);
    assert!(!o.monitored);
    // Banned: dropped before any payload work, whatever it sends to a SIP port.
    f.expect(&svmap, XDP_DROP, Reason::Banned);
    f.expect(&Frame::tcp(SRC, PBX, 5060, 0x02).build(), XDP_DROP, Reason::Banned);
    f.expect(&udp(&corpus::message("legit", "yealink-register.sip")), XDP_DROP, Reason::Banned);
    // Other ports are not SIP: untouched.
    f.expect(&Frame::udp(SRC, PBX, 53).payload(b"dns").build(), XDP_PASS, Reason::NotSipPort);
    let events = f.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["reason"], "signature");
    assert_eq!(e["source"], SRC);
    assert_eq!(e["destination"], PBX);
    assert_eq!(e["method"], "OPTIONS");
    assert_eq!(e["user_agent"], "friendly-scanner");
    assert_eq!(e["banned"], true);
    assert_eq!(e["ban_ttl_secs"], 3600);
    assert!(e["signature"].as_str().unwrap().starts_with("sipvicious-"), "{e}");
    // Another source is judged on its own.
    let clean = Frame::udp("203.0.113.5", PBX, 5060)
        .payload(corpus::message("legit", "zoiper-invite-sdp.sip"))
        .build();
    f.expect(&clean, XDP_PASS, Reason::DefaultPass);
}

#[test]
fn allowlisted_sources_are_never_inspected_or_banned() {
    let mut f = TestFilter::new();
    f.catalog();
    f.add(sipguard::kernel::maps::ListKind::Allow, &[SRC]);
    let svmap = udp(&corpus::message("scanners", "svmap-options.sip"));
    for _ in 0..3 {
        f.expect(&svmap, XDP_PASS, Reason::Allowlisted);
    }
    assert!(f.hits().values().all(|h| *h == 0));
    assert!(f.events().is_empty());
}

#[test]
fn monitor_mode_reports_and_bans_but_passes() {
    let mut f = TestFilter::new();
    f.catalog();
    f.set_config(Config::default().with_mode(Mode::Monitor));
    let svmap = udp(&corpus::message("scanners", "svmap-invite.sip"));
    let o = f.expect(&svmap, XDP_PASS, Reason::Signature);
    assert!(o.monitored);
    let o = f.expect(&svmap, XDP_PASS, Reason::Banned);
    assert!(o.monitored);
    let events = f.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["monitor"], true);
    assert_eq!(events[0]["method"], "INVITE");
}

#[test]
fn the_rate_limit_drops_what_exceeds_it() {
    let mut f =
        filter(vec![sig("never", Scope::UserAgent, Kind::Equals, "nothing-matches-this", 100)]);
    // One a second with a burst of five: the budget refills slowly enough that a slow guest
    // still sees the burst run out; the count it passes is bounded by the time it took.
    f.set_config(Config::default().with_ban_ttl(0).with_rate_limit(1, 5));
    let legit = udp(&corpus::message("legit", "asterisk-qualify-options.sip"));
    let start = std::time::Instant::now();
    let mut passed = 0u64;
    let first_drop = loop {
        let o = f.run(&legit);
        if o.action == XDP_DROP {
            break o;
        }
        assert_eq!(o.reason, Reason::DefaultPass, "{o:?}");
        passed += 1;
        assert!(passed < 1_000, "the rate limit never dropped");
    };
    assert_eq!(first_drop.reason, Reason::RateLimited);
    let refills = start.elapsed().as_secs() + 1;
    assert!(
        (6..=6 + refills).contains(&passed),
        "one now and five of burst, plus at most one a second: {passed} in {:?}",
        start.elapsed()
    );
    f.expect(&legit, XDP_DROP, Reason::RateLimited);
    // Reported once, not per packet.
    let events = f.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "rate_limited");
    // Another source has its own budget.
    let other = Frame::udp("203.0.113.9", PBX, 5060)
        .payload(corpus::message("legit", "asterisk-qualify-options.sip"))
        .build();
    f.expect(&other, XDP_PASS, Reason::DefaultPass);
}

#[test]
fn a_flood_yields_bounded_events_and_exact_counters() {
    let mut f = filter(sipguard::signatures::catalog());
    let svmap = udp(&corpus::message("scanners", "svmap-options.sip"));
    let before = f.maps.counters().unwrap();
    let n = 30_000u32;
    let start = std::time::Instant::now();
    f.run_repeated(&svmap, n);
    let took = start.elapsed();
    let after = f.maps.counters().unwrap();
    let delta = |slot: u32| after[slot as usize] - before[slot as usize];
    assert_eq!(
        delta(Reason::Signature.slot(false)),
        u64::from(n),
        "every flood packet counted as a signature drop"
    );
    let sent = delta(sipguard_common::counters::Misc::EventsSent.slot());
    let suppressed = delta(sipguard_common::counters::Misc::EventsSuppressed.slot());
    assert_eq!(sent + suppressed, u64::from(n));
    // The budget: a burst of one second's worth plus the rate over the run's duration
    // (which is long on an emulated CPU).
    let budget = 1000 + u64::try_from(took.as_millis()).unwrap() + 1;
    assert!((1..=budget).contains(&sent), "{sent} events for {n} packets in {took:?}");
    assert!(sent < u64::from(n) / 10, "the budget bounds a flood's events: {sent}");
    assert_eq!(f.events().len() as u64, sent);
}

/// A header name as senders write it: long or compact form, any case, blanks around the
/// colon.
fn header_name(rng: &mut corpus::Rng, long: &str, short: &str) -> String {
    let base = if rng.chance(30) { short } else { long };
    let cased: String = base
        .chars()
        .map(|c| if rng.chance(30) { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect();
    let ws_before = " ".repeat(if rng.chance(15) { rng.below(3) + 1 } else { 0 });
    let ws_after = if rng.chance(20) { "\t".to_owned() } else { " ".repeat(rng.below(3)) };
    format!("{cased}{ws_before}:{ws_after}")
}

/// A random message mixing legitimate and scanner values (and sometimes an SDP body that
/// must not be inspected).
fn random_message(rng: &mut corpus::Rng, uas: &[String]) -> Vec<u8> {
    let scanner_uas = ["friendly-scanner", "sundayddr", "pplsip", "sipcli/v1.8", "Hacker", "iWar"];
    let starts = [
        "OPTIONS sip:100@192.0.2.1 SIP/2.0",
        "REGISTER sip:192.0.2.1 SIP/2.0",
        "INVITE sip:1000@pbx SIP/2.0",
        "OPTIONS sip:nm SIP/2.0",
        "SIP/2.0 200 OK",
        "SUBSCRIBE sip:1@x SIP/2.0",
    ];
    let froms = [
        "\"sipvicious\"<sip:100@1.1.1.1>;tag=1",
        "\"Alice\" <sip:1000@pbx>;tag=9",
        "<sip:nm@nm>;tag=root",
        "\"100\" <sip:100@10.0.0.2>;tag=3206210844",
        "sip:100@1.1.1.1",
        "<sip:smap@x>",
        "\"office\"<sip:100@1.1.1.1>",
    ];
    let contacts = [
        "None",
        "sip:123@1.1.1.1",
        "<sip:1000@192.0.2.5:5060>",
        "sip:100@127.0.0.1:5060",
        "<sip:123@1.1.1.1>;expires=60",
    ];
    let vias = [
        "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2122676748;rport",
        "SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK77ab",
        "SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK-1-2;rport",
    ];
    let call_ids =
        ["18270739203491303020298", "2571551857", "a1b2c3@192.0.2.5", "0_2871396614@192.0.2.44"];
    let mut lines: Vec<String> = Vec::new();
    for _ in 0..=rng.below(12) {
        let line = match rng.below(9) {
            0 => format!("{}{}", header_name(rng, "Via", "v"), rng.pick(&vias)),
            1 => format!("{}{}", header_name(rng, "From", "f"), rng.pick(&froms)),
            2 => format!("{}{}", header_name(rng, "To", "t"), rng.pick(&froms)),
            3 => format!("{}{}", header_name(rng, "Contact", "m"), rng.pick(&contacts)),
            4 => format!("{}{}", header_name(rng, "Call-ID", "i"), rng.pick(&call_ids)),
            5 => {
                let ua = if rng.chance(30) {
                    (*rng.pick(&scanner_uas)).to_owned()
                } else {
                    rng.pick(uas).clone()
                };
                format!("{}{ua}", header_name(rng, "User-Agent", "User-Agent"))
            }
            6 => format!(
                "X-Note-{}: {}",
                rng.below(100),
                if rng.chance(10) { "an evil-token here" } else { "nothing" }
            ),
            7 => format!("CSeq: {} OPTIONS", rng.below(1000)),
            _ => format!("Max-Forwards: {}", rng.below(71)),
        };
        lines.push(line);
    }
    let start = rng.pick(&starts);
    let mut text = format!("{start}\r\n{}\r\n\r\n", lines.join("\r\n"));
    if rng.chance(10) {
        text.push_str("v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=friendly-scanner\r\n");
    }
    text.into_bytes()
}

/// Random messages built from legitimate and scanner parts, in varied forms: the kernel's
/// verdict and the signatures it counted must be the reference matcher's.
#[test]
fn differential_against_the_reference_matcher() {
    let mut sigs = sipguard::signatures::catalog();
    sigs.push(sig("test-any-contains", Scope::Any, Kind::Contains, "evil-token", 100));
    sigs.push(sig(
        "test-via-contains",
        Scope::Via,
        Kind::Contains,
        r";branch=z9hG4bK-\d+;rport",
        50,
    ));
    let mut f = filter(sigs.clone());
    let names: Vec<String> = sigs.iter().map(|s| s.name.clone()).collect();
    let mut rng = corpus::Rng::new(20_261_123);
    let uas: Vec<String> = corpus::user_agents();
    let mut drops = 0;
    for round in 0..600 {
        let payload = random_message(&mut rng, &uas);
        let expect = reference::judge(&payload, &sigs);
        let before = f.hits();
        let o = f.run(&udp(&payload));
        let after = f.hits();
        let hit: Vec<&String> = names.iter().filter(|n| after[*n] > before[*n]).collect();
        let want: Vec<&String> = expect.matched.iter().map(|i| &names[*i]).collect();
        let text = String::from_utf8_lossy(&payload);
        assert_eq!(
            o.reason == Reason::Signature,
            expect.dropped,
            "round {round}: kernel {o:?}, reference {expect:?}\n{text}"
        );
        if expect.dropped {
            drops += 1;
            // Inspection stops once the score is reached: what was counted is a subset.
            assert!(
                hit.iter().all(|h| want.contains(h)),
                "round {round}: kernel {hit:?} vs reference {want:?}\n{text}"
            );
        } else {
            assert_eq!(hit, want, "round {round}\n{text}");
        }
    }
    assert!((100..550).contains(&drops), "the generator should mix both outcomes ({drops} drops)");
}
