//! The inspection's window: per-CPU scratch memory holding a copy of the payload (and a
//! zeroed word past its end, which ends every walk), read a word at a time. Map-free, so the
//! host's `cargo test` runs the same code.

use sipguard_common::inspect::{SIG_CAPACITY, WINDOW};

/// Per-CPU working memory of the inspection: the payload window (plus a zeroed word past
/// its end, which ends every walk), the signatures already counted for this message, and the
/// line walker's state.
#[repr(C)]
pub struct Scratch {
    pub buf: [u8; WINDOW + 16],
    pub seen: [u64; SIG_CAPACITY as usize / 64],
    pub walk: WalkState,
    /// The search of the credentials for a nonce, after the walk.
    pub nonce: sipguard_common::challenges::NonceScan,
    /// Where that search started.
    pub nonce_from: u64,
    /// The search for the Call-ID of a request whose credentials echoed a nonce.
    pub call: sipguard_common::challenges::CallIdScan,
}

/// The walker's state lives in map memory, not on the stack, on purpose: every value the
/// per-line callback reads back is then a fresh unknown to the verifier, so all iterations
/// look alike and the callback is verified once. (On the stack, exact offsets would make
/// each iteration a new state.) Callers bound each value again where they use it.
#[repr(C)]
pub struct WalkState {
    /// The payload was longer than the window.
    pub truncated: u64,
    pub len: u64,
    pub off: u64,
    pub request: u64,
    pub score: u64,
    pub decisive: u64,
    /// Words of `seen` this message has written, a bit each.
    pub seen_used: u64,
    pub last_scope: u64,
    pub mid_line: u64,
    pub ua_off: u64,
    pub ua_len: u64,
    pub ended: u64,
    /// The current line's scope and value offset, stored and loaded back (see `line`).
    pub scope: u64,
    pub value: u64,
    /// A URI walk queued for the next step: its start and entry state (0: none).
    pub uri_start: u64,
    pub uri_entry: u64,
    /// Matches met by the walks of the current line, scored after them (at most
    /// [`PENDING`] per line; more overwrite the oldest).
    pub pending_n: u64,
    pub pending: [u32; PENDING],
    /// Where positions pass through memory between loops (see [`launder`]).
    pub relay: u64,
    /// Where the Request-URI starts (0: not a request, or none found).
    pub ruri: u64,
    /// Where the To header's value starts (0: none seen), for the domain check
    /// (`address::has_tag`).
    pub to_at: u64,
    /// Where the value of an `Authorization` or `Proxy-Authorization` header starts (0: none
    /// seen): the credentials that may echo a challenge's nonce (`sipguard_common::trust`).
    pub auth_at: u64,
    /// Where the current automaton walk stands: the position of its next word, and its state
    /// (`crate::walk`).
    pub cursor_pos: u64,
    pub cursor_state: u64,
    /// The length of the span `address::hash_span` hashes.
    pub span: u64,
    /// A long line's search (`inspect::line::scan`): the word it stands at, the byte it
    /// looks for besides LF, and whether it found one.
    pub scan_pos: u64,
    pub scan_target: u64,
    pub scan_hit: u64,
}

pub const PENDING: usize = 8;

/// A volatile load of a field of the scratch value: what comes back is a fresh unknown to
/// the verifier, whatever path stored it. Stages of the inspection hand values on this way,
/// so that each is verified once rather than once per way the one before it ended.
#[must_use]
#[inline(always)]
pub fn load(field: &u64) -> u64 {
    // SAFETY: a reference is a valid pointer.
    unsafe { core::ptr::read_volatile(field) }
}

/// A volatile store, the other half of [`load`].
#[inline(always)]
pub fn store(field: &mut u64, v: u64) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(field, v) }
}

/// `v`, passed through scratch memory. The verifier does not follow values through map
/// memory, so what comes back is one unknown value whichever loop iteration produced it:
/// the code after a loop is then verified once, not once per way out of the loop, and
/// precision tracking stops here instead of reaching back into the loop. Older verifiers
/// (6.1) need this to stay within the instruction budget.
#[must_use]
#[inline(always)]
pub fn launder(s: &mut Scratch, v: usize) -> usize {
    // SAFETY: a plain store and load of a field of this CPU's scratch value.
    unsafe {
        core::ptr::write_volatile(&raw mut s.walk.relay, v as u64);
        core::ptr::read_volatile(&raw const s.walk.relay) as usize
    }
}

/// The data length the walk recorded, read afresh (volatile): each search bounds its own
/// copy, so what it learns about it does not reach its caller's state (see [`launder`]).
#[must_use]
#[inline(always)]
pub fn data_len(s: &Scratch) -> usize {
    // SAFETY: a plain load of a field of this CPU's scratch value.
    let len = unsafe { core::ptr::read_volatile(&raw const s.walk.len) } as usize;
    if len > WINDOW { 0 } else { len }
}

/// Eight bytes of the window at `pos`, which callers keep below the data length (the mask
/// only shows the verifier the read stays inside the buffer).
#[must_use]
#[inline(always)]
pub fn word(s: &Scratch, pos: usize) -> u64 {
    let p = s.buf.as_ptr().wrapping_add(window_index(pos));
    load_u64(p)
}

/// `pos & (WINDOW - 1)`, kept (see [`crate::bound`]).
#[must_use]
#[inline(always)]
pub fn window_index(pos: usize) -> usize {
    const _: () = assert!(WINDOW - 1 == 2047, "spelled out below");
    crate::and_mask!(pos, 0x7ff)
}

/// Like [`word`], but zero at or past the end of the data.
#[must_use]
#[inline(always)]
pub fn word_or_zero(s: &Scratch, len: usize, pos: usize) -> u64 {
    if pos < len { word(s, pos) } else { 0 }
}

/// One unaligned 8-byte load. BPF has no alignment faults and the verifier accepts unaligned
/// map-value loads here; `read_unaligned` would be split into eight byte loads by LLVM.
#[cfg(target_arch = "bpf")]
#[must_use]
#[inline(always)]
pub fn load_u64(p: *const u8) -> u64 {
    let v: u64;
    // SAFETY: `p` points into the scratch value with at least 8 bytes after it (the buffer
    // is 16 bytes longer than the window and `pos` is masked to the window).
    unsafe {
        core::arch::asm!("{0} = *(u64 *)({1} + 0)", out(reg) v, in(reg) p, options(readonly, nostack, preserves_flags))
    };
    v
}

#[cfg(not(target_arch = "bpf"))]
#[must_use]
#[inline(always)]
pub fn load_u64(p: *const u8) -> u64 {
    // SAFETY: as above; the host build exists for lints and tests only.
    unsafe { core::ptr::read_unaligned(p.cast::<u64>()) }
}
