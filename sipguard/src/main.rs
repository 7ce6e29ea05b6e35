//! `sipguard`, the command line over the library: `cli` turns arguments into the library's
//! types, `commands` calls the library and prints.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet {
        log::LevelFilter::Error
    } else {
        match cli.verbose {
            0 => log::LevelFilter::Info,
            1 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("SIPGUARD_LOG")
        .format_target(false)
        .init();

    if let Some(path) = cli.verifier_log.clone() {
        sipguard::kernel::program::log_refusals_to(path);
    }
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipguard: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sipguard allow list | head` is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
