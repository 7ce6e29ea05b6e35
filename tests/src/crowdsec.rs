//! A real CrowdSec Local API for the fleet tests: Debian's `crowdsec` 1.4.6, unpacked by
//! `cargo xtask setup` into [`ROOT`], started in a test's namespace with sqlite and no
//! Central API (`-no-cs`, no online credentials: it never tries the network), driven with the
//! real `cscli`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use crate::{
    netns::{ChildGuard, Netns},
    wait,
};

/// Where `cargo xtask setup` unpacks the package (xtask's `setup::CROWDSEC_ROOT`).
pub const ROOT: &str = "/opt/sipguard-tests/crowdsec";

/// The machine `cscli` acts as (it needs one to add and delete decisions).
const CSCLI_MACHINE: &str = "sipguard-tests";

/// One Local API, in `ns` on `listen`, with its own directory (removed on drop).
pub struct LocalApi {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// The CA that signed the API's certificate, when it serves TLS.
    pub ca: Option<PathBuf>,
    ns_path: PathBuf,
    process: Option<ChildGuard>,
}

fn bin(name: &str) -> PathBuf {
    let p = Path::new(ROOT).join("usr/bin").join(name);
    assert!(p.exists(), "{} is missing: run `cargo xtask setup`", p.display());
    p
}

impl LocalApi {
    /// Writes a configuration and starts the API; returns once it answers.
    pub fn start(ns: &Netns, listen: SocketAddr) -> Self {
        Self::start_with(ns, listen, false)
    }

    /// The same over TLS, with a certificate for its address signed by a CA of its own
    /// ([`LocalApi::ca`]).
    pub fn start_tls(ns: &Netns, listen: SocketAddr) -> Self {
        Self::start_with(ns, listen, true)
    }

    fn start_with(ns: &Netns, listen: SocketAddr, tls: bool) -> Self {
        let dir = std::env::temp_dir().join(crate::unique("sgcs"));
        for sub in ["data", "hub", "notifications", "plugins"] {
            std::fs::create_dir_all(dir.join(sub)).expect("creating the API's directory");
        }
        let etc = Path::new(ROOT).join("etc/crowdsec");
        for file in ["profiles.yaml", "simulation.yaml"] {
            std::fs::copy(etc.join(file), dir.join(file)).expect("copying the package's config");
        }
        let scheme = if tls { "https" } else { "http" };
        std::fs::write(
            dir.join("local_api_credentials.yaml"),
            format!("url: {scheme}://{listen}\n"),
        )
        .expect("writing the client credentials");
        let ca = tls.then(|| certificates(&dir, listen.ip()));
        std::fs::write(dir.join("config.yaml"), config(&dir, listen, tls))
            .expect("writing config.yaml");
        let mut api = Self { dir, listen, ca, ns_path: ns.path(), process: None };
        api.restart();
        // cscli adds and deletes decisions as a machine of its own.
        api.cscli(&[
            "machines",
            "add",
            CSCLI_MACHINE,
            "-p",
            "sipguard-tests-password",
            "-f",
            &api.dir.join("local_api_credentials.yaml").display().to_string(),
            "--url",
            &api.url(),
            "--force",
        ]);
        api
    }

    /// The namespace the API runs in (`nsenter --net=`).
    pub fn ns_path(&self) -> &Path {
        &self.ns_path
    }

    fn in_ns(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns_path.display())).arg("--").arg(program);
        c
    }

    /// (Re)starts the process on the same database; waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        let mut cmd = self.in_ns(&bin("crowdsec"));
        cmd.arg("-c").arg(self.dir.join("config.yaml")).arg("-no-cs");
        let mut child = ChildGuard::spawn(&mut cmd);
        child.pump_output();
        let listen = self.listen;
        let ns = self.ns_path.clone();
        wait::until("the Local API to listen", || {
            let probe = Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args(["--", "ss", "-Hltn"])
                .output()
                .map_err(|e| e.to_string())?;
            if String::from_utf8_lossy(&probe.stdout).contains(&listen.to_string()) {
                Ok(())
            } else if child.exited() {
                panic!("crowdsec exited: {}", String::from_utf8_lossy(&child.wait_exit().stdout))
            } else {
                Err("not listening".into())
            }
        });
        self.process = Some(child);
    }

    /// Kills the process (the database stays).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// Runs `cscli ARGS` against this API; it must succeed.
    pub fn cscli(&self, args: &[&str]) -> String {
        let out = self.cscli_output(args);
        assert!(
            out.status.success(),
            "cscli {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cscli_output(&self, args: &[&str]) -> Output {
        let mut cmd = self.in_ns(&bin("cscli"));
        cmd.arg("-c").arg(self.dir.join("config.yaml")).args(args);
        cmd.output().expect("running cscli")
    }

    /// Registers a bouncer and writes its key to a file of this directory; returns the file.
    pub fn bouncer(&self, name: &str) -> PathBuf {
        // A key of the bouncer's name, long enough for the API's taste.
        let key = format!("{name:0<32}").replace(|c: char| !c.is_ascii_alphanumeric(), "0");
        self.cscli(&["bouncers", "add", name, "-k", &key]);
        let file = self.dir.join(format!("{name}.key"));
        std::fs::write(&file, format!("{key}\n")).expect("writing the key file");
        file
    }

    /// Registers a machine (for sharing); returns the file holding its password.
    pub fn machine(&self, name: &str, password: &str) -> PathBuf {
        let creds = self.dir.join(format!("{name}.yaml"));
        self.cscli(&[
            "machines",
            "add",
            name,
            "-p",
            password,
            "-f",
            &creds.display().to_string(),
            "--force",
        ]);
        let file = self.dir.join(format!("{name}.password"));
        std::fs::write(&file, format!("{password}\n")).expect("writing the password file");
        file
    }

    /// `http://ADDR:PORT`, or `https://` when it serves TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.ca.is_some() { "https" } else { "http" }, self.listen)
    }
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.stop();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A CA and a certificate for `ip` it signed (openssl, P-256); returns the CA's file.
fn certificates(dir: &Path, ip: std::net::IpAddr) -> PathBuf {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sipguard tests CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=lapi"]]
            .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("writing the extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    dir.join("ca.pem")
}

fn config(dir: &Path, listen: SocketAddr, tls: bool) -> String {
    let d = dir.display();
    let server_tls = if tls {
        format!("    tls:\n      cert_file: {d}/server.pem\n      key_file: {d}/server.key\n")
    } else {
        String::new()
    };
    // cscli is a client of the same API; it need not check the tests' own certificate.
    let client_tls = if tls { "    insecure_skip_verify: true\n" } else { "" };
    format!(
        "common:
  daemonize: false
  log_media: stdout
  log_level: info
config_paths:
  config_dir: {d}
  data_dir: {d}/data
  simulation_path: {d}/simulation.yaml
  hub_dir: {d}/hub
  index_path: {d}/hub/.index.json
  notification_dir: {d}/notifications
  plugin_dir: {d}/plugins
db_config:
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: true
api:
  client:
    credentials_path: {d}/local_api_credentials.yaml
{client_tls}  server:
    listen_uri: {listen}
    profiles_path: {d}/profiles.yaml
    trusted_ips: [127.0.0.1, {ip}]
{server_tls}prometheus:
  enabled: false
",
        ip = listen.ip()
    )
}
