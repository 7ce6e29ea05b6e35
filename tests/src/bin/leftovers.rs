//! `sipguard-leftovers`: what the test run that just ended left behind (namespaces, pin
//! directories, temporary files named after test processes that are gone, and the lab's pin
//! directory). Prints each, removes it, and exits 1 if there was any: `cargo xtask test`
//! runs it last, so a test that does not clean up after itself fails the run.

use std::{path::Path, process::ExitCode};

use sipguard_tests::stale;

fn main() -> ExitCode {
    let mut found = stale::leftovers();
    if Path::new(stale::LAB_PIN_DIR).exists() {
        found.push(("pin directory", stale::LAB_PIN_DIR.to_owned()));
    }
    if found.is_empty() {
        println!("nothing left behind");
        return ExitCode::SUCCESS;
    }
    for (what, name) in &found {
        println!("left behind: {what} {name}");
    }
    stale::sweep();
    if Path::new(stale::LAB_PIN_DIR).exists() {
        std::process::Command::new(sipguard_tests::sipguard_bin())
            .args(["--pin-dir", stale::LAB_PIN_DIR, "detach", "--quiet"])
            .status()
            .ok();
        std::fs::remove_dir_all(stale::LAB_PIN_DIR).ok();
    }
    ExitCode::FAILURE
}
