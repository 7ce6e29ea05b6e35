//! A program the kernel refused, said in a few lines: which program, what the verifier
//! counted against its limit, its last word, the kernel, and where its whole log was
//! written. A refused load's log runs to thousands of lines; it goes to a file, never to the
//! terminal or to a supervisor's status line.

use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The verifier's limit of processed instructions per program (`BPF_COMPLEXITY_LIMIT_INSNS`).
pub const VERIFIER_LIMIT: u32 = 1_000_000;

static LOG_PATH: OnceLock<PathBuf> = OnceLock::new();

/// Makes refused loads write the verifier's log to `path` (`--verifier-log`) instead of the
/// default place. Set once, by the binary, before anything loads.
pub fn log_refusals_to(path: PathBuf) {
    // A second call would be the binary's own mistake; the first path stands.
    LOG_PATH.set(path).ok();
}

/// Where a refusal's log goes: `--verifier-log`, else the service's logs directory (systemd's
/// `LOGS_DIRECTORY`, /var/log/sipguard for the packaged unit), else the temporary directory.
#[must_use]
pub(super) fn log_path(program: &str) -> PathBuf {
    if let Some(path) = LOG_PATH.get() {
        return path.clone();
    }
    let file = format!("sipguard-verifier-{program}.log");
    match std::env::var_os("LOGS_DIRECTORY") {
        Some(dirs) if !dirs.is_empty() => {
            let dirs = dirs.to_string_lossy().into_owned();
            let first = dirs.split(':').next().unwrap_or_default().to_owned();
            Path::new(&first).join(file)
        }
        _ => std::env::temp_dir().join(file),
    }
}

/// The kernel refused to load a program.
#[derive(Debug)]
pub struct Refusal {
    /// The program's name in the object.
    pub program: &'static str,
    /// What the load returned (`E2BIG` for a program over the limit, `EACCES`, `EINVAL`).
    pub error: String,
    /// Instructions the verifier processed before it gave up, when its log says.
    pub processed: Option<u64>,
    /// The verifier's last word: the line that says why.
    pub reason: Option<String>,
    pub kernel: String,
    /// Where the whole log went, or why it could not be written there.
    pub log: Result<PathBuf, String>,
    /// The load's errno, when it had one.
    pub errno: Option<i32>,
    /// Whether the verifier ran (it wrote a log): a program refused before it ran was
    /// refused for want of privilege or of a feature, not for what it does.
    pub verified: bool,
}

impl Refusal {
    /// Reads what matters from the verifier's `log` and writes the whole of it to `path`.
    #[must_use]
    pub fn new(program: &'static str, error: &io::Error, log: &str, path: &Path) -> Self {
        let written = if log.trim().is_empty() {
            Err("the kernel wrote no log".to_owned())
        } else {
            std::fs::write(path, log).map(|()| path.to_path_buf()).map_err(|e| format!("{e}"))
        };
        Self {
            program,
            error: error.to_string(),
            processed: processed(log),
            reason: reason(log),
            kernel: crate::kernel::probe::release(),
            log: written.map_err(|e| format!("writing it to {} failed: {e}", path.display())),
            errno: error.raw_os_error(),
            verified: !log.trim().is_empty(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the kernel ({}) refused the program `{}`", self.kernel, self.program)?;
        if !self.verified {
            write!(f, " before verifying it: {}", self.error)?;
            if matches!(self.errno, Some(libc::EPERM | libc::EACCES)) {
                write!(f, " (loading it needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)")?;
            }
            return Ok(());
        }
        match (self.processed, &self.reason) {
            (Some(n), Some(why)) => {
                write!(
                    f,
                    ": {why} (the verifier processed {n} of its {VERIFIER_LIMIT} instructions)"
                )?;
            }
            (Some(n), None) => {
                write!(f, ": the verifier processed {n} of its {VERIFIER_LIMIT} instructions")?;
            }
            (None, Some(why)) => write!(f, ": {why}")?,
            (None, None) => write!(f, ": {}", self.error)?,
        }
        match &self.log {
            Ok(path) => write!(f, "; the verifier's log is in {}", path.display()),
            Err(why) => write!(f, "; the verifier's log is lost ({why})"),
        }
    }
}

impl std::error::Error for Refusal {}

/// The count of `processed N insns` in the log's statistics line.
fn processed(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("processed ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The line that says why: the last one before the statistics that is neither an
/// instruction, a source line nor a register state.
fn reason(log: &str) -> Option<String> {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let stats = lines
        .iter()
        .position(|l| l.starts_with("verification time") || l.starts_with("processed "))
        .unwrap_or(lines.len());
    lines[..stats]
        .iter()
        .rev()
        .find(|l| {
            let first = l.chars().next().unwrap_or(' ');
            !first.is_ascii_digit() && !l.starts_with(';') && !l.starts_with("stack depth")
        })
        .map(|l| {
            let mut s = (*l).to_owned();
            s.truncate(200);
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOO_LARGE: &str = "\
4357: (bf) r2 = r7
BPF program is too large. Processed 1000001 insn
verification time 15135333 usec
stack depth 192+0+144+56
processed 1000001 insns (limit 1000000) max_states_per_insn 118 total_states 54370 peak_states 128517 mark_read 0
";

    const ACCESS: &str = "\
; unsafe { *p } @ x.rs:3
502: (61) r8 = *(u32 *)(r1 +0)
R1 invalid mem access 'scalar'
verification time 2231 usec
stack depth 80
processed 103 insns (limit 1000000) max_states_per_insn 0 total_states 5 peak_states 5 mark_read 0
";

    #[test]
    fn the_count_and_the_reason_are_read_from_the_log() {
        assert_eq!(processed(TOO_LARGE), Some(1_000_001));
        assert_eq!(
            reason(TOO_LARGE).as_deref(),
            Some("BPF program is too large. Processed 1000001 insn")
        );
        assert_eq!(processed(ACCESS), Some(103));
        assert_eq!(reason(ACCESS).as_deref(), Some("R1 invalid mem access 'scalar'"));
        assert_eq!(processed(""), None);
        assert_eq!(reason(""), None);
    }

    #[test]
    fn a_refusal_is_a_few_lines_and_its_log_goes_to_a_file() {
        let dir = std::env::temp_dir().join(format!("sipguard-refusal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("log");
        let r =
            Refusal::new("sipguard_inspect", &io::Error::from_raw_os_error(7), TOO_LARGE, &file);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), TOO_LARGE);
        let text = r.to_string();
        assert!(text.lines().count() < 10, "{text}");
        assert!(text.contains("sipguard_inspect"), "{text}");
        assert!(text.contains("1000001 of its 1000000"), "{text}");
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(!text.contains("4357:"), "the log stays in the file: {text}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
