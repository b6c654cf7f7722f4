//! A small HTTP/1.1 transport on hyper's connection-level client.
//!
//! Why not a pooled client library: the rate limit holds at the server's
//! arrivals (SPEC §1), so a request must be admitted by its limiter only once
//! a connection is open and ready, and must then leave at once. A pooled client
//! connects *after* being handed the request (0–400 ms on a slow network, which
//! bunches requests at the server), and may re-send a request on its own (stale
//! pooled connections, HTTP/2 REFUSED_STREAM/GOAWAY), past both the limiter and
//! the journal. Here:
//!
//! - one request per connection at a time, HTTP/1.1 only (ALPN `http/1.1`);
//! - a connection is *ready* when TCP (and TLS) are up and hyper's
//!   `SendRequest::ready()` has resolved;
//! - idle keep-alive connections are pooled per (scheme, host, port), newest
//!   first, and dropped when closed or idle longer than [`IDLE_LIMIT`];
//! - nothing is ever retried: a request hyper hands back unsent is reported as
//!   not sent, and the caller decides.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::http::{header, Request};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use url::{Host, Url};

use super::classify::Failure;
use super::stamp::{Stamped, WriteSlot};

/// Largest response body read; a bigger one is `Unreadable` and its connection dropped.
pub const MAX_BODY: usize = 16 << 20;

/// Idle pooled connections older than this are closed rather than reused: a server
/// closing an idle keep-alive connection while a request is on its way turns a
/// harmless "not sent" into an ambiguous "no answer".
pub const IDLE_LIMIT: Duration = Duration::from_secs(20);

/// How long a pooled connection may take to report ready before it is given up.
const POOLED_READY_LIMIT: Duration = Duration::from_millis(250);

/// Where requests for one URL go, and the pool they share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

/// A parsed request target.
#[derive(Debug, Clone)]
pub struct Target {
    pub key: PoolKey,
    host: Host<String>,
    /// Whether the URL names its port (then it wins over a `--resolve` pin's port).
    explicit_port: bool,
    /// Origin-form request target: `/path?query`.
    pub path_and_query: String,
}

impl Target {
    pub fn parse(url: &Url) -> Result<Target, String> {
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("unsupported URL scheme {other:?}")),
        };
        let host = url
            .host()
            .ok_or_else(|| format!("no host in {url}"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("no port for {url}"))?;
        let host_text = match &host {
            Host::Domain(d) => d.to_ascii_lowercase(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let path_and_query = if path_and_query.is_empty() {
            "/".to_string()
        } else {
            path_and_query
        };
        Ok(Target {
            key: PoolKey {
                tls,
                host: host_text,
                port,
            },
            host,
            explicit_port: url.port().is_some(),
            path_and_query,
        })
    }

    fn describe(&self) -> String {
        let scheme = if self.key.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.key.host, self.key.port)
    }
}

/// The address a `--resolve` pin sends a URL to. As reqwest (and curl for its own
/// port) did: a port in the URL wins over the pin's; a pin's port 0 means the URL's.
pub fn pinned_addr(pin: SocketAddr, url_port: u16, explicit_port: bool) -> SocketAddr {
    let mut addr = pin;
    if explicit_port || addr.port() == 0 {
        addr.set_port(url_port);
    }
    addr
}

/// One open HTTP/1.1 connection. Dropping it closes the connection.
pub struct Conn {
    pub sender: SendRequest<Full<Bytes>>,
    task: AbortHandle,
    key: PoolKey,
    idle_since: Instant,
    /// Reports the next write on this connection (see [`super::stamp`]).
    pub written: Arc<WriteSlot>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closes the socket at once, whatever state hyper's connection task is in.
        self.task.abort();
    }
}

impl Conn {
    fn reusable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.idle_since) < IDLE_LIMIT
    }
}

pub struct Transport {
    /// `--resolve` pins, by lower-case host name (the last pin for a name wins).
    resolve: HashMap<String, SocketAddr>,
    tls: TlsConnector,
    pool: Mutex<HashMap<PoolKey, Vec<Conn>>>,
    max_idle: usize,
    connect_delay_max: Option<Duration>,
    opened: AtomicU64,
}

impl Transport {
    pub fn new(
        resolve: &[(String, SocketAddr)],
        max_idle: usize,
        connect_delay_max: Option<Duration>,
    ) -> Result<Transport, String> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Transport {
            resolve: resolve
                .iter()
                .map(|(name, addr)| (name.to_ascii_lowercase(), *addr))
                .collect(),
            tls: TlsConnector::from(Arc::new(config)),
            pool: Mutex::new(HashMap::new()),
            max_idle,
            connect_delay_max,
            opened: AtomicU64::new(0),
        })
    }

    /// New TCP connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// A ready connection to `target`: a pooled one if one is still good, else a new one.
    /// Every error means nothing was sent.
    pub async fn connect(&self, target: &Target) -> Result<Conn, String> {
        while let Some(mut conn) = self.checkout(&target.key) {
            if conn.sender.is_ready() {
                return Ok(conn);
            }
            // Just checked in: hyper's connection task may not have marked it idle yet.
            if let Ok(Ok(())) = tokio::time::timeout(POOLED_READY_LIMIT, conn.sender.ready()).await
            {
                return Ok(conn);
            }
        }
        self.open(target).await
    }

    /// Puts a connection whose exchange completed back into the pool.
    pub fn checkin(&self, mut conn: Conn) {
        if self.max_idle == 0 || conn.sender.is_closed() {
            return;
        }
        let now = Instant::now();
        conn.idle_since = now;
        let mut pool = self.pool.lock().unwrap();
        let idle = pool.entry(conn.key.clone()).or_default();
        idle.retain(|c| c.reusable(now));
        while idle.len() >= self.max_idle {
            idle.remove(0); // the oldest
        }
        idle.push(conn);
    }

    fn checkout(&self, key: &PoolKey) -> Option<Conn> {
        let now = Instant::now();
        let mut pool = self.pool.lock().unwrap();
        let idle = pool.get_mut(key)?;
        idle.retain(|c| c.reusable(now));
        // The most recently used: the least likely to have been closed by the server.
        idle.pop()
    }

    async fn addrs(&self, target: &Target) -> Result<Vec<SocketAddr>, String> {
        let port = target.key.port;
        match &target.host {
            Host::Ipv4(ip) => Ok(vec![SocketAddr::new(IpAddr::V4(*ip), port)]),
            Host::Ipv6(ip) => Ok(vec![SocketAddr::new(IpAddr::V6(*ip), port)]),
            Host::Domain(_) => {
                if let Some(pin) = self.resolve.get(&target.key.host) {
                    return Ok(vec![pinned_addr(*pin, port, target.explicit_port)]);
                }
                let found: Vec<SocketAddr> =
                    tokio::net::lookup_host((target.key.host.as_str(), port))
                        .await
                        .map_err(|e| format!("cannot resolve {}: {e}", target.key.host))?
                        .collect();
                if found.is_empty() {
                    return Err(format!("cannot resolve {}: no address", target.key.host));
                }
                Ok(found)
            }
        }
    }

    async fn open(&self, target: &Target) -> Result<Conn, String> {
        let mut last_error = String::new();
        let mut tcp = None;
        for addr in self.addrs(target).await? {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => {
                    last_error = format!("cannot connect to {} ({addr}): {e}", target.describe())
                }
            }
        }
        let tcp = tcp.ok_or(last_error)?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        if let Some(max) = self.connect_delay_max {
            let ms = rand::rng().random_range(0..=max.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let written = Arc::new(WriteSlot::default());
        let (sender, task) = if target.key.tls {
            let name = match &target.host {
                Host::Domain(d) => ServerName::try_from(d.to_ascii_lowercase())
                    .map_err(|e| format!("invalid TLS server name {d:?}: {e}"))?,
                Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(*ip).into()),
                Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(*ip).into()),
            };
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {} failed: {e}", target.describe()))?;
            handshake(Stamped::new(TokioIo::new(tls), written.clone())).await?
        } else {
            handshake(Stamped::new(TokioIo::new(tcp), written.clone())).await?
        };
        let mut conn = Conn {
            sender,
            task,
            key: target.key.clone(),
            idle_since: Instant::now(),
            written,
        };
        conn.sender
            .ready()
            .await
            .map_err(|e| format!("connection to {} closed: {e}", target.describe()))?;
        Ok(conn)
    }
}

async fn handshake<T>(io: T) -> Result<(SendRequest<Full<Bytes>>, AbortHandle), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| format!("HTTP/1.1 handshake failed: {e}"))?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    });
    Ok((sender, task.abort_handle()))
}

/// Writes `req` on `conn` and reads the whole answer: (status, body).
/// `NotSent` only when hyper handed the request back unwritten.
/// The status, the server's `Date` header (as sent) and the body.
pub async fn exchange(
    conn: &mut Conn,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Bytes), Failure> {
    let resp = match conn.sender.try_send_request(req).await {
        Ok(r) => r,
        Err(mut e) => {
            let unsent = e.take_message().is_some();
            let text = error_chain(&e.into_error());
            return Err(if unsent {
                Failure::NotSent(format!(
                    "the connection closed before the request was written: {text}"
                ))
            } else {
                Failure::NoAnswer(text)
            });
        }
    };
    let status = resp.status().as_u16();
    let date = resp
        .headers()
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > MAX_BODY as u64) {
        return Err(too_big(format!("{len} bytes declared")));
    }
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::NoAnswer(error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY {
                return Err(too_big("more bytes".into()));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok((status, date, Bytes::from(buf)))
}

fn too_big(what: String) -> Failure {
    Failure::Unreadable(format!(
        "the answer body is over the {MAX_BODY}-byte limit ({what}); not read"
    ))
}

/// An error and its sources on one line. hyper's errors never carry headers.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.ends_with(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_scheme_host_port_and_path() {
        let t = Target::parse(&Url::parse("http://CDB.ap-x.Test:8080/").unwrap()).unwrap();
        assert_eq!(
            t.key,
            PoolKey {
                tls: false,
                host: "cdb.ap-x.test".into(),
                port: 8080
            }
        );
        assert!(t.explicit_port);
        assert_eq!(t.path_and_query, "/");
        let t = Target::parse(&Url::parse("https://cdb.tencentcloudapi.com").unwrap()).unwrap();
        assert_eq!(t.key.port, 443);
        assert!(t.key.tls);
        assert!(!t.explicit_port);
        assert_eq!(t.path_and_query, "/");
        let t = Target::parse(&Url::parse("http://[::1]:9/a/b?x=1").unwrap()).unwrap();
        assert_eq!(t.key.host, "::1");
        assert_eq!(t.path_and_query, "/a/b?x=1");
        assert!(Target::parse(&Url::parse("ftp://x/").unwrap()).is_err());
    }

    #[test]
    fn pins_follow_the_url_port() {
        let pin: SocketAddr = "10.0.0.1:8080".parse().unwrap();
        assert_eq!(
            pinned_addr(pin, 9000, true),
            "10.0.0.1:9000".parse().unwrap()
        );
        assert_eq!(pinned_addr(pin, 443, false), pin);
        let zero: SocketAddr = "10.0.0.1:0".parse().unwrap();
        assert_eq!(
            pinned_addr(zero, 443, false),
            "10.0.0.1:443".parse().unwrap()
        );
    }

    #[test]
    fn error_chains_do_not_repeat_themselves() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E("outer", Some(Box::new(E("inner", None))));
        assert_eq!(error_chain(&e), "outer: inner");
    }
}
