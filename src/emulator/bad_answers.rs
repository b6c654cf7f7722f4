//! Bad answers: which configured one fires for a call, and how each is built
//! (cut off, oversize, a slow drip, not JSON, a field of the wrong type). A bad
//! answer to a read leaves the world alone; an Open is applied before its bad
//! answer is sent (see `open`).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::Response;
use rand::Rng;
use serde_json::{json, Value};

use super::config::BadAnswerKind;
use super::reads::{features_answer, key_answer, lookup};
use super::server::Inner;
use super::wire::{json_response, request_id};

/// Draws at most one configured bad answer for `action` (the first that fires).
pub(super) fn draw_bad(inner: &mut Inner, action: &str) -> Option<BadAnswerKind> {
    let kind = inner
        .bad_answers
        .iter()
        .filter(|b| b.p > 0.0 && b.applies_to(action))
        .find(|b| inner.rng.random_bool(b.p))
        .map(|b| b.kind);
    if kind.is_some() {
        inner
            .actions
            .entry(action.to_string())
            .or_default()
            .bad_answers += 1;
    }
    kind
}

/// What a lenient parser would take for a go-ahead: `Encryption: "NO"`, the
/// instance supports encryption, the key is enabled. Every bad read answer is
/// built around it, so a client that half-reads one is caught re-sending.
fn lure() -> Value {
    json!({
        "Encryption": "NO",
        "IsSupportEncryption": true,
        "EncryptionNeedUpgrade": false,
        "KeyMetadata": {"KeyState": "Enabled"},
        "RequestId": request_id(),
    })
}

/// A bad answer to a read. Has no effect on the world: in particular a bad
/// `DescribeDBInstanceInfo` answer never counts as the client having seen `NO`.
pub(super) fn bad_read(
    kind: BadAnswerKind,
    inner: &mut Inner,
    region: &str,
    params: &Value,
) -> Response {
    let mut data = match kind {
        BadAnswerKind::EncryptionNumber
        | BadAnswerKind::EncryptionNull
        | BadAnswerKind::EncryptionBool
        | BadAnswerKind::EncryptionObject => {
            let inst = match lookup(&mut inner.world, params, region, &inner.caller) {
                Ok(i) => i,
                Err(r) => return r,
            };
            json!({
                "InstanceId": inst.id,
                "InstanceName": inst.name,
                "DefaultKmsRegion": inst.region,
                "RequestId": request_id(),
            })
        }
        BadAnswerKind::SupportEncryptionString | BadAnswerKind::NeedUpgradeString => {
            match features_answer(&mut inner.world, params, region, &inner.caller) {
                Ok(v) => v,
                Err(r) => return r,
            }
        }
        BadAnswerKind::KeyStateNumber => match key_answer(&inner.world, params, region) {
            Ok(v) => v,
            Err(r) => return r,
        },
        _ => lure(),
    };
    if data.get("RequestId").is_none_or(Value::is_null) {
        data["RequestId"] = json!(request_id());
    }
    bad_body(kind, data)
}

/// Cut-off JSON is never valid: a proper prefix of an object leaves a brace open.
fn half(text: &str) -> Vec<u8> {
    text.as_bytes()[..text.len() / 2].to_vec()
}

/// Answers with `kind`, built around `data` (the `Response` object it spoils).
pub(super) fn bad_body(kind: BadAnswerKind, mut data: Value) -> Response {
    let envelope = |d: &Value| serde_json::to_string(&json!({ "Response": d })).unwrap();
    match kind {
        BadAnswerKind::TruncatedJson => json_response(StatusCode::OK, half(&envelope(&data))),
        BadAnswerKind::MissingResponse => {
            json_response(StatusCode::OK, serde_json::to_vec(&data).unwrap())
        }
        BadAnswerKind::ErrorWithoutCode => {
            let rid = data["RequestId"].clone();
            let body = json!({"Response": {
                "Error": {"Message": "An internal error occurred (no code)."},
                "RequestId": rid,
            }});
            json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap())
        }
        BadAnswerKind::Oversize => oversize(&envelope(&data)),
        BadAnswerKind::NonJson200 => json_response(
            StatusCode::OK,
            b"<html><head><title>200 OK</title></head><body>Encryption: NO</body></html>".to_vec(),
        ),
        BadAnswerKind::SlowDrip => slow_drip(half(&envelope(&data))),
        BadAnswerKind::EncryptionNumber => {
            data["Encryption"] = json!(0);
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
        BadAnswerKind::EncryptionNull => {
            data["Encryption"] = Value::Null;
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
        BadAnswerKind::EncryptionBool => {
            data["Encryption"] = json!(false);
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
        BadAnswerKind::EncryptionObject => {
            data["Encryption"] = json!({"Value": "NO"});
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
        BadAnswerKind::SupportEncryptionString => {
            let v = data["IsSupportEncryption"].to_string();
            data["IsSupportEncryption"] = json!(v);
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
        BadAnswerKind::NeedUpgradeString => {
            let v = data["EncryptionNeedUpgrade"].to_string();
            data["EncryptionNeedUpgrade"] = json!(v);
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
        BadAnswerKind::KeyStateNumber => {
            data["KeyMetadata"]["KeyState"] = json!(1);
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
        BadAnswerKind::RequestIdNumber => {
            data["RequestId"] = json!(4242);
            json_response(StatusCode::OK, envelope(&data).into_bytes())
        }
    }
}

/// A well-formed answer padded past the client's 16 MiB cap, streamed (chunked,
/// no Content-Length) so only counting the bytes can catch it.
fn oversize(envelope: &str) -> Response {
    static PAD: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let cut = envelope.len() - 2; // before the closing `}}`
    let head = format!("{},\"Padding\":\"", &envelope[..cut]);
    // The client's cap is 16 MiB; this is 16 MiB + 128 KiB of padding.
    let chunks = (16 << 20) / PAD.len() + 2;
    let stream = futures::stream::iter(
        std::iter::once(Bytes::from(head))
            .chain(std::iter::repeat_n(Bytes::from_static(&PAD), chunks))
            .chain(std::iter::once(Bytes::from_static(b"\"}}")))
            .map(Ok::<Bytes, std::io::Error>),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// Headers at once, then `head`, then a space every 100 ms: the body never
/// completes. After 10 minutes the connection is dropped (still incomplete).
fn slow_drip(head: Vec<u8>) -> Response {
    const DRIP: Duration = Duration::from_millis(100);
    const GIVE_UP: u32 = 6000;
    let stream = futures::stream::unfold(0u32, move |n| {
        let head = head.clone();
        async move {
            match n {
                0 => Some((Ok(Bytes::from(head)), 1)),
                n if n <= GIVE_UP => {
                    tokio::time::sleep(DRIP).await;
                    Some((Ok(Bytes::from_static(b" ")), n + 1))
                }
                // An error mid-body drops the connection: still never complete.
                n if n == GIVE_UP + 1 => {
                    Some((Err(std::io::Error::other("slow drip gave up")), n + 1))
                }
                _ => None,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// `RequestId` as a number in an otherwise normal answer.
pub(super) async fn request_id_as_number(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut v) => {
            if let Some(r) = v.get_mut("Response").and_then(Value::as_object_mut) {
                r.insert("RequestId".into(), json!(4242));
            }
            json_response(parts.status, serde_json::to_vec(&v).unwrap())
        }
        Err(_) => Response::from_parts(parts, Body::from(bytes)),
    }
}
