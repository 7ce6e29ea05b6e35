//! An early, readable refusal when the caller lacks the capabilities the kernel will demand,
//! instead of an `EPERM` or `EACCES` from deep inside a `bpf()` call.
//!
//! What each step needs, measured (`tests/tests/netns.rs`, run under `setpriv` with exactly
//! these capabilities):
//! - maps (lists, bans, stats, status): `CAP_BPF`;
//! - loading the programs (`attach`, `run`, `check`): `CAP_BPF`, `CAP_PERFMON` and
//!   `CAP_NET_ADMIN`. Without `CAP_PERFMON` the verifier hardens the program against Spectre
//!   v1 and refuses pointer arithmetic it cannot mask: a packet pointer plus a register
//!   offset (the header parser's every step past a variable-length header) is refused with
//!   `EACCES`, "pointer arithmetic with it prohibited for !root". XDP and TC programs are
//!   networking programs: the kernel refuses to load them at all without `CAP_NET_ADMIN`
//!   (`EPERM`, before the verifier runs);
//! - attaching to and detaching from interfaces (XDP links, the egress hook): `CAP_NET_ADMIN`.
//!
//! `CAP_SYS_ADMIN` implies `CAP_BPF` and `CAP_PERFMON`, as the kernel has it.

use anyhow::{Context as _, bail};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What a command is about to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Read or change pinned maps.
    Maps,
    /// Load the programs without attaching them (`check`).
    Load,
    /// Load programs and attach them to interfaces (or detach them).
    Attach,
}

impl Need {
    /// The capabilities this needs, by number and name.
    #[must_use]
    pub fn capabilities(self) -> &'static [(u32, &'static str)] {
        const BPF: (u32, &str) = (CAP_BPF, "CAP_BPF");
        const PERFMON: (u32, &str) = (CAP_PERFMON, "CAP_PERFMON");
        const NET_ADMIN: (u32, &str) = (CAP_NET_ADMIN, "CAP_NET_ADMIN");
        match self {
            Need::Maps => &[BPF],
            // Loading a networking program needs CAP_NET_ADMIN already.
            Need::Load | Need::Attach => &[BPF, PERFMON, NET_ADMIN],
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Need::Maps => "use the filter's maps",
            Need::Load => "load the XDP program",
            Need::Attach => "load and attach the XDP program",
        }
    }
}

fn effective_caps() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff line in /proc/self/status")?;
    u64::from_str_radix(hex.trim(), 16).context("parsing CapEff")
}

/// The capabilities `need` calls for that the effective set `caps` lacks, by name.
fn missing(caps: u64, need: Need) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    need.capabilities()
        .iter()
        .filter(|(cap, _)| {
            let implied = *cap != CAP_NET_ADMIN && has(CAP_SYS_ADMIN);
            !has(*cap) && !implied
        })
        .map(|(_, name)| *name)
        .collect()
}

/// Set (to anything) to skip the check below and let the kernel give its own answer: the
/// tests use it to show that each capability is needed by the kernel, not only by this check.
pub const SKIP_CHECK_VAR: &str = "SIPGUARD_SKIP_PRIVILEGE_CHECK";

pub fn require(need: Need) -> anyhow::Result<()> {
    if std::env::var_os(SKIP_CHECK_VAR).is_some() {
        return Ok(());
    }
    let lacking = missing(effective_caps()?, need);
    if !lacking.is_empty() {
        let all: Vec<&str> = need.capabilities().iter().map(|(_, n)| *n).collect();
        bail!(
            "permission denied: sipguard needs root or {} to {}; missing {}{}",
            all.join(", "),
            need.doing(),
            lacking.join(", "),
            if lacking.contains(&"CAP_PERFMON") {
                " (without it the verifier's Spectre hardening refuses the packet parser)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn set(caps: &[u32]) -> u64 {
        let mut bits = 0;
        let mut i = 0;
        while i < caps.len() {
            bits |= 1 << caps[i];
            i += 1;
        }
        bits
    }

    #[test]
    fn names_exactly_what_is_missing() {
        let unit = set(&[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN]);
        for need in [Need::Maps, Need::Load, Need::Attach] {
            assert!(missing(unit, need).is_empty(), "{need:?}");
        }
        let no_perfmon = set(&[CAP_BPF, CAP_NET_ADMIN]);
        assert!(missing(no_perfmon, Need::Maps).is_empty());
        assert_eq!(missing(no_perfmon, Need::Attach), ["CAP_PERFMON"]);
        assert_eq!(missing(set(&[CAP_BPF, CAP_PERFMON]), Need::Attach), ["CAP_NET_ADMIN"]);
        assert_eq!(missing(set(&[CAP_BPF, CAP_PERFMON]), Need::Load), ["CAP_NET_ADMIN"]);
        // CAP_SYS_ADMIN stands for CAP_BPF and CAP_PERFMON, not for CAP_NET_ADMIN.
        assert!(missing(set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN]), Need::Attach).is_empty());
        assert_eq!(missing(set(&[CAP_SYS_ADMIN]), Need::Attach), ["CAP_NET_ADMIN"]);
        assert_eq!(missing(0, Need::Attach), ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"]);
    }
}
