use std::{io::Write as _, time::Duration};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use super::out;
use crate::{
    cli::{AttachArgs, DetachArgs, RunArgs},
    events::EventStream,
    filter::{self, AttachReport},
    maps::PinnedMaps,
    pin::PinLayout,
    program::Attached,
    stats::Snapshot,
};

fn log_report(report: &AttachReport) {
    for (iface, how) in &report.ifaces {
        match how {
            Attached::New(mode) => log::info!("{iface}: attached ({mode:?} mode)"),
            Attached::Adopted => log::info!("{iface}: already attached; now runs this program"),
        }
    }
}

pub fn attach(layout: &PinLayout, args: &AttachArgs) -> anyhow::Result<()> {
    let report = filter::attach(layout, &args.ifaces, &args.setup)?;
    log_report(&report);
    Ok(())
}

pub fn detach(layout: &PinLayout, args: &DetachArgs) -> anyhow::Result<()> {
    for iface in filter::detach(layout, &args.ifaces, args.keep_state)? {
        log::info!("{iface}: detached");
    }
    Ok(())
}

pub fn run(layout: &PinLayout, args: &RunArgs) -> anyhow::Result<()> {
    let ifaces = if args.ifaces.is_empty() {
        let attached = layout.attached_ifaces()?;
        if attached.is_empty() {
            anyhow::bail!("nothing is attached to adopt: give --iface IF");
        }
        attached
    } else {
        args.ifaces.clone()
    };
    let report = filter::attach(layout, &ifaces, &args.setup)?;
    log_report(&report);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(foreground(layout, &ifaces, args))
}

async fn foreground(layout: &PinLayout, ifaces: &[String], args: &RunArgs) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let maps = PinnedMaps::open(layout)?;
    let mut events = EventStream::open(layout)?;
    let mut events_file = match &args.events_file {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the events file {}", path.display()))?,
        ),
        None => None,
    };
    let mut last = Snapshot::read(&maps)?;
    let stats_every = Duration::from_secs(args.stats_interval);
    let mut since_stats = Duration::ZERO;
    // A short tick so a `detach` from another shell is noticed promptly.
    let tick = Duration::from_secs(1);
    let mut ticker = tokio::time::interval(tick);
    ticker.tick().await;
    log::info!(
        "protecting {}; Ctrl-C leaves the filter in place{}",
        ifaces.join(", "),
        if args.detach_on_exit { " and detaches (--detach-on-exit)" } else { "" }
    );
    let signal_name = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            batch = events.next_batch(&maps) => {
                for record in batch? {
                    let line = format!("{record}\n");
                    out(&line)?;
                    if let Some(f) = events_file.as_mut() {
                        f.write_all(line.as_bytes()).context("appending to the events file")?;
                    }
                }
            }
            _ = ticker.tick() => {
                if !layout.has_maps() {
                    log::info!("the filter was detached elsewhere; exiting");
                    return Ok(());
                }
                since_stats += tick;
                if !stats_every.is_zero() && since_stats >= stats_every {
                    since_stats = Duration::ZERO;
                    let now = Snapshot::read(&maps)?;
                    log::info!("last {}s: {}", stats_every.as_secs(), now.since(&last).summary_line());
                    last = now;
                }
            }
        }
    };
    if args.detach_on_exit {
        log::info!("{signal_name}: detaching");
        filter::detach(layout, ifaces, false)?;
    } else {
        log::info!(
            "{signal_name}: exiting; the filter stays attached (`sipguard detach` removes it)"
        );
    }
    Ok(())
}
