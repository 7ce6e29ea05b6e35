//! Sharing: this host's bans, sent to the Local API as alerts of a registered machine, so
//! that every other bouncer of the fleet (sipguard or not) drops the scanner too.
//!
//! Only bans the trust checks stand behind are shared: a ban on a TCP connection past its
//! handshake, or one made while the reverse-path check is on (it passed that check, the
//! standing check and the budget). A forged packet must not ban a peer across the fleet.
//! A source a decision of the store already holds is not sent back. Alerts wait in a
//! bounded queue while the API is unreachable and are sent when it returns; what the queue
//! cannot hold is counted.

use std::{collections::VecDeque, net::IpAddr};

use hyper::Method;
use serde_json::{Value, json};

use sipguard_common::decisions::UNPROVEN_TYPE;

use super::http::{Auth, Client, Refused};

/// Alerts held while the API cannot take them.
pub const QUEUE_CAPACITY: usize = 4096;
/// Alerts per request.
const BATCH: usize = 100;

/// The scenario an alert names, per reason of the incident record.
#[must_use]
pub fn scenario(record: &Value) -> Option<&'static str> {
    Some(match record["reason"].as_str()? {
        "signature" => "sipguard/signature",
        "unknown_domain" => "sipguard/unknown-domain",
        "behaviour" => "sipguard/behaviour",
        "rate_limited" => "sipguard/rate-limit",
        _ => return None,
    })
}

/// Whether an incident record is a ban this host may share: made (not withheld, not in
/// monitor mode) and standing on evidence the trust checks verified.
#[must_use]
pub fn shareable(record: &Value, reverse_path_on: bool) -> bool {
    record["banned"] == true
        && record["monitor"] != true
        && (record["verified"] == true || reverse_path_on)
        && scenario(record).is_some()
}

/// Whether sharing `record` would only echo what the store holds: a live decision covers
/// its source (`cover`: `Some(proven)`) and is as strong as this ban. A ban with proof
/// (`tcp`, `nonce`) under another edge's unproven decision is news: shared, every edge then
/// enforces it even on a party with standing.
#[must_use]
pub fn echoes(cover: Option<bool>, record: &Value) -> bool {
    let proven_ban = record["proof"].as_str().is_some_and(|p| p != "none");
    match cover {
        None => false,
        Some(proven_decision) => proven_decision || !proven_ban,
    }
}

/// The alert for a shared ban: the source, the evidence (signature or rule, method,
/// User-Agent, interface) and a decision whose duration is the ban's.
#[must_use]
pub fn alert(record: &Value) -> Option<Value> {
    let scenario = scenario(record)?;
    let source: IpAddr = record["source"].as_str()?.parse().ok()?;
    let ttl = record["ban_ttl_secs"].as_u64()?;
    let time = record["time"].as_str()?;
    let evidence = record["signature"]
        .as_str()
        .map(|s| format!("signature {s}"))
        .or_else(|| record["rule"].as_str().map(|r| format!("rule {r}")))
        .unwrap_or_else(|| record["reason"].as_str().unwrap_or("").to_owned());
    let mut meta = vec![
        json!({"key": "source_ip", "value": source.to_string()}),
        json!({"key": "service", "value": "sip"}),
        json!({"key": "log_type", "value": "sipguard_ban"}),
        json!({"key": "evidence", "value": evidence}),
    ];
    for (key, field) in
        [("method", "method"), ("user_agent", "user_agent"), ("transport", "transport")]
    {
        if let Some(v) = record[field].as_str() {
            meta.push(json!({"key": key, "value": v}));
        }
    }
    // Only a proven ban is a plain `ban`, which any bouncer enforces; an unproven one goes as
    // sipguard's own type, which other bouncers leave alone and sipguard edges weigh against
    // their own standing of the source.
    let proof = record["proof"].as_str().unwrap_or("none");
    meta.push(json!({"key": "proof", "value": proof}));
    let kind = if proof == "none" { UNPROVEN_TYPE } else { "ban" };
    let method = record["method"].as_str().unwrap_or("a packet");
    Some(json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": format!("sipguard banned {source} for {ttl}s: {evidence} ({method})"),
        "events_count": 1,
        "start_at": time,
        "stop_at": time,
        "capacity": 0,
        "leakspeed": "0s",
        "simulated": false,
        "remediation": true,
        "labels": null,
        "events": [{"timestamp": time, "meta": meta}],
        "source": {"scope": "Ip", "value": source.to_string(), "ip": source.to_string()},
        "decisions": [{
            "duration": format!("{ttl}s"),
            "origin": "crowdsec",
            "scenario": scenario,
            "scope": "Ip",
            "type": kind,
            "value": source.to_string(),
        }],
    }))
}

/// The sending half: a machine's login and the queue.
pub struct Sharer {
    machine: String,
    password: String,
    token: Option<String>,
    queue: VecDeque<Value>,
    pub sent: u64,
    pub dropped: u64,
}

impl Sharer {
    #[must_use]
    pub fn new(machine: String, password: String) -> Self {
        Self { machine, password, token: None, queue: VecDeque::new(), sent: 0, dropped: 0 }
    }

    /// Queues an alert; the oldest makes way (and is counted) when the queue is full.
    pub fn queue(&mut self, alert: Value) {
        if self.queue.len() >= QUEUE_CAPACITY {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(alert);
    }

    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    async fn login(&mut self, client: &Client) -> anyhow::Result<String> {
        let body = serde_json::to_vec(&json!({
            "machine_id": self.machine,
            "password": self.password,
            "scenarios": ["sipguard/signature", "sipguard/unknown-domain", "sipguard/behaviour", "sipguard/rate-limit"],
        }))?;
        let answer =
            client.send(Method::POST, "/v1/watchers/login", Auth::None, Some(body)).await?;
        let v: Value = serde_json::from_slice(&answer)
            .map_err(|e| anyhow::anyhow!("the login answer is not JSON: {e}"))?;
        let token =
            v["token"].as_str().ok_or_else(|| anyhow::anyhow!("the login answer has no token"))?;
        self.token = Some(token.to_owned());
        Ok(token.to_owned())
    }

    /// Sends what is queued, a batch at a time; stops at the first failure, keeping the rest.
    pub async fn flush(&mut self, client: &Client) -> anyhow::Result<()> {
        while !self.queue.is_empty() {
            let token = match self.token.clone() {
                Some(t) => t,
                None => self.login(client).await?,
            };
            let n = self.queue.len().min(BATCH);
            let batch: Vec<&Value> = self.queue.iter().take(n).collect();
            let body = serde_json::to_vec(&batch)?;
            match client.send(Method::POST, "/v1/alerts", Auth::Bearer(&token), Some(body)).await {
                Ok(_) => {
                    self.queue.drain(..n);
                    self.sent += n as u64;
                }
                Err(e) => {
                    // An expired token: log in again next time.
                    if e.downcast_ref::<Refused>()
                        .is_some_and(|r| r.status.as_u16() == 401 || r.status.as_u16() == 403)
                    {
                        self.token = None;
                    }
                    return Err(e.context("sharing bans"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Value {
        json!({
            "type": "event", "time": "2026-12-03T10:00:00.000Z", "reason": "signature",
            "signature": "sipvicious-user-agent", "source": "198.51.100.7", "method": "OPTIONS",
            "user_agent": "friendly-scanner", "transport": "udp", "banned": true,
            "ban_ttl_secs": 3600, "monitor": false, "verified": false, "ban_withheld": null,
            "proof": "none",
        })
    }

    #[test]
    fn a_ban_is_not_shared_back_unless_it_proves_more_than_the_store_holds() {
        let mut r = record();
        for proof in ["none", "tcp", "nonce"] {
            r["proof"] = json!(proof);
            assert!(!echoes(None, &r), "{proof}: nothing covers it");
            assert!(echoes(Some(true), &r), "{proof}: a proven decision holds it already");
        }
        r["proof"] = json!("none");
        assert!(echoes(Some(false), &r), "unproven under unproven: an echo");
        for proof in ["tcp", "nonce"] {
            r["proof"] = json!(proof);
            assert!(!echoes(Some(false), &r), "{proof} under an unproven decision is news");
        }
    }

    #[test]
    fn only_bans_the_trust_checks_stand_behind_are_shared() {
        let r = record();
        assert!(shareable(&r, true));
        assert!(!shareable(&r, false), "no reverse path and no handshake: not verified");
        let mut tcp = r.clone();
        tcp["verified"] = json!(true);
        assert!(shareable(&tcp, false));
        let mut withheld = r.clone();
        withheld["banned"] = json!(false);
        withheld["ban_withheld"] = json!("standing");
        assert!(!shareable(&withheld, true));
        let mut monitor = r;
        monitor["monitor"] = json!(true);
        assert!(!shareable(&monitor, true));
    }

    #[test]
    fn an_alert_carries_the_evidence_and_a_decision_of_the_ban_ttl() {
        let a = alert(&record()).unwrap();
        assert_eq!(a["scenario"], "sipguard/signature");
        assert_eq!(a["source"]["value"], "198.51.100.7");
        assert_eq!(a["decisions"][0]["duration"], "3600s");
        assert_eq!(a["decisions"][0]["type"], UNPROVEN_TYPE, "one UDP packet proves nothing");
        assert_eq!(a["decisions"][0]["scope"], "Ip");
        let meta = a["events"][0]["meta"].as_array().unwrap();
        assert!(meta.contains(&json!({"key": "user_agent", "value": "friendly-scanner"})));
        assert!(
            meta.contains(&json!({"key": "evidence", "value": "signature sipvicious-user-agent"}))
        );
        let mut behaviour = record();
        behaviour["reason"] = json!("behaviour");
        behaviour["signature"] = Value::Null;
        behaviour["rule"] = json!("auth_failures");
        let b = alert(&behaviour).unwrap();
        assert_eq!(b["scenario"], "sipguard/behaviour");
        assert!(b["message"].as_str().unwrap().contains("rule auth_failures"));
    }

    #[test]
    fn only_a_proven_ban_is_shared_as_a_plain_ban() {
        for (proof, kind) in [("tcp", "ban"), ("nonce", "ban"), ("none", UNPROVEN_TYPE)] {
            let mut r = record();
            r["proof"] = json!(proof);
            let a = alert(&r).unwrap();
            assert_eq!(a["decisions"][0]["type"], kind, "{proof}");
            let meta = a["events"][0]["meta"].as_array().unwrap();
            assert!(meta.contains(&json!({"key": "proof", "value": proof})), "{proof}");
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let mut s = Sharer::new("m".into(), "p".into());
        for i in 0..QUEUE_CAPACITY + 3 {
            s.queue(json!(i));
        }
        assert_eq!((s.queued(), s.dropped), (QUEUE_CAPACITY, 3));
        assert_eq!(s.queue.front(), Some(&json!(3)));
    }
}
