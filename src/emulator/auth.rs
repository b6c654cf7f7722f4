//! Authentication exactly as Tencent Cloud checks it: the Authorization header,
//! the timestamp's skew, the SecretId, the session token, then the TC3
//! signature recomputed with `api::sign` over the headers the client signed.
// An error here *is* the HTTP answer to send, so `Result<_, Response>` is the natural shape.
#![allow(clippy::result_large_err)]

use axum::http::HeaderMap;
use axum::response::Response;

use super::server::Shared;
use super::wire::{error, header_str, service_of};
use crate::api::{sign, Secret};

/// Counted apart from the other authentication failures in the ground truth.
pub(super) const SIGNATURE_FAILURE: &str = "AuthFailure.SignatureFailure";

fn auth_error(code: &'static str, message: &str) -> (&'static str, Response) {
    (code, error(code, message))
}

/// Checks the TC3 signature the way the server does; `Err` is the code and the answer.
pub(super) fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, (&'static str, Response)> {
    let auth = header_str(headers, "authorization").unwrap_or("");
    let Some(parsed) = sign::parse_authorization(auth) else {
        return Err(auth_error(
            "AuthFailure.InvalidAuthorization",
            "Authorization header is missing or malformed.",
        ));
    };
    let Some(ts) = header_str(headers, "x-tc-timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return Err(auth_error(
            "AuthFailure.InvalidAuthorization",
            "X-TC-Timestamp is missing or invalid.",
        ));
    };
    // The emulator's clock, which `--clock-offset` may have moved.
    let now = shared.config.now_unix();
    if (now - ts).unsigned_abs() > shared.config.max_skew.as_secs() {
        return Err(auth_error(
            "AuthFailure.SignatureExpire",
            "Signature expired: the timestamp differs from server time by more than 5 minutes.",
        ));
    }
    let Some(key) = shared.keys.get(&parsed.secret_id) else {
        return Err(auth_error(
            "AuthFailure.SecretIdNotFound",
            "The SecretId is not found, please ensure that your SecretId is correct.",
        ));
    };
    if let Some(token) = shared.config.tokens.get(&parsed.secret_id) {
        let sent = header_str(headers, "x-tc-token").unwrap_or("");
        if !sign::signatures_match(token.expose(), sent) {
            return Err(auth_error(
                "AuthFailure.TokenFailure",
                "The session token is missing, invalid or expired.",
            ));
        }
    }
    if !signature_ok(&parsed, headers, body, ts, key) {
        return Err(auth_error(SIGNATURE_FAILURE,
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    Ok(parsed.secret_id)
}

/// Recomputes the signature over the headers the client says it signed, and
/// checks the credential scope: the date of the timestamp, the action's own
/// service, and `host` and `content-type` among the signed headers.
fn signature_ok(
    parsed: &sign::ParsedAuthorization,
    headers: &HeaderMap,
    body: &[u8],
    ts: i64,
    key: &Secret,
) -> bool {
    let action = header_str(headers, "x-tc-action").unwrap_or("");
    let expected_service = service_of(action).map(|(s, _)| s);
    let mut names: Vec<&str> = parsed.signed_headers.split(';').collect();
    names.sort_unstable();
    let mut signed_headers = Vec::new();
    for name in &names {
        let value = header_str(headers, name).unwrap_or("");
        let value = if *name == "x-tc-action" {
            value.to_ascii_lowercase()
        } else {
            value.to_string()
        };
        signed_headers.push((name.to_string(), value));
    }
    let pairs: Vec<(&str, &str)> = signed_headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let input = sign::SignInput {
        service: &parsed.service,
        host: header_str(headers, "host").unwrap_or(""),
        content_type: header_str(headers, "content-type").unwrap_or(""),
        payload: body,
        timestamp: ts,
    };
    let expected = sign::sign_headers(&input, &pairs, key.expose());
    let scope_ok = parsed.date == sign::utc_date(ts)
        && expected_service.is_none_or(|s| s == parsed.service)
        && names.contains(&"host")
        && names.contains(&"content-type");
    scope_ok && sign::signatures_match(&expected.signature, &parsed.signature)
}
