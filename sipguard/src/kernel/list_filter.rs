//! The global lists' IPv4 prefilter (`SG_LIST_FILTER_V4`, see
//! `sipguard_common::lists::FILTER_BLOCK_BITS`), memory-mapped: a slot is 2 MiB of bitmap,
//! which through the syscall interface would cost one call per 8 bytes to read or rewrite.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context as _, ensure};
use aya::maps::MapData;
use sipguard_common::lists::{FILTER_SLOT_WORDS, FILTER_SLOTS, FILTER_WORDS};

/// A mapping of the whole filter map. Writes land in the map the program reads: there is no
/// copy to flush. Writers take the lists' lock (`PinnedMaps::lock_lists`); the program only
/// reads, and a word is written in one aligned store, so it never sees a torn word.
pub struct ListFilterMap {
    words: NonNull<AtomicU64>,
    bytes: usize,
    writable: bool,
}

impl ListFilterMap {
    /// Maps the filter pinned at `path`, for reading and, if `write`, writing. A map frozen
    /// against syscall writes cannot be mapped writable.
    pub fn open(path: &Path, write: bool) -> anyhow::Result<Self> {
        let map = MapData::from_pin(path)
            .with_context(|| format!("opening the list filter at {}", path.display()))?;
        let info = map
            .info()
            .with_context(|| format!("inspecting the list filter at {}", path.display()))?;
        ensure!(
            info.value_size() == 8 && info.max_entries() == FILTER_WORDS,
            "the list filter at {} has {} entries of {} bytes, expected {FILTER_WORDS} of 8",
            path.display(),
            info.max_entries(),
            info.value_size()
        );
        let bytes = FILTER_WORDS as usize * 8;
        let prot = if write { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh shared mapping of the map's data area (exactly its size, which is
        // page-aligned); the descriptor may be closed once the mapping exists.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                prot,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).with_context(|| {
                format!(
                    "mapping the list filter at {}{}",
                    path.display(),
                    if write { " for writing" } else { "" }
                )
            });
        }
        let words = NonNull::new(addr.cast::<AtomicU64>()).context("mmap returned null")?;
        Ok(Self { words, bytes, writable: write })
    }

    fn slot_words(&self, slot: u32) -> &[AtomicU64] {
        assert!(slot < FILTER_SLOTS, "filter slot {slot}");
        // SAFETY: the mapping holds FILTER_SLOTS slots of FILTER_SLOT_WORDS aligned words and
        // lives as long as `self`; other writers are serialized by the lists' lock and the
        // kernel only reads, so shared atomic access is sound.
        unsafe {
            std::slice::from_raw_parts(
                self.words.as_ptr().add(slot as usize * FILTER_SLOT_WORDS as usize),
                FILTER_SLOT_WORDS as usize,
            )
        }
    }

    /// A copy of one slot's bitmap.
    #[must_use]
    pub fn read(&self, slot: u32) -> Vec<u64> {
        self.slot_words(slot).iter().map(|w| w.load(Ordering::Relaxed)).collect()
    }

    /// Makes one slot's bitmap `words`, storing only the words that change.
    pub fn write(&self, slot: u32, words: &[u64]) -> anyhow::Result<()> {
        ensure!(self.writable, "the list filter was mapped read-only");
        ensure!(words.len() == FILTER_SLOT_WORDS as usize, "a slot has {FILTER_SLOT_WORDS} words");
        for (cell, &new) in self.slot_words(slot).iter().zip(words) {
            if cell.load(Ordering::Relaxed) != new {
                cell.store(new, Ordering::Relaxed);
            }
        }
        // Bits must be visible before the entries they cover are inserted (the caller's next
        // step), on every architecture, not only where a syscall happens to order them.
        std::sync::atomic::fence(Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for ListFilterMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, which nothing borrows any more.
        unsafe { libc::munmap(self.words.as_ptr().cast(), self.bytes) };
    }
}
