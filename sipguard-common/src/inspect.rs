//! Layout of the signature automaton and the pure helpers the XDP program uses to walk SIP
//! header lines. Shared so the host tests run exactly the code the kernel runs.
//!
//! Header values are matched by a DFA compiled in userspace (`sipguard::signatures`): one
//! table for all scopes, indexed by `state * CLASS_COUNT + class`, where `class` is the byte's
//! equivalence class (case folded). Each entry holds the next state and two flags: [`STOP`]
//! (the walk ends: the next state is dead or accepting) and [`ACCEPT`] (a signature matched).
//! Terminators (CR/LF for values, `>` for bracketed URIs, SP for the Request-URI) and the
//! implicit start anchor are compiled into the table, so the kernel's loop has one branch per
//! byte and no special cases.

/// Byte equivalence classes (a class table maps each byte to one).
pub const CLASS_COUNT: usize = 64;
/// States the automaton may have; the table is `MAX_STATES * CLASS_COUNT` entries.
pub const MAX_STATES: usize = 16_384;
pub const TABLE_LEN: usize = MAX_STATES * CLASS_COUNT;
/// The dead state: nothing can match any more.
pub const DEAD: u16 = 0;
/// Bits of an entry that hold the next state.
pub const STATE_MASK: u16 = 0x3fff;
/// The walk stops after this transition (dead or accepting next state).
pub const STOP: u16 = 0x4000;
/// The next state accepts a signature: see [`Automaton::accept`].
pub const ACCEPT: u16 = 0x8000;
/// A message is dropped when the weights of the signatures it matches reach this.
pub const SCORE_THRESHOLD: u32 = 100;
/// Signature slots.
pub const SIG_CAPACITY: u32 = 1024;
/// Longest signature value in bytes.
pub const MAX_PATTERN_LEN: usize = 96;
/// Longest signature name in bytes.
pub const MAX_NAME_LEN: usize = 48;
/// Bytes of header section examined (the inspection window; covers a 1500-byte MTU).
pub const WINDOW: usize = 2048;
/// Header lines examined, the start line included.
pub const MAX_LINES: u32 = 128;
/// Iterations of a walk over one value: each takes one [`Run`] or up to 8 single-byte steps
/// (at least one; fewer than 8 only where a run starts). So `contains` automata, which have
/// no runs, read up to 256 bytes of a value, and anchored patterns are followed for at least
/// 3.5 bytes per iteration (a byte, then a run of [`MIN_RUN`]): 112, more than the longest
/// pattern and its terminator.
pub const WALK_STEPS: usize = 32;
/// Shortest literal run worth a word compare; see [`WALK_STEPS`] for why not shorter.
pub const MIN_RUN: usize = 6;
/// Words searched for the end of a line before the next step takes over (long lines are
/// continued, not dropped from inspection).
pub const LINE_WORDS: usize = 32;

/// Which part of a SIP message a signature looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Scope {
    RequestUri = 0,
    Via = 1,
    From = 2,
    To = 3,
    Contact = 4,
    CallId = 5,
    /// `User-Agent` in requests, `Server` in responses.
    UserAgent = 6,
    /// Every header line, known or not.
    Any = 7,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::RequestUri,
        Scope::Via,
        Scope::From,
        Scope::To,
        Scope::Contact,
        Scope::CallId,
        Scope::UserAgent,
        Scope::Any,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Scope::RequestUri => "request-uri",
            Scope::Via => "via",
            Scope::From => "from",
            Scope::To => "to",
            Scope::Contact => "contact",
            Scope::CallId => "call-id",
            Scope::UserAgent => "user-agent",
            Scope::Any => "any",
        }
    }

    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Scope> {
        if (v as usize) < Scope::ALL.len() { Some(Scope::ALL[v as usize]) } else { None }
    }

    /// Headers whose value is a name-addr: prefix and equals signatures also anchor at the
    /// start of the bracketed URI.
    #[must_use]
    #[inline(always)]
    pub const fn has_uri(self) -> bool {
        matches!(self, Scope::From | Scope::To | Scope::Contact)
    }
}

/// Where a walk starts: the value of a header, the bracketed URI of a name-addr, or the
/// Request-URI (terminated by a space).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Value = 0,
    Uri = 1,
}

/// Index into [`Automaton::entry`].
#[must_use]
#[inline(always)]
pub const fn entry_index(scope: Scope, mode: Mode) -> usize {
    scope as usize * 2 + mode as usize
}

/// An accept entry: signature index and its weight.
#[must_use]
#[inline(always)]
pub const fn accept_value(sig: u16, weight: u8) -> u32 {
    ((weight as u32) << 16) | sig as u32
}

#[must_use]
#[inline(always)]
pub const fn accept_sig(v: u32) -> u16 {
    (v & 0xffff) as u16
}

#[must_use]
#[inline(always)]
pub const fn accept_weight(v: u32) -> u32 {
    (v >> 16) & 0xff
}

/// The compiled signature set, one value of `SG_AUTOMATA` (two slots, double-buffered).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Automaton {
    pub table: [u16; TABLE_LEN],
    /// Per state: [`accept_value`] of the signature it accepts (weight 0: none).
    pub accept: [u32; MAX_STATES],
    pub classes: [u8; 256],
    /// Entry state per [`entry_index`]; [`DEAD`] when the scope has no signatures.
    pub entry: [u16; 16],
    /// Per state at or above [`Automaton::run_base`]: the literal run that starts there.
    pub runs: [Run; MAX_STATES],
    /// Set when some signature has scope `any` (unknown headers must be walked too).
    pub any_headers: u32,
    /// Signatures compiled in (for status output).
    pub signatures: u32,
    pub states: u32,
    /// States numbered from here on start a [`Run`]; the others do not.
    pub run_base: u32,
}

const _: () = assert!(
    size_of::<Automaton>() == TABLE_LEN * 2 + MAX_STATES * 4 + 256 + 32 + MAX_STATES * 32 + 16
);

/// A literal run: from its state, for [`MIN_RUN`] to 8 bytes, exactly one byte (or one letter in either
/// case) keeps the walk alive and no transition stops or accepts. The walk then compares a
/// whole word instead of stepping byte by byte: `(text | fold) & mask == expect` holds exactly
/// when every byte steps along the run; any other byte leads to the dead state. Anchored
/// patterns (`prefix`, `equals`) are mostly runs, so this is what makes a Via value that shares
/// "SIP/2.0/UDP " with a signature cheap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Run {
    /// The run's bytes, letters in lower case, first byte lowest (a little-endian load).
    pub expect: u64,
    /// `0x20` at each letter: OR'ed into the text, it folds the letter's case.
    pub fold: u64,
    /// `0xff` at each byte of the run.
    pub mask: u64,
    /// The state after the run.
    pub target: u32,
    /// Bytes in the run.
    pub len: u32,
}

const _: () = assert!(size_of::<Run>() == 32);

/// How a signature's value is compared (always case-insensitively).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    Contains = 0,
    /// At the start of the value (and of the bracketed URI, for name-addr headers).
    Prefix = 1,
    /// The whole value (or the whole bracketed URI), trailing blanks allowed.
    Equals = 2,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Contains, Kind::Prefix, Kind::Equals];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Contains => "contains",
            Kind::Prefix => "prefix",
            Kind::Equals => "equals",
        }
    }

    #[must_use]
    pub const fn from_u8(v: u8) -> Option<Kind> {
        if (v as usize) < Kind::ALL.len() { Some(Kind::ALL[v as usize]) } else { None }
    }
}

/// A signature definition as stored in `SG_SIGS` (the source of truth the automaton is
/// compiled from; bpffs holds no files, so definitions live in a map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SigRecord {
    /// 1 when the slot holds a signature.
    pub used: u8,
    pub scope: u8,
    pub kind: u8,
    pub weight: u8,
    pub name_len: u8,
    pub value_len: u8,
    pub reserved: [u8; 2],
    pub name: [u8; MAX_NAME_LEN],
    pub value: [u8; MAX_PATTERN_LEN],
}

const _: () = assert!(size_of::<SigRecord>() == 8 + MAX_NAME_LEN + MAX_PATTERN_LEN);

// ---------------------------------------------------------------------------------------------
// Word-at-a-time helpers. Words are little-endian: byte `i` of the packet window is bits
// `8i..8i+8`.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in every byte of `w` equal to `b` (exact for the lowest match; bytes above a
/// match may be flagged spuriously, so only the lowest flagged byte is meaningful).
#[must_use]
#[inline(always)]
pub const fn byte_mask(w: u64, b: u8) -> u64 {
    let x = w ^ (LO * b as u64);
    x.wrapping_sub(LO) & !x & HI
}

/// Index (0..8) of the lowest flagged byte of a non-zero [`byte_mask`].
#[must_use]
#[inline(always)]
pub const fn first_flagged(mask: u64) -> usize {
    let low = mask & mask.wrapping_neg();
    // `low` is 0x80 << 8k; multiplying (low >> 7) by this constant puts k in the top byte.
    (((low >> 7).wrapping_mul(0x0001_0203_0405_0607)) >> 56) as usize
}

/// ASCII-lowercases letters; leaves `-`, `:`, digits and whitespace as they are. Other bytes
/// may change, which is harmless for comparing against lower-case header names.
#[must_use]
#[inline(always)]
pub const fn lower(w: u64) -> u64 {
    w | (LO * 0x20)
}

/// Keeps the first `n` bytes of `w` (n in 0..=8).
#[must_use]
#[inline(always)]
pub const fn keep(w: u64, n: usize) -> u64 {
    if n >= 8 { w } else { w & ((1u64 << (n * 8)) - 1) }
}

const fn word(s: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < s.len() && i < 8 {
        w |= (s[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// The scope of a header given its name: `lo`/`hi` are the first 16 bytes of the line
/// lowercased with [`lower`], `len` the name's length (colon and trailing blanks excluded).
/// Unknown names are [`Scope::Any`].
#[must_use]
#[inline(always)]
pub const fn header_scope(lo: u64, hi: u64, len: usize) -> Scope {
    let name = keep(lo, len);
    match len {
        1 => match (name & 0xff) as u8 {
            b'v' => Scope::Via,
            b'f' => Scope::From,
            b't' => Scope::To,
            b'm' => Scope::Contact,
            b'i' => Scope::CallId,
            _ => Scope::Any,
        },
        2 if name == word(b"to") => Scope::To,
        3 if name == word(b"via") => Scope::Via,
        4 if name == word(b"from") => Scope::From,
        6 if name == word(b"server") => Scope::UserAgent,
        7 if name == word(b"contact") => Scope::Contact,
        7 if name == word(b"call-id") => Scope::CallId,
        10 if lo == word(b"user-age") && keep(hi, 2) == word(b"nt") => Scope::UserAgent,
        _ => Scope::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b[..s.len().min(8)].copy_from_slice(&s[..s.len().min(8)]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn byte_mask_finds_the_first_match() {
        for (text, b, want) in [
            (&b"abc\ndef\n"[..], b'\n', Some(3)),
            (b"\nbcdefgh", b'\n', Some(0)),
            (b"abcdefg\n", b'\n', Some(7)),
            (b"abcdefgh", b'\n', None),
            (b"a:b:c:d:", b':', Some(1)),
            (b"\x01\x0b\x09\x0a\x0a\0\0\0", b'\n', Some(3)),
            (b"\x0b\x0a\x0b\x0b\x0b\x0b\x0b\x0b", b'\n', Some(1)),
        ] {
            let m = byte_mask(w(text), b);
            assert_eq!(if m == 0 { None } else { Some(first_flagged(m)) }, want, "{text:?}");
        }
    }

    #[test]
    fn byte_mask_is_exact_for_every_position_and_value() {
        for pos in 0..8 {
            for b in 0..=255u8 {
                let mut bytes = [b.wrapping_add(1); 8];
                bytes[pos] = b;
                for (i, x) in (1u8..).zip(bytes.iter_mut().take(pos)) {
                    *x = b ^ i;
                }
                let m = byte_mask(u64::from_le_bytes(bytes), b);
                assert_ne!(m, 0);
                assert_eq!(first_flagged(m), pos, "byte {b:#x} at {pos}");
            }
        }
    }

    fn scope_of(name: &str) -> Scope {
        let mut bytes = [b' '; 16];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        bytes[name.len()] = b':';
        header_scope(lower(w(&bytes[..8])), lower(w(&bytes[8..16])), name.len())
    }

    #[test]
    fn header_names_long_compact_and_any_case() {
        for (name, scope) in [
            ("Via", Scope::Via),
            ("v", Scope::Via),
            ("V", Scope::Via),
            ("FROM", Scope::From),
            ("f", Scope::From),
            ("To", Scope::To),
            ("t", Scope::To),
            ("Contact", Scope::Contact),
            ("m", Scope::Contact),
            ("Call-ID", Scope::CallId),
            ("call-id", Scope::CallId),
            ("i", Scope::CallId),
            ("User-Agent", Scope::UserAgent),
            ("user-agent", Scope::UserAgent),
            ("Server", Scope::UserAgent),
            ("CSeq", Scope::Any),
            ("Content-Length", Scope::Any),
            ("l", Scope::Any),
            ("Viaa", Scope::Any),
            ("Tox", Scope::Any),
            ("User-Agents", Scope::Any),
            ("Max-Forwards", Scope::Any),
        ] {
            assert_eq!(scope_of(name), scope, "{name}");
        }
    }

    #[test]
    fn accept_values_round_trip() {
        let v = accept_value(1023, 100);
        assert_eq!((accept_sig(v), accept_weight(v)), (1023, 100));
    }
}
