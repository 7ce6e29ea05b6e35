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

/// The package inside [`ROOT`].
fn package() -> std::path::PathBuf {
    let lib = std::path::Path::new(ROOT).join("lib");
    std::fs::read_dir(&lib)
        .expect("reading the virtual environment's lib")
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/sippts"))
        .find(|p| p.is_dir())
        .expect("sippts in the virtual environment")
}

/// A copy of sippts under `dir` that looks like a phone beyond its `-ua`: the two tells the
/// catalog knows that `-ua` leaves (its Allow list, `;expires=120` on every Contact) are
/// rewritten to what a Yealink sends. Run it with [`disguised_cmd`].
pub fn disguise(dir: &std::path::Path) {
    let copy = dir.join("sippts");
    crate::netns::run_ok(Command::new("cp").arg("-r").arg(package()).arg(&copy));
    let functions = copy.join("lib/functions.py");
    let text = std::fs::read_to_string(&functions).expect("reading sippts' functions.py");
    let rewritten = text
        .replace(
            "INVITE, REGISTER, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, INFO, SUBSCRIBE, UPDATE, PRACK, MESSAGE",
            "INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE",
        )
        // The expiry still fills its place in the format's arguments, as nothing.
        .replace(">;expires=%s", ">%.0s");
    assert_ne!(text, rewritten, "sippts' message builder changed: update the disguise");
    std::fs::write(&functions, rewritten).expect("writing the disguise");
}

/// The copy [`disguise`] made under `dir`, run as [`cmd`] runs the installed one.
pub fn disguised_cmd(ns: &Netns, dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = cmd(ns, args);
    c.env("PYTHONPATH", dir);
    c
}
