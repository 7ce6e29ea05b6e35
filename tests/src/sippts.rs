//! sippts, SIPVicious' maintained successor (upstream 4.1.2, GPL-3.0), as an attacker: a
//! separate program in its own virtual environment, which `cargo xtask setup` installs from
//! the source beside the repository. Never linked into sipguard.

use std::process::Command;

use crate::{netns::Netns, wait};

/// The virtual environment `cargo xtask setup` installs sippts into.
pub const ROOT: &str = "/opt/sipguard-tests/sippts";

/// `sippts ARGS` in `ns`, bounded by the patience this run measured (sippts ends by itself;
/// the bound only stops a hang). Its banner and colours go to the output, unread.
pub fn cmd(ns: &Netns, args: &[&str]) -> Command {
    let bin = std::path::Path::new(ROOT).join("bin/sippts");
    assert!(bin.exists(), "sippts is not installed at {ROOT}: run `cargo xtask setup`");
    let mut c = ns.exec("timeout");
    c.arg(wait::patience().as_secs().to_string()).arg(bin).args(args).arg("-nocolor");
    c
}
