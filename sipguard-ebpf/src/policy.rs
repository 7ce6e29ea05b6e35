//! Who is sending, under which policy: the protected destination's policy, and the source's
//! place on the allow- and blocklists and in the decision list (bans and the rate limit are
//! in `sources`).

use aya_ebpf::maps::lpm_trie::Key;
use sipguard_common::{
    config::{Config, DefaultAction},
    decisions::{DECISION_UNPROVEN, Decision},
    lists::{GLOBAL_POLICY, TAG_BITS, filter_bit, filter_slot, filter_word, tag, v4_key, v6_key},
    policy::{HAS_ALLOW, HAS_BLOCK, Policy},
};
use sipguard_ebpf::active_policy::ActivePolicy;

use crate::{
    clock::now_ns,
    maps::{
        ALLOW_V4, ALLOW_V6, BLOCK_V4, BLOCK_V6, DECISION_SET, DECISIONS_V4, DECISIONS_V6, DEST_V4,
        DEST_V6, LIST_FILTER,
    },
    parse::{Addr, Ip},
};

/// The policy that judges traffic of `server` (a request's destination, an answer's source):
/// its own if it is a protected destination, else the global one; `None` when it has none and
/// the global default is `off` (it is not protected).
#[inline(always)]
pub(crate) fn active(config: &Config, server: &Addr) -> Option<ActivePolicy> {
    let global = ActivePolicy::global(config);
    match if config.has_policies != 0 { policy_for(server) } else { None } {
        Some(p) => Some(ActivePolicy::of(p)),
        None if global.default_action() == DefaultAction::Off as u8 => None,
        None => Some(global),
    }
}

/// Whether `party` is on the allowlist of `policy` or on the global one.
#[inline(always)]
pub(crate) fn allowlisted(config: &Config, policy: &ActivePolicy, party: &Addr) -> bool {
    (policy.flags() & HAS_ALLOW != 0 && listed(party, true, tag(policy.id(), policy.allow_gen())))
        || global_listed(config, party, true, config.allow_gen)
}

/// Whether `party` is on the blocklist of `policy` or on the global one.
#[inline(always)]
pub(crate) fn blocklisted(config: &Config, policy: &ActivePolicy, party: &Addr) -> bool {
    (policy.flags() & HAS_BLOCK != 0 && listed(party, false, tag(policy.id(), policy.block_gen())))
        || global_listed(config, party, false, config.block_gen)
}

/// The policy of a protected destination, if it has one.
#[inline(always)]
fn policy_for(dst: &Addr) -> Option<&'static Policy> {
    match dst.ip() {
        Ip::V4(a) => DEST_V4.get(Key::new(32, a)),
        Ip::V6(a) => DEST_V6.get(Key::new(128, a)),
    }
}

/// Looks the source up in the allowlist (`allow`) or blocklist tagged `tag`.
#[inline(always)]
fn listed(src: &Addr, allow: bool, tag: u32) -> bool {
    match src.ip() {
        Ip::V4(a) => {
            let key = Key::new(TAG_BITS + 32, v4_key(tag, a));
            let map = if allow { &ALLOW_V4 } else { &BLOCK_V4 };
            map.get(&key).is_some()
        }
        Ip::V6(a) => {
            let key = Key::new(TAG_BITS + 128, v6_key(tag, a));
            let map = if allow { &ALLOW_V6 } else { &BLOCK_V6 };
            map.get(&key).is_some()
        }
    }
}

/// Looks the source up in a global list, unless its bitmap says no entry covers the source's
/// IPv4 `/24` (see `sipguard_common::lists::FILTER_BLOCK_BITS`; IPv6 sources are always
/// looked up).
#[inline(always)]
fn global_listed(config: &Config, src: &Addr, allow: bool, generation: u8) -> bool {
    if config.list_filters != 0
        && let Ip::V4(a) = src.ip()
        && let Some(word) = LIST_FILTER.get(filter_word(filter_slot(allow, generation), a))
        && word & filter_bit(a) == 0
    {
        return false;
    }
    listed(src, allow, tag(GLOBAL_POLICY, generation))
}

/// What the decision store says of a source.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decided {
    Nothing,
    /// A decision to enforce whatever this edge knows of the source, of this origin
    /// (`sipguard_common::decisions::Origin` as a byte).
    Proven {
        origin: u8,
    },
    /// A sipguard edge's unproven ban (`sipguard_common::decisions::DECISION_UNPROVEN`):
    /// enforced unless the source has standing here.
    Unproven {
        origin: u8,
    },
}

/// Whether a live decision of the decision store names the source (`sipguard_common::
/// decisions`), and of what kind. An expired one is ignored: userspace sweeps it, and a
/// decision ends on time even while no userspace runs.
#[inline(always)]
pub(crate) fn decided(src: &Addr) -> Decided {
    let Some(set) = DECISION_SET.get(0) else {
        return Decided::Nothing;
    };
    if set.active == 0 {
        return Decided::Nothing;
    }
    let tag = u32::from(set.generation & 1);
    let found: Option<&Decision> = match src.ip() {
        Ip::V4(a) => DECISIONS_V4.get(Key::new(TAG_BITS + 32, v4_key(tag, a))),
        Ip::V6(a) => DECISIONS_V6.get(Key::new(TAG_BITS + 128, v6_key(tag, a))),
    };
    match found {
        Some(d) if now_ns() < d.expires_ns => {
            if d.flags & DECISION_UNPROVEN == 0 {
                Decided::Proven { origin: d.origin }
            } else {
                Decided::Unproven { origin: d.origin }
            }
        }
        _ => Decided::Nothing,
    }
}
