//! What `attach` and `run` are asked to set up, as the library takes it. The configuration
//! file's `[policy]` and `[capacity]` tables deserialize straight into these types; the
//! command line's options are mapped onto them by the binary. Neither knows the other.

use serde::Deserialize;
use sipguard_common::{
    config::{DefaultAction, FragmentAction, Mode},
    trust::ReversePath,
};

use crate::{cidr::Cidr, named, program::AttachMode};

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
    /// Challenges and refusals not answered by a success that ban a source; 0: rule off.
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
