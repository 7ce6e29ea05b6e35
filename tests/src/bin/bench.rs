//! `cargo xtask bench`: measures sipguard, prints tables and writes a JSON report.
//!
//! Usage: `sipguard-bench [--quick] [--out FILE] [--markdown FILE] [SUITE...]` with suites
//! `cost`, `e2e`, `scale`. `--markdown` writes the performance page (docs/performance.md):
//! the machine, the date, the command, what is measured, and every table of this run.

use std::{fmt::Write as _, process::ExitCode};

use serde_json::json;
use sipguard_tests::bench::{Options, baseline, cost, e2e, report, scale, testrun};

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
    let mut markdown = None;
    let mut suites = Vec::new();
    let mut baseline = None;
    let mut candidate = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => {
                out = Some(args.next().ok_or_else(|| anyhow::anyhow!("--out needs a file"))?);
            }
            "--markdown" => {
                markdown =
                    Some(args.next().ok_or_else(|| anyhow::anyhow!("--markdown needs a file"))?);
            }
            "--baseline" => {
                baseline = Some(std::path::PathBuf::from(
                    args.next().ok_or_else(|| anyhow::anyhow!("--baseline needs an object"))?,
                ));
            }
            "--candidate" => {
                candidate = Some(std::path::PathBuf::from(
                    args.next().ok_or_else(|| anyhow::anyhow!("--candidate needs an object"))?,
                ));
            }
            "baseline" => suites.push(a.clone()),
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
    let mut page = String::new();
    for suite in &suites {
        let tables = match suite.as_str() {
            "cost" => cost::run(&opts)?,
            "e2e" => e2e::run(&opts)?,
            "scale" => scale::run(&opts)?,
            "baseline" => baseline::run(
                &opts,
                baseline.as_deref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "the baseline suite needs --baseline OBJECT (another build's sipguard-xdp)"
                    )
                })?,
                candidate.as_deref(),
            )?,
            _ => unreachable!("checked above"),
        };
        write!(page, "\n## {suite}\n").ok();
        for t in &tables {
            t.print();
            write!(page, "\n{}", t.markdown()).ok();
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
    if let Some(path) = markdown {
        std::fs::write(&path, performance_page(&report, &suites, &page))?;
        println!("performance page written to {path}");
    }
    Ok(())
}

/// docs/performance.md: where and when the figures were measured, by what command, what
/// they mean, and the tables.
fn performance_page(report: &serde_json::Value, suites: &[String], tables: &str) -> String {
    let m = &report["machine"];
    let when = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let command = if suites.len() == SUITES.len() {
        "cargo xtask bench".to_owned()
    } else {
        format!("cargo xtask bench {}", suites.join(" "))
    };
    format!(
        "# Performance\n\n\
         Written by `{command}` (do not edit: run it again for the figures of your machine).\n\n\
         - measured: {when}\n\
         - machine: {cpu}, {cpus} CPUs, Linux {kernel}, release build\n\
         - rounds: {repeat} runs per `BPF_PROG_TEST_RUN` call, {rounds} calls per figure\n\n\
         {about}{tables}",
        cpu = m["cpu"].as_str().unwrap_or("unknown CPU"),
        cpus = m["cpus"],
        kernel = m["kernel"].as_str().unwrap_or("?"),
        repeat = report["repeat"],
        rounds = report["rounds"],
        about = include_str!("../bench/about.md"),
    )
}
