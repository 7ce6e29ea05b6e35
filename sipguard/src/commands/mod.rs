//! One function per subcommand: parse nothing, decide nothing, call the library and print.

mod attach;
mod ban;
mod check;
mod decisions;
mod generate;
mod lists;
mod protect;
mod sig;
mod stats;
mod status;

use std::io::{self, Write as _};

use crate::cli::{Cli, Command};
use sipguard::kernel::{maps::ListKind, pin::PinLayout};

pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let layout = PinLayout::new(&cli.pin_dir);
    match cli.command {
        Command::Attach(args) => attach::attach(&layout, &args),
        Command::Run(args) => attach::run(&layout, &args),
        Command::Detach(args) => attach::detach(&layout, &args),
        Command::Status(args) => status::status(&layout, args.json),
        Command::Allow(cmd) => lists::list_command(&layout, ListKind::Allow, cmd),
        Command::Block(cmd) => lists::list_command(&layout, ListKind::Block, cmd),
        Command::Stats(args) => stats::stats(&layout, &args),
        Command::Sig(cmd) => sig::sig_command(&layout, cmd),
        Command::Ban(cmd) => ban::ban_command(&layout, cmd),
        Command::Protect(cmd) => protect::protect_command(&layout, cmd),
        Command::Decisions(cmd) => decisions::decisions_command(&layout, cmd),
        Command::Check(args) => check::check(&layout, args.json),
        Command::Generate { what, dir } => generate::generate(what, &dir),
        Command::Reload { pid_file } => attach::reload(&layout, pid_file.as_ref()),
    }
}

/// Writes to stdout without panicking on a closed pipe (the error reaches `main`, which
/// treats a broken pipe as a normal end).
fn out(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// One JSON Lines record.
fn out_json(value: &serde_json::Value) -> io::Result<()> {
    out(&format!("{value}\n"))
}
