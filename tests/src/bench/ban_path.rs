//! What the trust checks cost (`sipguard_common::trust`). The way to a ban: a probe whose ban
//! is withheld pays them on every packet. The pass path: every packet that would pass meets
//! the reverse-path check (issue 27: a forged request must not reach the server, whose
//! answers would count against the party it names). Measured side by side with
//! `BPF_PROG_TEST_RUN`, interleaved rounds and medians, on a filter of its own in a namespace
//! of two interfaces (`inet`, the default route; `trunk`): the legitimate INVITE arrives on
//! `inet`, the way back to its source; the probe on `trunk`, which makes it forged.

use anyhow::Context as _;
use serde_json::json;
use sipguard_common::{config::Config, trust::ReversePath};

use super::{
    report::{Table, ns},
    testrun,
};
use crate::{
    corpus,
    frames::Frame,
    netns::two_sided_host,
    xdp::{TestFilter, XDP_DROP, XDP_PASS},
};

const PBX: &str = "198.51.100.1";
const SCANNER: &str = "203.0.113.99";
const CALLER: &str = "192.0.2.10";

/// The table: a probe dropped by its signature with bans off, with its ban withheld for the
/// source's standing, and withheld because the reverse path says the source is forged (the
/// kernel's FIB asked, then, on a host that does not forward, the route mirror); and a
/// legitimate INVITE with the check off and on (the pass path's cost of the check).
pub fn table(repeat: u32, rounds: u32) -> anyhow::Result<Table> {
    let (ns, inet, trunk) = two_sided_host(false);
    ns.enter(move || {
        testrun::pin_to_one_cpu()?;
        measure(repeat, rounds, inet, trunk)
    })
}

fn measure(repeat: u32, rounds: u32, inet: u32, trunk: u32) -> anyhow::Result<Table> {
    let mut f = TestFilter::new();
    f.judge_reverse_path();
    f.catalog();
    sipguard::state::routes::sync(&f.maps).context("mirroring the namespace's routes")?;
    let probe = Frame::udp(SCANNER, PBX, 5060)
        .payload(corpus::message("scanners", "svmap-options.sip"))
        .build();
    let invite = Frame::udp(CALLER, PBX, 5060)
        .payload(corpus::message("legit", "yealink-invite-sdp.sip"))
        .build();
    // The scanner's address earns standing the way a phone does: a 200 OK to its REGISTER.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {SCANNER}:5060;branch=z9hG4bK1\r\nFrom: <sip:1@{PBX}>;tag=1\r\nTo: <sip:1@{PBX}>;tag=2\r\nCall-ID: 1@x\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
    );
    let off = Config::default().with_reverse_path(ReversePath::Off);
    let configs = [
        ("bans off", off.with_ban_ttl(0), false),
        ("withheld: standing", off.with_standing(86_400), true),
        ("withheld: spoofed (FIB, then the mirror)", Config::default().with_standing(0), false),
    ];
    let turns = (rounds * 3).max(5);
    let repeat = (repeat / 5).max(1000);
    let mut table = Table::new(
        "The trust checks: on the way to a ban, and the reverse path on the pass path (ns per packet, side by side; medians of interleaved rounds)",
        &["message", configs[0].0, configs[1].0, configs[2].0, "dearer by (check on)"],
    );
    for (label, frame, expect, on) in [
        ("svmap OPTIONS (dropped; forged where the check is on)", &probe, XDP_DROP, trunk),
        ("legitimate INVITE (passed; its route back checked where on)", &invite, XDP_PASS, inet),
    ] {
        let mut medians = Vec::new();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
        for _ in 0..turns {
            for (i, (_, config, standing)) in configs.iter().enumerate() {
                f.set_config(*config);
                if *standing {
                    f.respond(&Frame::udp(PBX, SCANNER, 5060).payload(ok.as_bytes()).build());
                }
                samples[i]
                    .push(testrun::typical_on(f.program_fd(), frame, on, repeat, 1, expect)?.ns);
            }
        }
        for mut s in samples {
            s.sort_by(f64::total_cmp);
            medians.push(s[s.len() / 2]);
        }
        // Every run was judged the same way: no ban was made, or the next runs would have
        // measured the ban instead.
        anyhow::ensure!(sipguard::state::bans::list(&f.maps)?.is_empty(), "a ban was made");
        let dearer = medians[2] / medians[0] - 1.0;
        table.row(
            vec![
                label.to_owned(),
                ns(medians[0]),
                ns(medians[1]),
                ns(medians[2]),
                format!("{:+.1}%", dearer * 100.0),
            ],
            json!({"message": label, "bans_off_ns": medians[0], "standing_ns": medians[1], "check_on_ns": medians[2], "dearer_check_on": dearer}),
        );
    }
    Ok(table)
}
