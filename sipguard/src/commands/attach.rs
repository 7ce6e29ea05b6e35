use std::{io::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use super::out;
use crate::cli::{AttachArgs, DetachArgs, RunArgs};
use sipguard::{
    bans,
    configfile::{self, Desired},
    crowdsec::{self, Bouncer},
    decisions::DecisionList,
    events::EventStream,
    filter::{self, AttachReport},
    maps::PinnedMaps,
    metrics,
    notify::Notifier,
    pin::PinLayout,
    program::Attached,
    routes,
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

pub(super) fn attach(layout: &PinLayout, args: &AttachArgs) -> anyhow::Result<()> {
    let report = filter::attach(layout, &args.ifaces, &args.setup.setup())?;
    log_report(&report);
    Ok(())
}

pub(super) fn detach(layout: &PinLayout, args: &DetachArgs) -> anyhow::Result<()> {
    for iface in filter::detach(layout, &args.ifaces, args.keep_state)? {
        log::info!("{iface}: detached");
    }
    Ok(())
}

/// The pid file `run` writes and `reload` reads, one per pin directory.
fn pid_file(layout: &PinLayout, given: Option<&PathBuf>) -> PathBuf {
    given.cloned().unwrap_or_else(|| {
        let name: String = layout
            .root()
            .to_string_lossy()
            .trim_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        PathBuf::from("/run/sipguard").join(format!("{name}.pid"))
    })
}

pub(super) fn reload(layout: &PinLayout, given: Option<&PathBuf>) -> anyhow::Result<()> {
    sipguard::privileges::require(sipguard::privileges::Need::Maps)?;
    let path = pid_file(layout, given);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no `sipguard run --config` seems to run for {} ({} is unreadable)",
            layout.root().display(),
            path.display()
        )
    })?;
    let pid: i32 =
        text.trim().parse().with_context(|| format!("{} holds no process id", path.display()))?;
    // SAFETY: kill(2) with a pid read from our own pid file and a plain signal.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("signalling process {pid} (from {})", path.display()));
    }
    log::info!("asked process {pid} to reload its configuration");
    Ok(())
}

pub(super) fn run(layout: &PinLayout, args: &RunArgs) -> anyhow::Result<()> {
    if args.config.is_some() && (!args.ifaces.is_empty() || has_settings(args)) {
        bail!("with --config, interfaces and settings come from the file; drop the other options");
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(foreground(layout, args))
}

fn has_settings(args: &RunArgs) -> bool {
    let setup = args.setup.setup();
    !setup.settings.policy.is_empty()
        || !setup.settings.sip_ports.is_empty()
        || setup.settings.sip_domains.is_some()
        || !setup.allow.is_empty()
        || !setup.block.is_empty()
}

/// Removes the pid file when `run` ends, however it ends.
struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            log::debug!("removing the pid file {}: {e}", self.0.display());
        }
    }
}

fn attach_from_args(layout: &PinLayout, args: &RunArgs) -> anyhow::Result<Vec<String>> {
    let ifaces = if args.ifaces.is_empty() {
        let attached = layout.attached_ifaces()?;
        if attached.is_empty() {
            bail!("nothing is attached to adopt: give --iface IF");
        }
        attached
    } else {
        args.ifaces.clone()
    };
    let report = filter::attach(layout, &ifaces, &args.setup.setup())?;
    log_report(&report);
    Ok(ifaces)
}

fn apply_config(layout: &PinLayout, desired: &Desired) -> anyhow::Result<()> {
    let applied = configfile::apply(layout, desired)?;
    log::info!(
        "configuration applied: {} lists replaced, {} destinations added, {} removed{}",
        applied.lists_replaced,
        applied.destinations_added,
        applied.destinations_removed,
        if applied.interfaces_detached.is_empty() {
            String::new()
        } else {
            format!(", detached from {}", applied.interfaces_detached.join(", "))
        }
    );
    Ok(())
}

/// What a running `run` holds besides the signal handlers.
struct Running {
    maps: PinnedMaps,
    events: EventStream,
    events_file: Option<std::fs::File>,
    events_path: Option<PathBuf>,
    _pid_file: PidFile,
}

fn open_events(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening the events file {}", path.display()))
}

impl Running {
    /// Prints incident records, appends them to the events file, and offers the bans to
    /// the bouncer for sharing.
    fn record(
        &mut self,
        batch: Vec<serde_json::Value>,
        outbox: Option<&crowdsec::Outbox>,
    ) -> anyhow::Result<()> {
        for record in batch {
            if let Some(outbox) = outbox {
                outbox.offer(&record);
            }
            let line = format!("{record}\n");
            out(&line)?;
            if let Some(f) = self.events_file.as_mut() {
                f.write_all(line.as_bytes()).context("appending to the events file")?;
            }
        }
        Ok(())
    }

    /// SIGUSR1 (logrotate's postrotate) or a reload: the events file is opened again by its
    /// name. Records go whole to the old file or the new one, never to both, and none is
    /// lost: they are written between batches, by this one task. On failure the old file
    /// stays in use.
    fn reopen_events(&mut self) {
        let Some(path) = &self.events_path else { return };
        match open_events(path) {
            Ok(f) => {
                self.events_file = Some(f);
                log::info!("reopened the events file {}", path.display());
            }
            Err(e) => log::error!("{e:#}; still writing to the file opened before"),
        }
    }
}

/// Writes the pid file, starts the metrics server, opens the incident outputs.
async fn start(
    layout: &PinLayout,
    args: &RunArgs,
    desired: Option<&Desired>,
) -> anyhow::Result<Running> {
    let pid_path = pid_file(layout, args.pid_file.as_ref());
    if let Some(dir) = pid_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid_path.display()))?;
    let pid = PidFile(pid_path);

    let metrics_addr = match (args.metrics, desired.and_then(|d| d.metrics.as_deref())) {
        (Some(a), _) => Some(a),
        (None, Some(text)) => {
            Some(text.parse().with_context(|| format!("metrics address `{text}`"))?)
        }
        (None, None) => None,
    };
    if let Some(addr) = metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        log::info!("serving metrics on http://{addr}/metrics");
        let layout = layout.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, layout).await {
                log::error!("metrics: {e:#}");
            }
        });
    }
    let events_path =
        args.events_file.clone().or_else(|| desired.and_then(|d| d.events_file.clone()));
    let events_file = events_path.as_deref().map(open_events).transpose()?;
    Ok(Running {
        maps: PinnedMaps::open(layout)?,
        events: EventStream::open(layout)?,
        events_file,
        events_path,
        _pid_file: pid,
    })
}

/// The bouncer task of `run`, restarted when its settings change.
struct Bouncing {
    settings: Option<crowdsec::Settings>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Where incident records go to be shared, when the bouncer shares bans.
    outbox: Option<crowdsec::Outbox>,
}

impl Bouncing {
    /// Starts, restarts or stops the bouncer to match `wanted`. Without a bouncer the
    /// decision list is emptied: decisions are enforced only while one is configured.
    fn follow(
        &mut self,
        maps: &PinnedMaps,
        wanted: Option<crowdsec::Settings>,
    ) -> anyhow::Result<()> {
        if self.task.is_some() && wanted == self.settings {
            return Ok(());
        }
        let bouncer = wanted.as_ref().map(|s| Bouncer::new(maps, s)).transpose()?;
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.outbox = None;
        if let Some(b) = bouncer {
            log::info!(
                "crowdsec: enforcing the decisions of {} every {}s{}",
                b.settings().url,
                b.settings().interval,
                if b.shares() { "; sharing verified bans" } else { "" }
            );
            let records = b.outbox().map(|(outbox, rx)| {
                let lost = outbox.lost();
                self.outbox = Some(outbox);
                (lost, rx)
            });
            self.task = Some(tokio::spawn(b.run(records)));
        } else {
            DecisionList::open(maps)?.replace(&[]).context("clearing the decisions")?;
        }
        self.settings = wanted;
        Ok(())
    }
}

/// The bouncer's settings: the flags', else the configuration file's.
fn crowdsec_settings(args: &RunArgs, desired: Option<&Desired>) -> Option<crowdsec::Settings> {
    args.crowdsec.settings().or_else(|| desired.and_then(|d| d.crowdsec.clone()))
}

/// SIGHUP: re-read and apply the configuration file, or keep everything on error. Returns
/// the outcome in one line, for the supervisor's status.
fn reload_config(
    layout: &PinLayout,
    args: &RunArgs,
    path: &std::path::Path,
    ifaces: &mut Vec<String>,
    bouncing: &mut Bouncing,
    maps: &PinnedMaps,
) -> String {
    match configfile::load(path) {
        Ok(d) => match apply_config(layout, &d) {
            Ok(()) => {
                ifaces.clone_from(&d.interfaces);
                if let Err(e) = bouncing.follow(maps, crowdsec_settings(args, Some(&d))) {
                    log::error!("reload: crowdsec: {e:#}; the bouncer is unchanged");
                    return format!(
                        "reloaded {} but not its crowdsec table: {e:#}",
                        path.display()
                    );
                }
                format!("reloaded {}; protecting {}", path.display(), ifaces.join(", "))
            }
            Err(e) => {
                // A failed apply is undone; the error says so, or what was left.
                log::error!("reload: applying {} failed: {e:#}", path.display());
                format!("reload failed: {e:#}")
            }
        },
        Err(e) => {
            log::error!("reload: {e:#}; the running configuration is unchanged");
            format!("reload refused, configuration unchanged: {e:#}")
        }
    }
}

async fn foreground(layout: &PinLayout, args: &RunArgs) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    let result = protect(layout, args, &notifier).await;
    notifier.stopping(&match &result {
        Ok(status) => status.clone(),
        Err(e) => format!("failed: {e:#}"),
    });
    result.map(|_| ())
}

/// How often `run` removes expired bans (`bans::sweep`).
const SWEEP_EVERY: Duration = Duration::from_mins(1);

/// The routes changed: the mirror follows.
fn mirror_routes(maps: &PinnedMaps, socket: &std::os::fd::OwnedFd) {
    if routes::drain(socket) {
        match routes::sync(maps) {
            Ok(s) => log::debug!("routes changed: mirrored {} IPv4 and {} IPv6 routes", s.v4, s.v6),
            Err(e) => log::warn!("routes changed, the mirror was not updated: {e:#}"),
        }
    }
}

fn sweep_bans(maps: &PinnedMaps) {
    match bans::sweep(maps) {
        Ok(n) if n > 0 => log::debug!("removed {n} expired bans"),
        Ok(_) => {}
        Err(e) => log::warn!("sweeping expired bans: {e:#}"),
    }
}

/// Waits until the route socket has notices (forever without one).
async fn changed(
    fd: Option<&AsyncFd<std::os::fd::OwnedFd>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, std::os::fd::OwnedFd>> {
    match fd {
        Some(fd) => fd.readable().await,
        None => std::future::pending().await,
    }
}

/// Attaches, tells the supervisor it protects, and serves signals and events until told to
/// stop. Returns the exit's status line.
async fn protect(
    layout: &PinLayout,
    args: &RunArgs,
    notifier: &Notifier,
) -> anyhow::Result<String> {
    // Signals first: one that arrives while the program loads is handled, not fatal.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut sigusr1 =
        signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;

    let desired = args.config.as_deref().map(configfile::load).transpose()?;
    let mut ifaces = match &desired {
        Some(d) => {
            apply_config(layout, d)?;
            d.interfaces.clone()
        }
        None => attach_from_args(layout, args)?,
    };
    let mut r = start(layout, args, desired.as_ref()).await?;
    let mut bouncing = Bouncing { settings: None, task: None, outbox: None };
    bouncing.follow(&r.maps, crowdsec_settings(args, desired.as_ref()))?;
    // Route changes keep the reverse-path check's mirror in step; without the socket it
    // stays the copy the attach took.
    // SAFETY: the socket is an `OwnedFd` the `AsyncFd` owns until it drops; nothing else
    // closes or replaces it.
    let route_changes = match routes::watch().and_then(|fd| Ok(unsafe { AsyncFd::register(fd)? })) {
        Ok(fd) => Some(fd),
        Err(e) => {
            log::warn!("route changes will not reach the reverse-path check's mirror: {e:#}");
            None
        }
    };
    let mut since_sweep = Duration::ZERO;
    let mut last = Snapshot::read(&r.maps)?;
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
    // Everything is attached and every listener is open: only now may a supervisor (or a
    // script waiting on us) rely on the filter.
    notifier.ready(&format!("protecting {}", ifaces.join(", ")));
    let signal_name = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = sighup.recv() => {
                notifier.reloading();
                let status = if let Some(path) = &args.config {
                    reload_config(layout, args, path, &mut ifaces, &mut bouncing, &r.maps)
                } else {
                    log::warn!("SIGHUP: nothing to reload (run was started without --config)");
                    format!("nothing to reload; protecting {}", ifaces.join(", "))
                };
                r.reopen_events();
                notifier.ready(&status);
            }
            _ = sigusr1.recv() => r.reopen_events(),
            batch = r.events.next_batch(&r.maps) => r.record(batch?, bouncing.outbox.as_ref())?,
            ready = changed(route_changes.as_ref()) => {
                let mut guard = ready?;
                mirror_routes(&r.maps, guard.get_inner());
                guard.clear_ready();
            }
            _ = ticker.tick() => {
                if !layout.has_maps() {
                    log::info!("the filter was detached elsewhere; exiting");
                    return Ok("the filter was detached elsewhere".into());
                }
                since_sweep += tick;
                if since_sweep >= SWEEP_EVERY {
                    since_sweep = Duration::ZERO;
                    sweep_bans(&r.maps);
                }
                since_stats += tick;
                if !stats_every.is_zero() && since_stats >= stats_every {
                    since_stats = Duration::ZERO;
                    let now = Snapshot::read(&r.maps)?;
                    log::info!("last {}s: {}", stats_every.as_secs(), now.since(&last).summary_line());
                    last = now;
                }
            }
        }
    };
    if args.detach_on_exit {
        log::info!("{signal_name}: detaching");
        filter::detach(layout, &ifaces, false)?;
        Ok(format!("{signal_name}: detached from {}", ifaces.join(", ")))
    } else {
        log::info!(
            "{signal_name}: exiting; the filter stays attached (`sipguard detach` removes it)"
        );
        Ok(format!("{signal_name}: exiting; the filter stays attached"))
    }
}
