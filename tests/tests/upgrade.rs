//! Pin directories left by an earlier version, through the real binary: a map whose entries
//! the programs rebuild from traffic (`sipguard_common::maps::REBUILT_FROM_TRAFFIC`) and
//! whose shape changed is replaced when the new version loads over a running filter; any
//! other map of another shape refuses the load in words, and a failed command (a refused
//! load, or an attach that fails after the load) leaves the running filter and every pin as
//! they were.

use std::process::Command;

use sipguard_common::maps as names;
use sipguard_tests::{
    cli::Sipguard,
    netns::{PbxLink, run_ok},
};

const OPTIONS: &[u8] = b"OPTIONS sip:100@10.77.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.0.2:5060\r\nContent-Length: 0\r\n\r\n";

/// The value size of the map pinned at `path`.
fn value_size(path: &str) -> u64 {
    let out = run_ok(Command::new("bpftool").args(["-j", "map", "show", "pinned", path]));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool's JSON");
    info["bytes_value"].as_u64().expect("a value size")
}

/// Replaces the map pinned at `path` by an empty one of type `kind` and the given sizes, as
/// an earlier version would have made it.
fn pin_older(path: &str, kind: &str, key: u32, value: u32, name: &str) {
    std::fs::remove_file(path).expect("unpinning the current map");
    run_ok(Command::new("bpftool").args([
        "map",
        "create",
        path,
        "type",
        kind,
        "key",
        &key.to_string(),
        "value",
        &value.to_string(),
        "entries",
        "1024",
        "name",
        name,
    ]));
}

#[test]
fn an_older_shape_of_a_map_rebuilt_from_traffic_is_replaced_and_any_other_refuses() {
    let link = PbxLink::new();
    let pbx = link.pbx.udp("10.77.0.1:5060");
    let blocked = link.peer.udp("10.77.0.2:0");
    let sg = Sipguard::new(&link.pbx);
    sg.ok(&["attach", "-i", "pbx0", "--block", "10.77.0.2"]);
    assert!(sg.drops(&blocked, &pbx, OPTIONS, "blocklisted"));
    let challenges = format!("{}/maps/{}", sg.pin_dir, names::CHALLENGES);
    let current = names::spec_of(names::CHALLENGES).unwrap().value_size;

    // The version before this one kept challenges in 56 bytes a party, and a bouncer's
    // report without its usage metrics (`run` rewrites it whole at each pull).
    pin_older(&challenges, "lru_hash", 16, 56, "SG_CHALLENGES");
    let bouncer = format!("{}/maps/{}", sg.pin_dir, names::BOUNCER);
    let report = names::spec_of(names::BOUNCER).unwrap().value_size;
    pin_older(&bouncer, "array", 4, report - 24, "SG_BOUNCER");
    sg.ok(&["attach", "-i", "pbx0"]);
    assert_eq!(value_size(&challenges), u64::from(current), "replaced by this version's shape");
    assert_eq!(value_size(&bouncer), u64::from(report), "the report too");
    assert!(sg.json(&["status", "--json"])["crowdsec"].is_null(), "an empty report, as new");
    assert!(sg.drops(&blocked, &pbx, OPTIONS, "blocklisted"), "the lists survived the upgrade");

    // A load that succeeds over a set-aside map, then an attach that fails (native mode on
    // loopback, which has none): the command changes nothing, so the earlier map is put
    // back, not discarded with the load.
    pin_older(&challenges, "lru_hash", 16, 56, "SG_CHALLENGES");
    let err = sg.fail(&["attach", "-i", "pbx0", "-i", "lo", "--xdp-mode", "driver"]);
    assert!(err.contains("lo"), "the attach to loopback failed: {err}");
    assert_eq!(value_size(&challenges), 56, "the older challenges map was put back");
    assert!(!std::path::Path::new(&format!("{challenges}_reshaped")).exists());
    assert!(sg.drops(&blocked, &pbx, OPTIONS, "blocklisted"), "the running filter is untouched");

    // A map that holds configuration (the declared domains) in another shape refuses the
    // load, and the map set aside meanwhile is put back: nothing changed.
    let domains = format!("{}/maps/{}", sg.pin_dir, names::DOMAINS);
    let spec = names::spec_of(names::DOMAINS).unwrap();
    pin_older(&domains, "hash", spec.key_size, spec.value_size + 8, "SG_DOMAINS");
    let err = sg.fail(&["attach", "-i", "pbx0"]);
    assert!(err.contains("incompatible sipguard version") && err.contains("SG_DOMAINS"), "{err}");
    assert!(err.lines().count() <= 4, "a few lines: {err}");
    assert_eq!(value_size(&challenges), 56, "the older challenges map was put back");
    assert!(!std::path::Path::new(&format!("{challenges}_reshaped")).exists());
    assert!(sg.drops(&blocked, &pbx, OPTIONS, "blocklisted"), "the running filter is untouched");
}
