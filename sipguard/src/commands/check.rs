use std::fmt::Write as _;

use anyhow::bail;
use sipguard::{
    kernel::{pin::PinLayout, probe},
    report::status::{self, Check},
};

use super::{out, out_json};

pub(super) fn check(layout: &PinLayout, json: bool) -> anyhow::Result<()> {
    let report = status::check(layout)?;
    if json {
        out_json(&serde_json::to_value(&report)?)?;
    } else {
        out(&text(&report))?;
    }
    if !report.ok {
        if let Some(e) = &report.error {
            // The text above said why already.
            if json {
                bail!("this kernel cannot run sipguard: {e}");
            }
            bail!("this kernel cannot run sipguard");
        }
        probe::require()?;
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
    match (r.loaded, r.load_seconds, &r.error) {
        (true, Some(t), _) => {
            writeln!(
                text,
                "programs    loaded in {t:.2} s; instructions the verifier processed (limit {} each):",
                r.verifier_limit
            )
            .ok();
            for p in &r.programs {
                match p.verified_instructions {
                    Some(n) => writeln!(
                        text,
                        "  {:<22} {n:>7}  {:>4.1}%  {:.2} s",
                        p.name,
                        f64::from(n) * 100.0 / f64::from(r.verifier_limit),
                        p.seconds
                    ),
                    None => writeln!(text, "  {:<22} (not reported by this kernel)", p.name),
                }
                .ok();
            }
        }
        (true, None, _) => {
            writeln!(text, "programs    loaded").ok();
        }
        (false, _, Some(e)) => {
            writeln!(text, "programs    refused: {e}").ok();
        }
        (false, _, None) => {
            writeln!(text, "programs    not tried: features are missing").ok();
        }
    }
    text
}
