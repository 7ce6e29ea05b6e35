use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    cli::{AttachArgs, DetachArgs, RunArgs},
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
    let mut last = Snapshot::from_counters(&maps.counters()?);
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
            _ = ticker.tick() => {
                if !layout.has_maps() {
                    log::info!("the filter was detached elsewhere; exiting");
                    return Ok(());
                }
                since_stats += tick;
                if !stats_every.is_zero() && since_stats >= stats_every {
                    since_stats = Duration::ZERO;
                    let now = Snapshot::from_counters(&maps.counters()?);
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
