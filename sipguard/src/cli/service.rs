//! The arguments of `attach`, `detach` and `run`: the filter's settings, the lists to start
//! with, the service's options and its bouncer.

use std::path::PathBuf;

use clap::Args;
use sipguard::{
    cidr::Cidr,
    daemon::service::Options,
    kernel::program::AttachMode,
    setup::settings::{Capacity, CrowdsecSettings, FilterSettings, PolicySettings, Setup},
};
use sipguard_common::{
    config::{DefaultAction, FragmentAction, Mode},
    trust::ReversePath,
};

use super::named;

/// Settings of the filter. Options left out keep their current value (or the default, on
/// first attach).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct FilterArgs {
    /// What happens to SIP traffic from sources on no list [default: pass].
    #[arg(long = "default", value_parser = named::<DefaultAction>(), value_name = "ACTION")]
    pub default_action: Option<DefaultAction>,

    /// Whether drops are made or only counted [default: enforce].
    #[arg(long, value_parser = named::<Mode>())]
    pub mode: Option<Mode>,

    /// Destination ports treated as SIP (repeat or comma-separate) [default: 5060,5061].
    #[arg(long = "sip-port", value_name = "PORT", value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    pub sip_ports: Vec<u16>,

    /// A SIP domain the protected servers answer to (repeat for several): requests outside a
    /// dialog whose Request-URI host is none of them, a bare IP address say, are dropped as
    /// `unknown_domain` [default: no domain check].
    #[arg(long = "sip-domain", value_name = "NAME", value_parser = sip_domain)]
    pub sip_domains: Vec<String>,

    /// Declare no SIP domains: turns the domain check off.
    #[arg(long, conflicts_with = "sip_domains")]
    pub no_sip_domains: bool,

    /// Policy for non-first IP fragments, which carry no ports [default: pass].
    #[arg(long, value_parser = named::<FragmentAction>(), value_name = "ACTION")]
    pub fragments: Option<FragmentAction>,

    /// How long a source caught by a signature stays banned; 0 disables bans [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub ban_ttl: Option<u32>,

    /// Per-source limit on SIP packets per second (excess dropped as `rate_limited`); 0 turns
    /// it off [default: off].
    #[arg(long, value_name = "PPS")]
    pub rate_limit: Option<u32>,

    /// Packets a source may send at once above the rate limit [default: 20].
    #[arg(long, value_name = "N", requires = "rate_limit")]
    pub rate_burst: Option<u32>,

    /// Window over which the behaviour rules count the answers each remote source gets from
    /// the protected servers; 0 turns the rules off [default: 60].
    #[arg(long, value_name = "SECS")]
    pub behaviour_window: Option<u16>,

    /// Ban a source that gets this many authentication challenges and refusals (401, 407,
    /// 403) more than what it did right within the window: its successes, or its requests
    /// that answered a challenge with credentials the server took; 0 turns the rule off
    /// [default: 20].
    #[arg(long, value_name = "N")]
    pub auth_failures: Option<u16>,

    /// Ban a source that gets this many "not found" answers (404, 484, 604) within the window,
    /// when they are a quarter or more of its successes. Numbers (seven characters or more)
    /// that a source with standing dialled are not counted: a dialer's list has stale ones. 0
    /// turns the rule off [default: 20].
    #[arg(long, value_name = "N")]
    pub not_found: Option<u16>,

    /// Ban a source whose requests address this many distinct users (the To header's user
    /// part) within one to two windows, when they are more than four times its successes.
    /// Numbers (seven characters or more) that a source with standing calls are not
    /// counted: a dialer is not a sweep. 0 turns the rule off [default: 40].
    #[arg(long, value_name = "N")]
    pub extension_scan: Option<u16>,

    /// On the way to a ban, the route back to the source decides whether it is forged:
    /// `strict`, it must leave by the interface the packet came in on; `loose`, there must
    /// be one. A forged source's packet is dropped as `spoofed`, never banned [default:
    /// strict].
    #[arg(long, value_parser = named::<ReversePath>(), value_name = "MODE")]
    pub reverse_path: Option<ReversePath>,

    /// Seconds a success answering a source's REGISTER or INVITE gives it standing: its bad
    /// packets are dropped, but do not ban it; 0 turns standing off [default: 86400].
    #[arg(long, value_name = "SECS")]
    pub standing: Option<u32>,
}

impl FilterArgs {
    pub(crate) fn settings(&self) -> FilterSettings {
        FilterSettings {
            policy: PolicySettings {
                default_action: self.default_action,
                mode: self.mode,
                fragments: self.fragments,
                ban_ttl: self.ban_ttl,
                rate_limit: self.rate_limit,
                rate_burst: self.rate_burst,
                behaviour_window: self.behaviour_window,
                auth_failures: self.auth_failures,
                not_found: self.not_found,
                extension_scan: self.extension_scan,
                reverse_path: self.reverse_path,
                standing: self.standing,
            },
            sip_ports: self.sip_ports.clone(),
            sip_domains: domain_setting(&self.sip_domains, self.no_sip_domains),
        }
    }
}

/// Parses `--sip-domain` (normalized, so a bad name is a usage error).
pub(super) fn sip_domain(name: &str) -> Result<String, String> {
    sipguard::state::domains::normalize(name).map_err(|e| format!("{e:#}"))
}

/// `--sip-domain` and `--no-sip-domains` as a setting: `None` keeps what is declared.
pub(crate) fn domain_setting(names: &[String], none: bool) -> Option<Vec<String>> {
    if none {
        return Some(Vec::new());
    }
    (!names.is_empty()).then(|| {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        names
    })
}

#[derive(Debug, Args, Clone)]
pub(crate) struct AttachArgs {
    /// Interface to protect (repeat for several).
    #[arg(long = "iface", short = 'i', value_name = "IF", required = true)]
    pub ifaces: Vec<String>,

    #[command(flatten)]
    pub setup: SetupArgs,
}

/// What `attach` and `run` share: settings, attach mode, capacity, lists to start with.
#[derive(Debug, Args, Clone)]
pub(crate) struct SetupArgs {
    #[command(flatten)]
    pub settings: FilterArgs,

    /// XDP attach mode for new attachments.
    #[arg(long, value_parser = named::<AttachMode>(), default_value = "auto")]
    pub xdp_mode: AttachMode,

    /// Entries each source list holds per address family; fixed when the filter is first
    /// attached [default: 65536].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub list_capacity: Option<u32>,

    /// Protected destinations each family holds (`protect add`); fixed when the filter is
    /// first attached; both families together hold at most 131071 [default: 16384].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..i64::from(sipguard_common::policy::MAX_POLICIES)))]
    pub dest_capacity: Option<u32>,

    /// Remote sources whose answers the behaviour rules track at once (the oldest make way);
    /// fixed when the filter is first attached [default: 65536].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub behaviour_capacity: Option<u32>,

    /// Allowlist these sources before the filter starts (repeat or comma-separate).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub allow: Vec<Cidr>,

    /// Blocklist these sources before the filter starts (repeat or comma-separate).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub block: Vec<Cidr>,
}

impl SetupArgs {
    /// The setup as the library takes it.
    pub(crate) fn setup(&self) -> Setup {
        Setup {
            settings: self.settings.settings(),
            xdp_mode: self.xdp_mode,
            capacity: Capacity {
                lists: self.list_capacity,
                destinations: self.dest_capacity,
                behaviour: self.behaviour_capacity,
            },
            allow: self.allow.clone(),
            block: self.block.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Interface to protect (repeat for several); optional when the filter is already
    /// attached somewhere, which `run` then adopts.
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,

    #[command(flatten)]
    pub setup: SetupArgs,

    /// Detach from the interfaces this process attached when it exits on SIGINT/SIGTERM.
    #[arg(long)]
    pub detach_on_exit: bool,

    /// Log a counter summary to stderr every SECS seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stats_interval: u64,

    /// Also append every incident record (JSON Lines) to this file.
    #[arg(long, value_name = "PATH")]
    pub events_file: Option<PathBuf>,

    /// Take everything (interfaces, policy, destinations, lists, signatures) from this TOML
    /// file; SIGHUP or `sipguard reload` re-reads it. See docs/sipguard.example.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Serve Prometheus metrics on this address (path /metrics).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Where to write this process's id, for `sipguard reload` [default: derived from the
    /// pin directory, under /run/sipguard].
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,

    #[command(flatten)]
    pub crowdsec: CrowdsecArgs,
}

impl RunArgs {
    /// The service's options as the library takes them.
    pub(crate) fn options(&self) -> Options {
        Options {
            ifaces: self.ifaces.clone(),
            setup: self.setup.setup(),
            config: self.config.clone(),
            pid_file: self.pid_file.clone(),
            events_file: self.events_file.clone(),
            metrics: self.metrics,
            stats_every: std::time::Duration::from_secs(self.stats_interval),
            detach_on_exit: self.detach_on_exit,
            crowdsec: self.crowdsec.settings(),
        }
    }
}

/// Bouncer (and, with a machine, sharing) of a CrowdSec Local API.
#[derive(Debug, Args)]
#[expect(
    clippy::struct_field_names,
    reason = "the flags are --crowdsec-*, and clap names flags after their fields"
)]
pub(crate) struct CrowdsecArgs {
    /// Enforce the decisions of this CrowdSec Local API (http:// or https://HOST:PORT) in the
    /// kernel.
    #[arg(long, value_name = "URL", requires = "crowdsec_key_file")]
    pub crowdsec_url: Option<String>,
    /// The file holding the bouncer key (`cscli bouncers add NAME`).
    #[arg(long, value_name = "FILE", requires = "crowdsec_url")]
    pub crowdsec_key_file: Option<PathBuf>,
    /// For an https URL: trust only the CA certificates of this PEM file [default: the
    /// system's roots].
    #[arg(long, value_name = "FILE", requires = "crowdsec_url")]
    pub crowdsec_ca_file: Option<PathBuf>,
    /// Seconds between pulls of the decision stream.
    #[arg(long, value_name = "SECS", requires = "crowdsec_url", default_value_t = sipguard::setup::settings::DEFAULT_CROWDSEC_INTERVAL_SECS)]
    pub crowdsec_interval: u64,
    /// Seconds between usage-metrics reports to the API (packets dropped by origin,
    /// processed, decisions in force), as CrowdSec's bouncers send them; 0: none.
    #[arg(long, value_name = "SECS", requires = "crowdsec_url", default_value_t = sipguard::setup::settings::DEFAULT_USAGE_INTERVAL_SECS)]
    pub crowdsec_metrics_interval: u64,
    /// Share verified bans with the API as this machine (`cscli machines add`).
    #[arg(long, value_name = "NAME", requires_all = ["crowdsec_url", "crowdsec_password_file"])]
    pub crowdsec_machine: Option<String>,
    /// The file holding the machine's password.
    #[arg(long, value_name = "FILE", requires = "crowdsec_machine")]
    pub crowdsec_password_file: Option<PathBuf>,
}

impl CrowdsecArgs {
    /// The settings the flags give, if any.
    pub(crate) fn settings(&self) -> Option<CrowdsecSettings> {
        Some(CrowdsecSettings {
            url: self.crowdsec_url.clone()?,
            api_key_file: self.crowdsec_key_file.clone()?,
            ca_file: self.crowdsec_ca_file.clone(),
            interval: self.crowdsec_interval,
            machine: self.crowdsec_machine.clone(),
            password_file: self.crowdsec_password_file.clone(),
            origins: Vec::new(),
            scenarios: Vec::new(),
            metrics_interval: self.crowdsec_metrics_interval,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct DetachArgs {
    /// Interface to detach from (repeat for several); all when omitted.
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,

    /// Keep the maps (lists, counters) pinned even when no interface is left.
    #[arg(long)]
    pub keep_state: bool,
}
