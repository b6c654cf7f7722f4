//! The signed HTTP client. It sends one call and reports exactly what happened;
//! it does not retry (retry policy lives in the runner, where the journal is).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::classify::Failure;
use super::credentials::Credentials;
use super::endpoint::{Endpoint, Service};
use super::sign;

/// Sent as `X-TC-RequestClient` (must match `^[0-9a-zA-Z-_,;.]+$`).
pub const REQUEST_CLIENT: &str = concat!("fleetcrypt-", env!("CARGO_PKG_VERSION"));

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
    /// Total time for one request, connect to last body byte.
    pub timeout: Duration,
    /// `--resolve NAME:PORT:ADDR` pins.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Upper bound on idle pooled connections per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(15),
            resolve: Vec::new(),
            pool_max_idle_per_host: 512,
        }
    }
}

/// Admits a request onto the wire. The client calls it once a connection to the
/// endpoint is open and ready, and writes the request as soon as it returns.
pub trait Gate: Send + Sync {
    fn admit(&self) -> futures::future::BoxFuture<'_, ()>;
}

/// The outcome of one call, with the timing the journal and the limiter need.
#[derive(Debug, Clone)]
pub struct Called<T> {
    /// Wall-clock send time, Unix milliseconds (for the audit).
    pub sent_at_ms: i64,
    /// Monotonic send time (for every safety decision).
    pub sent_at: Instant,
    pub latency: Duration,
    pub result: Result<T, Failure>,
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
    http: reqwest::Client,
    credentials: Arc<Credentials>,
    timeout: Duration,
}

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Client {
    pub fn new(credentials: Credentials, options: &ClientOptions) -> Result<Client, ClientError> {
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(options.pool_max_idle_per_host)
            .user_agent(REQUEST_CLIENT)
            // Local emulator traffic must not go through a proxy from the environment.
            .no_proxy();
        for (name, addr) in &options.resolve {
            builder = builder.resolve(name, *addr);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Client {
            http,
            credentials: Arc::new(credentials),
            timeout: options.timeout,
        })
    }

    pub fn secret_id(&self) -> &str {
        &self.credentials.secret_id
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
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
        self.send(
            endpoint,
            service.name(),
            service.version(),
            action,
            region,
            body,
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
        let body = match serde_json::to_vec(req) {
            Ok(b) => b,
            Err(e) => {
                return Called {
                    sent_at_ms: unix_ms(SystemTime::now()),
                    sent_at: Instant::now(),
                    latency: Duration::ZERO,
                    result: Err(Failure::NotSent(format!("cannot encode request: {e}"))),
                }
            }
        };
        let called = self
            .send(
                endpoint,
                service.name(),
                service.version(),
                action,
                region,
                body,
            )
            .await;
        let Called {
            sent_at_ms,
            sent_at,
            latency,
            result,
        } = called;
        let result = result.and_then(|a| {
            serde_json::from_value::<R>(a.data)
                .map(|data| Answer {
                    request_id: a.request_id.clone(),
                    data,
                })
                .map_err(|e| Failure::Unreadable(format!("unexpected {action} response: {e}")))
        });
        Called {
            sent_at_ms,
            sent_at,
            latency,
            result,
        }
    }

    /// `call`, with the request admitted onto the wire by `gate`.
    pub async fn call_gated<Q: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        service: Service,
        action: &str,
        region: Option<&str>,
        req: &Q,
        gate: &dyn Gate,
    ) -> Called<Answer<R>> {
        gate.admit().await;
        self.call(endpoint, service, action, region, req).await
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
        let now = SystemTime::now();
        let timestamp = now
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
        let mut req = self
            .http
            .post(endpoint.url.clone())
            .header("Content-Type", "application/json")
            .header("X-TC-Action", action)
            .header("X-TC-Version", version)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Language", "en-US")
            .header("X-TC-RequestClient", REQUEST_CLIENT)
            .header(
                "Authorization",
                sign::authorization(&self.credentials.secret_id, &signed),
            )
            .body(body);
        if let Some(region) = region.filter(|r| !r.is_empty()) {
            req = req.header("X-TC-Region", region);
        }
        if let Some(token) = &self.credentials.token {
            req = req.header("X-TC-Token", token.expose());
        }
        let started = Instant::now();
        let sent_at_ms = unix_ms(now);
        let result = match req.send().await {
            Err(e) => Err(transport_failure(&e)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Err(e) => Err(transport_failure(&e)),
                    Ok(bytes) => parse_envelope(status, &bytes),
                }
            }
        };
        Called {
            sent_at_ms,
            sent_at: started,
            latency: started.elapsed(),
            result,
        }
    }
}

/// Sorts a reqwest error into "never sent" and "sent, no answer".
fn transport_failure(e: &reqwest::Error) -> Failure {
    // The reqwest error text includes the URL but never headers, so it carries no secret.
    let text = error_chain(e);
    if e.is_connect() || e.is_builder() {
        Failure::NotSent(text)
    } else {
        Failure::NoAnswer(text)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// Reads a `{"Response": …}` envelope whatever the HTTP status or content type:
/// `Response.Error` marks failure (reference §3.1, §7.3).
pub fn parse_envelope(status: u16, bytes: &[u8]) -> Result<Answer<Value>, Failure> {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let response = parsed
        .as_ref()
        .and_then(|v| v.get("Response"))
        .filter(|r| r.is_object());
    match response {
        Some(r) => {
            let request_id = r
                .get("RequestId")
                .and_then(Value::as_str)
                .map(str::to_string);
            if let Some(err) = r.get("Error") {
                let code = err
                    .get("Code")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let message = err
                    .get("Message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if code.is_empty() {
                    return Err(Failure::Unreadable(format!(
                        "error envelope without a code: {}",
                        excerpt(bytes)
                    )));
                }
                return Err(Failure::Api {
                    code,
                    message,
                    request_id,
                    http_status: status,
                });
            }
            if status != 200 {
                return Err(Failure::BadStatus {
                    status,
                    body: excerpt(bytes),
                });
            }
            Ok(Answer {
                request_id,
                data: r.clone(),
            })
        }
        None if status != 200 => Err(Failure::BadStatus {
            status,
            body: excerpt(bytes),
        }),
        None => Err(Failure::Unreadable(format!(
            "not a Response envelope: {}",
            excerpt(bytes)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_error_under_any_status() {
        let body = br#"{"Response":{"Error":{"Code":"RequestLimitExceeded","Message":"slow down"},"RequestId":"r-1"}}"#;
        for status in [200, 429, 500] {
            match parse_envelope(status, body) {
                Err(Failure::Api {
                    code,
                    request_id,
                    http_status,
                    ..
                }) => {
                    assert_eq!(code, "RequestLimitExceeded");
                    assert_eq!(request_id.as_deref(), Some("r-1"));
                    assert_eq!(http_status, status);
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn success_and_non_envelopes() {
        let ok =
            parse_envelope(200, br#"{"Response":{"Encryption":"YES","RequestId":"r"}}"#).unwrap();
        assert_eq!(ok.request_id.as_deref(), Some("r"));
        assert_eq!(ok.data["Encryption"], "YES");
        assert!(matches!(
            parse_envelope(502, b"<html>Bad Gateway</html>"),
            Err(Failure::BadStatus { status: 502, .. })
        ));
        assert!(matches!(
            parse_envelope(200, b"{\"Respo"),
            Err(Failure::Unreadable(_))
        ));
        assert!(matches!(
            parse_envelope(503, br#"{"Response":{"RequestId":"r"}}"#),
            Err(Failure::BadStatus { status: 503, .. })
        ));
    }
}
