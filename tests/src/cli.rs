//! The real `sipguard` binary, run inside a test's network namespace against a private pin
//! directory (removed, with the filter, on drop).

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::netns::{ChildGuard, Netns};

pub struct Sipguard {
    pub pin_dir: String,
    netns: std::path::PathBuf,
}

impl Sipguard {
    /// A sipguard with its own pin directory, operating on `ns`'s interfaces.
    pub fn new(ns: &Netns) -> Self {
        Self::with_pin_dir(ns, &format!("/sys/fs/bpf/{}", crate::unique("sgcli")))
    }

    pub fn with_pin_dir(ns: &Netns, pin_dir: &str) -> Self {
        Self { pin_dir: pin_dir.to_owned(), netns: ns.path() }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns.display()))
            .arg("--")
            .arg(crate::sipguard_bin())
            .arg("--pin-dir")
            .arg(&self.pin_dir)
            .args(args);
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

    /// Count of one reason in `stats --json`.
    pub fn reason(&self, name: &str) -> u64 {
        self.stats()["reasons"][name].as_u64().unwrap_or_else(|| panic!("no reason {name}"))
    }

    /// Starts `sipguard run ARGS` in the background.
    pub fn spawn_run(&self, ns: &Netns, args: &[&str]) -> ChildGuard {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        ns.spawn(&mut self.cmd(&full))
    }

    /// Waits until the first interface's program is no longer `old` (a `run` adopted it).
    pub fn wait_program_replaced(&self, old: &serde_json::Value, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.json(&["status", "--json"])["interfaces"][0]["program_id"] != *old {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the program was not replaced within {timeout:?}");
    }

    /// Waits until the filter is attached to `iface`.
    pub fn wait_attached(&self, iface: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::path::Path::new(&self.pin_dir).join("links").join(iface).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sipguard did not attach to {iface} within {timeout:?}");
    }
}

impl Drop for Sipguard {
    fn drop(&mut self) {
        let _ = self.cmd(&["detach", "--quiet"]).output();
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}
