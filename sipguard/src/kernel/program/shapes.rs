//! The shapes of the maps pinned by an earlier load, checked before a load reuses them. A map
//! whose entries the programs rebuild from traffic alone
//! (`sipguard_common::maps::REBUILT_FROM_TRAFFIC`) and whose shape this version changed is
//! set aside for the load to create it anew, and put back if the load fails: an upgrade
//! across such a change needs no `detach`, and costs only those recent observations. Any
//! other map of another shape refuses the load, as the verifier would, but in words.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use aya::maps::{MapData, MapInfo};
use sipguard_common::maps::{self as names, MapSpec};

use crate::kernel::pin::PinLayout;

/// The suffix of a map set aside during a load (bpffs allows no `.` in a name).
const ASIDE: &str = "_reshaped";

/// Whether the map pinned at `path` has the shape `spec` declares.
fn matches(path: &std::path::Path, spec: &MapSpec) -> anyhow::Result<bool> {
    let info = MapInfo::from_pin(path).with_context(|| format!("inspecting {}", path.display()))?;
    let kind = info.map_type().map(|t| t as u32).ok();
    Ok(kind == Some(spec.kind as u32)
        && info.key_size() == spec.key_size
        && info.value_size() == spec.value_size)
}

/// Maps set aside for a load: removed by [`SetAside::discard`] once the load and the attach
/// over it committed, put back by [`SetAside::restore`] otherwise; dropped unsettled (an
/// error on the way from the load to the commit), they are put back too.
#[derive(Debug, Default)]
#[must_use]
pub(super) struct SetAside {
    moved: Vec<(PathBuf, PathBuf)>,
}

impl Drop for SetAside {
    fn drop(&mut self) {
        self.put_back();
    }
}

/// Pins the map pinned at `from` at `to` too, then unpins it from `from`: bpffs renames
/// nothing, so a map moves by a second pin.
fn move_pin(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    let map = MapData::from_pin(from).with_context(|| format!("opening {}", from.display()))?;
    map.pin(to).with_context(|| format!("pinning {} at {}", from.display(), to.display()))?;
    std::fs::remove_file(from).map_err(|e| {
        // Still where it was: the second pin goes, so nothing is left half-moved.
        std::fs::remove_file(to).ok();
        anyhow::Error::new(e).context(format!("unpinning {}", from.display()))
    })
}

impl SetAside {
    /// The load failed: the earlier maps go back where they were (the running filter, whose
    /// programs still hold them, is reported on as before).
    pub(super) fn restore(mut self) {
        self.put_back();
    }

    fn put_back(&mut self) {
        for (pin, aside) in std::mem::take(&mut self.moved) {
            // The failed load may have pinned a new map there.
            if pin.exists() {
                std::fs::remove_file(&pin).ok();
            }
            if let Err(e) = move_pin(&aside, &pin) {
                log::warn!("could not put {} back at {}: {e:#}", aside.display(), pin.display());
            }
        }
    }

    /// The load and its attach committed over new maps: the earlier ones go (with the last
    /// program that uses them).
    pub(super) fn discard(mut self) {
        for (pin, aside) in std::mem::take(&mut self.moved) {
            log::info!("{} had an earlier version's shape; it starts afresh", pin.display());
            if let Err(e) = std::fs::remove_file(&aside) {
                log::warn!("could not remove {}: {e}", aside.display());
            }
        }
    }
}

/// Sets aside each map rebuilt from traffic (or rewritten by `run`) whose pinned shape
/// differs from this version's, then refuses the load if any other pinned map does. Nothing
/// is left set aside on error.
pub(super) fn check(layout: &PinLayout) -> anyhow::Result<SetAside> {
    let mut aside = SetAside::default();
    if let Err(e) = set_aside_reshaped(layout, &mut aside).and_then(|()| refuse_reshaped(layout)) {
        aside.restore();
        return Err(e);
    }
    Ok(aside)
}

fn set_aside_reshaped(layout: &PinLayout, aside: &mut SetAside) -> anyhow::Result<()> {
    for name in names::REBUILT_FROM_TRAFFIC.into_iter().chain(names::REWRITTEN_BY_RUN) {
        let spec = names::spec_of(name).context("a rebuilt map without a spec")?;
        let pin = layout.map(name);
        let moved = layout.map(&format!("{name}{ASIDE}"));
        // One left by a load that was killed half-way, or that could not be put back, holds
        // only recent observations: worth a word, not a refusal.
        if moved.exists() {
            log::warn!("removing {}, left by an earlier load", moved.display());
            std::fs::remove_file(&moved)
                .with_context(|| format!("removing the stale {}", moved.display()))?;
        }
        if !pin.exists() || matches(&pin, spec)? {
            continue;
        }
        move_pin(&pin, &moved)
            .with_context(|| format!("setting {} aside for a new shape", pin.display()))?;
        aside.moved.push((pin, moved));
    }
    Ok(())
}

/// Refuses maps pinned by an incompatible sipguard: the verifier would reject the program
/// with a cryptic message, or worse, accept it over a map of another shape.
fn refuse_reshaped(layout: &PinLayout) -> anyhow::Result<()> {
    for spec in &names::SCHEMA {
        let path = layout.map(spec.name);
        if !path.exists() || matches(&path, spec)? {
            continue;
        }
        let info =
            MapInfo::from_pin(&path).with_context(|| format!("inspecting {}", path.display()))?;
        let kind = info.map_type().map(|t| t as u32).ok();
        bail!(
            "the map pinned at {} was made by an incompatible sipguard version (type {kind:?}, key/value size {}/{}; expected {:?}, {}/{}); run `sipguard detach` to remove the old filter first",
            path.display(),
            info.key_size(),
            info.value_size(),
            spec.kind,
            spec.key_size,
            spec.value_size
        );
    }
    Ok(())
}
