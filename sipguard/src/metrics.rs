//! Prometheus text-format metrics (`run --metrics ADDR:PORT`, path `/metrics`), following the
//! naming conventions: `sipguard_` prefix, `_total` for counters, bounded label sets (per
//! destination only for the most-dropping ones).

use std::fmt::Write as _;

use anyhow::Context as _;
use sipguard_common::{
    counters::{Misc, PayloadClass, Reason, Verdict},
    trust::Withheld,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

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
    family(out, "sipguard_build_info", "gauge", "The running sipguard's version.");
    writeln!(out, "sipguard_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")).ok();
    Ok(())
}

/// Serves `/metrics` on `addr` until the task is dropped.
pub async fn serve(listener: TcpListener, layout: PinLayout) -> anyhow::Result<()> {
    loop {
        let (mut conn, _) = listener.accept().await.context("accepting a metrics connection")?;
        let layout = layout.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(m) => n += m,
                    }
                }
            })
            .await;
            let request = String::from_utf8_lossy(&buf[..n]);
            let response = if read.is_err() {
                return;
            } else if request.starts_with("GET /metrics ") || request.starts_with("GET /metrics?") {
                match PinnedMaps::open(&layout).and_then(|maps| render(&maps)) {
                    Ok(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    Err(e) => {
                        let body = format!("{e:#}\n");
                        format!(
                            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                }
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            // A scraper that hung up gets nothing more; the server goes on.
            if conn.write_all(response.as_bytes()).await.is_ok() {
                conn.shutdown().await.ok();
            }
        });
    }
}
