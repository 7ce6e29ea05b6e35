//! A real registrar for the behaviour tests: Kamailio from Debian, in a network namespace,
//! with digest authentication for 50 users (100 to 149, password `pw<user>`) and a small dial
//! plan: known extensions ring the phones (a sipp UAS), unknown ones get 404, international
//! prefixes 403; calls from the trunk need no authentication. Also the sipp scenarios of the
//! phones, the trunk and the attackers, and a copy of SIPVicious with every tell of the
//! built-in catalog rewritten, as an attacker that looks like a phone.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::netns::{ChildGuard, Netns};

/// Where on the registrar's address its carrier answers the calls to numbers it routes
/// there: a sipp UAS the test starts.
pub const CARRIER_PORT: &str = "5071";

/// The users Kamailio knows.
pub const USERS: std::ops::Range<u32> = 100..150;

/// Kamailio on `addr:5060` (UDP and TCP) in `ns`, routing calls for known extensions to
/// `phones` (a SIP UAS address) and taking calls from `trunk` without authentication.
pub struct Registrar {
    pub dir: PathBuf,
    _kamailio: ChildGuard,
}

impl Registrar {
    pub fn start(ns: &Netns, addr: &str, trunk: &str, phones: &str) -> Self {
        Self::start_on(ns, &[addr], trunk, phones)
    }

    /// [`Registrar::start`] listening on each of `addrs` (the first is its own address, where
    /// the carrier answers): a PBX with a trunk side and an internet side.
    pub fn start_on(ns: &Netns, addrs: &[&str], trunk: &str, phones: &str) -> Self {
        let dir = std::env::temp_dir().join(crate::unique("sgkam"));
        std::fs::create_dir_all(&dir).expect("creating the registrar's directory");
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, config(addrs, trunk, phones)).expect("writing kamailio.cfg");
        for (name, text) in SCENARIOS.iter() {
            std::fs::write(dir.join(name), text).expect("writing a sipp scenario");
        }
        let mut users = String::from("SEQUENTIAL\n");
        let mut wrong = String::from("SEQUENTIAL\n");
        for u in USERS {
            writeln!(users, "{u};[authentication username={u} password=pw{u}];").ok();
            writeln!(wrong, "{u};[authentication username={u} password=guess{u}];").ok();
        }
        std::fs::write(dir.join("users.csv"), users).expect("writing users.csv");
        std::fs::write(dir.join("wrong.csv"), wrong).expect("writing wrong.csv");
        let mut kamailio =
            ns.spawn(ns.exec("kamailio").args(["-DD", "-E", "-f"]).arg(&cfg).arg("-Y").arg(&dir));
        for addr in addrs {
            ns.wait_udp_bound_at(addr.parse().expect("an IPv4 address"), 5060);
        }
        assert!(!kamailio.exited(), "kamailio exited at once: {:?}", kamailio.wait_exit());
        Self { dir, _kamailio: kamailio }
    }

    /// A file of this registrar's directory (scenarios, injection files).
    #[must_use]
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn config(addrs: &[&str], trunk: &str, phones: &str) -> String {
    let listen = addrs.iter().fold(String::new(), |mut out, a| {
        writeln!(out, "listen=udp:{a}:5060\nlisten=tcp:{a}:5060").ok();
        out
    });
    KAMAILIO_CFG
        .replace("@LISTEN@\n", &listen)
        .replace("@ADDR@", addrs[0])
        .replace("@TRUNK@", trunk)
        .replace("@PHONES@", phones)
        .replace("@CARRIER@", CARRIER_PORT)
}

const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=1
log_stderror=yes
fork=yes
children=2
tcp_children=1
auto_aliases=no
@LISTEN@
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "htable.so"
loadmodule "auth.so"

modparam("usrloc", "db_mode", 0)
modparam("htable", "htable", "users=>size=8;")

event_route[htable:mod-init] {
    $var(i) = 100;
    while ($var(i) < 150) {
        $sht(users=>$var(i)) = "pw" + $var(i);
        $var(i) = $var(i) + 1;
    }
}

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    if (has_totag()) {
        # In-dialog requests of calls that reached the phones, or the carrier (whose address
        # their Request-URI names: its contact). The ACKs of the registrar's own refusals go
        # to the phones too, which ignore them.
        if ($rp != @CARRIER@) {
            $du = "sip:@PHONES@";
        }
        t_relay();
        exit;
    }
    if (is_method("ACK")) {
        exit;
    }
    if (is_method("OPTIONS")) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (is_method("REGISTER")) {
        route(REGISTRAR);
    }
    if (is_method("INVITE")) {
        route(CALL);
    }
    sl_send_reply("405", "Method Not Allowed");
    exit;
}

route[REGISTRAR] {
    if ($sht(users=>$tU) == $null) {
        sl_send_reply("404", "Not Found");
        exit;
    }
    if (!pv_www_authenticate("$td", "$sht(users=>$tU)", "0")) {
        www_challenge("$td", "0");
        exit;
    }
    if (!save("location")) {
        sl_reply_error();
    }
    exit;
}

route[CALL] {
    if ($si != "@TRUNK@") {
        if ($sht(users=>$fU) == $null) {
            sl_send_reply("403", "Forbidden");
            exit;
        }
        if (!pv_proxy_authenticate("$fd", "$sht(users=>$fU)", "0")) {
            proxy_challenge("$fd", "0");
            exit;
        }
        consume_credentials();
    }
    if ($rU =~ "^(\+|00|011)") {
        sl_send_reply("403", "International calls are not allowed");
        exit;
    }
    if ($rU =~ "^[0-9]{7,}$") {
        # A subscriber's number goes out to the carrier (a UAS of the test's on port 5071,
        # apart from the phones, to which the ACKs of refused calls are relayed): numbers
        # ending in 0 or 5 answer, those ending in 9 no longer exist (a dialer's list has
        # some), the rest are busy.
        if ($rU =~ "9$") {
            sl_send_reply("404", "Not Found");
            exit;
        }
        if ($rU =~ "[05]$") {
            $du = "sip:@ADDR@:@CARRIER@";
            t_relay();
            exit;
        }
        sl_send_reply("486", "Busy Here");
        exit;
    }
    if ($sht(users=>$rU) == $null) {
        sl_send_reply("404", "Not Found");
        exit;
    }
    $du = "sip:@PHONES@";
    t_relay();
    exit;
}
"#;

/// Registration: challenged, then answered with the injection file's credentials (field 1)
/// and accepted. With wrong credentials use `register_refused.xml`.
const REGISTER_HEAD: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[field0]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: UA
      Expires: 60
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[field0]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      [field1]
      Max-Forwards: 70
      User-Agent: UA
      Expires: 60
      Content-Length: 0

    ]]>
  </send>
"#;

/// An INVITE that expects a final `CODE` (then ACKs it): misdials and probes.
const REFUSED_CALL: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="refused call">
  <send retrans="500">
    <![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:FROM@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: UA
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="CODE"/>
  <send>
    <![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// Calls to subscribers' numbers (`PREFIX` and the call's number: distinct, seven digits or
/// more; the registrar's carrier, [`CARRIER_PORT`], answers 1 in 5, 1 in 10 is not found and
/// the rest are busy), each ending in a hang-up or the refusal's ACK. `CHALLENGE` is the challenge round of a caller that
/// authenticates every INVITE (empty for a trunk the registrar knows by its address).
const NUMBER_CALL: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="calls to numbers">
  <send retrans="500">
    <![CDATA[
      INVITE sip:PREFIX[call_number]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      To: <sip:PREFIX[call_number]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:FROM@[local_ip]:[local_port]>
      Max-Forwards: 70
      User-Agent: UA
      Content-Length: 0

    ]]>
  </send>
CHALLENGE  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="486" optional="true" next="busy"/>
  <recv response="404" optional="true" next="busy"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: SEQ ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 9 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" next="end"/>
  <label id="busy"/>
  <send>
    <![CDATA[
      ACK sip:PREFIX[call_number]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: SEQ ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"#;

/// The challenge round of [`NUMBER_CALL`] for an agent that authenticates its calls: the
/// 407, its ACK, and the INVITE again with the injection file's credentials (field 1).
const CHALLENGED: &str = r#"  <recv response="100" optional="true"/>
  <recv response="407" auth="true"/>
  <send>
    <![CDATA[
      ACK sip:PREFIX[call_number]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      INVITE sip:PREFIX[call_number]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:FROM@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      To: <sip:PREFIX[call_number]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 INVITE
      Contact: <sip:FROM@[local_ip]:[local_port]>
      [field1]
      Max-Forwards: 70
      User-Agent: UA
      Content-Length: 0

    ]]>
  </send>
"#;

/// A phone (UAS): rings, then declines (603: its user is away, or pressed "reject"); the ACK
/// ends the call, a missing one times out.
fn ring_decline() -> String {
    let reply = |status: &str| {
        format!(
            r"  <send>
    <![CDATA[
      SIP/2.0 {status}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="rings, then declines">
  <recv request="INVITE"/>
{}{}  <recv request="ACK" optional="true" timeout="1000" ontimeout="done"/>
  <label id="done"/>
</scenario>
"#,
        reply("180 Ringing"),
        reply("603 Decline")
    )
}

/// A desk phone's User-Agent, and the ones real attack tools borrow.
/// The SIP domain the registrar's phones use in `register_domain.xml`.
pub const DOMAIN: &str = "pbx.example.com";

pub const PHONE_UA: &str = "Yealink SIP-T46S 66.86.0.15";
pub const BRUTE_FORCER_UA: &str = "Cisco-SIPGateway/IOS-12.x";
pub const PROBER_UA: &str = "Z 5.2.28 rv2.8.68";

static SCENARIOS: std::sync::LazyLock<Vec<(&'static str, String)>> =
    std::sync::LazyLock::new(|| {
        let register = |ua: &str, last: &str| {
            format!("{}{last}</scenario>\n", REGISTER_HEAD.replace("UA", ua))
        };
        let refused = |from: &str, ua: &str, code: &str| {
            REFUSED_CALL.replace("FROM", from).replace("UA", ua).replace("CODE", code)
        };
        vec![
            (
                "register.xml",
                register(
                    PHONE_UA,
                    r#"  <recv response="200"/>
"#,
                ),
            ),
            // The same phone addressing the registrar by its SIP domain, not its address.
            (
                "register_domain.xml",
                register(
                    PHONE_UA,
                    r#"  <recv response="200"/>
"#,
                )
                .replace("[remote_ip]", DOMAIN),
            ),
            // A phone with a typo in its password: challenged again after answering.
            (
                "register_refused.xml",
                register(
                    PHONE_UA,
                    r#"  <recv response="401"/>
"#,
                ),
            ),
            // The brute forcer that calls itself a Cisco gateway.
            (
                "brute_force.xml",
                register(
                    BRUTE_FORCER_UA,
                    r#"  <recv response="401"/>
"#,
                ),
            ),
            ("misdial.xml", refused("trunk", "Asterisk PBX 18.10.0", "404")),
            // A desk phone that rings at every INVITE, then declines: what a ghost call meets.
            ("ring_decline.xml", ring_decline()),
            // A toll-fraud prober: an extension's name, no password, international numbers.
            ("probe.xml", refused("100", PROBER_UA, "407")),
            // A call centre's agents (each authenticates every call) and an outbound dialer
            // on the trunk (known by its address), calling subscribers' numbers.
            (
                "agent_calls.xml",
                NUMBER_CALL
                    .replace("CHALLENGE", CHALLENGED)
                    .replace("SEQ", "2")
                    .replace("PREFIX", "0301555")
                    .replace("FROM", "[field0]")
                    .replace("UA", PHONE_UA),
            ),
            (
                "dialer_calls.xml",
                NUMBER_CALL
                    .replace("CHALLENGE", "")
                    .replace("SEQ", "1")
                    .replace("PREFIX", "0401555")
                    .replace("FROM", "dialer")
                    .replace("UA", "Asterisk PBX 18.10.0"),
            ),
        ]
    });

/// A copy of Debian's SIPVicious under `dir` in which every tell the built-in catalog knows
/// is rewritten: the User-Agent (a Cisco gateway's), the Contact (`sip:123@1.1.1.1`), the
/// digits-only Call-ID, and svmap's From and To (`"sipvicious"<sip:100@1.1.1.1>`). Run its tools with [`sipvicious_cmd`].
pub fn disguised_sipvicious(dir: &Path) -> PathBuf {
    let from = Path::new("/usr/share/sipvicious/sipvicious");
    let to = dir.join("sipvicious");
    copy_tree(from, &to);
    let helper = to.join("libs/svhelper.py");
    let text = std::fs::read_to_string(&helper).expect("reading svhelper.py");
    let replaced = [
        ("useragent='friendly-scanner'", format!("useragent='{BRUTE_FORCER_UA}'")),
        ("contact='sip:123@1.1.1.1'", "contact='sip:1001@192.0.2.10'".to_owned()),
        ("headers['Call-ID'] = callid", "headers['Call-ID'] = '%s@192.0.2.10' % callid".to_owned()),
        ("headers['i'] = callid", "headers['i'] = '%s@192.0.2.10' % callid".to_owned()),
    ]
    .iter()
    .fold(text, |t, (old, new)| {
        assert!(t.contains(old), "svhelper.py no longer has {old:?}: the disguise needs updating");
        t.replace(old, new)
    });
    for tell in ["friendly-scanner", "sip:123@1.1.1.1"] {
        assert!(!replaced.contains(tell), "{tell} is still in svhelper.py");
    }
    std::fs::write(&helper, replaced).expect("writing svhelper.py");
    // svmap's own From (and To): its display name and address.
    let svmap = to.join("svmap.py");
    let text = std::fs::read_to_string(&svmap).expect("reading svmap.py");
    let text = [
        (
            "fromname='sipvicious',fromaddr='sip:100@1.1.1.1'",
            "fromname='Reception',fromaddr='sip:100@192.0.2.10'",
        ),
        (r#"dest="fromname", default="sipvicious""#, r#"dest="fromname", default="Reception""#),
    ]
    .iter()
    .fold(text, |t, (old, new)| {
        assert!(t.contains(old), "svmap.py no longer has {old:?}: the disguise needs updating");
        t.replace(old, new)
    });
    std::fs::write(&svmap, text).expect("writing svmap.py");
    dir.to_path_buf()
}

/// `python3 -m sipvicious.<tool>` from the disguised copy under `root`, in `ns`, bounded by
/// [`crate::wait::patience`] against a hang.
#[must_use]
pub fn sipvicious_cmd(ns: &Netns, root: &Path, tool: &str) -> std::process::Command {
    let mut c = ns.exec("timeout");
    c.arg(crate::wait::patience().as_secs().to_string())
        .arg("env")
        .arg(format!("PYTHONPATH={}", root.display()))
        .arg(format!("HOME={}", root.display()))
        .args(["python3", "-m", &format!("sipvicious.{tool}")]);
    c
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a directory");
    for e in std::fs::read_dir(from).expect("reading the sipvicious package") {
        let e = e.expect("a directory entry");
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_name() == "__pycache__" {
            continue;
        }
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copying a file");
        }
    }
}
