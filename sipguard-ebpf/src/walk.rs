//! The automaton walk over one value, as the kernel runs it, a word at a time. Map-free: the
//! host's tests run this very code (`sipguard::signatures::compile` checks it against the
//! reference walk on mutated signature values).
//!
//! Where a walk stands (its position and automaton state) is parked in the scratch value
//! between the parts of a walk: [`begin`] parks its start, [`first`] takes [`FIRST_WORDS`]
//! words from the park and parks where they end (run inline; most walks of legitimate values
//! end within them), and [`step`] takes [`STEP_WORDS`] words from the park (the kernel's
//! `bpf_loop` runs it). Each part starts from memory and ends in it, so the verifier checks it once whichever
//! way the part before it ended; an unrolled walk of 32 words cost over 70,000 instructions per
//! call site on 6.18. Within a step the words pass the position and state in registers, masked
//! on every way out of a word, so the verifier meets one state between them.

use sipguard_common::inspect::{ACCEPT, Automaton, MAX_STATES, STATE_MASK, STOP, WALK_STEPS};

use crate::window::{PENDING, Scratch, data_len, load, store, window_index, word};

/// Words a walk takes inline: most walks of legitimate values end within them (a `Via`'s
/// walk runs two, its literal `SIP/2.0/` and the word that tells it from a scanner's).
pub const FIRST_WORDS: usize = 2;
/// Words each step of the loop takes: a long walk (a `contains` signature's) pays one loop
/// step per four words, not one per word.
pub const STEP_WORDS: usize = 4;
/// Steps of the loop after the first words: together at least [`WALK_STEPS`] words.
pub const LOOP_STEPS: usize = (WALK_STEPS - FIRST_WORDS).div_ceil(STEP_WORDS);

/// Where a walk goes after a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The walk is over: the automaton stopped, or the data did.
    Stop,
    /// On from `pos` in automaton state `state`.
    At { pos: usize, state: usize },
}

/// Parks the start of a walk of the automaton from `entry` at `start`. Returns whether there
/// is anything to walk.
#[inline(always)]
pub fn begin(s: &mut Scratch, start: usize, entry: u16) -> bool {
    if entry == 0 || start >= data_len(s) {
        return false;
    }
    park(s, start, usize::from(entry));
    true
}

/// Notes where a walk that goes on stands (`WalkState::cursor_*`).
#[inline(always)]
fn park(s: &mut Scratch, pos: usize, state: usize) {
    store(&mut s.walk.cursor_pos, pos as u64);
    store(&mut s.walk.cursor_state, state as u64);
}

/// [`FIRST_WORDS`] words from the park, parked again: what the kernel runs inline. Returns
/// whether the walk goes on.
#[inline(always)]
pub fn first(s: &mut Scratch, a: &Automaton) -> bool {
    words::<FIRST_WORDS>(s, a)
}

/// [`STEP_WORDS`] words from the park, parked again: one step of the kernel's loop. Returns
/// whether the walk goes on.
#[inline(always)]
pub fn step(s: &mut Scratch, a: &Automaton) -> bool {
    words::<STEP_WORDS>(s, a)
}

/// `N` words from the park, in registers, parked again at the end.
#[inline(always)]
fn words<const N: usize>(s: &mut Scratch, a: &Automaton) -> bool {
    let mut pos = load(&s.walk.cursor_pos) as usize;
    let mut state = load(&s.walk.cursor_state) as usize;
    let mut taken = 0;
    while taken < N {
        match word_at(s, a, pos, state) {
            Next::Stop => return false,
            Next::At { pos: next, state: reached } => (pos, state) = (next, reached),
        }
        taken += 1;
    }
    park(s, pos, state);
    true
}

/// Walks one word from `pos` in automaton state `state`: a literal run's compare, or up to
/// eight byte steps (fewer when a run starts). Matches are only noted (`WalkState::pending`):
/// scoring them here would make each byte step a separate path for the verifier.
///
/// States from `run_base` on start a literal run ([`sipguard_common::inspect::Run`]): one
/// word compare replaces up to eight byte steps.
#[inline(always)]
pub fn word_at(s: &mut Scratch, a: &Automaton, pos: usize, state: usize) -> Next {
    // Read afresh at each compare: kept in a register, the verifier would narrow its range on
    // every branch, and paths that differ only in that range would not be pruned.
    // SAFETY: a plain load from the automaton.
    let starts_run =
        |state: usize| state >= unsafe { core::ptr::read_volatile(&raw const a.run_base) } as usize;
    if pos >= data_len(s) {
        return Next::Stop;
    }
    let pos = window_index(pos);
    let mut state = state & usize::from(STATE_MASK);
    // Every way on compares the next position with a fresh copy of the data length (the
    // verifier learns nothing from it that outlives the word) and masks it (a no-op: it is
    // below the length), so that every way on carries the same ranges.
    macro_rules! advance {
        ($k:expr) => {{
            let next = pos + $k;
            return if next < data_len(s) {
                Next::At { pos: window_index(next), state }
            } else {
                Next::Stop
            };
        }};
    }
    let bytes = word(s, pos);
    if starts_run(state) {
        let run = &a.runs[state & (MAX_STATES - 1)];
        if (bytes | run.fold) & run.mask != run.expect {
            return Next::Stop;
        }
        state = (run.target & u32::from(STATE_MASK)) as usize;
        advance!((run.len & 15) as usize);
    }
    // Unrolled by hand: each byte's way out adds its own constant to the position.
    macro_rules! byte_step {
        ($k:literal) => {
            let class = a.classes[((bytes >> ($k * 8)) & 0xff) as usize] as usize;
            let index = crate::and_mask!((state << 6) | class, 0xfffff);
            // SAFETY: the mask keeps the index inside the table (TABLE_LEN is 2^20); it is
            // kept for the 6.1 verifier, and LLVM must not see a second one to drop.
            let step = unsafe { *a.table.get_unchecked(index) };
            state = (step & STATE_MASK) as usize;
            if step & (STOP | ACCEPT) != 0 {
                if step & ACCEPT != 0 {
                    let met = s.walk.pending_n as usize;
                    s.walk.pending[met & (PENDING - 1)] = a.accept[state & (MAX_STATES - 1)];
                    s.walk.pending_n = met as u64 + 1;
                }
                if step & STOP != 0 {
                    return Next::Stop;
                }
            }
            if starts_run(state) {
                advance!($k + 1);
            }
        };
    }
    byte_step!(0);
    byte_step!(1);
    byte_step!(2);
    byte_step!(3);
    byte_step!(4);
    byte_step!(5);
    byte_step!(6);
    byte_step!(7);
    advance!(8)
}

/// A whole walk: the host's driver of the same parts the kernel runs (the first word, then
/// the loop's steps), at least [`WALK_STEPS`] words.
#[inline(always)]
pub fn walk(s: &mut Scratch, a: &Automaton, start: usize, entry: u16) {
    if !(begin(s, start, entry) && first(s, a)) {
        return;
    }
    for _ in 0..LOOP_STEPS {
        if !step(s, a) {
            break;
        }
    }
}
