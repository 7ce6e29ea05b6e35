//! Prometheus text-format metrics (`run --metrics ADDR:PORT`, path `/metrics`), following the
//! naming conventions: `sipguard_` prefix, `_total` for counters, bounded label sets (per
//! destination only for the most-dropping ones).

use std::fmt::Write as _;

use anyhow::Context as _;
use sipguard_common::{
    counters::{Misc, PayloadClass, Reason, Verdict},
    trust::Withheld,
};
use tokio::net::TcpListener;

use crate::{
    lists::{self, Target},
    maps::{ListKind, PinnedMaps},
    pin::PinLayout,
    stats::{self, Snapshot, monitor_name},
};

/// Destinations given their own series at most (the ones with the most drops).
pub const MAX_DESTINATION_SERIES: usize = 100;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}").ok();
}

/// The metrics page.
pub fn render(maps: &PinnedMaps) -> anyhow::Result<String> {
    let s = Snapshot::read(maps)?;
    let mut out = String::with_capacity(8192);
    traffic(&mut out, &s);
    inspection(&mut out, &s);
    state(&mut out, maps)?;
    Ok(out)
}

/// What the program saw and decided.
fn traffic(out: &mut String, s: &Snapshot) {
    family(
        out,
        "sipguard_packets_total",
        "counter",
        "Packets judged by the XDP program, by verdict and reason (monitored: a drop passed by monitor mode).",
    );
    for r in Reason::ALL {
        let verdict = match r.verdict() {
            Verdict::Pass => "pass",
            Verdict::Drop => "drop",
        };
        let n = s.reasons.get(r.name()).copied().unwrap_or(0);
        writeln!(
            out,
            "sipguard_packets_total{{verdict=\"{verdict}\",reason=\"{}\",monitored=\"false\"}} {n}",
            r.name()
        )
        .ok();
        if r.verdict() == Verdict::Drop {
            let m = s.reasons.get(&monitor_name(r)).copied().unwrap_or(0);
            writeln!(
                out,
                "sipguard_packets_total{{verdict=\"pass\",reason=\"{}\",monitored=\"true\"}} {m}",
                r.name()
            )
            .ok();
        }
    }
    family(
        out,
        "sipguard_payloads_total",
        "counter",
        "SIP-port payloads examined, by what they looked like.",
    );
    for c in PayloadClass::ALL {
        writeln!(
            out,
            "sipguard_payloads_total{{class=\"{}\"}} {}",
            c.name(),
            s.payload.get(c.name()).copied().unwrap_or(0)
        )
        .ok();
    }
    family(out, "sipguard_requests_total", "counter", "SIP requests examined, by method.");
    for (m, n) in &s.methods {
        writeln!(out, "sipguard_requests_total{{method=\"{}\"}} {n}", label(m)).ok();
    }
}

/// Signature hits, events, bans.
fn inspection(out: &mut String, s: &Snapshot) {
    family(out, "sipguard_signature_hits_total", "counter", "Messages each signature matched.");
    for (sig, n) in &s.signatures {
        writeln!(out, "sipguard_signature_hits_total{{signature=\"{}\"}} {n}", label(sig)).ok();
    }
    let misc = |m: Misc| s.counters.get(m.name()).copied().unwrap_or(0);
    family(
        out,
        "sipguard_events_total",
        "counter",
        "Incident records, written or suppressed by the kernel's budget.",
    );
    writeln!(out, "sipguard_events_total{{outcome=\"sent\"}} {}", misc(Misc::EventsSent)).ok();
    writeln!(
        out,
        "sipguard_events_total{{outcome=\"suppressed\"}} {}",
        misc(Misc::EventsSuppressed)
    )
    .ok();
    let plain = [
        (
            "sipguard_bans_added_total",
            "Sources banned by a signature hit or a behaviour rule.",
            Misc::BansAdded,
        ),
        (
            "sipguard_responses_total",
            "SIP answers of the protected servers seen by the response program.",
            Misc::Responses,
        ),
        ("sipguard_inspected_total", "SIP messages whose headers were inspected.", Misc::Inspected),
        (
            "sipguard_inspection_truncated_total",
            "Messages whose header section did not end within the inspection window.",
            Misc::InspectionTruncated,
        ),
    ];
    for (name, help, m) in plain {
        family(out, name, "counter", help);
        writeln!(out, "{name} {}", misc(m)).ok();
    }
    family(
        out,
        "sipguard_behaviour_trips_total",
        "counter",
        "Sources a behaviour rule banned (or, in monitor mode, would have banned).",
    );
    for rule in sipguard_common::behaviour::Rule::ALL {
        let n = misc(Misc::of_rule(rule));
        writeln!(out, "sipguard_behaviour_trips_total{{rule=\"{}\"}} {n}", rule.name()).ok();
    }
    family(
        out,
        "sipguard_bans_withheld_total",
        "counter",
        "Bans the evidence called for but the trust checks withheld: the source was forged (spoofed), had standing, or the budget of bans on unverified evidence was spent (budget).",
    );
    for cause in Withheld::ALL {
        let n = misc(cause.counter());
        writeln!(out, "sipguard_bans_withheld_total{{cause=\"{}\"}} {n}", cause.name()).ok();
    }
    family(
        out,
        "sipguard_standing_granted_total",
        "counter",
        "Standing granted or renewed: successes answering a party's REGISTER or INVITE.",
    );
    writeln!(out, "sipguard_standing_granted_total {}", misc(Misc::StandingGranted)).ok();
    family(
        out,
        "sipguard_challenges_answered_total",
        "counter",
        "Requests of parties with standing whose credentials echoed the nonce of a challenge they were sent.",
    );
    writeln!(out, "sipguard_challenges_answered_total {}", misc(Misc::ChallengesAnswered)).ok();
    family(out, "sipguard_bans_active", "gauge", "Sources banned now.");
    writeln!(out, "sipguard_bans_active {}", s.bans_active).ok();
    family(out, "sipguard_ban_capacity", "gauge", "Sources the ban table holds at most.");
    writeln!(out, "sipguard_ban_capacity {}", s.ban_capacity).ok();
}

/// Lists, destinations (with per-destination drops), build info.
fn state(out: &mut String, maps: &PinnedMaps) -> anyhow::Result<()> {
    family(out, "sipguard_list_entries", "gauge", "Entries of the global source lists.");
    for kind in [ListKind::Allow, ListKind::Block] {
        let n = lists::entries(maps, kind, &Target::Global)?.len();
        writeln!(out, "sipguard_list_entries{{list=\"{}\"}} {n}", kind.name()).ok();
    }
    let dests = crate::protect::all(maps)?;
    family(
        out,
        "sipguard_protected_destinations",
        "gauge",
        "Destinations with a policy of their own.",
    );
    writeln!(out, "sipguard_protected_destinations {}", dests.len()).ok();
    family(
        out,
        "sipguard_destination_dropped_total",
        "counter",
        "Packets dropped per protected destination (the most-dropping ones; \"global\" for the rest).",
    );
    writeln!(
        out,
        "sipguard_destination_dropped_total{{destination=\"global\",name=\"\"}} {}",
        maps.dest_drops_of(0)?
    )
    .ok();
    for d in stats::top_destinations(maps, MAX_DESTINATION_SERIES)? {
        writeln!(
            out,
            "sipguard_destination_dropped_total{{destination=\"{}\",name=\"{}\"}} {}",
            label(&d.destination),
            label(d.name.as_deref().unwrap_or("")),
            d.dropped
        )
        .ok();
    }
    decisions(out, maps)?;
    family(out, "sipguard_build_info", "gauge", "The running sipguard's version.");
    writeln!(out, "sipguard_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")).ok();
    Ok(())
}

/// The bouncer of the fleet's decision store (`crate::crowdsec`), once a `run` pulled.
fn decisions(out: &mut String, maps: &PinnedMaps) -> anyhow::Result<()> {
    use sipguard_common::decisions::Origin;
    let r = maps.bouncer_report()?;
    if r.written_ms == 0 {
        return Ok(());
    }
    family(
        out,
        "sipguard_decisions_active",
        "gauge",
        "Prefixes the decision store's decisions drop, by origin.",
    );
    for o in Origin::ALL {
        writeln!(
            out,
            "sipguard_decisions_active{{origin=\"{}\"}} {}",
            o.name(),
            r.by_origin[o as usize]
        )
        .ok();
    }
    #[expect(
        clippy::cast_precision_loss,
        reason = "milliseconds since 1970 fit a double's 53 bits"
    )]
    let seconds = |ms: u64| ms as f64 / 1000.0;
    family(
        out,
        "sipguard_decision_sync_timestamp_seconds",
        "gauge",
        "When the last pull of the decision stream was applied (0: never).",
    );
    writeln!(out, "sipguard_decision_sync_timestamp_seconds {}", seconds(r.synced_ms)).ok();
    family(
        out,
        "sipguard_decision_sync_failing_since_timestamp_seconds",
        "gauge",
        "Since when pulls fail and the decisions in force are stale (0: they succeed).",
    );
    writeln!(
        out,
        "sipguard_decision_sync_failing_since_timestamp_seconds {}",
        seconds(r.failing_since_ms)
    )
    .ok();
    family(
        out,
        "sipguard_decision_syncs_total",
        "counter",
        "Pulls of the decision stream, by outcome.",
    );
    writeln!(out, "sipguard_decision_syncs_total{{outcome=\"applied\"}} {}", r.syncs).ok();
    writeln!(out, "sipguard_decision_syncs_total{{outcome=\"failed\"}} {}", r.sync_errors).ok();
    family(
        out,
        "sipguard_alerts_shared_total",
        "counter",
        "This host's bans shared with the decision store: sent, or lost because the queue was full.",
    );
    writeln!(out, "sipguard_alerts_shared_total{{outcome=\"sent\"}} {}", r.alerts_sent).ok();
    writeln!(out, "sipguard_alerts_shared_total{{outcome=\"dropped\"}} {}", r.alerts_dropped).ok();
    family(out, "sipguard_alerts_queued", "gauge", "Shared bans waiting for the decision store.");
    writeln!(out, "sipguard_alerts_queued {}", r.alerts_queued).ok();
    Ok(())
}

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
                    .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
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
