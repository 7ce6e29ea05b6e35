//! An early, readable refusal when the caller lacks the capabilities the kernel will demand,
//! instead of an `EPERM` from deep inside a `bpf()` call.

use anyhow::{Context as _, bail};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// What a command is about to do.
#[derive(Clone, Copy)]
pub enum Need {
    /// Read or change pinned maps.
    Maps,
    /// Load programs and attach them to interfaces.
    Attach,
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

pub fn require(need: Need) -> anyhow::Result<()> {
    let caps = effective_caps()?;
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let bpf = has(CAP_BPF) || has(CAP_SYS_ADMIN);
    let net = has(CAP_NET_ADMIN);
    let ok = match need {
        Need::Maps => bpf,
        Need::Attach => bpf && net,
    };
    if !ok {
        bail!(
            "permission denied: sipguard needs root (CAP_BPF and CAP_NET_ADMIN) to {}; run it with sudo",
            match need {
                Need::Maps => "use the filter's maps",
                Need::Attach => "load and attach XDP programs",
            }
        );
    }
    Ok(())
}
