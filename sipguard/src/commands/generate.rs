//! `sipguard generate man|completions|markdown DIR`: documentation from the clap definitions
//! themselves, so it cannot drift from the program (hidden; used by packaging and
//! `cargo xtask docs`).

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;
use sipguard_common::counters::{Reason, Verdict};

use crate::cli::{Cli, Generated};

pub(super) fn generate(what: Generated, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    match what {
        Generated::Man => man(&cmd, dir),
        Generated::Completions => {
            for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
                clap_complete::generate_to(shell, &mut cmd, "sipguard", dir)
                    .with_context(|| format!("writing {shell} completions"))?;
            }
            Ok(())
        }
        Generated::Markdown => {
            let path = dir.join("cli.md");
            std::fs::write(&path, markdown(&cmd))
                .with_context(|| format!("writing {}", path.display()))
        }
    }
}

/// `sipguard.8`, and `sipguard-SUB.8` for every subcommand at every depth.
fn man(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_owned();
    let path = dir.join(format!("{name}.8"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).section("8").render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    for sub in documented(cmd) {
        man(sub, dir)?;
    }
    Ok(())
}

/// The reference: every command with its usage, text and options, then the counter reasons.
fn markdown(cmd: &clap::Command) -> String {
    let mut md = String::from(
        "# sipguard command reference\n\n\
         Generated from the program's own definitions by `cargo xtask docs` (do not edit):\n\
         `sipguard help COMMAND` prints the same. What the JSON output, the incident records \
         and the readiness notices contain is in [output.md](output.md).\n",
    );
    command_md(cmd, &mut md);
    md.push_str(
        "\n## Counter reasons\n\nEvery packet the filter sees counts once, under one reason",
    );
    md.push_str(" (`sipguard stats`). In monitor mode a drop is passed and counted as `monitor_REASON`.\n\n");
    md.push_str("| reason | verdict |\n| --- | --- |\n");
    for r in Reason::ALL {
        let verdict = if r.verdict() == Verdict::Drop { "drop" } else { "pass" };
        writeln!(md, "| `{}` | {verdict} |", r.name()).ok();
    }
    md
}

fn command_md(cmd: &clap::Command, md: &mut String) {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    writeln!(md, "\n## `{name}`\n").ok();
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        writeln!(md, "{about}\n").ok();
    }
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    writeln!(md, "```text\n{usage}\n```").ok();
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help")
        .filter(|a| a.get_id() != "version")
        .collect();
    if !args.is_empty() {
        writeln!(md, "\n| argument | meaning |\n| --- | --- |").ok();
        for a in args {
            writeln!(md, "| {} | {} |", arg_name(a), arg_help(a)).ok();
        }
    }
    if cmd.get_name() == "sipguard" {
        writeln!(md, "\nGlobal options, accepted by every command:\n").ok();
        writeln!(md, "| argument | meaning |\n| --- | --- |").ok();
        for a in cmd.get_arguments().filter(|a| a.is_global_set()) {
            writeln!(md, "| {} | {} |", arg_name(a), arg_help(a)).ok();
        }
    }
    for sub in documented(cmd) {
        command_md(sub, md);
    }
}

/// The subcommands worth a page: not hidden, and not clap's `help`.
fn documented(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

fn takes_value(a: &clap::Arg) -> bool {
    a.get_num_args().is_some_and(|n| n.takes_values())
}

fn arg_name(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .map(|v| {
            v.iter().fold(String::new(), |mut s, n| {
                write!(s, " <{n}>").ok();
                s
            })
        })
        .unwrap_or_default();
    let value = if takes_value(a) { value } else { String::new() };
    match (a.get_short(), a.get_long()) {
        (Some(s), Some(l)) => format!("`-{s}`, `--{l}{value}`"),
        (None, Some(l)) => format!("`--{l}{value}`"),
        (Some(s), None) => format!("`-{s}{value}`"),
        (None, None) => format!("`{}`", value.trim()),
    }
}

fn arg_help(a: &clap::Arg) -> String {
    let mut help =
        a.get_long_help().or_else(|| a.get_help()).map(ToString::to_string).unwrap_or_default();
    let values: Vec<String> = a
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| match v.get_help() {
            Some(h) => format!("`{}` ({h})", v.get_name()),
            None => format!("`{}`", v.get_name()),
        })
        .collect();
    if !values.is_empty() && !a.is_hide_possible_values_set() {
        write!(help, " One of: {}.", values.join(", ")).ok();
    }
    let defaults: Vec<String> =
        a.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
    if !defaults.is_empty() && takes_value(a) && !help.contains("[default:") {
        write!(help, " Default: `{}`.", defaults.join(",")).ok();
    }
    if let Some(env) = a.get_env() {
        write!(help, " Environment: `{}`.", env.to_string_lossy()).ok();
    }
    help.replace('\n', " ").replace('|', "\\|")
}
