//! List files: plain text (one address or prefix per line, `#` comments), a JSON array of
//! strings, or an APIBAN-style response (`{"ipaddress": [...], "ID": ...}`). Parsed in full
//! before anything changes; errors name the line.

use std::str::FromStr as _;

use anyhow::{Context as _, bail};

use crate::cidr::Cidr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Plain,
    Json,
    Apiban,
}

impl crate::named::Named for Format {
    const WHAT: &'static str = "list format";
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("plain", Self::Plain, "One address or prefix per line, `#` comments"),
        ("json", Self::Json, "A JSON array of strings"),
        ("apiban", Self::Apiban, "An APIBAN response"),
    ];
}

/// Parses a list file's text.
pub fn parse(text: &str, format: Format) -> anyhow::Result<Vec<Cidr>> {
    match format {
        Format::Plain => parse_plain(text),
        Format::Json => {
            let items: Vec<String> = serde_json::from_str(text)
                .map_err(|e| anyhow::anyhow!("not a JSON array of strings: {e}"))?;
            parse_items(text, &items)
        }
        Format::Apiban => {
            #[derive(serde::Deserialize)]
            struct Apiban {
                ipaddress: Vec<String>,
            }
            let doc: Apiban = serde_json::from_str(text).map_err(|e| {
                anyhow::anyhow!(
                    "not an APIBAN response (an object with an `ipaddress` array of strings): {e}"
                )
            })?;
            parse_items(text, &doc.ipaddress)
        }
    }
}

fn parse_plain(text: &str) -> anyhow::Result<Vec<Cidr>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        out.push(Cidr::from_str(entry).map_err(|e| anyhow::anyhow!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

/// Parses JSON string items, naming the line where a bad one is written.
fn parse_items(text: &str, items: &[String]) -> anyhow::Result<Vec<Cidr>> {
    let mut out = Vec::with_capacity(items.len());
    let mut from = 0;
    for (i, item) in items.iter().enumerate() {
        // Find the item's text after the previous one to report its line.
        let quoted = format!("\"{item}\"");
        let at = text[from..].find(&quoted).map(|p| from + p);
        if let Some(p) = at {
            from = p + quoted.len();
        }
        match Cidr::from_str(item) {
            Ok(c) => out.push(c),
            Err(e) => {
                let line = at.map(|p| text[..p].lines().count().max(1));
                match line {
                    Some(l) => bail!("line {l} (item {}): {e}", i + 1),
                    None => bail!("item {}: {e}", i + 1),
                }
            }
        }
    }
    Ok(out)
}

/// Reads and parses a list file; `-` is standard input (a feed piped from `curl`).
pub fn read(path: &std::path::Path, format: Format) -> anyhow::Result<Vec<Cidr>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    parse(&text, format).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_files_with_comments_and_blanks() {
        let list =
            parse("# feed\n192.0.2.1\n\n198.51.100.0/24  # a net\n2001:db8::/32\n", Format::Plain)
                .unwrap();
        assert_eq!(list.len(), 3);
        let e = parse("192.0.2.1\n10.0.0.1/8\n", Format::Plain).unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
    }

    #[test]
    fn json_arrays_report_the_line_of_a_bad_item() {
        assert_eq!(parse(r#"["192.0.2.1", "2001:db8::1"]"#, Format::Json).unwrap().len(), 2);
        let e = parse("[\n  \"192.0.2.1\",\n  \"bogus\"\n]", Format::Json).unwrap_err();
        assert!(e.to_string().starts_with("line 3 (item 2)"), "{e}");
        assert!(parse("{}", Format::Json).is_err());
    }

    #[test]
    fn apiban_responses() {
        let list =
            parse(r#"{"ipaddress": ["203.0.113.5", "203.0.113.6"], "ID": "1234"}"#, Format::Apiban)
                .unwrap();
        assert_eq!(list.len(), 2);
        let e = parse(r#"{"banned": []}"#, Format::Apiban).unwrap_err();
        assert!(e.to_string().contains("ipaddress"), "{e}");
    }

    #[test]
    fn format_names_round_trip() {
        crate::named::assert_names_round_trip::<Format>();
    }
}
