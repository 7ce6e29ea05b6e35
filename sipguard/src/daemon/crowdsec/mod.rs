//! The fleet's decision store: CrowdSec's Local API. `run` is a bouncer of it (it pulls
//! decisions and enforces them in the kernel's decision list, `crate::state::decisions`).
//!
//! The stream is pulled with `startup=true` first, then as deltas. A full answer replaces
//! the set in force in one step; a delta changes what it names. Any failure keeps the set in
//! force (the kernel still ends each decision on time) and makes the next pull a full one, so
//! a delta the API counted as delivered but that was never applied cannot be missed.
//!
//! With a machine and its password, `run` also shares its own bans as alerts (`share`).

pub mod book;
pub mod duration;
pub mod http;
pub mod share;
pub mod usage;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use hyper::Method;
use serde_json::Value;
use sipguard_common::{
    decisions::{BouncerReport, REPORT_ERROR_LEN},
    trust::ReversePath,
};
use tokio::sync::mpsc;

use self::{
    book::{Book, Filters, Skipped, Stream},
    http::{Auth, Client},
    share::Sharer,
    usage::{Counts, Usage},
};
use crate::{
    kernel::{maps::PinnedMaps, sys::monotonic_ns},
    report::stats::Snapshot,
    setup::settings::{CrowdsecSettings, read_secret},
    state::decisions::DecisionList,
};

/// What the settings name, read and built: the credentials and the client.
struct Opened {
    key: String,
    password: Option<String>,
    client: Client,
}

/// Checks the settings, reads the key and password files and builds the client.
fn open(settings: &CrowdsecSettings) -> anyhow::Result<Opened> {
    settings.check()?;
    // A pull may take longer than the interval (a big first sync), never forever.
    let deadline = (Duration::from_secs(settings.interval) * 3).max(Duration::from_secs(30));
    let client = Client::new(&settings.url, deadline, settings.ca_file.as_deref())?;
    let key = read_secret(&settings.api_key_file, "the bouncer key")?;
    let password = settings
        .password_file
        .as_deref()
        .map(|p| read_secret(p, "the machine's password"))
        .transpose()?;
    Ok(Opened { key, password, client })
}

fn filters(settings: &CrowdsecSettings) -> Filters {
    Filters { origins: settings.origins.clone(), scenarios: settings.scenarios.clone() }
}

/// The book of decisions and the kernel's list, kept in step.
pub struct Enforcer {
    book: Book,
    list: DecisionList,
    maps: PinnedMaps,
    filters: Filters,
}

/// What one pull changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub full: bool,
    pub enforced: usize,
    pub added: usize,
    pub deleted: usize,
    pub skipped: usize,
}

impl Enforcer {
    /// An empty book over the kernel's list of `maps`.
    pub fn new(maps: &PinnedMaps, filters: Filters) -> anyhow::Result<Self> {
        Ok(Self {
            book: Book::default(),
            list: DecisionList::open(maps)?,
            maps: maps.clone(),
            filters,
        })
    }

    /// Applies one answer of the decision stream: `full` replaces everything in one step,
    /// otherwise it is a delta.
    pub fn apply(&mut self, full: bool, body: &[u8]) -> anyhow::Result<Applied> {
        let stream: Stream = serde_json::from_slice(body)
            .context("the Local API's answer is not a decision stream")?;
        let now = monotonic_ns();
        let mut applied = Applied { full, ..Applied::default() };
        let mut skipped = std::collections::BTreeMap::<Skipped, usize>::new();
        if full {
            let mut book = Book::default();
            for w in stream.new.iter().flatten() {
                match book.add(w, &self.filters, now) {
                    Ok(_) => applied.added += 1,
                    Err(why) => *skipped.entry(why).or_default() += 1,
                }
            }
            let (v4, v6) = book.families();
            crate::state::decisions::check_capacity(&self.maps, v4, v6)?;
            self.list.replace(&book.all())?;
            self.book = book;
        } else {
            // Deletions first: a decision replaced by a longer one comes as both.
            let mut touched = std::collections::BTreeSet::new();
            for w in stream.deleted.iter().flatten() {
                if let Some(c) = self.book.delete(w) {
                    touched.insert(c);
                    applied.deleted += 1;
                }
            }
            for w in stream.new.iter().flatten() {
                match self.book.add(w, &self.filters, now) {
                    Ok(c) => {
                        touched.insert(c);
                        applied.added += 1;
                    }
                    Err(why) => *skipped.entry(why).or_default() += 1,
                }
            }
            touched.extend(self.book.expire(now));
            for c in touched {
                match self.book.enforced(&c) {
                    Some(e) => self.list.put(&e)?,
                    None => {
                        self.list.remove(&c)?;
                    }
                }
            }
        }
        applied.skipped = skipped.values().sum();
        if !skipped.is_empty() {
            log::debug!("decisions not enforced: {skipped:?}");
        }
        applied.enforced = self.book.by_origin().iter().map(|&n| n as usize).sum();
        Ok(applied)
    }

    /// Drops what expired, from the book and the kernel.
    fn expire(&mut self) -> anyhow::Result<()> {
        for c in self.book.expire(monotonic_ns()) {
            self.list.remove(&c)?;
        }
        Ok(())
    }
}

/// `run`'s bouncer: pulls the stream every interval and enforces it.
pub struct Bouncer {
    settings: CrowdsecSettings,
    key: String,
    client: Client,
    enforcer: Option<Enforcer>,
    report: BouncerReport,
    full_next: bool,
    sharer: Option<Sharer>,
    /// Whether the last share failed (its first failure is logged, not every retry).
    share_failing: bool,
    /// Usage-metrics reports, unless their interval is 0.
    usage: Option<Usage>,
}

/// `run`'s end of sharing: incident records go to the bouncer task; what its channel cannot
/// take is counted, never silently lost.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Value>,
    lost: Arc<AtomicU64>,
}

impl Outbox {
    /// Offers one incident record (the bouncer decides whether it is a ban to share).
    pub fn offer(&self, record: &Value) {
        if record["banned"] != true {
            return;
        }
        if self.tx.try_send(record.clone()).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count of records the channel could not take, for the bouncer's report.
    #[must_use]
    pub fn lost(&self) -> Arc<AtomicU64> {
        self.lost.clone()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Bouncer {
    pub fn new(maps: &PinnedMaps, settings: &CrowdsecSettings) -> anyhow::Result<Self> {
        let Opened { key, password, client } = open(settings)?;
        let mut report = BouncerReport::zeroed();
        report.interval_ms =
            u32::try_from(settings.interval.saturating_mul(1000)).unwrap_or(u32::MAX);
        let sharer = settings.machine.clone().zip(password).map(|(m, p)| Sharer::new(m, p));
        let usage = if settings.metrics_interval == 0 {
            None
        } else {
            let counts = Counts::of(&Snapshot::from_counters(&maps.counters()?));
            Some(Usage::new(counts, unix_ms() / 1000))
        };
        Ok(Self {
            sharer,
            share_failing: false,
            usage,
            settings: settings.clone(),
            key,
            client,
            enforcer: Some(Enforcer::new(maps, filters(settings))?),
            report,
            full_next: true,
        })
    }

    #[must_use]
    pub fn settings(&self) -> &CrowdsecSettings {
        &self.settings
    }

    /// One pull, applied; the report says how it went either way.
    pub async fn pull(&mut self) -> anyhow::Result<Applied> {
        let full = self.full_next;
        let result = self.pull_and_apply(full).await;
        let now = unix_ms();
        match &result {
            Ok(applied) => {
                self.full_next = false;
                self.report.synced_ms = now;
                self.report.failing_since_ms = 0;
                self.report.syncs += 1;
                self.report.error = [0; REPORT_ERROR_LEN];
                if applied.full || applied.added + applied.deleted > 0 {
                    log::info!(
                        "crowdsec: {} sync: +{} -{} ({} not enforceable); {} prefixes enforced",
                        if applied.full { "full" } else { "delta" },
                        applied.added,
                        applied.deleted,
                        applied.skipped,
                        applied.enforced
                    );
                }
            }
            Err(e) => {
                self.full_next = true;
                if self.report.failing_since_ms == 0 {
                    self.report.failing_since_ms = now;
                    log::warn!("crowdsec: {e:#}; the decisions in force are kept");
                } else {
                    log::debug!("crowdsec: still failing: {e:#}");
                }
                self.report.sync_errors += 1;
                let text = format!("{e:#}");
                let mut error = [0u8; REPORT_ERROR_LEN];
                let cut = crate::state::decisions::cut(&text, REPORT_ERROR_LEN);
                error[..cut.len()].copy_from_slice(cut.as_bytes());
                self.report.error = error;
            }
        }
        self.write_report();
        result
    }

    async fn pull_and_apply(&mut self, full: bool) -> anyhow::Result<Applied> {
        let path = format!("/v1/decisions/stream?startup={full}");
        let body = self.client.send(Method::GET, &path, Auth::Key(&self.key), None).await?;
        let mut enforcer = self.enforcer.take().context("the bouncer lost its state")?;
        let (enforcer, result) = tokio::task::spawn_blocking(move || {
            let result = enforcer.apply(full, &body);
            (enforcer, result)
        })
        .await
        .context("applying the decisions")?;
        self.report.by_origin = enforcer.book.by_origin();
        self.enforcer = Some(enforcer);
        result
    }

    /// Removes expired decisions (the kernel already ignores them).
    pub fn expire(&mut self) {
        if let Some(e) = self.enforcer.as_mut() {
            if let Err(err) = e.expire() {
                log::warn!("crowdsec: removing expired decisions: {err:#}");
            }
            self.report.by_origin = e.book.by_origin();
        }
    }

    /// Whether this bouncer shares bans.
    #[must_use]
    pub fn shares(&self) -> bool {
        self.sharer.is_some()
    }

    /// Queues the alert of a ban to share, unless it is not one the trust checks stand
    /// behind or a decision of the store already holds its source.
    fn offer(&mut self, record: &Value) {
        let (Some(sharer), Some(e)) = (self.sharer.as_mut(), self.enforcer.as_ref()) else {
            return;
        };
        let reverse_path_on = e.maps.config().is_ok_and(|c| c.reverse_path() != ReversePath::Off);
        if !share::shareable(record, reverse_path_on) {
            return;
        }
        let Some(source) = record["source"].as_str().and_then(|s| s.parse().ok()) else {
            return;
        };
        if share::echoes(e.list.cover(source).unwrap_or(None), record) {
            log::debug!("crowdsec: {source} is already decided; not shared back");
            return;
        }
        if let Some(alert) = share::alert(record) {
            sharer.queue(alert);
        }
    }

    /// Sends the queued alerts.
    async fn share(&mut self, lost: &AtomicU64) {
        let Some(sharer) = self.sharer.as_mut() else { return };
        match sharer.flush(&self.client).await {
            Ok(()) => self.share_failing = false,
            Err(e) if !self.share_failing => {
                self.share_failing = true;
                log::warn!("crowdsec: {e:#}; {} alerts wait", sharer.queued());
            }
            Err(e) => log::debug!("crowdsec: still failing: {e:#}"),
        }
        self.report.alerts_sent = sharer.sent;
        self.report.alerts_queued = u32::try_from(sharer.queued()).unwrap_or(u32::MAX);
        self.report.alerts_dropped = sharer.dropped + lost.load(Ordering::Relaxed);
        self.write_report();
    }

    /// Reports the window's usage to the API (`usage`).
    async fn report_usage(&mut self) {
        let (Some(usage), Some(e)) = (self.usage.as_mut(), self.enforcer.as_ref()) else {
            return;
        };
        let counts = match e.maps.counters() {
            Ok(slots) => Counts::of(&Snapshot::from_counters(&slots)),
            Err(err) => {
                log::warn!("crowdsec: reading the counters for usage metrics: {err:#}");
                return;
            }
        };
        let now = unix_ms();
        let body = usage.payload(&counts, self.report.by_origin, now / 1000);
        let result = self
            .client
            .send(
                Method::POST,
                "/v1/usage-metrics",
                Auth::Key(&self.key),
                Some(body.to_string().into_bytes()),
            )
            .await
            .map(drop);
        usage.settle(&result, counts);
        self.report.usage_sent = usage.sent;
        self.report.usage_tried_ms = now;
        self.report.usage_outcome = usage.outcome as u8;
        self.write_report();
    }

    fn write_report(&mut self) {
        self.report.written_ms = unix_ms();
        if let Some(e) = &self.enforcer
            && let Err(err) = e.maps.set_bouncer_report(&self.report)
        {
            log::warn!("crowdsec: writing the bouncer report: {err:#}");
        }
    }

    /// The channel `run` offers its incident records through, when this bouncer shares.
    #[must_use]
    pub fn outbox(&self) -> Option<(Outbox, mpsc::Receiver<Value>)> {
        self.sharer.as_ref()?;
        let (tx, rx) = mpsc::channel(share::QUEUE_CAPACITY);
        Some((Outbox { tx, lost: Arc::new(AtomicU64::new(0)) }, rx))
    }

    /// Pulls every interval, and shares what `records` brings, until the task is dropped.
    pub async fn run(mut self, records: Option<(Arc<AtomicU64>, mpsc::Receiver<Value>)>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(self.settings.interval));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (lost, mut rx) = match records {
            Some((lost, rx)) => (lost, Some(rx)),
            None => (Arc::new(AtomicU64::new(0)), None),
        };
        // The first report covers a whole interval, as CrowdSec's bouncers do.
        let every = Duration::from_secs(self.settings.metrics_interval.max(1));
        let mut usage_ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        usage_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reports = self.usage.is_some();
        loop {
            tokio::select! {
                _ = usage_ticker.tick(), if reports => self.report_usage().await,
                _ = ticker.tick() => {
                    self.expire();
                    // The report has the outcome; the log had its line.
                    self.pull().await.ok();
                    self.share(&lost).await;
                }
                Some(record) = next(rx.as_mut()) => {
                    self.offer(&record);
                    while let Some(more) = rx.as_mut().and_then(|r| r.try_recv().ok()) {
                        self.offer(&more);
                    }
                    self.share(&lost).await;
                }
            }
        }
    }
}

/// The next record, or never without a channel.
async fn next(rx: Option<&mut mpsc::Receiver<Value>>) -> Option<Value> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
