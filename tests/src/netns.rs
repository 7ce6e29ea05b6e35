//! Network namespaces, veth pairs and sockets inside them. Every object is removed on drop,
//! so a failing test cleans up too.

use std::{
    fs::File,
    net::{SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// Runs a command to completion and fails the test with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace of the test's own, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Self {
        crate::require_root();
        let name = format!("{}{role}", crate::unique("sg"));
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    #[must_use]
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n NS ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    /// A command inside the namespace, with a private mount namespace (`ip netns exec`):
    /// right for peers that need no bpffs.
    #[must_use]
    pub fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A command inside the namespace that keeps the host's mounts, so it sees the pinned
    /// objects on /sys/fs/bpf (`ip netns exec` would hide them).
    #[must_use]
    pub fn nsenter(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display())).arg("--").arg(program);
        c
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates stay in the
    /// namespace after it returns.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = File::open(self.path()).expect("opening the netns file");
        std::thread::spawn(move || {
            // SAFETY: setns on a namespace fd affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in netns")
    }

    /// A UDP socket bound to `addr` inside the namespace, with a short read timeout.
    pub fn udp(&self, addr: &str) -> UdpSocket {
        let addr: SocketAddr = addr.parse().expect("socket address");
        let s = self
            .enter(move || UdpSocket::bind(addr))
            .expect("binding a UDP socket in the namespace");
        s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        s
    }

    /// Whether a UDP socket in the namespace is bound to `port` (a server is listening).
    pub fn udp_bound(&self, port: u16) -> bool {
        let table = self.enter(|| std::fs::read_to_string("/proc/thread-self/net/udp"));
        let needle = format!(":{port:04X} ");
        table.expect("reading the namespace's UDP table").lines().skip(1).any(|l| {
            l.split_whitespace().nth(1).is_some_and(|local| format!("{local} ").ends_with(&needle))
        })
    }

    /// Waits until a server in the namespace listens on UDP `addr:port` (another server may
    /// hold the port on another address).
    pub fn wait_udp_bound_at(&self, addr: std::net::Ipv4Addr, port: u16) {
        // /proc/net/udp shows the address as the hex of its bytes read as a native u32.
        let needle = format!("{:08X}:{port:04X}", u32::from_ne_bytes(addr.octets()));
        crate::wait::until(
            &format!("a server to listen on UDP {addr}:{port} in {}", self.name),
            || {
                let table = self.enter(|| std::fs::read_to_string("/proc/thread-self/net/udp"));
                let table = table.map_err(|e| e.to_string())?;
                let bound =
                    table.lines().skip(1).any(|l| l.split_whitespace().nth(1) == Some(&needle));
                if bound { Ok(()) } else { Err("not bound".into()) }
            },
        );
    }

    /// Waits until a server in the namespace listens on UDP `port` (a server such as sipp
    /// has no readiness signal of its own; its bound socket is the event).
    pub fn wait_udp_bound(&self, port: u16) {
        crate::wait::until(
            &format!("a server to listen on UDP port {port} in {}", self.name),
            || {
                if self.udp_bound(port) { Ok(()) } else { Err("not bound".into()) }
            },
        );
    }

    /// Sends `request` over TCP to `addr` from inside the namespace; returns whatever comes
    /// back before the server closes the connection (a reset, a head refused while more was
    /// coming, ends the answer too).
    pub fn exchange(&self, addr: &str, request: &[u8]) -> String {
        use std::io::{Read as _, Write as _};
        let addr = addr.to_owned();
        let mut conn = self
            .enter(move || std::net::TcpStream::connect(addr))
            .expect("connecting from the namespace");
        // A server that never answers nor closes is a hang: bounded like every other wait.
        conn.set_read_timeout(Some(crate::wait::patience())).expect("a read timeout");
        conn.write_all(request).unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).ok();
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Whether a server on `addr` hangs up on a client that connects and sends nothing,
    /// within the patience of a wait (false: it kept the connection open that long).
    pub fn hung_up_on(&self, addr: &str) -> bool {
        use std::io::Read as _;
        let addr = addr.to_owned();
        let mut conn = self
            .enter(move || std::net::TcpStream::connect(addr))
            .expect("connecting from the namespace");
        conn.set_read_timeout(Some(crate::wait::patience())).expect("a read timeout");
        let mut byte = [0u8; 1];
        match conn.read(&mut byte) {
            // The server closed it (or reset it): hung up.
            Ok(0) => true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
            // It sent something, or the wait ran out.
            _ => false,
        }
    }

    /// The metrics page `run` serves on `addr` in this namespace (the body; the answer must
    /// be a 200).
    pub fn scrape(&self, addr: &str) -> String {
        let text = self.exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text.split_once("\r\n\r\n").expect("a head and a body").1.to_owned()
    }

    /// A background process in the namespace (killed on drop of the returned guard).
    pub fn spawn(&self, cmd: &mut Command) -> ChildGuard {
        ChildGuard::spawn(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Command::new("ip").args(["netns", "del", &self.name]).status().ok();
    }
}

/// A child process that ends with the test, whatever happens to the test: it leads a process
/// group of its own, which is killed (SIGKILL) and reaped on drop, and the kernel kills it
/// too if the thread that started it dies first (`PR_SET_PDEATHSIG`). Dropping a plain
/// [`Child`] kills nothing: a PBX left running that way outlived its namespace once.
pub struct ChildGuard {
    child: Option<Child>,
    group: i32,
    /// Readers of stdout and stderr, once [`ChildGuard::pump_output`] started them.
    pumps: Option<[std::thread::JoinHandle<Vec<u8>>; 2]>,
}

impl ChildGuard {
    /// Starts `cmd` with its output captured and no input.
    pub fn spawn(cmd: &mut Command) -> Self {
        use std::os::unix::process::CommandExt as _;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let group = i32::try_from(child.id()).expect("pid fits");
        Self { child: Some(child), group, pumps: None }
    }

    /// Reads the process's output as it comes, so a talkative process (a `run` printing a
    /// flood's incident records) never blocks on a full pipe; [`ChildGuard::wait_exit`]
    /// returns it all.
    pub fn pump_output(&mut self) {
        fn pump(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                r.read_to_end(&mut buf).ok();
                buf
            })
        }
        let c = self.child();
        let (out, err) =
            (c.stdout.take().expect("stdout piped"), c.stderr.take().expect("stderr piped"));
        self.pumps = Some([pump(out), pump(err)]);
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present")
    }

    /// Whether the process has exited (it is reaped then; its output stays readable through
    /// [`ChildGuard::wait_exit`]).
    pub fn exited(&mut self) -> bool {
        self.child().try_wait().expect("try_wait").is_some()
    }

    /// Sends a signal to the process (not its group).
    pub fn signal(&mut self, sig: i32) {
        let pid = i32::try_from(self.child().id()).expect("pid fits");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, sig) };
    }

    /// Waits for the process to exit (after a signal, or on its own) and returns its output;
    /// fails the test after [`patience`](crate::wait::patience). Whatever it started is
    /// killed with it.
    pub fn wait_exit(&mut self) -> Output {
        let bound = crate::wait::patience();
        let deadline = Instant::now() + bound;
        let mut pause = Duration::from_millis(2);
        while !self.exited() {
            assert!(Instant::now() < deadline, "the process did not exit within {bound:.0?}");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        let mut out = self.child.take().expect("child").wait_with_output().expect("output");
        self.kill_group();
        if let Some([stdout, stderr]) = self.pumps.take() {
            out.stdout = stdout.join().expect("the stdout reader");
            out.stderr = stderr.join().expect("the stderr reader");
        }
        out
    }

    /// Ends the process and everything it started, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().ok();
            c.wait().ok();
        }
        self.kill_group();
    }

    fn kill_group(&self) {
        // SAFETY: kill(2) on the process group our child led; ESRCH once it is empty.
        unsafe { libc::kill(-self.group, libc::SIGKILL) };
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A veth pair between two namespaces, both ends up, with addresses (no DAD delay).
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for addr in addrs {
            if addr.contains(':') {
                ns.ip(&["addr", "add", addr, "dev", ifname, "nodad"]);
            } else {
                ns.ip(&["addr", "add", addr, "dev", ifname]);
            }
        }
        ns.ip(&["link", "set", ifname, "up"]);
    }
}

/// Sends `payload` from `from` to `to` and reports whether it arrived within `wait`.
pub fn delivered(from: &UdpSocket, to: &UdpSocket, payload: &[u8], wait: Duration) -> bool {
    let dest = to.local_addr().expect("local addr");
    drain(to);
    from.send_to(payload, dest).expect("send");
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, _)) = to.recv_from(&mut buf)
            && &buf[..n] == payload
        {
            return true;
        }
    }
    false
}

/// Sets a socket's receive buffer to `bytes`, past `net.core.rmem_max` (`SO_RCVBUFFORCE`,
/// which needs `CAP_NET_ADMIN`).
pub fn force_receive_buffer(s: &UdpSocket, bytes: i32) {
    // SAFETY: setsockopt with a pointer to an int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const bytes).cast(),
            libc::socklen_t::try_from(size_of::<i32>()).expect("an int's size fits"),
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
}

/// Discards whatever is queued on a socket.
pub fn drain(s: &UdpSocket) {
    let mut buf = [0u8; 2048];
    s.set_nonblocking(true).expect("nonblocking");
    while s.recv_from(&mut buf).is_ok() {}
    s.set_nonblocking(false).expect("blocking");
}

/// Two namespaces on one link: a PBX (`pbx0`: 10.77.0.1, `fd77::1`) and a peer host
/// (`peer0`: 10.77.0.2 and .3, `fd77::2` and `fd77::3`) whose two addresses play two sources.
pub struct PbxLink {
    pub pbx: Netns,
    pub peer: Netns,
}

impl PbxLink {
    pub const PBX_V4: &'static str = "10.77.0.1";
    pub const PBX_V6: &'static str = "fd77::1";
    pub const PEER_A_V4: &'static str = "10.77.0.2";
    pub const PEER_B_V4: &'static str = "10.77.0.3";
    pub const PEER_A_V6: &'static str = "fd77::2";
    pub const PEER_B_V6: &'static str = "fd77::3";

    pub fn new() -> Self {
        let pbx = Netns::new("p");
        let peer = Netns::new("q");
        veth(
            &pbx,
            "pbx0",
            &["10.77.0.1/24", "fd77::1/64"],
            &peer,
            "peer0",
            &["10.77.0.2/24", "10.77.0.3/24", "fd77::2/64", "fd77::3/64"],
        );
        Self { pbx, peer }
    }
}

impl Default for PbxLink {
    fn default() -> Self {
        Self::new()
    }
}

/// Hosts on one Ethernet segment: a bridge in a namespace of its own, and a namespace per
/// host with an `eth0` plugged into it. Like a provider's WAN: every host sees the others.
pub struct Lan {
    /// The hosts, in the order given.
    pub hosts: Vec<Netns>,
    _bridge: Netns,
}

impl Lan {
    /// `hosts`: a role (part of the namespace name) and the address with prefix, per host.
    pub fn new(hosts: &[(&str, &str)]) -> Self {
        let bridge = Netns::new("br");
        bridge.ip(&["link", "add", "br0", "type", "bridge"]);
        bridge.ip(&["link", "set", "br0", "up"]);
        let mut made = Vec::new();
        for (i, (role, addr)) in hosts.iter().enumerate() {
            let ns = Netns::new(role);
            let port = format!("p{i}");
            veth(&ns, "eth0", &[addr], &bridge, &port, &[]);
            bridge.ip(&["link", "set", &port, "master", "br0"]);
            made.push(ns);
        }
        Self { hosts: made, _bridge: bridge }
    }
}

/// Sends IPv4 `frames` (built by `frames::Frame`, Ethernet header and all) from inside `ns`
/// through a raw socket, with whatever source address each carries: a forger's packets.
/// Returns how many the kernel took. A full queue is waited out a little, never forever.
pub fn forge(ns: &Netns, frames: Vec<Vec<u8>>) -> usize {
    ns.enter(move || {
        // SAFETY: a plain socket call; the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let mut sent = 0;
        for frame in &frames {
            let packet = &frame[14..];
            // SAFETY: all zeros is a valid sockaddr_in; the fields set are plain integers.
            let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            to.sin_family = libc::sa_family_t::try_from(libc::AF_INET).unwrap();
            to.sin_addr.s_addr =
                u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
            for _ in 0..1000 {
                // SAFETY: the buffer and the address are of the sizes passed.
                let n = unsafe {
                    libc::sendto(
                        fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&raw const to).cast(),
                        libc::socklen_t::try_from(size_of::<libc::sockaddr_in>()).unwrap(),
                    )
                };
                if n >= 0 {
                    sent += 1;
                    break;
                }
                let e = std::io::Error::last_os_error();
                assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "sending a forged packet: {e}");
                std::thread::yield_now();
            }
        }
        sent
    })
}

/// A host with two interfaces: `inet` (its default route) and `trunk` (10.77.2.0/24, where
/// the SIP trunk is). Returns the namespace and the two interfaces' indexes.
pub fn two_sided_host(forwarding: bool) -> (Netns, u32, u32) {
    let ns = Netns::new("rp");
    // Veth pairs with both ends here (the machine may have no dummy driver); no packet is
    // sent through them.
    for (side, addr) in [("inet", "10.77.1.1/24"), ("trunk", "10.77.2.1/24")] {
        let peer = format!("{side}-far");
        ns.ip(&["link", "add", side, "type", "veth", "peer", "name", &peer]);
        ns.ip(&["addr", "add", addr, "dev", side]);
        ns.ip(&["link", "set", side, "up"]);
        ns.ip(&["link", "set", &peer, "up"]);
    }
    ns.ip(&["route", "add", "default", "via", "10.77.1.254", "dev", "inet"]);
    ns.ip(&["route", "add", "blackhole", "10.66.0.0/16"]);
    // Written from a thread in the namespace: /proc/sys/net is the opener's namespace's.
    ns.enter(move || {
        std::fs::write(
            "/proc/sys/net/ipv4/conf/all/forwarding",
            if forwarding { "1" } else { "0" },
        )
        .expect("setting forwarding");
    });
    let index = |name: &str| {
        let name = name.to_owned();
        ns.enter(move || sipguard::kernel::sys::ifindex(&name).expect("the interface exists"))
    };
    let (inet, trunk) = (index("inet"), index("trunk"));
    (ns, inet, trunk)
}
