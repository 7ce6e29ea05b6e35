//! The command line, as clap definitions. Arguments become the library's own types here
//! (`sipguard::settings`, the `Named` enums): the library never sees a flag.

use std::path::PathBuf;

use clap::{
    Args, Parser, Subcommand,
    builder::{PossibleValue, PossibleValuesParser, TypedValueParser},
};
use sipguard::{
    cidr::Cidr,
    import::Format,
    named::Named,
    pin::DEFAULT_PIN_DIR,
    program::AttachMode,
    settings::{Capacity, FilterSettings, PolicySettings, Setup},
};
use sipguard_common::{
    config::{DefaultAction, FragmentAction, Mode},
    trust::ReversePath,
};

/// A value parser for a [`Named`] type: its names (with their help) are the possible values,
/// and its own table turns the name into the value.
fn named<T: Named + Clone + Send + Sync>() -> impl TypedValueParser<Value = T> {
    names_of(|_: &T| true)
}

/// The same, for the values `keep` accepts.
fn names_of<T: Named + Clone + Send + Sync>(
    keep: impl Fn(&T) -> bool,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        T::CHOICES
            .iter()
            .filter(|(_, v, _)| keep(v))
            .map(|(n, _, h)| PossibleValue::new(*n).help(*h)),
    )
    .map(|name| T::from_name(&name).expect("clap offers only the type's own names"))
}

#[derive(Debug, Parser)]
#[command(
    name = "sipguard",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SIPGUARD_COMMIT"), ")"),
    about = "Stop SIP scanners (SIPVicious and kin) with an XDP filter",
    long_about = "sipguard attaches an XDP program that drops SIP traffic from blocklisted or \
                  non-allowlisted sources before the kernel's network stack sees it, and manages \
                  its lists and statistics while it runs.",
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Where the filter's maps and links are pinned (on a bpf filesystem).
    #[arg(long, global = true, env = "SIPGUARD_PIN_DIR", default_value = DEFAULT_PIN_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,

    /// Where the verifier's log goes if the kernel refuses a program [default: the logs
    /// directory systemd gives the service, else the temporary directory].
    #[arg(long, global = true, value_name = "FILE")]
    pub verifier_log: Option<PathBuf>,

    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Load the filter, attach it to interfaces, pin everything, and exit.
    ///
    /// Attaching again (to the same or more interfaces) keeps the lists and statistics,
    /// replaces the program atomically where it already runs, and changes only the settings
    /// given on the command line.
    Attach(AttachArgs),
    /// Attach (or adopt an existing attachment) and stay in the foreground until SIGINT/SIGTERM.
    ///
    /// The filter stays in place when `run` exits, even when it is killed, unless
    /// --detach-on-exit is given.
    Run(Box<RunArgs>),
    /// Detach the filter from interfaces (all of them by default).
    ///
    /// When no interface is left, the pinned maps are removed too, unless --keep-state.
    Detach(DetachArgs),
    /// Show where the filter is attached and how it is configured.
    Status(JsonArg),
    /// Manage the source allowlist: these sources are never filtered.
    #[command(subcommand)]
    Allow(ListCommand),
    /// Manage the source blocklist: everything these sources send to a SIP port is dropped.
    #[command(subcommand)]
    Block(ListCommand),
    /// Show packet counters: what was passed and dropped, and why.
    Stats(StatsArgs),
    /// Manage scanner signatures.
    #[command(subcommand)]
    Sig(SigCommand),
    /// Manage banned sources (sources caught by a signature are banned automatically).
    #[command(subcommand)]
    Ban(BanCommand),
    /// Manage protected destinations: addresses with a policy of their own.
    #[command(subcommand)]
    Protect(ProtectCommand),
    /// Show the decisions of the fleet's decision store (CrowdSec's Local API) that `run`
    /// enforces.
    #[command(subcommand)]
    Decisions(DecisionsCommand),
    /// Check that this kernel can run sipguard: probe the features the XDP program needs and
    /// load it once (not attached), reporting the verifier's cost. Exits 1 if it cannot.
    Check(JsonArg),
    /// Write documentation generated from these definitions: man pages, shell completions,
    /// or the Markdown reference.
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
        /// Directory to write into.
        dir: PathBuf,
    },
    /// Make a `sipguard run --config FILE` re-read its file (sends it SIGHUP).
    Reload {
        /// The pid file of the `run` [default: derived from the pin directory].
        #[arg(long, value_name = "PATH")]
        pid_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DecisionsCommand {
    /// Print the decisions in force: value, origin, scenario, time left.
    #[command(alias = "ls")]
    List(JsonArg),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SigCommand {
    /// Print the installed signatures with their hit counts.
    #[command(alias = "ls")]
    List(JsonArg),
    /// Add a signature.
    Add(SigAddArgs),
    /// Remove signatures by name.
    #[command(alias = "rm")]
    Del {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Add the signatures of a file (TOML, as printed by `sig catalog`); all or nothing.
    Load {
        file: PathBuf,
        /// Make the file the whole signature set (the built-in catalog included only if the
        /// file has it).
        #[arg(long)]
        replace: bool,
    },
    /// Print the built-in catalog (a valid file for `sig load`).
    Catalog,
    /// Check a captured SIP message (a file, plain newlines are fine) against the installed
    /// signatures, or the built-in catalog when nothing is attached.
    Test {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("match").required(true).args(["contains", "prefix", "equals"]))]
pub(crate) struct SigAddArgs {
    /// request-uri, via, from, to, contact, call-id, user-agent (also Server) or any.
    #[arg(long)]
    pub scope: String,
    /// Match anywhere in the value.
    #[arg(long, value_name = "VALUE")]
    pub contains: Option<String>,
    /// Match at the start of the value (and of the bracketed URI for from/to/contact).
    #[arg(long, value_name = "VALUE")]
    pub prefix: Option<String>,
    /// Match the whole value (or the whole bracketed URI).
    #[arg(long, value_name = "VALUE")]
    pub equals: Option<String>,
    /// Unique name (derived from scope and value when omitted).
    #[arg(long)]
    pub name: Option<String>,
    /// 1..100; a message is dropped when its matches weigh 100 together [default: 100].
    #[arg(long, default_value_t = 100)]
    pub weight: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BanCommand {
    /// Print the banned sources.
    #[command(alias = "ls")]
    List(JsonArg),
    /// Ban sources by hand.
    Add {
        #[arg(value_name = "ADDR", required = true)]
        addrs: Vec<std::net::IpAddr>,
        /// Ban duration; 0 means until removed [default: the configured ban TTL].
        #[arg(long, value_name = "SECS")]
        ttl: Option<u32>,
    },
    /// Lift bans.
    #[command(alias = "rm")]
    Del {
        #[arg(value_name = "ADDR", required = true)]
        addrs: Vec<std::net::IpAddr>,
    },
}

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
    /// 403) more than successes within the window; 0 turns the rule off [default: 20].
    #[arg(long, value_name = "N")]
    pub auth_failures: Option<u16>,

    /// Ban a source that gets this many "not found" answers (404, 484, 604) within the window,
    /// when they are a quarter or more of its successes; 0 turns the rule off [default: 20].
    #[arg(long, value_name = "N")]
    pub not_found: Option<u16>,

    /// Ban a source whose requests address this many distinct users (the To header's user
    /// part) within one to two windows, when they are more than four times its successes;
    /// 0 turns the rule off [default: 40].
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
fn sip_domain(name: &str) -> Result<String, String> {
    sipguard::domains::normalize(name).map_err(|e| format!("{e:#}"))
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
    #[arg(long, value_name = "SECS", requires = "crowdsec_url", default_value_t = sipguard::crowdsec::DEFAULT_INTERVAL_SECS)]
    pub crowdsec_interval: u64,
    /// Share verified bans with the API as this machine (`cscli machines add`).
    #[arg(long, value_name = "NAME", requires_all = ["crowdsec_url", "crowdsec_password_file"])]
    pub crowdsec_machine: Option<String>,
    /// The file holding the machine's password.
    #[arg(long, value_name = "FILE", requires = "crowdsec_machine")]
    pub crowdsec_password_file: Option<PathBuf>,
}

impl CrowdsecArgs {
    /// The settings the flags give, if any.
    pub(crate) fn settings(&self) -> Option<sipguard::crowdsec::Settings> {
        Some(sipguard::crowdsec::Settings {
            url: self.crowdsec_url.clone()?,
            api_key_file: self.crowdsec_key_file.clone()?,
            ca_file: self.crowdsec_ca_file.clone(),
            interval: self.crowdsec_interval,
            machine: self.crowdsec_machine.clone(),
            password_file: self.crowdsec_password_file.clone(),
            origins: Vec::new(),
            scenarios: Vec::new(),
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

#[derive(Debug, Args)]
pub(crate) struct JsonArg {
    /// Print JSON (one object per line, each with a "type" field).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ListCommand {
    /// Add addresses or CIDR prefixes (a plain address means /32 or /128).
    Add {
        #[arg(value_name = "CIDR", required = true)]
        cidrs: Vec<Cidr>,
        /// The list of this protected destination instead of the global list.
        #[arg(long = "for", value_name = "ADDR")]
        dest: Option<Cidr>,
    },
    /// Remove entries; each must be on the list.
    #[command(alias = "rm")]
    Del {
        #[arg(value_name = "CIDR", required = true)]
        cidrs: Vec<Cidr>,
        /// The list of this protected destination instead of the global list.
        #[arg(long = "for", value_name = "ADDR")]
        dest: Option<Cidr>,
    },
    /// Print the entries.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        json: bool,
        /// The list of this protected destination instead of the global list.
        #[arg(long = "for", value_name = "ADDR")]
        dest: Option<Cidr>,
    },
    /// Add (or with --replace, install exactly) the entries of a file; checked in full
    /// first, the line of the first error is reported.
    Import {
        /// The list file (`-` reads standard input).
        file: PathBuf,
        /// The list of this protected destination instead of the global list.
        #[arg(long = "for", value_name = "ADDR")]
        dest: Option<Cidr>,
        /// Swap the whole list for the file's, atomically.
        #[arg(long)]
        replace: bool,
        /// The file's format.
        #[arg(long, value_parser = named::<Format>(), default_value = "plain")]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProtectCommand {
    /// Give a destination (address or prefix) a policy of its own, or change it.
    Add {
        /// The protected address, or a prefix of them (the longest matching prefix applies).
        #[arg(value_name = "ADDR|CIDR")]
        dest: Cidr,
        /// What happens to SIP traffic to it from sources on none of its lists [default: pass].
        #[arg(
            long = "default",
            value_parser = names_of(|a: &DefaultAction| *a != DefaultAction::Off),
            value_name = "ACTION"
        )]
        default_action: Option<DefaultAction>,
        /// Whether drops are made or only counted [default: enforce].
        #[arg(long, value_parser = named::<Mode>())]
        mode: Option<Mode>,
        /// A label (shown in status, stats and events).
        #[arg(long, value_name = "LABEL")]
        name: Option<String>,
        /// A SIP domain the destination answers to (repeat for several; replaces its set):
        /// requests outside a dialog to any other host are dropped as `unknown_domain`.
        #[arg(long = "sip-domain", value_name = "NAME", value_parser = sip_domain)]
        sip_domains: Vec<String>,
        /// Declare no SIP domains of its own (the global ones still apply).
        #[arg(long, conflicts_with = "sip_domains")]
        no_sip_domains: bool,
    },
    /// Remove a destination's policy, its lists and counters.
    #[command(alias = "rm")]
    Del {
        /// Exactly as it was added.
        #[arg(value_name = "ADDR|CIDR")]
        dest: Cidr,
    },
    /// Print the protected destinations.
    #[command(alias = "ls")]
    List(JsonArg),
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print JSON: one object with integer "passed" and "dropped" and a "reasons" object.
    #[arg(long)]
    pub json: bool,

    /// Print again every SECS seconds, with rates, until interrupted.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,

    /// With --watch: stop after N reports.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,

    /// Only the drops of this protected destination.
    #[arg(long = "for", value_name = "ADDR", conflicts_with = "watch")]
    pub dest: Option<Cidr>,
}

/// What `sipguard generate` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Generated {
    /// `sipguard.8` and one page per subcommand.
    Man,
    /// bash, zsh and fish.
    Completions,
    /// `cli.md`.
    Markdown,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_cidr_is_a_usage_error() {
        let err = Cli::try_parse_from(["sipguard", "allow", "add", "10.0.0.1/8"]).unwrap_err();
        assert!(err.to_string().contains("did you mean 10.0.0.0/8"), "{err}");
    }

    #[test]
    fn ports_accept_lists_and_reject_zero() {
        let cli =
            Cli::try_parse_from(["sipguard", "attach", "-i", "eth0", "--sip-port", "5060,5080"])
                .unwrap();
        let Command::Attach(a) = cli.command else { panic!() };
        assert_eq!(a.setup.settings.sip_ports, [5060, 5080]);
        assert!(
            Cli::try_parse_from(["sipguard", "attach", "-i", "eth0", "--sip-port", "0"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["sipguard", "attach", "-i", "eth0", "--sip-port", "70000"])
                .is_err()
        );
    }
}
