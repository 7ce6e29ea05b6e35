//! Guest kernels: a `vmlinuz` path, or a Debian kernel package fetched with `apt-get download`,
//! unpacked and cached under `target/vm/kernels`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// What `--kernel` defaults to: bookworm's newest 6.1 cloud kernel.
pub(crate) const DEFAULT_SPEC: &str = "bookworm-6.1-cloud";
const DEFAULT_PATTERN: &str = r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$";

/// A kernel ready to boot.
pub(super) struct Kernel {
    /// How reports name it: the release, e.g. `6.1.0-53-cloud-amd64`.
    pub label: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the package, if there is one.
    pub modules: Option<PathBuf>,
    /// `boot/config-<release>` (bpftool and the like read it in the guest).
    pub config: Option<PathBuf>,
}

/// Resolves `spec` to a bootable kernel, downloading and unpacking a package if needed.
pub(super) fn resolve(spec: &str, cache: &Path) -> anyhow::Result<Kernel> {
    let path = Path::new(spec);
    if path.is_file() {
        return from_vmlinuz(path);
    }
    if spec.contains('/') {
        bail!("--kernel {spec}: no such file (give a vmlinuz path or a Debian kernel package)");
    }
    let package = if spec == DEFAULT_SPEC { newest_default()? } else { spec.to_owned() };
    let dir = cache.join(package.replace(['=', ':'], "_"));
    let unpacked = dir.join("root");
    if find_vmlinuz(&unpacked).is_none() {
        download(&package, &dir, &unpacked)?;
    }
    let vmlinuz = find_vmlinuz(&unpacked).with_context(|| {
        format!("package {package} holds no boot/vmlinuz-*: not a kernel image package")
    })?;
    from_vmlinuz(&vmlinuz)
}

/// The newest `linux-image-6.1.0-N-cloud-amd64-unsigned` in the apt index.
fn newest_default() -> anyhow::Result<String> {
    let search = || {
        cmd::output(Command::new("apt-cache").args(["search", "--names-only", DEFAULT_PATTERN]))
            .unwrap_or_default()
    };
    let mut found = search();
    if found.trim().is_empty() {
        // A fresh machine may not have an index yet.
        cmd::run(Command::new("apt-get").args(["update", "-qq"]))?;
        found = search();
    }
    let by_abi: BTreeMap<u32, String> = found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| {
            let abi = name.strip_prefix("linux-image-6.1.0-")?.split('-').next()?.parse().ok()?;
            Some((abi, name.to_owned()))
        })
        .collect();
    by_abi.into_values().next_back().context(
        "no bookworm 6.1 cloud kernel package (linux-image-6.1.0-*-cloud-amd64-unsigned) in the apt index; give --kernel a vmlinuz path instead",
    )
}

fn download(package: &str, dir: &Path, unpacked: &Path) -> anyhow::Result<()> {
    println!("vm-test: fetching {package} with apt-get download");
    std::fs::remove_dir_all(dir).ok();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    cmd::run(Command::new("apt-get").args(["download", "-qq", package]).current_dir(dir))
        .with_context(|| format!("downloading {package}"))?;
    let deb = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", dir.display()))?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(unpacked))?;
    std::fs::remove_file(&deb)?;
    Ok(())
}

fn find_vmlinuz(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root.join("boot"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
}

/// A `vmlinuz-<release>`; modules and config are found beside it as a package lays them out
/// (`boot/` and `lib/modules/<release>` under one root).
fn from_vmlinuz(vmlinuz: &Path) -> anyhow::Result<Kernel> {
    let name = vmlinuz.file_name().context("a vmlinuz path")?.to_string_lossy().into_owned();
    let release = name.strip_prefix("vmlinuz-").map(str::to_owned);
    let label = release.clone().unwrap_or(name);
    let root = vmlinuz.parent().and_then(Path::parent);
    let (modules, config) = match (&release, root) {
        (Some(r), Some(root)) => {
            let m = root.join("lib/modules").join(r);
            let c = root.join("boot").join(format!("config-{r}"));
            (m.is_dir().then_some(m), c.is_file().then_some(c))
        }
        _ => (None, None),
    };
    Ok(Kernel { label, vmlinuz: vmlinuz.to_path_buf(), modules, config })
}

/// The modules `names` need, dependencies first, found by the `depends=` field each module
/// carries (the package ships no `modules.dep`, and this needs no kmod on the host).
pub(super) fn module_closure(modules: &Path, names: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![modules.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(stem) =
                p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko"))
            {
                index.insert(stem.replace('-', "_"), p);
            }
        }
    }
    let mut order = Vec::new();
    for name in names {
        visit(&index, &name.replace('-', "_"), &mut order, 0)?;
    }
    Ok(order)
}

fn visit(
    index: &BTreeMap<String, PathBuf>,
    name: &str,
    order: &mut Vec<PathBuf>,
    depth: u32,
) -> anyhow::Result<()> {
    if depth > 32 {
        bail!("module dependencies of {name} loop");
    }
    let Some(path) = index.get(name) else {
        // Built into this kernel: nothing to load.
        return Ok(());
    };
    if order.contains(path) {
        return Ok(());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    for dep in modinfo(&bytes, "depends") {
        visit(index, &dep.replace('-', "_"), order, depth + 1)?;
    }
    order.push(path.clone());
    Ok(())
}

/// The comma-separated values of a `key=` entry in a module's `.modinfo` strings.
fn modinfo(bytes: &[u8], key: &str) -> Vec<String> {
    let needle = format!("{key}=");
    bytes
        .split(|b| *b == 0)
        .filter_map(|s| s.strip_prefix(needle.as_bytes()))
        .flat_map(|v| String::from_utf8_lossy(v).split(',').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_reads_the_depends_field() {
        let blob = b"\0license=GPL\0depends=stp,llc\0vermagic=6.1\0";
        assert_eq!(modinfo(blob, "depends"), ["stp", "llc"]);
        assert!(modinfo(b"\0depends=\0", "depends").is_empty());
    }
}
