//! The real XDP program loaded into the running kernel, driven with `BPF_PROG_TEST_RUN`.

use aya::programs::{TestRun as _, TestRunOptions};
use sipguard::{
    cidr::Cidr,
    kernel::{
        maps::{ListKind, PinnedMaps},
        pin::PinLayout,
        program::{self, Loaded},
    },
    signatures::{self, Signature},
    state::{change, lists, sigset},
};
use sipguard_common::{
    config::{Config, DEFAULT_SIP_PORTS},
    counters::{CLASS_BASE, COUNTER_SLOTS, MONITOR_BASE, PayloadClass, Reason},
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// What one run of the program did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub action: u32,
    pub reason: Reason,
    /// The drop was turned into a pass by monitor mode.
    pub monitored: bool,
    /// Payload class counted, if the payload was examined.
    pub class: Option<PayloadClass>,
    /// Every counter slot that moved, with its increment.
    pub moved: Vec<(u32, u64)>,
}

/// The program with its maps pinned in a private directory, removed on drop.
pub struct TestFilter {
    layout: PinLayout,
    loaded: Loaded,
    pub maps: PinnedMaps,
    /// Whether configurations keep their reverse-path mode (see [`Self::set_config`]).
    reverse_path: bool,
}

impl TestFilter {
    /// Loads the program with the default configuration and SIP ports 5060 and 5061.
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    pub fn with_capacity(list_capacity: u32) -> Self {
        Self::with_capacities(program::Capacities {
            lists: list_capacity,
            ..program::Capacities::default()
        })
    }

    pub fn with_capacities(capacity: program::Capacities) -> Self {
        crate::require_root();
        let layout = PinLayout::new(format!("/sys/fs/bpf/{}", crate::unique("sgtest")));
        let loaded = program::load(&layout, capacity).expect("loading the XDP program");
        sipguard::state::upgrade::pin_layout(&layout).expect("bringing the pins up to date");
        assert!(loaded.fresh, "a private pin directory starts empty");
        let maps = PinnedMaps::open(&layout).expect("opening the maps");
        change::run(&maps, |tx| tx.set_ports(&DEFAULT_SIP_PORTS)).expect("setting ports");
        let mut f = Self { layout, loaded, maps, reverse_path: false };
        f.set_config(Config::default());
        f.reverse_path = false;
        f
    }

    /// Lets configurations keep their reverse-path mode. Without an ingress interface
    /// ([`Self::run_on`]) a test run's packet arrives on the loopback device, whose route
    /// back depends on the host (it forwards or not): so by default the check is off.
    pub fn judge_reverse_path(&mut self) {
        self.reverse_path = true;
    }

    /// Replaces the configuration, keeping the live automaton slot (signatures stay), with
    /// the reverse-path check off unless [`Self::judge_reverse_path`] was called.
    pub fn set_config(&self, config: Config) {
        let mut config = config;
        if !self.reverse_path {
            config = config.with_reverse_path(sipguard_common::trust::ReversePath::Off);
        }
        config.automaton_slot = self.maps.config().expect("reading config").automaton_slot;
        change::run(&self.maps, |tx| tx.set_config("the test's configuration", &config))
            .expect("setting config");
    }

    pub fn config(&self) -> Config {
        self.maps.config().expect("reading config")
    }

    /// Installs exactly these signatures.
    pub fn signatures(&self, sigs: Vec<Signature>) {
        sigset::replace(&self.maps, sigs).expect("installing signatures");
    }

    /// Installs the built-in catalog.
    pub fn catalog(&self) {
        self.signatures(signatures::catalog());
    }

    /// Hits per installed signature name.
    pub fn hits(&self) -> std::collections::BTreeMap<String, u64> {
        let hits = self.maps.sig_hits().expect("reading hits");
        sigset::installed(&self.maps)
            .expect("reading signatures")
            .into_iter()
            .map(|(slot, s)| (s.name, hits[usize::from(slot)]))
            .collect()
    }

    /// Incident records waiting in the ring buffer.
    pub fn events(&self) -> Vec<serde_json::Value> {
        sipguard::report::events::drain(&self.layout, &self.maps).expect("reading events")
    }

    /// The live ban of `who`, if it is banned.
    pub fn ban_of(&self, who: &str) -> Option<sipguard::state::bans::BanInfo> {
        let addr: std::net::IpAddr = who.parse().expect("a test address");
        sipguard::state::bans::list(&self.maps)
            .expect("listing bans")
            .into_iter()
            .find(|b| b.addr == addr)
    }

    /// Runs `frame` `repeat` times in one `BPF_PROG_TEST_RUN` and returns the kernel's
    /// average time per run.
    pub fn run_repeated(&mut self, frame: &[u8], repeat: u32) -> std::time::Duration {
        let prog = self.loaded.program_mut().expect("program");
        prog.test_run(TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::new() })
            .expect("BPF_PROG_TEST_RUN")
            .duration
    }

    /// The loaded program, for callers that drive `BPF_PROG_TEST_RUN` themselves.
    pub fn program_fd(&mut self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.loaded.program_mut().expect("program").fd().expect("program fd").as_fd()
    }

    /// The loaded response program.
    pub fn responses_fd(&mut self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd as _;
        self.loaded.responses_mut().expect("response program").fd().expect("fd").as_fd()
    }

    pub fn layout(&self) -> &PinLayout {
        &self.layout
    }

    pub fn set_ports(&self, ports: &[u16]) {
        change::run(&self.maps, |tx| tx.set_ports(ports)).expect("setting ports");
    }

    pub fn add(&self, kind: ListKind, cidrs: &[&str]) {
        let cidrs: Vec<Cidr> = cidrs.iter().map(|c| c.parse().expect("test CIDR")).collect();
        lists::add(&self.maps, kind, &mut lists::Target::Global, &cidrs).expect("adding to a list");
    }

    /// Runs the program once on `frame` and explains the result from the counters. Asserts
    /// the accounting invariant: exactly one verdict counter moved, by one.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        self.run_on(frame, 0)
    }

    /// [`Self::run`], the frame arriving on the interface `ifindex` of the calling thread's
    /// network namespace (0: the loopback device, as without a context).
    pub fn run_on(&mut self, frame: &[u8], ifindex: u32) -> Outcome {
        let before = self.maps.counters().expect("reading counters");
        let prog = self.loaded.program_mut().expect("program");
        // `struct xdp_md`: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
        // egress_ifindex.
        let len = u32::try_from(frame.len()).expect("a frame's length");
        let md: Vec<u8> =
            [0, len, 0, ifindex, 0, 0].iter().flat_map(|w: &u32| w.to_ne_bytes()).collect();
        let ctx = (ifindex != 0).then_some(md.as_slice());
        let result = prog
            .test_run(TestRunOptions { data_in: Some(frame), ctx_in: ctx, ..TestRunOptions::new() })
            .expect("BPF_PROG_TEST_RUN");
        let after = self.maps.counters().expect("reading counters");
        let moved: Vec<(u32, u64)> = (0..COUNTER_SLOTS)
            .filter_map(|slot| {
                let d = after[slot as usize] - before[slot as usize];
                (d != 0).then_some((slot, d))
            })
            .collect();
        let verdicts: Vec<&(u32, u64)> = moved.iter().filter(|(s, _)| *s < CLASS_BASE).collect();
        assert_eq!(verdicts.len(), 1, "exactly one verdict counter must move, moved: {moved:?}");
        assert_eq!(verdicts[0].1, 1, "a verdict counter moves by one per packet");
        let slot = verdicts[0].0;
        let monitored = slot >= MONITOR_BASE;
        let index = if monitored { slot - MONITOR_BASE } else { slot };
        let reason = *Reason::ALL.get(index as usize).expect("a known reason slot");
        let class =
            PayloadClass::ALL.into_iter().find(|c| moved.iter().any(|(s, _)| *s == c.slot()));
        Outcome { action: result.return_value, reason, monitored, class, moved }
    }

    /// Runs the response program (TC egress) once on `frame`, an answer leaving a protected
    /// server. Returns what it returned (it must hand every answer on unchanged) and the
    /// counter slots that moved.
    pub fn respond(&mut self, frame: &[u8]) -> (i32, Vec<(u32, u64)>) {
        self.try_respond(frame).expect("BPF_PROG_TEST_RUN of the response program")
    }

    /// [`Self::respond`], or the kernel's refusal to run the program on `frame`.
    pub fn try_respond(
        &mut self,
        frame: &[u8],
    ) -> Result<(i32, Vec<(u32, u64)>), aya::programs::ProgramError> {
        let before = self.maps.counters().expect("reading counters");
        let prog = self.loaded.responses_mut().expect("response program");
        let result =
            prog.test_run(TestRunOptions { data_in: Some(frame), ..TestRunOptions::new() })?;
        let after = self.maps.counters().expect("reading counters");
        let moved = (0..COUNTER_SLOTS)
            .filter_map(|slot| {
                let d = after[slot as usize] - before[slot as usize];
                (d != 0).then_some((slot, d))
            })
            .collect();
        Ok((result.return_value.cast_signed(), moved))
    }

    /// Runs the program and checks action and reason.
    pub fn expect(&mut self, frame: &[u8], action: u32, reason: Reason) -> Outcome {
        let o = self.run(frame);
        assert_eq!((o.action, o.reason), (action, reason), "outcome: {o:?}");
        o
    }
}

impl Default for TestFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestFilter {
    fn drop(&mut self) {
        self.layout.remove_all().ok();
    }
}
