//! What forged packets can and cannot do across the fleet (issue 27): a ban forged at one edge
//! does not cut a peer off at another, where it has standing; a ban a TCP connection proved
//! is enforced everywhere. Two edges with one Internet-facing interface each, a real Local
//! API, real `sipp` calls and a real `svmap` (`sipguard_tests::fleet`).

use sipguard_tests::{
    fleet::{EDGES, Fleet, PROBE, SCANNER, svmap, trunk_calls},
    frames::{scanner_probe, scanner_probe_text},
    netns::forge,
    wait,
};

/// Issue 27: packets forged at edge A with the address of a trunk that has standing at edge
/// B (its sipp calls through B completed) ban the trunk at A (A has one interface, so the
/// reverse path cannot tell), and A shares the ban, but as unproven (`sipguard_unproven`,
/// which other bouncers leave alone): B keeps its own judgement, and the trunk's calls
/// through B keep completing. A real svmap caught at A is still dropped by B, where it has
/// no standing.
#[test]
fn a_ban_forged_at_one_edge_does_not_cut_off_a_trunk_with_standing_at_another() {
    let fleet = Fleet::new();
    let interval = 1;
    let edges = [fleet.sharing_edge(0, interval), fleet.sharing_edge(1, interval)];
    let (trunk, b) = (SCANNER[2], &edges[1]);

    // The trunk calls through B with sipp, to a sipp PBX on B's other SIP port: the calls
    // complete, and their 200 OKs give the trunk standing at B.
    let b_host = &fleet.lan.hosts[2];
    let _uas = b_host.spawn(
        b_host.exec("sipp").args(["-sn", "uas", "-i", EDGES[1].0, "-p", "5061", "-nostdin"]),
    );
    b_host.wait_udp_bound_at(EDGES[1].0.parse().unwrap(), 5061);
    trunk_calls(&fleet, trunk, EDGES[1].0);
    let socket = fleet.scanner(trunk);
    assert!(b.sg.stats()["counters"]["standing_granted"].as_u64().unwrap() >= 1);

    // Probes forged with the trunk's address at A: banned there, and shared.
    let forged: Vec<Vec<u8>> = (0..5).map(|i| scanner_probe(trunk, EDGES[0].0, 7000 + i)).collect();
    assert_eq!(forge(&fleet.lan.hosts[3], forged), 5);
    let held = wait::until("edge B to hold the decision A shared", || {
        b.decisions()
            .into_iter()
            .find(|d| d["value"] == format!("{trunk}/32"))
            .ok_or_else(|| "not yet".to_owned())
    });
    assert_eq!(held["proven"], false, "{held}");
    assert_eq!(edges[0].sg.banned(), [trunk], "A banned the trunk on the forgeries' word");

    // B keeps its own judgement: the trunk's calls through B keep completing, and its
    // packets keep reaching B's PBX, each counted.
    trunk_calls(&fleet, trunk, EDGES[1].0);
    for i in 0..3 {
        let options =
            format!("OPTIONS sip:{} SIP/2.0\r\nCall-ID: ka{i}@{trunk}\r\n\r\n", EDGES[1].0);
        assert!(b.sg.arrives(&socket, b.pbx_for(trunk), options.as_bytes()), "keepalive {i}");
    }
    let stats = b.sg.stats();
    assert!(stats["counters"]["decisions_withheld_standing"].as_u64().unwrap() >= 3, "{stats}");
    assert_eq!(stats["reasons"]["decision"], 0, "{stats}");

    // A real svmap at A: shared the same way, and dropped by B, where it has no standing.
    svmap(&fleet, &[EDGES[0].0]);
    wait::until("edge B to hold the svmap's decision", || {
        let n = b.decisions().len();
        if n == 2 { Ok(()) } else { Err(format!("{n} decisions")) }
    });
    svmap(&fleet, &[EDGES[1].0]);
    assert!(b.sg.wait_reason("decision", 1) >= 1);
    assert!(b.sg.banned().is_empty(), "B banned nothing itself");

    // The store holds both of A's bans, each with a decision of sipguard's own type, which
    // a cs-firewall-bouncer on the same API does not enforce.
    let alerts: Vec<serde_json::Value> =
        serde_json::from_str(&fleet.api.cscli(&["alerts", "list", "-o", "json"])).unwrap();
    let ours: Vec<_> = alerts.iter().filter(|a| a["scenario"] == "sipguard/signature").collect();
    assert_eq!(ours.len(), 2, "one forged ban and one real, shared: {alerts:?}");
    let types: Vec<_> = fleet
        .api
        .cscli(&["decisions", "list", "-o", "json"])
        .matches("sipguard_unproven")
        .map(str::to_owned)
        .collect();
    assert_eq!(types.len(), 2, "both shared as unproven");
}

/// Issue 27: a ban proven by a TCP connection past its handshake is shared as a plain `ban`
/// and enforced by every edge, even on a party that has standing there: the scanner's
/// address registered through both edges, and the store held an unproven decision on it
/// (which neither enforced on it, for its standing), then it scanned A over TCP. That ban
/// proves more than the store held, so it is shared, not taken for an echo.
#[test]
fn a_tcp_proven_ban_is_enforced_by_every_edge_even_on_a_party_with_standing() {
    use std::io::{Read as _, Write as _};

    let fleet = Fleet::new();
    let edges = [fleet.sharing_edge(0, 1), fleet.sharing_edge(1, 1)];
    let (scanner, b) = (SCANNER[0], &edges[1]);
    let socket = fleet.scanner(scanner);
    edges[0].earn_standing(&socket, scanner);
    b.earn_standing(&socket, scanner);
    fleet.api.cscli(&["decisions", "add", "--ip", scanner, "--type", "sipguard_unproven"]);
    for e in &edges {
        wait::until("the unproven decision held", || {
            let held = e.decisions();
            if held.iter().any(|d| d["proven"] == false) {
                Ok(())
            } else {
                Err(format!("{held:?}"))
            }
        });
        assert!(e.sg.arrives(&socket, e.pbx_for(scanner), PROBE), "withheld for its standing");
    }

    // A's PBX over TCP; the scanner connects from its first address and sends its probe
    // once the handshake is done.
    let a_host = &fleet.lan.hosts[1];
    let pbx_addr = format!("{}:5060", EDGES[0].0);
    let listener = a_host.enter(move || std::net::TcpListener::bind(pbx_addr)).unwrap();
    let target = format!("{}:5060", EDGES[0].0);
    let mut conn = fleet.lan.hosts[3].enter(move || std::net::TcpStream::connect(target)).unwrap();
    let (mut accepted, from) = listener.accept().unwrap();
    assert_eq!(from.ip().to_string(), scanner, "the connection's source");
    let sport = conn.local_addr().unwrap().port();
    conn.write_all(scanner_probe_text(scanner, EDGES[0].0, sport).as_bytes()).unwrap();
    edges[0].sg.wait_reason("signature", 1);
    assert_eq!(edges[0].sg.banned(), [scanner]);
    // Dropped in A's driver: the probe never reached the PBX's socket. The drop counter has
    // moved, so the verdict is in: a read that does not wait finds nothing.
    accepted.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(!matches!(accepted.read(&mut buf), Ok(n) if n > 0), "the probe reached A's PBX");

    // Shared as proven, and B drops the scanner although it has standing there.
    wait::until("edge B to hold the decision A shared", || {
        b.decisions()
            .into_iter()
            .find(|d| d["value"] == format!("{scanner}/32") && d["proven"] == true)
            .ok_or_else(|| format!("{:?}", b.decisions()))
    });
    let withheld = b.sg.stats()["counters"]["decisions_withheld_standing"].clone();
    b.until(&socket, scanner, true);
    let stats = b.sg.stats();
    assert_eq!(stats["counters"]["decisions_withheld_standing"], withheld, "{stats}");
    assert!(b.sg.banned().is_empty(), "B banned nothing itself");
    let decisions = fleet.api.cscli(&["decisions", "list", "-o", "json"]);
    assert_eq!(decisions.matches("\"type\": \"ban\"").count(), 1, "{decisions}");
    assert_eq!(decisions.matches("\"type\": \"sipguard_unproven\"").count(), 1, "{decisions}");
}
