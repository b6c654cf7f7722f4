//! One request from arrival to answer: stamped when its head is parsed,
//! authenticated, checked for a served action and version, admitted under its
//! rate limit and decided under the lock, then answered after its latency.
// An error here *is* the HTTP answer to send, so `Result<_, Response>` is the natural shape.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::account::{attached_role_policies, service_status};
use super::auth::{authenticate, SIGNATURE_FAILURE};
use super::bad_answers::{bad_read, draw_bad, request_id_as_number};
use super::config::{BadAnswerKind, Latency};
use super::open::{decide_open, spawn_open, OpenPlan};
use super::reads::{describe_instance_info, describe_instances, features_answer, key_answer};
use super::server::{Inner, Shared};
use super::wire::{answer, error, header_str, http_date, service_of};
use crate::api::cam::LIST_ATTACHED_ROLE_POLICIES;
use crate::api::cdb::*;
use crate::api::kms::{DESCRIBE_KEY, GET_SERVICE_STATUS};
use crate::model::SlidingWindow;

/// When a request arrived: taken as soon as its head is parsed, before its body
/// is read, its signature checked or the shared lock taken, so a busy emulator
/// does not shift its own measurement of the client's rate.
#[derive(Debug, Clone, Copy)]
pub(super) struct Arrived(Instant);

pub(super) async fn stamp_arrival(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    req.extensions_mut().insert(Arrived(Instant::now()));
    next.run(req).await
}

/// Every answer carries the emulator's clock in its `Date` header (offset by
/// `--clock-offset`), as the real service's does: the one a client can read
/// its clock skew from, also on an error answer. hyper keeps a `Date` that is
/// already there.
pub(super) async fn dated(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&http_date(shared.config.now_unix())) {
        resp.headers_mut().insert(axum::http::header::DATE, v);
    }
    resp
}

/// An authenticated request that names a served action at its version.
struct Call {
    action: String,
    host: String,
    region: String,
    params: Value,
}

/// What an admitted request gets, decided under the lock.
struct Accepted {
    latency: Duration,
    decided: Decided,
    /// A read drew the `RequestIdNumber` bad answer: renumber the real answer.
    renumber: bool,
}

/// What to answer: now (after the latency), or an accepted Open to act out.
pub(super) enum Decided {
    Now(Response),
    Open { id: String, plan: OpenPlan },
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(Arrived(arrived)): Extension<Arrived>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secret_id = match authenticate(&shared, &headers, &body) {
        Ok(id) => id,
        Err((code, resp)) => {
            count_auth_failure(&shared, code);
            return resp;
        }
    };
    let call = match read_call(&shared, &headers, &body) {
        Ok(call) => call,
        Err(resp) => return resp,
    };
    let now = Instant::now();
    let micros = shared.micros(arrived);
    let accepted = match accept(&shared, call, secret_id, micros, now) {
        Ok(accepted) => accepted,
        Err(resp) => return resp,
    };
    match accepted.decided {
        Decided::Now(resp) => {
            tokio::time::sleep(accepted.latency).await;
            if accepted.renumber {
                return request_id_as_number(resp).await;
            }
            resp
        }
        // Like the real service, the call goes on when the client goes away (a killed
        // client, a timeout): it runs in its own task and finishes regardless.
        Decided::Open { id, plan } => match spawn_open(shared, id, plan, accepted.latency).await {
            Ok(resp) => resp,
            Err(_) => error("InternalError", "The emulator's worker failed."),
        },
    }
}

fn count_auth_failure(shared: &Shared, code: &str) {
    let mut inner = shared.inner.lock().unwrap();
    inner.requests_total += 1;
    inner.auth_failures += 1;
    if code == SIGNATURE_FAILURE {
        inner.signature_failures += 1;
    }
}

/// Reads what the actions need from the headers and the body. An unserved
/// action or a wrong version counts as a request; a body that is not a JSON
/// object is answered uncounted.
fn read_call(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Result<Call, Response> {
    let action = header_str(headers, "x-tc-action").unwrap_or("").to_string();
    let Some((_, version)) = service_of(&action) else {
        shared.inner.lock().unwrap().requests_total += 1;
        return Err(error(
            "InvalidAction",
            &format!("The action {action:?} is not supported by this emulator."),
        ));
    };
    if header_str(headers, "x-tc-version") != Some(version) {
        shared.inner.lock().unwrap().requests_total += 1;
        return Err(error(
            "NoSuchVersion",
            &format!("The API version for {action} must be {version}."),
        ));
    }
    let host = header_str(headers, "host").unwrap_or("").to_string();
    let region = header_str(headers, "x-tc-region").unwrap_or("").to_string();
    let params: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ if body.is_empty() => json!({}),
        _ => {
            return Err(error(
                "InvalidParameter",
                "The request body is not a JSON object.",
            ))
        }
    };
    Ok(Call {
        action,
        host,
        region,
        params,
    })
}

/// Under one lock: counts the request, applies the rate limit, then draws the
/// latency, draws a bad answer and decides, in that order (the RNG is seeded).
fn accept(
    shared: &Shared,
    call: Call,
    secret_id: String,
    micros: u64,
    now: Instant,
) -> Result<Accepted, Response> {
    let Call {
        action,
        host,
        region,
        params,
    } = call;
    let mut inner = shared.inner.lock().unwrap();
    inner.requests_total += 1;
    inner.caller.clone_from(&secret_id);
    admit(
        shared,
        &mut inner,
        &action,
        (action.clone(), host, secret_id),
        micros,
    )?;
    let latency = draw(&mut inner.rng, shared.config.latency.get(&action));
    // An Open draws its bad answer in `decide_open` (it is applied first).
    let bad = if action == OPEN_DB_INSTANCE_ENCRYPTION {
        None
    } else {
        draw_bad(&mut inner, &action)
    };
    let decided = match bad {
        None | Some(BadAnswerKind::RequestIdNumber) => {
            decide(shared, &mut inner, &action, &region, &params, now)
        }
        Some(kind) => Decided::Now(bad_read(kind, &mut inner, &region, &params)),
    };
    Ok(Accepted {
        latency,
        decided,
        renumber: bad == Some(BadAnswerKind::RequestIdNumber),
    })
}

/// Rate limit, per (action, Host, SecretId), over a sliding second. Every
/// arrival is measured; only the accepted ones count against the limit.
fn admit(
    shared: &Shared,
    inner: &mut Inner,
    action: &str,
    key: (String, String, String),
    micros: u64,
) -> Result<(), Response> {
    let seen = inner
        .seen
        .entry(key.clone())
        .or_insert_with(|| SlidingWindow::new(1_000_000));
    seen.push(micros);
    // The busiest window so far, including the windows a late-stamped arrival
    // falls in (not only the one ending at it).
    let seen_max = seen.max();
    // The same per (action, Host) over every credential: what several
    // accounts together sent to one endpoint.
    let all = inner
        .seen_all_credentials
        .entry((key.0.clone(), key.1.clone()))
        .or_insert_with(|| SlidingWindow::new(1_000_000));
    all.push(micros);
    let all_max = all.max();
    let limit = shared.config.rate_limits.get(action).copied().unwrap_or(0) as usize;
    let stats = inner.actions.entry(action.to_string()).or_default();
    stats.seen += 1;
    stats.max_in_1s_window = stats.max_in_1s_window.max(seen_max);
    stats.max_in_1s_window_all_credentials = stats.max_in_1s_window_all_credentials.max(all_max);
    let window = inner
        .quota
        .entry(key)
        .or_insert_with(|| SlidingWindow::new(1_000_000));
    if limit > 0 && window.busiest_with(micros) > limit {
        inner.actions.get_mut(action).unwrap().throttled += 1;
        return Err(error(
            "RequestLimitExceeded",
            "Your current request times exceeds the limit, please try again later.",
        ));
    }
    window.push(micros);
    inner.actions.get_mut(action).unwrap().accepted += 1;
    Ok(())
}

pub(super) fn draw(rng: &mut StdRng, l: Option<&Latency>) -> Duration {
    match l {
        None => Duration::ZERO,
        Some(l) if l.max <= l.min => l.min,
        Some(l) => rng.random_range(l.min..=l.max),
    }
}

fn decide(
    shared: &Shared,
    inner: &mut Inner,
    action: &str,
    region: &str,
    params: &Value,
    now: Instant,
) -> Decided {
    match action {
        DESCRIBE_DB_INSTANCE_INFO => Decided::Now(describe_instance_info(
            &shared.config.faults,
            inner,
            params,
            region,
            now,
        )),
        DESCRIBE_DB_FEATURES => Decided::Now(answer(features_answer(
            &mut inner.world,
            params,
            region,
            &inner.caller,
        ))),
        DESCRIBE_DB_INSTANCES => Decided::Now(describe_instances(
            &inner.world,
            params,
            region,
            &inner.caller,
        )),
        DESCRIBE_KEY => Decided::Now(answer(key_answer(&inner.world, params, region))),
        GET_SERVICE_STATUS => Decided::Now(service_status(&shared.config, region)),
        LIST_ATTACHED_ROLE_POLICIES => Decided::Now(attached_role_policies(&shared.config, params)),
        OPEN_DB_INSTANCE_ENCRYPTION => decide_open(shared, inner, params, region),
        _ => Decided::Now(error("InvalidAction", "unsupported action")),
    }
}
