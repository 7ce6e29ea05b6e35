//! Signature values: literal bytes matched case-insensitively, plus a few escapes for the
//! structural tells of scanners (all-digit Call-IDs, decimal branch suffixes):
//!
//! | syntax | matches |
//! | --- | --- |
//! | `\d` | one decimal digit |
//! | `\h` | one hex digit |
//! | `\s` | one space or tab |
//! | `\\` | a backslash |
//! | `X+` after `\d`, `\h` or `\s` | one or more of them |
//!
//! Everything else, `+` included, is literal.

use std::fmt;

/// A set of bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSet([u64; 4]);

impl ByteSet {
    pub const EMPTY: ByteSet = ByteSet([0; 4]);

    #[must_use]
    pub fn of(bytes: impl IntoIterator<Item = u8>) -> Self {
        let mut s = Self::EMPTY;
        for b in bytes {
            s.insert(b);
        }
        s
    }

    pub fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    #[must_use]
    pub fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
}

impl fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes: Vec<u8> = (0..=255u8).filter(|b| self.contains(*b)).collect();
        write!(f, "{:?}", String::from_utf8_lossy(&bytes))
    }
}

/// One position of a pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Atom {
    pub set: ByteSet,
    /// `+`: one or more.
    pub repeat: bool,
}

/// ASCII case folding: a letter stands for both of its cases.
fn folded(b: u8) -> ByteSet {
    ByteSet::of([b.to_ascii_lowercase(), b.to_ascii_uppercase()])
}

/// Bytes a value may never contain for matching purposes: line and string terminators.
const FORBIDDEN: [u8; 3] = [b'\r', b'\n', 0];

/// Parses a signature value into atoms.
pub fn parse(value: &str) -> Result<Vec<Atom>, String> {
    let bytes = value.as_bytes();
    let mut atoms: Vec<Atom> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if FORBIDDEN.contains(&b) {
            return Err("a value cannot contain CR, LF or NUL".into());
        }
        let (set, class) = if b == b'\\' {
            let Some(&e) = bytes.get(i + 1) else {
                return Err("a value cannot end with a lone backslash (write \\\\)".into());
            };
            i += 1;
            match e {
                b'd' => (ByteSet::of(b'0'..=b'9'), true),
                b'h' => (ByteSet::of((b'0'..=b'9').chain(b'a'..=b'f').chain(b'A'..=b'F')), true),
                b's' => (ByteSet::of([b' ', b'\t']), true),
                b'\\' => (folded(b'\\'), false),
                other => {
                    return Err(format!(
                        "unknown escape \\{} (use \\d, \\h, \\s or \\\\)",
                        char::from(other)
                    ));
                }
            }
        } else {
            (folded(b), false)
        };
        i += 1;
        let repeat = class && bytes.get(i) == Some(&b'+');
        if repeat {
            i += 1;
        }
        atoms.push(Atom { set, repeat });
    }
    if atoms.is_empty() {
        return Err("a value cannot be empty".into());
    }
    Ok(atoms)
}

/// Whether `text` (from its start) begins with a match of `atoms`; returns the match length.
/// A straightforward backtracking matcher, independent of the automaton: the reference the
/// compiled DFA is tested against.
#[must_use]
pub fn match_at(atoms: &[Atom], text: &[u8]) -> Vec<usize> {
    let Some((first, rest)) = atoms.split_first() else {
        return vec![0];
    };
    let mut ends = Vec::new();
    let mut n = 0;
    while n < text.len() && first.set.contains(text[n]) {
        n += 1;
        for end in match_at(rest, &text[n..]) {
            ends.push(n + end);
        }
        if !first.repeat {
            break;
        }
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_fold_case() {
        let a = parse("Sip").unwrap();
        assert_eq!(a.len(), 3);
        assert!(a[0].set.contains(b's') && a[0].set.contains(b'S'));
        assert!(!a[0].repeat);
        assert_eq!(match_at(&a, b"SIP/2.0"), vec![3]);
        assert_eq!(match_at(&a, b"si"), Vec::<usize>::new());
    }

    #[test]
    fn escapes_and_repeats() {
        let a = parse(r"z9hG4bK-\d+;").unwrap();
        assert_eq!(a.len(), 10);
        assert!(a[8].repeat);
        assert_eq!(match_at(&a, b"z9hg4bk-2122676748;rport"), vec![19]);
        assert!(match_at(&a, b"z9hG4bK-;").is_empty());
        assert!(match_at(&a, b"z9hG4bK-12a;").is_empty());
        let h = parse(r"\h\h").unwrap();
        assert_eq!(match_at(&h, b"aF"), vec![2]);
        assert_eq!(parse(r"a\\b").unwrap().len(), 3);
        assert!(!parse("a+").unwrap()[1].repeat, "+ after a literal is literal");
        assert_eq!(match_at(&parse(r"\s+x").unwrap(), b" \t x"), vec![4]);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(parse("").is_err());
        assert!(parse("a\\").unwrap_err().contains("lone backslash"));
        assert!(parse(r"\q").unwrap_err().contains("unknown escape"));
        assert!(parse("a\r\nb").unwrap_err().contains("CR"));
    }
}
