//! The command line, as clap definitions. Arguments become the library's own types here
//! (`sipguard::setup::settings`, the `Named` enums): the library never sees a flag.

mod service;
mod state;

use std::path::PathBuf;

pub(crate) use self::{
    service::{AttachArgs, DetachArgs, RunArgs, domain_setting},
    state::{BanCommand, DecisionsCommand, ListCommand, ProtectCommand, SigAddArgs, SigCommand},
};

use clap::{
    Args, Parser, Subcommand,
    builder::{PossibleValue, PossibleValuesParser, TypedValueParser},
};
use sipguard::{cidr::Cidr, kernel::pin::DEFAULT_PIN_DIR, named::Named};

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

#[derive(Debug, Args)]
pub(crate) struct JsonArg {
    /// Print JSON (one object per line, each with a "type" field).
    #[arg(long)]
    pub json: bool,
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
