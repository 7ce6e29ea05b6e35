//! The policy a packet is judged by, packed in one word. Map-free, so the host's `cargo test`
//! checks the packing the kernel relies on.

use sipguard_common::{
    config::{Config, Mode},
    lists::GLOBAL_POLICY,
    policy::{HAS_ALLOW, HAS_BLOCK, HAS_DOMAINS, MAX_POLICIES, Policy},
};

/// The policy a packet is judged by: a protected destination's own, or the global one.
/// Fields stay the raw values read from maps: turned into enums and options here, each
/// variant would be a separate path through everything after (see docs, "Verifier"). Packed
/// in one word: as six fields, they took six registers, and with BPF's four callee-saved
/// registers, six stack slots of the main function, whose frame the inspection's frames are
/// stacked on.
#[derive(Clone, Copy)]
pub struct ActivePolicy(u64);

/// Bit positions in an [`ActivePolicy`]: the policy id (0: global; selects the per-destination lists
/// and drop counter), a `DefaultAction` and a `Mode` as stored, the generations of the
/// destination's lists and its `HAS_ALLOW`/`HAS_BLOCK`/`HAS_DOMAINS` flags (the global
/// policy's `HAS_DOMAINS` from the config).
const ID_BITS: u32 = MAX_POLICIES.trailing_zeros();
const DEFAULT_AT: u32 = 24;
const MODE_AT: u32 = 32;
const ALLOW_GEN_AT: u32 = 40;
const BLOCK_GEN_AT: u32 = 41;
const FLAGS_AT: u32 = 48;
const _: () = assert!(MAX_POLICIES.is_power_of_two() && ID_BITS <= DEFAULT_AT);
const FLAGS: u32 = HAS_ALLOW | HAS_BLOCK | HAS_DOMAINS;

impl ActivePolicy {
    #[inline(always)]
    #[must_use]
    pub fn pack(
        id: u32,
        default_action: u8,
        mode: u8,
        allow_gen: u8,
        block_gen: u8,
        flags: u32,
    ) -> Self {
        Self(
            u64::from(id & (MAX_POLICIES - 1))
                | u64::from(default_action) << DEFAULT_AT
                | u64::from(mode) << MODE_AT
                | u64::from(allow_gen & 1) << ALLOW_GEN_AT
                | u64::from(block_gen & 1) << BLOCK_GEN_AT
                | u64::from(flags & FLAGS) << FLAGS_AT,
        )
    }

    #[inline(always)]
    #[must_use]
    pub fn global(config: &Config) -> Self {
        let (default_action, mode) = config.raw_policy();
        let domains = if config.has_domains != 0 { HAS_DOMAINS } else { 0 };
        Self::pack(GLOBAL_POLICY, default_action, mode, 0, 0, domains)
    }

    /// The same value, unknown to the verifier: the global and per-destination paths then
    /// meet in one state, and what follows is verified once. (Every field is masked where it
    /// is read.)
    #[inline(always)]
    #[must_use]
    pub fn laundered(self, zero: u32) -> Self {
        Self(self.0.wrapping_add(u64::from(zero)))
    }

    #[inline(always)]
    #[must_use]
    pub fn of(p: &Policy) -> Self {
        Self::pack(p.id, p.default_action, p.mode, p.allow_gen, p.block_gen, p.flags)
    }

    #[inline(always)]
    #[must_use]
    pub fn id(self) -> u32 {
        (self.0 as u32) & (MAX_POLICIES - 1)
    }

    #[inline(always)]
    #[must_use]
    pub fn default_action(self) -> u8 {
        (self.0 >> DEFAULT_AT) as u8
    }

    #[inline(always)]
    #[must_use]
    pub fn allow_gen(self) -> u8 {
        (self.0 >> ALLOW_GEN_AT) as u8 & 1
    }

    #[inline(always)]
    #[must_use]
    pub fn block_gen(self) -> u8 {
        (self.0 >> BLOCK_GEN_AT) as u8 & 1
    }

    #[inline(always)]
    #[must_use]
    pub fn flags(self) -> u32 {
        (self.0 >> FLAGS_AT) as u32 & FLAGS
    }

    #[inline(always)]
    #[must_use]
    pub fn monitor(self) -> bool {
        (self.0 >> MODE_AT) as u8 == Mode::Monitor as u8
    }
}

#[cfg(test)]
mod tests {
    use sipguard_common::config::DefaultAction;

    use super::*;

    #[test]
    fn every_field_reads_back_as_packed() {
        for id in [0, 1, MAX_POLICIES - 1] {
            for (allow_gen, block_gen) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                for flags in [0, HAS_ALLOW, HAS_BLOCK, HAS_ALLOW | HAS_BLOCK] {
                    let p = ActivePolicy::pack(
                        id,
                        DefaultAction::Drop as u8,
                        Mode::Monitor as u8,
                        allow_gen,
                        block_gen,
                        flags,
                    );
                    assert_eq!(p.id(), id);
                    assert_eq!(p.default_action(), DefaultAction::Drop as u8);
                    assert!(p.monitor());
                    assert_eq!((p.allow_gen(), p.block_gen()), (allow_gen, block_gen));
                    assert_eq!(p.flags(), flags);
                }
            }
        }
    }

    #[test]
    fn out_of_range_inputs_do_not_leak_into_other_fields() {
        let p = ActivePolicy::pack(MAX_POLICIES | 5, 0, Mode::Enforce as u8, 3, 2, u32::MAX);
        assert_eq!(p.id(), 5);
        assert!(!p.monitor());
        assert_eq!((p.allow_gen(), p.block_gen()), (1, 0));
        assert_eq!(p.flags(), HAS_ALLOW | HAS_BLOCK | HAS_DOMAINS);
        assert_eq!(p.laundered(0).id(), 5);
    }

    #[test]
    fn the_global_policy_has_id_zero_and_the_configured_default() {
        let config = Config::default().with_default_action(DefaultAction::Off);
        let p = ActivePolicy::global(&config);
        assert_eq!(p.id(), GLOBAL_POLICY);
        assert_eq!(p.default_action(), DefaultAction::Off as u8);
        assert_eq!(p.flags(), 0);
        let mut config = config;
        config.has_domains = 1;
        assert_eq!(ActivePolicy::global(&config).flags(), HAS_DOMAINS);
    }
}
