//! The fleet of the fleet suites: edge hosts that enforce the decisions of a real CrowdSec
//! Local API (Debian's 1.4.6, offline, in a namespace of its own) through the real `sipguard
//! run`, on a LAN with a scanner. Decisions are made with the real `cscli`.

use std::{
    net::UdpSocket,
    time::{Duration, Instant},
};

use crate::{cli::Sipguard, crowdsec::LocalApi, netns::Lan, wait};

pub const API: &str = "10.88.0.10";
pub const EDGES: [(&str, &str); 2] = [("10.88.0.1", "fd88::1"), ("10.88.0.2", "fd88::2")];
/// The scanner's addresses: one named by an `--ip` decision, one inside a `--range`, one
/// that no decision names, per family.
pub const SCANNER: [&str; 3] = ["10.88.0.66", "10.88.7.9", "10.88.0.77"];
pub const SCANNER_V6: [&str; 3] = ["fd88::66", "fd88:0:7::9", "fd88::77"];
/// Where the scanner runs `svmap` from while the API is down (a ban of its own).
pub const SVMAP_WHILE_DOWN: &str = "10.88.0.88";
pub const METRICS: &str = "127.0.0.1:9108";
pub const PROBE: &[u8] =
    b"OPTIONS sip:100@pbx SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nCall-ID: f1@x\r\n\r\n";

/// The LAN: the API, two edge hosts with a PBX socket each, the scanner.
pub struct Fleet {
    pub lan: Lan,
    pub api: LocalApi,
}

impl Default for Fleet {
    fn default() -> Self {
        Self::new()
    }
}

impl Fleet {
    #[must_use]
    pub fn new() -> Self {
        Self::with_api(false)
    }

    /// The same with an API that serves TLS (its certificate signed by a CA of its own).
    pub fn tls() -> Self {
        Self::with_api(true)
    }

    pub fn with_api(tls: bool) -> Self {
        let lan = Lan::new(&[
            ("api", &format!("{API}/16")),
            ("ea", &format!("{}/16", EDGES[0].0)),
            ("eb", &format!("{}/16", EDGES[1].0)),
            ("sc", &format!("{}/16", SCANNER[0])),
        ]);
        let v6 = ["fd88::10", EDGES[0].1, EDGES[1].1, SCANNER_V6[0]];
        for (ns, addr) in lan.hosts.iter().zip(v6) {
            ns.ip(&["addr", "add", &format!("{addr}/48"), "dev", "eth0", "nodad"]);
            // The scanner's addresses outside that /48 route back by the LAN too: the edges'
            // reverse-path check judges every packet.
            ns.ip(&["-6", "route", "add", "fd88::/32", "dev", "eth0"]);
        }
        let scanner = &lan.hosts[3];
        for a in SCANNER[1..].iter().chain([&SVMAP_WHILE_DOWN]) {
            scanner.ip(&["addr", "add", &format!("{a}/16"), "dev", "eth0"]);
        }
        for a in &SCANNER_V6[1..] {
            scanner.ip(&["addr", "add", &format!("{a}/48"), "dev", "eth0", "nodad"]);
        }
        let listen = format!("{API}:8080").parse().unwrap();
        let api = if tls {
            LocalApi::start_tls(&lan.hosts[0], listen)
        } else {
            LocalApi::start(&lan.hosts[0], listen)
        };
        Self { lan, api }
    }

    /// Starts `sipguard run` on edge `i`, a bouncer of the API polling every `interval`.
    pub fn edge(&self, i: usize, interval: u64) -> Edge {
        self.start_edge(i, interval, false, &[])
    }

    /// The same, sharing its bans as the machine `edge<i>`.
    pub fn sharing_edge(&self, i: usize, interval: u64) -> Edge {
        self.start_edge(i, interval, true, &[])
    }

    pub fn start_edge(&self, i: usize, interval: u64, sharing: bool, extra: &[&str]) -> Edge {
        let ns = &self.lan.hosts[1 + i];
        let sg = Sipguard::new(ns);
        let key = self.api.bouncer(&format!("edge{i}"));
        let pbx =
            [ns.udp(&format!("{}:5060", EDGES[i].0)), ns.udp(&format!("[{}]:5060", EDGES[i].1))];
        let mut args = run_args(&self.api.url(), &key, interval);
        let events = self.api.dir.join(format!("edge{i}.events"));
        args.extend(["--events-file".to_owned(), events.display().to_string()]);
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        if sharing {
            let password =
                self.api.machine(&format!("edge{i}"), &format!("edge{i}-password-0123456789"));
            args.extend([
                "--crowdsec-machine".to_owned(),
                format!("edge{i}"),
                "--crowdsec-password-file".to_owned(),
                password.display().to_string(),
            ]);
        }
        let run = sg.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        Edge { sg, pbx, run: Some(run), args, events }
    }

    /// A socket of the scanner on `addr`.
    pub fn scanner(&self, addr: &str) -> UdpSocket {
        let bind = if addr.contains(':') { format!("[{addr}]:0") } else { format!("{addr}:0") };
        self.lan.hosts[3].udp(&bind)
    }
}

#[must_use]
pub fn run_args(url: &str, key: &std::path::Path, interval: u64) -> Vec<String> {
    [
        "-i",
        "eth0",
        "--stats-interval",
        "0",
        "--crowdsec-url",
        url,
        "--crowdsec-key-file",
        key.to_str().unwrap(),
        "--crowdsec-interval",
        &interval.to_string(),
        // A usage-metrics report each second: the 1.4.6 API answers each with a 404.
        "--crowdsec-metrics-interval",
        "1",
        // The edge's own loopback: every edge may use the same port.
        "--metrics",
        METRICS,
    ]
    .map(String::from)
    .to_vec()
}

/// One edge host's `sipguard run`, with the PBX sockets it protects (IPv4, IPv6).
pub struct Edge {
    pub sg: Sipguard,
    pub pbx: [UdpSocket; 2],
    pub run: Option<crate::cli::Run>,
    pub args: Vec<String>,
    /// The incident log (`--events-file`).
    pub events: std::path::PathBuf,
}

impl Edge {
    pub fn pbx_for(&self, src: &str) -> &UdpSocket {
        &self.pbx[usize::from(src.contains(':'))]
    }

    /// Waits until a packet from `from` (at `src`) meets `dropped`; returns how long it took.
    pub fn until(&self, from: &UdpSocket, src: &str, dropped: bool) -> Duration {
        let start = Instant::now();
        let what = if dropped { "dropped" } else { "delivered" };
        wait::until(&format!("{src}'s packets to be {what}"), || {
            if self.sg.drops(from, self.pbx_for(src), PROBE, "decision") == dropped {
                Ok(start.elapsed())
            } else {
                Err(format!("not {what} yet"))
            }
        })
    }

    /// `party` (at `socket`) registers through this edge, and the PBX answers with a 200
    /// OK: the party has standing here once the edge counted it.
    pub fn earn_standing(&self, socket: &UdpSocket, party: &str) {
        let edge = self.pbx_for(party).local_addr().unwrap().ip();
        let dialog = format!(
            "Via: SIP/2.0/UDP {party}:5060;branch=z9hG4bK1\r\nFrom: <sip:trunk@{edge}>;tag=1\r\nTo: <sip:trunk@{edge}>"
        );
        let tail =
            format!("Call-ID: reg1@{party}\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n");
        let register = format!("REGISTER sip:{edge} SIP/2.0\r\n{dialog}\r\n{tail}");
        assert!(self.sg.arrives(socket, self.pbx_for(party), register.as_bytes()));
        let granted = || self.sg.stats()["counters"]["standing_granted"].as_u64().unwrap_or(0);
        let before = granted();
        let ok = format!("SIP/2.0 200 OK\r\n{dialog};tag=2\r\n{tail}");
        self.pbx_for(party).send_to(ok.as_bytes(), socket.local_addr().unwrap()).unwrap();
        wait::until(&format!("{party}'s standing"), || {
            let n = granted();
            if n > before { Ok(()) } else { Err(format!("standing_granted = {n}")) }
        });
    }

    pub fn crowdsec(&self) -> serde_json::Value {
        self.sg.json(&["status", "--json"])["crowdsec"].clone()
    }

    pub fn decisions(&self) -> Vec<serde_json::Value> {
        self.sg
            .ok(&["decisions", "list", "--json"])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["type"] == "decision")
            .collect()
    }
}

/// Ten `sipp` calls from `from` (an address of the scanner's host) to the sipp PBX on
/// `edge`'s port 5061: every one must complete.
pub fn trunk_calls(fleet: &Fleet, from: &str, edge: &str) {
    let limit = wait::patience().as_secs().to_string();
    let out = fleet.lan.hosts[3]
        .exec("timeout")
        .args([limit.as_str(), "sipp", "-sn", "uac", "-i", from, "-m", "10", "-r", "20"])
        .args(["-nostdin", "-default_behaviors", "all,-abortunexp"])
        .arg(format!("{edge}:5061"))
        .output()
        .expect("running sipp");
    assert!(
        out.status.success(),
        "every call from {from} completes:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `svmap ARGS` from the scanner's namespace, to completion.
pub fn svmap(fleet: &Fleet, args: &[&str]) {
    let limit = wait::patience().as_secs().to_string();
    let out = fleet.lan.hosts[3]
        .exec("timeout")
        .args([limit.as_str(), "svmap", "-t", "0.2"])
        .args(args)
        .output()
        .expect("running svmap");
    assert!(out.status.success(), "svmap: {}", String::from_utf8_lossy(&out.stderr));
}
