//! Which request an answer answers: the method of its `CSeq` header. The behaviour rules need
//! it because a server answers some requests without asking for credentials (OPTIONS, the
//! keepalive): those answers say nothing about whether a party knows its password, and
//! counted as successes they would let a brute forcer offset its failures with pings.
//!
//! Map-free, so the host's tests run it. The search is one [`step`] per byte, which the
//! kernel runs under `bpf_loop` (the verifier checks the step once, not once per byte) and
//! [`find`] runs in a plain loop on the host; the step leaves the header's position in map
//! memory, from which [`method`] reads the method.

use sipguard_common::{callee::CalleeScan, challenges::CallIdScan};

/// Bytes of an answer searched for its `CSeq` header.
pub const WINDOW: usize = 1024;
/// The buffer is twice the window and a word, so every masked read stays inside it.
pub const BUF: usize = 2 * WINDOW + 8;
/// [`AnswerScratch::pos`] when no `CSeq` header was found.
pub const NOT_FOUND: u64 = u64::MAX;

/// Per-CPU memory of the response program: the answer's first bytes, and where `find` found
/// the header.
#[repr(C)]
pub struct AnswerScratch {
    pub buf: [u8; BUF],
    /// Offset just past `CSeq` and its first separator, or [`NOT_FOUND`].
    pub pos: u64,
    /// Bytes of `buf` that hold this answer (the rest is an earlier one's).
    pub len: u64,
    /// The bytes seen so far, the last one lowest (see [`step`]).
    pub acc: u64,
    /// The search of a challenge for its nonce (`sipguard_common::challenges`).
    pub nonce: sipguard_common::challenges::NonceScan,
    /// The search for the answer's Call-ID, beside the one for `CSeq`
    /// (`sipguard_common::challenges`).
    pub call: CallIdScan,
    /// The search for the user part the answer's `To` names (`sipguard_common::callee`).
    pub callee: CalleeScan,
}

/// What the `CSeq` header says, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    Options,
    /// A registration (its success gives the party standing, `sipguard_common::trust`).
    Register,
    /// A call (the same).
    Invite,
    /// Any other method.
    Other,
    /// No `CSeq` header within the window.
    Unknown,
}

/// `"\ncseq"` and a separator, each byte `| 0x20` (which lowers letters), as the low six bytes
/// of a register that bytes are shifted into.
const fn key(sep: u8) -> u64 {
    u64::from_be_bytes([0, 0, b'\n' | 0x20, b'c', b's', b'e', b'q', sep | 0x20])
}
const AFTER_COLON: u64 = key(b':');
const AFTER_SPACE: u64 = key(b' ');
const AFTER_TAB: u64 = key(b'\t');

/// Gets `s` ready for a search of its first `len` bytes (at most [`WINDOW`]); returns how
/// many steps the search takes.
#[inline(always)]
pub fn start(s: &mut AnswerScratch, len: u64) -> u64 {
    let n = if len < WINDOW as u64 { len } else { WINDOW as u64 };
    s.len = n;
    s.acc = 0;
    s.pos = NOT_FOUND;
    // SAFETY: a field of `s`, which the caller may write.
    unsafe {
        CallIdScan::restart(&raw mut s.call);
        CalleeScan::restart(&raw mut s.callee);
    }
    n
}

/// One byte of the search for the `CSeq` header (header names match without regard to
/// case, as SIP requires) and, in the same pass, for the Call-ID (`s.call`, which ties a
/// refusal to the request it answers) and the callee (`s.callee`, which tells a dialled
/// number from an extension): returns true to stop, once all three were found (or the
/// window ends), with `s.pos` the offset after `CSeq`'s name and first separator.
#[inline(always)]
pub fn step(s: &mut AnswerScratch, i: u64) -> bool {
    // SAFETY: plain loads from map memory; the verifier learns nothing from them.
    let len = unsafe { core::ptr::read_volatile(&raw const s.len) };
    if i >= len || i >= WINDOW as u64 {
        return true;
    }
    let i = i as usize;
    // The mask keeps the index inside the buffer (kept in the program for the verifier;
    // LLVM must not see a bound it could drop, nor add a check that panics).
    let at = crate::and_mask!(i, 0x3ff);
    // SAFETY: `at` is masked to the buffer's length.
    let b = unsafe { *s.buf.get_unchecked(at) };
    let others_done = s.call.step(b) & s.callee.step(b);
    if s.pos != NOT_FOUND {
        return others_done;
    }
    let acc = (s.acc << 8) | u64::from(b | 0x20);
    s.acc = acc;
    let six = acc & 0xffff_ffff_ffff;
    if six == AFTER_COLON || six == AFTER_SPACE || six == AFTER_TAB {
        s.pos = i as u64 + 1;
        return others_done;
    }
    false
}

/// The whole search, as the kernel runs it one [`step`] at a time.
pub fn find(s: &mut AnswerScratch, len: u64) {
    let n = start(s, len);
    let mut i = 0;
    while i < n && !step(s, i) {
        i += 1;
    }
}

/// The method after the header the search found: the first letter after `CSeq:` starts it
/// (`CSeq: 1 OPTIONS`, blanks around the colon and the number allowed).
#[inline(always)]
#[must_use]
pub fn method(s: &AnswerScratch) -> Answered {
    // Fresh loads: the verifier knows nothing of them, whichever way the search went.
    // SAFETY: plain loads from map memory.
    let (pos, len) = unsafe {
        (core::ptr::read_volatile(&raw const s.pos), core::ptr::read_volatile(&raw const s.len))
    };
    if pos >= WINDOW as u64 || len > WINDOW as u64 {
        return Answered::Unknown;
    }
    let (pos, len) = (pos as usize, len as usize);
    let mut k = pos;
    // A constant bound: 6.1's verifier cannot bound a loop by `pos + 24`, `pos` unknown.
    let mut j = 0;
    while j < 24 {
        if k >= len {
            return Answered::Other;
        }
        let at = crate::and_mask!(k, 0x7ff);
        // SAFETY: masked into the buffer, as in `step`.
        if unsafe { *s.buf.get_unchecked(at) }.is_ascii_alphabetic() {
            break;
        }
        k += 1;
        j += 1;
    }
    let at = crate::and_mask!(k, 0x7ff);
    let word = crate::window::load_u64(s.buf.as_ptr().wrapping_add(at));
    let (method, n) = if word & 0x00ff_ffff_ffff_ffff == u64::from_le_bytes(*b"OPTIONS\0") {
        (Answered::Options, 7)
    } else if word & 0x0000_ffff_ffff_ffff == u64::from_le_bytes(*b"INVITE\0\0") {
        (Answered::Invite, 6)
    } else if word == u64::from_le_bytes(*b"REGISTER") {
        (Answered::Register, 8)
    } else {
        return Answered::Other;
    };
    if k + n > len {
        return Answered::Other;
    }
    // The method ends there (a longer token is another method); past the answer's end counts
    // as its end.
    let next = if k + n < len {
        let at = crate::and_mask!(k + n, 0x7ff);
        // SAFETY: masked into the buffer, as in `step`.
        unsafe { *s.buf.get_unchecked(at) }
    } else {
        b'\r'
    };
    if next.is_ascii_alphanumeric() || next == b'-' || next == b'_' || next == b'.' {
        Answered::Other
    } else {
        method
    }
}

/// The number of the `CSeq` header the search found (0 when none): with the Call-ID it names
/// the transaction an answer belongs to, so that a retransmission is known for one
/// (`sipguard_common::behaviour::RETRANSMIT_SECS`) while a registration refreshed on its
/// Call-ID is not.
#[inline(always)]
#[must_use]
pub fn sequence(s: &AnswerScratch) -> u32 {
    // SAFETY: plain loads from map memory, as in `method`.
    let (pos, len) = unsafe {
        (core::ptr::read_volatile(&raw const s.pos), core::ptr::read_volatile(&raw const s.len))
    };
    if pos >= WINDOW as u64 || len > WINDOW as u64 {
        return 0;
    }
    let (mut at_byte, len) = (pos as usize, len as usize);
    let mut number: u32 = 0;
    // Blanks (and the colon, after a blank name), then at most ten digits (RFC 3261: below
    // 2**31).
    let mut steps = 0;
    while steps < 16 && at_byte < len {
        let at = crate::and_mask!(at_byte, 0x7ff);
        // SAFETY: masked into the buffer, as in `step`.
        let b = unsafe { *s.buf.get_unchecked(at) };
        if b.is_ascii_digit() {
            number = number.wrapping_mul(10).wrapping_add(u32::from(b - b'0'));
        } else if !matches!(b, b' ' | b'\t' | b':') {
            break;
        }
        at_byte += 1;
        steps += 1;
    }
    number
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_number_is_read_beside_the_method() {
        for (cseq, n) in [
            ("CSeq: 1 INVITE", 1),
            ("CSeq: 314159 REGISTER", 314_159),
            ("cseq :  8\tREGISTER", 8),
            ("CSeq: OPTIONS", 0),
        ] {
            // SAFETY: plain bytes and an integer; all zeros is a value.
            let mut s: Box<AnswerScratch> = unsafe { Box::new_zeroed().assume_init() };
            let text = answer(cseq);
            s.buf[..text.len()].copy_from_slice(text.as_bytes());
            find(&mut s, text.len() as u64);
            assert_eq!(sequence(&s), n, "{cseq}");
        }
    }

    fn answered(text: &str) -> Answered {
        // SAFETY: plain bytes and an integer; all zeros is a value.
        let mut s: Box<AnswerScratch> = unsafe { Box::new_zeroed().assume_init() };
        let n = text.len().min(BUF);
        s.buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        find(&mut s, text.len() as u64);
        method(&s)
    }

    fn answer(cseq: &str) -> String {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: 1@x\r\n{cseq}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn methods_are_read_from_the_cseq_header() {
        assert_eq!(answered(&answer("CSeq: 1 OPTIONS")), Answered::Options);
        assert_eq!(answered(&answer("CSeq: 102 REGISTER")), Answered::Register);
        assert_eq!(answered(&answer("CSeq: 7 INVITE")), Answered::Invite);
        assert_eq!(answered(&answer("CSeq: 7 BYE")), Answered::Other);
        assert_eq!(answered(&answer("CSeq: 7 REGISTERS")), Answered::Other, "another token");
        assert_eq!(answered(&answer("CSeq: 7 INVITES")), Answered::Other, "another token");
        assert_eq!(answered(&answer("CSeq: 7 INVIT")), Answered::Other);
        assert_eq!(answered(&answer("CSeq: 7 OPTIONSX")), Answered::Other, "another token");
        assert_eq!(answered(&answer("CSeq: 7 OPTION")), Answered::Other);
    }

    #[test]
    fn the_call_id_is_found_before_or_after_the_cseq() {
        let call = |text: &str| {
            // SAFETY: as in `answered`.
            let mut s: Box<AnswerScratch> = unsafe { Box::new_zeroed().assume_init() };
            s.buf[..text.len()].copy_from_slice(text.as_bytes());
            find(&mut s, text.len() as u64);
            (method(&s), s.call.found())
        };
        let id = Some(sipguard_common::challenges::call_id(b"1@x"));
        assert_eq!(call(&answer("CSeq: 2 INVITE")), (Answered::Invite, id));
        let after = "SIP/2.0 407 Proxy Authentication Required\r\nCSeq: 2 INVITE\r\ni: 1@x\r\n\r\n";
        assert_eq!(call(after), (Answered::Invite, id));
        let none = "SIP/2.0 407 Proxy Authentication Required\r\nCSeq: 2 INVITE\r\n\r\n";
        assert_eq!(call(none), (Answered::Invite, None));
    }

    #[test]
    fn the_callee_is_found_wherever_its_header_is() {
        let callee = |text: &str| {
            // SAFETY: as in `answered`.
            let mut s: Box<AnswerScratch> = unsafe { Box::new_zeroed().assume_init() };
            s.buf[..text.len()].copy_from_slice(text.as_bytes());
            find(&mut s, text.len() as u64);
            (method(&s), s.call.found().is_some(), s.callee.names_number())
        };
        let number = "SIP/2.0 404 Not Found\r\nCall-ID: 1@x\r\nCSeq: 1 INVITE\r\n\
                      To: <sip:4930127001@b>;tag=2\r\n\r\n";
        assert_eq!(callee(number), (Answered::Invite, true, true), "after the others");
        let first = "SIP/2.0 404 Not Found\r\nt: <sip:4930127001@b>\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(callee(first), (Answered::Invite, false, true));
        let extension = answer("CSeq: 1 INVITE").replace("sip:a@b>;tag=2", "sip:1001@b>;tag=2");
        assert_eq!(callee(&extension), (Answered::Invite, true, false));
    }

    #[test]
    fn header_forms() {
        assert_eq!(answered(&answer("cseq: 1 OPTIONS")), Answered::Options, "any case");
        assert_eq!(answered(&answer("CSEQ:1 OPTIONS")), Answered::Options);
        assert_eq!(answered(&answer("CSeq :  1\tOPTIONS")), Answered::Options, "blanks");
        assert_eq!(answered(&answer("CSeq:\t1 OPTIONS")), Answered::Options);
        assert_eq!(answered(&answer("X-CSeq: 1 OPTIONS")), Answered::Unknown, "not the header");
    }

    #[test]
    fn no_header_within_the_window_is_unknown() {
        assert_eq!(answered("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), Answered::Unknown);
        let long_via = format!("Via: SIP/2.0/UDP {}\r\n", "x".repeat(WINDOW));
        let text = format!("SIP/2.0 200 OK\r\n{long_via}CSeq: 1 OPTIONS\r\n\r\n");
        assert_eq!(answered(&text), Answered::Unknown);
        // Cut inside the header: what is there is all there is.
        let a = answer("CSeq: 1 OPTIONS");
        let cut = a.find("CSeq").unwrap() + 3;
        assert_eq!(answered(&a[..cut]), Answered::Unknown);
    }

    #[test]
    fn an_earlier_answers_bytes_are_not_read() {
        // SAFETY: the scratch is integers and byte arrays, for which zero is a value.
        let mut s: Box<AnswerScratch> = unsafe { Box::new_zeroed().assume_init() };
        let earlier = answer("CSeq: 1 OPTIONS");
        s.buf[..earlier.len()].copy_from_slice(earlier.as_bytes());
        // The same answer cut just before its method: what follows is the earlier one's.
        let cut = earlier.find("OPTIONS").unwrap();
        find(&mut s, cut as u64);
        assert_eq!(method(&s), Answered::Other);
    }
}
