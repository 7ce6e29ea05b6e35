//! The automaton walk over one value, as the kernel runs it. Map-free: the host's tests run
//! this very function (`sipguard::signatures::compile` checks it against the reference walk
//! on mutated signature values).

use sipguard_common::inspect::{ACCEPT, Automaton, MAX_STATES, STATE_MASK, STOP, WALK_STEPS};

use crate::window::{PENDING, Scratch, window_index, word};

/// Runs the automaton from `entry` over the window from `start` until it stops. Matches are
/// only noted here (a store, no branch to speak of): scoring them at every step would make
/// each of the walk's steps a separate path for the verifier.
///
/// States from `run_base` on start a literal run ([`sipguard_common::inspect::Run`]): one
/// word compare replaces up to eight byte steps. Byte steps give way as soon as one is
/// reached. The host's tests run this very function against the compiler's reference walk.
#[inline(always)]
pub fn walk(s: &mut Scratch, a: &Automaton, len: usize, start: usize, entry: u16) {
    // Read afresh at each compare: kept in a register, the verifier would narrow its range on
    // every branch, and paths that differ only in that range would not be pruned.
    // SAFETY: a plain load from the automaton.
    let starts_run =
        |state: usize| state >= unsafe { core::ptr::read_volatile(&raw const a.run_base) } as usize;
    let mut state = entry as usize;
    if start >= len {
        return;
    }
    let mut pos = window_index(start);
    // Moves on by `k` bytes, or ends the walk at the end of the data. `pos` is masked on every
    // way back to the loop's head (a no-op: it is below `len`), so the verifier sees one range
    // there whichever way the iteration went, and prunes.
    macro_rules! advance {
        ($k:expr) => {{
            let next = pos + $k;
            if next >= len {
                return;
            }
            pos = window_index(next);
        }};
    }
    let mut steps = 0;
    while steps < WALK_STEPS {
        steps += 1;
        let bytes = word(s, pos);
        if starts_run(state) {
            let run = &a.runs[state & (MAX_STATES - 1)];
            if (bytes | run.fold) & run.mask != run.expect {
                return;
            }
            state = (run.target & u32::from(STATE_MASK)) as usize;
            advance!((run.len & 15) as usize);
            continue;
        }
        // Unrolled by hand: each byte's way out adds its own constant to `pos`.
        macro_rules! byte_step {
            ($k:literal) => {
                let class = a.classes[((bytes >> ($k * 8)) & 0xff) as usize] as usize;
                let index = crate::and_mask!((state << 6) | class, 0xfffff);
                // SAFETY: the mask keeps the index inside the table (TABLE_LEN is 2^20); it
                // is kept for the 6.1 verifier, and LLVM must not see a second one to drop.
                let step = unsafe { *a.table.get_unchecked(index) };
                state = (step & STATE_MASK) as usize;
                if step & (STOP | ACCEPT) != 0 {
                    if step & ACCEPT != 0 {
                        let met = s.walk.pending_n as usize;
                        s.walk.pending[met & (PENDING - 1)] = a.accept[state & (MAX_STATES - 1)];
                        s.walk.pending_n = met as u64 + 1;
                    }
                    if step & STOP != 0 {
                        return;
                    }
                }
                if starts_run(state) {
                    advance!($k + 1);
                    continue;
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
        advance!(8);
    }
}
