//! Guest kernels: a `vmlinuz` path, or a Debian kernel package fetched with `apt-get download`,
//! unpacked and cached under `target/vm/kernels`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// Kernel lines `--kernel` knows by name: the newest cloud kernel of each in Debian's index.
/// 6.1 is bookworm's own; 6.12 is Debian 13's (and RHEL 10's) line, which bookworm carries
/// too, the most widely deployed new kernel under a PBX today.
const FAMILIES: [Family; 2] = [
    Family {
        spec: "bookworm-6.1-cloud",
        pattern: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
        prefix: "linux-image-6.1.0-",
    },
    Family {
        spec: "debian-6.12-cloud",
        pattern: r"^linux-image-6\.12\.[0-9]+\+deb[0-9]+-cloud-amd64-unsigned$",
        prefix: "linux-image-6.12.",
    },
];

/// What `--kernel` defaults to: every named family, oldest first.
pub(crate) const DEFAULT_SPECS: [&str; 2] = [FAMILIES[0].spec, FAMILIES[1].spec];

/// A line of Debian kernel packages: `spec` names it, `pattern` finds its packages in
/// `apt-cache`, and the number after `prefix` orders them.
struct Family {
    spec: &'static str,
    pattern: &'static str,
    prefix: &'static str,
}

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
    let package = match FAMILIES.iter().find(|f| f.spec == spec) {
        Some(family) => newest(family)?,
        None => spec.to_owned(),
    };
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

/// The newest package of `family` in the apt index.
fn newest(family: &Family) -> anyhow::Result<String> {
    let search = || {
        cmd::output(Command::new("apt-cache").args(["search", "--names-only", family.pattern]))
            .unwrap_or_default()
    };
    let mut found = search();
    if found.trim().is_empty() {
        // A fresh machine may not have an index yet.
        cmd::run(Command::new("apt-get").args(["update", "-qq"]))?;
        found = search();
    }
    let by_number: BTreeMap<u32, String> = found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| {
            let rest = name.strip_prefix(family.prefix)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            Some((digits.parse().ok()?, name.to_owned()))
        })
        .collect();
    by_number.into_values().next_back().with_context(|| {
        format!(
            "no package of {} (/{}/) in the apt index; give --kernel a vmlinuz path instead",
            family.spec, family.pattern
        )
    })
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
            } else if let Some(stem) = p.file_name().and_then(|n| n.to_str()).and_then(module_stem)
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
    let bytes = module_bytes(path)?;
    for dep in modinfo(&bytes, "depends") {
        visit(index, &dep.replace('-', "_"), order, depth + 1)?;
    }
    order.push(path.clone());
    Ok(())
}

/// Compressions a kernel package may ship its modules in (Debian's 6.12 packages use xz),
/// with the host tool that undoes each.
const COMPRESSED: [(&str, &str); 3] = [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")];

/// A module file's name without its `.ko` (and compression) suffix.
pub(super) fn module_stem(file: &str) -> Option<&str> {
    COMPRESSED
        .iter()
        .find_map(|(suffix, _)| file.strip_suffix(suffix))
        .or_else(|| file.strip_suffix(".ko"))
}

/// A module's contents, decompressed (busybox's `insmod` takes only plain modules).
pub(super) fn module_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let name = path.to_string_lossy();
    match COMPRESSED.iter().find(|(suffix, _)| name.ends_with(suffix)) {
        Some((_, tool)) => {
            let out = Command::new(tool)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("running {tool} (cargo xtask setup installs it)"))?;
            if !out.status.success() {
                bail!("{tool} -dc {} failed", path.display());
            }
            Ok(out.stdout)
        }
        None => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
    }
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
    fn compressed_modules_are_named_by_their_stem() {
        assert_eq!(module_stem("veth.ko.xz"), Some("veth"));
        assert_eq!(module_stem("veth.ko.zst"), Some("veth"));
        assert_eq!(module_stem("veth.ko"), Some("veth"));
        assert_eq!(module_stem("modules.dep"), None);
    }

    #[test]
    fn modinfo_reads_the_depends_field() {
        let blob = b"\0license=GPL\0depends=stp,llc\0vermagic=6.1\0";
        assert_eq!(modinfo(blob, "depends"), ["stp", "llc"]);
        assert!(modinfo(b"\0depends=\0", "depends").is_empty());
    }
}
