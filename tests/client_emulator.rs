//! The real client against the in-process emulator on 127.0.0.1:0.

use std::time::Duration;

use fleetcrypt::api::cdb::*;
use fleetcrypt::api::{Client, ClientOptions, Credentials, Endpoint, Failure, Service};
use fleetcrypt::emulator::{Emulator, EmulatorConfig, Instance, World};
use serde_json::json;

const ID: &str = "AKIDtest0123456789";
const KEY: &str = "emulator-secret-key";

async fn start(config: EmulatorConfig) -> Emulator {
    let mut world = World::default();
    world.add_instance(Instance::new("cdb-abcd1234", "ap-guangzhou"));
    world.add_instance(Instance::new("cdb-enc00001", "ap-guangzhou").pre_encrypted());
    let config = EmulatorConfig {
        credentials: vec![(ID.into(), fleetcrypt::api::Secret::new(KEY))],
        ..config
    };
    Emulator::start(config, world, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(key: &str) -> Client {
    Client::new(Credentials::new(ID, key), &ClientOptions::default()).unwrap()
}

async fn info(c: &Client, ep: &Endpoint) -> Result<String, Failure> {
    c.call::<_, DescribeDBInstanceInfoResponse>(
        ep,
        Service::Cdb,
        DESCRIBE_DB_INSTANCE_INFO,
        Some("ap-guangzhou"),
        &InstanceIdRequest {
            instance_id: "cdb-abcd1234".into(),
        },
    )
    .await
    .result
    .map(|a| a.data.encryption)
}

async fn open(c: &Client, ep: &Endpoint) -> Result<Option<String>, Failure> {
    c.call::<_, OpenDBInstanceEncryptionResponse>(
        ep,
        Service::Cdb,
        OPEN_DB_INSTANCE_ENCRYPTION,
        Some("ap-guangzhou"),
        &OpenDBInstanceEncryptionRequest {
            instance_id: "cdb-abcd1234".into(),
            key_id: None,
            key_region: None,
        },
    )
    .await
    .result
    .map(|a| a.request_id)
}

#[tokio::test]
async fn describe_open_describe() {
    let emu = start(EmulatorConfig::default().instant()).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let c = client(KEY);
    assert_eq!(info(&c, &ep).await.unwrap(), "NO");
    assert!(open(&c, &ep).await.unwrap().is_some(), "a RequestId");
    assert_eq!(info(&c, &ep).await.unwrap(), "YES");
    // A second Open on an encrypted instance is refused, and the emulator counts it.
    match open(&c, &ep).await {
        Err(Failure::Api { code, .. }) => assert_eq!(code, "OperationDenied"),
        other => panic!("{other:?}"),
    }
    let truth = emu.ground_truth();
    let inst = &truth.instances["cdb-abcd1234"];
    assert!(inst.encrypted);
    assert_eq!(inst.open_calls, 2);
    assert_eq!(inst.open_calls_when_encrypted, 1);
    assert_eq!(truth.signature_failures, 0);
}

#[tokio::test]
async fn wrong_key_and_region_are_rejected() {
    let emu = start(EmulatorConfig::default().instant()).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let r = client("wrong")
        .call_raw(
            &ep,
            Service::Cdb,
            DESCRIBE_DB_INSTANCE_INFO,
            Some("ap-guangzhou"),
            &json!({"InstanceId": "cdb-abcd1234"}),
        )
        .await;
    match r.result {
        Err(Failure::Api { code, .. }) => assert_eq!(code, "AuthFailure.SignatureFailure"),
        other => panic!("{other:?}"),
    }
    assert_eq!(emu.ground_truth().signature_failures, 1);
    let r = client(KEY)
        .call_raw(
            &ep,
            Service::Cdb,
            DESCRIBE_DB_INSTANCE_INFO,
            Some("ap-shanghai"),
            &json!({"InstanceId": "cdb-abcd1234"}),
        )
        .await;
    match r.result {
        Err(Failure::Api { code, .. }) => assert_eq!(code, "InvalidParameter.InstanceNotFound"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn burst_is_limited_per_sliding_second() {
    let emu = start(EmulatorConfig::default().instant()).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let c = client(KEY);
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let (c, ep) = (c.clone(), ep.clone());
        tasks.push(tokio::spawn(async move {
            c.call_raw(
                &ep,
                Service::Cdb,
                DESCRIBE_DB_INSTANCE_INFO,
                Some("ap-guangzhou"),
                &json!({"InstanceId": "cdb-abcd1234"}),
            )
            .await
        }));
    }
    let mut ok = 0;
    let mut throttled = 0;
    for t in tasks {
        match t.await.unwrap().result {
            Ok(_) => ok += 1,
            Err(Failure::Api { code, .. }) if code == "RequestLimitExceeded" => throttled += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(ok, 20, "exactly the limit is accepted in one burst");
    assert_eq!(throttled, 40);
    let a = emu.ground_truth().action(DESCRIBE_DB_INSTANCE_INFO);
    assert_eq!(a.accepted, 20);
    assert_eq!(a.max_in_1s_window, 60);
}

#[tokio::test]
async fn faults_are_classified_by_the_client() {
    use fleetcrypt::emulator::Faults;
    for (fault, check) in [
        ("bad-gateway", "bad"),
        ("reset-applied", "noanswer"),
        ("malformed", "unreadable"),
        ("hang", "noanswer"),
    ] {
        let mut faults = Faults::default();
        faults.set(fault, 1.0).unwrap();
        let mut config = EmulatorConfig::default().instant();
        config.faults = faults;
        config.hang_for = Duration::from_secs(5);
        let emu = start(config).await;
        let ep = Endpoint::parse(&emu.url()).unwrap();
        let c = Client::new(
            Credentials::new(ID, KEY),
            &ClientOptions {
                timeout: Duration::from_millis(500),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        let r = c
            .call_raw(
                &ep,
                Service::Cdb,
                OPEN_DB_INSTANCE_ENCRYPTION,
                Some("ap-guangzhou"),
                &json!({"InstanceId": "cdb-abcd1234"}),
            )
            .await;
        let ok = matches!(
            (&r.result, check),
            (Err(Failure::BadStatus { status: 502, .. }), "bad")
                | (Err(Failure::NoAnswer(_)), "noanswer")
                | (Err(Failure::Unreadable(_)), "unreadable")
        );
        assert!(ok, "{fault}: {:?}", r.result);
    }
}

#[tokio::test]
async fn connect_refused_is_never_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let ep = Endpoint::parse(&format!("http://{addr}")).unwrap();
    let r = client(KEY)
        .call_raw(
            &ep,
            Service::Cdb,
            DESCRIBE_DB_INSTANCE_INFO,
            None,
            &json!({}),
        )
        .await;
    assert!(
        matches!(r.result, Err(Failure::NotSent(_))),
        "{:?}",
        r.result
    );
}

/// Error envelopes are read under any status and any content type.
#[tokio::test]
async fn envelopes_under_odd_statuses_and_content_types() {
    use axum::http::{header, StatusCode};
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/",
        post(|headers: axum::http::HeaderMap| async move {
            let status: u16 = headers
                .get("x-tc-action")
                .and_then(|v| v.to_str().ok())
                .and_then(|a| a.strip_prefix("Status"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
                r#"{"Response":{"Error":{"Code":"InternalError.KmsError","Message":"kms"},"RequestId":"rid-9"}}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let ep = Endpoint::parse(&format!("http://{addr}")).unwrap();
    for status in [200, 400, 429, 500, 503] {
        let r = client(KEY)
            .call_raw(
                &ep,
                Service::Cdb,
                &format!("Status{status}"),
                None,
                &json!({}),
            )
            .await;
        match r.result {
            Err(Failure::Api {
                code,
                request_id,
                http_status,
                ..
            }) => {
                assert_eq!(code, "InternalError.KmsError");
                assert_eq!(request_id.as_deref(), Some("rid-9"));
                assert_eq!(http_status, status);
            }
            other => panic!("{status}: {other:?}"),
        }
    }
}

/// A request signed by hand, so the test controls timestamp, SecretId, Host and headers.
async fn raw(
    url: &str,
    host: &str,
    secret_id: &str,
    ts: i64,
    action: &str,
    version: &str,
) -> serde_json::Value {
    raw_signed_for(url, host, host, secret_id, ts, action, version).await
}

/// Signs for `signed_host` but sends `Host: sent_host`.
async fn raw_signed_for(
    url: &str,
    signed_host: &str,
    sent_host: &str,
    secret_id: &str,
    ts: i64,
    action: &str,
    version: &str,
) -> serde_json::Value {
    use fleetcrypt::api::sign;
    let body = br#"{"InstanceId": "cdb-abcd1234"}"#.to_vec();
    let signed = sign::sign(
        &sign::SignInput {
            service: "cdb",
            host: signed_host,
            content_type: "application/json",
            payload: &body,
            timestamp: ts,
        },
        KEY,
    );
    let resp = reqwest::Client::new()
        .post(url)
        .header("Host", sent_host)
        .header("Content-Type", "application/json")
        .header("X-TC-Action", action)
        .header("X-TC-Version", version)
        .header("X-TC-Timestamp", ts.to_string())
        .header("X-TC-Region", "ap-guangzhou")
        .header("Authorization", sign::authorization(secret_id, &signed))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "exactly application/json, always"
    );
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

fn code(v: &serde_json::Value) -> &str {
    v["Response"]["Error"]["Code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn authentication_as_the_real_service_checks_it() {
    let emu = start(EmulatorConfig::default().instant()).await;
    let url = emu.url();
    let host = emu.addr().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let v = raw(
        &url,
        &host,
        ID,
        now,
        DESCRIBE_DB_INSTANCE_INFO,
        "2017-03-20",
    )
    .await;
    assert_eq!(v["Response"]["Encryption"], "NO", "{v}");
    // tccli sends the scheme in Host and signs it: accepted as received.
    let v = raw(
        &url,
        &format!("http://{host}"),
        ID,
        now,
        DESCRIBE_DB_INSTANCE_INFO,
        "2017-03-20",
    )
    .await;
    assert_eq!(v["Response"]["Encryption"], "NO", "{v}");
    let v = raw(
        &url,
        &host,
        ID,
        now - 600,
        DESCRIBE_DB_INSTANCE_INFO,
        "2017-03-20",
    )
    .await;
    assert_eq!(code(&v), "AuthFailure.SignatureExpire", "{v}");
    let v = raw(
        &url,
        &host,
        ID,
        now + 600,
        DESCRIBE_DB_INSTANCE_INFO,
        "2017-03-20",
    )
    .await;
    assert_eq!(code(&v), "AuthFailure.SignatureExpire", "{v}");
    let v = raw(
        &url,
        &host,
        "AKIDnobody",
        now,
        DESCRIBE_DB_INSTANCE_INFO,
        "2017-03-20",
    )
    .await;
    assert_eq!(code(&v), "AuthFailure.SecretIdNotFound", "{v}");
    // Signed for one host, sent to another: the signature no longer matches.
    let v = raw_signed_for(
        &url,
        "cdb.tencentcloudapi.com",
        &host,
        ID,
        now,
        DESCRIBE_DB_INSTANCE_INFO,
        "2017-03-20",
    )
    .await;
    assert_eq!(code(&v), "AuthFailure.SignatureFailure", "{v}");
    let v = raw(&url, &host, ID, now, "DeleteEverything", "2017-03-20").await;
    assert_eq!(code(&v), "InvalidAction", "{v}");
    let v = raw(
        &url,
        &host,
        ID,
        now,
        DESCRIBE_DB_INSTANCE_INFO,
        "2019-01-18",
    )
    .await;
    assert_eq!(code(&v), "NoSuchVersion", "{v}");
    let truth = emu.ground_truth();
    assert_eq!(truth.auth_failures, 4);
    assert_eq!(truth.signature_failures, 1);
}
