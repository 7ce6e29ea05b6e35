//! The service manager's readiness protocol (`sd_notify(3)`), so that systemd's `Type=notify`,
//! a script or a test learns when `run` protects instead of guessing with a clock.
//!
//! The protocol is one datagram per state change, `KEY=VALUE` lines, sent to the `AF_UNIX`
//! socket named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). Without
//! that variable every call does nothing. Sending is best effort by design: a supervisor that
//! went away must not take the filter's userspace down with it, so failures are logged once.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::atomic::{AtomicBool, Ordering},
};

/// The variable systemd (or any supervisor) sets to its notification socket.
pub const SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// Where state changes go: the supervisor's socket, or nowhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`. A malformed value is reported and notification is off: `run`
    /// protects all the same.
    #[must_use]
    pub fn from_env() -> Self {
        let target = std::env::var_os(SOCKET_VAR).and_then(|name| {
            let name = name.to_string_lossy().into_owned();
            match open(&name) {
                Ok(t) => Some(t),
                Err(e) => {
                    log::warn!("{SOCKET_VAR}={name}: {e}; readiness will not be reported");
                    None
                }
            }
        });
        Self { target, warned: AtomicBool::new(false) }
    }

    /// Whether a supervisor listens.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Every interface is attached and every listener is open.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}\nMAINPID={}", one_line(status), std::process::id()));
    }

    /// A reload starts (`Type=notify-reload` wants the monotonic time with it).
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }

    /// The process is on its way out; the filter may or may not stay (see `run`).
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn send(&self, message: &str) {
        let Some((socket, addr)) = &self.target else { return };
        if let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            log::warn!("telling the supervisor ({SOCKET_VAR}) our state failed: {e}");
        }
    }
}

fn open(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let addr = if let Some(abstract_name) = name.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt as _;
        SocketAddr::from_abstract_name(abstract_name.as_bytes())?
    } else if name.starts_with('/') {
        SocketAddr::from_pathname(name)?
    } else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an @abstract name",
        ));
    };
    let socket = UnixDatagram::unbound()?;
    // A datagram that cannot be queued at once is not worth blocking the event loop for.
    socket.set_nonblocking(true)?;
    Ok((socket, addr))
}

/// The longest status sent: a supervisor shows it in one line (`systemctl status`), and the
/// whole message must fit a datagram.
const STATUS_MAX: usize = 200;

/// A status is one short line of the protocol: newlines would start new assignments, and a
/// verifier's log has no place in it (the log file has it).
fn one_line(text: &str) -> String {
    let line = text.replace(['\n', '\r'], " ");
    if line.len() <= STATUS_MAX {
        return line;
    }
    let mut cut = STATUS_MAX - 3;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &line[..cut])
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (UnixDatagram, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("sipguard-notify-test-{}", std::process::id()));
        std::fs::remove_file(&path).ok();
        (UnixDatagram::bind(&path).unwrap(), path)
    }

    fn recv(s: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_follow_the_protocol() {
        let (s, path) = listener();
        let n = Notifier {
            target: Some(open(path.to_str().unwrap()).unwrap()),
            warned: AtomicBool::new(false),
        };
        n.ready("protecting eth0\nand more");
        let ready = recv(&s);
        assert!(ready.starts_with("READY=1\nSTATUS=protecting eth0 and more\nMAINPID="), "{ready}");
        n.reloading();
        let reloading = recv(&s);
        let usec: u64 =
            reloading.strip_prefix("RELOADING=1\nMONOTONIC_USEC=").unwrap().parse().unwrap();
        assert!(usec > 0);
        n.stopping("bye");
        assert_eq!(recv(&s), "STOPPING=1\nSTATUS=bye");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_status_is_one_short_line() {
        let long = format!("refused:\n{}", "é".repeat(400));
        let line = one_line(&long);
        assert!(line.len() <= STATUS_MAX, "{}", line.len());
        assert!(!line.contains('\n'));
        assert!(line.starts_with("refused: é") && line.ends_with("..."), "{line}");
        assert_eq!(one_line("short"), "short");
    }

    #[test]
    fn names_must_be_absolute_or_abstract() {
        assert!(open("relative/path").is_err());
        assert!(open("@sipguard-test-abstract").is_ok());
    }
}
