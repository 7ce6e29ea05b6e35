//! The bouncer against a stand-in for the Local API (`sipguard_tests::stand_in`), for what
//! the real one in the fleet suite cannot answer: usage metrics (the real 1.4.6 lacks the
//! endpoint; `fleet.rs` checks that its 404 is taken as "unsupported").

use std::{net::UdpSocket, time::Duration};

use serde_json::json;
use sipguard_tests::{
    cli::Sipguard,
    netns::PbxLink,
    stand_in::{Request, StandInApi, Stream},
    wait,
};

const OPTIONS: &[u8] = b"OPTIONS sip:100@10.77.0.1 SIP/2.0\r\nCall-ID: u@x\r\n\r\n";

/// The total of the items named `name` with `origin` over every report in `reports`.
fn total(reports: &[Request], name: &str, origin: Option<&str>) -> u64 {
    reports
        .iter()
        .flat_map(|r| {
            r.json()["remediation_components"][0]["metrics"][0]["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|i| i["name"] == name && origin.is_none_or(|o| i["labels"]["origin"] == o))
        .map(|i| i["value"].as_u64().unwrap())
        .sum()
}

fn send(sg: &Sipguard, from: &UdpSocket, pbx: &UdpSocket, n: usize) {
    for _ in 0..n {
        assert!(sg.drops(from, pbx, OPTIONS, "decision"));
    }
}

const KEY: &str = "stand-in-bouncer-key-0123456789";

/// A PBX whose `sipguard run` is a bouncer of a stand-in API that decides against
/// `decisions`, pulling (and reporting usage) every second; the key file is removed on drop.
struct Bench {
    link: PbxLink,
    api: StandInApi,
    sg: Sipguard,
    run: Option<sipguard_tests::cli::Run>,
    pbx: UdpSocket,
    dir: std::path::PathBuf,
}

impl Bench {
    fn new(decisions: serde_json::Value) -> Self {
        let link = PbxLink::new();
        let api = StandInApi::start(&link.pbx, decisions);
        let dir = std::env::temp_dir().join(sipguard_tests::unique("sgusage"));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("bouncer.key");
        std::fs::write(&key, format!("{KEY}\n")).unwrap();
        let sg = Sipguard::new(&link.pbx);
        let url = api.url();
        let run = sg.run(&[
            "-i",
            "pbx0",
            "--stats-interval",
            "0",
            "--crowdsec-url",
            &url,
            "--crowdsec-key-file",
            key.to_str().unwrap(),
            "--crowdsec-interval",
            "1",
            "--crowdsec-metrics-interval",
            "1",
        ]);
        let pbx = link.pbx.udp(&format!("{}:5060", PbxLink::PBX_V4));
        Self { link, api, sg, run: Some(run), pbx, dir }
    }

    fn peer(&self, addr: &str) -> UdpSocket {
        self.link.peer.udp(&format!("{addr}:0"))
    }

    fn crowdsec(&self) -> serde_json::Value {
        self.sg.json(&["status", "--json"])["crowdsec"].clone()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn ban(id: u32, origin: &str, value: &str) -> serde_json::Value {
    json!({"id": id, "origin": origin, "scenario": "crowdsecurity/sip-bf", "scope": "Ip",
           "type": "ban", "value": value, "duration": "1h"})
}

/// Usage metrics in CrowdSec's shape: the packets each origin's decisions dropped, reported
/// once each however the windows fall and however many reports fail, the packets judged, the
/// decisions in force, under the bouncer's key and User-Agent.
#[test]
fn usage_metrics_report_each_drop_once_by_origin_across_failed_reports() {
    let bench = Bench::new(json!([
        ban(1, "cscli", PbxLink::PEER_A_V4),
        ban(2, "CAPI", PbxLink::PEER_B_V4)
    ]));
    let (sg, api, pbx) = (&bench.sg, &bench.api, &bench.pbx);
    let (a, b) = (bench.peer(PbxLink::PEER_A_V4), bench.peer(PbxLink::PEER_B_V4));
    wait::until("both decisions enforced", || {
        let n = sg.json(&["status", "--json"])["crowdsec"]["decisions"].clone();
        if n == json!({"CAPI": 1, "cscli": 1}) { Ok(()) } else { Err(n.to_string()) }
    });
    send(sg, &a, pbx, 5);
    send(sg, &b, pbx, 3);
    let reports = wait::until("the reports to hold the eight drops", || {
        let r = answered(api, 201);
        let seen = (total(&r, "dropped", Some("cscli")), total(&r, "dropped", Some("CAPI")));
        if seen == (5, 3) { Ok(r) } else { Err(format!("{seen:?}")) }
    });
    let last = reports.last().unwrap();
    assert_eq!(last.header("x-api-key"), Some(KEY));
    let agent = last.header("user-agent").unwrap();
    assert!(agent.starts_with("sipguard-xdp-bouncer/"), "{agent}");
    let component = &last.json()["remediation_components"][0];
    assert_eq!(component["type"], "sipguard-xdp-bouncer", "{component}");
    assert!(component["metrics"][0]["meta"]["window_size_seconds"].as_u64().unwrap() >= 1);
    assert_eq!(total(std::slice::from_ref(last), "active_decisions", Some("cscli")), 1);
    assert_eq!(total(std::slice::from_ref(last), "active_decisions", Some("CAPI")), 1);
    assert!(total(&reports, "processed", None) >= 8, "every drop was judged");
    let usage = bench.crowdsec()["usage_metrics"].clone();
    assert_eq!(usage["last"], "sent", "{usage}");

    // The API fails for a while: the drops meanwhile wait, carried by each refused report,
    // and come in the next report it takes, once.
    api.answer_usage_with(500);
    wait::until("a report refused", || {
        let usage = bench.crowdsec()["usage_metrics"].clone();
        if usage["last"] == "failed" { Ok(()) } else { Err(usage.to_string()) }
    });
    send(sg, &a, pbx, 2);
    wait::until("a refused report to carry the two drops", || {
        let refused = answered(api, 500);
        let carried =
            refused.last().map_or(0, |r| total(std::slice::from_ref(r), "dropped", Some("cscli")));
        if carried == 2 {
            Ok(())
        } else {
            Err(format!("{} refused, the last carried {carried}", refused.len()))
        }
    });
    api.answer_usage_with(201);
    let taken = wait::until("the two drops in a report taken", || {
        let taken = answered(api, 201);
        let n = total(&taken, "dropped", Some("cscli"));
        if n == 7 { Ok(taken.len()) } else { Err(format!("cscli drops taken: {n}")) }
    });
    wait::until("one more report taken", || {
        let n = answered(api, 201).len();
        if n > taken { Ok(()) } else { Err(format!("{n} taken")) }
    });
    let all = answered(api, 201);
    assert_eq!(
        (total(&all, "dropped", Some("cscli")), total(&all, "dropped", Some("CAPI"))),
        (7, 3),
        "each drop reported once"
    );
}

/// The usage reports the stand-in answered with `status`, in order.
fn answered(api: &StandInApi, status: u16) -> Vec<Request> {
    api.requests_to("/v1/usage-metrics").into_iter().filter(|r| r.status == status).collect()
}

/// An API that fails, however it fails, changes nothing in force: over several failed
/// intervals the decision keeps dropping its source and bystanders keep passing; `status`
/// says since when the decisions are stale and why, never with the key; the first pull that
/// succeeds again is a full one (`startup=true`), so nothing the API counted as delivered
/// is missed.
#[test]
fn a_failing_api_keeps_the_decisions_in_force_and_the_next_good_pull_is_full() {
    let mut bench = Bench::new(json!([ban(1, "cscli", PbxLink::PEER_A_V4)]));
    let (a, bystander) = (bench.peer(PbxLink::PEER_A_V4), bench.peer(PbxLink::PEER_B_V4));
    wait::until("the decision enforced", || {
        let c = bench.crowdsec();
        if c["decisions"] == json!({"cscli": 1}) { Ok(()) } else { Err(c.to_string()) }
    });
    // A pull's deadline: `run`'s own, at least 30 s (`crowdsec::open`).
    let deadline = Duration::from_secs(30);
    let failures = [
        (Stream::Status(500), "500", 2, Duration::ZERO),
        (Stream::Status(403), "403", 2, Duration::ZERO),
        (Stream::Html, "decision stream", 2, Duration::ZERO),
        (Stream::Oversized, "reading the answer", 2, Duration::ZERO),
        // The deadline bounds one: the wait is that, and patience beyond it.
        (Stream::Silent, "no answer within", 1, deadline),
    ];
    for (mode, says, intervals, known) in failures {
        bench.api.answer_stream_with(mode);
        let before = bench.crowdsec()["sync_errors"].as_u64().unwrap();
        let what = format!("{intervals} failed pulls ({mode:?})");
        let stale = wait::until_beyond(known, &what, || {
            let c = bench.crowdsec();
            let errors = c["sync_errors"].as_u64().unwrap();
            if errors >= before + intervals { Ok(c) } else { Err(c.to_string()) }
        });
        let error = stale["error"].as_str().unwrap_or("");
        assert!(error.contains(says), "{mode:?}: {stale}");
        assert!(!error.contains(KEY), "{mode:?}: {stale}");
        assert!(stale["failing_since_ms"].is_u64(), "{mode:?}: {stale}");
        assert_eq!(stale["decisions"], json!({"cscli": 1}), "{mode:?}");
        assert!(bench.sg.drops(&a, &bench.pbx, OPTIONS, "decision"), "{mode:?}");
        assert!(bench.sg.arrives(&bystander, &bench.pbx, OPTIONS), "{mode:?}");
    }
    let full_pulls = || {
        bench
            .api
            .requests_to("/v1/decisions/stream")
            .iter()
            .filter(|r| r.path.contains("startup=true"))
            .count()
    };
    let before = full_pulls();
    bench.api.answer_stream_with(Stream::Decisions);
    // A silent pull may still be waiting out its deadline.
    wait::until_beyond(deadline, "the pulls to succeed again", || {
        let c = bench.crowdsec();
        if c["failing_since_ms"].is_null() { Ok(()) } else { Err(c.to_string()) }
    });
    assert!(full_pulls() > before, "the first good pull after failures is a full one");
    assert!(bench.sg.drops(&a, &bench.pbx, OPTIONS, "decision"));
    let mut run = bench.run.take().unwrap();
    run.signal(libc::SIGTERM);
    let log = String::from_utf8_lossy(&run.wait_exit().stderr).into_owned();
    assert!(log.contains("crowdsec"), "{log}");
    assert!(!log.contains(KEY), "the key in the log: {log}");
}
