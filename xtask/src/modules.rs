//! `cargo xtask modules`: the import graph between each crate's top-level modules, read from
//! the source (`crate::` paths in `use` trees and expressions), checked for circles and
//! listed in layers: a module only imports modules of lower layers. `cargo xtask test` runs
//! the check, so a circle cannot creep back in unnoticed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
};

use anyhow::{Context as _, bail};

use crate::cmd::workspace_root;

/// The crates, their source roots, and the name their binary's modules use for the library
/// beside them (`sipguard::lists` from `commands` is an import of `lists`).
const CRATES: [(&str, &str, &str); 5] = [
    ("sipguard-common", "sipguard-common/src", "sipguard_common"),
    ("sipguard-ebpf", "sipguard-ebpf/src", "sipguard_ebpf"),
    ("sipguard", "sipguard/src", "sipguard"),
    ("sipguard-tests", "tests/src", "sipguard_tests"),
    ("xtask", "xtask/src", "xtask"),
];

/// Module name -> the modules it imports, for one crate. Root files (`main.rs`, `lib.rs`)
/// and `bin/` are the crate's top and left out: everything may be imported from there.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph(src: &Path, library: &str) -> anyhow::Result<Graph> {
    let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() {
            if name == "bin" {
                continue;
            }
            for f in walk(&path)? {
                files.push((name.clone(), f));
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !["main", "lib"].contains(&&*name)
        {
            files.push((name, path));
        }
    }
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut g: Graph = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file)?;
        for used in crate_paths(&text, "crate").into_iter().chain(crate_paths(&text, library)) {
            if used != *module && modules.contains(&used) {
                g.get_mut(module).expect("known module").insert(used);
            }
        }
    }
    Ok(g)
}

fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(out)
}

/// The first segment after every `ROOT::` in `text` (comments skipped), expanding one level
/// of `ROOT::{a, b::c}`.
fn crate_paths(text: &str, root: &str) -> Vec<String> {
    let prefix = format!("{root}::");
    let code: String = text
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    let mut out = Vec::new();
    for (at, _) in code.match_indices(&prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `sipguard_ebpf::crate`-like suffixes, `$crate::`
        }
        let rest = code[at + prefix.len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// Strongly connected components of more than one module: the circles.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    // Two modules are on a circle when each reaches the other.
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            for n in &g[&m] {
                if seen.insert(n.clone()) {
                    stack.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in g.keys() {
        if done.contains(m) || !reaches[m].contains(m) {
            continue;
        }
        let circle: Vec<String> = g
            .keys()
            .filter(|n| reaches[m].contains(*n) && reaches[*n].contains(m))
            .cloned()
            .collect();
        done.extend(circle.iter().cloned());
        out.push(circle);
    }
    out
}

/// Layer of each module: 0 for one that imports none, else one above its highest import.
fn layers(g: &Graph) -> BTreeMap<String, usize> {
    fn layer(m: &str, g: &Graph, memo: &mut BTreeMap<String, usize>) -> usize {
        if let Some(l) = memo.get(m) {
            return *l;
        }
        memo.insert(m.to_owned(), 0); // a circle stops here; `circles` reports it
        let l = g[m].iter().map(|n| layer(n, g, memo) + 1).max().unwrap_or(0);
        memo.insert(m.to_owned(), l);
        l
    }
    let mut memo = BTreeMap::new();
    for m in g.keys() {
        layer(m, g, &mut memo);
    }
    memo
}

/// The listing, crate by crate, top layer first; fails on a circle.
pub(crate) fn run() -> anyhow::Result<()> {
    let root = workspace_root();
    let mut text = String::new();
    let mut found = Vec::new();
    for (name, src, library) in CRATES {
        let g = graph(&root.join(src), library)?;
        let levels = layers(&g);
        let top = levels.values().copied().max().unwrap_or(0);
        writeln!(text, "{name}").ok();
        for level in (0..=top).rev() {
            let here: Vec<String> = levels
                .iter()
                .filter(|(_, l)| **l == level)
                .map(|(m, _)| {
                    let deps: Vec<&str> = g[m].iter().map(String::as_str).collect();
                    if deps.is_empty() { m.clone() } else { format!("{m} -> {}", deps.join(", ")) }
                })
                .collect();
            writeln!(text, "  {level}: {}", here.join("; ")).ok();
        }
        for c in circles(&g) {
            found.push(format!("{name}: {}", c.join(" <-> ")));
        }
    }
    print!("{text}");
    if !found.is_empty() {
        bail!("import circles: {}", found.join("; "));
    }
    println!("no import circles: every module imports only modules of lower layers");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn use_trees_and_paths_are_read() {
        let text = "use crate::{\n    cidr::Cidr,\n    maps::{self, A},\n};\n// crate::gone\nfn f() { crate::lists::add(); }";
        assert_eq!(crate_paths(text, "crate"), ["cidr", "maps", "lists"]);
        assert_eq!(
            crate_paths("use sipguard::{named::Named as _, x};", "sipguard"),
            ["named", "x"]
        );
    }

    #[test]
    fn a_circle_is_found_and_layers_follow_imports() {
        let mut g = Graph::new();
        g.insert("a".into(), ["b".to_owned()].into());
        g.insert("b".into(), ["c".to_owned()].into());
        g.insert("c".into(), BTreeSet::new());
        assert!(circles(&g).is_empty());
        assert_eq!(layers(&g)["a"], 2);
        g.get_mut("c").unwrap().insert("a".into());
        assert_eq!(circles(&g), [vec!["a".to_owned(), "b".into(), "c".into()]]);
    }
}
