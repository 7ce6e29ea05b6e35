//! The global policy and runtime knobs, stored in the single entry of [`crate::maps::CONFIG`].

/// What happens to SIP-port traffic from a source that is on no list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DefaultAction {
    /// Inspect, then pass (the edge host that must talk to anyone).
    Pass = 0,
    /// Drop: only allowlisted sources may talk SIP (a PBX behind a known trunk).
    Drop = 1,
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

/// The global policy. Fields are plain bytes so that a value written by one version of
/// userspace can never be an invalid enum on the kernel side: unknown values read as the
/// safe default through the typed getters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Config {
    default_action: u8,
    mode: u8,
    fragment_action: u8,
    reserved: [u8; 13],
}

const _: () = assert!(size_of::<Config>() == 16);

impl Config {
    #[must_use]
    pub const fn new(default_action: DefaultAction, mode: Mode, fragments: FragmentAction) -> Self {
        Self {
            default_action: default_action as u8,
            mode: mode as u8,
            fragment_action: fragments as u8,
            reserved: [0; 13],
        }
    }

    #[must_use]
    #[inline(always)]
    pub const fn default_action(&self) -> DefaultAction {
        if self.default_action == DefaultAction::Drop as u8 {
            DefaultAction::Drop
        } else {
            DefaultAction::Pass
        }
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
}

impl Default for Config {
    fn default() -> Self {
        Self::new(DefaultAction::Pass, Mode::Enforce, FragmentAction::Pass)
    }
}

/// SIP ports used when none are configured (RFC 3261: 5060 for UDP/TCP, 5061 for TLS).
pub const DEFAULT_SIP_PORTS: [u16; 2] = [5060, 5061];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bytes_read_as_safe_defaults() {
        let c = Config { default_action: 7, mode: 9, fragment_action: 3, ..Config::default() };
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
}
