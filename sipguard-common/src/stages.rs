//! The XDP program's stages: the entry program (`sipguard`, the one attached) judges what the
//! headers decide and hands a packet whose payload matters to the next stage by a tail call
//! through the jump table `SG_STAGES`, at the slot of [`Stage`]. Each stage is a program of
//! its own, so the verifier checks each once, from a clean state, however many ways lead to
//! it; what a stage hands on lives in per-CPU memory (the program's `SG_HANDOFF`).

/// The name of the entry program in the object: the one attached to interfaces.
pub const ENTRY: &str = "sipguard";

/// A stage after the entry program, by its slot in the jump table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// The payload: header inspection against the signatures, then the rate limit.
    Inspect = 0,
    /// Whom a request addresses: the domain check, the user for `extension_scan`, the
    /// credentials that answer a challenge.
    Addressee = 1,
    /// A packet that calls for a ban: the trust checks, the ban, the incident record.
    Convict = 2,
}

impl Stage {
    /// Every stage, in slot order.
    pub const ALL: [Stage; 3] = [Stage::Inspect, Stage::Addressee, Stage::Convict];

    /// The stage's program in the object.
    #[must_use]
    pub const fn program(self) -> &'static str {
        match self {
            Stage::Inspect => "sipguard_inspect",
            Stage::Addressee => "sipguard_addressee",
            Stage::Convict => "sipguard_convict",
        }
    }

    #[must_use]
    #[inline(always)]
    pub const fn slot(self) -> u32 {
        self as u32
    }
}

/// Entries of the jump table: one past the last stage's slot.
pub const STAGE_SLOTS: u32 = Stage::Convict as u32 + 1;

const _: () = assert!(STAGE_SLOTS as usize == Stage::ALL.len());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_order_of_all() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(stage.slot() as usize, i);
        }
    }
}
