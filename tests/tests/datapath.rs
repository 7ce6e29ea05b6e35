//! The real XDP program under `BPF_PROG_TEST_RUN`: every parse path and every verdict, on
//! crafted frames. Each run also checks the accounting invariant (one verdict counter per
//! packet), see `TestFilter::run`.

use sipguard::kernel::maps::ListKind;
use sipguard_common::{
    config::{Config, DefaultAction, FragmentAction, Mode},
    counters::{PayloadClass, Reason, method_slot},
    sip::Method,
};
use sipguard_tests::{
    frames::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, Ext, Frame},
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const OPTIONS: &[u8] =
    b"OPTIONS sip:100@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060\r\n\r\n";
const V4_SRC: &str = "192.0.2.1";
const V4_DST: &str = "198.51.100.1";
const V6_SRC: &str = "2001:db8::1";
const V6_DST: &str = "2001:db8:1::1";

fn sip4() -> Frame {
    Frame::udp(V4_SRC, V4_DST, 5060).payload(OPTIONS)
}

fn sip6() -> Frame {
    Frame::udp(V6_SRC, V6_DST, 5060).payload(OPTIONS)
}

fn drop_default() -> Config {
    Config::default().with_default_action(DefaultAction::Drop)
}

#[test]
fn non_ip_frames_pass_untouched() {
    let mut f = TestFilter::new();
    f.set_config(drop_default());
    let arp = Frame::udp(V4_SRC, V4_DST, 5060).with_ethertype(ETH_P_ARP).payload([0u8; 28]).build();
    let o = f.expect(&arp, XDP_PASS, Reason::NotIp);
    assert_eq!(o.class, None, "no payload work for non-IP");
}

#[test]
fn traffic_to_other_ports_and_protocols_passes() {
    let mut f = TestFilter::new();
    f.set_config(drop_default());
    f.expect(
        &Frame::udp(V4_SRC, V4_DST, 53).payload(OPTIONS).build(),
        XDP_PASS,
        Reason::NotSipPort,
    );
    f.expect(&Frame::tcp(V6_SRC, V6_DST, 443, 0x02).build(), XDP_PASS, Reason::NotSipPort);
    f.expect(&Frame::echo(V4_SRC, V4_DST).build(), XDP_PASS, Reason::NotSipPort);
    f.expect(&Frame::echo(V6_SRC, V6_DST).build(), XDP_PASS, Reason::NotSipPort);
    // A SIP port number on a protocol that is neither UDP nor TCP.
    let sctp = Frame::new(
        V4_SRC.parse().unwrap(),
        V4_DST.parse().unwrap(),
        sipguard_tests::frames::Transport::Raw(132),
    )
    .payload([0x13, 0xc4, 0x13, 0xc4, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.expect(&sctp.build(), XDP_PASS, Reason::NotSipPort);
}

#[test]
fn default_action_applies_to_unlisted_sources() {
    let mut f = TestFilter::new();
    for frame in [sip4(), sip6()] {
        f.set_config(Config::default());
        let o = f.expect(&frame.build(), XDP_PASS, Reason::DefaultPass);
        assert_eq!(o.class, Some(PayloadClass::SipRequest));
        f.set_config(drop_default());
        let o = f.expect(&frame.build(), XDP_DROP, Reason::DefaultDrop);
        assert_eq!(o.class, None, "allowlist-only mode drops before reading the payload");
    }
}

#[test]
fn allowlist_passes_and_wins_over_blocklist() {
    let mut f = TestFilter::new();
    f.set_config(drop_default());
    f.add(ListKind::Allow, &["192.0.2.0/24", "2001:db8::/32"]);
    f.expect(&sip4().build(), XDP_PASS, Reason::Allowlisted);
    f.expect(&sip6().build(), XDP_PASS, Reason::Allowlisted);
    f.expect(
        &Frame::udp("192.0.3.1", V4_DST, 5060).payload(OPTIONS).build(),
        XDP_DROP,
        Reason::DefaultDrop,
    );
    f.expect(
        &Frame::udp("2001:db9::1", V6_DST, 5060).payload(OPTIONS).build(),
        XDP_DROP,
        Reason::DefaultDrop,
    );
    // A more specific blocklist entry does not override the allowlist: allowlisted sources
    // are never filtered.
    f.add(ListKind::Block, &["192.0.2.1", "2001:db8::1"]);
    f.expect(&sip4().build(), XDP_PASS, Reason::Allowlisted);
    f.expect(&sip6().build(), XDP_PASS, Reason::Allowlisted);
}

#[test]
fn blocklist_drops_longest_prefix_matches() {
    let mut f = TestFilter::new();
    f.add(ListKind::Block, &["192.0.2.0/25", "2001:db8::/48"]);
    f.expect(&sip4().build(), XDP_DROP, Reason::Blocklisted);
    f.expect(&sip6().build(), XDP_DROP, Reason::Blocklisted);
    f.expect(
        &Frame::udp("192.0.2.200", V4_DST, 5060).payload(OPTIONS).build(),
        XDP_PASS,
        Reason::DefaultPass,
    );
    f.expect(
        &Frame::udp("2001:db8:1::1", V6_DST, 5060).payload(OPTIONS).build(),
        XDP_PASS,
        Reason::DefaultPass,
    );
    // Blocked sources are dropped whatever they send to a SIP port, SIP or not, UDP or TCP.
    f.expect(&Frame::tcp(V4_SRC, V4_DST, 5061, 0x02).build(), XDP_DROP, Reason::Blocklisted);
    f.expect(
        &Frame::udp(V4_SRC, V4_DST, 5060).payload(b"garbage").build(),
        XDP_DROP,
        Reason::Blocklisted,
    );
}

#[test]
fn monitor_mode_passes_and_counts_would_be_drops() {
    let mut f = TestFilter::new();
    f.set_config(drop_default().with_mode(Mode::Monitor));
    f.add(ListKind::Block, &[V4_SRC]);
    let o = f.expect(&sip4().build(), XDP_PASS, Reason::Blocklisted);
    assert!(o.monitored);
    let o = f.expect(&sip6().build(), XDP_PASS, Reason::DefaultDrop);
    assert!(o.monitored);
    let o = f.expect(&Frame::udp(V4_SRC, V4_DST, 9).build(), XDP_PASS, Reason::NotSipPort);
    assert!(!o.monitored, "passes are not monitor events");
}

#[test]
fn vlan_and_qinq_are_looked_through() {
    let mut f = TestFilter::new();
    f.add(ListKind::Block, &[V4_SRC, V6_SRC]);
    f.expect(&sip4().vlan(ETH_P_8021Q, 10).build(), XDP_DROP, Reason::Blocklisted);
    f.expect(&sip6().vlan(ETH_P_8021Q, 10).build(), XDP_DROP, Reason::Blocklisted);
    f.expect(
        &sip4().vlan(ETH_P_8021AD, 100).vlan(ETH_P_8021Q, 10).build(),
        XDP_DROP,
        Reason::Blocklisted,
    );
    f.expect(
        &sip6().vlan(ETH_P_8021AD, 100).vlan(ETH_P_8021Q, 10).build(),
        XDP_DROP,
        Reason::Blocklisted,
    );
    // Past two tags the frame is not looked into (documented limit).
    let triple = sip4().vlan(ETH_P_8021AD, 1).vlan(ETH_P_8021Q, 2).vlan(ETH_P_8021Q, 3);
    f.expect(&triple.build(), XDP_PASS, Reason::NotIp);
}

#[test]
fn ipv4_options_are_honoured() {
    let mut f = TestFilter::new();
    f.add(ListKind::Block, &[V4_SRC]);
    for words in 1..=10usize {
        let opts = vec![1u8; words * 4]; // NOPs
        f.expect(&sip4().ipv4_options(&opts).build(), XDP_DROP, Reason::Blocklisted);
        let o = f.expect(
            &Frame::udp("192.0.2.9", V4_DST, 5060).payload(OPTIONS).ipv4_options(&opts).build(),
            XDP_PASS,
            Reason::DefaultPass,
        );
        assert_eq!(
            o.class,
            Some(PayloadClass::SipRequest),
            "payload found after {words} option words"
        );
    }
}

#[test]
fn invalid_ip_headers_are_malformed() {
    let mut f = TestFilter::new();
    let mut bad_ihl = sip4().build();
    bad_ihl[14] = 0x44; // IHL 4 (< 5)
    f.expect(&bad_ihl, XDP_PASS, Reason::Malformed);
    let mut bad_version = sip4().build();
    bad_version[14] = 0x65;
    f.expect(&bad_version, XDP_PASS, Reason::Malformed);
    let mut bad_v6 = sip6().build();
    bad_v6[14] = 0x40;
    f.expect(&bad_v6, XDP_PASS, Reason::Malformed);
    let mut bad_tcp = Frame::tcp(V4_SRC, V4_DST, 5060, 0x18).payload(OPTIONS).build();
    bad_tcp[14 + 20 + 12] = 0x40; // data offset 4 words (< 5)
    f.expect(&bad_tcp, XDP_PASS, Reason::Malformed);
    // Traffic to other ports is not judged past its port, whatever the rest of its header.
    let mut other_port = Frame::tcp(V4_SRC, V4_DST, 443, 0x18).payload(OPTIONS).build();
    other_port[14 + 20 + 12] = 0x40;
    f.expect(&other_port, XDP_PASS, Reason::NotSipPort);
}

#[test]
fn fragments_follow_the_fragment_policy() {
    let mut f = TestFilter::new();
    f.set_config(drop_default());
    // First fragments carry the ports and are judged normally.
    f.expect(&sip4().ipv4_fragment(0, true).build(), XDP_DROP, Reason::DefaultDrop);
    f.expect(
        &sip6().ext(Ext::Fragment { offset: 0, more: true }).build(),
        XDP_DROP,
        Reason::DefaultDrop,
    );
    // Later fragments have no ports: default policy is pass, counted.
    let later4 = sip4().ipv4_fragment(185, false).build();
    let later6 = sip6().ext(Ext::Fragment { offset: 185, more: true }).build();
    f.expect(&later4, XDP_PASS, Reason::FragmentPassed);
    f.expect(&later6, XDP_PASS, Reason::FragmentPassed);
    f.set_config(drop_default().with_fragment_action(FragmentAction::Drop));
    f.expect(&later4, XDP_DROP, Reason::FragmentDropped);
    f.expect(&later6, XDP_DROP, Reason::FragmentDropped);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let mut f = TestFilter::new();
    f.add(ListKind::Block, &[V6_SRC]);
    let chains: Vec<Vec<Ext>> = vec![
        vec![Ext::HopByHop(1)],
        vec![Ext::Routing(3)],
        vec![Ext::DestOpts(2)],
        vec![Ext::Auth(4)],
        vec![Ext::Fragment { offset: 0, more: true }],
        vec![
            Ext::HopByHop(1),
            Ext::DestOpts(1),
            Ext::Routing(1),
            Ext::Fragment { offset: 0, more: true },
            Ext::Auth(2),
            Ext::DestOpts(1),
        ],
    ];
    for chain in chains {
        let mut frame = sip6();
        for e in &chain {
            frame = frame.ext(e.clone());
        }
        f.expect(&frame.build(), XDP_DROP, Reason::Blocklisted);
    }
    // A seventh header is past the walk's bound: the transport header is not found.
    let mut deep = sip6();
    for _ in 0..7 {
        deep = deep.ext(Ext::DestOpts(1));
    }
    f.expect(&deep.build(), XDP_PASS, Reason::Malformed);
}

/// Cuts a frame at every length from 14 bytes (the minimum `BPF_PROG_TEST_RUN` accepts) up to
/// the end of its transport header: every cut inside a header is malformed and passes; every
/// cut after it is judged on what is there.
fn check_truncations(f: &mut TestFilter, frame: &[u8], l4_end: usize) {
    for n in 14..frame.len() {
        let o = f.run(&frame[..n]);
        if n < l4_end {
            assert_eq!(
                (o.action, o.reason),
                (XDP_PASS, Reason::Malformed),
                "cut at {n} of {}",
                frame.len()
            );
        } else {
            assert_eq!(
                (o.action, o.reason),
                (XDP_DROP, Reason::Blocklisted),
                "cut at {n} (after the headers)"
            );
        }
    }
}

#[test]
fn truncated_frames_at_every_header_boundary() {
    let mut f = TestFilter::new();
    f.add(ListKind::Block, &[V4_SRC, V6_SRC]);
    let v4 = sip4().vlan(ETH_P_8021AD, 1).vlan(ETH_P_8021Q, 2).ipv4_options(&[1, 1, 1, 1]).build();
    check_truncations(&mut f, &v4, 14 + 8 + 24 + 8);
    let tcp = Frame::tcp(V4_SRC, V4_DST, 5060, 0x18).vlan(ETH_P_8021Q, 2).payload(OPTIONS).build();
    check_truncations(&mut f, &tcp, 14 + 4 + 20 + 20);
    let v6 = sip6()
        .vlan(ETH_P_8021Q, 7)
        .ext(Ext::HopByHop(1))
        .ext(Ext::Fragment { offset: 0, more: true })
        .build();
    check_truncations(&mut f, &v6, 14 + 4 + 40 + 8 + 8 + 8);
}

#[test]
fn payload_is_classified_and_methods_counted() {
    let mut f = TestFilter::new();
    let o = f.expect(&sip4().build(), XDP_PASS, Reason::DefaultPass);
    assert_eq!(o.class, Some(PayloadClass::SipRequest));
    assert!(o.moved.contains(&(method_slot(Method::Options), 1)), "{o:?}");
    let invite = sip4().payload(b"INVITE sip:1000@198.51.100.1 SIP/2.0\r\n\r\n").build();
    let o = f.expect(&invite, XDP_PASS, Reason::DefaultPass);
    assert!(o.moved.contains(&(method_slot(Method::Invite), 1)), "{o:?}");
    let resp = sip6().payload(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n").build();
    assert_eq!(f.run(&resp).class, Some(PayloadClass::SipResponse));
    assert_eq!(
        f.run(&sip4().payload(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").build()).class,
        Some(PayloadClass::NotSip)
    );
    assert_eq!(
        f.run(&sip4().payload(b"\r\n\r\n").build()).class,
        Some(PayloadClass::NotSip),
        "keepalive"
    );
    assert_eq!(f.run(&sip4().payload(b"").build()).class, Some(PayloadClass::Empty));
    let syn = Frame::tcp(V4_SRC, V4_DST, 5060, 0x02).build();
    assert_eq!(f.run(&syn).class, Some(PayloadClass::Empty));
    let tcp_opts = Frame::new(
        V4_SRC.parse().unwrap(),
        V4_DST.parse().unwrap(),
        sipguard_tests::frames::Transport::Tcp {
            sport: 40000,
            dport: 5060,
            flags: 0x18,
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        },
    )
    .payload(OPTIONS);
    assert_eq!(
        f.run(&tcp_opts.build()).class,
        Some(PayloadClass::SipRequest),
        "payload after TCP options"
    );
}

#[test]
fn sip_ports_are_runtime_configurable() {
    let mut f = TestFilter::new();
    f.set_config(drop_default());
    f.set_ports(&[5080, 65535]);
    f.expect(&sip4().build(), XDP_PASS, Reason::NotSipPort);
    f.expect(
        &Frame::udp(V4_SRC, V4_DST, 5080).payload(OPTIONS).build(),
        XDP_DROP,
        Reason::DefaultDrop,
    );
    f.expect(&Frame::udp(V4_SRC, V4_DST, 65535).build(), XDP_DROP, Reason::DefaultDrop);
    f.expect(&Frame::udp(V4_SRC, V4_DST, 1).build(), XDP_PASS, Reason::NotSipPort);
    assert_eq!(f.maps.ports().unwrap(), vec![5080, 65535]);
}

/// The feature probes behind `sipguard check` and the refusal of old kernels, against the
/// running kernel: what it has is found, a helper no kernel has is not.
#[test]
fn kernel_feature_probes_tell_present_from_missing() {
    sipguard_tests::require_root();
    let features = sipguard::kernel::probe::probe();
    assert!(features.iter().all(|f| f.available), "this kernel runs the suite: {features:?}");
    sipguard::kernel::probe::require().expect("the running kernel is supported");
    assert!(sipguard::kernel::probe::helper_available(1), "bpf_map_lookup_elem exists everywhere");
    assert!(!sipguard::kernel::probe::helper_available(100_000), "no kernel has helper 100000");
    assert!(!sipguard::kernel::probe::helper_available(-1));
}

/// The global lists' IPv4 prefilters (`SG_LIST_FILTER_V4`, one bit per `/24`) let the
/// program skip a lookup when no entry can cover the source: they must cover every entry,
/// through add, remove and replace, and a pin directory without maintained filters must look
/// everything up.
#[test]
fn list_filters_never_hide_an_entry() {
    use sipguard::{
        kernel::maps::PinnedMaps,
        state::lists::{self, Target},
    };
    use sipguard_common::lists::{FILTER_SLOT_WORDS, filter_slot, may_hold};

    let mut f = TestFilter::new();
    f.set_config(drop_default());
    assert_eq!(f.config().list_filters, 1, "a new filter maintains its list filters");
    let from = |src: &str| Frame::udp(src, V4_DST, 5060).payload(OPTIONS).build();
    let maps = PinnedMaps::open(f.layout()).expect("maps");
    let filter = |allow: bool, generation: u8| {
        let map = maps.list_filter(false).expect("filter map").expect("a filter map");
        map.read(filter_slot(allow, generation))
    };
    let cidr = |s: &str| s.parse::<sipguard::cidr::Cidr>().expect("a prefix");

    // A /8 spans 65,536 /24s: its far end is found too. A /32 marks its /24 only.
    f.add(ListKind::Allow, &["10.0.0.0/8", "172.16.5.9"]);
    f.expect(&from("10.255.1.1"), XDP_PASS, Reason::Allowlisted);
    f.expect(&from("11.0.0.1"), XDP_DROP, Reason::DefaultDrop);
    f.expect(&from("172.16.5.9"), XDP_PASS, Reason::Allowlisted);
    f.expect(&from("172.16.5.10"), XDP_DROP, Reason::DefaultDrop);
    let allow_gen = f.config().allow_gen;
    let words = filter(true, allow_gen);
    assert!(may_hold(&words, [10, 255, 255, 0]) && may_hold(&words, [172, 16, 5, 0]));
    assert!(!may_hold(&words, [11, 0, 0, 0]) && !may_hold(&words, [172, 16, 6, 0]));

    // Removed: the filter narrows again.
    lists::remove(&maps, ListKind::Allow, &Target::Global, &[cidr("10.0.0.0/8")]).expect("remove");
    let words = filter(true, allow_gen);
    assert!(!may_hold(&words, [10, 255, 0, 0]) && may_hold(&words, [172, 16, 5, 0]));
    f.expect(&from("10.255.1.1"), XDP_DROP, Reason::DefaultDrop);

    // Replaced: the new generation's filter covers the new list; the old one is cleared.
    f.set_config(Config::default());
    assert_eq!(f.config().list_filters, 1, "writing the configuration keeps the filters on");
    let before = f.config().block_gen;
    lists::replace(&maps, ListKind::Block, &mut Target::Global, &[cidr("198.18.0.0/15")])
        .expect("replace");
    let live = f.config().block_gen;
    assert_ne!(live, before);
    f.expect(&from("198.19.200.1"), XDP_DROP, Reason::Blocklisted);
    lists::replace(&maps, ListKind::Block, &mut Target::Global, &[cidr("203.0.113.0/24")])
        .expect("replace");
    f.expect(&from("198.19.200.1"), XDP_PASS, Reason::DefaultPass);
    f.expect(&from("203.0.113.9"), XDP_DROP, Reason::Blocklisted);
    assert!(filter(false, live).iter().all(|w| *w == 0), "the idle generation is empty");

    // A pin directory whose filters are not maintained (made by an older sipguard): zeroed
    // filters are not trusted, every list is looked up; a refresh rebuilds them.
    f.add(ListKind::Allow, &["10.0.0.0/8"]);
    write_raw_config(f.layout(), |c| c.list_filters = 0);
    let slot = filter_slot(true, f.config().allow_gen);
    let map = maps.list_filter(true).expect("filter map").expect("a filter map");
    map.write(slot, &vec![0; FILTER_SLOT_WORDS as usize]).expect("zeroing");
    drop(map);
    f.set_config(drop_default());
    f.expect(&from("10.255.1.1"), XDP_PASS, Reason::Allowlisted);
    lists::refresh_filters(&maps).expect("refresh");
    assert_eq!(f.config().list_filters, 1);
    assert!(may_hold(&filter(true, f.config().allow_gen), [10, 255, 0, 0]));
    f.expect(&from("10.255.1.1"), XDP_PASS, Reason::Allowlisted);
}

/// Rewrites the configuration map past sipguard's writers, as an older version left it.
fn write_raw_config(layout: &sipguard::kernel::pin::PinLayout, edit: impl FnOnce(&mut Config)) {
    let mut raw: aya::maps::Array<_, Config> = aya::maps::Array::try_from(aya::maps::Map::Array(
        aya::maps::MapData::from_pin(layout.map(sipguard_common::maps::CONFIG))
            .expect("the config map"),
    ))
    .expect("an array");
    let mut config = raw.get(&0, 0).expect("reading the config");
    edit(&mut config);
    raw.set(0, config, 0).expect("writing the old flags");
}

/// Loading over a pin directory of the version that kept `/16` bitmaps in `SG_LIST_FILTER`
/// (and set the byte now named `retired_list_filters`): the load builds the new filters,
/// unpins the old map and clears the old flag, so that program, were it still attached,
/// would look every list up instead of trusting bitmaps nobody keeps.
#[test]
fn a_load_retires_the_sixteen_bit_filters_of_an_earlier_version() {
    use sipguard::{kernel::maps::PinnedMaps, kernel::program};
    use sipguard_common::{
        lists::{filter_slot, may_hold},
        maps::{LIST_FILTER, RETIRED_LIST_FILTER},
    };

    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }

    let mut f = TestFilter::new();
    f.set_config(drop_default());
    f.add(ListKind::Allow, &["10.0.0.0/8"]);
    let maps = PinnedMaps::open(f.layout()).expect("maps");
    let allowed = Frame::udp("10.1.2.3", V4_DST, 5060).payload(OPTIONS).build();

    // What the earlier version left: its flag set, ours clear, its map pinned.
    write_raw_config(f.layout(), |c| {
        c.list_filters = 0;
        c.retired_list_filters = 1;
    });
    let old = f.layout().map(RETIRED_LIST_FILTER);
    let mut create = MapCreate { map_type: 2, key_size: 4, value_size: 8192, max_entries: 4 };
    let fd = sipguard::kernel::sys::bpf(0, &mut create).expect("BPF_MAP_CREATE");
    // SAFETY: the descriptor the kernel just returned, owned (and closed) here.
    let fd = unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(
            i32::try_from(fd).expect("an fd"),
        )
    };
    let path = std::ffi::CString::new(old.as_os_str().as_encoded_bytes()).expect("a path");
    let mut pin = ObjPin {
        pathname: path.as_ptr() as u64,
        bpf_fd: std::os::fd::AsRawFd::as_raw_fd(&fd).cast_unsigned(),
        file_flags: 0,
    };
    sipguard::kernel::sys::bpf(6, &mut pin).expect("BPF_OBJ_PIN");
    f.expect(&allowed, XDP_PASS, Reason::Allowlisted);

    let again = program::load(f.layout(), program::Capacities::default()).expect("loading again");
    assert!(!again.fresh);
    sipguard::state::upgrade::pin_layout(f.layout()).expect("upgrading the pins");
    let config = f.config();
    assert_eq!((config.list_filters, config.retired_list_filters), (1, 0));
    assert!(!old.exists(), "the old map is unpinned");
    assert!(f.layout().map(LIST_FILTER).exists());
    let map = maps.list_filter(false).expect("filter map").expect("a filter map");
    assert!(may_hold(&map.read(filter_slot(true, config.allow_gen)), [10, 9, 8, 7]));
    f.expect(&allowed, XDP_PASS, Reason::Allowlisted);
}

/// A list filter that cannot be written (here: frozen against syscall writes) fails an add
/// cleanly, and does not fail a removal, whose entries are gone either way: the filter left
/// wide still covers every remaining entry.
#[test]
fn an_unwritable_list_filter_fails_adds_cleanly_and_lets_removals_land() {
    use std::os::fd::{AsFd, AsRawFd};

    use sipguard::{
        kernel::maps::PinnedMaps,
        state::lists::{self, Target},
    };
    use sipguard_common::lists::{filter_slot, may_hold};

    let mut f = TestFilter::new();
    f.set_config(drop_default());
    f.add(ListKind::Allow, &["10.1.0.0/16", "10.2.0.0/16"]);
    let maps = PinnedMaps::open(f.layout()).expect("maps");
    let cidr = |s: &str| s.parse::<sipguard::cidr::Cidr>().expect("a prefix");
    let from = |src: &str| Frame::udp(src, V4_DST, 5060).payload(OPTIONS).build();

    let pinned = f.layout().map(sipguard_common::maps::LIST_FILTER);
    let filter = aya::maps::MapData::from_pin(&pinned).expect("the pinned filter map");
    // BPF_MAP_FREEZE (22): writes from userspace fail with EPERM from now on, and so does
    // mapping the map writable.
    let mut attr = [filter.fd().as_fd().as_raw_fd().cast_unsigned(), 0, 0, 0];
    sipguard::kernel::sys::bpf(22, &mut attr).expect("freezing the filter map");

    let before = lists::entries(&maps, ListKind::Allow, &Target::Global).expect("entries");
    let err = lists::add(&maps, ListKind::Allow, &mut Target::Global, &[cidr("10.3.0.0/16")])
        .expect_err("an add needs its filter widened first");
    assert!(format!("{err:#}").contains("nothing was changed"), "{err:#}");
    let err = lists::replace(&maps, ListKind::Allow, &mut Target::Global, &[cidr("10.3.0.0/16")])
        .expect_err("a replacement needs its filter built first");
    assert!(format!("{err:#}").contains("nothing was changed"), "{err:#}");
    assert_eq!(lists::entries(&maps, ListKind::Allow, &Target::Global).expect("entries"), before);
    f.expect(&from("10.3.0.1"), XDP_DROP, Reason::DefaultDrop);

    lists::remove(&maps, ListKind::Allow, &Target::Global, &[cidr("10.1.0.0/16")])
        .expect("the removal lands although the filter stays wide");
    f.expect(&from("10.1.0.1"), XDP_DROP, Reason::DefaultDrop);
    f.expect(&from("10.2.0.1"), XDP_PASS, Reason::Allowlisted);
    let map = maps.list_filter(false).expect("filter map").expect("a filter map");
    let wide = map.read(filter_slot(true, f.config().allow_gen));
    assert!(may_hold(&wide, [10, 1, 0, 0]), "the filter was frozen, so it was left as it was");
}

/// List changes from different processes take turns: a `block add` waits while another
/// process holds the lists' lock, then lands (and its prefix is found by the program).
#[test]
fn list_changes_from_two_processes_take_turns() {
    let mut f = TestFilter::new();
    let maps = sipguard::kernel::maps::PinnedMaps::open(f.layout()).expect("maps");
    let lock = maps.lock_lists().expect("the lock");
    let mut add = std::process::Command::new(sipguard_tests::sipguard_bin())
        .args([
            "--pin-dir",
            &f.layout().root().display().to_string(),
            "block",
            "add",
            "198.18.7.0/24",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawning sipguard");
    // The kernel lists a process blocked on a lock as a waiter (`->`) in /proc/locks.
    let pid = add.id().to_string();
    sipguard_tests::wait::until("block add to wait for the lists' lock", || {
        if let Some(status) = add.try_wait().expect("polling") {
            panic!("block add went ahead of the lock ({status})");
        }
        let locks = std::fs::read_to_string("/proc/locks").expect("reading /proc/locks");
        let waiting = locks.lines().any(|l| {
            let mut f = l.split_whitespace().skip(1);
            f.next() == Some("->") && f.nth(3) == Some(pid.as_str())
        });
        if waiting { Ok(()) } else { Err(locks) }
    });
    drop(lock);
    let status = add.wait().expect("waiting for block add");
    assert!(status.success(), "block add failed after the lock was released");
    let blocked = Frame::udp("198.18.7.9", V4_DST, 5060).payload(OPTIONS).build();
    f.expect(&blocked, XDP_DROP, Reason::Blocklisted);
}
