//! The pin root: the only module that knows where sipguard's kernel objects live.
//!
//! ```text
//! <root>/                 a bpffs (or a directory on one)
//!   maps/SG_*             every map, pinned by name (bpftool map show pinned <root>/maps/SG_STATS)
//!   links/<ifname>        the XDP link of each attached interface
//!   stages/<ifname>       the jump table of the XDP program that link runs (the kernel
//!                         empties a jump table when its last pin and descriptor go)
//!   stages_next/<ifname>  the next program's table, while the link moves to it
//!   responses/<ifname>    the response program's tcx link (kernels 6.6+; on older kernels
//!                         its clsact filter lives in the interface's qdisc, see `program`)
//! ```
//!
//! bpffs holds only pinned objects and directories, so all state lives in maps. It refuses
//! names with a dot, which VLAN interfaces have (`eth0.100`): in a pin's name each dot is a
//! colon, which no interface name holds.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

/// Where sipguard pins its objects unless `--pin-dir` says otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/sipguard";
/// `statfs` magic of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Clone, Debug)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    #[must_use]
    pub fn maps_dir(&self) -> PathBuf {
        self.root.join("maps")
    }

    #[must_use]
    pub fn map(&self, name: &str) -> PathBuf {
        self.maps_dir().join(name)
    }

    #[must_use]
    pub fn links_dir(&self) -> PathBuf {
        self.root.join("links")
    }

    #[must_use]
    pub fn link(&self, iface: &str) -> PathBuf {
        self.links_dir().join(pin_name(iface))
    }

    /// Whether any sipguard map is pinned here (the filter's state exists).
    #[must_use]
    pub fn has_maps(&self) -> bool {
        sipguard_common::maps::SCHEMA.iter().any(|m| self.map(m.name).exists())
    }

    /// Names of the interfaces with a pinned link, sorted.
    pub fn attached_ifaces(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.links_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            names.push(iface_name(&entry.file_name().to_string_lossy()));
        }
        names.sort();
        Ok(names)
    }

    /// Fails unless the state exists: commands that change a running filter need it.
    pub fn require_state(&self) -> anyhow::Result<()> {
        if !self.has_maps() {
            bail!(
                "sipguard is not attached (no maps pinned under {}): run `sipguard attach --iface IF` first",
                self.maps_dir().display()
            );
        }
        Ok(())
    }

    #[must_use]
    pub fn stages_dir(&self) -> PathBuf {
        self.root.join("stages")
    }

    /// The jump table of the program the link on `iface` runs.
    #[must_use]
    pub fn stages(&self, iface: &str) -> PathBuf {
        self.stages_dir().join(pin_name(iface))
    }

    /// Where the next program's jump table waits while the link on `iface` moves to it (a
    /// directory of its own: any name beside the tables could be an interface's).
    #[must_use]
    pub fn stages_next(&self, iface: &str) -> PathBuf {
        self.root.join("stages_next").join(pin_name(iface))
    }

    #[must_use]
    pub fn responses_dir(&self) -> PathBuf {
        self.root.join("responses")
    }

    /// The pinned tcx link of the response program on `iface`.
    #[must_use]
    pub fn response_link(&self, iface: &str) -> PathBuf {
        self.responses_dir().join(pin_name(iface))
    }

    /// Makes sure the root is on a bpffs and its subdirectories exist, mounting a bpffs when
    /// none is there. Fails with the command that would fix it.
    pub fn prepare(&self) -> anyhow::Result<()> {
        ensure_bpffs(&self.root)?;
        for dir in [
            self.maps_dir(),
            self.links_dir(),
            self.stages_dir(),
            self.root.join("stages_next"),
            self.responses_dir(),
        ] {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Removes the whole tree (after the last detach). Pins are unlinked, so objects still in
    /// use elsewhere stay alive until their last user lets go.
    pub fn remove_all(&self) -> anyhow::Result<()> {
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", self.root.display())),
        }
    }
}

/// An interface's name as a pin's name: bpffs refuses dots, and no interface name has a colon.
fn pin_name(iface: &str) -> String {
    iface.replace('.', ":")
}

/// The interface a pin's name stands for.
fn iface_name(pin: &str) -> String {
    pin.replace(':', ".")
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` is a C struct of integers, for which zero is a value.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes into `buf` only; `c` is a valid C string.
    let rc = unsafe { libc::statfs(c.as_ptr(), &raw mut buf) };
    #[expect(clippy::useless_conversion, reason = "f_type's integer type differs between libcs")]
    let magic = i64::from(buf.f_type);
    rc == 0 && magic == BPF_FS_MAGIC
}

fn mount_bpffs(target: &Path) -> io::Result<()> {
    let target_c = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: all pointers are valid NUL-terminated strings; data is null.
    let rc = unsafe {
        libc::mount(c"bpf".as_ptr(), target_c.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null())
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Walks up from `root` to the nearest existing directory. If that is on a bpffs, the rest of
/// the path can simply be created. Otherwise a bpffs is mounted: on `/sys/fs/bpf` when the
/// root lies below it (the conventional place, where sysfs forbids mkdir), else on the root
/// itself.
fn ensure_bpffs(root: &Path) -> anyhow::Result<()> {
    let existing = root.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
    if is_bpffs(existing) {
        return Ok(());
    }
    let sys_bpf = Path::new("/sys/fs/bpf");
    let target = if root.starts_with(sys_bpf) && sys_bpf.is_dir() {
        sys_bpf.to_path_buf()
    } else {
        fs::create_dir_all(root)
            .with_context(|| format!("creating pin directory {}", root.display()))?;
        root.to_path_buf()
    };
    mount_bpffs(&target).with_context(|| {
        format!(
            "{} is not on a bpf filesystem and mounting one on {} failed; run `mount -t bpf bpf {}` or pass --pin-dir DIR on a bpffs",
            root.display(),
            target.display(),
            target.display()
        )
    })?;
    log::info!("mounted a bpf filesystem on {}", target.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_interfaces_get_pins_without_dots() {
        let layout = PinLayout::new("/sys/fs/bpf/x");
        let pin = layout.link("eth0.100");
        assert_eq!(pin, Path::new("/sys/fs/bpf/x/links/eth0:100"));
        let name = pin.file_name().unwrap().to_string_lossy();
        assert!(!name.contains('.'));
        assert_eq!(iface_name(&name), "eth0.100");
        assert_eq!(iface_name(&pin_name("lo")), "lo");
    }
}
