//! SIP start-line recognition, shared by the XDP program and the userspace reference.
//!
//! The program looks at a fixed 16-byte window at the start of the payload (every SIP start
//! line is longer), so recognition is a handful of word compares with no loop over the packet.

/// The request methods sipguard tells apart (RFC 3261 and its extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Method {
    /// An extension method: an upper-case token followed by a SIP or tel URI.
    Other = 0,
    Invite = 1,
    Ack = 2,
    Bye = 3,
    Cancel = 4,
    Options = 5,
    Register = 6,
    Prack = 7,
    Subscribe = 8,
    Notify = 9,
    Publish = 10,
    Info = 11,
    Refer = 12,
    Message = 13,
    Update = 14,
}

impl Method {
    pub const ALL: [Method; 15] = [
        Method::Other,
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Options,
        Method::Register,
        Method::Prack,
        Method::Subscribe,
        Method::Notify,
        Method::Publish,
        Method::Info,
        Method::Refer,
        Method::Message,
        Method::Update,
    ];

    /// The method token as it appears on the wire ("other" for extension methods).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Method::Other => "other",
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
        }
    }

    #[must_use]
    pub const fn from_u32(v: u32) -> Option<Method> {
        if (v as usize) < Method::ALL.len() { Some(Method::ALL[v as usize]) } else { None }
    }
}

/// What the first bytes of a payload say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request(Method),
    Response,
    NotSip,
}

/// Bytes of payload the classifier looks at. Shorter payloads are never SIP.
pub const START_WINDOW: usize = 16;

const fn has_prefix(head: &[u8; START_WINDOW], prefix: &[u8]) -> bool {
    let mut i = 0;
    while i < prefix.len() {
        if head[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Classifies the first [`START_WINDOW`] bytes of a payload.
///
/// Requests: a known method token followed by a space, or an unknown upper-case token of up
/// to 10 letters followed by a space and a `sip:`, `sips:` or `tel:` URI. Responses:
/// `SIP/2.0 ` followed by three digits and a space. SIP method names are case-sensitive
/// (RFC 3261 section 7.1), so `invite` is not a request.
#[must_use]
#[inline(always)]
pub fn classify_start_line(head: &[u8; START_WINDOW]) -> StartLine {
    if has_prefix(head, b"SIP/2.0 ") {
        return if has_status(head) { StartLine::Response } else { StartLine::NotSip };
    }
    let known: Option<Method> = match head[0] {
        b'I' if has_prefix(head, b"INVITE ") => Some(Method::Invite),
        b'I' if has_prefix(head, b"INFO ") => Some(Method::Info),
        b'A' if has_prefix(head, b"ACK ") => Some(Method::Ack),
        b'B' if has_prefix(head, b"BYE ") => Some(Method::Bye),
        b'C' if has_prefix(head, b"CANCEL ") => Some(Method::Cancel),
        b'O' if has_prefix(head, b"OPTIONS ") => Some(Method::Options),
        b'R' if has_prefix(head, b"REGISTER ") => Some(Method::Register),
        b'R' if has_prefix(head, b"REFER ") => Some(Method::Refer),
        b'P' if has_prefix(head, b"PRACK ") => Some(Method::Prack),
        b'P' if has_prefix(head, b"PUBLISH ") => Some(Method::Publish),
        b'S' if has_prefix(head, b"SUBSCRIBE ") => Some(Method::Subscribe),
        b'N' if has_prefix(head, b"NOTIFY ") => Some(Method::Notify),
        b'M' if has_prefix(head, b"MESSAGE ") => Some(Method::Message),
        b'U' if has_prefix(head, b"UPDATE ") => Some(Method::Update),
        _ => None,
    };
    if let Some(m) = known {
        return StartLine::Request(m);
    }
    if extension_request(head) { StartLine::Request(Method::Other) } else { StartLine::NotSip }
}

/// The status code of a response's status line (`SIP/2.0 401 ...`), or `None` when the
/// payload does not start like a response (the same test as [`classify_start_line`]).
#[must_use]
#[inline(always)]
pub fn status_code(head: &[u8; START_WINDOW]) -> Option<u16> {
    // The test `classify_start_line` makes of a response, without the methods' (the response
    // program sees only answers, and each test costs the verifier).
    if !(has_prefix(head, b"SIP/2.0 ") && has_status(head)) {
        return None;
    }
    let digit = |b: u8| u16::from(b - b'0');
    Some(digit(head[8]) * 100 + digit(head[9]) * 10 + digit(head[10]))
}

/// Whether `SIP/2.0 ` is followed by a three-digit status code and a space.
#[inline(always)]
const fn has_status(head: &[u8; START_WINDOW]) -> bool {
    head[8].is_ascii_digit()
        && head[9].is_ascii_digit()
        && head[10].is_ascii_digit()
        && head[11] == b' '
}

/// An upper-case token of 1..=10 letters, a space, then a URI scheme SIP requests use.
#[inline(always)]
fn extension_request(head: &[u8; START_WINDOW]) -> bool {
    // The scheme needs 5 bytes after the space, so the space sits at index 10 at most.
    let mut sp = 0;
    while sp < 11 {
        let b = head[sp];
        if b == b' ' {
            break;
        }
        if !b.is_ascii_uppercase() {
            return false;
        }
        sp += 1;
    }
    if sp == 0 || sp == 11 {
        return false;
    }
    let s = |i: usize| head[sp + 1 + i].to_ascii_lowercase();
    let sip = s(0) == b's'
        && s(1) == b'i'
        && s(2) == b'p'
        && (s(3) == b':' || (s(3) == b's' && s(4) == b':'));
    let tel = s(0) == b't' && s(1) == b'e' && s(2) == b'l' && s(3) == b':';
    sip || tel
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(s: &[u8]) -> StartLine {
        let mut head = [0u8; START_WINDOW];
        let n = s.len().min(START_WINDOW);
        head[..n].copy_from_slice(&s[..n]);
        classify_start_line(&head)
    }

    #[test]
    fn known_methods() {
        for m in Method::ALL.iter().skip(1) {
            let line = [m.name().as_bytes(), b" sip:100@10.0.0.1 SIP/2.0\r\n"].concat();
            assert_eq!(classify(&line), StartLine::Request(*m), "{}", m.name());
        }
    }

    #[test]
    fn responses() {
        assert_eq!(classify(b"SIP/2.0 200 OK\r\n"), StartLine::Response);
        assert_eq!(classify(b"SIP/2.0 401 Unauthorized\r\n"), StartLine::Response);
        assert_eq!(classify(b"SIP/2.0 2x0 OK\r\n"), StartLine::NotSip);
        assert_eq!(classify(b"SIP/2.0 2000 OK\r\n"), StartLine::NotSip);
        assert_eq!(classify(b"SIP/3.0 200 OK\r\n"), StartLine::NotSip);
    }

    #[test]
    fn status_codes() {
        let code = |s: &[u8]| {
            let mut head = [0u8; START_WINDOW];
            let n = s.len().min(START_WINDOW);
            head[..n].copy_from_slice(&s[..n]);
            status_code(&head)
        };
        assert_eq!(code(b"SIP/2.0 401 Unauthorized\r\n"), Some(401));
        assert_eq!(code(b"SIP/2.0 604 Does Not Exist"), Some(604));
        assert_eq!(code(b"SIP/2.0 100 Trying"), Some(100));
        assert_eq!(code(b"SIP/2.0 40 Short\r\n"), None);
        assert_eq!(code(b"SIP/2.0 401"), None, "no space after the code");
        assert_eq!(code(b"REGISTER sip:x SIP/2.0"), None);
    }

    #[test]
    fn extension_methods_need_a_sip_uri() {
        assert_eq!(classify(b"FOO sip:a@b SIP/2.0"), StartLine::Request(Method::Other));
        assert_eq!(classify(b"FOO sips:a@b SIP/2.0"), StartLine::Request(Method::Other));
        assert_eq!(classify(b"FOO tel:+123 SIP/2.0"), StartLine::Request(Method::Other));
        assert_eq!(classify(b"GET / HTTP/1.1\r\n\r\n"), StartLine::NotSip);
        assert_eq!(classify(b"FOO http://x SIP/2.0"), StartLine::NotSip);
        assert_eq!(classify(b"ABCDEFGHIJK sip:a@b"), StartLine::NotSip);
    }

    #[test]
    fn method_names_are_case_sensitive() {
        assert_eq!(classify(b"invite sip:100@x SIP/2.0"), StartLine::NotSip);
        assert_eq!(classify(b"INVITEx sip:100@x"), StartLine::NotSip);
        // An unknown upper-case token is an extension method, not INVITE.
        assert_eq!(classify(b"INVITEX sip:100@x"), StartLine::Request(Method::Other));
    }

    #[test]
    fn garbage_and_keepalives() {
        assert_eq!(classify(b"\r\n\r\n"), StartLine::NotSip);
        assert_eq!(classify(&[0u8; 16]), StartLine::NotSip);
        assert_eq!(classify(&[0xffu8; 16]), StartLine::NotSip);
        assert_eq!(classify(b" INVITE sip:x"), StartLine::NotSip);
    }

    #[test]
    fn method_round_trip() {
        for (i, m) in (0u32..).zip(Method::ALL) {
            assert_eq!(Method::from_u32(i), Some(m));
        }
        assert_eq!(Method::from_u32(15), None);
    }
}
