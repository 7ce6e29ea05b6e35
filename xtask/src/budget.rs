//! The verifier budget every kernel the test run uses must hold: each program at most a fifth
//! of the verifier's limit, and (on the host) all of them loaded within two seconds, which is
//! `run`'s start and every reload. Builds of one kernel version were measured to differ
//! almost threefold for the same object, so a program at half the limit is one kernel update
//! from not loading at all. What `sipguard check --json` reports is judged here, for the host
//! and for each guest of `vm-test`.

use anyhow::bail;
use serde_json::Value;

/// Processed instructions allowed per program: a fifth of the verifier's million.
pub(crate) const MAX_INSTRUCTIONS: u64 = 200_000;
/// Seconds loading every program may take on the host (map creation included).
pub(crate) const MAX_LOAD_SECONDS: f64 = 2.0;

/// One program's figures on one kernel.
pub(crate) struct Figure {
    pub program: String,
    pub instructions: Option<u64>,
    pub seconds: f64,
}

/// The programs of a `sipguard check --json` report.
pub(crate) fn figures(check: &Value) -> Vec<Figure> {
    check["programs"]
        .as_array()
        .map(|programs| {
            programs
                .iter()
                .map(|p| Figure {
                    program: p["name"].as_str().unwrap_or("?").to_owned(),
                    instructions: p["verified_instructions"].as_u64(),
                    seconds: p["seconds"].as_f64().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What breaks the budget in `check` (the load time only where `timed`: a guest under
/// software emulation is not the host this budget is for). Empty when it holds.
pub(crate) fn breaches(check: &Value, timed: bool) -> Vec<String> {
    let mut out = Vec::new();
    if check["ok"] != true {
        out.push(format!(
            "the programs did not load: {}",
            check["error"].as_str().unwrap_or("no reason given")
        ));
        return out;
    }
    let figures = figures(check);
    if figures.is_empty() {
        out.push("the report names no program".to_owned());
    }
    for f in &figures {
        match f.instructions {
            Some(n) if n > MAX_INSTRUCTIONS => out.push(format!(
                "{} took {n} instructions to verify, over the budget of {MAX_INSTRUCTIONS}",
                f.program
            )),
            Some(_) => {}
            None => out.push(format!("the kernel did not report {}'s count", f.program)),
        }
    }
    if timed
        && let Some(s) = check["load_seconds"].as_f64()
        && s >= MAX_LOAD_SECONDS
    {
        out.push(format!("loading took {s:.2} s, over the budget of {MAX_LOAD_SECONDS} s"));
    }
    out
}

/// Prints the figures of one kernel as table rows.
pub(crate) fn print(kernel: &str, check: &Value) {
    for f in figures(check) {
        println!(
            "  {:<28} {:<20} {:>9} {:>6.1}%  {:>6.2} s",
            kernel,
            f.program,
            f.instructions.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            f.instructions.map_or(0.0, |n| f64::from(u32::try_from(n).unwrap_or(u32::MAX)) / 1e4),
            f.seconds
        );
    }
    if let Some(s) = check["load_seconds"].as_f64() {
        println!("  {kernel:<28} {:<20} {:>9} {:>7}  {s:>6.2} s", "(all, maps included)", "", "");
    }
}

/// The host's own check: runs `sipguard check --json` and fails on a breach.
pub(crate) fn host(sipguard: &std::path::Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(sipguard).args(["check", "--json"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(check) = text.lines().rev().find_map(|l| serde_json::from_str::<Value>(l).ok()) else {
        bail!(
            "`sipguard check --json` printed no report: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    };
    let kernel = check["kernel"].as_str().unwrap_or("this kernel").to_owned();
    print(&kernel, &check);
    let broken = breaches(&check, true);
    if !broken.is_empty() {
        bail!("the verifier budget is broken on {kernel}: {}", broken.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn report(counts: &[(&str, u64)], seconds: f64) -> Value {
        json!({
            "ok": true,
            "load_seconds": seconds,
            "programs": counts.iter().map(|(n, c)| json!({"name": n, "verified_instructions": c, "seconds": 0.1})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn the_budget_holds_at_its_bounds_and_breaks_above_them() {
        assert!(breaches(&report(&[("a", 200_000), ("b", 10)], 1.99), true).is_empty());
        let over = breaches(&report(&[("a", 200_001)], 0.5), true);
        assert_eq!(over.len(), 1);
        assert!(over[0].contains("a took 200001"), "{over:?}");
        assert_eq!(breaches(&report(&[("a", 1)], 2.0), true).len(), 1);
        assert!(breaches(&report(&[("a", 1)], 9.0), false).is_empty());
        assert_eq!(breaches(&json!({"ok": false, "error": "refused"}), true).len(), 1);
        assert_eq!(breaches(&json!({"ok": true, "programs": []}), true).len(), 1);
    }
}
