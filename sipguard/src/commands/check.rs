use std::fmt::Write as _;

use anyhow::Context as _;
use serde_json::json;

use super::{out, out_json};
use sipguard::{
    kernel,
    pin::PinLayout,
    privileges::{self, Need},
    program,
};

/// The verifier's limit on processed instructions (`BPF_COMPLEXITY_LIMIT_INSNS`).
const VERIFIER_LIMIT: u32 = 1_000_000;

pub(super) fn check(layout: &PinLayout, json: bool) -> anyhow::Result<()> {
    privileges::require(Need::Attach)?;
    let features = kernel::probe();
    let missing: Vec<&str> = features.iter().filter(|f| !f.available).map(|f| f.name).collect();
    // The program is loaded once over scratch maps next to the real pin root, then removed:
    // a running filter is not touched.
    let scratch =
        PinLayout::new(format!("{}-check-{}", layout.root().display(), std::process::id()));
    let loaded = if missing.is_empty() {
        let start = std::time::Instant::now();
        let result = program::load(&scratch, program::Capacities::default())
            .map(|mut l| (l.verified_instructions(), start.elapsed()));
        let _ = scratch.remove_all();
        Some(result)
    } else {
        None
    };
    let (verified, took, error) = match &loaded {
        Some(Ok((v, t))) => (*v, Some(t.as_secs_f64()), None),
        Some(Err(e)) => (None, None, Some(format!("{e:#}"))),
        None => (None, None, None),
    };
    let ok = missing.is_empty() && error.is_none();
    if json {
        out_json(&json!({
            "type": "check",
            "kernel": kernel::release(),
            "minimum": kernel::MINIMUM,
            "features": features,
            "btf": kernel::has_btf(),
            "loaded": matches!(loaded, Some(Ok(_))),
            "verified_instructions": verified,
            "verifier_limit": VERIFIER_LIMIT,
            "load_seconds": took,
            "error": error,
            "ok": ok,
        }))?;
    } else {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "kernel      {} (sipguard needs {} or newer)",
            kernel::release(),
            kernel::MINIMUM
        );
        for f in &features {
            let _ = writeln!(
                text,
                "  {:<22} {:<3}  Linux {}, for {}",
                f.name,
                if f.available { "yes" } else { "NO" },
                f.since,
                f.used_for
            );
        }
        let _ = writeln!(
            text,
            "  {:<22} {:<3}  not needed",
            "BTF",
            if kernel::has_btf() { "yes" } else { "no" }
        );
        match (&loaded, verified, took) {
            (Some(Ok(_)), Some(v), Some(t)) => {
                let _ = writeln!(
                    text,
                    "program     loaded: the verifier processed {v} instructions (limit {VERIFIER_LIMIT}) in {t:.2} s"
                );
            }
            (Some(Ok(_)), _, _) => {
                let _ = writeln!(
                    text,
                    "program     loaded (this kernel does not report the verifier's count)"
                );
            }
            (Some(Err(e)), _, _) => {
                let _ = writeln!(text, "program     refused: {e:#}");
            }
            (None, _, _) => {
                let _ = writeln!(text, "program     not tried: features are missing");
            }
        }
        out(&text)?;
    }
    if !ok {
        if let Some(Err(e)) = loaded {
            return Err(e).context("this kernel cannot run sipguard");
        }
        kernel::require()?;
    }
    Ok(())
}
