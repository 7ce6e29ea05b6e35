//! `cargo xtask modules`: the import graph between each crate's top-level modules, read from
//! the source (`crate::` paths in `use` trees and expressions), checked for circles and
//! listed in layers: a module only imports modules of lower layers. `cargo xtask test` runs
//! the check, so a circle cannot creep back in unnoticed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use crate::cmd::workspace_root;

/// The crates, their source roots, and the name their binary's modules use for the library
/// beside them (`sipguard::state::lists` from `commands` is an import of `lists`).
const CRATES: [(&str, &str, &str); 5] = [
    ("sipguard-common", "sipguard-common/src", "sipguard_common"),
    ("sipguard-ebpf", "sipguard-ebpf/src", "sipguard_ebpf"),
    ("sipguard", "sipguard/src", "sipguard"),
    ("sipguard-tests", "tests/src", "sipguard_tests"),
    ("xtask", "xtask/src", "xtask"),
];

/// Module name -> the modules it imports, for one crate. Root files (`main.rs`, `lib.rs`)
/// and `bin/` are the crate's top and left out: everything may be imported from there. A
/// module inside a group is named `group::module`.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// A folder is a group, not a module, when its `mod.rs` only declares modules: the folder
/// then shows a layer of the crate, and its modules are the graph's nodes.
fn is_group(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("mod.rs")) else { return false };
    let mut declares = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("//") || line.starts_with("#[") {
            continue;
        }
        let decl = line.strip_prefix("pub ").or_else(|| line.strip_prefix("pub(crate) "));
        if decl.unwrap_or(line).starts_with("mod ") && line.ends_with(';') {
            declares = true;
        } else {
            return false;
        }
    }
    declares
}

/// Each module's files, as `(module, file)` pairs.
type ModuleFiles = Vec<(String, PathBuf)>;

/// The crate's modules and the files of each; the groups' names.
fn modules(src: &Path) -> anyhow::Result<(ModuleFiles, BTreeSet<String>)> {
    let mut files = Vec::new();
    let mut groups = BTreeSet::new();
    let stem = |p: &Path| p.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
    for entry in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let name = stem(&path);
        if path.is_dir() {
            if name == "bin" {
                continue;
            }
            if is_group(&path) {
                groups.insert(name.clone());
                for inner in std::fs::read_dir(&path)? {
                    let inner = inner?.path();
                    let module = format!("{name}::{}", stem(&inner));
                    if inner.is_dir() {
                        files.extend(walk(&inner)?.into_iter().map(|f| (module.clone(), f)));
                    } else if inner.extension().is_some_and(|e| e == "rs") && stem(&inner) != "mod"
                    {
                        files.push((module, inner));
                    }
                }
            } else {
                files.extend(walk(&path)?.into_iter().map(|f| (name.clone(), f)));
            }
        } else if path.extension().is_some_and(|e| e == "rs") && !["main", "lib"].contains(&&*name)
        {
            files.push((name, path));
        }
    }
    Ok((files, groups))
}

fn graph(src: &Path, library: &str) -> anyhow::Result<(Graph, BTreeSet<String>)> {
    let (files, groups) = modules(src)?;
    let mut g: Graph = files.iter().map(|(m, _)| (m.clone(), BTreeSet::new())).collect();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file)?;
        for path in crate_paths(&text, "crate").into_iter().chain(crate_paths(&text, library)) {
            let used = match &path[..] {
                [group, inner, ..] if groups.contains(group) => format!("{group}::{inner}"),
                [first, ..] => first.clone(),
                [] => continue,
            };
            if used != *module && g.contains_key(&used) {
                g.get_mut(module).expect("known module").insert(used);
            }
        }
    }
    Ok((g, groups))
}

/// The graph of the groups (and the modules outside any): an import between two modules
/// is one between their groups.
fn group_graph(g: &Graph) -> Graph {
    let group = |m: &str| m.split_once("::").map_or(m, |(g, _)| g).to_owned();
    let mut out = Graph::new();
    for (m, deps) in g {
        let from = group(m);
        let entry = out.entry(from.clone()).or_default();
        entry.extend(deps.iter().map(|d| group(d)).filter(|d| *d != from));
    }
    out
}

fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
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

/// The first two segments of every path after `ROOT::` in `text` (comments skipped), use
/// trees (`ROOT::{a, b::{c, d}}`) expanded.
fn crate_paths(text: &str, root: &str) -> Vec<Vec<String>> {
    let prefix = format!("{root}::");
    let code: String = text
        .lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    for (at, _) in code.match_indices(&prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `sipguard_ebpf::crate`-like suffixes, `$crate::`
        }
        use_tree(&code[at + prefix.len()..], &mut Vec::new(), &mut out);
    }
    out
}

/// Reads one use tree (or an expression's path) from the start of `s` into `out`, at most
/// two segments deep; returns what follows it.
fn use_tree<'a>(s: &'a str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) -> &'a str {
    let s = s.trim_start();
    if let Some(mut rest) = s.strip_prefix('{') {
        loop {
            rest = use_tree(rest, prefix, out).trim_start();
            rest = skip_to_item_end(rest);
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else {
                return rest.strip_prefix('}').unwrap_or(rest);
            }
            if let Some(r) = rest.trim_start().strip_prefix('}') {
                return r;
            }
        }
    }
    let name: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if name.is_empty() || name == "self" {
        if !prefix.is_empty() {
            out.push(prefix.clone());
        }
        return s;
    }
    let rest = &s[name.len()..];
    prefix.push(name);
    let rest = match rest.trim_start().strip_prefix("::") {
        Some(deeper) if prefix.len() < 2 => use_tree(deeper, prefix, out),
        _ => {
            out.push(prefix.clone());
            rest
        }
    };
    prefix.pop();
    rest
}

/// Inside braces: skips the rest of an item (`::Deeper::Path as _`) up to its `,` or `}`.
fn skip_to_item_end(s: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 0 => return &s[i..],
            '}' => depth -= 1,
            ';' => return &s[i..],
            _ => {}
        }
    }
    ""
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

/// Writes `g` in layers, top first.
fn listing(text: &mut String, g: &Graph, indent: &str) {
    let levels = layers(g);
    let top = levels.values().copied().max().unwrap_or(0);
    for level in (0..=top).rev() {
        let here: Vec<String> = levels
            .iter()
            .filter(|(_, l)| **l == level)
            .map(|(m, _)| {
                let deps: Vec<&str> = g[m].iter().map(String::as_str).collect();
                if deps.is_empty() { m.clone() } else { format!("{m} -> {}", deps.join(", ")) }
            })
            .collect();
        writeln!(text, "{indent}{level}: {}", here.join("; ")).ok();
    }
}

/// The listing, crate by crate, top layer first: a crate with groups is listed by group,
/// then module by module. Fails on a circle between modules or between groups.
pub(crate) fn run() -> anyhow::Result<()> {
    let root = workspace_root();
    let mut text = String::new();
    let mut found = Vec::new();
    for (name, src, library) in CRATES {
        let (g, groups) = graph(&root.join(src), library)?;
        writeln!(text, "{name}").ok();
        if !groups.is_empty() {
            let by_group = group_graph(&g);
            writeln!(text, "  groups ({}):", groups.iter().cloned().collect::<Vec<_>>().join(", "))
                .ok();
            listing(&mut text, &by_group, "    ");
            writeln!(text, "  modules:").ok();
            for c in circles(&by_group) {
                found.push(format!("{name} (groups): {}", c.join(" <-> ")));
            }
        }
        listing(&mut text, &g, if groups.is_empty() { "  " } else { "    " });
        for c in circles(&g) {
            found.push(format!("{name}: {}", c.join(" <-> ")));
        }
    }
    print!("{text}");
    if !found.is_empty() {
        bail!("import circles: {}", found.join("; "));
    }
    println!("no import circles: every module (and group) imports only ones of lower layers");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firsts(paths: Vec<Vec<String>>) -> Vec<String> {
        paths.into_iter().map(|p| p.join("::")).collect()
    }

    #[test]
    fn use_trees_and_paths_are_read() {
        let text = "use crate::{\n    cidr::Cidr,\n    maps::{self, A},\n};\n// crate::gone\nfn f() { crate::lists::add(); }";
        assert_eq!(
            firsts(crate_paths(text, "crate")),
            ["cidr::Cidr", "maps", "maps::A", "lists::add"]
        );
        assert_eq!(
            firsts(crate_paths("use sipguard::{named::Named as _, x};", "sipguard")),
            ["named::Named", "x"]
        );
        let nested = "use crate::{kernel::{maps::{PinnedMaps, X}, sys}, state::lists as l, *};";
        assert_eq!(
            firsts(crate_paths(nested, "crate")),
            ["kernel::maps", "kernel::sys", "state::lists"]
        );
    }

    #[test]
    fn a_group_folder_declares_modules_only() {
        let dir = std::env::temp_dir().join(format!("sg-modules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("mod.rs"), "//! A layer.\n\npub mod a;\n#[cfg(test)]\nmod b;\n")
            .unwrap();
        assert!(is_group(&dir));
        std::fs::write(dir.join("mod.rs"), "pub mod a;\npub fn f() {}\n").unwrap();
        assert!(!is_group(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn groups_are_joined_from_their_modules() {
        let mut g = Graph::new();
        g.insert("state::lists".into(), ["kernel::maps".to_owned(), "cidr".into()].into());
        g.insert("kernel::maps".into(), ["kernel::pin".to_owned()].into());
        g.insert("kernel::pin".into(), BTreeSet::new());
        g.insert("cidr".into(), BTreeSet::new());
        let by_group = group_graph(&g);
        assert_eq!(by_group["state"], ["cidr".to_owned(), "kernel".into()].into());
        assert!(by_group["kernel"].is_empty());
        assert_eq!(layers(&by_group)["state"], 1);
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
