//! `OpenDBInstanceEncryption`, the one call that changes the world: decided
//! under the lock (checks, ground truth of the call, at most one injected
//! fault), then acted out in its own task after the latency.
// An error here *is* the HTTP answer to send, so `Result<_, Response>` is the natural shape.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::bad_answers::{bad_body, draw_bad};
use super::config::{BadAnswerKind, Faults};
use super::reads::lookup;
use super::request::{draw, Decided};
use super::server::{Inner, Shared};
use super::wire::{error, json_response, request_id, str_param, success};
use super::world::{Instance, World};
use crate::api::cdb::OPEN_DB_INSTANCE_ENCRYPTION;

/// What an accepted Open does, decided under the lock, acted out after the latency.
pub(super) enum OpenPlan {
    Apply,
    Answer(Response),
    InternalApplied,
    BadGateway,
    Reset {
        apply: bool,
    },
    /// Hangs for `hang_for`; `apply` applies at the start of the hang.
    Hang {
        apply: bool,
    },
    /// Hangs for `hang_for`, applies at the end of it, then answers InternalError.
    HangLate,
    Malformed,
    /// Applied, then answered with a bad answer.
    Bad(BadAnswerKind),
}

impl OpenPlan {
    /// Whether acting the plan out encrypts the instance: counted in its
    /// `pending_apply` from the decision until the apply.
    fn applies(&self) -> bool {
        matches!(
            self,
            OpenPlan::Apply
                | OpenPlan::InternalApplied
                | OpenPlan::Reset { apply: true }
                | OpenPlan::Hang { apply: true }
                | OpenPlan::HangLate
                | OpenPlan::Malformed
                | OpenPlan::Bad(_)
        )
    }
}

/// One accepted Open still being worked on: counted in the instance's
/// `opens_in_progress` from `decide_open` until this is dropped (when the answer
/// is produced, or after the background apply of `InternalApplied`). Dropping
/// also covers a worker that panics or a runtime that shuts down mid-call.
struct InProgress {
    shared: Arc<Shared>,
    id: String,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.shared.inner.lock() {
            if let Some(inst) = inner.world.instances.get_mut(&self.id) {
                inst.opens_in_progress = inst.opens_in_progress.saturating_sub(1);
            }
        }
    }
}

/// The key an Open asks for: `KeyId` with its `KeyRegion`, or no `KeyId` for
/// the service's own key; `state` is the named key's state.
struct RequestedKey {
    id: Option<String>,
    region: Option<String>,
    state: Option<String>,
}

/// Decides an Open under the lock. Once the key parameters pass, it draws the
/// fault roll and then any bad answer, before the instance is looked up or
/// checked (the RNG is seeded: keep that order).
pub(super) fn decide_open(
    shared: &Shared,
    inner: &mut Inner,
    params: &Value,
    region: &str,
) -> Decided {
    let key = match requested_key(&inner.world, params) {
        Ok(key) => key,
        Err(r) => return Decided::Now(r),
    };
    let roll: f64 = inner.rng.random();
    let bad = draw_bad(inner, OPEN_DB_INSTANCE_ENCRYPTION);
    let inst = match lookup(&mut inner.world, params, region, &inner.caller) {
        Ok(i) => i,
        Err(r) => return Decided::Now(r),
    };
    record_call(inst);
    if let Some(refused) = refusal(inst, key.state.as_deref()) {
        return Decided::Now(refused);
    }
    inst.key_id = Some(key.id.unwrap_or_else(|| "KMS-CDB".into()));
    inst.key_region = Some(key.region.unwrap_or_else(|| inst.region.clone()));
    let id = inst.id.clone();
    let plan = pick_plan(&shared.config.faults, roll, bad);
    if plan.applies() {
        inst.pending_apply += 1;
    }
    // Accepted: being worked on until `act_open` is done (see `InProgress`).
    inst.opens_in_progress += 1;
    Decided::Open { id, plan }
}

fn requested_key(world: &World, params: &Value) -> Result<RequestedKey, Response> {
    let id = str_param(params, "KeyId").map(str::to_string);
    let region = str_param(params, "KeyRegion").map(str::to_string);
    let state = match (&id, &region) {
        (Some(_), None) => {
            return Err(error(
                "InvalidParameter",
                "KeyRegion is required when KeyId is given.",
            ))
        }
        (Some(k), Some(r)) => match world.keys.get(&(r.clone(), k.clone())) {
            None => {
                return Err(error(
                    "InvalidParameter",
                    &format!("The key {k} does not exist in KeyRegion {r}."),
                ))
            }
            Some(key) => Some(key.state.clone()),
        },
        _ => None,
    };
    Ok(RequestedKey { id, region, state })
}

/// Ground truth of the call itself, whatever its answer: blind when no settled
/// `NO` was read since the last Open, overlapping when another is in progress.
fn record_call(inst: &mut Instance) {
    if inst.open_calls > 0 && !inst.no_read_since_last_open {
        inst.blind_open_calls += 1;
    }
    if inst.opens_in_progress > 0 {
        inst.overlapping_open_calls += 1;
    }
    inst.open_calls += 1;
    inst.no_read_since_last_open = false;
}

/// The service's refusal of this Open, if it refuses. An Open on an encrypted
/// instance is counted as such.
fn refusal(inst: &mut Instance, key_state: Option<&str>) -> Option<Response> {
    if inst.encrypted {
        inst.open_calls_when_encrypted += 1;
        return Some(error(
            "OperationDenied",
            "Encryption is already enabled for this instance and cannot be changed.",
        ));
    }
    if inst.init_flag != 1 || inst.status != 1 {
        return Some(error(
            "UnsupportedOperation",
            "The instance is not initialised or not running.",
        ));
    }
    if !inst.supports_encryption || inst.needs_upgrade {
        return Some(error(
            "UnsupportedOperation",
            "The instance does not support encryption; check DescribeDBFeatures.",
        ));
    }
    if key_state.is_some_and(|s| s != "Enabled") {
        return Some(error(
            "InternalError.KmsError",
            "Failed to enable encryption: the KMS key is not usable.",
        ));
    }
    None
}

/// A drawn bad answer wins; otherwise at most one fault, picked by walking the
/// cumulative probabilities with the one `roll`.
fn pick_plan(faults: &Faults, roll: f64, bad: Option<BadAnswerKind>) -> OpenPlan {
    let mut acc = 0.0;
    let mut pick = |p: f64| {
        acc += p;
        roll < acc
    };
    if let Some(kind) = bad {
        OpenPlan::Bad(kind)
    } else if pick(faults.internal_applied) {
        OpenPlan::InternalApplied
    } else if pick(faults.internal) {
        OpenPlan::Answer(error(
            "InternalError.UnknownError",
            "Internal error (injected, not applied).",
        ))
    } else if pick(faults.kms_error) {
        OpenPlan::Answer(error(
            "InternalError.KmsError",
            "Failed to enable encryption (injected).",
        ))
    } else if pick(faults.bad_gateway) {
        OpenPlan::BadGateway
    } else if pick(faults.reset_applied) {
        OpenPlan::Reset { apply: true }
    } else if pick(faults.reset) {
        OpenPlan::Reset { apply: false }
    } else if pick(faults.hang_applied) {
        OpenPlan::Hang { apply: true }
    } else if pick(faults.hang) {
        OpenPlan::Hang { apply: false }
    } else if pick(faults.hang_late) {
        OpenPlan::HangLate
    } else if pick(faults.malformed) {
        OpenPlan::Malformed
    } else {
        OpenPlan::Apply
    }
}

fn apply(shared: &Shared, id: &str) {
    let mut inner = shared.inner.lock().unwrap();
    // A range draws (a fixed delay does not, so seeded runs stay as they were).
    let propagation = draw(&mut inner.rng, Some(&shared.config.propagation));
    if let Some(inst) = inner.world.instances.get_mut(id) {
        inst.pending_apply = inst.pending_apply.saturating_sub(1);
        inst.apply_encryption(Instant::now(), propagation, shared.config.blank_after_apply);
    }
}

/// Acts an accepted Open out in its own task. `decide_open` counted it in
/// progress; the guard, made here before the task starts, uncounts it when
/// the work is done.
pub(super) fn spawn_open(
    shared: Arc<Shared>,
    id: String,
    plan: OpenPlan,
    latency: Duration,
) -> JoinHandle<Response> {
    let guard = InProgress {
        shared: shared.clone(),
        id: id.clone(),
    };
    tokio::spawn(act_open(shared, id, plan, latency, guard))
}

async fn act_open(
    shared: Arc<Shared>,
    id: String,
    plan: OpenPlan,
    latency: Duration,
    in_progress: InProgress,
) -> Response {
    tokio::time::sleep(latency).await;
    match plan {
        OpenPlan::Answer(r) => r,
        OpenPlan::Apply => {
            apply(&shared, &id);
            success(json!({}))
        }
        OpenPlan::InternalApplied => apply_in_background(shared, id, in_progress),
        OpenPlan::BadGateway => bad_gateway(),
        OpenPlan::Reset { apply: applies } => {
            if applies {
                apply(&shared, &id);
            }
            connection_reset()
        }
        OpenPlan::Hang { apply: applies } => {
            if applies {
                apply(&shared, &id);
            }
            tokio::time::sleep(shared.config.hang_for).await;
            error("InternalError", "Hung call finally answered.")
        }
        OpenPlan::HangLate => {
            tokio::time::sleep(shared.config.hang_for).await;
            apply(&shared, &id);
            error(
                "InternalError",
                "Hung call finally answered (applied at the end of the hang).",
            )
        }
        OpenPlan::Malformed => {
            apply(&shared, &id);
            malformed()
        }
        OpenPlan::Bad(kind) => {
            // Applied, like the real InternalError after success: ground truth is
            // "encrypted" whatever the client makes of the answer.
            apply(&shared, &id);
            bad_body(kind, json!({ "RequestId": request_id() }))
        }
    }
}

/// `InternalApplied`: an internal error now, and the change goes through in
/// the background within `apply_within`.
fn apply_in_background(shared: Arc<Shared>, id: String, in_progress: InProgress) -> Response {
    let within = shared.config.apply_within;
    let delay = {
        let mut inner = shared.inner.lock().unwrap();
        if within.is_zero() {
            Duration::ZERO
        } else {
            inner.rng.random_range(Duration::ZERO..=within)
        }
    };
    // Still being worked on until the background apply is done.
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        apply(&shared, &id);
        drop(in_progress);
    });
    error(
        "InternalError.HttpRequestError",
        "Internal error (injected; the change goes through in the background).",
    )
}

fn bad_gateway() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html")],
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    )
        .into_response()
}

/// A body that fails mid-way makes the server drop the connection.
fn connection_reset() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("injected connection reset"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "64")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// JSON cut off inside the envelope.
fn malformed() -> Response {
    json_response(
        StatusCode::OK,
        format!("{{\"Response\": {{\"RequestId\": \"{}\", ", request_id()).into_bytes(),
    )
}
