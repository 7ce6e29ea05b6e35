//! The arguments of the commands that change what the filter enforces: lists, protected
//! destinations, signatures, bans and decisions.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use sipguard::{cidr::Cidr, setup::import::Format};
use sipguard_common::config::{DefaultAction, Mode};

use super::{JsonArg, named, names_of, service::sip_domain};

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
        /// The names, as `sig list` prints them.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Add the signatures of a file (TOML, as printed by `sig catalog`); all or nothing.
    Load {
        /// The TOML file.
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
        /// The captured message.
        file: PathBuf,
        /// Print JSON: the verdict and the signatures that matched.
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
        /// The sources, IPv4 or IPv6 addresses.
        #[arg(value_name = "ADDR", required = true)]
        addrs: Vec<std::net::IpAddr>,
        /// Ban duration; 0 means until removed [default: the configured ban TTL].
        #[arg(long, value_name = "SECS")]
        ttl: Option<u32>,
    },
    /// Lift bans.
    #[command(alias = "rm")]
    Del {
        /// The banned sources to set free.
        #[arg(value_name = "ADDR", required = true)]
        addrs: Vec<std::net::IpAddr>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ListCommand {
    /// Add addresses or CIDR prefixes (a plain address means /32 or /128).
    Add {
        /// Addresses or prefixes, IPv4 or IPv6: 192.0.2.7, 198.51.100.0/24, ...
        #[arg(value_name = "CIDR", required = true)]
        cidrs: Vec<Cidr>,
        /// The list of this protected destination instead of the global list.
        #[arg(long = "for", value_name = "ADDR")]
        dest: Option<Cidr>,
    },
    /// Remove entries; each must be on the list.
    #[command(alias = "rm")]
    Del {
        /// Addresses or prefixes, IPv4 or IPv6: 192.0.2.7, 198.51.100.0/24, ...
        #[arg(value_name = "CIDR", required = true)]
        cidrs: Vec<Cidr>,
        /// The list of this protected destination instead of the global list.
        #[arg(long = "for", value_name = "ADDR")]
        dest: Option<Cidr>,
    },
    /// Print the entries.
    #[command(alias = "ls")]
    List {
        /// Print JSON (one object per line, each with a "type" field).
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
