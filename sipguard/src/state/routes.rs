//! The route mirror (`SG_ROUTES_V4/V6`): the main routing table as the reverse-path check
//! reads it on hosts that do not forward. `bpf_fib_lookup` answers only for an interface
//! with forwarding on, which a PBX rarely has; there the kernel program looks the source up
//! in this copy instead. `attach` takes a copy; `run` keeps it in step with every route
//! change the kernel announces (`watch`).

use std::{collections::BTreeMap, os::fd::OwnedFd};

use anyhow::Context as _;
use aya::maps::lpm_trie::Key;
use sipguard_common::trust::{ROUTE_REJECT, RouteIfindex};

use crate::kernel::{maps::PinnedMaps, sys};

/// One address family's routes: (prefix length, address) to the interface they leave by.
pub type Table<const N: usize> = BTreeMap<(u8, [u8; N]), RouteIfindex>;

/// The main table, as `/proc/net/route` and `/proc/net/ipv6_route` list it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routes {
    pub v4: Table<4>,
    pub v6: Table<16>,
}

const RTF_REJECT: u32 = 0x0200;
const RTF_LOCAL: u32 = 0x8000_0000;

impl Routes {
    /// Reads the host's routes.
    pub fn read() -> anyhow::Result<Routes> {
        let v4 = std::fs::read_to_string("/proc/thread-self/net/route")
            .context("reading /proc/net/route")?;
        // A host without IPv6 has no such file: no IPv6 routes.
        let v6 = std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap_or_default();
        Ok(Routes { v4: parse_v4(&v4, sys::ifindex), v6: parse_v6(&v6, sys::ifindex) })
    }
}

/// `/proc/net/route`: a header line, then `Iface Destination Gateway Flags RefCnt Use Metric
/// Mask ...`, addresses as the hex of their in-memory `u32`. Of routes to one prefix the
/// lowest metric wins, as in the kernel.
fn parse_v4(text: &str, ifindex: impl Fn(&str) -> Option<u32>) -> Table<4> {
    let mut best: BTreeMap<(u8, [u8; 4]), (u32, RouteIfindex)> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dev), Some(dst), Some(flags), Some(metric), Some(mask)) =
            (f.first(), f.get(1), f.get(3), f.get(6), f.get(7))
        else {
            continue;
        };
        let (Ok(dst), Ok(flags), Ok(metric), Ok(mask)) = (
            u32::from_str_radix(dst, 16),
            u32::from_str_radix(flags, 16),
            metric.parse::<u32>(),
            u32::from_str_radix(mask, 16),
        ) else {
            continue;
        };
        // A route without a device (`*`: blackhole, unreachable, prohibit) sends nowhere.
        let out = if flags & RTF_REJECT != 0 || *dev == "*" {
            ROUTE_REJECT
        } else if let Some(i) = ifindex(dev) {
            i
        } else {
            continue;
        };
        let len = u8::try_from(mask.count_ones()).unwrap_or(32);
        let key = (len, (dst & mask).to_ne_bytes());
        if best.get(&key).is_none_or(|(m, _)| metric < *m) {
            best.insert(key, (metric, out));
        }
    }
    best.into_iter().map(|(k, (_, out))| (k, out)).collect()
}

/// `/proc/net/ipv6_route`: `dest plen src plen nexthop metric refcnt use flags dev`, hex.
/// Every table is listed: the host's own addresses (`RTF_LOCAL`) count as rejecting, since a
/// packet from outside that claims one is forged. Multicast prefixes are left out.
fn parse_v6(text: &str, ifindex: impl Fn(&str) -> Option<u32>) -> Table<16> {
    let mut best: BTreeMap<(u8, [u8; 16]), (u32, RouteIfindex)> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[0].len() != 32 {
            continue;
        }
        let mut dst = [0u8; 16];
        if (0..16)
            .any(|i| u8::from_str_radix(&f[0][2 * i..2 * i + 2], 16).map(|b| dst[i] = b).is_err())
            || dst[0] == 0xff
        {
            continue;
        }
        let (Ok(len), Ok(metric), Ok(flags)) = (
            u8::from_str_radix(f[1], 16),
            u32::from_str_radix(f[5], 16),
            u32::from_str_radix(f[8], 16),
        ) else {
            continue;
        };
        let out = if flags & (RTF_REJECT | RTF_LOCAL) != 0 {
            ROUTE_REJECT
        } else if let Some(i) = ifindex(f[9]) {
            i
        } else {
            continue;
        };
        let key = (len.min(128), dst);
        if best.get(&key).is_none_or(|(m, _)| metric < *m) {
            best.insert(key, (metric, out));
        }
    }
    best.into_iter().map(|(k, (_, out))| (k, out)).collect()
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub v4: usize,
    pub v6: usize,
    /// The table did not fit: the mirror is off, and the check asks only the kernel's FIB.
    pub too_many: bool,
}

/// Makes the mirror equal to the host's routes and marks it kept (`Config::routes`). A
/// table too large for the mirror turns it off (a host with so many routes forwards, and
/// there the kernel's FIB answers).
pub fn sync(maps: &PinnedMaps) -> anyhow::Result<Synced> {
    let routes = Routes::read()?;
    let capacity = maps.capacity(sipguard_common::maps::ROUTES_V4)? as usize;
    let too_many = routes.v4.len() > capacity || routes.v6.len() > capacity;
    if too_many {
        maps.set_routes_kept(false)?;
        return Ok(Synced { v4: routes.v4.len(), v6: routes.v6.len(), too_many });
    }
    let (mut v4, mut v6) = maps.routes()?;
    replace(&mut v4, &routes.v4).context("updating the IPv4 route mirror")?;
    replace(&mut v6, &routes.v6).context("updating the IPv6 route mirror")?;
    maps.set_routes_kept(true)?;
    Ok(Synced { v4: routes.v4.len(), v6: routes.v6.len(), too_many })
}

/// Inserts what is new or changed first, then removes what is gone: a lookup meanwhile finds
/// the old route or the new one, never none where the table has one.
fn replace<const N: usize>(
    trie: &mut aya::maps::LpmTrie<aya::maps::MapData, [u8; N], RouteIfindex>,
    want: &Table<N>,
) -> anyhow::Result<()>
where
    [u8; N]: aya::Pod,
{
    let have: Vec<Key<[u8; N]>> = trie.keys().collect::<Result<_, _>>()?;
    for (&(len, addr), &out) in want {
        trie.insert(&Key::new(u32::from(len), addr), out, 0)?;
    }
    for key in have {
        let len = u8::try_from(key.prefix_len()).unwrap_or(u8::MAX);
        if !want.contains_key(&(len, key.data())) {
            trie.remove(&key).ok();
        }
    }
    Ok(())
}

/// A socket that hears of every IPv4 and IPv6 route change (`RTMGRP_IPV4_ROUTE`,
/// `RTMGRP_IPV6_ROUTE`): readable when the mirror may be stale.
pub fn watch() -> anyhow::Result<OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls; the descriptor is owned from here on.
    let fd = unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("opening a netlink socket");
        }
        OwnedFd::from_raw_fd(fd)
    };
    // SAFETY: an all-zero sockaddr_nl is valid; the fields set are plain integers.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or_default();
    addr.nl_groups = u32::try_from(libc::RTMGRP_IPV4_ROUTE | libc::RTMGRP_IPV6_ROUTE).unwrap_or(0);
    // SAFETY: `addr` is a sockaddr_nl of the size passed.
    let rc = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            (&raw const addr).cast(),
            libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(0),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("listening for route changes");
    }
    Ok(fd)
}

/// Reads every pending notice off the socket (their content does not matter: the whole
/// table is read again). Returns whether there was any.
#[must_use]
pub fn drain(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 8192];
    let mut any = false;
    loop {
        // SAFETY: reads into a buffer of the size passed.
        let n = unsafe {
            libc::recv(std::os::fd::AsRawFd::as_raw_fd(fd), buf.as_mut_ptr().cast(), buf.len(), 0)
        };
        if n <= 0 {
            // EAGAIN: drained. ENOBUFS: notices were lost, which a full read makes good.
            return any || std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS);
        }
        any = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str) -> Option<u32> {
        match name {
            "eth0" => Some(2),
            "eth1" => Some(3),
            "lo" => Some(1),
            _ => None,
        }
    }

    #[test]
    fn ipv4_routes_are_read_with_the_lowest_metric() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth1\t00000000\t0102A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0\n\
            eth1\t00024D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            *\t0000000A\t00000000\t0201\t0\t0\t0\t000000FF\t0\t0\t0\n\
            *\t0000420A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            gone\t0000A8C0\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let t = parse_v4(text, index);
        assert_eq!(t.get(&(0, [0, 0, 0, 0])), Some(&3), "metric 50 beats 100");
        assert_eq!(t.get(&(24, [10, 77, 2, 0])), Some(&3));
        assert_eq!(t.get(&(8, [10, 0, 0, 0])), Some(&ROUTE_REJECT), "unreachable");
        assert_eq!(t.get(&(16, [10, 66, 0, 0])), Some(&ROUTE_REJECT), "blackhole");
        assert_eq!(t.len(), 4, "a route by an unknown interface is left out: {t:?}");
    }

    #[test]
    fn ipv6_routes_treat_own_addresses_as_rejecting() {
        let text = "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
            20010db8000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001 lo\n\
            ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
            00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";
        let t = parse_v6(text, index);
        let mut db8 = [0u8; 16];
        db8[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(t.get(&(64, db8)), Some(&2));
        let mut own = db8;
        own[15] = 1;
        assert_eq!(t.get(&(128, own)), Some(&ROUTE_REJECT));
        assert_eq!(t.get(&(0, [0; 16])), Some(&ROUTE_REJECT), "no default route");
        assert_eq!(t.len(), 3, "multicast left out: {t:?}");
    }
}
