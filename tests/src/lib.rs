//! Support for sipguard's end-to-end tests: crafted frames, the real program under
//! `BPF_PROG_TEST_RUN`, network namespaces with veth pairs, and the real `sipguard` binary.
//!
//! Everything here needs root (`CAP_BPF`, `CAP_NET_ADMIN`, `CAP_SYS_ADMIN` for namespaces). Tests
//! that need it call [`require_root`], which fails the test with an explanation rather than
//! skipping it: a suite that silently skips its kernel tests proves nothing.

#![expect(
    clippy::must_use_candidate,
    reason = "test helpers: their callers assert on what they return"
)]

pub mod bench;
pub mod cli;
pub mod confine;
pub mod corpus;
pub mod crowdsec;
pub mod fleet;
pub mod frames;
pub mod netns;
pub mod registrar;
pub mod sippts;
pub mod stale;
pub mod stand_in;
pub mod supervisor;
pub mod wait;
pub mod xdp;

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// Fails the calling test unless it runs with root privileges. The first call in a process
/// also removes what killed test runs left behind (see [`stale`]).
pub fn require_root() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test loads XDP programs and creates network namespaces, so it needs root \
         (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run `cargo xtask test` as root"
    );
    SWEPT.call_once(|| {
        stale::register();
        stale::sweep();
    });
}

/// A name unique to this process and call, for namespaces, pin directories and temporary
/// files: `PREFIX PID x N`. `prefix` must be one of [`stale::PREFIXES`], so that what a killed
/// run leaves behind can be recognised and removed by the next one.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    debug_assert!(stale::PREFIXES.contains(&prefix), "{prefix} is not in stale::PREFIXES");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// The `sipguard` binary under test: `$SIPGUARD_BIN`, else the workspace's debug build.
pub fn sipguard_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPGUARD_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/sipguard");
    assert!(p.exists(), "{} does not exist: build it first (`cargo xtask test` does)", p.display());
    p
}
