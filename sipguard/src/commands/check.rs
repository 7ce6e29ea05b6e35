use std::fmt::Write as _;

use anyhow::bail;
use sipguard::{
    kernel,
    pin::PinLayout,
    report::{self, Check},
};

use super::{out, out_json};

pub(super) fn check(layout: &PinLayout, json: bool) -> anyhow::Result<()> {
    let report = report::check(layout)?;
    if json {
        out_json(&serde_json::to_value(&report)?)?;
    } else {
        out(&text(&report))?;
    }
    if !report.ok {
        if let Some(e) = &report.error {
            bail!("this kernel cannot run sipguard: {e}");
        }
        kernel::require()?;
    }
    Ok(())
}

fn text(r: &Check) -> String {
    let mut text = String::new();
    writeln!(text, "kernel      {} (sipguard needs {} or newer)", r.kernel, r.minimum).ok();
    for f in &r.features {
        writeln!(
            text,
            "  {:<22} {:<3}  Linux {}, for {}",
            f.name,
            if f.available { "yes" } else { "NO" },
            f.since,
            f.used_for
        )
        .ok();
    }
    writeln!(text, "  {:<22} {:<3}  not needed", "BTF", if r.btf { "yes" } else { "no" }).ok();
    match (r.loaded, r.verified_instructions, r.load_seconds, &r.error) {
        (true, Some(v), Some(t), _) => {
            writeln!(
                text,
                "program     loaded: the verifier processed {v} instructions (limit {}) in {t:.2} s",
                r.verifier_limit
            ).ok();
            if let Some(n) = r.responses_verified_instructions {
                writeln!(text, "responses   loaded: the verifier processed {n} instructions").ok();
            }
        }
        (true, ..) => {
            writeln!(text, "program     loaded (this kernel does not report the verifier's count)")
                .ok();
        }
        (false, _, _, Some(e)) => {
            writeln!(text, "program     refused: {e}").ok();
        }
        (false, _, _, None) => {
            writeln!(text, "program     not tried: features are missing").ok();
        }
    }
    text
}
