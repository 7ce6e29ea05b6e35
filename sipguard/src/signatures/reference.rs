//! The reference matcher: the signature semantics written as plainly as possible, with no
//! automaton. The kernel's verdicts are tested against it, and `sipguard sig test` uses it to
//! explain which signatures a captured message matches.
//!
//! A message scores the sum of the weights of the distinct signatures it matches and is
//! dropped at `SCORE_THRESHOLD`. A signature matches when one value of its scope does:
//! `contains` anywhere in the value, `prefix` at its start, `equals` the whole value (trailing
//! blanks allowed). Values start after the colon and any blanks. For From, To and Contact,
//! `prefix` and `equals` also try the URI between `<` and `>`. The Request-URI ends at the
//! first space. Scope `any` applies to every header value. Continuation lines (starting with a
//! blank) are values of the previous header.

use std::collections::BTreeSet;

use sipguard_common::{
    inspect::{Kind, SCORE_THRESHOLD, Scope, header_scope, lower},
    sip::{START_WINDOW, StartLine, classify_start_line},
};

use super::{Signature, pattern};

/// The parts of a SIP message signatures look at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Message<'a> {
    /// The Request-URI, and whether the space after it was seen (an `equals` needs it).
    pub request_uri: Option<(&'a [u8], bool)>,
    /// `(scope, value, terminated)` for every header line in the header section; a value
    /// cut off by the end of the payload is not terminated, and no `equals` can match it.
    pub values: Vec<(Scope, &'a [u8], bool)>,
    /// The header section ended (an empty line was found).
    pub complete: bool,
}

fn scope_of(name: &[u8]) -> Scope {
    let mut padded = [b' '; 16];
    let n = name.len().min(16);
    padded[..n].copy_from_slice(&name[..n]);
    let lo = lower(u64::from_le_bytes(padded[..8].try_into().expect("8 bytes")));
    let hi = lower(u64::from_le_bytes(padded[8..].try_into().expect("8 bytes")));
    if name.len() > 16 { Scope::Any } else { header_scope(lo, hi, name.len()) }
}

fn trim_start(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    &v[n..]
}

/// Splits a payload into its Request-URI and header values; `None` if it is not SIP.
#[must_use]
pub fn parse_message(payload: &[u8]) -> Option<Message<'_>> {
    let mut head = [0u8; START_WINDOW];
    let n = payload.len().min(START_WINDOW);
    head[..n].copy_from_slice(&payload[..n]);
    let start = classify_start_line(&head);
    if start == StartLine::NotSip || payload.len() < START_WINDOW {
        return None;
    }
    let mut lines = payload.split(|b| *b == b'\n');
    let first = lines.next()?;
    let mut msg = Message::default();
    if let StartLine::Request(_) = start {
        let after_method = first.iter().position(|b| *b == b' ').map(|i| &first[i + 1..])?;
        let uri_end = after_method.iter().position(|b| matches!(*b, b' ' | b'\r' | 0));
        let ends_with_space = uri_end.is_some_and(|i| after_method[i] == b' ');
        msg.request_uri =
            Some((&after_method[..uri_end.unwrap_or(after_method.len())], ends_with_space));
    }
    let mut last_scope: Option<Scope> = None;
    let total_lines = payload.split(|b| *b == b'\n').count();
    for (i, line) in lines.enumerate() {
        // Only the last piece can lack its LF; a CR ends a value just as well.
        let has_lf = i + 2 < total_lines || payload.ends_with(b"\n");
        let terminated = has_lf || line.ends_with(b"\r");
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            msg.complete = terminated;
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(scope) = last_scope {
                msg.values.push((scope, trim_start(line), terminated));
            }
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            last_scope = None;
            continue;
        };
        let name = &line[..colon];
        let name_end = name.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(0, |i| i + 1);
        let scope = scope_of(&name[..name_end]);
        last_scope = Some(scope);
        msg.values.push((scope, trim_start(&line[colon + 1..]), terminated));
    }
    Some(msg)
}

fn blanks(v: &[u8]) -> bool {
    v.iter().all(|b| *b == b' ' || *b == b'\t')
}

/// Whether `atoms` match `text` the way `kind` says.
fn matches(kind: Kind, atoms: &[pattern::Atom], text: &[u8]) -> bool {
    match kind {
        Kind::Contains => (0..text.len()).any(|i| !pattern::match_at(atoms, &text[i..]).is_empty()),
        Kind::Prefix => !pattern::match_at(atoms, text).is_empty(),
        Kind::Equals => pattern::match_at(atoms, text).into_iter().any(|end| blanks(&text[end..])),
    }
}

/// The bracketed URI of a name-addr value, if it has one (up to `>`, which must be there).
fn bracketed_uri(value: &[u8]) -> Option<&[u8]> {
    let open = value.iter().position(|b| *b == b'<')?;
    let rest = &value[open + 1..];
    let close = rest.iter().position(|b| *b == b'>')?;
    Some(&rest[..close])
}

/// Whether `sig` matches `msg`.
#[must_use]
pub fn signature_matches(sig: &Signature, msg: &Message<'_>) -> bool {
    let Ok(atoms) = sig.atoms() else { return false };
    if sig.scope == Scope::RequestUri {
        return msg.request_uri.is_some_and(|(uri, ended)| {
            (ended || sig.kind != Kind::Equals) && matches(sig.kind, &atoms, uri)
        });
    }
    msg.values.iter().any(|(scope, value, terminated)| {
        if sig.scope != Scope::Any && sig.scope != *scope {
            return false;
        }
        let value: &[u8] = value;
        if (*terminated || sig.kind != Kind::Equals) && matches(sig.kind, &atoms, value) {
            return true;
        }
        // In the URI a prefix runs to the `>` if there is one; an equals must end at it.
        sig.scope.has_uri()
            && sig.kind != Kind::Contains
            && value.iter().position(|b| *b == b'<').is_some_and(|open| {
                let uri_and_rest = &value[open + 1..];
                match sig.kind {
                    Kind::Prefix => {
                        let end = uri_and_rest
                            .iter()
                            .position(|b| *b == b'>')
                            .unwrap_or(uri_and_rest.len());
                        matches(Kind::Prefix, &atoms, &uri_and_rest[..end])
                    }
                    _ => bracketed_uri(value).is_some_and(|uri| matches(Kind::Equals, &atoms, uri)),
                }
            })
    })
}

/// A message written with plain newlines (as in test corpora and `sig test` files) turned
/// into wire form: every line ends with CRLF.
#[must_use]
pub fn crlf(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 16);
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').map_or(line, |l| l.strip_suffix('\r').unwrap_or(l));
        out.extend_from_slice(body.as_bytes());
        if line.ends_with('\n') {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// The outcome for one message.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub score: u32,
    /// Indexes (into the slice given) of the signatures matched.
    pub matched: BTreeSet<usize>,
    pub dropped: bool,
}

/// Scores a payload against signatures. Non-SIP payloads score nothing.
#[must_use]
pub fn judge(payload: &[u8], sigs: &[Signature]) -> Verdict {
    let Some(msg) = parse_message(payload) else {
        return Verdict { score: 0, matched: BTreeSet::new(), dropped: false };
    };
    let matched: BTreeSet<usize> = sigs
        .iter()
        .enumerate()
        .filter(|(_, s)| signature_matches(s, &msg))
        .map(|(i, _)| i)
        .collect();
    let score = matched.iter().map(|i| u32::from(sigs[*i].weight)).sum();
    Verdict { score, matched, dropped: score >= SCORE_THRESHOLD }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVMAP: &[u8] = b"OPTIONS sip:100@10.200.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2122676748;rport\r\n\
Max-Forwards: 70\r\n\
To: \"sipvicious\"<sip:100@1.1.1.1>\r\n\
From: \"sipvicious\"<sip:100@1.1.1.1>;tag=3061633830303032313363340133363830353435373830\r\n\
User-Agent: friendly-scanner\r\n\
Call-ID: 18270739203491303020298\r\n\
Contact: sip:100@127.0.0.1:5060\r\n\
CSeq: 1 OPTIONS\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_the_parts_signatures_see() {
        let m = parse_message(SVMAP).unwrap();
        assert_eq!(m.request_uri, Some((&b"sip:100@10.200.0.2"[..], true)));
        assert!(m.complete);
        assert_eq!(m.values.len(), 10);
        assert_eq!(m.values[2], (Scope::To, &b"\"sipvicious\"<sip:100@1.1.1.1>"[..], true));
        assert_eq!(m.values[4], (Scope::UserAgent, &b"friendly-scanner"[..], true));
        let folded =
            parse_message(b"INVITE sip:a@b SIP/2.0\r\nv : x\r\nUser-Agent:\r\n  friendly\r\n\r\n")
                .unwrap();
        assert_eq!(
            folded.values,
            vec![
                (Scope::Via, &b"x"[..], true),
                (Scope::UserAgent, &b""[..], true),
                (Scope::UserAgent, &b"friendly"[..], true)
            ]
        );
        assert!(parse_message(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_none());
        let cut = parse_message(b"REGISTER sip:a@b SIP/2.0\r\nContact: None").unwrap();
        assert_eq!(cut.values, vec![(Scope::Contact, &b"None"[..], false)]);
        assert!(!cut.complete);
    }

    #[test]
    fn the_catalog_drops_svmap_for_several_reasons() {
        let cat = super::super::catalog();
        let v = judge(SVMAP, &cat);
        assert!(v.dropped, "{v:?}");
        let names: Vec<&str> = v.matched.iter().map(|i| cat[*i].name.as_str()).collect();
        assert!(names.len() >= 3, "several independent tells: {names:?}");
    }
}
