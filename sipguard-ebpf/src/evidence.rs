//! What the packet that calls for a ban proves about its source (`sipguard_common::trust`): an
//! established TCP connection proves it, a reverse path that fails proves it forged. Asked
//! only on the way to a ban, never on the pass path.

use aya_ebpf::{
    bindings::{
        BPF_F_CURRENT_NETNS, BPF_FIB_LKUP_RET_BLACKHOLE, BPF_FIB_LKUP_RET_FRAG_NEEDED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_NOT_FWDED, BPF_FIB_LKUP_RET_PROHIBIT,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LKUP_RET_UNREACHABLE, BPF_TCP_ESTABLISHED,
        bpf_fib_lookup, bpf_sock_tuple, xdp_md,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_sk_lookup_tcp, bpf_sk_release},
    maps::lpm_trie::Key,
};
use sipguard_common::{
    config::Config,
    trust::{ROUTE_REJECT, ReversePath, RouteIfindex},
};

use crate::{
    maps::{ROUTES_V4, ROUTES_V6},
    parse::{Addr, Ip, Segment},
};

/// Whether the segment belongs to a TCP connection of this host past its handshake: its
/// source acknowledged the server's sequence number, so it receives what is sent to its
/// address. Such evidence bans at once, past the other checks. (A host that forwards to its
/// servers has no socket to find: its TCP evidence counts as unverified.)
#[inline(never)]
pub(crate) fn established(ctx: *mut xdp_md, seg: &Segment) -> bool {
    if seg.tcp == 0 {
        return false;
    }
    // SAFETY: a plain C struct; all zeros is a valid tuple.
    let mut t: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    let size = match (seg.src.ip(), seg.dst.ip()) {
        (Ip::V4(src), Ip::V4(dst)) => {
            // SAFETY: writes the union's IPv4 member, the one the size names.
            let v4 = unsafe { &mut t.__bindgen_anon_1.ipv4 };
            v4.saddr = u32::from_ne_bytes(src);
            v4.daddr = u32::from_ne_bytes(dst);
            v4.sport = seg.src_port.to_be();
            v4.dport = seg.dst_port.to_be();
            TUPLE_V4
        }
        (Ip::V6(_), Ip::V6(_)) => {
            // SAFETY: as above, the IPv6 member.
            let v6 = unsafe { &mut t.__bindgen_anon_1.ipv6 };
            v6.saddr = seg.src.quads();
            v6.daddr = seg.dst.quads();
            v6.sport = seg.src_port.to_be();
            v6.dport = seg.dst_port.to_be();
            TUPLE_V6
        }
        _ => return false,
    };
    // SAFETY: the context is the program's; the tuple is this frame's, of the size passed.
    // A socket found is released before it goes out of scope, as the verifier demands.
    unsafe {
        let sk = bpf_sk_lookup_tcp(ctx.cast(), &raw mut t, size, CURRENT_NETNS, 0);
        if sk.is_null() {
            return false;
        }
        let state = (*sk).state;
        bpf_sk_release(sk.cast());
        state == BPF_TCP_ESTABLISHED
    }
}

/// `BPF_F_CURRENT_NETNS` (-1) as the helper's `u64`: the device's namespace.
const CURRENT_NETNS: u64 = (BPF_F_CURRENT_NETNS as i64).cast_unsigned();

/// `bpf_sock_tuple`'s IPv4 and IPv6 parts, as `bpf_sk_lookup_tcp` takes their sizes.
const TUPLE_V4: u32 = 12;
const TUPLE_V6: u32 = 36;

/// What the packet that calls for a ban proves about its source.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// Nothing: one packet, or answers a forger can draw (the response program's rules).
    Unverified,
    /// Its reverse path fails ([`spoofed`]).
    Spoofed,
    /// It belongs to an established TCP connection ([`established`]).
    Verified,
}

impl Evidence {
    /// What the packet of `seg`, arrived on `ifindex`, proves (asked only on the way to a
    /// ban: the lookups cost).
    #[inline(always)]
    pub(crate) fn of(ctx: *mut xdp_md, config: &Config, seg: &Segment, ifindex: u32) -> Evidence {
        // With bans off there is no ban to prove anything for.
        if config.ban_ttl_secs == 0 {
            Evidence::Unverified
        } else if established(ctx, seg) {
            Evidence::Verified
        } else if spoofed(ctx, config, seg, ifindex) {
            Evidence::Spoofed
        } else {
            Evidence::Unverified
        }
    }
}

/// What the reverse path says of a source.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Back by this interface.
    Via(u32),
    /// Nowhere: no route, a rejecting one, or the source is one of the host's own addresses.
    Nowhere,
    /// The kernel could not tell (and the mirror is not kept): the source is not judged.
    Unknown,
}

/// Whether the source of `seg`, which arrived on `ifindex`, is forged: its route back leaves
/// by another interface (strict) or by none (loose). Out of line: the lookup's 64 bytes of
/// parameters are on its own frame, which only the way to a ban stacks.
#[inline(never)]
pub(crate) fn spoofed(ctx: *mut xdp_md, config: &Config, seg: &Segment, ifindex: u32) -> bool {
    let mode = config.reverse_path();
    if mode == ReversePath::Off {
        return false;
    }
    let route = match fib(ctx, seg, ifindex) {
        Route::Unknown if config.routes != 0 => mirror(&seg.src),
        r => r,
    };
    match route {
        Route::Via(out) => mode == ReversePath::Strict && out != ifindex,
        Route::Nowhere => true,
        Route::Unknown => false,
    }
}

/// `bpf_fib_lookup`'s size, as the helper takes it.
const PARAMS: i32 = 64;
const _: () = assert!(size_of::<bpf_fib_lookup>() == PARAMS as usize);

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// The kernel's FIB, asked for the way back: from the packet's destination to its source, as
/// if it arrived on `ifindex`. It answers only where that interface forwards (a router, a
/// host in front of servers); elsewhere [`Route::Unknown`], and the mirror answers.
#[inline(always)]
fn fib(ctx: *mut xdp_md, seg: &Segment, ifindex: u32) -> Route {
    // SAFETY: a plain C struct; all zeros is a valid (empty) query.
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    p.l4_protocol = if seg.tcp != 0 { 6 } else { 17 };
    p.sport = seg.dst_port.to_be();
    p.dport = seg.src_port.to_be();
    p.ifindex = ifindex;
    let link_local = match (seg.src.ip(), seg.dst.ip()) {
        (Ip::V4(src), Ip::V4(dst)) => {
            p.family = AF_INET;
            p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(dst);
            p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(src);
            false
        }
        (Ip::V6(src), Ip::V6(_)) => {
            p.family = AF_INET6;
            p.__bindgen_anon_3.ipv6_src = seg.dst.quads();
            p.__bindgen_anon_4.ipv6_dst = seg.src.quads();
            src[0] == 0xfe && src[1] & 0xc0 == 0x80
        }
        _ => return Route::Unknown,
    };
    // SAFETY: the context is the program's; the parameters are this frame's, of their size.
    let ret = unsafe { fib_lookup(ctx.cast(), &raw mut p, PARAMS, 0) };
    // A negative result (no such interface, say) is no verdict either.
    let Ok(ret) = u32::try_from(ret) else {
        return Route::Unknown;
    };
    match ret {
        BPF_FIB_LKUP_RET_SUCCESS | BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            Route::Via(p.ifindex)
        }
        BPF_FIB_LKUP_RET_BLACKHOLE | BPF_FIB_LKUP_RET_UNREACHABLE | BPF_FIB_LKUP_RET_PROHIBIT => {
            Route::Nowhere
        }
        // No route at all, or not a unicast one (one of the host's own addresses, a
        // broadcast). A link-local IPv6 source is never routed: not judged.
        BPF_FIB_LKUP_RET_NOT_FWDED if !link_local => Route::Nowhere,
        // BPF_FIB_LKUP_RET_FWD_DISABLED above all: the interface does not forward.
        _ => Route::Unknown,
    }
}

/// The route mirror userspace keeps of the main table (`SG_ROUTES_V4/V6`).
#[inline(always)]
fn mirror(src: &Addr) -> Route {
    let out: Option<&RouteIfindex> = match src.ip() {
        Ip::V4(a) => ROUTES_V4.get(Key::new(32, a)),
        Ip::V6(a) => {
            if a[0] == 0xfe && a[1] & 0xc0 == 0x80 {
                return Route::Unknown;
            }
            ROUTES_V6.get(Key::new(128, a))
        }
    };
    match out {
        Some(&i) if i != ROUTE_REJECT => Route::Via(i),
        _ => Route::Nowhere,
    }
}
