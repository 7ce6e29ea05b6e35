//! The Local API's HTTP client: hyper's pooled client, with the limits a daemon needs (a
//! connect timeout, a deadline per request, a cap on the answer's size), over plain HTTP or
//! TLS (rustls: the system's roots, or only the CA of a file, as a Local API with its own
//! certificate needs). The key is sent as a header and never appears in an error.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri, body::Bytes, header};
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client as Pool, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls_pki_types::{CertificateDer, pem::PemObject as _};

/// The largest answer read: a startup sync of a million decisions is about 200 MiB of JSON.
pub const MAX_ANSWER_BYTES: usize = 256 << 20;
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one Local API.
#[derive(Clone)]
pub struct Client {
    pool: Pool<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    /// Bounds a whole request, answer included.
    deadline: Duration,
}

/// How a request is authenticated.
pub enum Auth<'a> {
    /// A bouncer's key (`X-Api-Key`).
    Key(&'a str),
    /// A machine's token (`Authorization: Bearer`).
    Bearer(&'a str),
    None,
}

/// An answer that is not a success.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the Local API answered {}", self.status)?;
        let body = self.body.trim();
        if !body.is_empty() {
            write!(f, ": {}", body.chars().take(200).collect::<String>())?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// What the bouncer calls itself: CrowdSec's convention, `<type>/<version>`, from which the
/// Local API fills the type and version that `cscli bouncers list` shows.
pub const USER_AGENT: &str = concat!("sipguard-xdp-bouncer/", env!("CARGO_PKG_VERSION"));

impl Client {
    /// A client of the API at `url` (`http://` or `https://HOST:PORT`, an optional path
    /// prefix). With `ca_file`, a TLS server is trusted only if that CA signed it.
    pub fn new(url: &str, deadline: Duration, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("the Local API's URL {url:?}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            bail!("the Local API's URL {url:?} must start with http:// or https://");
        }
        if uri.host().is_none() {
            bail!("the Local API's URL {url:?} names no host");
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = tls_config(ca_file)?;
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let pool = Pool::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(2)
            .build(connector);
        Ok(Self { pool, base: url.trim_end_matches('/').to_owned(), deadline })
    }

    /// Sends a request and reads a successful answer's body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        json: Option<Vec<u8>>,
    ) -> anyhow::Result<Bytes> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::USER_AGENT, USER_AGENT);
        request = match auth {
            Auth::Key(key) => request.header("X-Api-Key", key),
            Auth::Bearer(token) => request.header(header::AUTHORIZATION, format!("Bearer {token}")),
            Auth::None => request,
        };
        let body = match json {
            Some(bytes) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).context("building the request")?;
        let exchange = async {
            let answer = self
                .pool
                .request(request)
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            let status = answer.status();
            let body = Limited::new(answer.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(anyhow::Error::new(Refused {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                }));
            }
            Ok(body)
        };
        tokio::time::timeout(self.deadline, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {:?}", self.deadline))?
            .with_context(|| format!("{path} at {}", self.base))
    }
}

/// TLS with ring's primitives: the CA of `ca_file` alone, or the system's roots.
fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading the CA file {}", path.display()))?;
            for cert in certs {
                let cert = cert.with_context(|| format!("a certificate of {}", path.display()))?;
                roots.add(cert).with_context(|| format!("a certificate of {}", path.display()))?;
            }
            if roots.is_empty() {
                bail!("{} holds no certificate", path.display());
            }
            builder.with_root_certificates(roots)
        }
        None => builder.with_native_roots().context("reading the system's CA certificates")?,
    };
    Ok(builder.with_no_client_auth())
}

/// A client error and its causes, on one line (hyper's own display is only the outermost).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
