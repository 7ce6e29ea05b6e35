//! The Debian package's maintainer scripts against a real CrowdSec: Debian's `crowdsec`
//! 1.4.6 (offline, in a namespace of its own) and its real `cscli`, the way dpkg runs the
//! scripts into another root (`$DPKG_ROOT`, no chroot). The package's own build, install
//! and purge into an empty root are `cargo xtask test`'s package checks.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sipguard_tests::{cli::Sipguard, crowdsec::LocalApi, netns::Lan, wait};

const API: &str = "10.89.0.10";
const EDGE: &str = "10.89.0.1";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/debian").join(name)
}

/// A root for dpkg to install into, holding what the package unpacks before `postinst`
/// runs (the configuration directory), and a directory for the `PATH` the scripts see.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(sipguard_tests::unique("sgdeb"));
        std::fs::create_dir_all(dir.join("root/etc/sipguard")).unwrap();
        // The scripts see only the programs they use, and no CrowdSec of the host's.
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for tool in ["sh", "install", "date", "cat", "rm", "rmdir", "nsenter"] {
            let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} is missing"));
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
        Self { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    fn key_file(&self) -> PathBuf {
        self.root().join("etc/sipguard/lapi-bouncer.key")
    }

    fn name_file(&self) -> PathBuf {
        self.root().join("var/lib/sipguard/bouncer-name")
    }

    /// Puts a `cscli` on the scripts' `PATH`: the real one, run in the API's namespace
    /// with `config` (what `/etc/crowdsec/config.yaml` is to an installed CrowdSec).
    fn cscli(&self, api: &LocalApi, config: &Path) {
        let real = Path::new(sipguard_tests::crowdsec::ROOT).join("usr/bin/cscli");
        let wrapper = self.dir.join("bin/cscli");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec nsenter --net={} -- {} -c {} \"$@\"\n",
                api.ns_path().display(),
                real.display(),
                config.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Runs a maintainer script as dpkg does into this root, every program it starts
    /// traced (`strace -f`, arguments in full) into `trace`.
    fn maintainer(&self, name: &str, arg: &str, trace: &Path) -> Output {
        let path = self.dir.join("bin");
        let out = Command::new("/usr/bin/strace")
            .args(["-f", "-qq", "-e", "trace=execve", "-s", "65536", "-o"])
            .arg(trace)
            .arg("sh")
            .arg(script(name))
            .arg(arg)
            .env("DPKG_ROOT", self.root())
            .env("SIPGUARD_REGISTER_BOUNCER", "1")
            .env("PATH", path)
            .output()
            .expect("running strace");
        assert!(
            out.status.success(),
            "{name} {arg} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn bouncers(api: &LocalApi) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&api.cscli(&["bouncers", "list", "-o", "json"]))
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_package_registers_its_bouncer_with_a_local_crowdsec_and_purge_deletes_it() {
    let lan = Lan::new(&[("api", &format!("{API}/24")), ("edge", &format!("{EDGE}/24"))]);
    let api = LocalApi::start(&lan.hosts[0], format!("{API}:8080").parse().unwrap());
    let root = Root::new();
    let trace = root.dir.join("trace");

    // No CrowdSec on the host: nothing registered, nothing written, no complaint.
    let out = root.maintainer("postinst", "configure", &trace);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!root.key_file().exists() && !root.name_file().exists());

    // A cscli whose CrowdSec is not configured fails: the installation goes on, and says how
    // to register by hand.
    root.cscli(&api, &root.dir.join("no-such-config.yaml"));
    let out = root.maintainer("postinst", "configure", &trace);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("could not register") && said.contains("cscli bouncers add"), "{said}");
    assert!(!root.key_file().exists() && !root.name_file().exists());
    assert!(bouncers(&api).is_empty());

    // The real one: registered, the key in a file only root reads, and never on a command
    // line of any program the script started.
    root.cscli(&api, &api.dir.join("config.yaml"));
    let out = root.maintainer("postinst", "configure", &trace);
    let name = std::fs::read_to_string(root.name_file()).unwrap().trim().to_owned();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    let key = std::fs::read_to_string(root.key_file()).unwrap().trim().to_owned();
    assert!(key.len() >= 16, "{key:?}");
    let mode = std::fs::metadata(root.key_file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert!(traced.contains("bouncers\", \"add\""), "the trace saw cscli run: {traced}");
    assert!(!traced.contains(&key), "the key was an argument: {traced}");
    let registered = bouncers(&api);
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["name"], name.as_str());

    // The key is the bouncer's: sipguard pulls with it, and the API names it by its type.
    let sg = Sipguard::new(&lan.hosts[1]);
    let key_arg = root.key_file().display().to_string();
    let url = api.url();
    let run = sg.run(&[
        "-i",
        "eth0",
        "--stats-interval",
        "0",
        "--crowdsec-url",
        &url,
        "--crowdsec-key-file",
        &key_arg,
        "--crowdsec-interval",
        "1",
    ]);
    wait::until("a pull with the registered key", || {
        let crowdsec = sg.json(&["status", "--json"])["crowdsec"].clone();
        match crowdsec["syncs"].as_u64() {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(crowdsec.to_string()),
        }
    });
    drop(run);
    let seen = bouncers(&api);
    assert!(
        seen[0]["type"].as_str().is_some_and(|t| t.starts_with("sipguard-xdp-bouncer")),
        "{seen:?}"
    );

    // An upgrade (configure again) keeps the registration and its key.
    root.maintainer("postinst", "configure", &trace);
    assert_eq!(bouncers(&api).len(), 1);
    assert_eq!(std::fs::read_to_string(root.key_file()).unwrap().trim(), key);

    // A removal keeps it too; a purge deletes it, and the key with it.
    root.maintainer("postrm", "remove", &trace);
    assert_eq!(bouncers(&api).len(), 1);
    let out = root.maintainer("postrm", "purge", &trace);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    assert!(bouncers(&api).is_empty(), "{:?}", bouncers(&api));
    assert!(!root.key_file().exists() && !root.name_file().exists());
    assert!(!root.root().join("var/lib/sipguard").exists(), "purge removes the state directory");
}
