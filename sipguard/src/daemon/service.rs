//! `sipguard run`: attach (or adopt), tell the supervisor, then serve signals, incident
//! records, route changes, ban sweeps and counter summaries until SIGINT or SIGTERM.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use super::{
    bouncing::Bouncing,
    incidents::Incidents,
    notify::Notifier,
    pidfile::{self, PidFile},
};
use crate::{
    kernel::{maps::PinnedMaps, pin::PinLayout, program::Attached},
    report::{events::EventStream, metrics, stats::Snapshot},
    setup::{
        attach::{self, AttachReport},
        configfile::{self, Desired},
        settings::{CrowdsecSettings, Setup},
    },
    state::{bans, routes},
};

/// What `run` is asked to do, as the library takes it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Interfaces to protect; none adopts the interfaces the filter is attached to.
    pub ifaces: Vec<String>,
    /// The settings and starting lists of the attach.
    pub setup: Setup,
    /// Take interfaces, settings, lists and the rest from this file instead, and re-read it
    /// on SIGHUP.
    pub config: Option<PathBuf>,
    /// The pid file [default: derived from the pin root, `pidfile::path_for`].
    pub pid_file: Option<PathBuf>,
    /// Also append every incident record to this file.
    pub events_file: Option<PathBuf>,
    /// Serve Prometheus metrics here.
    pub metrics: Option<SocketAddr>,
    /// Log a counter summary this often; zero: never.
    pub stats_every: Duration,
    /// Detach from the interfaces this run attached when it stops.
    pub detach_on_exit: bool,
    /// Follow the fleet's decision store (the file's table otherwise).
    pub crowdsec: Option<CrowdsecSettings>,
}

/// Runs the service to its end: on a signal to stop (the filter stays, unless
/// `detach_on_exit`), or when the filter is detached from elsewhere. Tells the supervisor
/// how it ended, either way.
pub fn run(layout: &PinLayout, options: &Options) -> anyhow::Result<()> {
    if options.config.is_some() && (!options.ifaces.is_empty() || has_setup(&options.setup)) {
        bail!("with --config, interfaces and settings come from the file; drop the other options");
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async {
            let notifier = Notifier::from_env();
            let result = serve(layout, options, &notifier).await;
            notifier.stopping(&match &result {
                Ok(status) => status.clone(),
                Err(e) => format!("failed: {e:#}"),
            });
            result.map(|_| ())
        })
}

fn has_setup(setup: &Setup) -> bool {
    !setup.settings.policy.is_empty()
        || !setup.settings.sip_ports.is_empty()
        || setup.settings.sip_domains.is_some()
        || !setup.allow.is_empty()
        || !setup.block.is_empty()
}

/// Logs what an attach did, interface by interface.
pub fn log_attached(report: &AttachReport) {
    for (iface, how) in &report.ifaces {
        match how {
            Attached::New(mode) => log::info!("{iface}: attached ({mode:?} mode)"),
            Attached::Adopted => log::info!("{iface}: already attached; now runs this program"),
        }
    }
}

/// The interfaces to protect, attached: the given ones, else the ones already attached.
fn attach_from_options(layout: &PinLayout, options: &Options) -> anyhow::Result<Vec<String>> {
    let ifaces = if options.ifaces.is_empty() {
        let attached = layout.attached_ifaces()?;
        if attached.is_empty() {
            bail!("nothing is attached to adopt: give --iface IF");
        }
        attached
    } else {
        options.ifaces.clone()
    };
    log_attached(&attach::attach(layout, &ifaces, &options.setup)?);
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

/// The bouncer's settings: the options', else the configuration file's.
fn crowdsec_settings(options: &Options, desired: Option<&Desired>) -> Option<CrowdsecSettings> {
    options.crowdsec.clone().or_else(|| desired.and_then(|d| d.crowdsec.clone()))
}

/// What a reload will apply, read and checked before anything changes.
#[derive(Debug)]
struct ReloadPlan {
    desired: Desired,
    crowdsec: Option<CrowdsecSettings>,
}

/// Reads the file and the bouncer's settings a reload would apply. A refusal comes back as
/// the one line the supervisor is told, and nothing has been touched.
fn plan_reload(path: &Path, options: &Options) -> Result<ReloadPlan, String> {
    let refused = |e: &anyhow::Error| format!("reload refused, configuration unchanged: {e:#}");
    let desired = configfile::load(path).map_err(|e| refused(&e))?;
    let crowdsec = crowdsec_settings(options, Some(&desired));
    if let Some(c) = &crowdsec {
        c.check().map_err(|e| refused(&e.context("crowdsec")))?;
    }
    Ok(ReloadPlan { desired, crowdsec })
}

/// When the periodic chores of the loop fall due, counted in ticks of the loop.
#[derive(Debug)]
struct Chores {
    tick: Duration,
    since_sweep: Duration,
    since_stats: Duration,
    stats_every: Duration,
}

/// How often `run` removes expired bans (`bans::sweep`).
const SWEEP_EVERY: Duration = Duration::from_mins(1);

#[derive(Debug, PartialEq, Eq)]
struct Due {
    sweep: bool,
    stats: bool,
}

impl Chores {
    /// The first tick sweeps: bans that expired while no `run` ran go at once.
    fn new(tick: Duration, stats_every: Duration) -> Self {
        Self { tick, since_sweep: SWEEP_EVERY, since_stats: Duration::ZERO, stats_every }
    }

    /// One tick passed: what is due now.
    fn ticked(&mut self) -> Due {
        self.since_sweep += self.tick;
        self.since_stats += self.tick;
        let sweep = self.since_sweep >= SWEEP_EVERY;
        if sweep {
            self.since_sweep = Duration::ZERO;
        }
        let stats = !self.stats_every.is_zero() && self.since_stats >= self.stats_every;
        if stats {
            self.since_stats = Duration::ZERO;
        }
        Due { sweep, stats }
    }
}

/// What a running service holds.
struct Service<'a> {
    layout: &'a PinLayout,
    options: &'a Options,
    ifaces: Vec<String>,
    maps: PinnedMaps,
    events: EventStream,
    incidents: Incidents,
    bouncing: Bouncing,
    _pid_file: PidFile,
}

impl Service<'_> {
    /// SIGHUP: re-read the configuration file and apply it, or keep everything on error.
    /// The new bouncer is built before anything is applied, so a bad `[crowdsec]` table
    /// refuses the whole reload. Returns the outcome in one line, for the supervisor.
    fn reload(&mut self, path: &Path) -> String {
        let plan = match plan_reload(path, self.options) {
            Ok(p) => p,
            Err(refused) => {
                log::error!("{refused}");
                return refused;
            }
        };
        let prepared = match self.bouncing.prepare(&self.maps, plan.crowdsec) {
            Ok(p) => p,
            Err(e) => {
                log::error!("reload: crowdsec: {e:#}; the running configuration is unchanged");
                return format!("reload refused, configuration unchanged: crowdsec: {e:#}");
            }
        };
        if let Err(e) = apply_config(self.layout, &plan.desired) {
            // A failed apply is undone; the error says so, or what was left.
            log::error!("reload: applying {} failed: {e:#}", path.display());
            return format!("reload failed: {e:#}");
        }
        self.ifaces.clone_from(&plan.desired.interfaces);
        if let Err(e) = self.bouncing.commit(&self.maps, prepared) {
            log::error!("reload: crowdsec: {e:#}");
            return format!("reloaded {} but not its crowdsec table: {e:#}", path.display());
        }
        format!("reloaded {}; protecting {}", path.display(), self.ifaces.join(", "))
    }

    fn sweep_bans(&self) {
        match bans::sweep(&self.maps) {
            Ok(n) if n > 0 => log::debug!("removed {n} expired bans"),
            Ok(_) => {}
            Err(e) => log::warn!("sweeping expired bans: {e:#}"),
        }
    }

    /// The routes changed: the mirror follows.
    fn mirror_routes(&self, socket: &std::os::fd::OwnedFd) {
        if routes::drain(socket) {
            match routes::sync(&self.maps) {
                Ok(s) => {
                    log::debug!("routes changed: mirrored {} IPv4 and {} IPv6 routes", s.v4, s.v6);
                }
                Err(e) => log::warn!("routes changed, the mirror was not updated: {e:#}"),
            }
        }
    }
}

/// Attaches, starts the metrics server, opens the incident outputs and the bouncer.
async fn start<'a>(layout: &'a PinLayout, options: &'a Options) -> anyhow::Result<Service<'a>> {
    let desired = options.config.as_deref().map(configfile::load).transpose()?;
    let ifaces = match &desired {
        Some(d) => {
            apply_config(layout, d)?;
            d.interfaces.clone()
        }
        None => attach_from_options(layout, options)?,
    };
    let pid_file = PidFile::write(pidfile::path_for(layout, options.pid_file.as_deref()))?;

    let metrics_addr = match (options.metrics, desired.as_ref().and_then(|d| d.metrics.as_deref()))
    {
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
    let events_path = options
        .events_file
        .clone()
        .or_else(|| desired.as_ref().and_then(|d| d.events_file.clone()));
    let incidents = Incidents::open(Box::new(std::io::stdout()), events_path)?;
    let maps = PinnedMaps::open(layout)?;
    let mut bouncing = Bouncing::default();
    bouncing.follow(&maps, crowdsec_settings(options, desired.as_ref()))?;
    Ok(Service {
        layout,
        options,
        ifaces,
        events: EventStream::open(layout)?,
        maps,
        incidents,
        bouncing,
        _pid_file: pid_file,
    })
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

/// Attaches, tells the supervisor it protects, and serves until told to stop. Returns the
/// exit's status line.
async fn serve(
    layout: &PinLayout,
    options: &Options,
    notifier: &Notifier,
) -> anyhow::Result<String> {
    // Signals first: one that arrives while the program loads is handled, not fatal.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut sigusr1 =
        signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;

    let mut s = start(layout, options).await?;
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
    let mut last = Snapshot::read(&s.maps)?;
    // A short tick so a `detach` from another shell is noticed promptly.
    let mut chores = Chores::new(Duration::from_secs(1), options.stats_every);
    let mut ticker = tokio::time::interval(chores.tick);
    ticker.tick().await;
    log::info!(
        "protecting {}; Ctrl-C leaves the filter in place{}",
        s.ifaces.join(", "),
        if options.detach_on_exit { " and detaches (--detach-on-exit)" } else { "" }
    );
    // Everything is attached and every listener is open: only now may a supervisor (or a
    // script waiting on us) rely on the filter.
    notifier.ready(&format!("protecting {}", s.ifaces.join(", ")));
    let signal_name = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            _ = sighup.recv() => {
                notifier.reloading();
                let status = if let Some(path) = &options.config {
                    s.reload(path)
                } else {
                    log::warn!("SIGHUP: nothing to reload (run was started without --config)");
                    format!("nothing to reload; protecting {}", s.ifaces.join(", "))
                };
                s.incidents.reopen();
                notifier.ready(&status);
            }
            _ = sigusr1.recv() => s.incidents.reopen(),
            batch = s.events.next_batch(&s.maps) => {
                s.incidents.record(batch?, s.bouncing.outbox())?;
            }
            ready = changed(route_changes.as_ref()) => {
                let mut guard = ready?;
                s.mirror_routes(guard.get_inner());
                guard.clear_ready();
            }
            _ = ticker.tick() => {
                if !layout.has_maps() {
                    log::info!("the filter was detached elsewhere; exiting");
                    return Ok("the filter was detached elsewhere".into());
                }
                let due = chores.ticked();
                if due.sweep {
                    s.sweep_bans();
                }
                if due.stats {
                    let now = Snapshot::read(&s.maps)?;
                    let secs = options.stats_every.as_secs();
                    log::info!("last {secs}s: {}", now.since(&last).summary_line());
                    last = now;
                }
            }
        }
    };
    if options.detach_on_exit {
        log::info!("{signal_name}: detaching");
        attach::detach(layout, &s.ifaces, false)?;
        Ok(format!("{signal_name}: detached from {}", s.ifaces.join(", ")))
    } else {
        log::info!(
            "{signal_name}: exiting; the filter stays attached (`sipguard detach` removes it)"
        );
        Ok(format!("{signal_name}: exiting; the filter stays attached"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_are_swept_at_start_then_every_minute_and_stats_as_asked() {
        let mut c = Chores::new(Duration::from_secs(1), Duration::from_secs(15));
        let due: Vec<Due> = (0..120).map(|_| c.ticked()).collect();
        let at = |f: fn(&Due) -> bool| -> Vec<usize> {
            due.iter().enumerate().filter(|(_, d)| f(d)).map(|(i, _)| i + 1).collect()
        };
        assert_eq!(at(|d| d.sweep), [1, 61]);
        assert_eq!(at(|d| d.stats), [15, 30, 45, 60, 75, 90, 105, 120]);
        let mut quiet = Chores::new(Duration::from_secs(1), Duration::ZERO);
        assert!((0..600).all(|_| !quiet.ticked().stats), "0: no summaries");
    }

    /// A scratch directory with a configuration file holding `text`.
    fn config_file(name: &str, text: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sg-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sipguard.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_reload_reads_and_checks_everything_before_it_changes_anything() {
        let options = Options::default();
        let missing = plan_reload(Path::new("/nonexistent/sipguard.toml"), &options).unwrap_err();
        assert!(
            missing.starts_with("reload refused, configuration unchanged: reading"),
            "{missing}"
        );

        let (dir, path) =
            config_file("bad", "interfaces = [\"eth0\"]\n[policy]\ndefault = \"maybe\"\n");
        let bad = plan_reload(&path, &options).unwrap_err();
        assert!(bad.contains("policy.default `maybe`"), "{bad}");
        std::fs::remove_dir_all(&dir).unwrap();

        // A bouncer whose key file is missing refuses the whole reload, not only its part.
        let (dir, path) = config_file(
            "key",
            "interfaces = [\"eth1\"]\n[crowdsec]\nurl = \"http://127.0.0.1:8080\"\napi_key_file = \"/nonexistent/key\"\n",
        );
        let keyless = plan_reload(&path, &options).unwrap_err();
        assert!(
            keyless.contains("reload refused") && keyless.contains("/nonexistent/key"),
            "{keyless}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let (dir, path) = config_file("good", "interfaces = [\"eth0\", \"eth1\"]\n");
        let plan = plan_reload(&path, &options).unwrap();
        assert_eq!(plan.desired.interfaces, ["eth0", "eth1"]);
        assert!(plan.crowdsec.is_none(), "no [crowdsec] table, no bouncer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_config_file_excludes_other_settings() {
        let layout = PinLayout::new("/sys/fs/bpf/sipguard-unused");
        let both = Options {
            config: Some("/etc/sipguard.toml".into()),
            ifaces: vec!["eth0".into()],
            ..Options::default()
        };
        let err = run(&layout, &both).unwrap_err();
        assert!(format!("{err:#}").contains("with --config, interfaces and settings come"));
        let mut setup = Setup::default();
        setup.allow.push("192.0.2.1".parse().unwrap());
        let lists = Options { config: both.config.clone(), setup, ..Options::default() };
        assert!(run(&layout, &lists).is_err());
    }
}
