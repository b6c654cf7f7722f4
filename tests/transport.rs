//! The client's own HTTP/1.1 transport: the gate is taken at the wire, connections
//! are reused, nothing is ever re-sent, and the failure classes are exact.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetcrypt::api::cdb::*;
use fleetcrypt::api::{
    Called, Client, ClientOptions, Credentials, Endpoint, Failure, Gate, Service,
};
use fleetcrypt::emulator::{Emulator, EmulatorConfig, Instance, World};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ID: &str = "AKIDtest0123456789";
const KEY: &str = "emulator-secret-key";
const HOST: &str = "cdb.ap-guangzhou.tencentcloudapi.com";

async fn start_emulator() -> Emulator {
    let mut world = World::default();
    world.add_instance(Instance::new("cdb-abcd1234", "ap-guangzhou"));
    let mut config = EmulatorConfig::default().instant();
    config.credentials = vec![(ID.into(), fleetcrypt::api::Secret::new(KEY))];
    // Sequential test calls go faster than the documented 20/s.
    config.rate_limits.clear();
    Emulator::start(config, world, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client_with(options: ClientOptions) -> Client {
    Client::new(Credentials::new(ID, KEY), &options).unwrap()
}

/// `http://cdb.ap-guangzhou.tencentcloudapi.com:PORT/`, pinned to `addr` as `--resolve` does.
fn pinned(addr: SocketAddr) -> (Endpoint, Vec<(String, SocketAddr)>) {
    let ep = Endpoint::parse(&format!("http://{HOST}:{}/", addr.port())).unwrap();
    (ep, vec![(HOST.to_string(), addr)])
}

async fn info(c: &Client, ep: &Endpoint, gate: Option<&dyn Gate>) -> Called<String> {
    let req = InstanceIdRequest {
        instance_id: "cdb-abcd1234".into(),
    };
    let called = match gate {
        Some(g) => {
            c.call_gated::<_, DescribeDBInstanceInfoResponse>(
                ep,
                Service::Cdb,
                DESCRIBE_DB_INSTANCE_INFO,
                Some("ap-guangzhou"),
                &req,
                g,
            )
            .await
        }
        None => {
            c.call::<_, DescribeDBInstanceInfoResponse>(
                ep,
                Service::Cdb,
                DESCRIBE_DB_INSTANCE_INFO,
                Some("ap-guangzhou"),
                &req,
            )
            .await
        }
    };
    called.map(|r| r.map(|a| a.data.encryption))
}

async fn raw_call(c: &Client, ep: &Endpoint) -> Called<fleetcrypt::api::Answer<Value>> {
    c.call_raw(
        ep,
        Service::Cdb,
        DESCRIBE_DB_INSTANCE_INFO,
        Some("ap-guangzhou"),
        &json!({"InstanceId": "cdb-abcd1234"}),
    )
    .await
}

/// A gate that waits `wait`, then records when it let the request go, and
/// records the send times it is told.
struct RecordingGate {
    wait: Duration,
    admitted: Mutex<Vec<Instant>>,
    sent: Mutex<Vec<Instant>>,
}

impl RecordingGate {
    fn new(wait: Duration) -> Self {
        RecordingGate {
            wait,
            admitted: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
        }
    }
    fn admitted(&self) -> Vec<Instant> {
        self.admitted.lock().unwrap().clone()
    }
    fn sent(&self) -> Vec<Instant> {
        self.sent.lock().unwrap().clone()
    }
}

impl Gate for RecordingGate {
    fn admit(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if !self.wait.is_zero() {
                tokio::time::sleep(self.wait).await;
            }
            self.admitted.lock().unwrap().push(Instant::now());
        })
    }
    fn sent(&self, at: Instant) {
        self.sent.lock().unwrap().push(at);
    }
}

/// One connection as a TCP proxy saw it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    accepted: Instant,
    first_byte: Option<Instant>,
}

/// A TCP proxy in front of `upstream` that logs every accepted connection.
async fn proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let l = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut down, _)) = listener.accept().await else {
                return;
            };
            let i = {
                let mut l = l.lock().unwrap();
                l.push(Seen {
                    accepted: Instant::now(),
                    first_byte: None,
                });
                l.len() - 1
            };
            let l = l.clone();
            tokio::spawn(async move {
                let mut up = TcpStream::connect(upstream).await.unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let n = match down.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                l.lock().unwrap()[i].first_byte = Some(Instant::now());
                if up.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    (addr, log)
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    requests: AtomicUsize,
}

/// A raw TCP server: `handle` gets each accepted connection.
async fn raw_server<F, Fut>(handle: F) -> (SocketAddr, Arc<Counts>)
where
    F: Fn(TcpStream, Arc<Counts>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            c.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handle(s, c.clone()));
        }
    });
    (addr, counts)
}

/// Reads one HTTP/1.1 request (head and Content-Length body); returns its head.
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(head)
}

const OK_BODY: &str = r#"{"Response":{"Encryption":"NO","RequestId":"r-1"}}"#;

fn ok_response() -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{OK_BODY}",
        OK_BODY.len()
    )
}

/// (a) With slow connection set-up, the gate admits only once the connection is
/// ready, and the request is on the wire right after the gate returns.
#[tokio::test]
async fn the_gate_admits_only_once_the_connection_is_ready() {
    let emu = start_emulator().await;
    let (proxy_addr, seen) = proxy(emu.addr()).await;
    let (ep, resolve) = pinned(proxy_addr);
    let max_delay = Duration::from_millis(400);
    let gate = RecordingGate::new(Duration::ZERO);
    let mut called = Vec::new();
    for _ in 0..12 {
        // A fresh client each time: every call opens (and waits for) a new connection.
        let c = client_with(ClientOptions {
            resolve: resolve.clone(),
            connect_delay_max: Some(max_delay),
            ..ClientOptions::default()
        });
        let r = info(&c, &ep, Some(&gate)).await;
        assert_eq!(r.result.as_deref(), Ok("NO"), "{:?}", r.result);
        assert_eq!(c.connections_opened(), 1);
        called.push(r);
    }
    let admitted = gate.admitted();
    let sent = gate.sent();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(admitted.len(), 12);
    assert_eq!(sent.len(), 12, "one send report per admission");
    assert_eq!(seen.len(), 12);
    let slack = Duration::from_millis(50);
    let mut set_up = Vec::new();
    for (((r, admit), conn), sent) in called.iter().zip(&admitted).zip(&seen).zip(&sent) {
        let first_byte = conn.first_byte.expect("the request reached the proxy");
        // The gate is told when the bytes went out: after the admission, with the first byte.
        assert!(sent >= admit, "reported sent before admitted");
        assert!(
            *sent <= first_byte + slack && first_byte <= *sent + slack,
            "reported sent {:?} from the proxy's first byte",
            sent.saturating_duration_since(first_byte)
                .max(first_byte.saturating_duration_since(*sent))
        );
        // The TCP connection existed before the gate was asked...
        assert!(
            *admit + slack >= conn.accepted,
            "admitted before connecting"
        );
        // ...the stamp follows the admission, and the request follows the stamp at once.
        assert!(r.sent_at >= *admit, "stamped before the gate admitted");
        assert!(first_byte + slack >= r.sent_at);
        assert!(
            first_byte.saturating_duration_since(*admit) < Duration::from_millis(150),
            "{:?} from the gate to the wire",
            first_byte.saturating_duration_since(*admit)
        );
        set_up.push(admit.saturating_duration_since(conn.accepted));
    }
    // The injected set-up delay sits before the gate: admissions trail the TCP accept
    // by up to the delay (uniform in 0..=400 ms: twelve draws all under 100 ms has
    // probability 0.25^12).
    let longest = *set_up.iter().max().unwrap();
    assert!(longest > Duration::from_millis(100), "{set_up:?}");
    assert!(
        longest < max_delay + Duration::from_millis(300),
        "{set_up:?}"
    );
}

/// Waiting at the gate counts neither toward the request timeout nor the latency,
/// and the request is signed after the wait (a fresh timestamp the emulator accepts).
#[tokio::test]
async fn waiting_at_the_gate_is_not_part_of_the_request() {
    let emu = start_emulator().await;
    let (ep, resolve) = pinned(emu.addr());
    let c = client_with(ClientOptions {
        timeout: Duration::from_millis(300),
        resolve,
        ..ClientOptions::default()
    });
    let gate = RecordingGate::new(Duration::from_millis(800));
    let before = Instant::now();
    let r = info(&c, &ep, Some(&gate)).await;
    assert_eq!(r.result.as_deref(), Ok("NO"), "{:?}", r.result);
    let admitted = gate.admitted()[0];
    assert!(admitted >= before + Duration::from_millis(800));
    assert!(r.sent_at >= admitted);
    assert!(r.latency < Duration::from_millis(300), "{:?}", r.latency);
    let wall_now = fleetcrypt::model::unix_ms(std::time::SystemTime::now());
    assert!(wall_now - r.sent_at_ms < 300, "sent_at_ms is the wire time");
    assert_eq!(emu.ground_truth().signature_failures, 0);
}

/// The gate hears of the send when the write goes through, not when the answer
/// comes: a request still waiting for its answer must not keep holding a place
/// in the window as "leaving now". And a request that never leaves is reported
/// too, so no place is held for ever.
#[tokio::test]
async fn the_gate_is_told_of_the_send_at_the_write_not_at_the_answer() {
    let mut world = World::default();
    world.add_instance(Instance::new("cdb-abcd1234", "ap-guangzhou"));
    let mut config = EmulatorConfig::default().instant();
    config.credentials = vec![(ID.into(), fleetcrypt::api::Secret::new(KEY))];
    config.rate_limits.clear();
    config.latency.insert(
        DESCRIBE_DB_INSTANCE_INFO.into(),
        fleetcrypt::emulator::Latency::between(
            Duration::from_millis(700),
            Duration::from_millis(700),
        ),
    );
    let emu = Emulator::start(config, world, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (ep, resolve) = pinned(emu.addr());
    let c = client_with(ClientOptions {
        resolve: resolve.clone(),
        ..ClientOptions::default()
    });
    let gate = RecordingGate::new(Duration::ZERO);
    let r = info(&c, &ep, Some(&gate)).await;
    assert_eq!(r.result.as_deref(), Ok("NO"), "{:?}", r.result);
    let (admitted, sent) = (gate.admitted(), gate.sent());
    assert_eq!(sent.len(), 1);
    // An Open's settle clock starts at that same write, not before it.
    assert_eq!(r.written_at, sent[0].max(r.sent_at));
    assert!(
        sent[0].saturating_duration_since(admitted[0]) < Duration::from_millis(200),
        "reported {:?} after admission: at the answer, not at the write",
        sent[0] - admitted[0]
    );

    // No answer within the timeout: the send is still reported once, at the write.
    let c = client_with(ClientOptions {
        resolve,
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    });
    let gate = RecordingGate::new(Duration::ZERO);
    let r = info(&c, &ep, Some(&gate)).await;
    assert!(
        matches!(r.result, Err(Failure::NoAnswer(_))),
        "{:?}",
        r.result
    );
    let (admitted, sent) = (gate.admitted(), gate.sent());
    assert_eq!(sent.len(), 1);
    assert_eq!(r.written_at, sent[0].max(r.sent_at));
    assert!(sent[0].saturating_duration_since(admitted[0]) < Duration::from_millis(200));
}

/// (b) Sequential calls share one keep-alive connection; concurrent calls each take
/// their own, and come back to the pool for the next wave.
#[tokio::test]
async fn connections_are_reused() {
    let emu = start_emulator().await;
    let (proxy_addr, seen) = proxy(emu.addr()).await;
    let (ep, resolve) = pinned(proxy_addr);
    let c = client_with(ClientOptions {
        resolve,
        ..ClientOptions::default()
    });
    for i in 0..50 {
        let r = info(&c, &ep, None).await;
        assert_eq!(r.result.as_deref(), Ok("NO"), "call {i}: {:?}", r.result);
    }
    let opened = seen.lock().unwrap().len();
    assert!(opened <= 2, "{opened} connections for 50 sequential calls");
    assert_eq!(c.connections_opened() as usize, opened);

    let c = client_with(ClientOptions {
        resolve: pinned(proxy_addr).1,
        ..ClientOptions::default()
    });
    for _ in 0..3 {
        let wave: Vec<_> = (0..8)
            .map(|_| {
                let (c, ep) = (c.clone(), ep.clone());
                tokio::spawn(async move { raw_call(&c, &ep).await.result.is_ok() })
            })
            .collect();
        for t in wave {
            assert!(t.await.unwrap());
        }
    }
    assert!(
        c.connections_opened() <= 10,
        "{} connections for three waves of 8",
        c.connections_opened()
    );
    assert_eq!(emu.ground_truth().signature_failures, 0);
}

/// The pool does not hand out a connection the server closed while it was idle.
#[tokio::test]
async fn a_connection_closed_while_idle_is_not_reused() {
    let (addr, counts) = raw_server(|mut s, counts| async move {
        if read_request(&mut s).await.is_some() {
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(ok_response().as_bytes()).await;
        }
        // Keep-alive was implied; close it anyway, shortly after.
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;
    let (ep, resolve) = pinned(addr);
    let c = client_with(ClientOptions {
        resolve,
        ..ClientOptions::default()
    });
    assert_eq!(info(&c, &ep, None).await.result.as_deref(), Ok("NO"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(info(&c, &ep, None).await.result.as_deref(), Ok("NO"));
    assert_eq!(c.connections_opened(), 2);
    assert_eq!(counts.requests.load(Ordering::SeqCst), 2);
}

/// A pooled connection the server closes while the request waits at the gate: hyper
/// hands the request back unwritten, so it is reported as not sent, and not retried.
#[tokio::test]
async fn a_connection_closed_during_the_gate_wait_is_not_sent() {
    let (addr, counts) = raw_server(|mut s, counts| async move {
        if read_request(&mut s).await.is_some() {
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(ok_response().as_bytes()).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    })
    .await;
    let (ep, resolve) = pinned(addr);
    let c = client_with(ClientOptions {
        resolve,
        ..ClientOptions::default()
    });
    assert_eq!(info(&c, &ep, None).await.result.as_deref(), Ok("NO"));
    // Taken from the pool at once (still open), then held at the gate past the close.
    let gate = RecordingGate::new(Duration::from_millis(400));
    let r = info(&c, &ep, Some(&gate)).await;
    match &r.result {
        Err(Failure::NotSent(m)) => assert!(m.contains("before the request was written"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(gate.admitted().len(), 1);
    assert!(r.sent_at >= gate.admitted()[0]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);
    assert_eq!(counts.connections.load(Ordering::SeqCst), 1);
}

/// The exact request on the wire: origin-form target, the signed Host (the pinned
/// name with its port), a fresh timestamp, no proxy form.
#[tokio::test]
async fn the_request_carries_the_signed_host() {
    let heads = Arc::new(Mutex::new(Vec::<String>::new()));
    let h = heads.clone();
    let (addr, _) = raw_server(move |mut s, _| {
        let h = h.clone();
        async move {
            while let Some(head) = read_request(&mut s).await {
                h.lock().unwrap().push(head);
                if s.write_all(ok_response().as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let (ep, resolve) = pinned(addr);
    let c = client_with(ClientOptions {
        resolve,
        ..ClientOptions::default()
    });
    assert_eq!(info(&c, &ep, None).await.result.as_deref(), Ok("NO"));
    let head = heads.lock().unwrap()[0].clone();
    let lines: Vec<&str> = head.lines().collect();
    assert_eq!(lines[0], "POST / HTTP/1.1");
    let header = |name: &str| {
        lines.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    assert_eq!(
        header("host").as_deref(),
        Some(format!("{HOST}:{}", addr.port()).as_str())
    );
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(
        header("x-tc-action").as_deref(),
        Some(DESCRIBE_DB_INSTANCE_INFO)
    );
    assert_eq!(header("x-tc-region").as_deref(), Some("ap-guangzhou"));
    let ts: i64 = header("x-tc-timestamp").unwrap().parse().unwrap();
    let now = fleetcrypt::model::unix_ms(std::time::SystemTime::now()) / 1000;
    assert!((now - ts).abs() <= 2);
    assert!(header("authorization")
        .unwrap()
        .contains("SignedHeaders=content-type;host"));
    assert_eq!(header("connection"), None);
    assert_eq!(header("proxy-authorization"), None);
}

/// (c) A server that reads the request and closes without answering: ambiguous, and
/// the request arrived exactly once (no retry on a new connection).
#[tokio::test]
async fn a_request_dropped_without_an_answer_is_not_retried() {
    let (addr, counts) = raw_server(|mut s, counts| async move {
        if read_request(&mut s).await.is_some() {
            counts.requests.fetch_add(1, Ordering::SeqCst);
        }
        drop(s);
    })
    .await;
    let ep = Endpoint::parse(&format!("http://{addr}")).unwrap();
    let c = client_with(ClientOptions::default());
    let r = raw_call(&c, &ep).await;
    assert!(
        matches!(r.result, Err(Failure::NoAnswer(_))),
        "{:?}",
        r.result
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);
    assert_eq!(counts.connections.load(Ordering::SeqCst), 1);
    assert_eq!(c.connections_opened(), 1);
    // No secret in the message.
    let m = r.result.unwrap_err().message();
    assert!(!m.contains(KEY) && !m.contains("TC3-HMAC"), "{m}");
}

/// The second request on a kept-alive connection, dropped by the server: ambiguous,
/// and not re-sent on a fresh connection either.
#[tokio::test]
async fn a_reused_connection_that_drops_the_request_is_not_retried() {
    let (addr, counts) = raw_server(|mut s, counts| async move {
        if read_request(&mut s).await.is_some() {
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(ok_response().as_bytes()).await;
        }
        if read_request(&mut s).await.is_some() {
            counts.requests.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let ep = Endpoint::parse(&format!("http://{addr}")).unwrap();
    let c = client_with(ClientOptions::default());
    assert!(raw_call(&c, &ep).await.result.is_ok());
    let r = raw_call(&c, &ep).await;
    assert!(
        matches!(r.result, Err(Failure::NoAnswer(_))),
        "{:?}",
        r.result
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 2);
    assert_eq!(counts.connections.load(Ordering::SeqCst), 1);
}

/// A hung answer past the timeout: ambiguous, once.
#[tokio::test]
async fn a_timeout_is_no_answer_and_not_retried() {
    let (addr, counts) = raw_server(|mut s, counts| async move {
        if read_request(&mut s).await.is_some() {
            counts.requests.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let ep = Endpoint::parse(&format!("http://{addr}")).unwrap();
    let c = client_with(ClientOptions {
        timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    });
    let r = raw_call(&c, &ep).await;
    assert!(
        matches!(r.result, Err(Failure::NoAnswer(_))),
        "{:?}",
        r.result
    );
    assert!(r.latency >= Duration::from_millis(300) && r.latency < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(counts.requests.load(Ordering::SeqCst), 1);
}

/// (c) Nothing listening: never sent, stamped at the failure, no latency.
#[tokio::test]
async fn a_refused_connection_is_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (ep, resolve) = pinned(addr);
    let c = client_with(ClientOptions {
        resolve,
        ..ClientOptions::default()
    });
    let gate = RecordingGate::new(Duration::ZERO);
    let before = Instant::now();
    let r = info(&c, &ep, Some(&gate)).await;
    assert!(
        matches!(r.result, Err(Failure::NotSent(_))),
        "{:?}",
        r.result
    );
    assert!(
        gate.admitted().is_empty(),
        "the gate is not asked without a connection"
    );
    assert!(r.sent_at >= before);
    assert_eq!(r.latency, Duration::ZERO);
}

/// A TLS endpoint that never completes the handshake: the connect bound expires, not sent.
#[tokio::test]
async fn a_stalled_tls_handshake_is_not_sent() {
    let (addr, _) = raw_server(|s, _| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    })
    .await;
    let ep = Endpoint::parse(&format!("https://{HOST}:{}/", addr.port())).unwrap();
    let c = client_with(ClientOptions {
        timeout: Duration::from_millis(300),
        resolve: vec![(HOST.into(), addr)],
        ..ClientOptions::default()
    });
    let before = Instant::now();
    let r = raw_call(&c, &ep).await;
    assert!(
        matches!(r.result, Err(Failure::NotSent(_))),
        "{:?}",
        r.result
    );
    assert!(before.elapsed() < Duration::from_secs(2));
}

/// A plain-HTTP server behind an https:// URL: the TLS handshake fails, not sent.
#[tokio::test]
async fn a_failed_tls_handshake_is_not_sent() {
    let (addr, _) = raw_server(|mut s, _| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    })
    .await;
    let ep = Endpoint::parse(&format!("https://{HOST}:{}/", addr.port())).unwrap();
    let c = client_with(ClientOptions {
        resolve: vec![(HOST.into(), addr)],
        ..ClientOptions::default()
    });
    let r = raw_call(&c, &ep).await;
    match &r.result {
        Err(Failure::NotSent(m)) => assert!(m.contains("TLS"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// (d) An answer bigger than the cap is unreadable, declared or streamed.
#[tokio::test]
async fn a_body_over_the_cap_is_unreadable() {
    const CAP: usize = 16 << 20;
    for chunked in [false, true] {
        let (addr, counts) = raw_server(move |mut s, counts| async move {
            if read_request(&mut s).await.is_none() {
                return;
            }
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let mb = vec![b' '; 1 << 20];
            if chunked {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..17 {
                    let chunk = format!("{:x}\r\n", mb.len());
                    if s.write_all(chunk.as_bytes()).await.is_err()
                        || s.write_all(&mb).await.is_err()
                        || s.write_all(b"\r\n").await.is_err()
                    {
                        return;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            } else {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    CAP + 1
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..17 {
                    if s.write_all(&mb).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await;
        let ep = Endpoint::parse(&format!("http://{addr}")).unwrap();
        let c = client_with(ClientOptions::default());
        let r = raw_call(&c, &ep).await;
        assert!(
            matches!(r.result, Err(Failure::Unreadable(_))),
            "chunked {chunked}: {:?}",
            r.result
        );
        assert_eq!(counts.requests.load(Ordering::SeqCst), 1);
        // The connection is not reused: the next call opens a new one.
        let _ = raw_call(&c, &ep).await;
        assert_eq!(c.connections_opened(), 2, "chunked {chunked}");
    }
}
