//! The global policy and runtime knobs, stored in the single entry of [`crate::maps::CONFIG`].

/// What happens to SIP-port traffic from a source that is on no list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DefaultAction {
    /// Inspect, then pass (the edge host that must talk to anyone).
    Pass = 0,
    /// Drop: only allowlisted sources may talk SIP (a PBX behind a known trunk).
    Drop = 1,
    /// Global policy only: destinations without a policy of their own are not inspected at
    /// all (a provider that protects only the addresses it lists).
    Off = 2,
}

impl DefaultAction {
    #[must_use]
    #[inline(always)]
    pub const fn from_u8(v: u8) -> DefaultAction {
        match v {
            1 => DefaultAction::Drop,
            2 => DefaultAction::Off,
            _ => DefaultAction::Pass,
        }
    }
}

/// Whether verdicts are enforced or only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Enforce = 0,
    /// Evaluate everything, pass everything, count what would have been dropped.
    Monitor = 1,
}

/// Policy for non-first IP fragments, which carry no ports and so cannot be classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FragmentAction {
    Pass = 0,
    Drop = 1,
}

/// The global policy and runtime knobs. Enum-like fields are plain bytes so that a value
/// written by one version of userspace can never be an invalid enum on the kernel side:
/// unknown values read as the safe default through the typed getters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Config {
    /// GCRA emission interval of the per-source rate limit (0: no rate limit).
    pub rate_interval_ns: u64,
    /// GCRA tolerance: how far ahead of schedule a source may be (burst x interval).
    pub rate_tolerance_ns: u64,
    /// Global event budget, same algorithm: at most one event per interval on average.
    pub event_interval_ns: u64,
    pub event_tolerance_ns: u64,
    /// How long a source caught by a signature stays banned (0: no bans).
    pub ban_ttl_secs: u32,
    /// Always zero. The program adds it to offsets at loop boundaries: the verifier cannot
    /// know its value, so it stops tracking exact offsets there and every path through a
    /// header line looks alike (see docs/architecture.md, "Verifier").
    pub opaque_zero: u32,
    default_action: u8,
    mode: u8,
    fragment_action: u8,
    /// Which of the two automaton slots is live.
    pub automaton_slot: u8,
    /// Live generation (0/1) of the global allowlist and blocklist: a list is replaced by
    /// writing the other generation, then flipping this (see `lists::tag`).
    pub allow_gen: u8,
    pub block_gen: u8,
    /// Set when per-destination policies exist (the program skips their lookup otherwise).
    pub has_policies: u8,
    /// Where an earlier sipguard marked its `/16` bitmaps (`SG_LIST_FILTER`) as kept. This
    /// version keeps it zero, so an earlier program still attached after a failed upgrade
    /// looks every list up instead of trusting bitmaps nobody maintains any more.
    pub retired_list_filters: u8,
    /// Set once userspace keeps `SG_LIST_FILTER_V4` in step with the global lists (a pin
    /// directory made by an older sipguard has none): until then every list is looked up.
    pub list_filters: u8,
    /// The behaviour rules (`crate::behaviour`): window seconds, auth-failure and not-found
    /// thresholds, each a little-endian `u16` (bytes, so the struct has no padding; a
    /// configuration written by an older sipguard reads as all rules off).
    behaviour: [u8; 6],
    /// Set when the global policy declares SIP domains (`crate::domain`).
    pub has_domains: u8,
    /// The `extension_scan` rule's threshold, a little-endian `u16` (0, as an older sipguard
    /// left it: off).
    extension_scan: [u8; 2],
    /// The reverse-path check on the way to a ban (`crate::trust::ReversePath`; 0, as an
    /// older sipguard left it: strict).
    reverse_path: u8,
    /// Seconds a success gives a source standing, a little-endian `u32` (0: no standing).
    standing: [u8; 4],
    /// Set while userspace keeps the route mirror (`SG_ROUTES_V4/V6`) in step with the main
    /// routing table: the reverse-path check reads it where `bpf_fib_lookup` cannot answer.
    pub routes: u8,
}

const _: () = assert!(size_of::<Config>() == 64);

/// Events per second the kernel may emit before it starts suppressing (and counting) them.
pub const DEFAULT_EVENT_RATE: u64 = 1000;
/// Default ban duration: one hour.
pub const DEFAULT_BAN_TTL_SECS: u32 = 3600;

impl Config {
    #[must_use]
    pub const fn new(default_action: DefaultAction, mode: Mode, fragments: FragmentAction) -> Self {
        Self {
            rate_interval_ns: 0,
            rate_tolerance_ns: 0,
            event_interval_ns: 1_000_000_000 / DEFAULT_EVENT_RATE,
            event_tolerance_ns: 1_000_000_000,
            ban_ttl_secs: DEFAULT_BAN_TTL_SECS,
            opaque_zero: 0,
            default_action: default_action as u8,
            mode: mode as u8,
            fragment_action: fragments as u8,
            automaton_slot: 0,
            allow_gen: 0,
            block_gen: 0,
            has_policies: 0,
            retired_list_filters: 0,
            list_filters: 0,
            behaviour: behaviour_bytes(
                crate::behaviour::DEFAULT_WINDOW_SECS,
                crate::behaviour::DEFAULT_AUTH_FAILURES,
                crate::behaviour::DEFAULT_NOT_FOUND,
            ),
            has_domains: 0,
            extension_scan: crate::behaviour::DEFAULT_EXTENSION_SCAN.to_le_bytes(),
            reverse_path: crate::trust::ReversePath::Strict as u8,
            standing: crate::trust::DEFAULT_STANDING_SECS.to_le_bytes(),
            routes: 0,
        }
    }

    #[must_use]
    #[inline(always)]
    pub const fn default_action(&self) -> DefaultAction {
        DefaultAction::from_u8(self.default_action)
    }

    /// The default action and mode as stored (the XDP program keeps them raw: see
    /// `datapath::Scope`).
    #[must_use]
    #[inline(always)]
    pub const fn raw_policy(&self) -> (u8, u8) {
        (self.default_action, self.mode)
    }

    #[must_use]
    #[inline(always)]
    pub const fn mode(&self) -> Mode {
        if self.mode == Mode::Monitor as u8 { Mode::Monitor } else { Mode::Enforce }
    }

    #[must_use]
    #[inline(always)]
    pub const fn fragment_action(&self) -> FragmentAction {
        if self.fragment_action == FragmentAction::Drop as u8 {
            FragmentAction::Drop
        } else {
            FragmentAction::Pass
        }
    }

    #[must_use]
    pub const fn with_default_action(mut self, action: DefaultAction) -> Self {
        self.default_action = action as u8;
        self
    }

    #[must_use]
    pub const fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode as u8;
        self
    }

    #[must_use]
    pub const fn with_fragment_action(mut self, action: FragmentAction) -> Self {
        self.fragment_action = action as u8;
        self
    }

    #[must_use]
    pub const fn with_ban_ttl(mut self, secs: u32) -> Self {
        self.ban_ttl_secs = secs;
        self
    }

    /// Per-source rate limit: `pps` packets per second with bursts of `burst` (0: off).
    #[must_use]
    pub const fn with_rate_limit(mut self, pps: u32, burst: u32) -> Self {
        if pps == 0 {
            self.rate_interval_ns = 0;
            self.rate_tolerance_ns = 0;
        } else {
            self.rate_interval_ns = 1_000_000_000 / pps as u64;
            self.rate_tolerance_ns = self.rate_interval_ns * burst as u64;
        }
        self
    }

    /// The behaviour rules: their window in seconds and thresholds (0: the rule is off; a
    /// window of 0 turns all off).
    #[must_use]
    pub const fn with_behaviour(
        mut self,
        window_secs: u16,
        auth_failures: u16,
        not_found: u16,
    ) -> Self {
        self.behaviour = behaviour_bytes(window_secs, auth_failures, not_found);
        self
    }

    /// `(window_secs, auth_failures, not_found)` as stored.
    #[must_use]
    #[inline(always)]
    pub const fn behaviour(&self) -> (u16, u16, u16) {
        let b = &self.behaviour;
        (
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
        )
    }

    /// The `extension_scan` rule's threshold: distinct users addressed (0: off).
    #[must_use]
    pub const fn with_extension_scan(mut self, users: u16) -> Self {
        self.extension_scan = users.to_le_bytes();
        self
    }

    #[must_use]
    #[inline(always)]
    pub const fn extension_scan(&self) -> u16 {
        u16::from_le_bytes(self.extension_scan)
    }

    #[must_use]
    pub const fn with_reverse_path(mut self, mode: crate::trust::ReversePath) -> Self {
        self.reverse_path = mode as u8;
        self
    }

    #[must_use]
    #[inline(always)]
    pub const fn reverse_path(&self) -> crate::trust::ReversePath {
        crate::trust::ReversePath::from_u8(self.reverse_path)
    }

    /// Seconds a success gives standing (0: none).
    #[must_use]
    pub const fn with_standing(mut self, secs: u32) -> Self {
        self.standing = secs.to_le_bytes();
        self
    }

    #[must_use]
    #[inline(always)]
    pub const fn standing_secs(&self) -> u32 {
        u32::from_le_bytes(self.standing)
    }

    /// The behaviour rules' limits, as the kernel applies them.
    #[must_use]
    #[inline(always)]
    pub const fn behaviour_limits(&self) -> crate::behaviour::Limits {
        let (window, auth, not_found) = self.behaviour();
        crate::behaviour::Limits {
            window_ns: window as u64 * 1_000_000_000,
            auth_failures: auth as u32,
            not_found: not_found as u32,
            extension_scan: self.extension_scan() as u32,
        }
    }

    /// The rate limit as `(pps, burst)`, if one is set.
    #[must_use]
    pub const fn rate_limit(&self) -> Option<(u64, u64)> {
        match (
            1_000_000_000u64.checked_div(self.rate_interval_ns),
            self.rate_tolerance_ns.checked_div(self.rate_interval_ns),
        ) {
            (Some(pps), Some(burst)) => Some((pps, burst)),
            _ => None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new(DefaultAction::Pass, Mode::Enforce, FragmentAction::Pass)
    }
}

const fn behaviour_bytes(window_secs: u16, auth_failures: u16, not_found: u16) -> [u8; 6] {
    let (w, a, n) =
        (window_secs.to_le_bytes(), auth_failures.to_le_bytes(), not_found.to_le_bytes());
    [w[0], w[1], a[0], a[1], n[0], n[1]]
}

/// SIP ports used when none are configured (RFC 3261: 5060 for UDP/TCP, 5061 for TLS).
pub const DEFAULT_SIP_PORTS: [u16; 2] = [5060, 5061];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bytes_read_as_safe_defaults() {
        let c = Config { default_action: 7, mode: 9, fragment_action: 3, ..Config::default() };
        assert_eq!(c.opaque_zero, 0);
        assert_eq!(c.default_action(), DefaultAction::Pass);
        assert_eq!(c.mode(), Mode::Enforce);
        assert_eq!(c.fragment_action(), FragmentAction::Pass);
    }

    #[test]
    fn builders_round_trip() {
        let c = Config::default()
            .with_default_action(DefaultAction::Drop)
            .with_mode(Mode::Monitor)
            .with_fragment_action(FragmentAction::Drop);
        assert_eq!(c.default_action(), DefaultAction::Drop);
        assert_eq!(c.mode(), Mode::Monitor);
        assert_eq!(c.fragment_action(), FragmentAction::Drop);
    }

    #[test]
    fn behaviour_round_trips() {
        let c = Config::default();
        assert_eq!(c.behaviour(), (60, 20, 20));
        let c = c.with_behaviour(300, 0, 1000);
        assert_eq!(c.behaviour(), (300, 0, 1000));
        assert_eq!(c.behaviour_limits().window_ns, 300_000_000_000);
    }

    #[test]
    fn trust_round_trips() {
        use crate::trust::ReversePath;
        let c = Config::default();
        assert_eq!((c.reverse_path(), c.standing_secs()), (ReversePath::Strict, 86_400));
        let c = c.with_reverse_path(ReversePath::Loose).with_standing(0);
        assert_eq!((c.reverse_path(), c.standing_secs()), (ReversePath::Loose, 0));
    }

    #[test]
    fn rate_limit_round_trips() {
        let c = Config::default().with_rate_limit(50, 20);
        assert_eq!(c.rate_interval_ns, 20_000_000);
        assert_eq!(c.rate_limit(), Some((50, 20)));
        assert_eq!(c.with_rate_limit(0, 5).rate_limit(), None);
    }
}
