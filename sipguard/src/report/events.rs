//! Incident records from the kernel's ring buffer, decoded into the JSON Lines `run` prints
//! (and appends to `--events-file`): the log an admin hands to a provider or the authorities.

use std::net::IpAddr;

use anyhow::Context as _;
use aya::maps::{Map, MapData, RingBuf};
use serde_json::{Value, json};
use sipguard_common::{
    behaviour::Rule,
    counters::Reason,
    events::{
        EV_BANNED, EV_MONITOR, EV_TCP, EV_UA_TRUNCATED, EV_VERIFIED, Event, REASON_BEHAVIOUR,
    },
    inspect::SIG_CAPACITY,
    maps as names,
    sip::Method,
    sources::NO_SIG,
    trust::Withheld,
};
use tokio::io::unix::AsyncFd;

use crate::{
    kernel::{maps::PinnedMaps, pin::PinLayout, sys},
    state::{bans, sigset},
};

/// Reads records as the kernel submits them.
pub struct EventStream {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Signature names by slot, refreshed when a record names an unknown slot.
    names: Vec<Option<String>>,
}

impl EventStream {
    pub fn open(layout: &PinLayout) -> anyhow::Result<Self> {
        let path = layout.map(names::EVENTS);
        let data =
            MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        let ring =
            RingBuf::try_from(Map::RingBuf(data)).context("the event map is not a ring buffer")?;
        // SAFETY: the ring buffer owns its descriptor, which stays open and unchanged for as
        // long as the AsyncFd (which owns the ring buffer) lives.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("watching the event ring buffer: {e}"))?;
        Ok(Self { ring, names: vec![None; SIG_CAPACITY as usize] })
    }

    /// Waits for records and returns them decoded.
    pub async fn next_batch(&mut self, maps: &PinnedMaps) -> anyhow::Result<Vec<Value>> {
        let mut guard = self.ring.readable_mut().await.context("waiting for events")?;
        let mut raw = Vec::new();
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<Event>() {
                // SAFETY: the kernel wrote a whole Event (size checked); read unaligned.
                raw.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
            }
        }
        guard.clear_ready();
        if raw.iter().any(|e| {
            e.reason != REASON_BEHAVIOUR
                && e.sig != NO_SIG
                && self.names.get(usize::from(e.sig)).is_none_or(Option::is_none)
        }) {
            self.names = vec![None; SIG_CAPACITY as usize];
            for (slot, sig) in sigset::installed(maps)? {
                self.names[usize::from(slot)] = Some(sig.name);
            }
        }
        raw.iter().map(|e| Ok(decode(e, &self.names, protected_destination(maps, e)?))).collect()
    }
}

/// Everything in the ring buffer right now, decoded (tests and one-shot readers).
pub fn drain(layout: &PinLayout, maps: &PinnedMaps) -> anyhow::Result<Vec<Value>> {
    let path = layout.map(names::EVENTS);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut ring =
        RingBuf::try_from(Map::RingBuf(data)).context("the event map is not a ring buffer")?;
    let mut names = vec![None; SIG_CAPACITY as usize];
    for (slot, sig) in sigset::installed(maps)? {
        names[usize::from(slot)] = Some(sig.name);
    }
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<Event>() {
            // SAFETY: as in `next_batch`.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) };
            out.push(decode(&e, &names, protected_destination(maps, &e)?));
        }
    }
    Ok(out)
}

fn reason_name(code: u8) -> &'static str {
    if code == REASON_BEHAVIOUR {
        return "behaviour";
    }
    Reason::ALL.iter().find(|r| **r as u8 == code).map_or("unknown", |r| r.name())
}

/// The User-Agent as seen: leading blanks and the line end trimmed, invalid UTF-8 replaced.
fn user_agent(e: &Event) -> Option<String> {
    if e.ua_len == 0 {
        return None;
    }
    let raw = &e.user_agent[..usize::from(e.ua_len).min(e.user_agent.len())];
    let text = String::from_utf8_lossy(raw);
    Some(text.trim_start_matches([' ', '\t']).trim_end_matches(['\r', '\n']).to_owned())
}

/// The protected destination an event's packet was judged for, looked up when the record is
/// read (a destination changed in the milliseconds between would be named as it is now).
fn protected_destination(
    maps: &PinnedMaps,
    e: &Event,
) -> anyhow::Result<Option<(crate::cidr::Cidr, Option<String>)>> {
    if maps.config()?.has_policies == 0 {
        return Ok(None);
    }
    crate::state::protect::protecting(maps, bans::addr(&e.dst))
}

/// One record as a JSON object.
#[must_use]
pub fn decode(
    e: &Event,
    sig_names: &[Option<String>],
    protected: Option<(crate::cidr::Cidr, Option<String>)>,
) -> Value {
    let time = humantime::format_rfc3339_millis(sys::wall_time(e.time_ns)).to_string();
    let source: IpAddr = bans::addr(&e.src);
    let destination: IpAddr = bans::addr(&e.dst);
    let method = Method::from_u32(u32::from(e.method)).map(Method::name);
    let behaviour = e.reason == REASON_BEHAVIOUR;
    let signature = (!behaviour && e.sig != NO_SIG).then(|| {
        sig_names
            .get(usize::from(e.sig))
            .cloned()
            .flatten()
            .unwrap_or_else(|| format!("#{}", e.sig))
    });
    let mut record = json!({
        "type": "event",
        "time": time,
        "reason": reason_name(e.reason),
        "signature": signature,
        "source": source,
        "source_port": e.src_port,
        "destination": destination,
        "destination_port": e.dst_port,
        "protected_destination": protected.as_ref().map(|(c, _)| c.to_string()),
        "destination_name": protected.and_then(|(_, n)| n),
        "transport": if e.flags & EV_TCP != 0 { "tcp" } else { "udp" },
        "interface": sys::ifname(e.ifindex).unwrap_or_else(|| format!("ifindex {}", e.ifindex)),
        "method": method,
        "user_agent": user_agent(e),
        "user_agent_truncated": e.flags & EV_UA_TRUNCATED != 0,
        "banned": e.flags & EV_BANNED != 0,
        "ban_ttl_secs": if e.flags & EV_BANNED != 0 { Some(e.ban_ttl_secs) } else { None },
        "monitor": e.flags & EV_MONITOR != 0,
        "ban_withheld": Withheld::from_u8(e.withheld).map(Withheld::name),
        "verified": e.flags & EV_VERIFIED != 0,
    });
    if behaviour {
        let counts = e.behaviour_counts();
        record["rule"] = json!(Rule::from_u16(e.sig).map_or("unknown", Rule::name));
        record["counts"] = json!({
            "challenges": counts.challenges,
            "forbidden": counts.forbidden,
            "not_found": counts.not_found,
            "successes": counts.successes,
            "users": e.behaviour_users(),
        });
    }
    // How the source was proven: a TCP connection past its handshake, or (the response
    // program's `auth_failures`) refused attempts that answered its own challenges' nonces;
    // or nothing (one UDP packet, answers a forger can draw).
    record["proof"] = json!(if e.flags & EV_VERIFIED == 0 {
        "none"
    } else if behaviour && Rule::from_u16(e.sig) == Some(Rule::AuthFailures) {
        "nonce"
    } else {
        "tcp"
    });
    record
}

#[cfg(test)]
mod tests {
    use sipguard_common::{events::UA_BYTES, sources::v4_source};

    use super::*;

    /// The record of an svmap OPTIONS banned by the User-Agent signature (slot 3).
    fn signature_event() -> Event {
        let mut ua = [0u8; UA_BYTES];
        ua[..19].copy_from_slice(b" friendly-scanner\r\n");
        Event {
            time_ns: sys::monotonic_ns(),
            src: v4_source([198, 51, 100, 7]),
            dst: v4_source([192, 0, 2, 1]),
            ifindex: 1,
            src_port: 5070,
            dst_port: 5060,
            sig: 3,
            ua_len: 19,
            reason: Reason::Signature as u8,
            method: Method::Options as u8,
            flags: EV_BANNED,
            withheld: 0,
            ban_ttl_secs: 3600,
            user_agent: ua,
        }
    }

    #[test]
    fn records_decode_to_the_documented_fields() {
        let e = signature_event();
        let mut names = vec![None; 8];
        names[3] = Some("sipvicious-user-agent".to_owned());
        let v = decode(&e, &names, Some(("192.0.2.0/24".parse().unwrap(), Some("pbx".into()))));
        assert_eq!(v["protected_destination"], "192.0.2.0/24");
        assert_eq!(v["destination_name"], "pbx");
        assert_eq!(v["reason"], "signature");
        assert_eq!(v["signature"], "sipvicious-user-agent");
        assert_eq!(v["source"], "198.51.100.7");
        assert_eq!(v["method"], "OPTIONS");
        assert_eq!(v["user_agent"], "friendly-scanner");
        assert_eq!(v["banned"], true);
        assert_eq!(v["ban_ttl_secs"], 3600);
        assert_eq!(v["transport"], "udp");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("rule").is_none(), "only behaviour records name a rule");
        assert_eq!(v["proof"], "none");
        let tcp = decode(
            &Event { flags: signature_event().flags | EV_VERIFIED, ..signature_event() },
            &[],
            None,
        );
        assert_eq!(tcp["proof"], "tcp");
    }

    #[test]
    fn behaviour_records_name_the_rule_and_the_counts() {
        let tally = sipguard_common::behaviour::Tally {
            challenges: 21,
            forbidden: 2,
            not_found: 0,
            successes: 3,
        };
        let (first, second) = sipguard_common::events::pack_counts(&tally);
        let mut detail = [0u8; UA_BYTES];
        detail[..8].copy_from_slice(&first.to_le_bytes());
        detail[8..16].copy_from_slice(&second.to_le_bytes());
        detail[16..20].copy_from_slice(&7u32.to_le_bytes());
        let e = Event {
            sig: Rule::AuthFailures as u16,
            ua_len: 0,
            reason: REASON_BEHAVIOUR,
            method: sipguard_common::events::NO_METHOD,
            user_agent: detail,
            ..signature_event()
        };
        let v = decode(&e, &[], None);
        assert_eq!(v["reason"], "behaviour");
        assert_eq!(v["rule"], "auth_failures");
        assert_eq!(v["signature"], Value::Null);
        assert_eq!(v["user_agent"], Value::Null);
        assert_eq!(
            v["counts"],
            json!({"challenges": 21, "forbidden": 2, "not_found": 0, "successes": 3, "users": 7})
        );
        assert_eq!(v["proof"], "none");
        let own = decode(&Event { flags: e.flags | EV_VERIFIED, ..e }, &[], None);
        assert_eq!(own["proof"], "nonce", "refused attempts that answered its own nonces");
    }
}
