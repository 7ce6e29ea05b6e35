//! Scanner signatures: what they are, the catalog compiled into the binary, files of them,
//! their stored form, and the compiler to the kernel's automaton.

pub mod compile;
pub mod pattern;
pub mod reference;

use std::{collections::BTreeSet, fmt};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sipguard_common::inspect::{
    Kind, MAX_NAME_LEN, MAX_PATTERN_LEN, SCORE_THRESHOLD, Scope, SigRecord,
};

/// The reviewed catalog, compiled in and loaded at first attach.
pub const CATALOG: &str = include_str!("../../signatures/catalog.toml");

/// One signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub scope: Scope,
    pub kind: Kind,
    pub value: String,
    /// Contribution to a message's score; a message is dropped at [`SCORE_THRESHOLD`]. A
    /// signature below it is a weak tell that needs another one.
    pub weight: u8,
}

impl Signature {
    /// Checks everything the kernel and the compiler rely on.
    pub fn new(
        name: &str,
        scope: Scope,
        kind: Kind,
        value: &str,
        weight: u8,
    ) -> anyhow::Result<Self> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            bail!("signature name `{name}` must be 1 to {MAX_NAME_LEN} bytes long");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            bail!("signature name `{name}` may only contain letters, digits, `-`, `_` and `.`");
        }
        if value.len() > MAX_PATTERN_LEN {
            bail!(
                "signature `{name}`: the value is {} bytes long, at most {MAX_PATTERN_LEN}",
                value.len()
            );
        }
        if weight == 0 || u32::from(weight) > SCORE_THRESHOLD {
            bail!("signature `{name}`: weight must be 1 to {SCORE_THRESHOLD}");
        }
        pattern::parse(value).map_err(|e| anyhow::anyhow!("signature `{name}`: {e}"))?;
        Ok(Self { name: name.to_owned(), scope, kind, value: value.to_owned(), weight })
    }

    pub fn atoms(&self) -> anyhow::Result<Vec<pattern::Atom>> {
        pattern::parse(&self.value).map_err(|e| anyhow::anyhow!("signature `{}`: {e}", self.name))
    }

    #[must_use]
    pub fn record(&self) -> SigRecord {
        let mut r = SigRecord {
            used: 1,
            scope: self.scope as u8,
            kind: self.kind as u8,
            weight: self.weight,
            name_len: u8::try_from(self.name.len()).expect("validated"),
            value_len: u8::try_from(self.value.len()).expect("validated"),
            reserved: [0; 2],
            name: [0; MAX_NAME_LEN],
            value: [0; MAX_PATTERN_LEN],
        };
        r.name[..self.name.len()].copy_from_slice(self.name.as_bytes());
        r.value[..self.value.len()].copy_from_slice(self.value.as_bytes());
        r
    }

    pub fn from_record(r: &SigRecord) -> anyhow::Result<Option<Self>> {
        if r.used == 0 {
            return Ok(None);
        }
        let text = |b: &[u8], n: u8| String::from_utf8(b[..usize::from(n).min(b.len())].to_vec());
        let name = text(&r.name, r.name_len).context("a stored signature name is not UTF-8")?;
        let value = text(&r.value, r.value_len).context("a stored signature value is not UTF-8")?;
        let scope = Scope::from_u8(r.scope).context("a stored signature has an unknown scope")?;
        let kind = Kind::from_u8(r.kind).context("a stored signature has an unknown kind")?;
        Self::new(&name, scope, kind, &value, r.weight).map(Some)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} {} {:?}, weight {})",
            self.name,
            self.scope.name(),
            self.kind.name(),
            self.value,
            self.weight
        )
    }
}

pub fn parse_scope(s: &str) -> anyhow::Result<Scope> {
    let wanted = s.to_ascii_lowercase();
    let alias = match wanted.as_str() {
        "ua" | "server" | "useragent" => "user-agent",
        "ruri" | "uri" => "request-uri",
        "callid" => "call-id",
        other => other,
    };
    Scope::ALL.into_iter().find(|sc| sc.name() == alias).with_context(|| {
        let names: Vec<&str> = Scope::ALL.iter().map(|s| s.name()).collect();
        format!("unknown scope `{s}`: expected one of {}", names.join(", "))
    })
}

/// A signature in a file: exactly one of `contains`, `prefix`, `equals`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<String>,
    #[serde(default = "full_weight")]
    weight: u8,
    /// Where the tell comes from (documentation; not stored in the kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

fn full_weight() -> u8 {
    u8::try_from(SCORE_THRESHOLD).expect("threshold fits u8")
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    #[serde(default)]
    signature: Vec<FileEntry>,
}

/// Parses a signature file (TOML, `[[signature]]` tables). Names must be unique.
pub fn parse_file(text: &str) -> anyhow::Result<Vec<Signature>> {
    let file: SignatureFile = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::with_capacity(file.signature.len());
    let mut names = BTreeSet::new();
    for (i, e) in file.signature.into_iter().enumerate() {
        let which = format!("signature #{} (`{}`)", i + 1, e.name);
        let (kind, value) = match (e.contains, e.prefix, e.equals) {
            (Some(v), None, None) => (Kind::Contains, v),
            (None, Some(v), None) => (Kind::Prefix, v),
            (None, None, Some(v)) => (Kind::Equals, v),
            _ => bail!("{which}: give exactly one of `contains`, `prefix` or `equals`"),
        };
        let scope = parse_scope(&e.scope).with_context(|| which.clone())?;
        let sig = Signature::new(&e.name, scope, kind, &value, e.weight)
            .with_context(|| which.clone())?;
        if !names.insert(sig.name.clone()) {
            bail!("{which}: the name is used twice");
        }
        out.push(sig);
    }
    Ok(out)
}

/// The built-in catalog.
#[must_use]
pub fn catalog() -> Vec<Signature> {
    parse_file(CATALOG).expect("the built-in catalog is valid (tested)")
}

/// A name for a signature given without one: `scope-kind-value` with the value's letters
/// and digits, at most 40 characters, numbered on from 2 when `taken` has it already.
#[must_use]
pub fn derived_name(scope: Scope, kind: Kind, value: &str, taken: &[String]) -> String {
    let slug: String = value
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let mut base = format!("{}-{}-{slug}", scope.name(), kind.name());
    base.truncate(40);
    let base = base.trim_end_matches('-').to_owned();
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses_and_compiles() {
        let sigs = catalog();
        assert!(sigs.len() >= 20, "catalog has {} entries", sigs.len());
        let slots: Vec<(u16, Signature)> = (0..).zip(sigs).collect();
        let c = compile::compile(&slots).unwrap();
        assert!(c.states < sipguard_common::inspect::MAX_STATES);
    }

    #[test]
    fn records_round_trip() {
        for sig in catalog() {
            assert_eq!(Signature::from_record(&sig.record()).unwrap(), Some(sig));
        }
    }

    #[test]
    fn file_errors_name_the_entry() {
        let e = parse_file("[[signature]]\nname = \"x\"\nscope = \"via\"\n").unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        let e = parse_file("[[signature]]\nname = \"x\"\nscope = \"nope\"\nprefix = \"a\"\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains("unknown scope `nope`"), "{e:#}");
        let e = parse_file("[[signature]]\nname = \"x\"\nscope = \"via\"\nprefix = \"a\"\n[[signature]]\nname = \"x\"\nscope = \"via\"\nprefix = \"b\"\n").unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
        let e =
            parse_file("[[signature]]\nname = \"x\"\nscope = \"via\"\nprefix = \"a\"\nbogus = 1\n")
                .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = parse_file("[[signature]\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus").join(dir);
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    reference::crlf(&std::fs::read_to_string(&p).unwrap()),
                )
            })
            .collect();
        out.sort();
        assert!(!out.is_empty());
        out
    }

    #[test]
    fn legitimate_corpus_never_matches() {
        let cat = catalog();
        for (name, msg) in corpus("legit") {
            let v = reference::judge(&msg, &cat);
            assert!(reference::parse_message(&msg).is_some_and(|m| m.complete), "{name} parses");
            let hit: Vec<&str> = v.matched.iter().map(|i| cat[*i].name.as_str()).collect();
            assert!(hit.is_empty(), "{name} matched {hit:?}");
        }
        let uas = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/corpus/user-agents.txt"),
        )
        .unwrap();
        for ua in uas.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            for header in ["User-Agent", "Server"] {
                let msg = reference::crlf(&format!(
                    "OPTIONS sip:100@192.0.2.1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKx\nCall-ID: a1b2@192.0.2.9\n{header}: {ua}\n\n"
                ));
                let v = reference::judge(&msg, &cat);
                assert!(v.matched.is_empty(), "{ua:?} matched {:?}", v.matched);
            }
        }
    }

    #[test]
    fn scanner_corpus_is_dropped() {
        let cat = catalog();
        for (name, msg) in corpus("scanners") {
            let v = reference::judge(&msg, &cat);
            assert!(v.dropped, "{name}: {v:?}");
        }
    }

    #[test]
    fn a_derived_name_is_valid_and_unused() {
        let name = derived_name(Scope::UserAgent, Kind::Prefix, "Friendly Scanner/1.0", &[]);
        assert_eq!(name, "user-agent-prefix-friendly-scanner-1-0");
        let taken = vec![name.clone(), format!("{name}-2")];
        assert_eq!(
            derived_name(Scope::UserAgent, Kind::Prefix, "friendly scanner 1.0", &taken),
            format!("{name}-3")
        );
        let long = derived_name(Scope::UserAgent, Kind::Contains, &"x".repeat(100), &[]);
        assert!(
            long.len() <= 40
                && Signature::new(&long, Scope::UserAgent, Kind::Contains, "x", 1).is_ok(),
            "{long}"
        );
    }

    #[test]
    fn names_and_values_are_validated() {
        assert!(Signature::new("a b", Scope::Via, Kind::Prefix, "x", 100).is_err());
        assert!(Signature::new(&"n".repeat(49), Scope::Via, Kind::Prefix, "x", 100).is_err());
        assert!(Signature::new("n", Scope::Via, Kind::Prefix, &"x".repeat(97), 100).is_err());
        assert!(Signature::new("n", Scope::Via, Kind::Prefix, "x", 0).is_err());
        assert!(Signature::new("n", Scope::Via, Kind::Prefix, "x", 101).is_err());
        assert!(Signature::new("n", Scope::Via, Kind::Prefix, "\\q", 50).is_err());
        assert!(parse_scope("UA").is_ok() && parse_scope("Call-ID").is_ok());
    }
}
