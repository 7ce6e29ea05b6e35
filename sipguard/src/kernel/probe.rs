//! What the running kernel must offer, probed rather than guessed from its version (distribution
//! kernels backport), and the refusal when it does not.
//!
//! The floor is Linux 5.18: the XDP program calls `bpf_xdp_load_bytes` and
//! `bpf_xdp_get_buff_len` (5.18) and `bpf_loop` (5.17). Everything else it uses is older and
//! therefore implied: the ring buffer (5.8), `bpf_link` for XDP (5.9), `bpf_fib_lookup` (4.18)
//! and `bpf_sk_lookup_tcp` (5.2) for the trust checks, BPF-to-BPF calls, LPM tries, LRU
//! hashes and per-CPU arrays. The ring buffer is still probed, because a kernel
//! built without it would otherwise fail with a verifier dump.

use std::os::fd::{FromRawFd as _, OwnedFd};

use anyhow::bail;
use serde::Serialize;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;

/// The oldest kernel sipguard supports.
pub const MINIMUM: &str = "5.18";

/// One thing the program needs from the kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// The kernel release that introduced it.
    pub since: &'static str,
    /// What sipguard uses it for.
    pub used_for: &'static str,
    pub available: bool,
}

/// How to ask the kernel about one feature.
enum Probe {
    /// An XDP program may call this helper.
    Helper(i32),
    /// This map type can be created.
    Map(u32),
}

const WANTED: [(&str, &str, &str, Probe); 4] = [
    ("bpf_loop", "5.17", "walking the header lines of a SIP message", Probe::Helper(181)),
    (
        "bpf_xdp_load_bytes",
        "5.18",
        "copying the payload into the inspection window",
        Probe::Helper(189),
    ),
    ("bpf_xdp_get_buff_len", "5.18", "bounding the payload window", Probe::Helper(188)),
    ("ring buffer maps", "5.8", "incident records", Probe::Map(BPF_MAP_TYPE_RINGBUF)),
];

/// Probes every feature sipguard needs.
#[must_use]
pub fn probe() -> Vec<Feature> {
    WANTED
        .iter()
        .map(|(name, since, used_for, how)| Feature {
            name,
            since,
            used_for,
            available: match how {
                Probe::Helper(id) => probe_helper(*id),
                Probe::Map(kind) => map_available(*kind),
            },
        })
        .collect()
}

/// Refuses a kernel that lacks something the program needs, naming it, instead of letting
/// the load end in a verifier dump.
pub fn require() -> anyhow::Result<()> {
    // A probe the kernel refused for want of privilege says nothing of what it offers: say
    // that, not that a feature is missing.
    if let Err(e) = map_probe(BPF_MAP_TYPE_RINGBUF) {
        bail!("the kernel refused to create a BPF map ({e}): sipguard needs root or CAP_BPF");
    }
    let missing: Vec<String> = probe()
        .into_iter()
        .filter(|f| !f.available)
        .map(|f| format!("{} (Linux {}, for {})", f.name, f.since, f.used_for))
        .collect();
    if !missing.is_empty() {
        bail!(
            "this kernel ({}) lacks {}: sipguard needs Linux {MINIMUM} or newer",
            release(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// `uname -r`.
#[must_use]
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned())
}

/// Whether the kernel describes itself with BTF (not needed by sipguard; shown by `check`).
#[must_use]
pub fn has_btf() -> bool {
    std::path::Path::new("/sys/kernel/btf/vmlinux").exists()
}

/// Whether an XDP program may call helper `id` on this kernel (what [`probe`] asks for each
/// helper; public so the kernel tests can check the probe itself).
#[must_use]
pub fn helper_available(id: i32) -> bool {
    probe_helper(id)
}

/// Loads `call id; exit` as XDP. The verifier looks the helper up before it checks the
/// arguments, so an unknown helper fails with "invalid func" / "unknown func", while a known
/// one fails later, on its (unset) arguments: the log tells them apart, as libbpf's probes do.
fn probe_helper(id: i32) -> bool {
    let call = 0x85u64 | (u64::from(id.cast_unsigned()) << 32);
    let mut log = vec![0u8; 4096];
    if crate::kernel::sys::load_xdp_insns(&[call, 0x95], Some(&mut log)).is_ok() {
        return true;
    }
    let text = String::from_utf8_lossy(&log);
    !(text.contains("invalid func ") || text.contains("unknown func "))
}

fn map_available(kind: u32) -> bool {
    map_probe(kind).unwrap_or(false)
}

/// Whether a map of `kind` can be created: an error only when the kernel refused for want of
/// privilege (`EPERM`, `EACCES`), which tells nothing of the map type.
fn map_probe(kind: u32) -> std::io::Result<bool> {
    #[repr(C)]
    struct MapAttr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    // A ring buffer's size is a power-of-two multiple of the page size.
    let mut attr = MapAttr { map_type: kind, key_size: 0, value_size: 0, max_entries: 1 << 16 };
    match crate::kernel::sys::bpf(BPF_MAP_CREATE, &mut attr) {
        Ok(fd) => {
            // SAFETY: a descriptor the kernel just returned: closed here.
            drop(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) });
            Ok(true)
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => Err(e),
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_probe_names_a_release_and_a_use() {
        for (name, since, used_for, _) in &WANTED {
            assert!(!name.is_empty() && !used_for.is_empty());
            assert!(since.split('.').all(|p| p.parse::<u32>().is_ok()), "{since}");
        }
    }
}
