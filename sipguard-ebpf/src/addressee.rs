//! The domain check: with SIP domains declared, a request out of a dialog whose Request-URI
//! host is none of them is dropped (reason `unknown_domain`). Runs after the inspection,
//! on the window it copied and the offsets its walk noted.

use sipguard_common::{
    config::Config, domain::DomainKey, inspect::WINDOW, lists::GLOBAL_POLICY, policy::HAS_DOMAINS,
};
use sipguard_ebpf::{
    active_policy::ActivePolicy,
    address::{has_tag, hash_span, request_target},
};

use crate::maps::{DOMAINS, SCRATCH};

/// Whether `policy` (or the global policy) declares domains, so requests are checked.
#[inline(always)]
pub(crate) fn declared(config: &Config, policy: &ActivePolicy) -> bool {
    policy.flags() & HAS_DOMAINS != 0 || config.has_domains != 0
}

/// Whether the request just inspected goes to a host no declared domain names. Requests
/// inside a dialog (a To tag) are never judged: their Request-URI is the contact address the
/// server itself handed out, an IP address as often as not. A tag is no way around the
/// check: a dialog the server does not know gets 481, and no phone rings.
#[inline(never)]
pub(crate) fn unknown_domain(config: &Config, policy: &ActivePolicy) -> bool {
    let Some(s) = SCRATCH.get_ptr_mut(0) else { return false };
    // SAFETY: this CPU's scratch value, which the inspection has just filled.
    let s = unsafe { &mut *s };
    let len = s.walk.len as usize;
    let ruri = s.walk.ruri as usize;
    if len > WINDOW || ruri == 0 || ruri >= len {
        return false;
    }
    let to_at = s.walk.to_at as usize;
    if to_at == 0 {
        // Without a To header in the part read, only a complete header section tells.
        if s.walk.ended == 0 {
            return false;
        }
    } else if has_tag(s, to_at) {
        return false;
    }
    let Some(target) = request_target(s, ruri) else { return false };
    let Some(hash) = hash_span(s, target.host_at, target.host_len) else { return true };
    let id = policy.id();
    // SAFETY: lookups whose results are only tested for presence.
    let known = |policy: u32| unsafe {
        DOMAINS.get(DomainKey::new(policy, target.host_len, hash)).is_some()
    };
    let own = id != GLOBAL_POLICY && policy.flags() & HAS_DOMAINS != 0 && known(id);
    !(own || (config.has_domains != 0 && known(GLOBAL_POLICY)))
}
