//! `cargo xtask bench e2e`: the same packets through no filter, iptables string rules,
//! nftables and sipguard, side by side in one run.
//!
//! The generator is `BPF_PROG_TEST_RUN` with live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`): the
//! kernel builds each frame, runs an XDP program on it and hands what it passes to the network
//! stack of a veth in a namespace of our own, all in the calling thread, so one pinned thread
//! is one saturated core and its CPU time is the cost of the whole receive path. For iptables,
//! nftables and "no filter" the XDP program is the empty one (everything goes up the stack to
//! the raw table); for sipguard it is sipguard's program (drops never reach the stack). Nothing
//! leaves the namespace: frames are received, never sent.

use std::{
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use serde_json::json;
use sipguard_common::{
    config::Config,
    counters::{Reason, Verdict},
};

use super::{
    Options, inputs,
    report::{Table, ratio},
    testrun,
};
use crate::{
    corpus,
    frames::Frame,
    netns::{Netns, run_ok},
    xdp::TestFilter,
};

const PBX: &str = "10.210.0.1";
const SCANNER: &str = "10.210.0.2";
const CALLER: &str = "10.210.0.3";
/// The stack only takes frames addressed to the interface: its MAC is set to the frames'.
const PBX_MAC: &str = "02:00:00:00:00:01";

/// One filter under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Filter {
    None,
    IptablesBm,
    IptablesKmp,
    Nftables,
    Sipguard,
    SipguardBans,
}

impl Filter {
    const ALL: [Filter; 6] = [
        Filter::None,
        Filter::IptablesBm,
        Filter::IptablesKmp,
        Filter::Nftables,
        Filter::Sipguard,
        Filter::SipguardBans,
    ];

    fn name(self) -> &'static str {
        match self {
            Filter::None => "(0) no filter",
            Filter::IptablesBm => "(1) iptables -m string --algo bm",
            Filter::IptablesKmp => "(1) iptables -m string --algo kmp",
            Filter::Nftables => "(2) nftables (address set, fixed-offset start line)",
            Filter::Sipguard => "(3) sipguard, signatures (bans off)",
            Filter::SipguardBans => "(3) sipguard as deployed (signature, then ban)",
        }
    }

    fn drops_scanners(self) -> bool {
        self != Filter::None
    }
}

/// The literal values of the catalog's signatures: what an admin would put in string rules.
/// (Patterns with `\d` and friends have no `-m string` equivalent.)
fn literal_signatures() -> Vec<String> {
    sipguard::signatures::catalog()
        .into_iter()
        .filter(|s| !s.value.contains('\\'))
        .map(|s| s.value)
        .collect()
}

fn iptables(ns: &Netns, args: &[&str]) -> String {
    let out = run_ok(ns.exec("iptables").args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Packets the rules of the raw table's PREROUTING chain matched.
fn iptables_matched(ns: &Netns) -> u64 {
    iptables(ns, &["-t", "raw", "-nvxL", "PREROUTING"])
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn nft_matched(ns: &Netns) -> u64 {
    let out = run_ok(ns.exec("nft").args(["list", "table", "inet", "sgbench"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[0] == "counter" && w[1] == "packets")
        .filter_map(|w| w[2].parse::<u64>().ok())
        .sum()
}

/// Installs `filter`'s rules in the namespace (none for sipguard, which is the XDP program).
fn install(ns: &Netns, filter: Filter, dir: &std::path::Path) -> anyhow::Result<()> {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "iptables", "-t", "raw", "-F"])
        .output()
        .ok();
    Command::new("ip")
        .args(["netns", "exec", &ns.name, "nft", "delete", "table", "inet", "sgbench"])
        .output()
        .ok();
    match filter {
        Filter::IptablesBm | Filter::IptablesKmp => {
            let algo = if filter == Filter::IptablesBm { "bm" } else { "kmp" };
            for value in literal_signatures() {
                iptables(
                    ns,
                    &[
                        "-t",
                        "raw",
                        "-A",
                        "PREROUTING",
                        "-p",
                        "udp",
                        "--dport",
                        "5060",
                        "-m",
                        "string",
                        "--algo",
                        algo,
                        "--string",
                        &value,
                        "-j",
                        "DROP",
                    ],
                );
            }
        }
        Filter::Nftables => {
            // A provider's blocklist as a set, and SIPVicious' default start line at the fixed
            // offset where it sits: what nftables can say without string search.
            let elements: Vec<String> = inputs::prefixes(10_000, 3)
                .into_iter()
                .filter(sipguard::cidr::Cidr::is_ipv4)
                .map(|c| c.to_string())
                .collect();
            let start_line = "OPTIONS sip:100@";
            let hex = start_line.bytes().fold(String::new(), |mut h, b| {
                use std::fmt::Write as _;
                write!(h, "{b:02x}").ok();
                h
            });
            let script = format!(
                "table inet sgbench {{\n  set scanners {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }} }}\n  chain pre {{\n    type filter hook prerouting priority raw; policy accept;\n    ip saddr @scanners udp dport 5060 counter drop\n    udp dport 5060 @th,64,{} 0x{hex} counter drop\n  }}\n}}\n",
                elements.join(", "),
                start_line.len() * 8
            );
            let file = dir.join("sgbench.nft");
            std::fs::write(&file, script)?;
            run_ok(ns.exec("nft").arg("-f").arg(&file));
        }
        Filter::None | Filter::Sipguard | Filter::SipguardBans => {}
    }
    Ok(())
}

/// What one stream through one filter measured.
struct Stream {
    pps: f64,
    cpu_ns: f64,
    dropped: u64,
}

/// Sends `n` copies of `frame` through `prog` in the namespace, `rounds` times and more
/// until the rounds took [`MIN_STREAM_TIME`] (a fast filter's round is over in tens of
/// milliseconds, where one interruption of the VM moves its figure by half); the median round
/// by CPU time. Returns packets per second, CPU ns per packet and the rounds run.
fn stream(
    ns: &Netns,
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    n: u32,
    rounds: u32,
    cpu: usize,
) -> anyhow::Result<(f64, f64, u32)> {
    let fd = prog.as_raw_fd();
    let frame = frame.to_vec();
    let mut samples = ns.enter(move || -> anyhow::Result<Vec<testrun::Live>> {
        testrun::pin(cpu)?;
        // SAFETY: the descriptor stays open in the caller for the whole call.
        let prog = unsafe { BorrowedFd::borrow_raw(fd) };
        let mut samples = Vec::new();
        let mut spent = Duration::ZERO;
        while samples.len() < rounds.max(1) as usize
            || (spent < MIN_STREAM_TIME && samples.len() < MAX_ROUNDS)
        {
            let s = testrun::run_live(prog, &frame, ifindex, n)?;
            spent += s.wall;
            samples.push(s);
        }
        Ok(samples)
    })?;
    samples.sort_by_key(|s| s.cpu);
    let m = samples[samples.len() / 2];
    let per = |d: Duration| d.as_secs_f64() * 1e9 / f64::from(n);
    let done = u32::try_from(samples.len()).expect("at most MAX_ROUNDS");
    Ok((f64::from(n) / m.wall.as_secs_f64(), per(m.cpu), done))
}

/// See [`stream`].
const MIN_STREAM_TIME: Duration = Duration::from_secs(2);
const MAX_ROUNDS: usize = 25;

fn sipguard_drops(f: &TestFilter) -> u64 {
    let c = f.maps.counters().expect("counters");
    Reason::ALL
        .iter()
        .filter(|r| r.verdict() == Verdict::Drop)
        .map(|r| c[r.slot(false) as usize])
        .sum()
}

pub fn run(opts: &Options) -> anyhow::Result<Vec<Table>> {
    let (n, rounds) = if opts.quick { (20_000, 1) } else { (1_000_000, 3) };
    let cpu = testrun::pin_to_one_cpu()?;
    let ns = Netns::new("bench");
    ns.ip(&["link", "add", "gen0", "type", "veth", "peer", "name", "gen1"]);
    ns.ip(&["link", "set", "gen0", "address", PBX_MAC]);
    ns.ip(&["addr", "add", &format!("{PBX}/24"), "dev", "gen0"]);
    ns.ip(&["link", "set", "gen0", "up"]);
    ns.ip(&["link", "set", "gen1", "up"]);
    let ifindex =
        ns.enter(|| sipguard::kernel::sys::ifindex("gen0")).context("gen0 has no ifindex")?;
    // Someone listens, as a PBX would; it is never read, so the socket drops when full and
    // every filter pays the same for what it lets through.
    let _pbx = ns.udp(&format!("{PBX}:5060"));
    let dir = std::env::temp_dir().join(crate::unique("sge2e"));
    std::fs::create_dir_all(&dir)?;

    let floor = testrun::load_empty_xdp()?;
    let mut sg = TestFilter::new();
    sg.catalog();
    let scanner = Frame::udp(SCANNER, PBX, 5060)
        .payload(corpus::message("scanners", "svmap-options.sip"))
        .build();
    let legit = Frame::udp(CALLER, PBX, 5060)
        .payload(corpus::message("legit", "yealink-invite-sdp.sip"))
        .build();
    let variant = String::from_utf8_lossy(&run_ok(Command::new("iptables").arg("-V")).stdout)
        .trim()
        .to_owned();
    let probe = {
        let (fd, frame) = (floor.as_raw_fd(), legit.clone());
        ns.enter(move || {
            // SAFETY: `floor` owns the descriptor and outlives the call.
            let prog = unsafe { BorrowedFd::borrow_raw(fd) };
            testrun::live_frames(prog, &frame, ifindex)
        })?
    };
    if !probe {
        std::fs::remove_dir_all(&dir).ok();
        return Ok(vec![not_measurable()]);
    }

    let mut results = Vec::new();
    for filter in Filter::ALL {
        install(&ns, filter, &dir).with_context(|| format!("installing {}", filter.name()))?;
        match filter {
            Filter::Sipguard => sg.set_config(Config::default().with_ban_ttl(0)),
            Filter::SipguardBans => sg.set_config(Config::default()),
            _ => {}
        }
        let prog_is_sipguard = matches!(filter, Filter::Sipguard | Filter::SipguardBans);
        let mut measured = Vec::new();
        for (frame, kind, must_drop) in
            [(&scanner, "scanner", filter.drops_scanners()), (&legit, "legitimate", false)]
        {
            let before = (iptables_matched_or_zero(&ns, filter), sipguard_drops(&sg));
            let (pps, cpu_ns, done) = if prog_is_sipguard {
                let fd = sg.program_fd();
                let fd = fd.as_raw_fd();
                // SAFETY: the filter, which owns the descriptor, outlives the call.
                stream(&ns, unsafe { BorrowedFd::borrow_raw(fd) }, frame, ifindex, n, rounds, cpu)?
            } else {
                stream(&ns, floor.as_fd(), frame, ifindex, n, rounds, cpu)?
            };
            let dropped = match filter {
                Filter::None => 0,
                Filter::IptablesBm | Filter::IptablesKmp | Filter::Nftables => {
                    iptables_matched_or_zero(&ns, filter) - before.0
                }
                Filter::Sipguard | Filter::SipguardBans => sipguard_drops(&sg) - before.1,
            };
            let sent = u64::from(n) * u64::from(done);
            let expected = if must_drop { sent } else { 0 };
            ensure!(
                dropped == expected,
                "{}: dropped {dropped} of {sent} {kind} packets, expected {expected}; its figure would mean nothing",
                filter.name(),
            );
            measured.push(Stream { pps, cpu_ns, dropped });
        }
        results.push((filter, measured));
    }
    install(&ns, Filter::None, &dir)?;
    std::fs::remove_dir_all(&dir).ok();
    report(&results, &variant, n, rounds)
}

/// The table of a kernel that refuses live frames: no figure, and why.
fn not_measurable() -> Table {
    let reason = "this kernel refuses BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (EPERM, as root): no frame can be run through the receive path this way, so no end-to-end figure is measured here";
    let mut table = Table::new("End to end: not measured on this kernel", &["suite", "reason"]);
    table.row(
        vec!["e2e".to_owned(), reason.to_owned()],
        json!({"measured": false, "reason": reason, "kernel": super::report::machine()["kernel"]}),
    );
    eprintln!("sipguard-bench: e2e: {reason}");
    table
}

fn iptables_matched_or_zero(ns: &Netns, filter: Filter) -> u64 {
    match filter {
        Filter::IptablesBm | Filter::IptablesKmp => iptables_matched(ns),
        Filter::Nftables => nft_matched(ns),
        _ => 0,
    }
}

fn report(
    results: &[(Filter, Vec<Stream>)],
    variant: &str,
    n: u32,
    rounds: u32,
) -> anyhow::Result<Vec<Table>> {
    let base = results.iter().find(|(f, _)| *f == Filter::None).context("the baseline ran")?;
    let mut table = Table::new(
        &format!(
            "End to end, one core: {n} frames x {rounds} rounds or more (2 s) per stream through the receive path of a veth ({variant}); packets per second sustained and CPU ns per packet (median round), each with its ratio to no filter"
        ),
        &[
            "filter",
            "scanner pps",
            "ratio",
            "CPU ns",
            "ratio",
            "legit pps",
            "ratio",
            "CPU ns",
            "ratio",
            "scanners dropped",
        ],
    );
    for (filter, s) in results {
        let (sc, lg) = (&s[0], &s[1]);
        let (sc0, lg0) = (&base.1[0], &base.1[1]);
        table.row(
            vec![
                filter.name().to_owned(),
                format!("{:.2} M", sc.pps / 1e6),
                ratio(sc.pps / sc0.pps),
                format!("{:.0}", sc.cpu_ns),
                ratio(sc.cpu_ns / sc0.cpu_ns),
                format!("{:.2} M", lg.pps / 1e6),
                ratio(lg.pps / lg0.pps),
                format!("{:.0}", lg.cpu_ns),
                ratio(lg.cpu_ns / lg0.cpu_ns),
                sc.dropped.to_string(),
            ],
            json!({
                "filter": filter.name(),
                "scanner": {"pps": sc.pps, "pps_ratio": sc.pps / sc0.pps, "cpu_ns": sc.cpu_ns, "ratio": sc.cpu_ns / sc0.cpu_ns, "dropped": sc.dropped},
                "legit": {"pps": lg.pps, "pps_ratio": lg.pps / lg0.pps, "cpu_ns": lg.cpu_ns, "ratio": lg.cpu_ns / lg0.cpu_ns, "dropped": lg.dropped},
            }),
        );
    }
    let cpu = |f: Filter| results.iter().find(|(x, _)| *x == f).map(|(_, s)| s[0].cpu_ns);
    let mut targets = Table::new("End-to-end target", &["target", "measured", "status"]);
    let (Some(sg), Some(deployed), Some(bm), Some(kmp)) = (
        cpu(Filter::Sipguard),
        cpu(Filter::SipguardBans),
        cpu(Filter::IptablesBm),
        cpu(Filter::IptablesKmp),
    ) else {
        bail!("a filter is missing from the results");
    };
    for (ours, how) in [
        (deployed, "as deployed (banned after its first packet)"),
        (sg, "by signature on every packet (bans off)"),
    ] {
        for (name, other) in [("bm", bm), ("kmp", kmp)] {
            let gain = other / ours;
            targets.row(
                vec![
                    format!("5x less CPU per dropped scanner packet than --algo {name}, sipguard {how}"),
                    format!("{gain:.1}x less"),
                    if gain >= 5.0 { "met".into() } else { format!("missed: {gain:.1}x of 5x") },
                ],
                json!({"target": format!("e2e_vs_iptables_{name}"), "sipguard": how, "gain": gain, "met": gain >= 5.0}),
            );
        }
    }
    Ok(vec![table, targets])
}
