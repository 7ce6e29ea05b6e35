//! One header line per `bpf_loop` step: name its header with a few word-sized operations,
//! walk its value through the automaton, score what the walk met, find the line's end.
//!
//! The step is written as phases that hand each other everything through the scratch value
//! (`window::load`/`store`): only pointers live in registers from one phase to the next. So
//! whichever way a phase ended (which header, which search exit, which walk exit), the next
//! starts in the same verifier state and is checked once; and every step starts like every
//! other, so the callback converges at once. Each search and the walk compare positions
//! with a fresh copy of the data length: newer verifiers learn from comparing two registers,
//! and a length narrowed differently on each way out of a search would make each way a
//! state of its own.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use sipguard_common::{
    config::Config,
    inspect::{Automaton, LINE_WORDS, Scope, byte_mask, first_flagged, header_scope, keep, lower},
};
use sipguard_ebpf::{
    packed::Stop,
    walk,
    window::{Scratch, data_len, launder, load, store, word, word_or_zero},
};

use super::score::score_pending;

pub(super) const NO_SCOPE: u64 = 0xff;
const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// What the per-line callback gets: the memories it works in. Its mutable state is in
/// `WalkState`, inside the scratch value.
#[repr(C)]
pub(super) struct Walker {
    pub scratch: *mut Scratch,
    pub automaton: *const Automaton,
    pub config: *const Config,
}

/// Walks one line (the start line for `index` 0). Returns 1 to stop the loop.
pub(super) extern "C" fn line(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Walker on the stage's stack, which outlives the loop; its
    // pointers were checked non-null before the loop started.
    let walker = unsafe { &*ctx.cast::<Walker>() };
    // SAFETY: this CPU's scratch value, checked non-null; nothing else uses it meanwhile.
    let s = unsafe { &mut *walker.scratch };
    // SAFETY: the live automaton and the configuration, map values checked non-null.
    let a = unsafe { &*walker.automaton };
    // SAFETY: as above.
    let config = unsafe { &*walker.config };
    // A URI walk the previous line queued comes first. (Run in that line's step, after the
    // search for its `<`, it would be checked once per way out of the search.)
    if load(&s.walk.uri_entry) != 0 {
        walk_queued_uri(walker, s, a);
        if finished(s, config) {
            return 1;
        }
    }
    if !dispatch(walker, s, a, index) {
        return 1;
    }
    walk_value(walker, s, a);
    queue_uri(walker, s, a);
    score_pending(s);
    next_line(walker, s);
    // Done once decided and the User-Agent seen, if an incident record will want it.
    i64::from(finished(s, config))
}

/// Whether the walk is over: the message is decided, and its User-Agent was seen or would
/// not be reported anyway (the event budget is spent).
#[inline(always)]
fn finished(s: &Scratch, config: &Config) -> bool {
    load(&s.walk.decisive) != 0
        && (load(&s.walk.ua_len) != 0 || !crate::events::budget_left(config))
}

/// Runs the URI walk the previous line queued (a name-addr header's bracketed URI).
#[inline(always)]
fn walk_queued_uri(walker: &Walker, s: &mut Scratch, a: &Automaton) {
    let entry = load(&s.walk.uri_entry);
    store(&mut s.walk.uri_entry, 0);
    if load(&s.walk.decisive) == 0 {
        run_walk(walker, s, a, load(&s.walk.uri_start) as usize, (entry & 0xffff) as u16);
        score_pending(s);
    }
}

/// Names the header on the line at `WalkState::off` and notes its scope and where its value
/// starts (`WalkState::scope`, `value`), and where the domain check and the credentials'
/// search will look. Returns false when the headers are over (or the data is).
#[inline(always)]
fn dispatch(walker: &Walker, s: &mut Scratch, a: &Automaton, index: u64) -> bool {
    let len = data_len(s);
    let off = load(&s.walk.off) as usize;
    if off >= len {
        return false;
    }
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
        if load(&s.walk.request) != 0 {
            if sp != 0 {
                scope = Scope::RequestUri as u64;
                value = off + first_flagged(sp) + 1;
            } else if sp_hi != 0 {
                scope = Scope::RequestUri as u64;
                value = off + 8 + first_flagged(sp_hi) + 1;
            }
        }
    } else if first == CR || first == LF {
        store(&mut s.walk.ended, 1);
        return false;
    } else if load(&s.walk.mid_line) != 0 {
        store(&mut s.walk.mid_line, 0);
    } else if first == b' ' || first == b'\t' {
        // A folded continuation of the previous header's value.
        scope = load(&s.walk.last_scope) & 0xff;
    } else {
        match head(w0, w1) {
            Head::Named { scope: named, value_at } => {
                scope = named;
                value = off + value_at;
                if named == Scope::Any as u64 && credentials(w0, w1) {
                    store(&mut s.walk.auth_at, value as u64);
                }
            }
            Head::NoColon => {}
            Head::LongName => {
                // Only scope `any` and the credentials care about a long name: find its
                // colon further on, once for both. (The test is made again after the search,
                // from the words: a flag kept across it costs the verifier more.)
                if (proxy_credentials(w0, w1) || a.any_headers != 0)
                    && let Some((at, false)) = scan::<SCAN_INLINE>(walker, s, off + 16, b':')
                {
                    if proxy_credentials(w0, w1) {
                        store(&mut s.walk.auth_at, (at + 1) as u64);
                    }
                    if a.any_headers != 0 {
                        scope = Scope::Any as u64;
                        value = at + 1;
                    }
                }
            }
        }
        store(&mut s.walk.last_scope, scope);
    }
    // Where the domain check (`addressee`) will look: the Request-URI and the To header.
    if scope == Scope::RequestUri as u64 {
        store(&mut s.walk.ruri, value as u64);
    }
    if scope == Scope::To as u64 {
        store(&mut s.walk.to_at, value as u64);
    }
    store(&mut s.walk.scope, scope);
    store(&mut s.walk.value, value as u64);
    true
}

/// Walks the line's value from the automaton's entry for its scope.
#[inline(always)]
fn walk_value(walker: &Walker, s: &mut Scratch, a: &Automaton) {
    let scope = load(&s.walk.scope) & 0xff;
    if scope == NO_SCOPE || load(&s.walk.decisive) != 0 {
        return;
    }
    let sc = (scope & 7) as usize;
    if sc == Scope::Any as usize && a.any_headers == 0 {
        return;
    }
    let entry = a.entry[(sc * 2) & 15];
    run_walk(walker, s, a, load(&s.walk.value) as usize, entry);
}

/// For a name-addr header (From, To, Contact), queues a walk from its bracketed URI for the
/// next step.
#[inline(always)]
fn queue_uri(walker: &Walker, s: &mut Scratch, a: &Automaton) {
    let sc = (load(&s.walk.scope) & 0xff) as usize;
    if !(Scope::From as usize..=Scope::Contact as usize).contains(&sc)
        || load(&s.walk.decisive) != 0
    {
        return;
    }
    let uri_entry = a.entry[(sc * 2 + 1) & 15];
    if uri_entry != 0
        && let Some((lt, false)) =
            scan::<SCAN_INLINE>(walker, s, load(&s.walk.value) as usize, b'<')
    {
        store(&mut s.walk.uri_start, (lt + 1) as u64);
        store(&mut s.walk.uri_entry, u64::from(uri_entry));
    }
}

/// Notes the User-Agent's place and moves on to the next line.
#[inline(always)]
fn next_line(walker: &Walker, s: &mut Scratch) {
    let value = load(&s.walk.value) as usize;
    if user_agent(s) {
        store(&mut s.walk.ua_off, value as u64);
    }
    let next = if let Some((lf, _)) = scan::<LINE_INLINE>(walker, s, value, LF) {
        // The User-Agent's start, read back: kept in registers across the search, it and its
        // line's start would make each way out of the search a state of its own.
        let value = load(&s.walk.value) as usize;
        if user_agent(s) && load(&s.walk.ua_off) as usize == value && lf > value {
            store(&mut s.walk.ua_len, (lf - value) as u64);
        }
        lf + 1
    } else {
        // A line longer than the search budget: continue it next time, undispatched.
        store(&mut s.walk.mid_line, 1);
        value + LINE_WORDS * 8
    };
    store(&mut s.walk.off, next as u64);
}

/// Whether the line is the message's first User-Agent (or Server) line.
#[inline(always)]
fn user_agent(s: &Scratch) -> bool {
    load(&s.walk.scope) & 0xff == Scope::UserAgent as u64
        && load(&s.walk.ua_len) == 0
        && (load(&s.walk.value) as usize) < data_len(s)
}

/// Walks the automaton from `entry` at `start`: the first words here (most walks of
/// legitimate values end within them), the rest a few words per step of a `bpf_loop`.
#[inline(always)]
fn run_walk(walker: &Walker, s: &mut Scratch, a: &Automaton, start: usize, entry: u16) {
    if walk::begin(s, start, entry) && walk::first(s, a) {
        // SAFETY: `walk_word` only dereferences the Walker, which outlives the loop.
        unsafe {
            bpf_loop(
                walk::LOOP_STEPS as u32,
                walk_word as *mut c_void,
                core::ptr::from_ref(walker).cast_mut().cast(),
                0,
            );
        }
    }
}

/// More words of the current walk (`walk::STEP_WORDS`). Returns 1 to stop the loop.
extern "C" fn walk_word(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Walker on the stage's stack (see `line`).
    let walker = unsafe { &*ctx.cast::<Walker>() };
    // SAFETY: as in `line`.
    let s = unsafe { &mut *walker.scratch };
    // SAFETY: as in `line`.
    let a = unsafe { &*walker.automaton };
    i64::from(!walk::step(s, a))
}

/// Words [`scan`] searches inline before a `bpf_loop` takes over: most header lines (a `Via`
/// of 90 bytes too) end within them, and each inline word is verified once per state the
/// search starts in.
const SCAN_INLINE: usize = 8;
/// The same for the search of a line's end, which every line makes: sixteen words, as long as
/// a long `Allow` or `Via` line, so that legitimate lines almost never pay a loop step.
const LINE_INLINE: usize = 16;

/// First position at or after `from` holding `target` or LF, and whether it is the LF,
/// within [`LINE_WORDS`] words.
#[inline(always)]
fn scan<const INLINE: usize>(
    walker: &Walker,
    s: &mut Scratch,
    from: usize,
    target: u8,
) -> Option<(usize, bool)> {
    let mut pos = from;
    let mut i = 0;
    // One copy of the length for the loop: it dies with the loop, and `hit` reads its own.
    let len = data_len(s);
    while i < INLINE {
        if pos >= len {
            return None;
        }
        let bytes = word(s, pos);
        let m = byte_mask(bytes, LF) | byte_mask(bytes, target);
        if m != 0 {
            return hit(s, pos, bytes, m);
        }
        pos += 8;
        i += 1;
    }
    // A long line: the rest of the search a few words per `bpf_loop` step.
    store(&mut s.walk.scan_pos, pos as u64);
    store(&mut s.walk.scan_target, u64::from(target));
    store(&mut s.walk.scan_hit, 0);
    // SAFETY: `scan_word` only dereferences the Walker, which outlives the loop.
    unsafe {
        bpf_loop(
            (LINE_WORDS - INLINE).div_ceil(SCAN_STEP_WORDS) as u32,
            scan_word as *mut c_void,
            core::ptr::from_ref(walker).cast_mut().cast(),
            0,
        );
    }
    if load(&s.walk.scan_hit) == 0 {
        return None;
    }
    let pos = load(&s.walk.scan_pos) as usize;
    let bytes = word(s, pos);
    hit(s, pos, bytes, byte_mask(bytes, LF) | byte_mask(bytes, target))
}

/// Where in the word at `pos` the search stopped (`m` flags it), laundered: what follows is
/// verified once, not once per word the search may have stopped at.
#[inline(always)]
fn hit(s: &mut Scratch, pos: usize, bytes: u64, m: u64) -> Option<(usize, bool)> {
    let k = first_flagged(m);
    let at = pos + k;
    if at >= data_len(s) {
        return None;
    }
    let is_lf = (bytes >> (k * 8)) & 0xff == u64::from(LF);
    let stop = Stop::from_raw(launder(s, Stop::new(at, is_lf).raw()));
    Some((stop.at(), stop.line_end()))
}

/// Words each step of a long line's search takes.
const SCAN_STEP_WORDS: usize = 4;

/// More words of a long line's search (`WalkState::scan_*`). Returns 1 to stop the loop.
extern "C" fn scan_word(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the Walker on the stage's stack (see `line`).
    let walker = unsafe { &*ctx.cast::<Walker>() };
    // SAFETY: as in `line`.
    let s = unsafe { &mut *walker.scratch };
    let target = (load(&s.walk.scan_target) & 0xff) as u8;
    let mut pos = load(&s.walk.scan_pos) as usize;
    let mut i = 0;
    while i < SCAN_STEP_WORDS {
        if pos >= data_len(s) {
            return 1;
        }
        let bytes = word(s, pos);
        if byte_mask(bytes, LF) | byte_mask(bytes, target) != 0 {
            store(&mut s.walk.scan_pos, pos as u64);
            store(&mut s.walk.scan_hit, 1);
            return 1;
        }
        pos += 8;
        i += 1;
    }
    store(&mut s.walk.scan_pos, pos as u64);
    0
}

/// The byte at `i` of a 16-byte window held as two words.
#[inline(always)]
fn byte16(lo: u64, hi: u64, i: usize) -> u8 {
    let w = if i < 8 { lo } else { hi };
    ((w >> ((i & 7) * 8)) & 0xff) as u8
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

/// Names the line from its first 16 bytes.
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
        // Masked (a no-op: it is at most 15): a bounded length costs the verifier less.
        let scope = header_scope(lower(w0), lower(w1), name_len & 15) as u64;
        Head::Named { scope, value_at: at + 1 }
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
