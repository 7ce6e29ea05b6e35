//! A stand-in for CrowdSec's Local API, for the answers the real one (Debian's 1.4.6) cannot
//! give: an endpoint it lacks (`/v1/usage-metrics` came with 1.6), a chosen failure. It
//! speaks plain HTTP/1.1 with keep-alive, as the bouncer's pooled client does, serves the
//! decision stream it is given, and records every request. Everything else the fleet tests
//! ask of the real API.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, Ordering},
    },
    time::Duration,
};

use crate::netns::Netns;

/// One request as the stand-in read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status the stand-in answered with.
    pub status: u16,
}

impl Request {
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics on anything else: the bouncer sends JSON).
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What the stand-in answers a pull of the decision stream with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The decisions it was given on `startup=true`, nothing new on later pulls.
    Decisions,
    /// This status, with a JSON error body as the API writes one.
    Status(u16),
    /// A 200 whose body is an HTML page (a proxy's error page in front of the API).
    Html,
    /// A 200 larger than any answer the bouncer reads: `Content-Length` says 300 MiB, and
    /// the bytes keep coming until the bouncer hangs up.
    Oversized,
    /// Nothing: the connection stays open and silent until the bouncer hangs up.
    Silent,
}

struct Shared {
    /// The first answer of the decision stream (`startup=true`); later pulls get nothing new.
    decisions: serde_json::Value,
    stream: Mutex<Stream>,
    /// The status `/v1/usage-metrics` answers with.
    usage_status: AtomicU16,
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
}

/// The stand-in, listening in a namespace until dropped.
pub struct StandInApi {
    pub listen: SocketAddr,
    shared: Arc<Shared>,
}

impl StandInApi {
    /// Listens on `127.0.0.1` of `ns` (a port of the kernel's choosing); the decision stream
    /// starts with `decisions` (objects as `/v1/decisions/stream` sends them).
    #[must_use]
    pub fn start(ns: &Netns, decisions: serde_json::Value) -> Self {
        let listener =
            ns.enter(|| TcpListener::bind("127.0.0.1:0")).expect("binding the stand-in's socket");
        let listen = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            decisions,
            stream: Mutex::new(Stream::Decisions),
            usage_status: AtomicU16::new(201),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        // Polled, so that a drop ends the thread (a connection from outside the namespace
        // could not wake a blocking accept).
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let accepting = shared.clone();
        std::thread::spawn(move || {
            while !accepting.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).ok();
                        let serving = accepting.clone();
                        std::thread::spawn(move || serve(&conn, &serving));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { listen, shared }
    }

    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// What pulls of the decision stream get from now on.
    pub fn answer_stream_with(&self, stream: Stream) {
        *self.shared.stream.lock().expect("the stream's mode") = stream;
    }

    /// The status `/v1/usage-metrics` answers with from now on.
    pub fn answer_usage_with(&self, status: u16) {
        self.shared.usage_status.store(status, Ordering::Relaxed);
    }

    /// The requests so far to `path` (without its query).
    #[must_use]
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        let all = self.shared.requests.lock().expect("the request log");
        all.iter().filter(|r| r.path.split('?').next() == Some(path)).cloned().collect()
    }
}

impl Drop for StandInApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers the requests of one connection until the client closes it (or goes quiet for
/// longer than a test lasts).
fn serve(conn: &TcpStream, shared: &Shared) {
    conn.set_read_timeout(Some(crate::wait::patience())).ok();
    let mut reader = BufReader::new(conn);
    while let Some(request) = read_request(&mut reader) {
        let mode = *shared.stream.lock().expect("the stream's mode");
        let (status, body) = match (request.method.as_str(), request.path.split('?').next()) {
            ("GET", Some("/v1/decisions/stream")) => match mode {
                Stream::Decisions => {
                    let new = if request.path.contains("startup=true") {
                        shared.decisions.clone()
                    } else {
                        serde_json::Value::Null
                    };
                    (200, serde_json::json!({"new": new, "deleted": null}).to_string())
                }
                Stream::Status(code) => (code, r#"{"message":"the stand-in fails"}"#.to_owned()),
                Stream::Html => {
                    (200, "<html><body><h1>502 Bad Gateway</h1></body></html>".to_owned())
                }
                Stream::Oversized | Stream::Silent => {
                    shared.requests.lock().expect("the request log").push(request);
                    if mode == Stream::Oversized {
                        flood(reader.get_ref());
                    } else {
                        // Until the bouncer gives up and closes its end.
                        while read_request(&mut reader).is_some() {}
                    }
                    return;
                }
            },
            ("POST", Some("/v1/usage-metrics")) => {
                (shared.usage_status.load(Ordering::Relaxed), String::new())
            }
            _ => (404, "404 page not found".to_owned()),
        };
        shared.requests.lock().expect("the request log").push(Request { status, ..request });
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut out: &TcpStream = reader.get_ref();
        let answer = [head.as_bytes(), body.as_bytes()].concat();
        if out.write_all(&answer).is_err() {
            return;
        }
    }
}

/// An answer that claims 300 MiB and sends until the reader hangs up.
fn flood(mut out: &TcpStream) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        300u64 << 20
    );
    let chunk = vec![b' '; 1 << 20];
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    for _ in 0..300 {
        if out.write_all(&chunk).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<&TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body, status: 0 })
}
