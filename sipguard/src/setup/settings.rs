//! What `attach` and `run` are asked to set up, as the library takes it. The configuration
//! file's `[policy]` and `[capacity]` tables deserialize straight into these types; the
//! command line's options are mapped onto them by the binary. Neither knows the other.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use sipguard_common::{
    config::{DefaultAction, FragmentAction, Mode},
    trust::ReversePath,
};

use crate::{cidr::Cidr, kernel::program::AttachMode, named};

/// The global policy. `None` keeps the current value (the default, on first attach).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// What happens to SIP traffic from sources on no list.
    #[serde(default, rename = "default", deserialize_with = "named::option")]
    pub default_action: Option<DefaultAction>,
    #[serde(default, deserialize_with = "named::option")]
    pub mode: Option<Mode>,
    /// Non-first IP fragments, which carry no ports.
    #[serde(default, deserialize_with = "named::option")]
    pub fragments: Option<FragmentAction>,
    /// Seconds a source caught by a signature stays banned; 0 disables bans.
    pub ban_ttl: Option<u32>,
    /// Per-source SIP packets per second; 0 turns the limit off.
    pub rate_limit: Option<u32>,
    /// Packets a source may send at once above the rate limit.
    pub rate_burst: Option<u32>,
    /// Seconds over which the behaviour rules count the servers' answers; 0 turns them off.
    pub behaviour_window: Option<u16>,
    /// Challenges and refusals not answered by a success or an accepted attempt that ban a
    /// source; 0: rule off.
    pub auth_failures: Option<u16>,
    /// "Not found" answers that ban a source (when they are a quarter or more of its
    /// successes); 0: rule off.
    pub not_found: Option<u16>,
    /// Distinct users addressed that ban a source (when they are more than four times its
    /// successes); 0: rule off.
    pub extension_scan: Option<u16>,
    /// How a source's route back decides that it is forged, on the way to a ban.
    #[serde(default, deserialize_with = "named::option")]
    pub reverse_path: Option<ReversePath>,
    /// Seconds a success answering a source's REGISTER or INVITE gives it standing (not
    /// banned on unverified evidence); 0: no standing.
    pub standing: Option<u32>,
}

impl PolicySettings {
    /// Whether any setting is given.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The filter's settings: the global policy and the ports it judges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSettings {
    pub policy: PolicySettings,
    /// Destination ports treated as SIP; empty keeps the current set.
    pub sip_ports: Vec<u16>,
    /// The global policy's SIP domains, normalized (`domains::normalize_all`); `None` keeps
    /// the current set, an empty one turns the check off.
    pub sip_domains: Option<Vec<String>>,
}

/// Map sizes, fixed when the filter is first attached. `None`: the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Entries each source list holds per address family.
    pub lists: Option<u32>,
    /// Protected destinations each address family holds.
    pub destinations: Option<u32>,
    /// Remote sources the behaviour rules track at once.
    pub behaviour: Option<u32>,
}

/// Everything an attach sets up besides the interfaces.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub settings: FilterSettings,
    pub xdp_mode: AttachMode,
    pub capacity: Capacity,
    /// Sources to allowlist and blocklist before the filter starts.
    pub allow: Vec<Cidr>,
    pub block: Vec<Cidr>,
}

/// Seconds between pulls of the fleet's decisions unless `interval` says otherwise.
pub const DEFAULT_CROWDSEC_INTERVAL_SECS: u64 = 10;

/// The fleet's decision store to follow: the `[crowdsec]` table of the configuration file,
/// and `run`'s `--crowdsec-*` flags. The daemon's bouncer runs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdsecSettings {
    /// The Local API, `http://HOST:PORT` or `https://HOST:PORT`.
    pub url: String,
    /// A file holding the bouncer's API key (`cscli bouncers add`).
    pub api_key_file: PathBuf,
    /// For an `https` URL: trust only the CA certificates of this PEM file (a Local API with
    /// a certificate of its own); without it, the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds between pulls.
    #[serde(default = "default_crowdsec_interval")]
    pub interval: u64,
    /// The machine sipguard shares its bans as (`cscli machines add`); with
    /// `password_file`, sharing is on.
    #[serde(default)]
    pub machine: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Origins to enforce (`crowdsec`, `cscli`, `CAPI`, `lists`, ...); empty: all.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Enforce only decisions whose scenario contains one of these; empty: all.
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// Seconds between usage-metrics reports to the API (`POST /v1/usage-metrics`: packets
    /// dropped by origin, processed, decisions in force); 0: none.
    #[serde(default = "default_usage_interval")]
    pub metrics_interval: u64,
}

/// Between usage-metrics reports by default: CrowdSec's own bouncers report every 15
/// minutes.
pub const DEFAULT_USAGE_INTERVAL_SECS: u64 = 15 * 60;

fn default_usage_interval() -> u64 {
    DEFAULT_USAGE_INTERVAL_SECS
}

fn default_crowdsec_interval() -> u64 {
    DEFAULT_CROWDSEC_INTERVAL_SECS
}

impl CrowdsecSettings {
    /// Refuses settings that cannot work, before anything starts: a zero interval, a machine
    /// without its password (or the reverse), an unreadable or empty key or password file,
    /// a URL that is neither http nor https.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.interval == 0 {
            bail!("crowdsec interval: 0 is no interval (at least 1 second)");
        }
        if self.machine.is_some() != self.password_file.is_some() {
            bail!("crowdsec: sharing needs both a machine and a password file");
        }
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            bail!("crowdsec url `{}`: not http:// or https://", self.url);
        }
        read_secret(&self.api_key_file, "the bouncer key")?;
        if let Some(p) = &self.password_file {
            read_secret(p, "the machine's password")?;
        }
        Ok(())
    }
}

/// A credential from a file: its first line, trimmed. The error names the file, never what
/// it holds.
pub fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {what} from {}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim().to_owned();
    if secret.is_empty() {
        bail!("{} is empty (it should hold {what})", path.display());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crowdsec(dir: &Path) -> CrowdsecSettings {
        let key = dir.join("key");
        std::fs::write(&key, "secret\n").unwrap();
        CrowdsecSettings {
            url: "http://127.0.0.1:8080".into(),
            api_key_file: key,
            ca_file: None,
            interval: DEFAULT_CROWDSEC_INTERVAL_SECS,
            metrics_interval: DEFAULT_USAGE_INTERVAL_SECS,
            machine: None,
            password_file: None,
            origins: Vec::new(),
            scenarios: Vec::new(),
        }
    }

    #[test]
    fn crowdsec_settings_that_cannot_work_are_refused() {
        let dir = std::env::temp_dir().join(format!("sg-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = crowdsec(&dir);
        good.check().unwrap();
        let refused = |s: CrowdsecSettings| format!("{:#}", s.check().unwrap_err());
        assert!(refused(CrowdsecSettings { interval: 0, ..good.clone() }).contains("interval"));
        assert!(
            refused(CrowdsecSettings { machine: Some("edge-a".into()), ..good.clone() })
                .contains("both a machine and a password")
        );
        assert!(
            refused(CrowdsecSettings { url: "ftp://x".into(), ..good.clone() }).contains("ftp")
        );
        std::fs::write(&good.api_key_file, "\n").unwrap();
        assert!(refused(good.clone()).contains("is empty (it should hold the bouncer key)"));
        std::fs::remove_file(&good.api_key_file).unwrap();
        let missing = refused(good);
        assert!(missing.contains("reading the bouncer key from") && !missing.contains("secret"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
