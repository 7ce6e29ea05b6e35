//! Whom an answer's `To` header names: the user part of its URI, as far as `not_found` needs
//! it. A "not found" answer to a number that a party with standing dialled is a dialer's
//! stale list, not an enumeration (`crate::behaviour::counts_user`); the answer repeats the
//! request's `To`, so the response program learns the callee from the answer alone.
//!
//! Map-free and fed a byte at a time, beside the `CSeq` and Call-ID searches of the same
//! pass (the kernel's `bpf_loop` checks one step, not one per byte).

use crate::behaviour::LONG_NUMBER_LEN;

/// The search's state, in the response program's per-CPU scratch memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CalleeScan {
    /// The last four bytes seen, each `| 0x20` (which lowers letters), the newest lowest.
    pub acc: u32,
    /// [`CalleeScan::SEARCHING`], [`CalleeScan::VALUE`], [`CalleeScan::USER`],
    /// [`CalleeScan::DONE`] or [`CalleeScan::NO_USER`].
    pub state: u32,
    /// Bytes of the user part so far.
    pub len: u32,
    pub reserved: u32,
}
const _: () = assert!(size_of::<CalleeScan>() == 16);

/// Four lowered bytes as [`CalleeScan::acc`] holds them.
const fn word(b: [u8; 4]) -> u32 {
    u32::from_be_bytes([b[0] | 0x20, b[1] | 0x20, b[2] | 0x20, b[3] | 0x20])
}
/// A line starting `To` and a separator (`\n` lowers to `*`, as in `crate::challenges`).
const TO_COLON: u32 = word(*b"\nto:");
const TO_SPACE: u32 = word(*b"\nto ");
const TO_TAB: u32 = word(*b"\nto\t");
/// The compact form, `t`, in the low three bytes.
const T_COLON: u32 = word(*b"\0\nt:") & 0x00ff_ffff;
const T_SPACE: u32 = word(*b"\0\nt ") & 0x00ff_ffff;
const T_TAB: u32 = word(*b"\0\nt\t") & 0x00ff_ffff;
/// The schemes whose colon starts the user part (`sips:` ends as `ips:`).
const SIP: u32 = word(*b"sip:");
const SIPS: u32 = word(*b"ips:");
const TEL: u32 = word(*b"tel:");

impl CalleeScan {
    pub const SEARCHING: u32 = 0;
    /// In the header's value, before the URI's scheme ended.
    pub const VALUE: u32 = 1;
    /// In what may be the user part.
    pub const USER: u32 = 2;
    /// Found: [`CalleeScan::len`] is the user part's length.
    pub const DONE: u32 = 3;
    /// The URI has no user part (or the header ended first).
    pub const NO_USER: u32 = 4;

    /// Starts a new search in place.
    ///
    /// # Safety
    /// `p` must point to a `CalleeScan` the caller may write.
    #[inline(always)]
    pub unsafe fn restart(p: *mut CalleeScan) {
        // SAFETY: the caller's promise. Volatile: the verifier must see each store, whichever
        // search ran before.
        unsafe {
            core::ptr::write_volatile(&raw mut (*p).acc, 0);
            core::ptr::write_volatile(&raw mut (*p).state, Self::SEARCHING);
            core::ptr::write_volatile(&raw mut (*p).len, 0);
        }
    }

    /// Feeds one byte; returns true once the search is over.
    #[inline(always)]
    pub fn step(&mut self, b: u8) -> bool {
        match self.state {
            Self::SEARCHING => {
                let acc = (self.acc << 8) | u32::from(b | 0x20);
                self.acc = acc;
                let three = acc & 0x00ff_ffff;
                if acc == TO_COLON
                    || acc == TO_SPACE
                    || acc == TO_TAB
                    || three == T_COLON
                    || three == T_SPACE
                    || three == T_TAB
                {
                    self.state = Self::VALUE;
                }
                false
            }
            Self::VALUE => {
                if b == b'\r' || b == b'\n' {
                    self.state = Self::NO_USER;
                    return true;
                }
                let acc = (self.acc << 8) | u32::from(b | 0x20);
                self.acc = acc;
                if acc == SIP || acc == SIPS || acc == TEL {
                    self.state = Self::USER;
                }
                false
            }
            Self::USER => match b {
                // As the XDP program reads a request's `To`: a user part ends at `@`; a URI
                // without one names only a host.
                b'@' => {
                    self.state = Self::DONE;
                    true
                }
                b';' | b'>' | b'?' | b'\r' | b'\n' | b' ' | b'\t' => {
                    self.state = Self::NO_USER;
                    true
                }
                _ => {
                    self.len = self.len.saturating_add(1);
                    false
                }
            },
            _ => true,
        }
    }

    /// Whether the answer names a number (a user part of [`LONG_NUMBER_LEN`] or more), not
    /// an extension.
    #[must_use]
    #[inline(always)]
    pub const fn names_number(&self) -> bool {
        #[expect(clippy::cast_possible_truncation, reason = "a constant of 7")]
        let long = LONG_NUMBER_LEN as u32;
        self.state == Self::DONE && self.len >= long
    }
}

/// The whole search over `answer`, as the kernel runs it a byte at a time.
#[must_use]
pub fn names_number(answer: &[u8]) -> bool {
    let mut scan = CalleeScan::default();
    for &b in answer {
        if scan.step(b) {
            break;
        }
    }
    scan.names_number()
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use super::*;

    fn answer(to: &str) -> alloc::string::String {
        alloc::format!(
            "SIP/2.0 404 Not Found\r\nVia: SIP/2.0/UDP 10.0.0.3:5063;branch=z9hG4bK1\r\n\
             From: <sip:trunk@10.80.0.1>;tag=1\r\n{to}\r\nCall-ID: 1-2@10.0.0.3\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn a_number_is_told_from_an_extension() {
        for (to, number) in [
            ("To: <sip:4930127001@10.80.0.1>;tag=x", true),
            ("To: <sips:4930127001@pbx.example>", true),
            ("to:sip:0049301270@h", true),
            ("t: \"Sales\" <sip:+4930127@h>", true),
            ("TO\t: <tel:4930127001@h>", true),
            ("To: <sip:1001@10.80.0.1>;tag=x", false),
            ("To: <sip:123456@h>", false),
            // No user part: a host is no number, however long its name.
            ("To: <sip:pbx.example.com>", false),
            ("To: <sip:pbx.example.com;transport=udp>", false),
            ("To: \"4930127001\"", false),
        ] {
            assert_eq!(names_number(answer(to).as_bytes()), number, "{to}");
        }
    }

    #[test]
    fn other_headers_are_not_the_callee() {
        // `Reply-To` and a `From` naming a number are not the `To` header.
        let text = "SIP/2.0 404 Not Found\r\nReply-To: <sip:4930127001@h>\r\n\
                    From: <sip:4930127001@h>\r\nTo: <sip:100@h>\r\n\r\n";
        assert!(!names_number(text.as_bytes()));
        assert!(!names_number(b"SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
    }
}
