//! Who a request is addressed to, read from the inspection's window: its Request-URI's user
//! part and host, and whether it belongs to a dialog (its To header carries a tag). A word at
//! a time, like the line walker; map-free, so the host's `cargo test` runs it.

use sipguard_common::{
    domain::{MAX_DOMAIN_LEN, mix, start},
    inspect::{byte_mask, first_flagged, keep, lower},
};

use crate::window::{Scratch, data_len, launder, load, store, word, word_or_zero};

/// Words searched for the end of a user part or host (128 bytes, the longest host hashed).
const URI_WORDS: usize = 16;
/// Words of a To header searched for its tag.
const TO_WORDS: usize = 32;
const CR: u8 = b'\r';
const LF: u8 = b'\n';
const SP: u8 = b' ';

/// A Request-URI's parts, as offsets into the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub user_at: usize,
    /// 0 without a user part.
    pub user_len: usize,
    pub host_at: usize,
    pub host_len: usize,
}

/// The first position at or after `from`, below the data length, whose byte `flags` flags.
/// Laundered (see [`launder`]), and compared with a fresh copy of the length each time: what
/// follows is verified once, not once per word searched.
#[inline(always)]
fn find(s: &mut Scratch, from: usize, flags: impl Fn(u64) -> u64) -> Option<usize> {
    let mut pos = from;
    let mut i = 0;
    while i < URI_WORDS {
        if pos >= data_len(s) {
            return None;
        }
        let m = flags(word(s, pos));
        if m != 0 {
            let at = pos + first_flagged(m);
            return if at < data_len(s) { Some(launder(s, at)) } else { None };
        }
        pos += 8;
        i += 1;
    }
    None
}

#[inline(always)]
fn byte(s: &Scratch, pos: usize) -> u8 {
    (word(s, pos) & 0xff) as u8
}

/// The parts of the `sip:` or `sips:` Request-URI at `at` (other schemes, `tel:` say, have no
/// host to judge: `None`). The data length is the walk's (`WalkState::len`).
#[must_use]
#[inline(always)]
pub fn request_target(s: &mut Scratch, at: usize) -> Option<Target> {
    let p = scheme_end(s, at)?;
    // The user part ends at `@`; a URI without one is all host.
    let stop = find(s, p, |w| {
        byte_mask(w, b'@')
            | byte_mask(w, SP)
            | byte_mask(w, b'>')
            | byte_mask(w, LF)
            | byte_mask(w, CR)
    })?;
    let (user_len, host_at) = if byte(s, stop) == b'@' { (stop - p, stop + 1) } else { (0, p) };
    let host_end = if byte(s, host_at) == b'[' {
        // An IPv6 reference: its colons are the address's.
        find(s, host_at, |w| byte_mask(w, b']') | byte_mask(w, LF))? + 1
    } else {
        find(s, host_at, |w| {
            byte_mask(w, b':')
                | byte_mask(w, b';')
                | byte_mask(w, SP)
                | byte_mask(w, b'>')
                | byte_mask(w, b'?')
                | byte_mask(w, CR)
                | byte_mask(w, LF)
        })?
    };
    // Each part through memory: the ways here (a scheme of four or five bytes, a user part
    // or none, a bracketed host or not) end in one state, not one per way.
    let host_len = launder(s, host_end.saturating_sub(host_at));
    let host_at = launder(s, host_at);
    let user_len = launder(s, user_len);
    let user_at = launder(s, p);
    Some(Target { user_at, user_len, host_at, host_len })
}

/// What a request's To header says: whether it has a tag (the request belongs to a dialog)
/// and the user part of its URI (`user_len` 0: none), whom the request addresses whatever its
/// Request-URI (a REGISTER's names only the domain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToHeader {
    pub tagged: bool,
    pub user_at: usize,
    pub user_len: usize,
}

/// Reads the To header whose value starts at `to_at` (`<sip:100@host>;tag=x`, with or
/// without a display name or the brackets) in one pass: to the URI, to the end of its user
/// part, then on to the line's end looking for a tag. A few word operations per word; the
/// full `;tag=` comparison runs only on words that hold a `;`.
#[must_use]
#[inline(always)]
pub fn to_header(s: &mut Scratch, to_at: usize) -> ToHeader {
    let mut to = ToHeader { tagged: false, user_at: 0, user_len: 0 };
    let Some(stop) = find(s, to_at, |w| byte_mask(w, b'<') | byte_mask(w, LF)) else {
        return to;
    };
    let uri = if byte(s, stop) == b'<' {
        stop + 1
    } else {
        // A bare URI: after the blanks that follow the colon.
        let mut at = to_at;
        let mut i = 0;
        while i < 3 && (byte(s, at) == SP || byte(s, at) == b'\t') {
            at += 1;
            i += 1;
        }
        at
    };
    // Laundered (see `find`): the paths to it (a bracket or blanks) are verified as one.
    let uri = launder(s, uri);
    let mut rest = uri;
    if let Some(p) = scheme_end(s, uri) {
        // The user part ends at `@`; a URI without one has none.
        if let Some(end) =
            find(s, p, |w| byte_mask(w, b'@') | byte_mask(w, b'>') | byte_mask(w, LF))
        {
            if byte(s, end) == b'@' {
                to.user_at = p;
                to.user_len = end - p;
            }
            rest = end;
        }
    }
    let rest = launder(s, rest);
    to.tagged = has_tag(s, rest);
    to.user_at = launder(s, to.user_at);
    to.user_len = launder(s, to.user_len);
    to
}

/// Where the user part of the `sip:` or `sips:` URI at `at` starts.
#[inline(always)]
fn scheme_end(s: &Scratch, at: usize) -> Option<usize> {
    if at + 8 > data_len(s) {
        return None;
    }
    let scheme = lower(word(s, at));
    if keep(scheme, 4) == u64::from(u32::from_le_bytes(*b"sip:")) {
        Some(at + 4)
    } else if keep(scheme, 5) == u64::from_le_bytes(*b"sips:\0\0\0") {
        Some(at + 5)
    } else {
        None
    }
}

/// The [`sipguard_common::domain::hash`] of the `n` bytes at `at`, or `None` when they are
/// none or more than a declared domain can be. The span's length is read afresh from the
/// scratch value at each word: the caller's copy is not narrowed by the loop's exits.
#[must_use]
#[inline(always)]
pub fn hash_span(s: &mut Scratch, at: usize, n: usize) -> Option<u64> {
    if n == 0 || n > MAX_DOMAIN_LEN {
        return None;
    }
    store(&mut s.walk.span, n as u64);
    let mut h = start(n);
    let mut i = 0;
    while i < URI_WORDS {
        let off = i * 8;
        let n = load(&s.walk.span) as usize;
        if off >= n {
            break;
        }
        let take = if n - off < 8 { n - off } else { 8 };
        h = mix(h, word(s, at + off), take);
        i += 1;
    }
    Some(h)
}

/// Whether the header value from `from` to its line's end has a `;tag=` parameter: the To
/// header of a request inside a dialog (whose Request-URI is the peer's contact address, an
/// IP address as often as not).
#[must_use]
#[inline(always)]
pub fn has_tag(s: &Scratch, from: usize) -> bool {
    let mut pos = from;
    let mut i = 0;
    while i < TO_WORDS {
        let len = data_len(s);
        if pos >= len {
            return false;
        }
        let raw = word(s, pos);
        let lf = byte_mask(raw, LF);
        // Only parameters that start on this line (none can span its LF).
        let on_line = if lf != 0 { (lf - 1) & !lf } else { u64::MAX };
        if byte_mask(raw, b';') & on_line != 0 {
            let lo = lower(raw);
            let hi = lower(word_or_zero(s, len, pos + 8));
            // The five bytes from each of the word's eight positions, lined up.
            let found = byte_mask(lo, b';')
                & byte_mask((lo >> 8) | (hi << 56), b't')
                & byte_mask((lo >> 16) | (hi << 48), b'a')
                & byte_mask((lo >> 24) | (hi << 40), b'g')
                & byte_mask((lo >> 32) | (hi << 32), b'=');
            if found & on_line != 0 {
                return true;
            }
        }
        if lf != 0 {
            return false;
        }
        pos += 8;
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{boxed::Box, vec::Vec};

    use sipguard_common::{domain::hash, inspect::WINDOW};

    use super::*;

    fn scratch(text: &[u8]) -> Box<Scratch> {
        // SAFETY: Scratch is plain integers and arrays; all zeroes is a valid value.
        let mut s: Box<Scratch> = unsafe { Box::new_zeroed().assume_init() };
        // Stale bytes past the data, as the per-CPU buffer has after a longer message.
        s.buf[..WINDOW].fill(b'@');
        s.buf[..text.len()].copy_from_slice(text);
        s.buf[text.len()..text.len() + 8].fill(0);
        s.walk.len = text.len() as u64;
        s
    }

    fn parts(line: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut s = scratch(line.as_bytes());
        let at = line.find(' ').unwrap() + 1;
        let t = request_target(&mut s, at)?;
        let user = s.buf[t.user_at..t.user_at + t.user_len].to_vec();
        let host = s.buf[t.host_at..t.host_at + t.host_len].to_vec();
        if t.user_len == 0 {
            return Some((Vec::new(), host));
        }
        Some((user, host))
    }

    #[test]
    fn request_uris_split_into_user_and_host() {
        for (line, user, host) in [
            ("INVITE sip:100@192.0.2.10 SIP/2.0\r\n", "100", "192.0.2.10"),
            ("INVITE sip:100@192.0.2.10:5060 SIP/2.0\r\n", "100", "192.0.2.10"),
            (
                "INVITE SIP:alice@PBX.example.com;transport=udp SIP/2.0\r\n",
                "alice",
                "PBX.example.com",
            ),
            ("REGISTER sip:pbx.example.com SIP/2.0\r\n", "", "pbx.example.com"),
            ("OPTIONS sips:[2001:db8::1]:5061 SIP/2.0\r\n", "", "[2001:db8::1]"),
            ("INVITE sip:+4930123@[2001:db8::1] SIP/2.0\r\n", "+4930123", "[2001:db8::1]"),
            ("INVITE sip:1000@h?subject=x SIP/2.0\r\n", "1000", "h"),
            ("INVITE sip:100@h\n", "100", "h"),
        ] {
            let (u, h) = parts(line).unwrap_or_else(|| panic!("{line}"));
            assert_eq!((u.as_slice(), h.as_slice()), (user.as_bytes(), host.as_bytes()), "{line}");
        }
    }

    #[test]
    fn other_schemes_and_cut_uris_have_no_target() {
        for line in [
            "INVITE tel:+4930123 SIP/2.0\r\n",
            "INVITE http://x SIP/2.0\r\n",
            "INVITE sip:100@host",
            "INVITE sip:",
        ] {
            assert_eq!(parts(line), None, "{line}");
        }
    }

    #[test]
    fn hosts_hash_as_userspace_hashes_names() {
        let line = "INVITE sip:100@PBX.Example.COM:5060 SIP/2.0\r\n";
        let mut s = scratch(line.as_bytes());
        let t = request_target(&mut s, 7).unwrap();
        assert_eq!(hash_span(&mut s, t.host_at, t.host_len), Some(hash(b"pbx.example.com")));
        let long = std::format!("INVITE sip:{}.example.com SIP/2.0\r\n", "x".repeat(100));
        let mut s = scratch(long.as_bytes());
        let t = request_target(&mut s, 7).unwrap();
        let host = &long.as_bytes()[11..11 + t.host_len];
        assert_eq!(hash_span(&mut s, t.host_at, t.host_len), Some(hash(host)));
        assert_eq!(hash_span(&mut s, 0, 0), None);
        assert_eq!(hash_span(&mut s, 0, 128), None);
    }

    #[test]
    fn to_headers_name_the_user_addressed() {
        for (to, user) in [
            ("To: <sip:100@192.0.2.1>\r\n", Some("100")),
            ("To: \"Desk 7\" <sip:2001@pbx.example.com:5060>;tag=1\r\n", Some("2001")),
            ("t:sip:+4930123@h;user=phone\r\n", Some("+4930123")),
            ("To:   sips:alice@h\r\n", Some("alice")),
            ("To: <sip:pbx.example.com>\r\n", None),
            ("To: <tel:+4930123>\r\n", None),
            ("To: \"sip:100@x\"\r\nFrom: <sip:1@h>\r\n", None),
        ] {
            let mut s = scratch(to.as_bytes());
            let at = to.find(':').unwrap() + 1;
            let t = to_header(&mut s, at);
            let got = (t.user_len > 0).then(|| &to[t.user_at..t.user_at + t.user_len]);
            assert_eq!(got, user, "{to:?}");
            assert_eq!(t.tagged, to.contains(";tag"), "{to:?}");
        }
    }

    #[test]
    fn to_tags_are_found_on_their_line_only() {
        for (to, tagged) in [
            ("To: <sip:100@h>;tag=abc\r\nFrom: x\r\n", true),
            ("To: <sip:100@h>;TAG=abc\r\n", true),
            ("t: sip:100@h;tag=1\r\n", true),
            ("To: \"a long display name here\" <sip:100@pbx.example.com>;tag=a\r\n", true),
            ("To: <sip:100@h>\r\nFrom: <sip:a@b>;tag=x\r\n", false),
            ("To: <sip:100@h>;tagx=1\r\n", false),
            ("To: <sip:tag@h>\r\n", false),
        ] {
            let mut s = scratch(to.as_bytes());
            for from in [0, 3] {
                assert_eq!(has_tag(&s, from), tagged, "{to:?} from {from}");
            }
            let at = to.find(':').unwrap() + 1;
            assert_eq!(to_header(&mut s, at).tagged, tagged, "{to:?}");
        }
    }
}
