//! The convict stage (`Stage::Convict`): a packet that calls for a ban (`stages::Charge`: a
//! decisive signature, an unknown domain, a behaviour rule's trip) goes through the trust
//! checks (what the packet proves, its reverse path, the source's standing, the ban budget),
//! then the ban, the incident record and the verdict. Only this way to a ban pays for them.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use sipguard_common::{
    counters::Reason,
    sources::{DOMAIN_SIG, NO_SIG},
    trust::Withheld,
};

use crate::{
    events::{Detail, Incident, report},
    evidence::Evidence,
    maps::CONFIG,
    rules,
    sources::{limited, sentence},
    stages::{Charge, Handoff, handoff},
    verdict::finish,
};

#[xdp]
#[expect(clippy::needless_pass_by_value, reason = "the #[xdp] macro passes the context by value")]
pub(crate) fn sipguard_convict(ctx: XdpContext) -> u32 {
    let (Some(config), Some(h)) = (CONFIG.get(0), handoff()) else {
        return xdp_action::XDP_PASS;
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    let evidence = Evidence::of(ctx.ctx, config, &h.seg, ifindex);
    let reason = if h.charge == Charge::Behaviour as u32 {
        rules::tripped(ifindex, &h.seg, &h.seen, h.trip, evidence);
        limited(&ctx, config, h)
    } else {
        let (charge, sig, detail) = charged(h);
        let monitor = h.policy.monitor();
        let (flags, withheld) = sentence(&h.seg.src.key(), config, sig, monitor, evidence);
        let incident = Incident {
            reason: charge as u8,
            sig: if charge == Reason::Signature { sig } else { NO_SIG },
            method: h.kind.method(),
            flags,
            withheld,
            detail,
        };
        report(config, ifindex, &h.seg, &incident);
        if withheld == Withheld::Spoofed as u8 { Reason::Spoofed } else { charge }
    };
    finish(&h.policy, reason)
}

/// The charge of a signature or an unknown domain: its reason, the signature the ban names,
/// and what the record's last bytes carry.
#[inline(always)]
fn charged(h: &Handoff) -> (Reason, u16, Detail) {
    if h.charge == Charge::Signature as u32 {
        let (ua_off, ua_len) = h.finding.user_agent();
        let detail = if ua_len > 0 { Detail::UserAgent(ua_off, ua_len) } else { Detail::Nothing };
        (Reason::Signature, h.finding.sig(), detail)
    } else {
        (Reason::UnknownDomain, DOMAIN_SIG, Detail::Nothing)
    }
}
