//! `cargo xtask bench baseline --baseline OBJECT`: this build's XDP program against another
//! build's object, side by side in one run on one CPU, on the packets every change must not
//! make dearer: a non-SIP packet, a banned source, a scanner's probe dropped by signature, a
//! legitimate INVITE; and a few messages that isolate parts of the inspection. Both filters
//! get the same settings and the built-in catalog; the two take turns, one short round each,
//! many times over, and each figure is the fastest of its rounds: the one the rest of a shared
//! machine disturbed least.
//!
//! The other object is loaded as its build attaches it: its entry program `sipguard`, over
//! maps pinned in a directory of its own (the map layout is the same; its jump table, if it
//! has one, is filled from its own stage programs).

use std::{
    os::fd::{AsFd as _, BorrowedFd},
    path::Path,
};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    maps::ProgramArray,
    programs::{Program, Xdp},
};
use serde_json::json;
use sipguard::{
    kernel::{maps::PinnedMaps, pin::PinLayout},
    signatures,
    state::{bans, change, sigset},
};
use sipguard_common::{
    config::{Config, DEFAULT_SIP_PORTS},
    maps as names,
    stages::Stage,
};

use super::{
    Options,
    report::{Table, ns},
    testrun,
};
use crate::{
    corpus,
    frames::Frame,
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const PBX: &str = "198.51.100.1";
const CALLER: &str = "192.0.2.10";
const BANNED: &str = "203.0.113.77";
const SCANNER: &str = "203.0.113.99";

const LONG: &str =
    "Via: SIP/2.0/UDP 192.168.1.100:5062;branch=z9hG4bK1741468231;rport=5062;received=192.0.2.10";
const FROM: &str = "From: \"Alice\" <sip:alice@pbx.example.com>;tag=a73kszlfl";
const TO: &str = "To: <sip:bob@pbx.example.com>";

/// How much dearer a scenario may get.
const LIMIT: f64 = 0.05;

/// Another build's program over maps of its own, removed on drop.
struct Other {
    layout: PinLayout,
    ebpf: Ebpf,
}

impl Other {
    fn load(object: &Path) -> anyhow::Result<Self> {
        let bytes =
            std::fs::read(object).with_context(|| format!("reading {}", object.display()))?;
        let layout = PinLayout::new(format!("/sys/fs/bpf/{}", crate::unique("sgbench")));
        layout.prepare()?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(layout.maps_dir())
            .load(&bytes)
            .with_context(|| format!("loading the object {}", object.display()))?;
        let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_owned()).collect();
        for name in &names {
            if let Some(Program::Xdp(p)) = ebpf.program_mut(name) {
                p.load().with_context(|| format!("loading its program {name}"))?;
            }
        }
        // A split build hands over to its stages through its own jump table.
        let stages: Vec<_> = Stage::ALL
            .iter()
            .filter_map(|s| {
                let p: &Xdp = ebpf.program(s.program())?.try_into().ok()?;
                Some((s.slot(), p.fd().ok()?.try_clone().ok()?))
            })
            .collect();
        if let Some(map) = ebpf.map_mut(names::STAGES) {
            let mut table = ProgramArray::try_from(map)?;
            for (slot, fd) in &stages {
                table.set(*slot, fd, 0)?;
            }
        }
        sipguard::state::upgrade::pin_layout(&layout)?;
        Ok(Self { layout, ebpf })
    }

    fn program_fd(&self) -> anyhow::Result<BorrowedFd<'_>> {
        let p: &Xdp = self.ebpf.program("sipguard").context("no program `sipguard`")?.try_into()?;
        Ok(p.fd()?.as_fd())
    }
}

impl Drop for Other {
    fn drop(&mut self) {
        self.layout.remove_all().ok();
    }
}

/// The same settings on both: ports, bans off (a probe's drop must not turn into a ban's),
/// the catalog, one banned source.
fn configure(maps: &PinnedMaps, config: Config) -> anyhow::Result<()> {
    let mut config = config;
    config.automaton_slot = maps.config()?.automaton_slot;
    change::run(maps, |tx| {
        tx.set_ports(&DEFAULT_SIP_PORTS)?;
        tx.set_config("the bench's configuration", &config)
    })?;
    sigset::replace(maps, signatures::catalog())?;
    bans::add(maps, &[BANNED.parse()?], 3600)?;
    Ok(())
}

/// This build's program, or another object standing in for it (`--candidate`).
enum Candidate {
    Embedded(TestFilter),
    Object(Other),
}

impl Candidate {
    fn program_fd(&mut self) -> anyhow::Result<BorrowedFd<'_>> {
        match self {
            Candidate::Embedded(f) => Ok(f.program_fd()),
            Candidate::Object(o) => o.program_fd(),
        }
    }
}

/// `object` against this build, or against `candidate` when given (two builds of the work in
/// progress, without rebuilding this one).
pub fn run(opts: &Options, object: &Path, candidate: Option<&Path>) -> anyhow::Result<Vec<Table>> {
    let config = Config::default()
        .with_ban_ttl(0)
        .with_reverse_path(sipguard_common::trust::ReversePath::Off);
    let mut ours = match candidate {
        None => {
            let f = TestFilter::new();
            configure(&f.maps, config)?;
            Candidate::Embedded(f)
        }
        Some(path) => {
            let o = Other::load(path)?;
            configure(&PinnedMaps::open(&o.layout)?, config)?;
            Candidate::Object(o)
        }
    };
    let theirs = Other::load(object)?;
    configure(&PinnedMaps::open(&theirs.layout)?, config)?;
    let svmap = corpus::message("scanners", "svmap-options.sip");
    let invite = corpus::message("legit", "yealink-invite-sdp.sip");
    let sip = |src: &str, m: &[u8]| Frame::udp(src, PBX, 5060).payload(m).build();
    let with = |lines: &[&str]| {
        let mut m = b"OPTIONS sip:100@198.51.100.1 SIP/2.0\r\n".to_vec();
        for l in lines {
            m.extend_from_slice(l.as_bytes());
            m.extend_from_slice(b"\r\n");
        }
        m.extend_from_slice(b"\r\n");
        m
    };
    let options = |lines: usize| {
        let mut m = b"OPTIONS sip:100@198.51.100.1 SIP/2.0\r\n".to_vec();
        for _ in 0..lines {
            m.extend_from_slice(b"Max-Forwards: 70\r\n");
        }
        m.extend_from_slice(b"\r\n");
        m
    };
    let scenarios = [
        (
            "UDP to a non-SIP port".to_owned(),
            Frame::udp(CALLER, PBX, 53).payload(&invite[..64]).build(),
            XDP_PASS,
        ),
        ("svmap OPTIONS from a banned source".to_owned(), sip(BANNED, &svmap), XDP_DROP),
        ("svmap OPTIONS, dropped by signature".to_owned(), sip(SCANNER, &svmap), XDP_DROP),
        (format!("legitimate {}-byte INVITE", invite.len()), sip(CALLER, &invite), XDP_PASS),
        ("OPTIONS, start line only".to_owned(), sip(CALLER, &options(0)), XDP_PASS),
        ("OPTIONS, 9 plain header lines".to_owned(), sip(CALLER, &options(9)), XDP_PASS),
        ("OPTIONS, 3 long lines".to_owned(), sip(CALLER, &with(&[LONG, LONG, LONG])), XDP_PASS),
        ("OPTIONS, From and To".to_owned(), sip(CALLER, &with(&[FROM, TO])), XDP_PASS),
    ];
    let mut table = Table::new(
        &format!(
            "This build against {} (ns per packet, side by side: the fastest of many interleaved turns of each)",
            object.display()
        ),
        &["scenario", "baseline", "this build", "change", "target"],
    );
    let turns = (opts.rounds * 7).max(9);
    let repeat = (opts.repeat / 10).max(1000);
    for (label, frame, expect) in &scenarios {
        let (mut before, mut after) = (Vec::new(), Vec::new());
        for turn in 0..turns {
            // Each turn times both back to back, in alternating order.
            let (b, a) = if turn % 2 == 0 {
                let b = testrun::typical(theirs.program_fd()?, frame, repeat, 1, *expect)?.ns;
                (b, testrun::typical(ours.program_fd()?, frame, repeat, 1, *expect)?.ns)
            } else {
                let a = testrun::typical(ours.program_fd()?, frame, repeat, 1, *expect)?.ns;
                (testrun::typical(theirs.program_fd()?, frame, repeat, 1, *expect)?.ns, a)
            };
            before.push(b);
            after.push(a);
        }
        // The fastest turn of each is the one least disturbed by the rest of the machine: on a
        // shared machine that is the steadiest estimate of what the code itself costs (the
        // medians, and the median of the turns' ratios, moved by several percent between
        // runs).
        let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let (b, a) = (fastest(&before), fastest(&after));
        let change = a / b - 1.0;
        let met = change <= LIMIT;
        table.row(
            vec![
                label.clone(),
                ns(b),
                ns(a),
                format!("{:+.1}%", change * 100.0),
                format!("<= +{:.0}% ({})", LIMIT * 100.0, if met { "met" } else { "missed" }),
            ],
            json!({"scenario": label, "baseline_ns": b, "ns": a, "change": change, "met": met}),
        );
    }
    Ok(vec![table])
}
