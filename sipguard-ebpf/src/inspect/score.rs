//! Scoring the matches a walk noted: each distinct signature counts once per message, hits
//! are counted per signature, and the message is decided when the weights reach the
//! threshold. Every value goes through the scratch value's memory (`window::load`/`store`),
//! never a register kept across a match: otherwise the paths through the matches of one line
//! differ in what they hold, and the verifier walks each of them.

use sipguard_common::inspect::{SCORE_THRESHOLD, SIG_CAPACITY};
use sipguard_ebpf::window::{PENDING, Scratch, load, store};

use crate::maps::SIG_HITS;

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
    let used = load(&s.walk.seen_used);
    let slot = &mut s.seen[w];
    if used & (1 << w) == 0 {
        store(slot, bit);
        store(&mut s.walk.seen_used, used | (1 << w));
    } else {
        let marked = load(slot);
        if marked & bit != 0 {
            return;
        }
        store(slot, marked | bit);
    }
    if let Some(hits) = SIG_HITS.get_ptr_mut(sig as u32) {
        // SAFETY: per-CPU slot, touched only by this CPU.
        unsafe { *hits += 1 };
    }
    let score = load(&s.walk.score) + weight;
    store(&mut s.walk.score, score);
    if load(&s.walk.decisive) == 0 && score >= u64::from(SCORE_THRESHOLD) {
        store(&mut s.walk.decisive, sig as u64 + 1);
    }
}

/// Scores the matches the walks of this line noted (the last [`PENDING`] of them, in the ring
/// the walk fills).
#[inline(always)]
pub(super) fn score_pending(s: &mut Scratch) {
    let mut p = 0;
    while p < PENDING {
        if p as u64 >= load(&s.walk.pending_n) {
            break;
        }
        let value = s.walk.pending[p];
        accept(s, value);
        p += 1;
    }
    store(&mut s.walk.pending_n, 0);
}
