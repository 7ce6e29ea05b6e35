//! The test as `sipguard run`'s supervisor: the listening end of the readiness protocol
//! (`sd_notify(3)`) that systemd's `Type=notify` uses, so the tests wait on the same signal a
//! service manager does. A datagram socket of the test's own, named in `NOTIFY_SOCKET`.

use std::{
    os::unix::net::UnixDatagram,
    path::PathBuf,
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::{netns::ChildGuard, wait::patience};

/// One notification: its `KEY=VALUE` lines.
#[derive(Debug, Clone)]
pub struct Notice(pub String);

impl Notice {
    /// The value of `KEY`, if the notice sets it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// A notification socket, removed on drop.
pub struct Supervisor {
    socket: UnixDatagram,
    path: PathBuf,
    /// Every notice received so far, for failure messages.
    seen: Vec<String>,
}

impl Supervisor {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("{}.sock", crate::unique("sgntf")));
        let socket = UnixDatagram::bind(&path)
            .unwrap_or_else(|e| panic!("binding the notification socket {}: {e}", path.display()));
        Self { socket, path, seen: Vec::new() }
    }

    /// Makes `cmd` report to this socket.
    pub fn supervise(&self, cmd: &mut Command) {
        cmd.env("NOTIFY_SOCKET", &self.path);
    }

    /// Waits for a notice that sets `KEY=VALUE`, while `child` runs. Fails the test if the
    /// child exits first (with its output) or after [`patience`] (with every notice seen).
    pub fn expect(&mut self, child: &mut ChildGuard, key: &str, value: &str) -> Notice {
        let bound = patience();
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        // Short receive slices only to notice the child's exit, the other event we wait on.
        self.socket.set_read_timeout(Some(Duration::from_millis(100))).expect("read timeout");
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let notice = Notice(String::from_utf8_lossy(&buf[..n]).into_owned());
                self.seen.push(notice.0.replace('\n', " "));
                if notice.get(key) == Some(value) {
                    return notice;
                }
                continue;
            }
            if child.exited() {
                let out: Output = child.wait_exit();
                panic!(
                    "waiting for {key}={value}, the process exited ({}) first; notices: {:?}\nstderr: {}",
                    out.status,
                    self.seen,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                start.elapsed() < bound,
                "gave up after {bound:.0?} waiting for {key}={value}; notices so far: {:?}",
                self.seen
            );
        }
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}
