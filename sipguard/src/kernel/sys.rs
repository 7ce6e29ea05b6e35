//! The few kernel queries aya does not expose.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `BPF_OBJ_GET`: a descriptor for the object pinned at `path`.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct ObjAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut attr = ObjAttr { pathname: c.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: attr is a valid attribute block whose pathname outlives the call.
    let rc =
        unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET, &raw mut attr, size_of::<ObjAttr>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(rc).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a link: `(link id, program id, ifindex)`. An XDP link whose
/// interface went away reports ifindex 0 (the kernel detached it).
pub fn xdp_link_info(fd: &impl AsRawFd) -> io::Result<(u32, u32, u32)> {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // struct bpf_link_info: type, id, prog_id, then an 8-aligned union whose xdp arm starts
    // with ifindex. 64 bytes covers every arm the kernel may fill.
    let mut info = [0u64; 8];
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(fd.as_raw_fd()).map_err(io::Error::other)?,
        info_len: u32::try_from(size_of_val(&info)).expect("small"),
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: attr points at a properly sized, initialised attribute block and info buffer.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, &raw mut attr, size_of::<InfoAttr>())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let lo = |w: u64| (w & 0xffff_ffff) as u32;
    let hi = |w: u64| (w >> 32) as u32;
    Ok((hi(info[0]), lo(info[1]), lo(info[2])))
}

/// `BPF_LINK_DETACH`: detaches the link now. Merely unpinning it would drop the last
/// reference, and the kernel releases links from a workqueue, so traffic could still meet the
/// program for a moment after `sipguard detach` returned.
pub fn link_detach(fd: &impl AsRawFd) -> io::Result<()> {
    #[repr(C)]
    struct DetachAttr {
        link_fd: u32,
    }
    let mut attr = DetachAttr { link_fd: u32::try_from(fd.as_raw_fd()).map_err(io::Error::other)? };
    // SAFETY: attr is a valid attribute block for BPF_LINK_DETACH.
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_LINK_DETACH, &raw mut attr, size_of::<DetachAttr>())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `if_nametoindex`, with `None` for an unknown name.
#[must_use]
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid C string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into `ts` only.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Wall-clock time of a `CLOCK_MONOTONIC` instant.
#[must_use]
pub fn wall_time(monotonic: u64) -> std::time::SystemTime {
    let now_mono = monotonic_ns();
    let now = std::time::SystemTime::now();
    if monotonic <= now_mono {
        now - std::time::Duration::from_nanos(now_mono - monotonic)
    } else {
        now + std::time::Duration::from_nanos(monotonic - now_mono)
    }
}

/// Name of an interface by index (in this network namespace).
#[must_use]
pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Some(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// The kernel's memory estimate for the map pinned at `path` (`memlock` in its fdinfo):
/// for tries and hash maps without preallocation it follows the entries actually stored.
pub fn map_memory(path: &Path) -> io::Result<u64> {
    let fd = obj_get(path)?;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no memlock line in the map's fdinfo"))
}

/// `bpf(2)` with `attr`, a prefix of `union bpf_attr` (the kernel zero-extends the rest).
pub fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised attribute block of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            size_of::<T>(),
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// `BPF_PROG_LOAD` of an XDP program given as raw instructions (GPL), with the verifier's
/// log in `log` when given: feature probes and the benchmarks' empty program.
pub fn load_xdp_insns(insns: &[u64], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    load_insns(BPF_PROG_TYPE_XDP, insns, log)
}

pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub const BPF_PROG_TYPE_XDP: u32 = 6;

/// Loads raw instructions as a program of `prog_type` (probes and the benchmark's floors).
pub fn load_insns(prog_type: u32, insns: &[u64], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    #[repr(C)]
    struct LoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
    }
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => {
            (1, u32::try_from(buf.len()).map_err(io::Error::other)?, buf.as_mut_ptr() as u64)
        }
        None => (0, 0, 0),
    };
    let mut attr = LoadAttr {
        prog_type,
        insn_cnt: u32::try_from(insns.len()).map_err(io::Error::other)?,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
    };
    let fd = i32::try_from(bpf(BPF_PROG_LOAD, &mut attr)?).map_err(io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
