//! The message corpora under `tests/corpus`: real legitimate traffic and real scanner probes.

use std::path::PathBuf;

use sipguard::signatures::reference::crlf;

/// `tests/corpus`, or `$SIPGUARD_CORPUS` where the suites run away from the source tree (the
/// VM tests' guest).
fn root() -> PathBuf {
    std::env::var_os("SIPGUARD_CORPUS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus"), PathBuf::from)
}

fn dir(name: &str) -> PathBuf {
    root().join(name)
}

/// `(file name, message in wire form)` of every file in `corpus/<name>`, sorted.
pub fn messages(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir(name))
        .unwrap_or_else(|e| panic!("reading corpus {name}: {e}"))
        .map(|e| {
            let p = e.expect("corpus entry").path();
            let text = std::fs::read_to_string(&p).expect("corpus file");
            (p.file_name().expect("name").to_string_lossy().into_owned(), crlf(&text))
        })
        .collect();
    out.sort();
    out
}

/// One corpus message by file name, e.g. `("scanners", "svmap-options.sip")`.
pub fn message(name: &str, file: &str) -> Vec<u8> {
    crlf(&std::fs::read_to_string(dir(name).join(file)).expect("corpus file"))
}

/// The legitimate User-Agent strings.
pub fn user_agents() -> Vec<String> {
    std::fs::read_to_string(root().join("user-agents.txt"))
        .expect("user-agents.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A small deterministic PRNG (xorshift64*), so generated tests replay exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("below n")
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}
