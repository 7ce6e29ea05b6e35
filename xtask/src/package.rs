//! `cargo xtask package`: the Debian package, `target/debian/sipguard_VERSION_ARCH.deb`.
//!
//! The package tree is staged by hand and sealed with `dpkg-deb --build`, the tool every
//! Debian system has, rather than with cargo-deb: nothing to install, and every file and
//! maintainer script is in `packaging/debian/` where a reviewer sees it. What it holds:
//! - `/usr/sbin/sipguard` (release build, stripped; `--version` names the commit);
//! - the systemd unit (`Type=notify`, reload by SIGHUP, no detach on stop, hardened to the
//!   capabilities the tests measured), neither enabled nor started by the package;
//! - `/etc/sipguard/sipguard.toml`, a default that protects nothing until edited: every key
//!   of docs/sipguard.example.toml, commented out, explained;
//! - man pages (`sipguard(8)` and one per subcommand) and bash, zsh and fish completions,
//!   generated from the clap definitions by the built binary;
//! - a logrotate snippet for the incident log, and maintainer scripts that make the state and
//!   log directories and remove only what they made (and only when empty).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd::{self, workspace_root};

/// Where the package and its staging tree go.
pub(crate) fn out_dir() -> PathBuf {
    workspace_root().join("target/debian")
}

/// Builds the package; returns its path.
pub(crate) fn build() -> anyhow::Result<PathBuf> {
    crate::setup::ensure()?;
    cmd::cargo(&["build", "--release", "--package", "sipguard", "--bin", "sipguard"])?;
    let root = workspace_root();
    let binary = root.join("target/release/sipguard");
    let version = version(&binary)?;
    let arch = cmd::output(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture")?
        .trim()
        .to_owned();
    let stage = out_dir().join("stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let sources = root.join("packaging/debian");
    let put = |from: &Path, to: &str, mode: u32| -> anyhow::Result<()> {
        let dest = stage.join(to);
        std::fs::create_dir_all(dest.parent().expect("a file has a directory"))?;
        std::fs::copy(from, &dest).with_context(|| format!("copying {}", from.display()))?;
        set_mode(&dest, mode)
    };
    put(&binary, "usr/sbin/sipguard", 0o755)?;
    cmd::run(Command::new("strip").arg("--strip-unneeded").arg(stage.join("usr/sbin/sipguard")))?;
    put(&sources.join("sipguard.service"), "lib/systemd/system/sipguard.service", 0o644)?;
    put(&sources.join("logrotate"), "etc/logrotate.d/sipguard", 0o644)?;
    put(&sources.join("copyright"), "usr/share/doc/sipguard/copyright", 0o644)?;
    write(&stage.join("etc/sipguard/sipguard.toml"), &default_config()?, 0o644)?;
    generated(&binary, &stage)?;
    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        put(&sources.join(script), &format!("DEBIAN/{script}"), 0o755)?;
    }
    write(
        &debian.join("conffiles"),
        "/etc/sipguard/sipguard.toml\n/etc/logrotate.d/sipguard\n",
        0o644,
    )?;
    write(&debian.join("control"), &control(&version, &arch, &stage)?, 0o644)?;
    let deb = out_dir().join(format!("sipguard_{version}_{arch}.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// The package version: the crate's (`sipguard 0.1.0 (commit ...)`).
fn version(binary: &Path) -> anyhow::Result<String> {
    let text = cmd::output(Command::new(binary).arg("--version")).context("sipguard --version")?;
    let version = text.split_whitespace().nth(1).context("no version in `sipguard --version`")?;
    if !text.contains("commit ") {
        bail!("`sipguard --version` names no commit: {text}");
    }
    Ok(version.to_owned())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file has a directory"))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

/// The default configuration: the example's every key, commented out, under a header that
/// says what to edit first. `interfaces = []` is refused at start, so the service protects
/// nothing, and says so, until an interface is named.
fn default_config() -> anyhow::Result<String> {
    let example = std::fs::read_to_string(workspace_root().join("docs/sipguard.example.toml"))?;
    let mut out = String::from(
        "# /etc/sipguard/sipguard.toml: the configuration of the sipguard service\n\
         # (`sipguard run --config`; `systemctl reload sipguard` applies changes, and an invalid\n\
         # file changes nothing). man sipguard-run(8) and /usr/share/doc/sipguard describe it.\n\
         #\n\
         # First: name the interfaces to protect, then `systemctl enable --now sipguard`.\n\
         # Until then the service refuses to start: it protects nothing.\n\
         interfaces = []\n\
         \n\
         # The incident log, rotated by /etc/logrotate.d/sipguard.\n\
         events_file = \"/var/log/sipguard/incidents.jsonl\"\n\
         \n\
         # Everything below is an example of every other key, commented out.\n\
         #\n",
    );
    for line in example.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if key == "interfaces" || key == "events_file" {
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
        } else {
            out.push_str("# ");
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

/// Man pages (gzipped, as Debian keeps them) and completions, from the built binary.
fn generated(binary: &Path, stage: &Path) -> anyhow::Result<()> {
    let man = stage.join("usr/share/man/man8");
    cmd::run(Command::new(binary).args(["generate", "man"]).arg(&man))?;
    for page in std::fs::read_dir(&man)? {
        let page = page?.path();
        set_mode(&page, 0o644)?;
        cmd::run(Command::new("gzip").args(["-9", "-n"]).arg(&page))?;
    }
    let completions = out_dir().join("completions");
    cmd::run(Command::new(binary).args(["generate", "completions"]).arg(&completions))?;
    for (file, to) in [
        ("sipguard.bash", "usr/share/bash-completion/completions/sipguard"),
        ("_sipguard", "usr/share/zsh/vendor-completions/_sipguard"),
        ("sipguard.fish", "usr/share/fish/vendor_completions.d/sipguard.fish"),
    ] {
        let dest = stage.join(to);
        std::fs::create_dir_all(dest.parent().expect("a file has a directory"))?;
        std::fs::copy(completions.join(file), &dest)
            .with_context(|| format!("copying the {file} completions"))?;
        set_mode(&dest, 0o644)?;
    }
    Ok(())
}

fn control(version: &str, arch: &str, stage: &Path) -> anyhow::Result<String> {
    let kib = cmd::output(Command::new("du").args(["-sk", "--exclude=DEBIAN"]).arg(stage))
        .and_then(|o| o.split_whitespace().next().map(str::to_owned))
        .context("du")?;
    Ok(format!(
        "Package: sipguard\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: sipguard developers <sipguard@localhost>\n\
         Installed-Size: {kib}\n\
         Depends: libc6 (>= 2.34)\n\
         Recommends: logrotate\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://github.com/sipguard/sipguard\n\
         Description: XDP filter that stops SIP scanners at line rate\n \
         sipguard drops SIP traffic from scanners (SIPVicious and kin), from sources that\n \
         brute force credentials or sweep extensions, and from sources a CrowdSec Local API\n \
         decided to ban, in the network driver before the kernel's stack sees it.\n \
         .\n \
         The service runs `sipguard run` with /etc/sipguard/sipguard.toml; it is not\n \
         enabled or started on installation.\n"
    ))
}

/// What the package must hold (besides the man pages, checked by count).
const EXPECTED: [&str; 9] = [
    "./usr/sbin/sipguard",
    "./lib/systemd/system/sipguard.service",
    "./etc/sipguard/sipguard.toml",
    "./etc/logrotate.d/sipguard",
    "./usr/share/man/man8/sipguard.8.gz",
    "./usr/share/man/man8/sipguard-run.8.gz",
    "./usr/share/bash-completion/completions/sipguard",
    "./usr/share/zsh/vendor-completions/_sipguard",
    "./usr/share/fish/vendor_completions.d/sipguard.fish",
];

/// `cargo xtask test`'s package checks: the package builds and holds what it should,
/// `systemd-analyze verify` takes the unit, the man pages render without a warning, the
/// default configuration protects nothing, and the package installs into a throwaway root
/// and is removed and purged from it leaving only what dpkg keeps and a user's own file.
pub(crate) fn check() -> anyhow::Result<PathBuf> {
    let deb = build()?;
    let stage = out_dir().join("stage");
    let listing =
        cmd::output(Command::new("dpkg-deb").arg("-c").arg(&deb)).context("dpkg-deb -c")?;
    let paths: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().last()).collect();
    for want in EXPECTED {
        if !paths.contains(&want) {
            bail!("the package lacks {want}");
        }
    }
    let pages = paths.iter().filter(|p| p.starts_with("./usr/share/man/man8/")).count();
    println!("package: {} ({} files, {pages} man pages)", deb.display(), paths.len());
    let version = cmd::output(Command::new(stage.join("usr/sbin/sipguard")).arg("--version"))
        .context("the packaged binary's --version")?;
    println!("package: {}", version.trim());

    // systemd-analyze checks the unit's binary and its man pages: point it at the staged ones.
    let unit = std::fs::read_to_string(stage.join("lib/systemd/system/sipguard.service"))?;
    let verify_dir = out_dir().join("verify");
    std::fs::create_dir_all(&verify_dir)?;
    let staged_binary = stage.join("usr/sbin/sipguard");
    std::fs::write(
        verify_dir.join("sipguard.service"),
        unit.replace("/usr/sbin/sipguard", &staged_binary.display().to_string()),
    )?;
    cmd::run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(verify_dir.join("sipguard.service"))
            .env("MANPATH", stage.join("usr/share/man")),
    )
    .context("systemd-analyze verify refused the unit")?;
    println!("package: systemd-analyze verify accepts the unit");

    for page in std::fs::read_dir(stage.join("usr/share/man/man8"))? {
        let page = page?.path();
        let out = Command::new("sh")
            .arg("-c")
            .arg("zcat \"$1\" | groff -man -ww -z")
            .arg("sh")
            .arg(&page)
            .output()?;
        if !out.status.success() || !out.stderr.is_empty() {
            bail!(
                "{} renders with warnings: {}",
                page.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    println!("package: {pages} man pages render without a warning (groff -ww)");

    let refused = Command::new(&staged_binary)
        .args(["--pin-dir", "/sys/fs/bpf/sipguard-package-check", "run", "--config"])
        .arg(stage.join("etc/sipguard/sipguard.toml"))
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    if refused.status.success() || !stderr.contains("names no interface") {
        bail!("the default configuration should protect nothing until edited: {stderr}");
    }
    println!("package: the default configuration refuses to start until it names an interface");

    install_and_remove(&deb)?;
    Ok(deb)
}

/// Installs into an empty root (dpkg's `--root`, maintainer scripts run without a chroot
/// and honour `$DPKG_ROOT`), then removes and purges, checking what is left each time.
fn install_and_remove(deb: &Path) -> anyhow::Result<()> {
    let root = out_dir().join("root");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(root.join("var/lib/dpkg/info"))?;
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates"))?;
    std::fs::write(root.join("var/lib/dpkg/status"), "")?;
    let dpkg = |args: &[&str]| -> anyhow::Result<()> {
        cmd::run(
            Command::new("dpkg")
                .arg(format!("--root={}", root.display()))
                // The empty root has no libc6 package to satisfy the dependency.
                .args(["--force-script-chrootless", "--force-depends", "--log=/dev/null"])
                .args(args),
        )
    };
    let files = |root: &Path| -> anyhow::Result<Vec<String>> {
        let out =
            cmd::output(Command::new("find").arg(root).args(["-not", "-path", "*/var/lib/dpkg*"]))
                .context("find")?;
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.strip_prefix(&root.display().to_string()).map(str::to_owned))
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        Ok(v)
    };
    dpkg(&["--install", &deb.display().to_string()])?;
    let installed = files(&root)?;
    for want in [
        "/usr/sbin/sipguard",
        "/var/lib/sipguard",
        "/var/log/sipguard",
        "/etc/sipguard/sipguard.toml",
    ] {
        if !installed.iter().any(|f| f == want) {
            bail!("after installing, {want} is missing");
        }
    }
    // What the user does: edits the configuration, and the daemon writes its log.
    std::fs::write(root.join("etc/sipguard/sipguard.toml"), "interfaces = [\"eth0\"]\n")?;
    std::fs::write(root.join("var/log/sipguard/incidents.jsonl"), "{}\n")?;
    dpkg(&["--remove", "sipguard"])?;
    let regular = |list: &[String]| -> Vec<String> {
        list.iter().filter(|f| root.join(f.trim_start_matches('/')).is_file()).cloned().collect()
    };
    let kept = regular(&files(&root)?);
    let expected_after_remove = [
        "/etc/logrotate.d/sipguard",
        "/etc/sipguard/sipguard.toml",
        "/var/log/sipguard/incidents.jsonl",
    ];
    if kept != expected_after_remove {
        bail!("after removal (configuration kept until purge) left {kept:?}");
    }
    dpkg(&["--purge", "sipguard"])?;
    let left = files(&root)?;
    let expected_after_purge =
        ["/var", "/var/lib", "/var/log", "/var/log/sipguard", "/var/log/sipguard/incidents.jsonl"];
    if left != expected_after_purge {
        bail!("after purge left {left:?} (only the user's incident log may stay)");
    }
    println!(
        "package: installs into an empty root; removal keeps the configuration, purge leaves only the incident log a user's daemon wrote"
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

/// A wrapper that runs the packaged binary under `strace`, one trace per process in `dir`:
/// what the capabilities test drives through it shows which system calls `run` makes.
pub(crate) fn traced_binary(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let wrapper = out_dir().join("traced-sipguard");
    let staged = out_dir().join("stage/usr/sbin/sipguard");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\nexec strace -f -qq -o \"{}/trace.$$\" \"{}\" \"$@\"\n",
            dir.display(),
            staged.display()
        ),
        0o755,
    )?;
    Ok(wrapper)
}

/// Every system call the traced `run` processes made must pass the unit's
/// `SystemCallFilter` (its groups expanded by `systemd-analyze syscall-filter`): the filter
/// cannot be exercised without systemd as PID 1, so its cover is checked instead.
pub(crate) fn check_syscall_filter(trace_dir: &Path) -> anyhow::Result<()> {
    let unit = std::fs::read_to_string(workspace_root().join("packaging/debian/sipguard.service"))?;
    let filter = unit
        .lines()
        .find_map(|l| l.strip_prefix("SystemCallFilter="))
        .context("the unit has no SystemCallFilter")?;
    let mut allowed = std::collections::BTreeSet::new();
    let mut groups: Vec<String> = Vec::new();
    for item in filter.split_whitespace() {
        if item.starts_with('@') {
            groups.push(item.to_owned());
        } else {
            allowed.insert(item.to_owned());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(group) = groups.pop() {
        if !seen.insert(group.clone()) {
            continue;
        }
        let listing = cmd::output(Command::new("systemd-analyze").args(["syscall-filter", &group]))
            .with_context(|| format!("systemd-analyze syscall-filter {group}"))?;
        for line in listing.lines().skip(1).map(str::trim) {
            if line.starts_with('@') {
                groups.push(line.to_owned());
            } else if !line.is_empty() && !line.starts_with('#') {
                allowed.insert(line.to_owned());
            }
        }
    }
    let mut used = std::collections::BTreeSet::new();
    let mut runs = 0;
    for entry in std::fs::read_dir(trace_dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        let Some(first) = text.lines().find(|l| l.contains("execve(")) else { continue };
        if !first.contains("\"run\"") {
            continue;
        }
        runs += 1;
        for line in text.lines() {
            let call = line.split_whitespace().nth(1).unwrap_or("");
            if let Some((name, _)) = call.split_once('(')
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                used.insert(name.to_owned());
            }
        }
    }
    if runs == 0 {
        bail!("no trace of `sipguard run` in {}", trace_dir.display());
    }
    // The exec that starts the process is the service manager's, not the filter's concern.
    used.remove("execve");
    let outside: Vec<&String> = used.iter().filter(|s| !allowed.contains(*s)).collect();
    if !outside.is_empty() {
        bail!(
            "`run` made system calls the unit's SystemCallFilter ({filter}) refuses: {outside:?}"
        );
    }
    println!(
        "package: the {} system calls `run` made ({runs} traced runs) all pass SystemCallFilter={filter}",
        used.len()
    );
    Ok(())
}
