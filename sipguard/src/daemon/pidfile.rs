//! The pid file `run` writes and `reload` reads: one per pin directory, so that two filters
//! on one host (two pin roots) are told apart.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::kernel::pin::PinLayout;

/// Where the pid file of the `run` over `layout` lives, unless one is given.
#[must_use]
pub fn path_for(layout: &PinLayout, given: Option<&Path>) -> PathBuf {
    given.map_or_else(
        || {
            let name: String = layout
                .root()
                .to_string_lossy()
                .trim_matches('/')
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .collect();
            PathBuf::from("/run/sipguard").join(format!("{name}.pid"))
        },
        Path::to_path_buf,
    )
}

/// The pid file of a running `run`: written when made, removed when dropped, however the
/// service ends.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Writes this process's id to `path` (its directory made if need be).
    pub fn write(path: PathBuf) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            log::debug!("removing the pid file {}: {e}", self.0.display());
        }
    }
}

/// The process a pid file names, read with errors that say which `run` is missing.
pub fn read(layout: &PinLayout, path: &Path) -> anyhow::Result<i32> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "no `sipguard run --config` seems to run for {} ({} is unreadable)",
            layout.root().display(),
            path.display()
        )
    })?;
    text.trim().parse().with_context(|| format!("{} holds no process id", path.display()))
}

/// Asks the `run` over `layout` to re-read its configuration file (SIGHUP); returns its pid.
pub fn signal_reload(layout: &PinLayout, given: Option<&Path>) -> anyhow::Result<i32> {
    let path = path_for(layout, given);
    let pid = read(layout, &path)?;
    // SAFETY: kill(2) takes plain integers; the pid comes from our own pid file and the
    // signal is a constant.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling process {pid} (from {})", path.display()));
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pin_root_has_a_pid_file_of_its_own() {
        let a = path_for(&PinLayout::new(Path::new("/sys/fs/bpf/sipguard")), None);
        let b = path_for(&PinLayout::new(Path::new("/sys/fs/bpf/lab.2")), None);
        assert_eq!(a, Path::new("/run/sipguard/sys_fs_bpf_sipguard.pid"));
        assert_eq!(b, Path::new("/run/sipguard/sys_fs_bpf_lab_2.pid"));
        let given = Path::new("/tmp/x.pid");
        assert_eq!(path_for(&PinLayout::new(Path::new("/x")), Some(given)), given);
    }

    #[test]
    fn a_pid_file_lives_as_long_as_its_owner() {
        let dir = std::env::temp_dir().join(format!("sg-pidfile-{}", std::process::id()));
        let path = dir.join("deeper/run.pid");
        let layout = PinLayout::new(Path::new("/sys/fs/bpf/nowhere"));
        let file = PidFile::write(path.clone()).unwrap();
        assert_eq!(read(&layout, &path).unwrap(), i32::try_from(std::process::id()).unwrap());
        drop(file);
        assert!(!path.exists());
        let err = format!("{:#}", read(&layout, &path).unwrap_err());
        assert!(err.contains("no `sipguard run --config` seems to run for /sys/fs/bpf/nowhere"));
        std::fs::write(&path, "not a pid\n").unwrap();
        assert!(format!("{:#}", read(&layout, &path).unwrap_err()).contains("holds no process id"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
