//! The embedded kernel programs: loading them over the pinned maps (`links` attaches, adopts
//! and detaches them; `refusal` says in a few lines why the verifier refused one).
//!
//! The XDP program is several programs: the entry program, the one attached, and the stages
//! it hands a packet to by tail calls through its jump table (`sipguard_common::stages`).
//! The verifier checks each on its own, so each has its own count against its limit.

mod links;
mod refusal;
mod shapes;

use std::time::Instant;

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::ProgramArray,
    programs::{Program, ProgramError, SchedClassifier, Xdp},
};
use sipguard_common::{
    maps as names,
    stages::{ENTRY, Stage},
};

pub use links::{
    AttachMode, Attached, LinkStatus, detach_pinned, detach_responses, link_status, unpin_stages,
};
pub use refusal::{Refusal, VERIFIER_LIMIT, log_refusals_to};

use crate::kernel::pin::PinLayout;

/// The object built by `build.rs` (empty when the eBPF build was skipped).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipguard-xdp"));
/// Name of the response program (TC egress) in the object.
const RESPONSES: &str = "sipguard_responses";

/// Every program of the object, in the order they are loaded: the entry program, its
/// stages, the response program.
#[must_use]
pub fn names() -> Vec<&'static str> {
    let mut all = vec![ENTRY];
    all.extend(Stage::ALL.iter().map(|s| s.program()));
    all.push(RESPONSES);
    all
}

/// What loading one program cost.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProgramLoad {
    pub name: &'static str,
    /// Instructions the verifier processed to accept it (kernels 5.16+ report it).
    pub verified_instructions: Option<u32>,
    /// How long its load took, verifier included.
    pub seconds: f64,
}

/// The programs loaded over the pinned maps, ready to attach.
pub struct Loaded {
    ebpf: Ebpf,
    /// Whether the maps were created by this load (nothing was pinned before).
    pub fresh: bool,
    /// Each program's load, in [`names`] order.
    pub programs: Vec<ProgramLoad>,
    /// Earlier maps of another shape, set aside for this load: they stay recoverable until
    /// the attach over it commits ([`Loaded::commit`]), and go back if it never does.
    aside: shapes::SetAside,
}

impl Loaded {
    /// The attach over these programs committed: maps set aside for them are removed. Until
    /// then (and if this is never called, when the `Loaded` is dropped) they are put back.
    pub fn commit(&mut self) {
        std::mem::take(&mut self.aside).discard();
    }
}

/// Sizes of the maps userspace chooses, used when they are first created.
#[derive(Clone, Copy, Debug)]
pub struct Capacities {
    /// Entries per source list trie (per family).
    pub lists: u32,
    /// Protected destinations per family.
    pub destinations: u32,
    /// Remote sources whose behaviour is tracked.
    pub behaviour: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            lists: names::DEFAULT_LIST_CAPACITY,
            destinations: names::DEFAULT_DEST_CAPACITY,
            behaviour: names::DEFAULT_BEHAVIOUR_CAPACITY,
        }
    }
}

/// Loads the programs, reusing the maps pinned under `layout` or creating (and pinning) them
/// with the given capacities. A program the kernel refuses fails the load with a
/// [`Refusal`], its verifier log written to a file ([`log_refusals_to`]).
pub fn load(layout: &PinLayout, capacity: Capacities) -> anyhow::Result<Loaded> {
    if OBJECT.is_empty() {
        bail!(
            "this sipguard binary was built without its XDP program (SIPGUARD_SKIP_EBPF); run `cargo xtask setup`, then rebuild"
        );
    }
    crate::kernel::probe::require()?;
    layout.prepare()?;
    let fresh = !layout.has_maps();
    let aside = if fresh { shapes::SetAside::default() } else { shapes::check(layout)? };
    let (ebpf, programs) = match load_inner(layout, capacity) {
        Ok(loaded) => loaded,
        Err(e) => {
            aside.restore();
            if fresh && let Err(cleanup) = layout.remove_all() {
                // Half a filter is left: say so beside the load's own error.
                log::warn!(
                    "removing the half-made filter under {}: {cleanup:#}",
                    layout.root().display()
                );
            }
            return Err(e);
        }
    };
    Ok(Loaded { ebpf, fresh, programs, aside })
}

fn load_inner(
    layout: &PinLayout,
    capacity: Capacities,
) -> anyhow::Result<(Ebpf, Vec<ProgramLoad>)> {
    let maps_dir = layout.maps_dir();
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(&maps_dir);
    for name in [names::ALLOW_V4, names::ALLOW_V6, names::BLOCK_V4, names::BLOCK_V6] {
        loader.map_max_entries(name, capacity.lists);
    }
    for name in [names::DEST_V4, names::DEST_V6] {
        loader.map_max_entries(name, capacity.destinations);
    }
    loader.map_max_entries(names::BEHAVIOUR, capacity.behaviour);
    let mut ebpf = loader.load(OBJECT).context("loading the XDP object and its maps")?;
    let mut programs = Vec::new();
    for name in names() {
        let start = Instant::now();
        let program = ebpf
            .program_mut(name)
            .with_context(|| format!("the object has no program `{name}`"))?;
        let outcome = match program {
            Program::Xdp(p) => p.load().map(|()| p.info()),
            Program::SchedClassifier(p) => p.load().map(|()| p.info()),
            _ => bail!("`{name}` is neither an XDP nor a TC program"),
        };
        let info = outcome.map_err(|e| refused(name, e))?;
        programs.push(ProgramLoad {
            name,
            verified_instructions: info.ok().and_then(|i| i.verified_instruction_count()),
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    fill_stages(&mut ebpf)?;
    Ok((ebpf, programs))
}

/// The error for a program the kernel refused: in a few lines, with the verifier's log in a
/// file when there is one.
fn refused(name: &'static str, e: ProgramError) -> anyhow::Error {
    match e {
        ProgramError::LoadError { io_error, verifier_log } => anyhow::Error::new(Refusal::new(
            name,
            &io_error,
            &verifier_log.to_string(),
            &refusal::log_path(name),
        )),
        e => anyhow::Error::new(e).context(format!("loading the program `{name}`")),
    }
}

/// Points the entry program's jump table at this load's stages.
fn fill_stages(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut fds = Vec::new();
    for stage in Stage::ALL {
        let program: &Xdp = ebpf
            .program(stage.program())
            .with_context(|| format!("the object has no program `{}`", stage.program()))?
            .try_into()
            .with_context(|| format!("`{}` is not an XDP program", stage.program()))?;
        fds.push((stage, program.fd()?.try_clone().context("duplicating a program descriptor")?));
    }
    let map = ebpf.map_mut(names::STAGES).context("the object has no jump table")?;
    let mut table = ProgramArray::try_from(map).context("the jump table is not a program array")?;
    for (stage, fd) in &fds {
        table
            .set(stage.slot(), fd, 0)
            .with_context(|| format!("putting `{}` into the jump table", stage.program()))?;
    }
    Ok(())
}

fn entry(ebpf: &mut Ebpf) -> anyhow::Result<&mut Xdp> {
    ebpf.program_mut(ENTRY)
        .with_context(|| format!("the object has no `{ENTRY}` program"))?
        .try_into()
        .with_context(|| format!("`{ENTRY}` is not an XDP program"))
}

fn responses(ebpf: &mut Ebpf) -> anyhow::Result<&mut SchedClassifier> {
    ebpf.program_mut(RESPONSES)
        .with_context(|| format!("the object has no `{RESPONSES}` program"))?
        .try_into()
        .with_context(|| format!("`{RESPONSES}` is not a TC classifier"))
}

impl Loaded {
    /// The loaded XDP entry program (tests run it with `BPF_PROG_TEST_RUN`; it hands over to
    /// its stages as when attached).
    pub fn program_mut(&mut self) -> anyhow::Result<&mut Xdp> {
        entry(&mut self.ebpf)
    }

    /// The loaded response program (tests run it with `BPF_PROG_TEST_RUN`).
    pub fn responses_mut(&mut self) -> anyhow::Result<&mut SchedClassifier> {
        responses(&mut self.ebpf)
    }

    /// The instructions the verifier processed for the program `name`.
    #[must_use]
    pub fn verified_instructions(&self, name: &str) -> Option<u32> {
        self.programs.iter().find(|p| p.name == name)?.verified_instructions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_mode_names_round_trip() {
        crate::named::assert_names_round_trip::<AttachMode>();
    }

    /// The program's map declarations are the schema's: every map of the built object is
    /// either in `sipguard_common::maps::SCHEMA`, with the same type, key, value, entries and
    /// flags, or private to the program; and every map of the schema is in the object.
    #[test]
    fn the_built_object_declares_the_schema() {
        assert!(!OBJECT.is_empty(), "built with SIPGUARD_SKIP_EBPF: no object to check");
        let object = aya_obj::Object::parse(OBJECT).expect("parsing the built object");
        let mut seen = Vec::new();
        for (name, map) in &object.maps {
            if name.starts_with('.') || names::PRIVATE.contains(&name.as_str()) {
                continue;
            }
            let spec = names::spec_of(name)
                .unwrap_or_else(|| panic!("{name} is in the object but not in the schema"));
            let declared = (
                map.map_type(),
                map.key_size(),
                map.value_size(),
                map.max_entries(),
                map.map_flags(),
            );
            let schema =
                (spec.kind as u32, spec.key_size, spec.value_size, spec.max_entries, spec.flags);
            assert_eq!(declared, schema, "{name}: (type, key, value, entries, flags)");
            seen.push(spec.name);
        }
        for spec in &names::SCHEMA {
            assert!(
                seen.contains(&spec.name),
                "{} is in the schema but not in the object",
                spec.name
            );
        }
    }

    /// Every program userspace loads is in the object, and the object has no other.
    #[test]
    fn the_built_object_has_every_stage() {
        let object = aya_obj::Object::parse(OBJECT).expect("parsing the built object");
        let mut inside: Vec<&str> = object.programs.keys().map(String::as_str).collect();
        inside.sort_unstable();
        let mut wanted = names();
        wanted.sort_unstable();
        assert_eq!(inside, wanted);
    }
}
