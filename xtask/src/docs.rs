//! `cargo xtask docs`: the references that are generated, not written, so they cannot drift.
//! `docs/cli.md` comes from the clap definitions (`sipguard generate markdown`), `docs/maps.md`
//! from the one map schema (`sipguard_common::maps::SCHEMA`). `--check` (run by
//! `cargo xtask test`) fails when a committed file differs from what would be generated.

use std::fmt::Write as _;

use anyhow::{Context as _, bail};
use sipguard_common::maps::{BPF_F_NO_PREALLOC, MapKind, SCHEMA};

use crate::cmd::{self, workspace_root};

/// Builds sipguard, generates each reference, and writes it (or, with `check`, compares it).
pub(crate) fn run(check: bool) -> anyhow::Result<()> {
    let root = workspace_root();
    cmd::cargo(&["build", "--package", "sipguard", "--bin", "sipguard"])?;
    let scratch = root.join("target/docs");
    cmd::run(
        std::process::Command::new(root.join("target/debug/sipguard"))
            .args(["generate", "markdown"])
            .arg(&scratch),
    )?;
    let cli = std::fs::read_to_string(scratch.join("cli.md")).context("reading the reference")?;
    let mut stale = Vec::new();
    for (name, text) in [("docs/cli.md", cli), ("docs/maps.md", maps())] {
        let path = root.join(name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(name);
            }
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {name}");
        }
    }
    if !stale.is_empty() {
        bail!("{} differ from what the code generates: run `cargo xtask docs`", stale.join(", "));
    }
    if check {
        println!("generated references are current: docs/cli.md, docs/maps.md");
    }
    Ok(())
}

fn kind(k: MapKind) -> &'static str {
    match k {
        MapKind::Hash => "hash",
        MapKind::Array => "array",
        MapKind::PerCpuArray => "per-CPU array",
        MapKind::LruHash => "LRU hash",
        MapKind::LpmTrie => "LPM trie",
        MapKind::RingBuf => "ring buffer",
    }
}

fn flags(f: u32) -> String {
    let mut out = Vec::new();
    if f & BPF_F_NO_PREALLOC != 0 {
        out.push("no prealloc");
    }
    if f & sipguard_common::lists::BPF_F_MMAPABLE != 0 {
        out.push("mmapable");
    }
    out.join(", ")
}

/// The map reference, from the schema.
fn maps() -> String {
    let mut md = String::from(
        "# sipguard's maps\n\n\
         Generated from `sipguard_common::maps::SCHEMA` by `cargo xtask docs` (do not edit). The\n\
         schema is the one declaration of every pinned map: a host test checks the XDP program's\n\
         declarations in the built object against it, and userspace checks pinned maps against\n\
         it before loading over them. All are pinned under `<pin root>/maps/`. Entries are the\n\
         program's defaults; lists and destinations are sized at first attach.\n\n\
         | map | type | key bytes | value bytes | entries | flags | holds |\n\
         | --- | --- | ---: | ---: | ---: | --- | --- |\n",
    );
    for m in &SCHEMA {
        writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            m.name,
            kind(m.kind),
            m.key_size,
            m.value_size,
            m.max_entries,
            flags(m.flags),
            m.about.replace('|', "\\|")
        )
        .ok();
    }
    md.push_str(
        "\nMore maps are private to each load (not in the schema, never opened by userspace):\n\
         `SG_STAGES`, the XDP program's jump table (pinned per interface under `stages/` while\n\
         a link runs its program); and per-CPU working memory: `SG_HANDOFF` (what one stage of\n\
         the XDP program hands the next), `SG_SCRATCH` (the payload window, the per-message\n\
         match bitmap, the line walker's state), `SG_USERS_SEEN` (the users each recent\n\
         source's state holds), and the response program's `SG_ANS_HANDOFF` and `SG_ANSWER`.\n",
    );
    md
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_map_has_a_row() {
        let md = super::maps();
        for m in &super::SCHEMA {
            assert!(md.contains(&format!("| `{}` |", m.name)), "{}", m.name);
        }
    }
}
