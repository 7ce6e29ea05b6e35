//! `cargo xtask bench`: measures sipguard, prints tables and writes a JSON report.
//!
//! Usage: `sipguard-bench [--quick] [--out FILE] [SUITE...]` with suites `cost`, `e2e`, `scale`.

use std::process::ExitCode;

use serde_json::json;
use sipguard_tests::bench::{Options, cost, e2e, report, scale, testrun};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipguard-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const SUITES: [&str; 3] = ["cost", "e2e", "scale"];

fn run() -> anyhow::Result<()> {
    let mut quick = false;
    let mut out = None;
    let mut suites = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => {
                out = Some(args.next().ok_or_else(|| anyhow::anyhow!("--out needs a file"))?);
            }
            s if SUITES.contains(&s) => suites.push(s.to_owned()),
            other => anyhow::bail!("unknown argument `{other}` (suites: {})", SUITES.join(", ")),
        }
    }
    if suites.is_empty() {
        suites = SUITES.iter().map(|s| (*s).to_owned()).collect();
    }
    sipguard_tests::require_root();
    let opts = Options::new(quick);
    let cpu = testrun::pin_to_one_cpu()?;
    println!(
        "sipguard-bench: pinned to CPU {cpu}; repeat {} x {} rounds (mean of the middle half)",
        opts.repeat, opts.rounds
    );
    let mut results = serde_json::Map::new();
    for suite in &suites {
        let tables = match suite.as_str() {
            "cost" => cost::run(&opts)?,
            "e2e" => e2e::run(&opts)?,
            "scale" => scale::run(&opts)?,
            _ => unreachable!("checked above"),
        };
        for t in &tables {
            t.print();
        }
        results.insert(
            suite.clone(),
            tables.iter().map(|t| json!({"title": t.title, "rows": t.json})).collect(),
        );
    }
    let report = json!({
        "machine": report::machine(),
        "quick": quick,
        "repeat": opts.repeat,
        "rounds": opts.rounds,
        "results": results,
    });
    if let Some(path) = out {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!("\nreport written to {path}");
    }
    Ok(())
}
