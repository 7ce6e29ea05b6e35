//! The guest's whole userland, packed as a gzip'd newc cpio: no root image, no 9p (the cloud
//! kernels have none). Host binaries are statically linked (sipguard, the test suites); the
//! few host tools the tests call (`ip`, `tc`, `bpftool`, `nsenter`, `setpriv`) come with the libraries `ldd`
//! names for them.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::kernel::{Kernel, module_bytes, module_closure, module_stem};
use crate::cmd;

/// Host tools the suites run, by absolute path (the guest's `PATH` finds them first).
const TOOLS: [&str; 5] =
    ["/usr/sbin/ip", "/usr/sbin/tc", "/usr/sbin/bpftool", "/usr/bin/nsenter", "/usr/bin/setpriv"];
/// Kernel modules the suites need when the kernel has them as modules.
/// (`sch_ingress` and `cls_bpf`: the clsact qdisc and its BPF filter, where the response
/// program hooks in on kernels without tcx.)
const MODULES: [&str; 4] = ["veth", "bridge", "sch_ingress", "cls_bpf"];
const BUSYBOX: &str = "/bin/busybox";

/// What goes into the guest besides the kernel's modules.
pub(super) struct Payload {
    /// `(suite name, statically linked test binary)`.
    pub suites: Vec<(String, PathBuf)>,
    /// The statically linked `sipguard`.
    pub sipguard: PathBuf,
    /// The test corpus (placed at `/corpus`, `$SIPGUARD_CORPUS` in the guest).
    pub corpus: PathBuf,
}

/// Builds `out` (a `.cpio.gz`) for `kernel`.
pub(super) fn build(kernel: &Kernel, payload: &Payload, out: &Path) -> anyhow::Result<()> {
    let root = out.with_extension("d");
    std::fs::remove_dir_all(&root).ok();
    for d in [
        "bin",
        "usr/bin",
        "usr/sbin",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "tests",
        "lib/modules",
        "boot",
        "var",
        "etc",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    // iproute2 keeps named namespaces under /var/run/netns.
    std::os::unix::fs::symlink("../run", root.join("var/run"))?;
    copy(Path::new(BUSYBOX), &root.join("bin/busybox"))?;
    for tool in TOOLS {
        copy_with_libraries(Path::new(tool), &root)?;
    }
    strip_into(&payload.sipguard, &root.join("usr/bin/sipguard"))?;
    let mut suites = String::new();
    for (name, bin) in &payload.suites {
        strip_into(bin, &root.join("tests").join(name))?;
        writeln!(suites, "{name}").expect("writing to a String");
    }
    std::fs::write(root.join("tests.list"), suites)?;
    copy_tree(&payload.corpus, &root.join("corpus"))?;
    let mut modules = String::new();
    if let Some(dir) = &kernel.modules {
        for m in module_closure(dir, &MODULES)? {
            let file = m.file_name().context("module name")?.to_string_lossy();
            let name = format!("{}.ko", module_stem(&file).context("a module's name")?);
            std::fs::write(root.join("lib/modules").join(&name), module_bytes(&m)?)?;
            writeln!(modules, "{name}").expect("writing to a String");
        }
    }
    std::fs::write(root.join("modules.list"), modules)?;
    if let Some(config) = &kernel.config {
        copy(config, &root.join("boot").join(config.file_name().context("config name")?))?;
    }
    let init = root.join("init");
    std::fs::write(&init, INIT)?;
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let script = format!(
        "cd '{}' && find . -print0 | cpio --null --quiet -o -H newc -R 0:0 | gzip -1 > '{}'",
        root.display(),
        out.display()
    );
    cmd::run(Command::new("sh").args(["-c", &script])).context("packing the initramfs")?;
    std::fs::remove_dir_all(&root).ok();
    Ok(())
}

/// The guest's PID 1: mount what the suites need, load modules, report the kernel's
/// verdict on the program, run each suite, power off. Marker lines start with `SGVM`.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t tmpfs tmpfs /tmp
/bin/busybox mount -t tmpfs tmpfs /run
/bin/busybox mount -t bpf bpf /sys/fs/bpf
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/bin HOME=/root SIPGUARD_BIN=/usr/bin/sipguard SIPGUARD_CORPUS=/corpus
export RUST_BACKTRACE=1
echo "SGVM kernel $(uname -r)"
if grep -q sgvm.probe /proc/cmdline; then echo "SGVM probe-ok"; poweroff -f; fi
for m in $(cat /modules.list); do insmod /lib/modules/$m || echo "SGVM warning: insmod $m failed"; done
/usr/sbin/ip link set lo up
echo "SGVM check $(/usr/bin/sipguard check --json 2>&1 | tr '\n' ' ')"
for t in $(cat /tests.list); do
  echo "SGVM begin $t"
  /tests/$t --test-threads=2 2>&1
  echo "SGVM end $t $?"
done
echo "SGVM done"
poweroff -f
"#;

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} into the initramfs", from.display()))?;
    Ok(())
}

/// Copies without debug information: the suites are 60 MB each with it, a few MB without.
fn strip_into(from: &Path, to: &Path) -> anyhow::Result<()> {
    cmd::run(Command::new("objcopy").arg("--strip-debug").arg(from).arg(to))
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let p = e?.path();
        let target = to.join(p.file_name().context("a file name")?);
        if p.is_dir() { copy_tree(&p, &target)? } else { copy(&p, &target)? }
    }
    Ok(())
}

/// Copies a dynamically linked host tool with the libraries and loader it needs, at the same
/// paths.
fn copy_with_libraries(tool: &Path, root: &Path) -> anyhow::Result<()> {
    if !tool.exists() {
        bail!("{} is missing on the host (cargo xtask setup installs it)", tool.display());
    }
    copy(tool, &root.join(tool.strip_prefix("/")?))?;
    let ldd = cmd::output(Command::new("ldd").arg(tool)).unwrap_or_default();
    for lib in ldd.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/'))) {
        let lib = Path::new(lib);
        // The file itself, at the path the loader asks for (often a symlink's).
        let real = std::fs::canonicalize(lib)?;
        copy(&real, &root.join(lib.strip_prefix("/")?))?;
    }
    Ok(())
}
