//! Pin directories made by earlier sipguard versions, brought up to this one's layout. Every
//! upgrade lives here, in the order versions came, and each is idempotent: a load runs them
//! all (attach, run and reload load the program), and a directory already current costs a
//! map read.

use anyhow::Context as _;
use sipguard_common::maps as names;

use crate::{
    kernel::{maps::PinnedMaps, pin::PinLayout},
    state::lists,
};

/// Runs every upgrade the pin directory at `layout` still needs.
pub fn pin_layout(layout: &PinLayout) -> anyhow::Result<()> {
    let maps = PinnedMaps::open(layout)?;
    list_filters(&maps)?;
    retire_sixteen_bit_filters(layout);
    Ok(())
}

/// Directories made before the `/24` list bitmaps (`SG_LIST_FILTER_V4`) existed have lists
/// but no bitmaps: build them from the lists, then let the program trust them.
fn list_filters(maps: &PinnedMaps) -> anyhow::Result<()> {
    if maps.config()?.list_filters == 0 {
        lists::refresh_filters(maps).context("building the list filters")?;
    }
    Ok(())
}

/// An earlier version's `/16` bitmaps: marked unmaintained by the refresh, and read by no
/// program loaded from now on (one still attached keeps its own reference). Left behind, it
/// is only clutter: not worth failing the load over.
fn retire_sixteen_bit_filters(layout: &PinLayout) {
    let retired = layout.map(names::RETIRED_LIST_FILTER);
    if retired.exists()
        && let Err(e) = std::fs::remove_file(&retired)
    {
        log::warn!("could not remove the retired {}: {e}", retired.display());
    }
}
