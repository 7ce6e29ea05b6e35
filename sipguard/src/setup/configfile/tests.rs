//! The configuration file's tests: every key reaches its own field, what is left out takes
//! its default, the example file resolves in full, and errors name what is wrong.

use super::*;

fn parse(text: &str) -> anyhow::Result<Desired> {
    let file: File = from_toml(text)?;
    resolve(file, Path::new("/nonexistent"))
}

#[test]
fn a_minimal_file() {
    let d = parse("interfaces = [\"eth0\"]\n").unwrap();
    assert_eq!(d.interfaces, ["eth0"]);
    assert!(d.destinations.is_empty());
    assert!(d.signatures.len() > 20, "the catalog by default");
}

#[test]
fn errors_name_what_is_wrong() {
    let e = parse("interfaces = [\"eth0\"]\n[policy]\ndefault = \"maybe\"\n").unwrap_err();
    assert!(format!("{e:#}").contains("policy.default `maybe`"), "{e:#}");
    let e = parse("interfaces = [\"eth0\"]\n[[protect]]\naddress = \"10.0.0.1/8\"\n").unwrap_err();
    assert!(format!("{e:#}").contains("did you mean 10.0.0.0/8"), "{e:#}");
    let e = parse("interfaces = [\"eth0\"]\n[[protect]]\naddress = \"192.0.2.1\"\n[[protect]]\naddress = \"192.0.2.1\"\n").unwrap_err();
    assert!(format!("{e:#}").contains("listed twice"), "{e:#}");
    let e = parse("interfaces = [\"eth0\"]\nbogus = 1\n").unwrap_err();
    assert!(format!("{e:#}").contains("bogus"), "{e:#}");
    let e = parse(
        "interfaces = [\"eth0\"]\n[[signature]]\nname = \"x\"\nscope = \"nope\"\nprefix = \"y\"\n",
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("unknown scope"), "{e:#}");
    let e = parse("interfaces = [\"eth0\"]\n[block]\nfiles = [{ path = \"missing.txt\" }]\n")
        .unwrap_err();
    assert!(format!("{e:#}").contains("missing.txt"), "{e:#}");
}

#[test]
fn every_policy_key_reaches_its_own_field() {
    // Each value distinct, so a swapped or ignored field shows.
    let d = parse(
        "interfaces = [\"eth0\", \"eth1\"]\nsip_ports = [5070, 5080]\nsip_domains = [\"Sip.Example\"]\nxdp_mode = \"skb\"\n\
         [capacity]\nlists = 1001\ndestinations = 1002\nbehaviour = 1003\n\
         [policy]\ndefault = \"drop\"\nmode = \"monitor\"\nfragments = \"drop\"\nban_ttl = 11\n\
         rate_limit = 12\nrate_burst = 13\nbehaviour_window = 14\nauth_failures = 15\n\
         not_found = 16\nextension_scan = 17\nreverse_path = \"loose\"\nstanding = 18\n",
    )
    .unwrap();
    assert_eq!(d.interfaces, ["eth0", "eth1"]);
    let s = &d.setup.settings;
    assert_eq!(s.sip_ports, [5070, 5080]);
    assert_eq!(s.sip_domains.as_deref(), Some(&["sip.example".to_owned()][..]));
    assert_eq!(d.setup.xdp_mode, AttachMode::Skb);
    assert_eq!(
        (d.setup.capacity.lists, d.setup.capacity.destinations, d.setup.capacity.behaviour),
        (Some(1001), Some(1002), Some(1003))
    );
    let p = &s.policy;
    assert_eq!(p.default_action, Some(DefaultAction::Drop));
    assert_eq!(p.mode, Some(Mode::Monitor));
    assert_eq!(p.fragments, Some(FragmentAction::Drop));
    assert_eq!(
        (p.ban_ttl, p.rate_limit, p.rate_burst, p.standing),
        (Some(11), Some(12), Some(13), Some(18))
    );
    assert_eq!(
        (p.behaviour_window, p.auth_failures, p.not_found, p.extension_scan),
        (Some(14), Some(15), Some(16), Some(17))
    );
    assert_eq!(p.reverse_path, Some(ReversePath::Loose));
}

#[test]
fn what_the_file_leaves_out_takes_its_default() {
    use sipguard_common::behaviour;
    let d = parse("interfaces = [\"eth0\"]\n").unwrap();
    let s = &d.setup.settings;
    assert_eq!(s.sip_ports, sipguard_common::config::DEFAULT_SIP_PORTS);
    assert_eq!(s.sip_domains.as_deref(), Some(&[][..]), "no domains: the check is off");
    assert_eq!(d.setup.xdp_mode, AttachMode::default());
    let p = &s.policy;
    assert_eq!(p.default_action, Some(DefaultAction::Pass));
    assert_eq!(p.mode, Some(Mode::Enforce));
    assert_eq!(p.fragments, Some(FragmentAction::Pass));
    assert_eq!(p.ban_ttl, Some(sipguard_common::config::DEFAULT_BAN_TTL_SECS));
    assert_eq!((p.rate_limit, p.rate_burst), (Some(0), None));
    assert_eq!(p.behaviour_window, Some(behaviour::DEFAULT_WINDOW_SECS));
    assert_eq!(p.auth_failures, Some(behaviour::DEFAULT_AUTH_FAILURES));
    assert_eq!(p.not_found, Some(behaviour::DEFAULT_NOT_FOUND));
    assert_eq!(p.extension_scan, Some(behaviour::DEFAULT_EXTENSION_SCAN));
    assert_eq!(p.reverse_path, Some(ReversePath::Strict));
    assert_eq!(p.standing, Some(sipguard_common::trust::DEFAULT_STANDING_SECS));
}

#[test]
fn the_example_file_resolves_in_full() {
    let dir = std::env::temp_dir().join(format!("sg-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sipguard.toml");
    std::fs::write(&path, include_str!("../../../../docs/sipguard.example.toml")).unwrap();
    // The APIBAN response the example's blocklist names.
    std::fs::write(dir.join("apiban.json"), r#"{"ipaddress": ["192.0.2.200"], "ID": "100"}"#)
        .unwrap();
    let desired = load(&path);
    std::fs::remove_dir_all(&dir).ok();
    let d = desired.unwrap();
    let cidrs = |v: &[&str]| -> Vec<Cidr> { v.iter().map(|c| c.parse().unwrap()).collect() };
    assert_eq!(d.interfaces, ["eth0"]);
    let settings = &d.setup.settings;
    assert_eq!(settings.sip_ports, [5060, 5061]);
    assert_eq!(settings.sip_domains.as_deref(), Some(&["sip.provider.example".to_owned()][..]));
    assert_eq!(d.setup.xdp_mode, AttachMode::Auto);
    assert_eq!(d.setup.capacity.lists, Some(2_097_152));
    assert_eq!(d.setup.capacity.behaviour, Some(65_536));
    let policy = &settings.policy;
    assert_eq!(policy.default_action, Some(DefaultAction::Off));
    assert_eq!(
        (policy.ban_ttl, policy.rate_burst, policy.extension_scan),
        (Some(3600), Some(20), Some(40))
    );
    assert_eq!(d.allow, cidrs(&["192.0.2.10"]));
    assert_eq!(d.block, cidrs(&["192.0.2.200", "198.51.100.0/24"]), "entries and the file");
    assert_eq!(d.destinations.len(), 2);
    let (cust_a, cust_b) = (&d.destinations[0], &d.destinations[1]);
    assert_eq!(
        (cust_a.name.as_deref(), cust_a.default_action),
        (Some("customer-a"), DefaultAction::Drop)
    );
    assert_eq!(cust_a.allow, cidrs(&["192.0.2.0/28"]));
    assert_eq!(
        (cust_b.name.as_deref(), cust_b.default_action),
        (Some("customer-b"), DefaultAction::Pass)
    );
    assert_eq!(cust_b.block, cidrs(&["2001:db8:bad::/48"]));
    assert_eq!(cust_b.sip_domains, ["pbx.customer-b.example"]);
    assert!(d.signatures.iter().any(|sig| sig.name == "local-bad-bot"));
    assert!(d.signatures.len() > 20, "and the catalog");
    assert_eq!(d.metrics.as_deref(), Some("127.0.0.1:9478"));
    assert!(d.crowdsec.is_none(), "the [crowdsec] table is commented out");
}
