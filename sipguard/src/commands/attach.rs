//! `attach`, `detach`, `run` and `reload`: the service itself is `sipguard::daemon`.

use crate::cli::{AttachArgs, DetachArgs, RunArgs};
use sipguard::{
    daemon::{pidfile, service},
    kernel::{
        pin::PinLayout,
        privileges::{self, Need},
    },
    setup::attach,
};

pub(super) fn attach(layout: &PinLayout, args: &AttachArgs) -> anyhow::Result<()> {
    service::log_attached(&attach::attach(layout, &args.ifaces, &args.setup.setup())?);
    Ok(())
}

pub(super) fn detach(layout: &PinLayout, args: &DetachArgs) -> anyhow::Result<()> {
    for iface in attach::detach(layout, &args.ifaces, args.keep_state)? {
        log::info!("{iface}: detached");
    }
    Ok(())
}

pub(super) fn run(layout: &PinLayout, args: &RunArgs) -> anyhow::Result<()> {
    service::run(layout, &args.options())
}

pub(super) fn reload(layout: &PinLayout, given: Option<&std::path::PathBuf>) -> anyhow::Result<()> {
    privileges::require(Need::Maps)?;
    let pid = pidfile::signal_reload(layout, given.map(std::path::PathBuf::as_path))?;
    log::info!("asked process {pid} to reload its configuration");
    Ok(())
}
