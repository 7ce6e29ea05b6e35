//! `cargo xtask bench cost`: what sipguard costs per packet, next to the floor (an XDP program
//! that only returns `XDP_PASS`), both timed by `BPF_PROG_TEST_RUN` on the same CPU in the
//! same run; and how that cost grows with signatures and list sizes.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::{AsFd as _, BorrowedFd, OwnedFd},
};

use anyhow::Context as _;
use serde_json::json;
use sipguard::{
    cidr::Cidr,
    kernel::{maps::ListKind, program::Capacities},
    state::{
        bans,
        lists::{self, Target},
        sigset,
    },
};
use sipguard_common::config::Config;

use super::{
    Options, inputs,
    report::{Table, ns, ratio},
    testrun,
};
use crate::{
    corpus,
    frames::Frame,
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const PBX: &str = "198.51.100.1";
const CALLER: &str = "192.0.2.10";
const TRUNK: &str = "192.0.2.20";
const BLOCKED: &str = "203.0.113.66";
const BANNED: &str = "203.0.113.77";
const SCANNER: &str = "203.0.113.99";
/// A party the response path has no state for.
const STRANGER: &str = "192.0.2.30";
/// Outside the generated lists' IPv6 space (`2a00::/8`).
const CALLER_V6: &str = "2001:db8::10";
const PBX_V6: &str = "2001:db8::1";

/// One measured figure next to its floor.
pub struct Figure {
    pub ns: f64,
    pub floor_ns: f64,
}

impl Figure {
    pub fn ratio(&self) -> f64 {
        self.ns / self.floor_ns
    }
}

/// Times the program and the floor on the same frame, one after the other.
struct Meter {
    floor: OwnedFd,
    repeat: u32,
    rounds: u32,
}

impl Meter {
    fn measure(&self, prog: BorrowedFd<'_>, frame: &[u8], expect: u32) -> anyhow::Result<Figure> {
        let floor =
            testrun::typical(self.floor.as_fd(), frame, self.repeat, self.rounds, XDP_PASS)?;
        let s = testrun::typical(prog, frame, self.repeat, self.rounds, expect)
            .with_context(|| format!("a {}-byte frame, expected verdict {expect}", frame.len()))?;
        Ok(Figure { ns: s.ns, floor_ns: floor.ns.max(1.0) })
    }
}

fn sip(src: &str, message: &[u8]) -> Vec<u8> {
    Frame::udp(src, PBX, 5060).payload(message).build()
}

/// The messages the scenarios send.
struct Messages {
    svmap: Vec<u8>,
    invite: Vec<u8>,
    compact: Vec<u8>,
    mixed_case: Vec<u8>,
}

impl Messages {
    fn load() -> Self {
        Self {
            svmap: corpus::message("scanners", "svmap-options.sip"),
            invite: corpus::message("legit", "yealink-invite-sdp.sip"),
            compact: corpus::message("legit", "polycom-subscribe-compact.sip"),
            mixed_case: corpus::message("scanners", "sipcli-mixed-case.sip"),
        }
    }
}

/// A target from the issue: at most `max` times the floor.
struct Limit {
    max: f64,
}

fn verdict_row(table: &mut Table, name: &str, f: &Figure, target: Option<Limit>) {
    let (target_text, status) = match target {
        Some(t) if f.ratio() <= t.max => (format!("<= {:.0}x", t.max), "met".to_owned()),
        Some(t) => (format!("<= {:.0}x", t.max), format!("missed by {:.1}x", f.ratio() / t.max)),
        None => (String::new(), String::new()),
    };
    table.row(
        vec![name.to_owned(), ns(f.ns), ns(f.floor_ns), ratio(f.ratio()), target_text.clone(), status.clone()],
        json!({"scenario": name, "ns": f.ns, "floor_ns": f.floor_ns, "ratio": f.ratio(), "target": target_text, "status": status}),
    );
}

/// The dropped svmap OPTIONS built up stage by stage: each row adds one piece of work to the
/// row it names (mostly the one before), so the differences say what each stage costs, and
/// what a target leaves for the rest.
fn where_the_time_goes(meter: &Meter, f: &mut TestFilter, m: &Messages) -> anyhow::Result<Table> {
    let mut table = Table::new(
        "Where the time goes (svmap OPTIONS built up stage by stage; same filter as above)",
        &["stage", "ns", "added", "ratio"],
    );
    let options = |headers: &[&str]| {
        let mut msg = b"OPTIONS sip:100@10.99.0.2 SIP/2.0\r\n".to_vec();
        for h in headers {
            msg.extend_from_slice(h.as_bytes());
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"\r\n");
        msg
    };
    let plain = ["Max-Forwards: 70"; 9];
    // (stage, frame, verdict, the row it adds to)
    let stages: Vec<(&str, Vec<u8>, u32, Option<usize>)> = vec![
        (
            "parse Ethernet/IP/UDP, SIP port check (UDP to port 53)",
            Frame::udp(SCANNER, PBX, 53).payload(&m.svmap).build(),
            XDP_PASS,
            None,
        ),
        (
            "+ allowlist bitmap, ban and blocklist lookups (blocklisted source)",
            sip(BLOCKED, &m.svmap),
            XDP_DROP,
            Some(0),
        ),
        (
            "+ start-line check, rate limit (400 bytes of non-SIP to 5060)",
            sip(SCANNER, &[b'x'; 400]),
            XDP_PASS,
            Some(1),
        ),
        (
            "+ inspection set-up: copy, start line, end of headers",
            sip(SCANNER, &options(&[])),
            XDP_PASS,
            Some(2),
        ),
        (
            "+ 1 plain header line (Max-Forwards)",
            sip(SCANNER, &options(&plain[..1])),
            XDP_PASS,
            Some(3),
        ),
        ("+ 8 more plain header lines", sip(SCANNER, &options(&plain)), XDP_PASS, Some(4)),
        (
            "1 plain line, then a To line matching a signature: the drop",
            sip(SCANNER, &options(&["Max-Forwards: 70", "To: \"sipvicious\"<sip:100@1.1.1.1>"])),
            XDP_DROP,
            Some(4),
        ),
        ("the svmap OPTIONS (decided on its 4th line)", sip(SCANNER, &m.svmap), XDP_DROP, Some(3)),
    ];
    let mut measured = Vec::new();
    for (stage, frame, expect, base) in &stages {
        let fig = meter.measure(f.program_fd(), frame, *expect)?;
        let added = base.map(|b: usize| fig.ns - measured[b]);
        measured.push(fig.ns);
        table.row(
            vec![
                (*stage).to_owned(),
                ns(fig.ns),
                added.map_or_else(String::new, |a| format!("{a:+.0}")),
                ratio(fig.ratio()),
            ],
            json!({"stage": stage, "ns": fig.ns, "added_ns": added, "floor_ns": fig.floor_ns, "ratio": fig.ratio()}),
        );
    }
    Ok(table)
}

/// The request path with and without what issue 14 added to it, side by side in this run:
/// the `extension_scan` rule (on by default: every request outside a dialog notes its user in
/// its source's state) and the domain check. The INVITE's own host is the declared domain, so
/// its verdict is the same throughout. The three configurations take turns, one short round
/// each, many times over, and each figure is the median of its rounds: on a shared machine
/// the speed drifts over minutes, and turns of a second or so see the same drift.
fn request_path_features(meter: &Meter, f: &mut TestFilter, m: &Messages) -> anyhow::Result<Table> {
    let mut table = Table::new(
        "The request path with the behaviour rules and the domain check (ns per packet, side by side; medians of interleaved rounds)",
        &[
            "message",
            "rules off, no domains",
            "extension_scan on (default)",
            "+ domain check",
            "dearer by",
            "target",
        ],
    );
    let base = Config::default().with_ban_ttl(0);
    let configs: [(Config, bool); 3] =
        [(base.with_extension_scan(0), false), (base, false), (base, true)];
    let turns = (meter.rounds * 3).max(5);
    let repeat = (meter.repeat / 5).max(1000);
    for (label, frame, expect) in [
        ("legitimate INVITE (passed)", sip(CALLER, &m.invite), XDP_PASS),
        ("svmap OPTIONS (dropped by signature)", sip(SCANNER, &m.svmap), XDP_DROP),
    ] {
        let mut rounds: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..turns {
            for (i, (config, domains)) in configs.iter().enumerate() {
                f.set_config(*config);
                let names: Vec<String> =
                    if *domains { vec!["pbx.example.com".into()] } else { Vec::new() };
                sipguard::state::domains::declare_global(&f.maps, &names)?;
                rounds[i].push(testrun::typical(f.program_fd(), &frame, repeat, 1, expect)?.ns);
            }
        }
        let ns_of = rounds.map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        });
        let dearer = ns_of[1] / ns_of[0] - 1.0;
        let with_domains = ns_of[2] / ns_of[0] - 1.0;
        table.row(
            vec![
                label.to_owned(),
                ns(ns_of[0]),
                ns(ns_of[1]),
                ns(ns_of[2]),
                format!("{:+.1}% (domains {:+.1}%)", dearer * 100.0, with_domains * 100.0),
                "<= +10% (rules on)".to_owned(),
            ],
            json!({"message": label, "off_ns": ns_of[0], "extension_scan_ns": ns_of[1], "domains_ns": ns_of[2], "dearer": dearer, "dearer_with_domains": with_domains, "met": dearer <= 0.10}),
        );
    }
    f.set_config(base);
    sipguard::state::domains::declare_global(&f.maps, &[])?;
    Ok(table)
}

/// The response program (TC egress) per answer leaving a server, next to an empty TC program.
/// Its thresholds are set out of reach: every run updates the party's state, none bans.
fn response_path(opts: &Options, f: &mut TestFilter) -> anyhow::Result<Table> {
    const CARRY_ON: u32 = u32::MAX; // TC_ACT_UNSPEC
    let floor = testrun::load_empty_tc()?;
    let saved = f.config();
    f.set_config(saved.with_behaviour(60, u16::MAX, u16::MAX));
    let mut table = Table::new(
        "Response program cost (TC egress, BPF_PROG_TEST_RUN, ns per answer; floor: a TC program returning TC_ACT_UNSPEC)",
        &["answer", "ns", "floor ns", "ratio"],
    );
    let answer = |status: &str, to: &str| {
        Frame::udp(PBX, to, 5070)
            .payload(format!(
                "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP {to}:5070;branch=z9hG4bK1\r\nFrom: <sip:100@{PBX}>;tag=1\r\nTo: <sip:100@{PBX}>;tag=2\r\nCall-ID: 1@{to}\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
            ))
            .build()
    };
    // Order matters: the challenge gives CALLER a state, which the success then finds.
    let cases = [
        (
            "UDP from a non-SIP port (DNS answer)",
            Frame::udp(PBX, CALLER, 53).payload([0u8; 64]).build(),
        ),
        ("180 Ringing (not counted)", answer("180 Ringing", CALLER)),
        ("200 OK to a party with no state (one lookup)", answer("200 OK", STRANGER)),
        ("401 Unauthorized (CSeq read, counted, rule checked)", answer("401 Unauthorized", CALLER)),
        ("200 OK to a party with a state (CSeq read, counted)", answer("200 OK", CALLER)),
        ("404 Not Found (counted, rule checked)", answer("404 Not Found", CALLER)),
    ];
    for (name, frame) in &cases {
        let base = testrun::typical(floor.as_fd(), frame, opts.repeat, opts.rounds, CARRY_ON)?;
        let s = testrun::typical(f.responses_fd(), frame, opts.repeat, opts.rounds, CARRY_ON)
            .with_context(|| format!("the response program on {name}"))?;
        let fig = Figure { ns: s.ns, floor_ns: base.ns.max(1.0) };
        table.row(
            vec![(*name).to_owned(), ns(fig.ns), ns(fig.floor_ns), ratio(fig.ratio())],
            json!({"answer": name, "ns": fig.ns, "floor_ns": fig.floor_ns, "ratio": fig.ratio()}),
        );
    }
    f.set_config(saved);
    Ok(table)
}

/// Unlisted sources near a blocklist's entries, so that its `/24` bitmap cannot spare them
/// the trie (`in_24`: one in the `/24` of a listed address) or can only because of its
/// finer grain (`in_16`: one in the `/16` of a listed address, in a `/24` no entry covers).
struct NearMisses {
    in_16: String,
    in_24: String,
}

/// Loads a blocklist of `n` prefixes.
fn set_blocklist(f: &TestFilter, n: usize) -> anyhow::Result<NearMisses> {
    let mut list = inputs::prefixes(n.saturating_sub(1), 7);
    list.push(BLOCKED.parse::<Cidr>().expect("an address"));
    lists::replace(&f.maps, ListKind::Block, &mut Target::Global, &list)
        .with_context(|| format!("loading a blocklist of {n}"))?;
    let listed: Vec<u32> = list
        .iter()
        .filter_map(|c| match c.addr() {
            IpAddr::V4(a) if c.prefix_len() == 32 => Some(u32::from(a)),
            _ => None,
        })
        .collect();
    let unlisted = |flip: u32| {
        listed
            .iter()
            .map(|a| IpAddr::V4(Ipv4Addr::from(a ^ flip)))
            .find(|ip| !list.iter().any(|c| c.contains(*ip)))
            .map(|ip| ip.to_string())
            .context("every /32 of the blocklist has listed neighbours")
    };
    Ok(NearMisses { in_24: unlisted(1)?, in_16: unlisted(1 << 8)? })
}

/// Per-packet cost as the blocklist grows, for listed and unlisted sources; adds the rows
/// the issue names (10, 10,000 and the largest size) to `main`.
fn list_growth(
    meter: &Meter,
    f: &mut TestFilter,
    m: &Messages,
    list_sizes: &[usize],
    main: &mut Table,
) -> anyhow::Result<Table> {
    let biggest = *list_sizes.last().expect("sizes");
    let mut list_growth = Table::new(
        "Growth with the blocklist (ns per packet; mixed IPv4/IPv6 prefixes)",
        &[
            "prefixes",
            "blocklisted source",
            "ratio",
            "unlisted source, OPTIONS inspected",
            "ratio",
            "the same, /16 listed",
            "the same, /24 listed",
            "the same, IPv6",
        ],
    );
    let options = corpus::message("legit", "asterisk-qualify-options.sip");
    for &n in list_sizes {
        let near = set_blocklist(f, n)?;
        let hit = meter.measure(f.program_fd(), &sip(BLOCKED, &m.svmap), XDP_DROP)?;
        let miss = meter.measure(f.program_fd(), &sip(CALLER, &options), XDP_PASS)?;
        let in_16 = meter.measure(f.program_fd(), &sip(&near.in_16, &options), XDP_PASS)?;
        let in_24 = meter.measure(f.program_fd(), &sip(&near.in_24, &options), XDP_PASS)?;
        let v6_frame = Frame::udp(CALLER_V6, PBX_V6, 5060).payload(&options).build();
        let v6 = meter.measure(f.program_fd(), &v6_frame, XDP_PASS)?;
        list_growth.row(
            vec![
                n.to_string(),
                ns(hit.ns),
                ratio(hit.ratio()),
                ns(miss.ns),
                ratio(miss.ratio()),
                ns(in_16.ns),
                ns(in_24.ns),
                ns(v6.ns),
            ],
            json!({"prefixes": n, "blocked_ns": hit.ns, "blocked_ratio": hit.ratio(), "unlisted_ns": miss.ns, "unlisted_ratio": miss.ratio(), "unlisted_16_listed_ns": in_16.ns, "unlisted_24_listed_ns": in_24.ns, "unlisted_v6_ns": v6.ns, "floor_ns": hit.floor_ns}),
        );
        if [10, 10_000, biggest].contains(&n) {
            verdict_row(main, &format!("blocklisted source, {n} prefixes"), &hit, None);
        }
    }

    Ok(list_growth)
}

pub fn run(opts: &Options) -> anyhow::Result<Vec<Table>> {
    let list_sizes: &[usize] = if opts.quick {
        &[10, 1_000, 10_000, 100_000]
    } else {
        &[10, 1_000, 10_000, 100_000, 1_000_000]
    };
    let biggest = *list_sizes.last().expect("sizes");
    let meter =
        Meter { floor: testrun::load_empty_xdp()?, repeat: opts.repeat, rounds: opts.rounds };
    // Old and new list side by side during each replacement.
    let cap = u32::try_from(biggest + biggest / 2).expect("fits");
    let mut f = TestFilter::with_capacities(Capacities { lists: cap, ..Capacities::default() });
    // Bans off: a signature drop would ban the source, and the next million runs would
    // measure the ban instead. The banned-source scenario bans by hand.
    f.set_config(Config::default().with_ban_ttl(0));
    f.catalog();
    f.add(ListKind::Allow, &[TRUNK]);
    set_blocklist(&f, 10)?;
    bans::add(&f.maps, &[BANNED.parse()?], 3600)?;
    let m = Messages::load();

    let mut main = Table::new(
        "Program cost (BPF_PROG_TEST_RUN, ns per packet: mean of the middle rounds + 0.5 for the kernel's truncation; floor: an XDP program returning XDP_PASS)",
        &["scenario", "ns", "floor ns", "ratio", "target", "status"],
    );
    let other_port = Frame::udp(CALLER, PBX, 53).payload(&m.invite[..64]).build();
    let fig = meter.measure(f.program_fd(), &other_port, XDP_PASS)?;
    verdict_row(&mut main, "UDP to a non-SIP port", &fig, Some(Limit { max: 2.0 }));
    let syn = Frame::tcp(CALLER, PBX, 5060, 0x02).build();
    verdict_row(
        &mut main,
        "TCP SYN to 5060",
        &meter.measure(f.program_fd(), &syn, XDP_PASS)?,
        None,
    );
    let fig = meter.measure(f.program_fd(), &sip(TRUNK, &m.invite), XDP_PASS)?;
    verdict_row(&mut main, "INVITE from an allowlisted source", &fig, None);
    let fig = meter.measure(f.program_fd(), &sip(BANNED, &m.svmap), XDP_DROP)?;
    verdict_row(&mut main, "svmap OPTIONS from a banned source", &fig, None);
    let invite_label =
        format!("legitimate {}-byte INVITE with SDP (31 signatures)", m.invite.len());
    let fig = meter.measure(f.program_fd(), &sip(CALLER, &m.invite), XDP_PASS)?;
    verdict_row(&mut main, &invite_label, &fig, Some(Limit { max: 40.0 }));
    let fig = meter.measure(f.program_fd(), &sip(CALLER, &m.compact), XDP_PASS)?;
    verdict_row(&mut main, "compact-form SUBSCRIBE (legitimate)", &fig, None);
    let fig = meter.measure(f.program_fd(), &sip(SCANNER, &m.mixed_case), XDP_DROP)?;
    verdict_row(&mut main, "mixed-case INVITE (scanner, dropped)", &fig, None);
    let features = request_path_features(&meter, &mut f, &m)?;
    let budget = where_the_time_goes(&meter, &mut f, &m)?;
    let responses = response_path(opts, &mut f)?;
    let ban_path = super::ban_path::table(opts.repeat, opts.rounds)?;

    let mut sig_growth = Table::new(
        "Growth with signatures (ns per packet)",
        &["signatures", "svmap OPTIONS (dropped)", "ratio", "legit INVITE (passed)", "ratio"],
    );
    let mut svmap_at = Vec::new();
    for n in [16, 64, 256, 1024] {
        sigset::replace(&f.maps, inputs::signatures(n))
            .with_context(|| format!("{n} signatures"))?;
        let svmap = meter.measure(f.program_fd(), &sip(SCANNER, &m.svmap), XDP_DROP)?;
        let invite = meter.measure(f.program_fd(), &sip(CALLER, &m.invite), XDP_PASS)?;
        sig_growth.row(
            vec![n.to_string(), ns(svmap.ns), ratio(svmap.ratio()), ns(invite.ns), ratio(invite.ratio())],
            json!({"signatures": n, "svmap_ns": svmap.ns, "svmap_ratio": svmap.ratio(), "invite_ns": invite.ns, "invite_ratio": invite.ratio(), "floor_ns": svmap.floor_ns}),
        );
        if n == 16 || n == 256 {
            let label = format!("svmap OPTIONS ({} bytes), {n} signatures", m.svmap.len());
            verdict_row(&mut main, &label, &svmap, Some(Limit { max: 20.0 }));
        }
        svmap_at.push((n, svmap.ns));
    }
    f.catalog();

    let list_growth = list_growth(&meter, &mut f, &m, list_sizes, &mut main)?;

    let mut targets = Table::new("Targets", &["target", "measured", "status"]);
    let s16 = svmap_at.iter().find(|(n, _)| *n == 16).map_or(0.0, |(_, v)| *v);
    let s256 = svmap_at.iter().find(|(n, _)| *n == 256).map_or(0.0, |(_, v)| *v);
    let growth = s256 / s16 - 1.0;
    targets.row(
        vec![
            "256 signatures within 10% of 16 (svmap OPTIONS)".into(),
            format!("{:+.1}%", growth * 100.0),
            if growth <= 0.10 {
                "met".into()
            } else {
                format!("missed by {:.1} points", (growth - 0.10) * 100.0)
            },
        ],
        json!({"target": "sig256_vs_sig16", "growth": growth, "met": growth <= 0.10}),
    );
    Ok(vec![main, features, budget, responses, ban_path, sig_growth, list_growth, targets])
}
