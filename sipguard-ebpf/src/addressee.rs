//! The addressee stage (`Stage::Addressee`): whom a request addresses, read after the
//! inspection from the window it copied and the offsets its walk noted: the host of its
//! Request-URI, for the domain check (a request outside a dialog to a host no declared domain
//! names is dropped as `unknown_domain`), and the user part of its To header, for the
//! `extension_scan` rule. The credentials that may answer a challenge are searched here too.
//! A request to an unknown domain, or whose user trips a rule, goes on to the convict stage;
//! the rest meets the rate limit.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sipguard_common::{
    behaviour::{LONG_NUMBER_LEN, counts_user, sampled, user_bucket},
    config::Config,
    domain::DomainKey,
    inspect::WINDOW,
    lists::GLOBAL_POLICY,
    policy::HAS_DOMAINS,
    stages::Stage,
};
use sipguard_ebpf::{
    active_policy::ActivePolicy,
    address::{ToHeader, hash_span, request_target, to_header},
    packed::Addressee,
    window::load,
};

use crate::{
    clock::now_ns,
    maps::{CONFIG, DOMAINS, SCRATCH},
    rules,
    sources::admitted,
    stages::{Charge, hand_over, handoff},
    standing,
    verdict::finish,
};

#[xdp]
#[expect(clippy::needless_pass_by_value, reason = "the #[xdp] macro passes the context by value")]
pub(crate) fn sipguard_addressee(ctx: XdpContext) -> u32 {
    let (Some(config), Some(h)) = (CONFIG.get(0), handoff()) else {
        return xdp_action::XDP_PASS;
    };
    let policy = h.policy;
    // Most requests carry no credentials: they cost this test, not the call.
    if config.standing_secs() != 0 && carries_credentials() {
        standing::credentials(&h.seg.src);
    }
    if declared(config, &policy) || counting_users(config) {
        let found = addressee(config, &policy);
        if found.is_unknown_domain() {
            h.charge = Charge::UnknownDomain as u32;
            return hand_over(&ctx, Stage::Convict, &policy);
        }
        // A party with standing calling numbers is a dialer or a call centre, not a sweep;
        // one without is counted for a sample of its numbers.
        if let Some(bucket) = found.user_bucket()
            && counts_user(found.is_long_number(), found.is_sampled(), || {
                standing::standing(&h.seg.src.key(), config, now_ns())
            })
        {
            // A trip bans the source from its next packet on; this one goes on to the rate
            // limit, there.
            h.trip = rules::addressed(config, &h.seg.src, bucket, policy.monitor(), &mut h.seen);
            if h.trip.tripped() {
                h.charge = Charge::Behaviour as u32;
                return hand_over(&ctx, Stage::Convict, &policy);
            }
        }
    }
    finish(&policy, admitted(&ctx, config, h))
}

/// Whether a request the inspection walked to its end needs this stage: credentials to check
/// against a challenge, a domain to check, or a user to count.
#[inline(always)]
pub(crate) fn wanted(config: &Config, policy: &ActivePolicy) -> bool {
    (config.standing_secs() != 0 && carries_credentials())
        || declared(config, policy)
        || counting_users(config)
}

/// Whether the inspection saw an `Authorization` or `Proxy-Authorization` header.
#[inline(always)]
fn carries_credentials() -> bool {
    SCRATCH.get(0).is_some_and(|s| load(&s.walk.auth_at) != 0)
}

/// Whether `policy` (or the global policy) declares domains, so requests are checked.
#[inline(always)]
pub(crate) fn declared(config: &Config, policy: &ActivePolicy) -> bool {
    policy.flags() & HAS_DOMAINS != 0 || config.has_domains != 0
}

/// Whether the `extension_scan` rule wants the users requests address.
#[inline(always)]
pub(crate) fn counting_users(config: &Config) -> bool {
    let limits = config.behaviour_limits();
    limits.window_ns != 0 && limits.extension_scan != 0
}

/// What the request just inspected addresses: an unknown domain when its policy declares
/// domains and its host is none of them, else the user it names when `extension_scan` counts
/// users, else nothing. Requests inside a dialog (a To tag) are neither checked nor counted:
/// their Request-URI is the contact address the server itself handed out, an IP address as
/// often as not, and their user was counted when the dialog began. A tag is no way around
/// the check: a dialog the server does not know gets 481, and no phone rings.
#[inline(never)]
pub(crate) fn addressee(config: &Config, policy: &ActivePolicy) -> Addressee {
    let Some(s) = SCRATCH.get_ptr_mut(0) else { return Addressee::NONE };
    // SAFETY: this CPU's scratch value, which the inspection has just filled.
    let s = unsafe { &mut *s };
    let len = s.walk.len as usize;
    let ruri = s.walk.ruri as usize;
    if len > WINDOW || ruri == 0 || ruri >= len {
        return Addressee::NONE;
    }
    let to_at = s.walk.to_at as usize;
    let to = if to_at == 0 {
        // Without a To header in the part read, only a complete header section tells.
        if s.walk.ended == 0 {
            return Addressee::NONE;
        }
        ToHeader { tagged: false, user_at: 0, user_len: 0 }
    } else {
        to_header(s, to_at)
    };
    if to.tagged {
        return Addressee::NONE;
    }
    if declared(config, policy) && unknown_domain(config, policy, s, ruri) {
        return Addressee::UNKNOWN_DOMAIN;
    }
    if !counting_users(config) {
        return Addressee::NONE;
    }
    match hash_span(s, to.user_at, to.user_len) {
        Some(hash) => {
            Addressee::user(user_bucket(hash), to.user_len >= LONG_NUMBER_LEN, sampled(hash))
        }
        None => Addressee::NONE,
    }
}

#[inline(always)]
fn unknown_domain(
    config: &Config,
    policy: &ActivePolicy,
    s: &mut sipguard_ebpf::window::Scratch,
    ruri: usize,
) -> bool {
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
