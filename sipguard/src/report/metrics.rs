//! Prometheus metrics (`run --metrics ADDR:PORT`, path `/metrics`), following the naming
//! conventions: `sipguard_` prefix, `_total` for counters, bounded label sets (per
//! destination only for the most-dropping ones).
//!
//! Each scrape reads the maps once into [`Family`] values; the `prometheus-client` library
//! encodes them (a `Collector`, the exporter pattern: the numbers live in the kernel, not
//! in this process) in the OpenMetrics text format, and hyper serves them.

use anyhow::Context as _;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use sipguard_common::{
    counters::{Misc, PayloadClass, Reason, Verdict},
    decisions::Origin,
    trust::Withheld,
};
use tokio::net::TcpListener;

use crate::{
    kernel::{
        maps::{ListKind, PinnedMaps},
        pin::PinLayout,
    },
    report::stats::{self, Snapshot, monitor_name},
    state::lists::{self, Target},
};

/// Destinations given their own series at most (the ones with the most drops).
pub const MAX_DESTINATION_SERIES: usize = 100;

/// A sample's labels.
type Labels = Vec<(&'static str, String)>;

/// One metric family as read from the maps. A counter's name is without its `_total`,
/// which the encoder adds to each sample.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Labels, Value)>,
}

/// A sample's value: counts print as integers, times with their fraction.
#[derive(Debug, Clone, Copy)]
enum Value {
    Count(u64),
    Real(f64),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// The families of one scrape, handed to the library's encoder.
#[derive(Debug)]
struct Scrape(Vec<Family>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            for (labels, value) in &f.samples {
                let sample = metric.encode_family(labels)?;
                match (f.kind, *value) {
                    (Kind::Counter, Value::Count(n)) => ConstCounter::new(n).encode(sample)?,
                    (Kind::Counter, Value::Real(x)) => ConstCounter::new(x).encode(sample)?,
                    (Kind::Gauge, Value::Count(n)) => ConstGauge::new(n).encode(sample)?,
                    (Kind::Gauge, Value::Real(x)) => ConstGauge::new(x).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// What one scrape collects.
#[derive(Default)]
struct Page(Vec<Family>);

impl Page {
    fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) -> &mut Family {
        self.0.push(Family { name, help, kind, samples: Vec::new() });
        self.0.last_mut().expect("just pushed")
    }

    fn counter(&mut self, name: &'static str, help: &'static str) -> &mut Family {
        self.family(name, Kind::Counter, help)
    }

    fn gauge(&mut self, name: &'static str, help: &'static str) -> &mut Family {
        self.family(name, Kind::Gauge, help)
    }
}

impl Family {
    fn sample(&mut self, labels: &[(&'static str, &str)], n: u64) -> &mut Self {
        self.push(labels, Value::Count(n))
    }

    fn sample_f(&mut self, labels: &[(&'static str, &str)], x: f64) -> &mut Self {
        self.push(labels, Value::Real(x))
    }

    fn push(&mut self, labels: &[(&'static str, &str)], v: Value) -> &mut Self {
        self.samples.push((labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(), v));
        self
    }
}

/// The metrics page.
pub fn render(maps: &PinnedMaps) -> anyhow::Result<String> {
    let s = Snapshot::read(maps)?;
    let mut page = Page::default();
    traffic(&mut page, &s);
    inspection(&mut page, &s);
    state(&mut page, maps)?;
    decisions(&mut page, maps)?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(page.0)));
    let mut out = String::with_capacity(16384);
    encode(&mut out, &registry).context("encoding the metrics")?;
    Ok(out)
}

/// What the program saw and decided.
fn traffic(page: &mut Page, s: &Snapshot) {
    let f = page.counter(
        "sipguard_packets",
        "Packets judged by the XDP program, by verdict and reason (monitored: a drop passed by monitor mode).",
    );
    for r in Reason::ALL {
        let verdict = match r.verdict() {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
        };
        let n = s.reasons.get(r.name()).copied().unwrap_or(0);
        f.sample(&[("verdict", verdict), ("reason", r.name()), ("monitored", "false")], n);
        if r.verdict() == Verdict::Drop {
            let m = s.reasons.get(&monitor_name(r)).copied().unwrap_or(0);
            f.sample(&[("verdict", "pass"), ("reason", r.name()), ("monitored", "true")], m);
        }
    }
    let f =
        page.counter("sipguard_payloads", "SIP-port payloads examined, by what they looked like.");
    for c in PayloadClass::ALL {
        f.sample(&[("class", c.name())], s.payload.get(c.name()).copied().unwrap_or(0));
    }
    let f = page.counter("sipguard_requests", "SIP requests examined, by method.");
    for (m, n) in &s.methods {
        f.sample(&[("method", m)], *n);
    }
    let f = page.counter(
        "sipguard_decision_dropped",
        "Packets dropped by decisions of the fleet's store, by the decision's origin (what the bouncer reports to the Local API).",
    );
    for o in Origin::ALL {
        f.sample(&[("origin", o.name())], s.decision_drops.get(o.name()).copied().unwrap_or(0));
    }
}

/// Signature hits, events, bans.
fn inspection(page: &mut Page, s: &Snapshot) {
    let f = page.counter("sipguard_signature_hits", "Messages each signature matched.");
    for (sig, n) in &s.signatures {
        f.sample(&[("signature", sig)], *n);
    }
    let misc = |m: Misc| s.counters.get(m.name()).copied().unwrap_or(0);
    page.counter(
        "sipguard_events",
        "Incident records, written or suppressed by the kernel's budget.",
    )
    .sample(&[("outcome", "sent")], misc(Misc::EventsSent))
    .sample(&[("outcome", "suppressed")], misc(Misc::EventsSuppressed));
    let plain = [
        (
            "sipguard_bans_added",
            "Sources banned by a signature hit or a behaviour rule.",
            Misc::BansAdded,
        ),
        (
            "sipguard_responses",
            "SIP answers of the protected servers seen by the response program.",
            Misc::Responses,
        ),
        ("sipguard_inspected", "SIP messages whose headers were inspected.", Misc::Inspected),
        (
            "sipguard_inspection_truncated",
            "Messages whose header section did not end within the inspection window.",
            Misc::InspectionTruncated,
        ),
    ];
    for (name, help, m) in plain {
        page.counter(name, help).sample(&[], misc(m));
    }
    let f = page.counter(
        "sipguard_behaviour_trips",
        "Sources a behaviour rule banned (or, in monitor mode, would have banned).",
    );
    for rule in sipguard_common::behaviour::Rule::ALL {
        f.sample(&[("rule", rule.name())], misc(Misc::of_rule(rule)));
    }
    let f = page.counter(
        "sipguard_bans_withheld",
        "Bans the evidence called for but the trust checks withheld: the source was forged (spoofed), had standing, or the budget of bans on unverified evidence was spent (budget).",
    );
    for cause in Withheld::ALL {
        f.sample(&[("cause", cause.name())], misc(cause.counter()));
    }
    page.counter(
        "sipguard_decisions_withheld",
        "Packets an unproven decision of another sipguard edge names, passed because the source has standing here (cause standing).",
    )
    .sample(&[("cause", "standing")], misc(Misc::DecisionsWithheldStanding));
    page.counter(
        "sipguard_standing_granted",
        "Standing granted or renewed: successes answering a party's REGISTER or INVITE.",
    )
    .sample(&[], misc(Misc::StandingGranted));
    page.counter(
        "sipguard_challenges_answered",
        "Requests of parties with standing whose credentials echoed the nonce of a challenge they were sent.",
    )
    .sample(&[], misc(Misc::ChallengesAnswered));
    page.counter(
        "sipguard_attempts_refused",
        "Of those requests, the ones the server refused (challenged again or answered 403): failures provably the party's own.",
    )
    .sample(&[], misc(Misc::AttemptsRefused));
    page.counter(
        "sipguard_attempts_accepted",
        "Of those requests, the ones the server took (a ringing or final answer to their INVITE or REGISTER that was no refusal): the party's credit against its challenges.",
    )
    .sample(&[], misc(Misc::AttemptsAccepted));
    page.counter(
        "sipguard_numbers_not_found",
        "\"Not found\" answers to parties with standing for numbers (seven characters or more): a dialer's stale list, which the rule not_found does not count.",
    )
    .sample(&[], misc(Misc::NumbersNotFound));
    page.gauge("sipguard_bans_active", "Sources banned now.").sample(&[], s.bans_active);
    page.gauge("sipguard_ban_capacity", "Sources the ban table holds at most.")
        .sample(&[], s.ban_capacity);
}

/// Lists, destinations (with per-destination drops), build info.
fn state(page: &mut Page, maps: &PinnedMaps) -> anyhow::Result<()> {
    let f = page.gauge("sipguard_list_entries", "Entries of the global source lists.");
    for kind in [ListKind::Allow, ListKind::Block] {
        let n = lists::entries(maps, kind, &Target::Global)?.len();
        f.sample(&[("list", kind.name())], n as u64);
    }
    let dests = crate::state::protect::all(maps)?;
    page.gauge("sipguard_protected_destinations", "Destinations with a policy of their own.")
        .sample(&[], dests.len() as u64);
    let f = page.counter(
        "sipguard_destination_dropped",
        "Packets dropped per protected destination (the most-dropping ones; \"global\" for the rest).",
    );
    f.sample(&[("destination", "global"), ("name", "")], maps.dest_drops_of(0)?);
    for d in stats::top_destinations(maps, MAX_DESTINATION_SERIES)? {
        f.sample(
            &[("destination", &d.destination), ("name", d.name.as_deref().unwrap_or(""))],
            d.dropped,
        );
    }
    page.gauge("sipguard_build_info", "The running sipguard's version.")
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);
    Ok(())
}

/// The bouncer of the fleet's decision store (`crate::daemon::crowdsec`), once a `run` pulled.
fn decisions(page: &mut Page, maps: &PinnedMaps) -> anyhow::Result<()> {
    let r = maps.bouncer_report()?;
    if r.written_ms == 0 {
        return Ok(());
    }
    let f = page.gauge(
        "sipguard_decisions_active",
        "Prefixes the decision store's decisions drop, by origin.",
    );
    for o in Origin::ALL {
        f.sample(&[("origin", o.name())], u64::from(r.by_origin[o as usize]));
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "milliseconds since 1970 fit a double's 53 bits"
    )]
    let seconds = |ms: u64| ms as f64 / 1000.0;
    page.gauge(
        "sipguard_decision_sync_timestamp_seconds",
        "When the last pull of the decision stream was applied (0: never).",
    )
    .sample_f(&[], seconds(r.synced_ms));
    page.gauge(
        "sipguard_decision_sync_failing_since_timestamp_seconds",
        "Since when pulls fail and the decisions in force are stale (0: they succeed).",
    )
    .sample_f(&[], seconds(r.failing_since_ms));
    page.counter("sipguard_decision_syncs", "Pulls of the decision stream, by outcome.")
        .sample(&[("outcome", "applied")], r.syncs)
        .sample(&[("outcome", "failed")], r.sync_errors);
    page.counter(
        "sipguard_alerts_shared",
        "This host's bans shared with the decision store: sent, or lost because the queue was full.",
    )
    .sample(&[("outcome", "sent")], r.alerts_sent)
    .sample(&[("outcome", "dropped")], r.alerts_dropped);
    page.gauge("sipguard_alerts_queued", "Shared bans waiting for the decision store.")
        .sample(&[], u64::from(r.alerts_queued));
    Ok(())
}

/// The OpenMetrics text format, which `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long a client may take to send its request's head.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The largest request head read (a scrape's is a few hundred bytes).
pub const MAX_REQUEST_BYTES: usize = 8192;
/// Scrapes served at once; more wait for their turn in the listen queue.
pub const MAX_CONNECTIONS: usize = 16;

/// Serves `/metrics` on `listener` until the task is dropped: hyper's HTTP/1 server, with
/// its head timeout and buffer limit, one request per connection.
pub async fn serve(listener: TcpListener, layout: PinLayout) -> anyhow::Result<()> {
    use hyper::{Request, Response, StatusCode, body::Incoming, header, service::service_fn};
    use hyper_util::rt::{TokioIo, TokioTimer};

    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots.clone().acquire_owned().await.context("the connection limit")?;
        let (conn, _) = listener.accept().await.context("accepting a metrics connection")?;
        let layout = layout.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let layout = layout.clone();
            async move {
                let (status, body) = if request.method() != hyper::Method::GET {
                    (StatusCode::METHOD_NOT_ALLOWED, String::new())
                } else if request.uri().path() != "/metrics" {
                    (StatusCode::NOT_FOUND, String::new())
                } else {
                    match PinnedMaps::open(&layout).and_then(|maps| render(&maps)) {
                        Ok(body) => (StatusCode::OK, body),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
                    }
                };
                Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, CONTENT_TYPE)
                    .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
            }
        });
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(conn), service)
                .await;
            // A scraper that hung up, or was too slow or too big, only loses its answer.
            if let Err(e) = served {
                log::debug!("metrics connection: {e}");
            }
            drop(permit);
        });
    }
}
