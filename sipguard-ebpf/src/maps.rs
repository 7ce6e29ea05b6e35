//! The program's maps. Names come from `sipguard_common::maps`; every map is pinned by name
//! so a restarted userspace adopts it, and sizes set here are defaults userspace may override
//! at load time. (`LpmTrie` adds `BPF_F_NO_PREALLOC` itself: tries allocate per entry.)

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray},
};
use sipguard_common::{
    config::Config,
    counters::COUNTER_SLOTS,
    lists::{V4_KEY_LEN, V6_KEY_LEN},
    maps::{DEFAULT_LIST_CAPACITY, PORT_WORDS},
};

#[map(name = "SG_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

#[map(name = "SG_PORTS")]
pub static PORTS: Array<u64> = Array::pinned(PORT_WORDS, 0);

#[map(name = "SG_STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_SLOTS, 0);

#[map(name = "SG_ALLOW_V4")]
pub static ALLOW_V4: LpmTrie<[u8; V4_KEY_LEN], u32> = LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);

#[map(name = "SG_ALLOW_V6")]
pub static ALLOW_V6: LpmTrie<[u8; V6_KEY_LEN], u32> = LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);

#[map(name = "SG_BLOCK_V4")]
pub static BLOCK_V4: LpmTrie<[u8; V4_KEY_LEN], u32> = LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);

#[map(name = "SG_BLOCK_V6")]
pub static BLOCK_V6: LpmTrie<[u8; V6_KEY_LEN], u32> = LpmTrie::pinned(DEFAULT_LIST_CAPACITY, 0);
