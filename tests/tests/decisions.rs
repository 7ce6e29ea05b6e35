//! The decision list (the fleet's decision store, CrowdSec) under `BPF_PROG_TEST_RUN`: where
//! it sits in the datapath, what wins over it, how a full sync replaces it, and that the
//! kernel ends each decision on time by itself.

use sipguard::{
    cidr::Cidr,
    kernel::{maps::ListKind, sys::monotonic_ns},
    report::stats::Snapshot,
    state::{
        decisions::{DecisionList, Enforced},
        lists::{self, Target},
        protect::{self, Settings},
    },
};
use sipguard_common::{
    config::{Config, Mode},
    counters::{Misc, Reason},
    decisions::Origin,
};
use sipguard_tests::{
    frames::Frame,
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const OPTIONS: &[u8] =
    b"OPTIONS sip:100@pbx SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9\r\nCall-ID: a1@x\r\n\r\n";

fn sip(src: &str, dst: &str) -> Vec<u8> {
    Frame::udp(src, dst, 5060).payload(OPTIONS).build()
}

fn decision(cidr: &str, secs: u64, origin: Origin) -> Enforced {
    Enforced {
        cidr: cidr.parse::<Cidr>().unwrap(),
        expires_ns: monotonic_ns() + secs * 1_000_000_000,
        origin,
        scenario: "crowdsecurity/sip-bf".into(),
        proven: true,
    }
}

#[test]
fn a_decision_drops_its_source_and_an_allowlist_wins() {
    let mut f = TestFilter::new();
    let mut list = DecisionList::open(&f.maps).unwrap();
    f.expect(&sip("198.51.100.7", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    list.put(&decision("198.51.100.7", 600, Origin::Cscli)).unwrap();
    list.put(&decision("203.0.113.0/24", 600, Origin::Capi)).unwrap();
    list.put(&decision("2001:db8:5::/48", 600, Origin::Crowdsec)).unwrap();
    f.expect(&sip("198.51.100.7", "192.0.2.1"), XDP_DROP, Reason::Decision);
    f.expect(&sip("198.51.100.8", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    f.expect(&sip("203.0.113.200", "192.0.2.1"), XDP_DROP, Reason::Decision);
    f.expect(&sip("2001:db8:5:1::9", "2001:db8::1"), XDP_DROP, Reason::Decision);
    f.expect(&sip("2001:db8:6::9", "2001:db8::1"), XDP_PASS, Reason::DefaultPass);
    // Each drop counted by its decision's origin too (what the bouncer reports to the API).
    assert_eq!(
        drops_by_origin(&f),
        [("CAPI", 1), ("crowdsec", 1), ("cscli", 1)].map(|(o, n)| (o.to_owned(), n)).into()
    );
    // Allowlisted sources always win, globally or for their destination.
    f.add(ListKind::Allow, &["203.0.113.200"]);
    f.expect(&sip("203.0.113.200", "192.0.2.1"), XDP_PASS, Reason::Allowlisted);
    // Lifted: passes again.
    assert!(list.remove(&"198.51.100.7".parse().unwrap()).unwrap());
    assert!(!list.remove(&"198.51.100.7".parse().unwrap()).unwrap(), "twice is nothing");
    f.expect(&sip("198.51.100.7", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    let shown = list.list().unwrap();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(shown.iter().all(|d| d.scenario == "crowdsecurity/sip-bf"), "{shown:?}");
    assert_eq!(
        shown.iter().map(|d| d.origin).collect::<std::collections::BTreeSet<_>>(),
        ["CAPI", "crowdsec"].into_iter().collect()
    );
}

#[test]
fn a_destination_in_monitor_mode_counts_a_decision_and_passes() {
    let mut f = TestFilter::new();
    f.set_config(Config::default());
    let monitor = Settings { mode: Some(Mode::Monitor), ..Settings::default() };
    protect::add(&f.maps, "192.0.2.50".parse().unwrap(), &monitor, None).unwrap();
    let block_for = Settings::default();
    let (other, _) =
        protect::add(&f.maps, "192.0.2.60".parse().unwrap(), &block_for, None).unwrap();
    lists::add(
        &f.maps,
        ListKind::Allow,
        &mut Target::Dest(Box::new(other)),
        &["198.51.100.7".parse().unwrap()],
    )
    .unwrap();
    DecisionList::open(&f.maps)
        .unwrap()
        .put(&decision("198.51.100.7", 600, Origin::Cscli))
        .unwrap();
    let o = f.expect(&sip("198.51.100.7", "192.0.2.50"), XDP_PASS, Reason::Decision);
    assert!(o.monitored, "{o:?}");
    assert!(drops_by_origin(&f).is_empty(), "monitor mode drops nothing, by any origin");
    // A destination's own allowlist wins too.
    f.expect(&sip("198.51.100.7", "192.0.2.60"), XDP_PASS, Reason::Allowlisted);
    f.expect(&sip("198.51.100.7", "192.0.2.1"), XDP_DROP, Reason::Decision);
    assert_eq!(drops_by_origin(&f), [("cscli".to_owned(), 1)].into());
}

/// The packets decisions dropped, by origin, as `stats` reads them.
fn drops_by_origin(f: &TestFilter) -> std::collections::BTreeMap<String, u64> {
    Snapshot::from_counters(&f.maps.counters().unwrap()).decision_drops
}

#[test]
fn a_full_sync_replaces_the_set_in_one_step_and_a_failed_one_keeps_it() {
    let mut f = TestFilter::new();
    let mut list = DecisionList::open(&f.maps).unwrap();
    list.replace(&[
        decision("198.51.100.1", 600, Origin::Capi),
        decision("198.51.100.2", 600, Origin::Capi),
    ])
    .unwrap();
    f.expect(&sip("198.51.100.1", "192.0.2.1"), XDP_DROP, Reason::Decision);
    let before = f.maps.decision_set().unwrap().generation;
    list.replace(&[
        decision("198.51.100.2", 600, Origin::Capi),
        decision("198.51.100.3", 600, Origin::Capi),
    ])
    .unwrap();
    assert_ne!(f.maps.decision_set().unwrap().generation, before, "the other generation went live");
    f.expect(&sip("198.51.100.1", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    f.expect(&sip("198.51.100.2", "192.0.2.1"), XDP_DROP, Reason::Decision);
    f.expect(&sip("198.51.100.3", "192.0.2.1"), XDP_DROP, Reason::Decision);
    assert_eq!(list.list().unwrap().len(), 2, "the old generation is cleared");
    // A sync the trie cannot hold beside the set in force is refused; the set stays.
    let cap = f.maps.capacity(sipguard_common::maps::DECISIONS_V4).unwrap() as usize;
    let err = sipguard::state::decisions::check_capacity(&f.maps, cap / 2 + 1, 0).unwrap_err();
    assert!(format!("{err:#}").contains("kept"), "{err:#}");
    f.expect(&sip("198.51.100.3", "192.0.2.1"), XDP_DROP, Reason::Decision);
    // An empty sync empties it, and the program stops looking.
    list.replace(&[]).unwrap();
    assert_eq!(f.maps.decision_set().unwrap().active, 0);
    f.expect(&sip("198.51.100.3", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
}

#[test]
fn the_kernel_ends_a_decision_on_time_without_userspace() {
    let mut f = TestFilter::new();
    let mut list = DecisionList::open(&f.maps).unwrap();
    let mut over = decision("198.51.100.9", 0, Origin::Cscli);
    // A second ago: the kernel's coarse clock lags the one userspace reads by up to a tick.
    over.expires_ns = monotonic_ns() - 1_000_000_000;
    list.put(&over).unwrap();
    list.put(&decision("198.51.100.10", 600, Origin::Cscli)).unwrap();
    f.expect(&sip("198.51.100.9", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    f.expect(&sip("198.51.100.10", "192.0.2.1"), XDP_DROP, Reason::Decision);
    assert_eq!(list.list().unwrap().len(), 1, "an expired decision is not listed");
    assert_eq!(list.sweep().unwrap(), 1);
}

#[test]
fn an_answer_that_is_no_decision_stream_changes_nothing() {
    use sipguard::daemon::crowdsec::{Enforcer, book::Filters};
    let mut f = TestFilter::new();
    let mut enforcer = Enforcer::new(&f.maps, Filters::default()).unwrap();
    let startup = br#"{"deleted":null,"new":[{"duration":"59m58.5s","id":1,"origin":"cscli","scenario":"manual 'ban' from 'x'","scope":"Ip","type":"ban","value":"198.51.100.7"},{"duration":"1h","id":2,"origin":"CAPI","scenario":"crowdsecurity/ssh-bf","scope":"Range","value":"2001:db8:5::/48","type":"ban"}]}"#;
    let applied = enforcer.apply(true, startup).unwrap();
    assert_eq!((applied.added, applied.enforced), (2, 2));
    let before = DecisionList::open(&f.maps).unwrap().list().unwrap();
    for garbage in [&b"<html>502 Bad Gateway</html>"[..], b"", b"{\"new\":[{\"id\":", b"[1,2,3]"] {
        for full in [true, false] {
            assert!(
                enforcer.apply(full, garbage).is_err(),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
    let after = DecisionList::open(&f.maps).unwrap().list().unwrap();
    assert_eq!(
        before.iter().map(|d| d.value).collect::<Vec<_>>(),
        after.iter().map(|d| d.value).collect::<Vec<_>>()
    );
    f.expect(&sip("198.51.100.7", "192.0.2.1"), XDP_DROP, Reason::Decision);
    // A delta that deletes one and adds another, with a decision this filter cannot enforce.
    let delta = br#"{"deleted":[{"duration":"-2.5s","id":1,"origin":"cscli","scenario":"manual 'ban' from 'x'","scope":"Ip","type":"ban","value":"198.51.100.7"}],"new":[{"duration":"10m","id":3,"origin":"crowdsec","scenario":"sipguard/signature","scope":"Ip","type":"ban","value":"203.0.113.9"},{"duration":"10m","id":4,"origin":"cscli","scenario":"x","scope":"Country","type":"ban","value":"FR"}]}"#;
    let applied = enforcer.apply(false, delta).unwrap();
    assert_eq!((applied.added, applied.deleted, applied.skipped, applied.enforced), (1, 1, 1, 2));
    f.expect(&sip("198.51.100.7", "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    f.expect(&sip("203.0.113.9", "192.0.2.1"), XDP_DROP, Reason::Decision);
}

/// A 200 OK from the server at 192.0.2.1 to `party`'s REGISTER: standing for the party.
fn registered(party: &str) -> Vec<u8> {
    let text = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {party}:5060;branch=z9hG4bK1\r\nFrom: <sip:101@192.0.2.1>;tag=1\r\nTo: <sip:101@192.0.2.1>;tag=2\r\nCall-ID: r1@{party}\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
    );
    Frame::udp("192.0.2.1", party, 5060).payload(text.as_bytes()).build()
}

/// Issue 27: an unproven ban another edge shared (`sipguard_unproven`) drops a source this
/// edge knows nothing of, but not one with standing here (counted as withheld); a proven
/// decision drops it whatever its standing.
#[test]
fn an_unproven_decision_yields_to_this_edges_standing_and_a_proven_one_does_not() {
    let mut f = TestFilter::new();
    f.set_config(Config::default());
    let mut list = DecisionList::open(&f.maps).unwrap();
    let (trunk, stranger, scanner) = ("198.51.100.20", "198.51.100.21", "198.51.100.22");
    for party in [trunk, scanner] {
        f.respond(&registered(party));
    }
    for src in [trunk, stranger] {
        list.put(&Enforced { proven: false, ..decision(src, 600, Origin::Crowdsec) }).unwrap();
    }
    list.put(&decision(scanner, 600, Origin::Crowdsec)).unwrap();
    let o = f.expect(&sip(trunk, "192.0.2.1"), XDP_PASS, Reason::DefaultPass);
    let withheld = |m: &[(u32, u64)]| {
        m.iter().find(|(s, _)| *s == Misc::DecisionsWithheldStanding.slot()).map_or(0, |(_, d)| *d)
    };
    assert_eq!(withheld(&o.moved), 1, "{o:?}");
    let o = f.expect(&sip(stranger, "192.0.2.1"), XDP_DROP, Reason::Decision);
    assert_eq!(withheld(&o.moved), 0);
    f.expect(&sip(scanner, "192.0.2.1"), XDP_DROP, Reason::Decision);
    let shown = list.list().unwrap();
    let proven: Vec<(String, bool)> =
        shown.iter().map(|d| (d.value.to_string(), d.proven)).collect();
    assert!(proven.contains(&(format!("{trunk}/32"), false)), "{proven:?}");
    assert!(proven.contains(&(format!("{scanner}/32"), true)), "{proven:?}");
}
