//! Running the packaged binary as its systemd unit does, where systemd is not PID 1: as root
//! with no new privileges and the unit's capability bounding set (`setpriv`).

/// The unit's `CapabilityBoundingSet`, lower case without `CAP_` (`setpriv`'s names).
#[must_use]
pub fn unit_capabilities() -> Vec<String> {
    // Compiled in: the kernel matrix runs the tests in a guest without the source tree.
    let unit = include_str!("../../packaging/debian/sipguard.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit bounds its capabilities");
    line.split_whitespace().map(|c| c.trim_start_matches("CAP_").to_lowercase()).collect()
}

/// `setpriv` as the unit runs sipguard: root, no new privileges, no inheritable
/// capabilities, the bounding set `caps`.
#[must_use]
pub fn setpriv(caps: &[String]) -> Vec<String> {
    let bounding = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    ["setpriv", "--no-new-privs", "--inh-caps=-all", &format!("--bounding-set={bounding}"), "--"]
        .map(String::from)
        .to_vec()
}
