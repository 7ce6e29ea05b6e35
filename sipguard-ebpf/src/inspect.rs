//! Header inspection: the payload window is copied to per-CPU scratch memory, then walked
//! one header line per `bpf_loop` iteration. Each line costs a few word-sized operations to
//! find its colon and end, a compare or two to name its header, and a DFA walk over the value
//! that, for legitimate traffic, dies within a few bytes (see docs/architecture.md).
//!
//! The verifier sees one callback body whatever the number of lines. To keep that true, every
//! offset that survives a loop boundary has the opaque zero from the config added and is
//! masked to the window: the verifier then cannot tell one iteration from the next and stops
//! exploring after one.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_loop, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use sipguard_common::{
    config::Config,
    inspect::{
        Automaton, LINE_WORDS, MAX_LINES, SCORE_THRESHOLD, SIG_CAPACITY, Scope, TABLE_LEN, WINDOW,
        byte_mask, first_flagged, header_scope, keep, lower,
    },
};

use sipguard_ebpf::{
    walk::walk,
    window::{PENDING, Scratch, WalkState, launder, word, word_or_zero},
};

use crate::maps::{AUTOMATA, SCRATCH, SIG_HITS};

const MASK: usize = WINDOW - 1;
const _: () = assert!(TABLE_LEN == 1 << 20, "the table index mask is spelled out in `walk`");
const NO_SCOPE: u64 = 0xff;
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// What inspecting one message found.
#[derive(Default)]
pub(crate) struct Finding {
    /// The signature whose match brought the score to the threshold, if any.
    pub decisive: Option<u16>,
    /// Where the User-Agent (or Server) value sits in the scratch window, if seen.
    pub ua_off: usize,
    pub ua_len: usize,
    /// The header section did not end inside the window and line budget.
    pub truncated: bool,
}

/// What the per-line callback gets: the two memories it works in. Its mutable state is in
/// [`WalkState`], inside the scratch value.
#[repr(C)]
struct Walker {
    scratch: *mut Scratch,
    automaton: *const Automaton,
    config: *const Config,
}

/// Whether the walk is over: the message is decided, and its User-Agent was seen or would
/// not be reported anyway (the event budget is spent).
#[inline(always)]
fn finished(s: &Scratch, config: &Config) -> bool {
    s.walk.decisive != 0 && (s.walk.ua_len != 0 || !crate::events::budget_left(config))
}

/// Scores a signature match: counted once per message, and decisive when it takes the score
/// to the threshold.
#[inline(always)]
fn accept(s: &mut Scratch, value: u32) {
    let sig = (value & 0xffff) as usize & (SIG_CAPACITY as usize - 1);
    let weight = u64::from((value >> 16) & 0xff);
    // The bitmap is not cleared per message: a word counts only once this message has
    // marked it in `seen_used`, and its first use overwrites what an earlier message left.
    let w = (sig >> 6) & (SIG_CAPACITY as usize / 64 - 1);
    let bit = 1u64 << (sig & 63);
    let used = s.walk.seen_used;
    let slot = &mut s.seen[w];
    if used & (1 << w) == 0 {
        *slot = bit;
        s.walk.seen_used = used | (1 << w);
    } else if *slot & bit != 0 {
        return;
    } else {
        *slot |= bit;
    }
    if let Some(hits) = SIG_HITS.get_ptr_mut(sig as u32) {
        // SAFETY: per-CPU slot, touched only by this CPU.
        unsafe { *hits += 1 };
    }
    s.walk.score += weight;
    if s.walk.decisive == 0 && s.walk.score >= u64::from(SCORE_THRESHOLD) {
        s.walk.decisive = sig as u64 + 1;
    }
}

/// Scores the matches the walks of this step noted.
#[inline(always)]
fn score_pending(s: &mut Scratch) {
    let met = s.walk.pending_n as usize;
    let mut p = 0;
    while p < PENDING {
        if p >= met {
            break;
        }
        let value = s.walk.pending[p];
        accept(s, value);
        p += 1;
    }
    s.walk.pending_n = 0;
}

/// First position at or after `from` holding `target` or LF, and whether it is the LF.
#[inline(always)]
fn scan(s: &mut Scratch, len: usize, from: usize, target: u8) -> Option<(usize, bool)> {
    let mut pos = from;
    let mut i = 0;
    while i < LINE_WORDS {
        if pos >= len {
            return None;
        }
        let bytes = word(s, pos);
        let m = byte_mask(bytes, LF) | byte_mask(bytes, target);
        if m != 0 {
            let k = first_flagged(m);
            let at = pos + k;
            if at >= len {
                return None;
            }
            let is_lf = (bytes >> (k * 8)) & 0xff == u64::from(LF);
            let relayed = launder(s, (at << 1) | usize::from(is_lf));
            return Some((relayed >> 1, relayed & 1 != 0));
        }
        pos += 8;
        i += 1;
    }
    None
}

/// The byte at `i` of a 16-byte window held as two words.
#[inline(always)]
fn byte16(lo: u64, hi: u64, i: usize) -> u8 {
    let w = if i < 8 { lo } else { hi };
    ((w >> ((i & 7) * 8)) & 0xff) as u8
}

/// What a line is.
enum Line {
    /// The empty line: the header section is over.
    EndOfHeaders,
    /// Walk the value starting at `value` with `scope` (or nothing, for [`NO_SCOPE`]). No
    /// LF comes before `value`, so the search for the line's end starts there too (the
    /// header name and colon are not searched twice).
    Walk { scope: u64, value: usize },
}

/// How a header line (not the start line, not a continuation) begins, from its first 16
/// bytes.
enum Head {
    /// A name and its colon: the value starts `value_at` bytes into the line.
    Named { scope: u64, value_at: usize },
    /// The line ends (LF) before any colon: no header, nothing to inspect.
    NoColon,
    /// Neither a colon nor an LF in 16 bytes: a long name, which only scope `any` can match.
    LongName,
}

#[inline(always)]
fn head(w0: u64, w1: u64) -> Head {
    // The name ends at the first colon, if the line has one before its LF.
    let lf = byte_mask(w0, LF);
    let lf_at = if lf != 0 {
        first_flagged(lf)
    } else {
        let lf_hi = byte_mask(w1, LF);
        if lf_hi != 0 { 8 + first_flagged(lf_hi) } else { 16 }
    };
    let colon = byte_mask(w0, b':');
    let colon_hi = byte_mask(w1, b':');
    let at = if colon != 0 {
        first_flagged(colon)
    } else if colon_hi != 0 {
        8 + first_flagged(colon_hi)
    } else {
        16
    };
    if at < lf_at {
        let mut name_len = at;
        // Blanks between the name and the colon (RFC 3261 allows them).
        let mut t = 0;
        while t < 4 && name_len > 0 {
            let b = byte16(w0, w1, name_len - 1);
            if b != b' ' && b != b'\t' {
                break;
            }
            name_len -= 1;
            t += 1;
        }
        Head::Named { scope: header_scope(lower(w0), lower(w1), name_len) as u64, value_at: at + 1 }
    } else if lf_at < 16 {
        Head::NoColon
    } else {
        Head::LongName
    }
}

/// Whether the line's first 16 bytes name `Authorization:` (any case): a name of 13 bytes
/// followed by its colon (blanks before the colon are not worth a second look here).
#[inline(always)]
fn credentials(w0: u64, w1: u64) -> bool {
    lower(w0) == u64::from_le_bytes(*b"authoriz")
        && keep(lower(w1), 6) == u64::from_le_bytes(*b"ation:\0\0")
}

/// Whether they begin `Proxy-Authorization` (any case), a name too long for them.
#[inline(always)]
fn proxy_credentials(w0: u64, w1: u64) -> bool {
    lower(w0) == u64::from_le_bytes(*b"proxy-au") && lower(w1) == u64::from_le_bytes(*b"thorizat")
}

/// Names the header on the line at `off` and finds where its value starts.
#[inline(always)]
fn dispatch(s: &mut Scratch, a: &Automaton, index: u64, len: usize, off: usize) -> Line {
    let w0 = word(s, off);
    let w1 = word_or_zero(s, len, off + 8);
    let first = (w0 & 0xff) as u8;
    let mut scope = NO_SCOPE;
    let mut value = off;
    if index == 0 {
        // The start line: the Request-URI follows the method's space (methods are at most
        // 10 letters, so it is in the first 16 bytes, and no LF comes before it).
        let sp = byte_mask(w0, b' ');
        let sp_hi = byte_mask(w1, b' ');
        if s.walk.request != 0 {
            if sp != 0 {
                scope = Scope::RequestUri as u64;
                value = off + first_flagged(sp) + 1;
            } else if sp_hi != 0 {
                scope = Scope::RequestUri as u64;
                value = off + 8 + first_flagged(sp_hi) + 1;
            }
        }
    } else if first == CR || first == LF {
        return Line::EndOfHeaders;
    } else if s.walk.mid_line != 0 {
        s.walk.mid_line = 0;
    } else if first == b' ' || first == b'\t' {
        // A folded continuation of the previous header's value.
        scope = s.walk.last_scope & 0xff;
    } else {
        match head(w0, w1) {
            Head::Named { scope: named, value_at } => {
                scope = named;
                value = off + value_at;
                if named == Scope::Any as u64 && credentials(w0, w1) {
                    s.walk.auth_at = value as u64;
                }
            }
            Head::NoColon => {}
            Head::LongName => {
                if proxy_credentials(w0, w1)
                    && let Some((at, false)) = scan(s, len, off + 16, b':')
                {
                    s.walk.auth_at = (at + 1) as u64;
                }
                if a.any_headers != 0 {
                    // Only scope `any` cares about a long name: find its colon further on.
                    if let Some((at, false)) = scan(s, len, off + 16, b':') {
                        scope = Scope::Any as u64;
                        value = at + 1;
                    }
                }
            }
        }
        s.walk.last_scope = scope;
    }
    Line::Walk { scope, value }
}

/// Walks one line (the start line for `index` 0). Returns 1 to stop the loop.
extern "C" fn line(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Walker on the program's stack, which outlives the loop; its
    // pointers were checked non-null before the loop started.
    let walker = unsafe { &*ctx.cast::<Walker>() };
    let s = unsafe { &mut *walker.scratch };
    let a = unsafe { &*walker.automaton };
    let config = unsafe { &*walker.config };
    // Everything read back from the walk state is unknown to the verifier: bound it here.
    let len = s.walk.len as usize;
    if len > WINDOW {
        return 1;
    }
    // A URI walk queued by the previous line comes first. (Run in that line's step, after the
    // search for its `<`, it would be verified once per way out of the search.)
    let uri_entry = s.walk.uri_entry;
    if uri_entry != 0 {
        s.walk.uri_entry = 0;
        let start = s.walk.uri_start as usize;
        if s.walk.decisive == 0 && start < len {
            walk(s, a, len, start, (uri_entry & 0xffff) as u16);
            score_pending(s);
        }
        if finished(s, config) {
            return 1;
        }
    }
    let off = s.walk.off as usize;
    if off >= len {
        return 1;
    }

    let (scope, value) = match dispatch(s, a, index, len, off) {
        Line::EndOfHeaders => {
            s.walk.ended = 1;
            return 1;
        }
        Line::Walk { scope, value } => (scope, value),
    };

    // Each dispatch path above ends with its own constant scope. Going through map memory
    // (a volatile load the compiler cannot forward) turns it into one unknown value, so the
    // walks below are verified once, not once per scope.
    s.walk.scope = scope;
    s.walk.value = value as u64;
    // SAFETY: plain loads of fields just written.
    let (scope, value) = unsafe {
        (
            core::ptr::read_volatile(&raw const s.walk.scope) & 0xff,
            core::ptr::read_volatile(&raw const s.walk.value) as usize,
        )
    };
    // Where the domain check (`domains`) will look: the Request-URI and the To header.
    if scope == Scope::RequestUri as u64 {
        s.walk.ruri = value as u64;
    }
    if scope == Scope::To as u64 {
        s.walk.to_at = value as u64;
    }
    if scope != NO_SCOPE && s.walk.decisive == 0 {
        let sc = (scope & 7) as usize;
        let entry = a.entry[(sc * 2) & 15];
        if entry != 0 && (sc != Scope::Any as usize || a.any_headers != 0) {
            walk(s, a, len, value, entry);
        }
        // Name-addr headers: queue a walk from the bracketed URI for the next step. Run
        // here, it would be verified once per exit of the scan before it.
        let uri_entry = a.entry[(sc * 2 + 1) & 15];
        if uri_entry != 0
            && (Scope::From as usize..=Scope::Contact as usize).contains(&sc)
            && let Some((lt, false)) = scan(s, len, value, b'<')
        {
            s.walk.uri_start = (lt + 1) as u64;
            s.walk.uri_entry = u64::from(uri_entry);
        }
    }
    score_pending(s);
    let user_agent = scope == Scope::UserAgent as u64 && s.walk.ua_len == 0 && value < len;
    if user_agent {
        s.walk.ua_off = value as u64;
    }

    // On to the next line.
    let next = if let Some((lf, _)) = scan(s, len, value, LF) {
        if user_agent && lf > value {
            s.walk.ua_len = (lf - value) as u64;
        }
        lf + 1
    } else {
        // A line longer than the search budget: continue it next time, undispatched.
        s.walk.mid_line = 1;
        value + LINE_WORDS * 8
    };
    s.walk.off = next as u64;
    // Done once decided and the User-Agent seen, if an incident record will want it.
    i64::from(finished(s, config))
}

/// Starts the walk state for a message. Field by field with volatile word stores: a struct
/// literal becomes a call to `memset`, which on BPF is a loop of byte stores (a tenth of the
/// inspection's time).
#[inline(always)]
fn reset(w: &mut WalkState, len: usize, truncated: bool, request: bool) {
    let fields: [(&mut u64, u64); 21] = [
        (&mut w.truncated, u64::from(truncated)),
        (&mut w.len, len as u64),
        (&mut w.off, 0),
        (&mut w.request, u64::from(request)),
        (&mut w.score, 0),
        (&mut w.decisive, 0),
        (&mut w.seen_used, 0),
        (&mut w.last_scope, NO_SCOPE),
        (&mut w.mid_line, 0),
        (&mut w.ua_off, 0),
        (&mut w.ua_len, 0),
        (&mut w.ended, 0),
        (&mut w.scope, 0),
        (&mut w.value, 0),
        (&mut w.uri_start, 0),
        (&mut w.uri_entry, 0),
        (&mut w.pending_n, 0),
        (&mut w.relay, 0),
        (&mut w.ruri, 0),
        (&mut w.to_at, 0),
        (&mut w.auth_at, 0),
    ];
    for (field, value) in fields {
        // SAFETY: a store to a field of this CPU's scratch value.
        unsafe { core::ptr::write_volatile(field, value) };
    }
}

/// Inspects the SIP message at `payload_offset`. `request` says whether it starts with a
/// request line (whose Request-URI is then walked too).
#[inline(always)]
pub(crate) fn inspect(
    ctx: &XdpContext,
    payload_offset: usize,
    config: &Config,
    request: bool,
) -> Option<Finding> {
    let automaton = AUTOMATA.get_ptr(u32::from(config.automaton_slot & 1))?;
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: plain helper calls on the program's own context and per-CPU scratch memory.
    let total = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
    if total <= payload_offset || payload_offset > 0xffff {
        return None;
    }
    let mut len = total - payload_offset;
    let truncated = len > WINDOW;
    if truncated {
        len = WINDOW;
    }
    if len < 16 {
        return None;
    }
    // SAFETY: the buffer has room for WINDOW bytes plus the zero word written after them;
    // the scratch value is this CPU's alone for the duration of the program.
    let s = unsafe { &mut *scratch };
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, payload_offset as u32, s.buf.as_mut_ptr().cast(), len as u32)
            != 0
        {
            return None;
        }
        // A zero word after the data: NUL ends every walk, so no walk reads stale bytes.
        core::ptr::write_unaligned(s.buf.as_mut_ptr().add(len).cast::<u64>(), 0);
    }
    reset(&mut s.walk, len, truncated, request);
    let mut walker = Walker { scratch, automaton, config };
    // SAFETY: `line` only dereferences the Walker passed as its context.
    unsafe {
        bpf_loop(MAX_LINES, line as *mut c_void, (&raw mut walker).cast(), 0);
    }
    let st = &s.walk;
    let finding = Finding {
        decisive: if st.decisive == 0 { None } else { Some((st.decisive - 1) as u16) },
        ua_off: (st.ua_off as usize) & MASK,
        ua_len: (st.ua_len as usize) & MASK,
        truncated: st.truncated != 0 || (st.ended == 0 && st.decisive == 0),
    };
    Some(finding)
}
