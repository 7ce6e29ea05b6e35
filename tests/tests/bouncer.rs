//! The bouncer against a stand-in for the Local API (`sipguard_tests::stand_in`), for what
//! the real one in the fleet suite cannot answer: usage metrics (the real 1.4.6 lacks the
//! endpoint; `fleet.rs` checks that its 404 is taken as "unsupported").

use std::net::UdpSocket;

use serde_json::json;
use sipguard_tests::{
    cli::Sipguard,
    netns::PbxLink,
    stand_in::{Request, StandInApi},
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

/// Usage metrics in CrowdSec's shape: the packets each origin's decisions dropped, reported
/// once each however the windows fall and however many reports fail, the packets judged, the
/// decisions in force, under the bouncer's key and User-Agent.
#[test]
fn usage_metrics_report_each_drop_once_by_origin_across_failed_reports() {
    let link = PbxLink::new();
    let api = StandInApi::start(
        &link.pbx,
        json!([
            {"id": 1, "origin": "cscli", "scenario": "manual", "scope": "Ip", "type": "ban",
             "value": PbxLink::PEER_A_V4, "duration": "1h"},
            {"id": 2, "origin": "CAPI", "scenario": "crowdsecurity/ssh-bf", "scope": "Ip",
             "type": "ban", "value": PbxLink::PEER_B_V4, "duration": "1h"},
        ]),
    );
    let dir = std::env::temp_dir().join(sipguard_tests::unique("sgusage"));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("bouncer.key");
    std::fs::write(&key, "stand-in-bouncer-key-0123456789\n").unwrap();
    let sg = Sipguard::new(&link.pbx);
    let url = api.url();
    let _run = sg.run(&[
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
    let (a, b) = (
        link.peer.udp(&format!("{}:0", PbxLink::PEER_A_V4)),
        link.peer.udp(&format!("{}:0", PbxLink::PEER_B_V4)),
    );
    wait::until("both decisions enforced", || {
        let n = sg.json(&["status", "--json"])["crowdsec"]["decisions"].clone();
        if n == json!({"CAPI": 1, "cscli": 1}) { Ok(()) } else { Err(n.to_string()) }
    });
    send(&sg, &a, &pbx, 5);
    send(&sg, &b, &pbx, 3);
    let reports = wait::until("the reports to hold the eight drops", || {
        let r = answered(&api, 201);
        let seen = (total(&r, "dropped", Some("cscli")), total(&r, "dropped", Some("CAPI")));
        if seen == (5, 3) { Ok(r) } else { Err(format!("{seen:?}")) }
    });
    let last = reports.last().unwrap();
    assert_eq!(last.header("x-api-key"), Some("stand-in-bouncer-key-0123456789"));
    let agent = last.header("user-agent").unwrap();
    assert!(agent.starts_with("sipguard-xdp-bouncer/"), "{agent}");
    let component = &last.json()["remediation_components"][0];
    assert_eq!(component["type"], "sipguard-xdp-bouncer", "{component}");
    assert!(component["metrics"][0]["meta"]["window_size_seconds"].as_u64().unwrap() >= 1);
    assert_eq!(total(std::slice::from_ref(last), "active_decisions", Some("cscli")), 1);
    assert_eq!(total(std::slice::from_ref(last), "active_decisions", Some("CAPI")), 1);
    assert!(total(&reports, "processed", None) >= 8, "every drop was judged");
    let usage = sg.json(&["status", "--json"])["crowdsec"]["usage_metrics"].clone();
    assert_eq!(usage["last"], "sent", "{usage}");

    // The API fails for a while: the drops meanwhile wait, carried by each refused report,
    // and come in the next report it takes, once.
    api.answer_usage_with(500);
    wait::until("a report refused", || {
        let usage = sg.json(&["status", "--json"])["crowdsec"]["usage_metrics"].clone();
        if usage["last"] == "failed" { Ok(()) } else { Err(usage.to_string()) }
    });
    send(&sg, &a, &pbx, 2);
    wait::until("a refused report to carry the two drops", || {
        let refused = answered(&api, 500);
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
        let taken = answered(&api, 201);
        let n = total(&taken, "dropped", Some("cscli"));
        if n == 7 { Ok(taken.len()) } else { Err(format!("cscli drops taken: {n}")) }
    });
    wait::until("one more report taken", || {
        let n = answered(&api, 201).len();
        if n > taken { Ok(()) } else { Err(format!("{n} taken")) }
    });
    let all = answered(&api, 201);
    assert_eq!(
        (total(&all, "dropped", Some("cscli")), total(&all, "dropped", Some("CAPI"))),
        (7, 3),
        "each drop reported once"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The usage reports the stand-in answered with `status`, in order.
fn answered(api: &StandInApi, status: u16) -> Vec<Request> {
    api.requests_to("/v1/usage-metrics").into_iter().filter(|r| r.status == status).collect()
}
