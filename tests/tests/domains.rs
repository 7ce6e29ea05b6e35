//! Direct-IP requests in the real XDP program under `BPF_PROG_TEST_RUN`: with SIP domains
//! declared (globally or per protected destination), a request outside a dialog whose
//! Request-URI host is none of them is dropped as `unknown_domain`; everything else about a
//! message (dialogs, responses, other schemes, allowlisted sources) is left alone.

use std::fmt::Write as _;

use sipguard::{
    kernel::maps::ListKind,
    state::{
        bans, domains,
        protect::{self, Settings},
    },
};
use sipguard_common::{
    config::{Config, Mode},
    counters::Reason,
};
use sipguard_tests::{
    frames::Frame,
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const SRC: &str = "198.51.100.7";
const PBX: &str = "192.0.2.1";

fn request(start: &str, to: Option<&str>) -> Vec<u8> {
    let mut text = format!(
        "{start}\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1\r\nFrom: <sip:alice@198.51.100.7>;tag=a1\r\n"
    );
    if let Some(to) = to {
        text.push_str(to);
        text.push_str("\r\n");
    }
    text.push_str(
        "Call-ID: 1@198.51.100.7\r\nCSeq: 1 INVITE\r\nUser-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n\r\n",
    );
    text.into_bytes()
}

fn udp(payload: &[u8]) -> Vec<u8> {
    Frame::udp(SRC, PBX, 5060).payload(payload).build()
}

fn names(n: &[&str]) -> Vec<String> {
    domains::normalize_all(&n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
}

/// A filter with the catalog, no bans (one source sends many requests), and `declared` as
/// the global domains.
fn filter(declared: &[&str]) -> TestFilter {
    let f = TestFilter::new();
    f.catalog();
    f.set_config(Config::default().with_ban_ttl(0));
    domains::declare_global(&f.maps, &names(declared)).unwrap();
    f
}

const TO_100: &str = "To: <sip:100@192.0.2.1>";

#[test]
fn without_domains_nothing_is_checked() {
    let mut f = filter(&[]);
    f.expect(
        &udp(&request("INVITE sip:100@192.0.2.1 SIP/2.0", Some(TO_100))),
        XDP_PASS,
        Reason::DefaultPass,
    );
}

#[test]
fn requests_to_the_bare_address_are_dropped_and_to_a_domain_pass() {
    let mut f = filter(&["pbx.example.com", "[2001:db8::1]"]);
    assert_eq!(f.config().has_domains, 1);
    for start in [
        "INVITE sip:100@192.0.2.1 SIP/2.0",
        "INVITE sip:100@192.0.2.1:5060;transport=udp SIP/2.0",
        "OPTIONS sip:192.0.2.1 SIP/2.0",
        "REGISTER sip:192.0.2.1:5060 SIP/2.0",
        "INVITE sips:100@other.example.com SIP/2.0",
        "INVITE sip:100@pbx.example.com.evil.test SIP/2.0",
        "INVITE sip:100@pbx.example.co SIP/2.0",
        "MESSAGE sip:100@[2001:db8::2] SIP/2.0",
    ] {
        let o = f.run(&udp(&request(start, Some(TO_100))));
        assert_eq!((o.action, o.reason), (XDP_DROP, Reason::UnknownDomain), "{start}");
    }
    for start in [
        "INVITE sip:100@pbx.example.com SIP/2.0",
        "INVITE sip:100@PBX.Example.COM:5060;transport=tcp SIP/2.0",
        "REGISTER sip:pbx.example.com SIP/2.0",
        "INVITE sip:100@[2001:db8::1]:5060 SIP/2.0",
        "INVITE sip:+4930123456@pbx.example.com;user=phone SIP/2.0",
        // No host to judge.
        "INVITE tel:+4930123456 SIP/2.0",
    ] {
        let o = f.run(&udp(&request(start, Some(TO_100))));
        assert_eq!((o.action, o.reason), (XDP_PASS, Reason::DefaultPass), "{start}");
    }
}

#[test]
fn requests_inside_a_dialog_are_not_judged() {
    let mut f = filter(&["pbx.example.com"]);
    // Re-INVITEs, BYEs and ACKs go to the contact address the server gave: often its IP.
    for (start, to) in [
        ("BYE sip:100@192.0.2.1:5060 SIP/2.0", "To: <sip:100@pbx.example.com>;tag=9f2"),
        ("INVITE sip:100@192.0.2.1 SIP/2.0", "To: \"Desk\" <sip:100@pbx.example.com>;TAG=x"),
        ("ACK sip:100@192.0.2.1 SIP/2.0", "t: sip:100@pbx.example.com;tag=1"),
    ] {
        let o = f.run(&udp(&request(start, Some(to))));
        assert_eq!((o.action, o.reason), (XDP_PASS, Reason::DefaultPass), "{start} / {to}");
    }
    // A tag elsewhere (From always has one) or a look-alike parameter is not a dialog.
    for to in
        ["To: <sip:100@192.0.2.1>", "To: <sip:100@192.0.2.1>;tagx=1", "t: <sip:tag@192.0.2.1>"]
    {
        let o = f.run(&udp(&request("INVITE sip:100@192.0.2.1 SIP/2.0", Some(to))));
        assert_eq!((o.action, o.reason), (XDP_DROP, Reason::UnknownDomain), "{to}");
    }
    // No To header at all, in a complete message: not in a dialog either.
    f.expect(
        &udp(&request("INVITE sip:100@192.0.2.1 SIP/2.0", None)),
        XDP_DROP,
        Reason::UnknownDomain,
    );
}

#[test]
fn a_to_header_beyond_the_window_leaves_the_request_alone() {
    let mut f = filter(&["pbx.example.com"]);
    let mut text =
        String::from("INVITE sip:100@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7\r\n");
    for i in 0..40 {
        writeln!(text, "X-Padding-{i}: {}\r", "p".repeat(60)).unwrap();
    }
    text.push_str("To: <sip:100@pbx.example.com>;tag=1\r\n\r\n");
    // Whether it is a dialog's request cannot be told: it passes, uncounted as a domain drop.
    f.expect(&udp(text.as_bytes()), XDP_PASS, Reason::DefaultPass);
}

#[test]
fn every_parse_path_reaches_the_check() {
    let mut f = filter(&["pbx.example.com"]);
    let bad = request("INVITE sip:100@192.0.2.1 SIP/2.0", Some(TO_100));
    let good = request("INVITE sip:100@pbx.example.com SIP/2.0", Some(TO_100));
    let frames = |p: &[u8]| {
        vec![
            Frame::udp(SRC, PBX, 5060).payload(p).build(),
            Frame::udp(SRC, PBX, 5060).vlan(0x8100, 7).payload(p).build(),
            Frame::udp("2001:db8:9::7", "2001:db8::1", 5060).payload(p).build(),
            Frame::tcp(SRC, PBX, 5060, 0x18).payload(p).build(),
        ]
    };
    for frame in frames(&bad) {
        f.expect(&frame, XDP_DROP, Reason::UnknownDomain);
    }
    for frame in frames(&good) {
        f.expect(&frame, XDP_PASS, Reason::DefaultPass);
    }
}

#[test]
fn responses_and_allowlisted_sources_are_not_judged() {
    let mut f = filter(&["pbx.example.com"]);
    let answer = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1\r\nTo: <sip:100@192.0.2.1>\r\n\r\n";
    f.expect(&udp(answer), XDP_PASS, Reason::DefaultPass);
    f.add(ListKind::Allow, &[SRC]);
    f.expect(
        &udp(&request("INVITE sip:100@192.0.2.1 SIP/2.0", Some(TO_100))),
        XDP_PASS,
        Reason::Allowlisted,
    );
}

#[test]
fn destinations_declare_their_own_domains_and_share_the_global_ones() {
    let mut f = filter(&["provider.example"]);
    let own = Settings { sip_domains: Some(names(&["customer-a.example"])), ..Settings::default() };
    protect::add(&f.maps, "192.0.2.1".parse().unwrap(), &own, Some("customer-a")).unwrap();
    protect::add(&f.maps, "192.0.2.2".parse().unwrap(), &Settings::default(), None).unwrap();
    let to = |dst: &str, host: &str| {
        Frame::udp(SRC, dst, 5060)
            .payload(request(&format!("INVITE sip:100@{host} SIP/2.0"), Some(TO_100)))
            .build()
    };
    f.expect(&to("192.0.2.1", "customer-a.example"), XDP_PASS, Reason::DefaultPass);
    f.expect(&to("192.0.2.1", "provider.example"), XDP_PASS, Reason::DefaultPass);
    f.expect(&to("192.0.2.1", "192.0.2.1"), XDP_DROP, Reason::UnknownDomain);
    // Another customer's domain is not this one's.
    f.expect(&to("192.0.2.2", "customer-a.example"), XDP_DROP, Reason::UnknownDomain);
    f.expect(&to("192.0.2.2", "provider.example"), XDP_PASS, Reason::DefaultPass);

    // Without global domains, only the destination that declares some is checked.
    domains::declare_global(&f.maps, &[]).unwrap();
    assert_eq!(f.config().has_domains, 0);
    f.expect(&to("192.0.2.2", "192.0.2.2"), XDP_PASS, Reason::DefaultPass);
    f.expect(&to("192.0.2.1", "192.0.2.1"), XDP_DROP, Reason::UnknownDomain);
    f.expect(&to("192.0.2.1", "provider.example"), XDP_DROP, Reason::UnknownDomain);

    // Clearing its set turns its check off; removing it takes its domains with it.
    let cleared = Settings { sip_domains: Some(Vec::new()), ..Settings::default() };
    protect::add(&f.maps, "192.0.2.1".parse().unwrap(), &cleared, None).unwrap();
    f.expect(&to("192.0.2.1", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    protect::add(&f.maps, "192.0.2.1".parse().unwrap(), &own, None).unwrap();
    assert_eq!(domains::all(&f.maps).unwrap().len(), 1);
    protect::remove(&f.maps, &"192.0.2.1".parse().unwrap()).unwrap();
    assert!(domains::all(&f.maps).unwrap().is_empty());
}

#[test]
fn monitor_mode_counts_and_bans_are_reported() {
    let mut f = filter(&["pbx.example.com"]);
    f.set_config(f.config().with_mode(Mode::Monitor).with_ban_ttl(0));
    let o = f.run(&udp(&request("INVITE sip:100@192.0.2.1 SIP/2.0", Some(TO_100))));
    assert_eq!((o.action, o.reason, o.monitored), (XDP_PASS, Reason::UnknownDomain, true));

    f.set_config(f.config().with_mode(Mode::Enforce).with_ban_ttl(600));
    f.events();
    f.expect(
        &udp(&request("INVITE sip:100@192.0.2.1 SIP/2.0", Some(TO_100))),
        XDP_DROP,
        Reason::UnknownDomain,
    );
    // The ban shuts the source out, whatever it addresses next.
    f.expect(
        &udp(&request("INVITE sip:100@pbx.example.com SIP/2.0", Some(TO_100))),
        XDP_DROP,
        Reason::Banned,
    );
    let events = f.events();
    let e = events.iter().find(|e| e["reason"] == "unknown_domain").expect("an incident record");
    assert_eq!(e["banned"], true, "{e}");
    assert_eq!(e["method"], "INVITE", "{e}");
    assert_eq!(e["source"], SRC, "{e}");
    let list = bans::list(&f.maps).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].reason, "unknown_domain");
}
