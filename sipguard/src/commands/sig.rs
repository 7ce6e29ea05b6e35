use std::fmt::Write as _;

use anyhow::Context as _;
use serde_json::json;
use sipguard_common::inspect::Kind;

use super::{out, out_json};
use crate::cli::{SigAddArgs, SigCommand};
use sipguard::{
    kernel::{
        maps::PinnedMaps,
        pin::PinLayout,
        privileges::{self, Need},
    },
    signatures::{self, Signature, parse_scope, reference},
    state::sigset,
};

pub(super) fn sig_command(layout: &PinLayout, cmd: SigCommand) -> anyhow::Result<()> {
    match cmd {
        SigCommand::Catalog => return Ok(out(signatures::CATALOG)?),
        SigCommand::Test { file, json } => return test(layout, &file, json),
        _ => {}
    }
    privileges::require(Need::Maps)?;
    let maps = PinnedMaps::open(layout)?;
    match cmd {
        SigCommand::List(args) => list(&maps, args.json),
        SigCommand::Add(args) => {
            let sig = from_args(&maps, &args)?;
            let name = sig.name.clone();
            let change = sigset::add(&maps, vec![sig])?;
            log::info!("added signature {name} ({} automaton states)", change.states);
            Ok(())
        }
        SigCommand::Del { names } => {
            let change = sigset::remove(&maps, &names)?;
            log::info!(
                "removed {} signature(s) ({} automaton states)",
                change.removed.len(),
                change.states
            );
            Ok(())
        }
        SigCommand::Load { file, replace } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let sigs =
                signatures::parse_file(&text).with_context(|| format!("{}", file.display()))?;
            let change =
                if replace { sigset::replace(&maps, sigs)? } else { sigset::add(&maps, sigs)? };
            log::info!(
                "signatures: {} added, {} changed, {} removed ({} automaton states)",
                change.added.len(),
                change.changed.len(),
                change.removed.len(),
                change.states
            );
            Ok(())
        }
        SigCommand::Catalog | SigCommand::Test { .. } => unreachable!("handled above"),
    }
}

fn from_args(maps: &PinnedMaps, a: &SigAddArgs) -> anyhow::Result<Signature> {
    let scope = parse_scope(&a.scope)?;
    let (kind, value) = match (&a.contains, &a.prefix, &a.equals) {
        (Some(v), None, None) => (Kind::Contains, v),
        (None, Some(v), None) => (Kind::Prefix, v),
        (None, None, Some(v)) => (Kind::Equals, v),
        _ => anyhow::bail!("give exactly one of --contains, --prefix, --equals"),
    };
    let name = if let Some(n) = &a.name {
        n.clone()
    } else {
        let taken: Vec<String> =
            sigset::installed(maps)?.into_iter().map(|(_, s)| s.name).collect();
        signatures::derived_name(scope, kind, value, &taken)
    };
    Signature::new(&name, scope, kind, value, a.weight)
}

fn list(maps: &PinnedMaps, json: bool) -> anyhow::Result<()> {
    let hits = maps.sig_hits()?;
    let sigs = sigset::installed(maps)?;
    if json {
        for (slot, s) in &sigs {
            out_json(&json!({
                "type": "signature",
                "name": s.name,
                "scope": s.scope.name(),
                "kind": s.kind.name(),
                "value": s.value,
                "weight": s.weight,
                "hits": hits[usize::from(*slot)],
            }))?;
        }
        return Ok(out_json(&json!({"type": "summary", "signatures": sigs.len()}))?);
    }
    let mut text = format!(
        "{:<34} {:<11} {:<8} {:>6} {:>10}  VALUE\n",
        "NAME", "SCOPE", "KIND", "WEIGHT", "HITS"
    );
    for (slot, s) in &sigs {
        writeln!(
            text,
            "{:<34} {:<11} {:<8} {:>6} {:>10}  {}",
            s.name,
            s.scope.name(),
            s.kind.name(),
            s.weight,
            hits[usize::from(*slot)],
            s.value
        )
        .ok();
    }
    Ok(out(&text)?)
}

fn test(layout: &PinLayout, file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let message = reference::crlf(&text);
    let (sigs, source) = if layout.has_maps() {
        privileges::require(Need::Maps)?;
        let maps = PinnedMaps::open(layout)?;
        (sigset::installed(&maps)?.into_iter().map(|(_, s)| s).collect::<Vec<_>>(), "installed")
    } else {
        (signatures::catalog(), "built-in catalog")
    };
    let verdict = reference::judge(&message, &sigs);
    let matched: Vec<&Signature> = verdict.matched.iter().map(|i| &sigs[*i]).collect();
    if json {
        return Ok(out_json(&json!({
            "type": "verdict",
            "signatures": source,
            "sip": reference::parse_message(&message).is_some(),
            "score": verdict.score,
            "dropped": verdict.dropped,
            "matched": matched.iter().map(|s| &s.name).collect::<Vec<_>>(),
        }))?);
    }
    let mut out_text = String::new();
    if reference::parse_message(&message).is_none() {
        out_text.push_str("not a SIP message: it would not be inspected\n");
    }
    for s in &matched {
        writeln!(out_text, "matches {s}").ok();
    }
    writeln!(
        out_text,
        "score {} against the {source} signatures: {}",
        verdict.score,
        if verdict.dropped { "dropped" } else { "passed" }
    )
    .ok();
    Ok(out(&out_text)?)
}
