//! A test run leaves nothing behind. `cargo xtask test` makes itself the subreaper of
//! everything it starts, so a process a test failed to end (a server whose `Child` was
//! dropped, a tool under `timeout` whose parent died) is re-parented here instead of to init,
//! where nobody would notice it. At the end of the run such processes, and the namespaces,
//! pins and temporary files the suites name after their processes, fail the run.

use anyhow::bail;

use crate::cmd;

/// From now on, orphans of our descendants become our children.
pub(crate) fn adopt_orphans() -> anyhow::Result<()> {
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        bail!("prctl(PR_SET_CHILD_SUBREAPER): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Processes still running that were re-parented to us: `(pid, command line)`. Zombies are
/// reaped on the way (they ended; nothing is left of them).
fn orphans() -> Vec<(i32, String)> {
    // SAFETY: waitpid with WNOHANG on any child; only orphans can be left at this point.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command name's closing parenthesis: state, then the parent's pid.
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let (state, parent) = (rest.next()?, rest.next()?);
            (parent == me && state != "Z").then(|| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                (pid, text.trim().to_owned())
            })
        })
        .collect()
}

/// The run's journal (`SIPGUARD_SWEPT`, read by the test processes): each registers in it,
/// and each sweep notes what it removed (`sipguard_tests::stale`).
const JOURNAL_ENV: &str = "SIPGUARD_SWEPT";

fn journal_path() -> std::path::PathBuf {
    cmd::workspace_root().join("target/sipguard-swept.log")
}

/// Starts the run's journal, empty, and names it to every process the run starts.
pub(crate) fn open_journal() -> anyhow::Result<()> {
    let path = journal_path();
    std::fs::create_dir_all(path.parent().expect("a directory"))?;
    std::fs::write(&path, "")?;
    // SAFETY: called before the run starts a thread; children inherit the environment.
    unsafe { std::env::set_var(JOURNAL_ENV, &path) };
    Ok(())
}

/// What sweeps during the run removed that a test process of this run left, each named with
/// the process and its executable. Other processes' leftovers (an earlier run's, or those
/// the sweep's own test makes under a dead pid) are printed, not returned.
fn swept_from(journal: &str) -> Vec<String> {
    let mut processes = std::collections::HashMap::new();
    let mut swept = Vec::new();
    for line in journal.lines() {
        let mut words = line.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("process"), Some(pid), exe) => {
                processes.insert(pid.to_owned(), exe.unwrap_or("").to_owned());
            }
            (Some("swept"), Some(pid), Some(what)) => swept.push((pid.to_owned(), what.to_owned())),
            _ => {}
        }
    }
    let mut ours = Vec::new();
    for (pid, what) in swept {
        match processes.get(&pid) {
            Some(exe) => ours.push(format!(
                "{what}, left by process {pid} ({exe}) and removed by a later test's sweep"
            )),
            None => println!("removed {what} of process {pid}, not a test process of this run"),
        }
    }
    ours
}

/// Fails if the run left a process, a namespace, a pin or a temporary file behind; ends and
/// removes what it finds, so the next run starts clean either way.
pub(crate) fn check() -> anyhow::Result<()> {
    let mut problems = Vec::new();
    problems.extend(swept_from(&std::fs::read_to_string(journal_path()).unwrap_or_default()));
    for (pid, cmdline) in orphans() {
        problems.push(format!("process {pid} ({cmdline})"));
        // SAFETY: kill(2) of a process re-parented to us.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // SAFETY: as above; reaps what was just killed.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) } > 0 {}
    let root = cmd::workspace_root();
    let report = root.join("target/debug/sipguard-leftovers");
    if report.exists() {
        let out = std::process::Command::new(&report)
            .env("SIPGUARD_BIN", root.join("target/debug/sipguard"))
            // What it finds it reports itself.
            .env_remove(JOURNAL_ENV)
            .output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(what) = line.strip_prefix("left behind: ") {
                problems.push(what.to_owned());
            }
        }
    } else {
        problems.push(format!("{} was not built", report.display()));
    }
    if !problems.is_empty() {
        bail!("the test run left these behind (now removed): {}", problems.join("; "));
    }
    println!("nothing left behind: no process, namespace, pin or temporary file of the run");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::swept_from;

    #[test]
    fn what_a_sweep_removed_fails_the_run_only_if_this_run_left_it() {
        let journal = "process 41 /t/deps/spoofing-1\nprocess 42 /t/deps/fleet-2\n\
                       swept 41 netns sg41x3pbx\nswept 7 pin directory /sys/fs/bpf/sgcli7x0\n";
        assert_eq!(
            swept_from(journal),
            [
                "netns sg41x3pbx, left by process 41 (/t/deps/spoofing-1) and removed by a later test's sweep"
            ]
        );
        assert!(swept_from("process 1 x\n").is_empty());
    }
}
