//! The signed HTTP client. It sends one call and reports exactly what happened;
//! it does not retry (retry policy lives in the runner, where the journal is).
//!
//! Every call takes one path: a ready connection (see `transport`), then the
//! optional [`Gate`], then the signature with a fresh timestamp, then the send
//! stamp, then the request on the wire. So a limiter behind the gate paces the
//! requests as the server sees them arrive, not as tasks were spawned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::{Method, Request, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::classify::Failure;
use super::credentials::Credentials;
use super::endpoint::{Endpoint, Service};
use super::envelope::parse_envelope;
use super::gate::{Admission, Gate};
use super::sign;
use super::transport::{exchange, Conn, Target, Transport};
use crate::model::now_ms;

/// Sent as `X-TC-RequestClient` (must match `^[0-9a-zA-Z-_,;.]+$`).
pub const REQUEST_CLIENT: &str = concat!("fleetcrypt-", env!("CARGO_PKG_VERSION"));

/// Test knob (fault injection): when set to an integer D, every *new* connection
/// waits a uniformly random 0..=D milliseconds after its TCP connect and before it
/// counts as ready, as a slow network's connection set-up would. Read once, by
/// [`Client::new`], when [`ClientOptions::connect_delay_max`] is `None`.
pub const CONNECT_DELAY_ENV: &str = "FLEETCRYPT_FAULT_CONNECT_DELAY_MS";

/// The longest a connection may take to open (DNS, TCP, TLS), whatever the timeout.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    #[error("cannot encode the request parameters: {0}")]
    Encode(String),
}

/// Options of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time for one request from the moment it is written to its last body byte
    /// (expired: `NoAnswer`). Opening a connection has its own bound,
    /// `min(timeout, 10 s)` (expired: `NotSent`); waiting at a [`Gate`] counts for neither.
    pub timeout: Duration,
    /// `--resolve NAME:PORT:ADDR` pins.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Upper bound on idle pooled connections per (scheme, host, port).
    pub pool_max_idle_per_host: usize,
    /// Test knob: every new connection waits a uniformly random `0..=max` after its TCP
    /// connect before it counts as ready. `None`: [`CONNECT_DELAY_ENV`] decides.
    pub connect_delay_max: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(15),
            resolve: Vec::new(),
            pool_max_idle_per_host: 512,
            connect_delay_max: None,
        }
    }
}

/// The outcome of one call, with the timing the journal and the limiter need.
#[derive(Debug, Clone)]
pub struct Called<T> {
    /// Wall-clock send time, Unix milliseconds (for the audit).
    pub sent_at_ms: i64,
    /// Monotonic send time: taken after the gate admitted the request and it was
    /// signed, right before it is written. For `NotSent`, the moment of the failure.
    pub sent_at: Instant,
    /// When the request's first write returned (its bytes were with the
    /// kernel), never before `sent_at`; when that is not known (the write did
    /// not finish), the end of the exchange. The server cannot have started on
    /// the request before it, so an Open's settle clock starts here.
    pub written_at: Instant,
    /// From `sent_at` to the answer (zero for `NotSent`).
    pub latency: Duration,
    /// The server's clock: its `Date` header as Unix seconds, when an answer
    /// (success or error) carried a readable one. For the clock-skew check.
    pub server_date: Option<i64>,
    pub result: Result<T, Failure>,
}

impl<T> Called<T> {
    /// A call that could not be sent (`Failure::NotSent`), stamped now.
    pub fn not_sent(message: String) -> Called<T> {
        let now = Instant::now();
        Called {
            sent_at_ms: now_ms(),
            sent_at: now,
            written_at: now,
            latency: Duration::ZERO,
            server_date: None,
            result: Err(Failure::NotSent(message)),
        }
    }

    /// The same call with its result mapped.
    pub fn map<U>(self, f: impl FnOnce(Result<T, Failure>) -> Result<U, Failure>) -> Called<U> {
        Called {
            sent_at_ms: self.sent_at_ms,
            sent_at: self.sent_at,
            written_at: self.written_at,
            latency: self.latency,
            server_date: self.server_date,
            result: f(self.result),
        }
    }
}

/// A successful answer: the `Response` object, including `RequestId`.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub request_id: Option<String>,
    pub data: T,
}

/// A signed Tencent Cloud API 3.0 client for one credential.
#[derive(Clone)]
pub struct Client {
    transport: Arc<Transport>,
    credentials: Arc<Credentials>,
    timeout: Duration,
}

/// Reads the [`CONNECT_DELAY_ENV`] value: unset, empty or 0 means no delay.
fn connect_delay_from(value: Option<&str>) -> Result<Option<Duration>, ClientError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let ms: u64 = v.parse().map_err(|_| {
        ClientError::Build(format!(
            "{CONNECT_DELAY_ENV}={v:?} is not a whole number of milliseconds"
        ))
    })?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

fn not_sent<T>(message: String) -> Called<T> {
    Called::not_sent(message)
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|_| format!("invalid {name} header value {value:?}"))
}

impl Client {
    pub fn new(credentials: Credentials, options: &ClientOptions) -> Result<Client, ClientError> {
        let connect_delay_max = match options.connect_delay_max {
            Some(d) => Some(d).filter(|d| !d.is_zero()),
            None => connect_delay_from(std::env::var(CONNECT_DELAY_ENV).ok().as_deref())?,
        };
        let transport = Transport::new(
            &options.resolve,
            options.pool_max_idle_per_host,
            connect_delay_max,
        )
        .map_err(ClientError::Build)?;
        Ok(Client {
            transport: Arc::new(transport),
            credentials: Arc::new(credentials),
            timeout: options.timeout,
        })
    }

    /// The same client (connections, timeout) signing with `credentials`:
    /// another account's requests share the connection pool, never the key.
    pub fn with_credentials(&self, credentials: Credentials) -> Client {
        Client {
            transport: self.transport.clone(),
            credentials: Arc::new(credentials),
            timeout: self.timeout,
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.credentials.secret_id
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Where the credentials were found (never their values).
    pub fn credentials_source(&self) -> &str {
        &self.credentials.source
    }

    /// New connections opened so far (by this client and its clones).
    pub fn connections_opened(&self) -> u64 {
        self.transport.opened()
    }

    /// One signed POST with `params` as the JSON body, signed with a fresh timestamp.
    pub async fn call_raw(
        &self,
        endpoint: &Endpoint,
        service: Service,
        action: &str,
        region: Option<&str>,
        params: &Value,
    ) -> Called<Answer<Value>> {
        let body = serde_json::to_vec(params).expect("a JSON value always serialises");
        self.send_inner(
            endpoint,
            service.name(),
            service.version(),
            action,
            region,
            body,
            None,
        )
        .await
    }

    /// A typed call: serialises `req`, parses the `Response` into `R`.
    pub async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        service: Service,
        action: &str,
        region: Option<&str>,
        req: &Q,
    ) -> Called<Answer<R>> {
        self.call_inner(endpoint, service, action, region, req, None)
            .await
    }

    /// As [`Client::call`], but the request leaves only once `gate` admits it, which
    /// it is asked to do once a connection is open and ready (see [`Gate`]).
    pub async fn call_gated<Q: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        service: Service,
        action: &str,
        region: Option<&str>,
        req: &Q,
        gate: &dyn Gate,
    ) -> Called<Answer<R>> {
        self.call_inner(endpoint, service, action, region, req, Some(gate))
            .await
    }

    async fn call_inner<Q: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        service: Service,
        action: &str,
        region: Option<&str>,
        req: &Q,
        gate: Option<&dyn Gate>,
    ) -> Called<Answer<R>> {
        let body = match serde_json::to_vec(req) {
            Ok(b) => b,
            Err(e) => return not_sent(format!("cannot encode request: {e}")),
        };
        let called = self
            .send_inner(
                endpoint,
                service.name(),
                service.version(),
                action,
                region,
                body,
                gate,
            )
            .await;
        called.map(|result| {
            result.and_then(|a| {
                serde_json::from_value::<R>(a.data)
                    .map(|data| Answer {
                        request_id: a.request_id.clone(),
                        data,
                    })
                    .map_err(|e| Failure::Unreadable(format!("unexpected {action} response: {e}")))
            })
        })
    }

    /// Signs and sends; `version` lets `fleetcrypt call` reach other products.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        service: &str,
        version: &str,
        action: &str,
        region: Option<&str>,
        body: Vec<u8>,
    ) -> Called<Answer<Value>> {
        self.send_inner(endpoint, service, version, action, region, body, None)
            .await
    }

    /// The headers that do not depend on the send time.
    fn fixed_headers(
        &self,
        endpoint: &Endpoint,
        version: &str,
        action: &str,
        region: Option<&str>,
        body_len: usize,
    ) -> Result<HeaderMap, String> {
        let mut h = HeaderMap::new();
        // Exactly the Host that is signed (the authority, port only when not the default).
        h.insert(header::HOST, header_value("Host", &endpoint.host)?);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            HeaderName::from_static("x-tc-action"),
            header_value("X-TC-Action", action)?,
        );
        h.insert(
            HeaderName::from_static("x-tc-version"),
            header_value("X-TC-Version", version)?,
        );
        h.insert(
            HeaderName::from_static("x-tc-language"),
            HeaderValue::from_static("en-US"),
        );
        h.insert(
            HeaderName::from_static("x-tc-requestclient"),
            HeaderValue::from_static(REQUEST_CLIENT),
        );
        if let Some(region) = region.filter(|r| !r.is_empty()) {
            h.insert(
                HeaderName::from_static("x-tc-region"),
                header_value("X-TC-Region", region)?,
            );
        }
        if let Some(token) = &self.credentials.token {
            let mut v = HeaderValue::from_str(token.expose())
                .map_err(|_| "the session token is not a valid header value".to_string())?;
            v.set_sensitive(true);
            h.insert(HeaderName::from_static("x-tc-token"), v);
        }
        h.insert(header::USER_AGENT, HeaderValue::from_static(REQUEST_CLIENT));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
        Ok(h)
    }

    /// The one path every call takes: a ready connection, the gate, a signature with a
    /// fresh timestamp, the stamp, the exchange. Never retries.
    #[allow(clippy::too_many_arguments)]
    async fn send_inner(
        &self,
        endpoint: &Endpoint,
        service: &str,
        version: &str,
        action: &str,
        region: Option<&str>,
        body: Vec<u8>,
        gate: Option<&dyn Gate>,
    ) -> Called<Answer<Value>> {
        // Everything that can fail without the network, before a connection or the gate.
        let (target, uri, headers) = match self.prepare(endpoint, version, action, region, &body) {
            Ok(p) => p,
            Err(e) => return not_sent(e),
        };
        let limit = self.timeout.min(CONNECT_LIMIT);
        let conn = match tokio::time::timeout(limit, self.transport.connect(&target)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return not_sent(e),
            Err(_) => {
                return not_sent(format!(
                    "no connection to {} within {limit:?}",
                    endpoint.host
                ))
            }
        };
        let admission = match gate {
            Some(gate) => Some(Admission::take(gate).await),
            None => None,
        };
        // Signed after the gate: the timestamp is the send time, however long the wait.
        let req = match self.signed(endpoint, service, headers, uri, body) {
            Ok(r) => r,
            Err(e) => return not_sent(e),
        };
        self.exchange(conn, req, admission).await
    }

    /// The request target, its path and the headers that do not depend on the send time.
    fn prepare(
        &self,
        endpoint: &Endpoint,
        version: &str,
        action: &str,
        region: Option<&str>,
        body: &[u8],
    ) -> Result<(Target, Uri, HeaderMap), String> {
        let target = Target::parse(&endpoint.url)?;
        let uri: Uri = target
            .path_and_query
            .parse()
            .map_err(|e| format!("invalid request path: {e}"))?;
        let headers = self.fixed_headers(endpoint, version, action, region, body.len())?;
        Ok((target, uri, headers))
    }

    /// The request, signed now (TC3-HMAC-SHA256 with a fresh `X-TC-Timestamp`).
    fn signed(
        &self,
        endpoint: &Endpoint,
        service: &str,
        mut headers: HeaderMap,
        uri: Uri,
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let signed = sign::sign(
            &sign::SignInput {
                service,
                host: &endpoint.host,
                content_type: "application/json",
                payload: &body,
                timestamp,
            },
            self.credentials.secret_key.expose(),
        );
        headers.insert(
            HeaderName::from_static("x-tc-timestamp"),
            HeaderValue::from(timestamp),
        );
        let mut auth =
            HeaderValue::from_str(&sign::authorization(&self.credentials.secret_id, &signed))
                .map_err(|_| "the SecretId is not a valid header value".to_string())?;
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        let mut req = Request::new(Full::new(Bytes::from(body)));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// Writes `req` on `conn` and reads the answer within the timeout. The gate
    /// learns when the write went through, not when the answer came: until then
    /// the request holds its place in the window as "leaving now".
    async fn exchange(
        &self,
        mut conn: Conn,
        req: Request<Full<Bytes>>,
        admission: Option<Admission<'_>>,
    ) -> Called<Answer<Value>> {
        let written = conn.written.clone();
        let wrote = written.arm();
        let report = async move {
            let at = wrote.await.unwrap_or_else(|_| Instant::now());
            if let Some(admission) = admission {
                admission.report(at);
            }
            at
        };
        let sent_at = Instant::now();
        let sent_at_ms = now_ms();
        let exchange = async {
            let outcome = tokio::time::timeout(self.timeout, exchange(&mut conn, req)).await;
            written.disarm();
            outcome
        };
        let (outcome, written_at) = tokio::join!(exchange, report);
        let written_at = written_at.max(sent_at);
        let latency = sent_at.elapsed();
        let mut server_date = None;
        let result = match outcome {
            Err(_) => Err(Failure::NoAnswer(format!(
                "no complete answer within {:?}",
                self.timeout
            ))),
            Ok(Err(Failure::NotSent(m))) => return not_sent(m),
            Ok(Err(f)) => Err(f),
            Ok(Ok((status, date, bytes))) => {
                // The exchange is complete: the connection may serve the next request.
                self.transport.checkin(conn);
                server_date = date.as_deref().and_then(http_date);
                parse_envelope(status, &bytes)
            }
        };
        Called {
            sent_at_ms,
            sent_at,
            written_at,
            latency,
            server_date,
            result,
        }
    }
}

/// An HTTP `Date` (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) as Unix seconds.
pub fn http_date(value: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_to_unix_seconds() {
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(http_date("Tue, 14 Nov 2023 22:13:20 GMT"), Some(1700000000));
        assert_eq!(http_date("yesterday"), None);
    }

    #[test]
    fn connect_delay_knob() {
        assert!(connect_delay_from(None).unwrap().is_none());
        assert!(connect_delay_from(Some("")).unwrap().is_none());
        assert!(connect_delay_from(Some("0")).unwrap().is_none());
        assert_eq!(
            connect_delay_from(Some(" 400 ")).unwrap(),
            Some(Duration::from_millis(400))
        );
        let e = connect_delay_from(Some("0.4s")).unwrap_err().to_string();
        assert!(e.contains(CONNECT_DELAY_ENV), "{e}");
    }

    #[test]
    fn fixed_headers_are_the_signed_host_and_no_time() {
        let c = Client::new(
            Credentials::new("AKIDx", "key"),
            &ClientOptions {
                connect_delay_max: Some(Duration::ZERO),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let ep = Endpoint::parse("http://cdb.ap-x.test:8080/").unwrap();
        let h = c
            .fixed_headers(&ep, "2017-03-20", "DescribeDBInstanceInfo", Some(""), 2)
            .unwrap();
        assert_eq!(h["host"], "cdb.ap-x.test:8080");
        assert_eq!(h["content-length"], "2");
        assert_eq!(h["x-tc-requestclient"], REQUEST_CLIENT);
        assert!(
            h.get("x-tc-region").is_none(),
            "an empty region is not sent"
        );
        assert!(h.get("x-tc-timestamp").is_none() && h.get("authorization").is_none());
        let e = c
            .fixed_headers(&ep, "2017-03-20", "Bad\nAction", None, 2)
            .unwrap_err();
        assert!(e.contains("X-TC-Action"), "{e}");
    }
}
