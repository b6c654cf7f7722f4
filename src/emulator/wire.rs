//! The shape of every request and answer on the wire: the JSON envelope, the
//! error body, the one content type, and which service and version an action
//! belongs to. Every other room builds its answers from these.
// An error here *is* the HTTP answer to send, so `Result<_, Response>` is the natural shape.
#![allow(clippy::result_large_err)]

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::api::cam::LIST_ATTACHED_ROLE_POLICIES;
use crate::api::cdb::*;
use crate::api::kms::{DESCRIBE_KEY, GET_SERVICE_STATUS};

/// Every answer carries exactly `Content-Type: application/json` (the Python SDK
/// ignores error bodies under any other value).
pub(super) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(super) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(super) fn error(code: &str, message: &str) -> Response {
    let body = json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id()}});
    json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap())
}

pub(super) fn success(mut data: Value) -> Response {
    data["RequestId"] = json!(request_id());
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&json!({ "Response": data })).unwrap(),
    )
}

pub(super) fn answer(r: Result<Value, Response>) -> Response {
    match r {
        Ok(v) => success(v),
        Err(e) => e,
    }
}

/// An HTTP `Date` value (IMF-fixdate) for Unix seconds `secs`.
pub(super) fn http_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn str_param<'a>(params: &'a Value, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The (service, API version) an action belongs to, or `None` for an action
/// this emulator does not serve.
pub(super) fn service_of(action: &str) -> Option<(&'static str, &'static str)> {
    match action {
        OPEN_DB_INSTANCE_ENCRYPTION
        | DESCRIBE_DB_INSTANCE_INFO
        | DESCRIBE_DB_FEATURES
        | DESCRIBE_DB_INSTANCES => Some(("cdb", "2017-03-20")),
        DESCRIBE_KEY | GET_SERVICE_STATUS => Some(("kms", "2019-01-18")),
        LIST_ATTACHED_ROLE_POLICIES => Some(("cam", "2019-01-16")),
        _ => None,
    }
}
