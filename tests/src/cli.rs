//! The real `sipguard` binary, run inside a test's network namespace against a private pin
//! directory (removed, with the filter, on drop).

use std::{
    net::UdpSocket,
    process::{Command, Output},
    time::Duration,
};

use crate::{
    netns::{ChildGuard, Netns, drain},
    supervisor::{Notice, Supervisor},
    wait,
};

pub struct Sipguard {
    pub pin_dir: String,
    netns: std::path::PathBuf,
    /// A command the binary runs under (`setpriv ... --`), if any.
    wrapper: Vec<String>,
    /// Variables set for the binary.
    env: Vec<(String, String)>,
}

impl Sipguard {
    /// A sipguard with its own pin directory, operating on `ns`'s interfaces.
    pub fn new(ns: &Netns) -> Self {
        Self::with_pin_dir(ns, &format!("/sys/fs/bpf/{}", crate::unique("sgcli")))
    }

    pub fn with_pin_dir(ns: &Netns, pin_dir: &str) -> Self {
        Self { pin_dir: pin_dir.to_owned(), netns: ns.path(), wrapper: Vec::new(), env: Vec::new() }
    }

    /// The same filter, driven through `wrapper` (say `setpriv` with a unit's capabilities).
    /// Dropping it detaches nothing: the unconfined one owns the filter.
    #[must_use]
    pub fn confined(&self, wrapper: &[&str]) -> Confined {
        Confined(Self {
            pin_dir: self.pin_dir.clone(),
            netns: self.netns.clone(),
            wrapper: wrapper.iter().map(|w| (*w).to_owned()).collect(),
            env: self.env.clone(),
        })
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns.display()))
            .arg("--")
            .args(&self.wrapper)
            .arg(crate::sipguard_bin())
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(args);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running sipguard")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "sipguard {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs a command that must fail with exit code 1 and exactly one readable error line;
    /// returns that line.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.output(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "sipguard {args:?} should fail; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line expected from {args:?}, got: {stderr}");
        assert!(lines[0].starts_with("sipguard: error: "), "{}", lines[0]);
        lines[0].to_owned()
    }

    /// Runs a command printing one JSON object.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    }

    pub fn stats(&self) -> serde_json::Value {
        self.json(&["stats", "--json"])
    }

    /// The addresses banned now, as `ban list --json` lists them.
    pub fn banned(&self) -> Vec<String> {
        self.ok(&["ban", "list", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["addr"].as_str().map(str::to_owned))
            .collect()
    }

    /// Count of one reason in `stats --json`.
    pub fn reason(&self, name: &str) -> u64 {
        self.stats()["reasons"][name].as_u64().unwrap_or_else(|| panic!("no reason {name}"))
    }

    /// Starts `sipguard run ARGS` in the background, with the test as its supervisor, and
    /// returns at once: [`Run::ready`] waits until it protects.
    pub fn spawn_run(&self, args: &[&str]) -> Run {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        let supervisor = Supervisor::new();
        let mut cmd = self.cmd(&full);
        supervisor.supervise(&mut cmd);
        let mut child = ChildGuard::spawn(&mut cmd);
        child.pump_output();
        Run { child, supervisor, main_pid: None }
    }

    /// Starts `sipguard run ARGS` and waits until it says it protects (`READY=1`).
    pub fn run(&self, args: &[&str]) -> Run {
        let mut run = self.spawn_run(args);
        run.ready();
        run
    }

    /// Sends `payload` from `from` to `to` and waits for its fate: it arrives, or the
    /// filter's drop counter moves, and then which reasons' counters moved with it. A packet
    /// that does neither fails the test after [`wait::patience`] (something other than the
    /// filter lost it).
    pub fn fate(&self, from: &UdpSocket, to: &UdpSocket, payload: &[u8]) -> Fate {
        let dest = to.local_addr().expect("local addr");
        drain(to);
        // Without a filter (detached) nothing can drop: only arrival counts.
        let counters = || {
            let stats: serde_json::Value =
                serde_json::from_slice(&self.output(&["stats", "--json"]).stdout).ok()?;
            Some((stats["dropped"].as_u64()?, stats["reasons"].as_object()?.clone()))
        };
        let before = counters();
        from.send_to(payload, dest).expect("send");
        let mut buf = [0u8; 2048];
        to.set_read_timeout(Some(Duration::from_millis(20))).expect("read timeout");
        wait::until("the packet to arrive or the drop counter to move", || {
            while let Ok((n, _)) = to.recv_from(&mut buf) {
                if &buf[..n] == payload {
                    return Ok(Fate::Delivered);
                }
            }
            match (&before, counters()) {
                (Some((b, was)), Some((now, reasons))) if now > *b => {
                    let moved = reasons
                        .iter()
                        .filter(|(name, n)| {
                            n.as_u64() > was.get(*name).and_then(serde_json::Value::as_u64)
                        })
                        .map(|(name, _)| name.clone())
                        .collect();
                    Ok(Fate::Dropped(moved))
                }
                (b, now) => Err(format!(
                    "not arrived; dropped counter {:?} then {:?}",
                    b.as_ref().map(|c| c.0),
                    now.map(|c| c.0)
                )),
            }
        })
    }

    /// Whether a packet from `from` reaches `to`.
    pub fn arrives(&self, from: &UdpSocket, to: &UdpSocket, payload: &[u8]) -> bool {
        self.fate(from, to, payload) == Fate::Delivered
    }

    /// Whether the filter drops a packet from `from` to `to` as `reason` (the name of its
    /// counter in `stats`). A drop for another reason fails the test: a list, a ban and a
    /// policy that all drop are not interchangeable.
    pub fn drops(&self, from: &UdpSocket, to: &UdpSocket, payload: &[u8], reason: &str) -> bool {
        match self.fate(from, to, payload) {
            Fate::Delivered => false,
            Fate::Dropped(moved) => {
                assert!(
                    moved.iter().any(|r| r == reason),
                    "dropped, but as {moved:?}, not as {reason}"
                );
                true
            }
        }
    }

    /// Entries of the ban map as the kernel holds them, expired or not, read by `bpftool`
    /// (not by sipguard).
    pub fn ban_entries(&self) -> usize {
        self.map_entries(sipguard_common::maps::BANS)
    }

    /// Entries of the pinned map `map` of this filter, read by `bpftool`.
    pub fn map_entries(&self, map: &str) -> usize {
        let path = format!("{}/maps/{map}", self.pin_dir);
        let out = crate::netns::run_ok(
            Command::new("bpftool").args(["-j", "map", "dump", "pinned", &path]),
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .expect("bpftool's JSON")
            .as_array()
            .map_or(0, Vec::len)
    }

    /// Waits until the counter of `reason` reaches `at_least`; returns its value.
    pub fn wait_reason(&self, reason: &str, at_least: u64) -> u64 {
        wait::until(&format!("{reason} to reach {at_least}"), || {
            let now = self.reason(reason);
            if now >= at_least { Ok(now) } else { Err(format!("{reason} = {now}")) }
        })
    }

    /// The program id on the first attached interface.
    pub fn program_id(&self) -> serde_json::Value {
        self.json(&["status", "--json"])["interfaces"][0]["program_id"].clone()
    }
}

/// What became of a packet sent through the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    /// Dropped by the filter; the reasons whose counters moved meanwhile.
    Dropped(Vec<String>),
}

/// A `sipguard run` in the background, supervised by the test through the readiness protocol.
pub struct Run {
    pub child: ChildGuard,
    supervisor: Supervisor,
    /// The `MAINPID` of its readiness notice: signals go there, as systemd sends them (the
    /// process started may be a wrapper, such as `strace`).
    main_pid: Option<i32>,
}

impl Run {
    /// Waits for `READY=1`: every interface attached, every listener open. Returns the
    /// notice (its `STATUS` says what it protects).
    pub fn ready(&mut self) -> Notice {
        let notice = self.supervisor.expect(&mut self.child, "READY", "1");
        self.main_pid = notice.get("MAINPID").and_then(|p| p.parse().ok());
        notice
    }

    /// Waits for a reload's acknowledgement (`RELOADING=1`, then `READY=1`); returns the
    /// `STATUS` it ended with (applied, or refused and why).
    pub fn reloaded(&mut self) -> String {
        self.supervisor.expect(&mut self.child, "RELOADING", "1");
        let notice = self.supervisor.expect(&mut self.child, "READY", "1");
        notice.get("STATUS").unwrap_or_default().to_owned()
    }

    /// Waits for `STOPPING=1`; returns its `STATUS`.
    pub fn stopping(&mut self) -> String {
        let notice = self.supervisor.expect(&mut self.child, "STOPPING", "1");
        notice.get("STATUS").unwrap_or_default().to_owned()
    }

    pub fn signal(&mut self, sig: i32) {
        match self.main_pid {
            // SAFETY: kill(2) on the process that said it is the service.
            Some(pid) => unsafe {
                libc::kill(pid, sig);
            },
            None => self.child.signal(sig),
        }
    }

    /// Waits for the process to exit; returns its output.
    pub fn wait_exit(&mut self) -> Output {
        self.child.wait_exit()
    }
}

/// A [`Sipguard`] run under a wrapper; it leaves the filter to the one it came from.
pub struct Confined(Sipguard);

impl Confined {
    /// The same, with `key` set to `value` in the binary's environment.
    #[must_use]
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.0.env.push((key.to_owned(), value.to_owned()));
        self
    }
}

impl std::ops::Deref for Confined {
    type Target = Sipguard;
    fn deref(&self) -> &Sipguard {
        &self.0
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        // Nothing to clean: the pin directory belongs to the unconfined `Sipguard`.
        self.0.pin_dir.clear();
    }
}

impl Drop for Sipguard {
    fn drop(&mut self) {
        if self.pin_dir.is_empty() {
            return;
        }
        self.cmd(&["detach", "--quiet"]).output().ok();
        std::fs::remove_dir_all(&self.pin_dir).ok();
    }
}
