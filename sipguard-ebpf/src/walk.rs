//! The automaton walk over one value, as the kernel runs it, a word at a time. Map-free: the
//! host's tests run this very code (`sipguard::signatures::compile` checks it against the
//! reference walk on mutated signature values).
//!
//! Where a walk stands (its position and automaton state) lives in the scratch value, not in
//! registers: each word starts from memory and ends in it. So the verifier checks [`step`]
//! once, whichever way the word before it ended, and the kernel runs the words of a long walk
//! in a `bpf_loop` (verified once) rather than in an unrolled loop (verified once per
//! iteration, and again for every way into each: over 70,000 instructions per walk on
//! 6.18).

use sipguard_common::inspect::{ACCEPT, Automaton, MAX_STATES, STATE_MASK, STOP, WALK_STEPS};

use crate::window::{PENDING, Scratch, data_len, load, store, window_index, word};

/// Starts a walk of the automaton from `entry` at `start`. Returns whether there is anything
/// to walk.
#[inline(always)]
pub fn begin(s: &mut Scratch, start: usize, entry: u16) -> bool {
    if entry == 0 || start >= data_len(s) {
        return false;
    }
    store(&mut s.walk.cursor_pos, start as u64);
    store(&mut s.walk.cursor_state, u64::from(entry));
    true
}

/// Walks one word from where the walk stands: a literal run's compare, or up to eight byte
/// steps (fewer when a run starts). Matches are only noted (`WalkState::pending`): scoring
/// them here would make each byte step a separate path for the verifier. Returns whether the
/// walk goes on.
///
/// States from `run_base` on start a literal run ([`sipguard_common::inspect::Run`]): one
/// word compare replaces up to eight byte steps.
#[inline(always)]
pub fn step(s: &mut Scratch, a: &Automaton) -> bool {
    // Read afresh at each compare: kept in a register, the verifier would narrow its range on
    // every branch, and paths that differ only in that range would not be pruned.
    // SAFETY: a plain load from the automaton.
    let starts_run =
        |state: usize| state >= unsafe { core::ptr::read_volatile(&raw const a.run_base) } as usize;
    let pos = load(&s.walk.cursor_pos) as usize;
    if pos >= data_len(s) {
        return false;
    }
    let pos = window_index(pos);
    let mut state = load(&s.walk.cursor_state) as usize & usize::from(STATE_MASK);
    // Every way out stores where the walk stands and compares the next position with a fresh
    // copy of the data length: the verifier learns nothing from it that outlives the word.
    macro_rules! advance {
        ($k:expr) => {{
            let next = pos + $k;
            store(&mut s.walk.cursor_pos, next as u64);
            store(&mut s.walk.cursor_state, state as u64);
            return next < data_len(s);
        }};
    }
    let bytes = word(s, pos);
    if starts_run(state) {
        let run = &a.runs[state & (MAX_STATES - 1)];
        if (bytes | run.fold) & run.mask != run.expect {
            return false;
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
                    return false;
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

/// A whole walk, word after word, up to [`WALK_STEPS`] words: the host's driver of [`step`]
/// (the kernel runs the same words, the first inline and the rest in a `bpf_loop`).
#[inline(always)]
pub fn walk(s: &mut Scratch, a: &Automaton, start: usize, entry: u16) {
    if !begin(s, start, entry) {
        return;
    }
    for _ in 0..WALK_STEPS {
        if !step(s, a) {
            break;
        }
    }
}
