//! Compiles a signature set into the DFA the XDP program walks (layout in
//! `sipguard_common::inspect`).
//!
//! One automaton per (scope, mode) is built by subset construction over "items": a pattern
//! and how many of its atoms have matched, plus two markers: `Lead` (still inside the blanks
//! that start a value) and `Main` (a `contains` search is running, so every position may start
//! a new match). All automata share one state table; state 0 is the dead state. Terminators
//! and the start anchor are compiled in: the kernel never special-cases a byte.

use std::collections::{BTreeSet, HashMap, VecDeque};

use anyhow::bail;
use sipguard_common::inspect::{
    ACCEPT, Automaton, CLASS_COUNT, DEAD, Kind, MAX_STATES, MIN_RUN, Mode, Run, STATE_MASK, STOP,
    Scope, accept_value, entry_index,
};

use super::{
    Signature,
    pattern::{Atom, ByteSet},
};

const SP: u8 = b' ';
const HT: u8 = b'\t';

/// How a walk of a given mode ends.
#[derive(Clone, Copy)]
struct Terminators {
    /// Bytes that end the value: an `equals` pattern completed before one matches.
    end: ByteSet,
    /// Bytes that end the walk without a match.
    kill: ByteSet,
    /// Leading blanks are skipped (header values).
    skip_lead: bool,
}

fn terminators(scope: Scope, mode: Mode) -> Terminators {
    let nul = 0u8;
    match (scope, mode) {
        (Scope::RequestUri, _) => Terminators {
            end: ByteSet::of([SP]),
            kill: ByteSet::of([b'\r', b'\n', nul]),
            skip_lead: false,
        },
        (_, Mode::Uri) => Terminators {
            end: ByteSet::of([b'>']),
            kill: ByteSet::of([b'\r', b'\n', nul]),
            skip_lead: false,
        },
        (_, Mode::Value) => Terminators {
            end: ByteSet::of([b'\r', b'\n']),
            kill: ByteSet::of([nul]),
            skip_lead: true,
        },
    }
}

/// A pattern as one automaton uses it.
struct Member<'a> {
    slot: u16,
    sig: &'a Signature,
    atoms: Vec<Atom>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Item {
    Lead,
    Main,
    /// Member index, atoms matched.
    At(usize, usize),
    /// An `equals` member that met its terminator.
    Done(usize),
}

/// The compiled set, ready to be written to a slot of `SG_AUTOMATA`.
pub struct Compiled {
    pub automaton: Box<Automaton>,
    pub states: usize,
    pub classes: usize,
}

/// Which members go into the automaton of `(scope, mode)`.
fn members_for(
    sigs: &[(u16, Signature)],
    scope: Scope,
    mode: Mode,
) -> anyhow::Result<Vec<Member<'_>>> {
    let mut out = Vec::new();
    for (slot, sig) in sigs {
        let wanted = match (scope, mode) {
            (Scope::RequestUri, Mode::Value) => sig.scope == Scope::RequestUri,
            (Scope::RequestUri, Mode::Uri) => false,
            // Scope `any` joins every header's value automaton.
            (_, Mode::Value) => sig.scope == scope || sig.scope == Scope::Any,
            (_, Mode::Uri) => scope.has_uri() && sig.scope == scope && sig.kind != Kind::Contains,
        };
        if wanted {
            out.push(Member { slot: *slot, sig, atoms: sig.atoms()? });
        }
    }
    Ok(out)
}

/// Partitions the bytes into classes no pattern or terminator tells apart.
fn byte_classes(sets: &[ByteSet]) -> anyhow::Result<([u8; 256], usize)> {
    // Each byte's "signature": which sets contain it. Equal signatures share a class.
    let mut ids: HashMap<Vec<bool>, u8> = HashMap::new();
    let mut classes = [0u8; 256];
    // Bytes in no set form class 0 (the common "other" case gets the first id).
    let none = vec![false; sets.len()];
    ids.insert(none, 0);
    for b in 0..=255u8 {
        let key: Vec<bool> = sets.iter().map(|s| s.contains(b)).collect();
        let next = u8::try_from(ids.len()).unwrap_or(u8::MAX);
        let id = *ids.entry(key).or_insert(next);
        classes[usize::from(b)] = id;
    }
    let n = ids.len();
    if n > CLASS_COUNT {
        bail!(
            "the signatures use too many distinct characters ({n} byte classes, at most {CLASS_COUNT})"
        );
    }
    Ok((classes, n))
}

struct Builder<'a> {
    members: Vec<Member<'a>>,
    term: Terminators,
    has_contains: bool,
}

impl Builder<'_> {
    fn closure(&self, mut items: BTreeSet<Item>) -> BTreeSet<Item> {
        // Main starts every contains member at every position; Lead keeps anchored members
        // waiting at their start while blanks are skipped.
        if items.contains(&Item::Main) {
            for (i, m) in self.members.iter().enumerate() {
                if m.sig.kind == Kind::Contains {
                    items.insert(Item::At(i, 0));
                }
            }
        }
        if items.contains(&Item::Lead) {
            for (i, m) in self.members.iter().enumerate() {
                if m.sig.kind != Kind::Contains {
                    items.insert(Item::At(i, 0));
                }
            }
        }
        items
    }

    fn entry(&self) -> BTreeSet<Item> {
        let mut items = BTreeSet::new();
        if self.term.skip_lead {
            items.insert(Item::Lead);
        } else {
            for (i, m) in self.members.iter().enumerate() {
                if m.sig.kind != Kind::Contains {
                    items.insert(Item::At(i, 0));
                }
            }
        }
        if self.has_contains {
            items.insert(Item::Main);
        }
        self.closure(items)
    }

    /// The best signature a set accepts: `(slot, weight)`.
    fn accepts(&self, items: &BTreeSet<Item>) -> Option<(u16, u8)> {
        items
            .iter()
            .filter_map(|it| match *it {
                Item::At(i, n)
                    if n == self.members[i].atoms.len()
                        && self.members[i].sig.kind != Kind::Equals =>
                {
                    Some(i)
                }
                Item::Done(i) => Some(i),
                _ => None,
            })
            .map(|i| (self.members[i].slot, self.members[i].sig.weight))
            .max_by_key(|(slot, weight)| (*weight, std::cmp::Reverse(*slot)))
    }

    fn step(&self, items: &BTreeSet<Item>, b: u8) -> BTreeSet<Item> {
        let mut next = BTreeSet::new();
        if self.term.kill.contains(b) {
            return next;
        }
        if self.term.end.contains(b) {
            for it in items {
                if let Item::At(i, n) = *it
                    && n == self.members[i].atoms.len()
                    && self.members[i].sig.kind == Kind::Equals
                {
                    next.insert(Item::Done(i));
                }
            }
            return next;
        }
        for it in items {
            match *it {
                Item::Lead if b == SP || b == HT => {
                    next.insert(Item::Lead);
                }
                Item::Main => {
                    next.insert(Item::Main);
                }
                Item::At(i, n) => {
                    let atoms = &self.members[i].atoms;
                    if n < atoms.len() && atoms[n].set.contains(b) {
                        next.insert(Item::At(i, n + 1));
                    }
                    // A repeated atom may match again.
                    if n > 0 && atoms[n - 1].repeat && atoms[n - 1].set.contains(b) {
                        next.insert(Item::At(i, n));
                    }
                    // Trailing blanks before the terminator of an equals pattern.
                    if n == atoms.len()
                        && self.members[i].sig.kind == Kind::Equals
                        && (b == SP || b == HT)
                    {
                        next.insert(Item::At(i, n));
                    }
                }
                Item::Lead | Item::Done(_) => {}
            }
        }
        self.closure(next)
    }
}

/// Compiles `sigs` (slot, signature) into an automaton.
pub fn compile(sigs: &[(u16, Signature)]) -> anyhow::Result<Compiled> {
    // Every set a pattern or terminator distinguishes.
    let mut sets = vec![
        ByteSet::of([b'\r']),
        ByteSet::of([b'\n']),
        ByteSet::of([0]),
        ByteSet::of([SP]),
        ByteSet::of([HT]),
        ByteSet::of([b'>']),
    ];
    for (_, sig) in sigs {
        for atom in sig.atoms()? {
            if !sets.contains(&atom.set) {
                sets.push(atom.set);
            }
        }
    }
    let (classes, n_classes) = byte_classes(&sets)?;
    // One representative byte per class: transitions only depend on the class.
    let mut representative = vec![0u8; n_classes];
    for b in (0..=255u8).rev() {
        representative[usize::from(classes[usize::from(b)])] = b;
    }

    let mut automaton: Box<Automaton> = zeroed_automaton();
    automaton.classes = classes;
    // Row 0 is the dead state: every class stays dead and stops.
    let dead_row = DEAD | STOP;
    automaton.table[..CLASS_COUNT].fill(dead_row);
    let mut states = 1usize;

    for scope in Scope::ALL {
        for mode in [Mode::Value, Mode::Uri] {
            let members = members_for(sigs, scope, mode)?;
            if members.is_empty() {
                continue;
            }
            let has_contains = members.iter().any(|m| m.sig.kind == Kind::Contains);
            let b = Builder { members, term: terminators(scope, mode), has_contains };
            let mut ids: HashMap<BTreeSet<Item>, u16> = HashMap::new();
            let mut queue = VecDeque::new();
            let mut intern = |set: BTreeSet<Item>,
                              ids: &mut HashMap<BTreeSet<Item>, u16>,
                              queue: &mut VecDeque<BTreeSet<Item>>|
             -> anyhow::Result<u16> {
                if set.is_empty() {
                    return Ok(DEAD);
                }
                if let Some(id) = ids.get(&set) {
                    return Ok(*id);
                }
                if states >= MAX_STATES {
                    bail!(
                        "the signatures compile to more than {MAX_STATES} automaton states; remove some or shorten `contains` values"
                    );
                }
                let id = u16::try_from(states).expect("MAX_STATES fits u16");
                states += 1;
                ids.insert(set.clone(), id);
                queue.push_back(set);
                Ok(id)
            };
            let entry = intern(b.entry(), &mut ids, &mut queue)?;
            automaton.entry[entry_index(scope, mode)] = entry;
            while let Some(set) = queue.pop_front() {
                let id = ids[&set];
                let row = usize::from(id) * CLASS_COUNT;
                automaton.table[row..row + CLASS_COUNT].fill(dead_row);
                if let Some((slot, weight)) = b.accepts(&set) {
                    automaton.accept[usize::from(id)] = accept_value(slot, weight);
                }
                // After a terminator the walk is over, whatever the state: its row stays dead.
                if set.iter().any(|it| matches!(it, Item::Done(_))) {
                    continue;
                }
                for (class, &byte) in representative.iter().enumerate() {
                    let next = b.step(&set, byte);
                    let accepting = b.accepts(&next).is_some();
                    let next_id = intern(next, &mut ids, &mut queue)?;
                    let mut entry = next_id;
                    // The walk stops on a dead state and on the value's terminator; it goes on
                    // after an accept, since a heavier signature may still match further on.
                    if next_id == DEAD || b.term.end.contains(byte) {
                        entry |= STOP;
                    }
                    if accepting {
                        entry |= ACCEPT;
                    }
                    automaton.table[row + class] = entry;
                }
            }
        }
    }
    number_runs_last(&mut automaton, states);
    automaton.any_headers =
        u32::from(automaton.entry[entry_index(Scope::Any, Mode::Value)] != DEAD);
    automaton.signatures = u32::try_from(sigs.len()).unwrap_or(u32::MAX);
    automaton.states = u32::try_from(states).expect("bounded by MAX_STATES");
    Ok(Compiled { automaton, states, classes: n_classes })
}

/// The literal run starting at `state`, if there is one of at least [`MIN_RUN`] bytes.
fn run_at(a: &Automaton, members: &[Vec<u8>], state: u16) -> Option<Run> {
    let mut run = Run::default();
    let mut cur = state;
    let mut n = 0;
    while n < 8 {
        let row = &a.table[usize::from(cur) * CLASS_COUNT..][..CLASS_COUNT];
        let mut live = row.iter().enumerate().filter(|(_, e)| **e != DEAD | STOP);
        let Some((class, &e)) = live.next() else { break };
        if live.next().is_some() || e & (STOP | ACCEPT) != 0 {
            break;
        }
        // One byte, or one letter in both cases: a word compare can tell it from the rest.
        let (byte, fold) = match members[class][..] {
            [b] => (b, 0u8),
            [a, b] if a.is_ascii_alphabetic() && a ^ 0x20 == b => (a.to_ascii_lowercase(), 0x20),
            _ => break,
        };
        run.expect |= u64::from(byte) << (8 * n);
        run.fold |= u64::from(fold) << (8 * n);
        run.mask |= 0xff << (8 * n);
        cur = e & STATE_MASK;
        n += 1;
    }
    (n >= MIN_RUN).then(|| Run {
        target: u32::from(cur),
        len: u32::try_from(n).expect("at most 8"),
        ..run
    })
}

/// Renumbers the states so that those starting a literal run come last, from
/// `Automaton::run_base` on: the kernel tells them apart with one compare per byte.
fn number_runs_last(a: &mut Automaton, states: usize) {
    let mut members = vec![Vec::new(); CLASS_COUNT];
    for b in 0..=255u8 {
        members[usize::from(a.classes[usize::from(b)])].push(b);
    }
    let runs: Vec<Option<Run>> = (0..states)
        .map(|s| run_at(a, &members, u16::try_from(s).expect("bounded by MAX_STATES")))
        .collect();
    // New number of each state: those without a run keep their order (the dead state stays
    // 0), then those with one.
    let mut renumber = vec![0u16; states];
    let mut next = 0u16;
    for with_run in [false, true] {
        if with_run {
            a.run_base = u32::from(next);
        }
        for (old, run) in runs.iter().enumerate() {
            if run.is_some() == with_run {
                renumber[old] = next;
                next += 1;
            }
        }
    }
    let moved = |e: u16| renumber[usize::from(e & STATE_MASK)] | (e & !STATE_MASK);
    let mut old = zeroed_automaton();
    old.table[..states * CLASS_COUNT].copy_from_slice(&a.table[..states * CLASS_COUNT]);
    old.accept[..states].copy_from_slice(&a.accept[..states]);
    for (o, &n) in renumber.iter().enumerate() {
        let (o, n) = (o * CLASS_COUNT, usize::from(n) * CLASS_COUNT);
        for c in 0..CLASS_COUNT {
            a.table[n + c] = moved(old.table[o + c]);
        }
    }
    for (o, &n) in renumber.iter().enumerate() {
        a.accept[usize::from(n)] = old.accept[o];
        if let Some(run) = runs[o] {
            let target = u16::try_from(run.target).expect("a state");
            a.runs[usize::from(n)] = Run { target: u32::from(moved(target)), ..run };
        }
    }
    for e in &mut a.entry {
        *e = moved(*e);
    }
}

fn zeroed_automaton() -> Box<Automaton> {
    // SAFETY: Automaton is plain integers and arrays of them; all-zero is a valid value.
    // Built on the heap directly: it is over 2 MiB.
    unsafe { Box::<Automaton>::new_zeroed().assume_init() }
}

/// Runs a walk the way the kernel does, from `entry`, over `bytes`: the accept values met on
/// the way, in order. Bytes past the end act as NUL, which ends every walk.
#[must_use]
pub fn walk(a: &Automaton, entry: u16, bytes: &[u8]) -> Vec<u32> {
    let mut accepts = Vec::new();
    let mut state = entry;
    if state == DEAD {
        return accepts;
    }
    for b in bytes.iter().copied().chain(std::iter::once(0)) {
        let e = a.table[usize::from(state) * CLASS_COUNT + usize::from(a.classes[usize::from(b)])];
        state = e & STATE_MASK;
        if e & ACCEPT != 0 {
            accepts.push(a.accept[usize::from(state)]);
        }
        if e & STOP != 0 {
            break;
        }
    }
    accepts
}

#[cfg(test)]
mod tests {
    use sipguard_common::inspect::accept_sig;

    use super::*;

    fn sig(name: &str, scope: Scope, kind: Kind, value: &str, weight: u8) -> Signature {
        Signature::new(name, scope, kind, value, weight).unwrap()
    }

    /// The kernel's own walk (`sipguard_ebpf::walk::walk`, the code the XDP program runs),
    /// on the host over `bytes`: how many matches it met, and those it kept (the last
    /// `PENDING`, in the ring the kernel scores them from).
    fn kernel_walk(a: &Automaton, entry: u16, bytes: &[u8]) -> (usize, Vec<u32>) {
        use sipguard_ebpf::window::{PENDING, Scratch};
        // SAFETY: `Scratch` is plain integers, for which all zeros is a value (and what the
        // per-CPU map starts as).
        let mut s: Box<Scratch> = unsafe { Box::<Scratch>::new_zeroed().assume_init() };
        s.buf[..bytes.len()].copy_from_slice(bytes);
        s.walk.len = bytes.len() as u64;
        sipguard_ebpf::walk::walk(&mut s, a, 0, entry);
        let n = usize::try_from(s.walk.pending_n).unwrap();
        (n, (n.saturating_sub(PENDING)..n).map(|i| s.walk.pending[i % PENDING]).collect())
    }

    fn hits(c: &Compiled, scope: Scope, mode: Mode, text: &str) -> Vec<u16> {
        let entry = c.automaton.entry[entry_index(scope, mode)];
        walk(&c.automaton, entry, text.as_bytes()).into_iter().map(accept_sig).collect()
    }

    #[test]
    fn kinds_anchor_as_documented() {
        let sigs = vec![
            (0, sig("c", Scope::UserAgent, Kind::Contains, "scan", 100)),
            (1, sig("p", Scope::UserAgent, Kind::Prefix, "friendly", 100)),
            (2, sig("e", Scope::UserAgent, Kind::Equals, "none", 100)),
        ];
        let c = compile(&sigs).unwrap();
        let ua = |t: &str| hits(&c, Scope::UserAgent, Mode::Value, t);
        assert_eq!(ua("my SCANner\r\n"), vec![0]);
        assert_eq!(ua("Friendly-Scanner\r\n"), vec![1, 0], "prefix first, then contains");
        assert_eq!(ua("  friendly\r\n"), vec![1], "leading blanks skipped");
        assert_eq!(ua("not friendly\r\n"), Vec::<u16>::new());
        assert_eq!(ua("None\r\n"), vec![2]);
        assert_eq!(ua("None  \r\n"), vec![2], "trailing blanks allowed");
        assert_eq!(ua("Nonesuch\r\n"), Vec::<u16>::new());
        assert_eq!(ua("None"), Vec::<u16>::new(), "no terminator, no equals");
        assert_eq!(ua("x\r\nscan"), Vec::<u16>::new(), "a walk ends at its line");
    }

    #[test]
    fn uri_mode_anchors_at_the_bracket_and_ends_at_it() {
        let sigs = vec![
            (0, sig("fp", Scope::From, Kind::Prefix, "sip:100@1.1.1.1", 100)),
            (1, sig("fe", Scope::From, Kind::Equals, "sip:nm@nm", 100)),
            (2, sig("fc", Scope::From, Kind::Contains, "zzz", 100)),
        ];
        let c = compile(&sigs).unwrap();
        let uri = |t: &str| hits(&c, Scope::From, Mode::Uri, t);
        assert_eq!(uri("sip:100@1.1.1.1>;tag=1"), vec![0]);
        assert_eq!(uri("sip:nm@nm>"), vec![1]);
        assert_eq!(uri("sip:nm@nm;x>"), Vec::<u16>::new());
        assert_eq!(uri("zzz>"), Vec::<u16>::new(), "contains is a value-mode search only");
        let value = |t: &str| hits(&c, Scope::From, Mode::Value, t);
        assert_eq!(value("sip:100@1.1.1.1;tag=x\r\n"), vec![0], "addr-spec form: value start");
        assert_eq!(value("\"x\" <sip:1@zzz>\r\n"), vec![2]);
    }

    #[test]
    fn request_uri_ends_at_the_space() {
        let sigs = vec![(0, sig("nm", Scope::RequestUri, Kind::Equals, "sip:nm", 100))];
        let c = compile(&sigs).unwrap();
        assert_eq!(hits(&c, Scope::RequestUri, Mode::Value, "sip:nm SIP/2.0"), vec![0]);
        assert_eq!(hits(&c, Scope::RequestUri, Mode::Value, "sip:nmx SIP/2.0"), Vec::<u16>::new());
        assert_eq!(
            c.automaton.entry[entry_index(Scope::Via, Mode::Value)],
            DEAD,
            "unused scopes stay dead"
        );
    }

    #[test]
    fn any_scope_joins_every_header_automaton() {
        let sigs = vec![
            (0, sig("a", Scope::Any, Kind::Contains, "sipvicious", 100)),
            (1, sig("v", Scope::Via, Kind::Contains, "127.0.0.1", 50)),
        ];
        let c = compile(&sigs).unwrap();
        assert_eq!(
            hits(&c, Scope::Via, Mode::Value, "SIP/2.0/UDP 127.0.0.1 sipvicious\r\n"),
            vec![1, 0]
        );
        assert_eq!(hits(&c, Scope::Any, Mode::Value, "SIPVicious\r\n"), vec![0]);
        assert_eq!(hits(&c, Scope::Any, Mode::Value, "127.0.0.1\r\n"), Vec::<u16>::new());
        assert_eq!(c.automaton.any_headers, 1);
        assert_eq!(c.automaton.entry[entry_index(Scope::RequestUri, Mode::Value)], DEAD);
    }

    #[test]
    fn repeats_and_classes() {
        let sigs = vec![(0, sig("cid", Scope::CallId, Kind::Equals, r"\d+", 50))];
        let c = compile(&sigs).unwrap();
        let cid = |t: &str| hits(&c, Scope::CallId, Mode::Value, t);
        assert_eq!(cid("18270739203491303020298\r\n"), vec![0]);
        assert_eq!(cid("1827073920349@host\r\n"), Vec::<u16>::new());
        assert_eq!(cid("abc\r\n"), Vec::<u16>::new());
    }

    #[test]
    fn legit_values_die_within_a_few_bytes() {
        let slots: Vec<(u16, Signature)> = (0..).zip(super::super::catalog()).collect();
        let c = compile(&slots).unwrap();
        let a = &c.automaton;
        for (scope, text) in [
            (Scope::UserAgent, "Zoiper rv2.10.20.2-mod"),
            (Scope::UserAgent, "Yealink SIP-T46S 66.86.0.15"),
            (Scope::From, "\"Alice\" <sip:1000@pbx.example.com>;tag=abc"),
        ] {
            let mut state = a.entry[entry_index(scope, Mode::Value)];
            let mut steps = 0;
            for b in text.bytes() {
                let e = a.table
                    [usize::from(state) * CLASS_COUNT + usize::from(a.classes[usize::from(b)])];
                steps += 1;
                if e & STOP != 0 {
                    break;
                }
                state = e & STATE_MASK;
            }
            assert!(steps <= 4, "{text}: {steps} steps before the walk died");
        }
    }

    /// Literal runs change how the kernel walks, never what it finds: the kernel's walk,
    /// run here, finds what the byte-by-byte reference finds.
    #[test]
    fn runs_find_what_byte_steps_find() {
        let mut slots: Vec<(u16, Signature)> = (0..).zip(super::super::catalog()).collect();
        slots.push((900, sig("c", Scope::UserAgent, Kind::Contains, "scanner", 100)));
        slots.push((901, sig("d", Scope::Via, Kind::Prefix, r"SIP/2.0/UDP 10.\d+.0.1", 100)));
        let c = compile(&slots).unwrap();
        let a = &c.automaton;
        assert!((a.run_base as usize) < c.states, "the catalog has literal runs");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % n as u64).unwrap()
        };
        let mut checked = 0;
        for (_, sig) in &slots {
            for _ in 0..40 {
                // The signature's own value, mutated: case flips, a changed byte, a cut, a
                // continuation, so walks take runs, leave them and fail inside them.
                let mut text: Vec<u8> = sig.value.as_bytes().to_vec();
                for _ in 0..rand(3) {
                    let i = rand(text.len().max(1));
                    if let Some(b) = text.get_mut(i) {
                        *b = match rand(3) {
                            0 => b.to_ascii_uppercase(),
                            1 => b"aZ9 :.@<>\"\r"[rand(11)],
                            _ => *b ^ 0x20,
                        };
                    }
                }
                text.truncate(rand(text.len() + 8));
                if rand(2) == 0 {
                    text.extend_from_slice(b";tag=1>\r\n");
                }
                for mode in [Mode::Value, Mode::Uri] {
                    for scope in Scope::ALL {
                        let entry = a.entry[entry_index(scope, mode)];
                        if entry == DEAD {
                            continue;
                        }
                        let reference = walk(a, entry, &text);
                        let kept = reference.len().saturating_sub(sipguard_ebpf::window::PENDING);
                        assert_eq!(
                            kernel_walk(a, entry, &text),
                            (reference.len(), reference[kept..].to_vec()),
                            "{scope:?} {mode:?} {:?}",
                            String::from_utf8_lossy(&text)
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }
}
