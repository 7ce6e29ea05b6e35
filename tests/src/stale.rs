//! Leftovers of killed test runs. Every namespace, pin directory and temporary file a test
//! makes is named by [`crate::unique`] and removed on drop; a run that is killed (a CI
//! timeout, Ctrl-C) never drops them, and a pinned link keeps its program attached. The next
//! run removes whatever carries the name of a process that no longer exists.

use std::{fs, path::Path, process::Command};

/// Every prefix passed to [`crate::unique`].
pub const PREFIXES: &[&str] = &[
    "sg",
    "sgtest",
    "sgcli",
    "sge2e",
    "sgbench",
    "sgfit",
    "sgswap",
    "sgconf",
    "sgcap",
    "sgntf",
    "sgkam",
    "sgevt",
    "sgdeb",
    "sgusage",
    "sgcs",
    "sgrefusal",
    "sglab",
    "sgcmd",
];

/// Where named objects live: network namespaces, pin directories, temporary files.
const NETNS_DIR: &str = "/run/netns";
const PIN_ROOT: &str = "/sys/fs/bpf";

/// The process id in a name made by [`crate::unique`], if it is one.
fn owner(name: &str) -> Option<u32> {
    // "sge2e" has a digit of its own: the longest prefix that fits is the one.
    let (_, rest) = PREFIXES
        .iter()
        .filter(|p| name.starts_with(**p))
        .map(|p| (*p, &name[p.len()..]))
        .max_by_key(|(p, _)| p.len())?;
    let (pid, tail) = rest.split_once('x')?;
    let counter_digits = tail.chars().take_while(char::is_ascii_digit).count();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || counter_digits == 0 {
        return None;
    }
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Names in `dir` left by processes that are gone.
fn stale_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| owner(name).is_some_and(|pid| !alive(pid)))
        .collect()
}

/// The pin directory of the lab (`cargo xtask lab`), the one fixed name a run makes.
pub const LAB_PIN_DIR: &str = "/sys/fs/bpf/sipguard-lab";

/// What dead test processes left: `(what, path)` for namespaces, pin directories (and the
/// lab's, which no live lab holds when this is asked) and temporary files.
pub fn leftovers() -> Vec<(&'static str, String)> {
    let mut found: Vec<(&'static str, String)> =
        stale_in(Path::new(NETNS_DIR)).into_iter().map(|n| ("netns", n)).collect();
    for (root, what) in [(PIN_ROOT, "pin directory"), ("/tmp", "temporary file")] {
        for name in stale_in(Path::new(root)) {
            found.push((what, Path::new(root).join(name).display().to_string()));
        }
    }
    found
}

/// The file `cargo xtask test` names for its whole run: each test process registers in it
/// (`process PID EXE`) and each sweep writes what it found (`swept PID WHAT NAME`), so that
/// leftovers of the run's own processes, which a later process's sweep removes, still fail
/// the run, named with the process that left them (issue 28).
pub const SWEPT_ENV: &str = "SIPGUARD_SWEPT";

/// Appends a line to the run's journal, if there is one.
fn journal(line: &str) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os(SWEPT_ENV) else { return };
    let file = fs::OpenOptions::new().create(true).append(true).open(&path);
    if let Err(e) = file.and_then(|mut f| writeln!(f, "{line}")) {
        eprintln!("could not write to {}: {e}", Path::new(&path).display());
    }
}

/// Registers this process in the run's journal: the leftovers a later sweep finds are then
/// known as this run's.
pub fn register() {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
    journal(&format!("process {} {exe}", std::process::id()));
}

/// Removes the leftovers of dead test processes, noting each in the run's journal. Best
/// effort: what cannot be removed is reported, and the tests go on (their own names never
/// collide with a dead process's).
pub fn sweep() {
    let mut removed = Vec::new();
    for (what, name) in leftovers() {
        let base = Path::new(&name).file_name().and_then(|n| n.to_str()).unwrap_or(&name);
        if let Some(pid) = owner(base) {
            journal(&format!("swept {pid} {what} {name}"));
        }
        let gone = if what == "netns" {
            Command::new("ip").args(["netns", "del", &name]).status().is_ok_and(|s| s.success())
        } else {
            let path = Path::new(&name);
            let r = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
            r.map_err(|e| eprintln!("could not remove the stale {what} {name}: {e}")).is_ok()
        };
        if gone {
            removed.push(format!("{what} {name}"));
        }
    }
    if !removed.is_empty() {
        eprintln!("removed what killed test runs left behind: {}", removed.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn names_made_by_unique_are_recognised() {
        assert_eq!(owner("sg27716x10call"), Some(27716));
        assert_eq!(owner("sgtest4194303x0"), Some(4_194_303));
        assert_eq!(owner("sgcli12x5"), Some(12));
        assert_eq!(owner("sge2e77x1"), Some(77));
        assert_eq!(owner("sgcap9x3.pcap"), Some(9));
    }

    #[test]
    fn other_names_are_left_alone() {
        for name in
            ["sg", "sgx1", "sg12", "sg12x", "sgt0", "capA", "sgfoo12x3", "sipguard", "sg1a2x3"]
        {
            assert_eq!(owner(name), None, "{name}");
        }
    }
}
