//! The HTTP side: authentication exactly as Tencent Cloud checks it, per-quota
//! rate limits, the five actions, and fault injection.
// An error here *is* the HTTP answer to send, so `Result<_, Response>` is the natural shape.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::config::{BadAnswer, BadAnswerKind, EmulatorConfig, Latency};
use super::world::{ActionTruth, GroundTruth, InstanceTruth, World, MASTER};
use crate::api::cdb::*;
use crate::api::kms::{DescribeKeyResponse, KeyMetadata, DESCRIBE_KEY};
use crate::api::{sign, Secret};
use crate::model::SlidingWindow;

/// A running emulator.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    config: EmulatorConfig,
    keys: HashMap<String, Secret>,
    started: Instant,
    inner: Mutex<Inner>,
}

struct Inner {
    world: World,
    rng: StdRng,
    /// Accepted arrivals per (action, host, secret id): the rate limit.
    quota: HashMap<(String, String, String), SlidingWindow>,
    /// All arrivals per (action, host, secret id): the measurement.
    seen: HashMap<(String, String, String), SlidingWindow>,
    actions: HashMap<String, ActionTruth>,
    requests_total: u64,
    signature_failures: u64,
    auth_failures: u64,
    /// The bad answers in force (from the config; tests change them mid-run).
    bad_answers: Vec<BadAnswer>,
}

impl Emulator {
    /// Binds `addr` (port 0 for any) and serves until stopped or dropped.
    pub async fn start(
        config: EmulatorConfig,
        world: World,
        addr: SocketAddr,
    ) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            keys: config.credentials.iter().cloned().collect(),
            inner: Mutex::new(Inner {
                world,
                rng: StdRng::seed_from_u64(config.seed),
                quota: HashMap::new(),
                seen: HashMap::new(),
                actions: HashMap::new(),
                requests_total: 0,
                signature_failures: 0,
                auth_failures: 0,
                bad_answers: config.bad_answers.clone(),
            }),
            started: Instant::now(),
            config,
        });
        let app = Router::new()
            .route("/", post(handle))
            .route("/__emulator/state", get(state))
            .layer(axum::middleware::from_fn(stamp_arrival))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Emulator { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the value for `--endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ground_truth(&self) -> GroundTruth {
        self.shared.ground_truth()
    }

    /// Replaces the bad answers in force (tests turn them up or down mid-run).
    pub fn set_bad_answers(&self, bad: Vec<BadAnswer>) {
        self.shared.inner.lock().unwrap().bad_answers = bad;
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn micros(&self, t: Instant) -> u64 {
        t.duration_since(self.started).as_micros() as u64
    }

    fn ground_truth(&self) -> GroundTruth {
        let inner = self.inner.lock().unwrap();
        GroundTruth {
            instances: inner
                .world
                .instances
                .values()
                .map(|i| {
                    (
                        i.id.clone(),
                        InstanceTruth {
                            region: i.region.clone(),
                            instance_type: i.instance_type,
                            encrypted: i.encrypted,
                            key_id: i.key_id.clone(),
                            key_region: i.key_region.clone(),
                            open_calls: i.open_calls,
                            open_calls_when_encrypted: i.open_calls_when_encrypted,
                            blind_open_calls: i.blind_open_calls,
                            overlapping_open_calls: i.overlapping_open_calls,
                        },
                    )
                })
                .collect(),
            actions: inner
                .actions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            requests_total: inner.requests_total,
            signature_failures: inner.signature_failures,
            auth_failures: inner.auth_failures,
        }
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&shared.ground_truth()).unwrap(),
    )
}

/// Every answer carries exactly `Content-Type: application/json` (the Python SDK
/// ignores error bodies under any other value).
fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn error(code: &str, message: &str) -> Response {
    let body = json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": request_id()}});
    json_response(StatusCode::OK, serde_json::to_vec(&body).unwrap())
}

fn success(mut data: Value) -> Response {
    data["RequestId"] = json!(request_id());
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&json!({ "Response": data })).unwrap(),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn service_of(action: &str) -> Option<(&'static str, &'static str)> {
    match action {
        OPEN_DB_INSTANCE_ENCRYPTION
        | DESCRIBE_DB_INSTANCE_INFO
        | DESCRIBE_DB_FEATURES
        | DESCRIBE_DB_INSTANCES => Some(("cdb", "2017-03-20")),
        DESCRIBE_KEY => Some(("kms", "2019-01-18")),
        _ => None,
    }
}

const SIGNATURE_FAILURE: &str = "AuthFailure.SignatureFailure";

fn auth_error(code: &'static str, message: &str) -> (&'static str, Response) {
    (code, error(code, message))
}

/// Checks the TC3 signature the way the server does; `Err` is the code and the answer.
fn authenticate(
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
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
    if !scope_ok || !sign::signatures_match(&expected.signature, &parsed.signature) {
        return Err(auth_error("AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.",
        ));
    }
    Ok(parsed.secret_id)
}

fn draw(rng: &mut StdRng, l: Option<&Latency>) -> Duration {
    match l {
        None => Duration::ZERO,
        Some(l) if l.max <= l.min => l.min,
        Some(l) => rng.random_range(l.min..=l.max),
    }
}

/// What an accepted Open does, decided under the lock, acted out after the latency.
enum OpenPlan {
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

/// When a request arrived: taken as soon as its head is parsed, before its body
/// is read, its signature checked or the shared lock taken, so a busy emulator
/// does not shift its own measurement of the client's rate.
#[derive(Debug, Clone, Copy)]
struct Arrived(Instant);

async fn stamp_arrival(mut req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    req.extensions_mut().insert(Arrived(Instant::now()));
    next.run(req).await
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(Arrived(arrived)): Extension<Arrived>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secret_id = match authenticate(&shared, &headers, &body) {
        Ok(id) => id,
        Err((code, resp)) => {
            let mut inner = shared.inner.lock().unwrap();
            inner.requests_total += 1;
            inner.auth_failures += 1;
            if code == SIGNATURE_FAILURE {
                inner.signature_failures += 1;
            }
            return resp;
        }
    };
    let action = header_str(&headers, "x-tc-action")
        .unwrap_or("")
        .to_string();
    let Some((_, version)) = service_of(&action) else {
        shared.inner.lock().unwrap().requests_total += 1;
        return error(
            "InvalidAction",
            &format!("The action {action:?} is not supported by this emulator."),
        );
    };
    if header_str(&headers, "x-tc-version") != Some(version) {
        shared.inner.lock().unwrap().requests_total += 1;
        return error(
            "NoSuchVersion",
            &format!("The API version for {action} must be {version}."),
        );
    }
    let host = header_str(&headers, "host").unwrap_or("").to_string();
    let region = header_str(&headers, "x-tc-region")
        .unwrap_or("")
        .to_string();
    let params: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ if body.is_empty() => json!({}),
        _ => return error("InvalidParameter", "The request body is not a JSON object."),
    };

    let now = Instant::now();
    let micros = shared.micros(arrived);
    // Rate limit, per (action, Host, SecretId), over a sliding second.
    let (latency, decided, renumber) = {
        let mut inner = shared.inner.lock().unwrap();
        inner.requests_total += 1;
        let key = (action.clone(), host, secret_id);
        let seen_count = inner
            .seen
            .entry(key.clone())
            .or_insert_with(|| SlidingWindow::new(1_000_000))
            .push(micros);
        let limit = shared.config.rate_limits.get(&action).copied().unwrap_or(0) as usize;
        let stats = inner.actions.entry(action.clone()).or_default();
        stats.seen += 1;
        stats.max_in_1s_window = stats.max_in_1s_window.max(seen_count);
        let window = inner
            .quota
            .entry(key)
            .or_insert_with(|| SlidingWindow::new(1_000_000));
        if limit > 0 && window.count_at(micros) >= limit {
            inner.actions.get_mut(&action).unwrap().throttled += 1;
            return error(
                "RequestLimitExceeded",
                "Your current request times exceeds the limit, please try again later.",
            );
        }
        window.push(micros);
        inner.actions.get_mut(&action).unwrap().accepted += 1;
        let latency = draw(&mut inner.rng, shared.config.latency.get(&action));
        // An Open draws its bad answer in `decide_open` (it is applied first).
        let bad = if action == OPEN_DB_INSTANCE_ENCRYPTION {
            None
        } else {
            draw_bad(&mut inner, &action)
        };
        let decided = match bad {
            None | Some(BadAnswerKind::RequestIdNumber) => {
                decide(&shared, &mut inner, &action, &region, &params, now)
            }
            Some(kind) => Decided::Now(bad_read(kind, &mut inner, &region, &params)),
        };
        (
            latency,
            decided,
            bad == Some(BadAnswerKind::RequestIdNumber),
        )
    };

    match decided {
        Decided::Now(resp) => {
            tokio::time::sleep(latency).await;
            if renumber {
                return request_id_as_number(resp).await;
            }
            resp
        }
        // Like the real service, the call goes on when the client goes away (a killed
        // client, a timeout): it runs in its own task and finishes regardless.
        // `decide_open` counted it in progress; the guard, made before any await,
        // uncounts it when the work is done.
        Decided::Open { id, plan } => {
            let guard = InProgress {
                shared: shared.clone(),
                id: id.clone(),
            };
            match tokio::spawn(act_open(shared, id, plan, latency, guard)).await {
                Ok(resp) => resp,
                Err(_) => error("InternalError", "The emulator's worker failed."),
            }
        }
    }
}

enum Decided {
    Now(Response),
    Open { id: String, plan: OpenPlan },
}

fn str_param<'a>(params: &'a Value, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Looks up a master instance in the request's region, or says why not.
fn lookup<'a>(
    world: &'a mut World,
    params: &Value,
    region: &str,
) -> Result<&'a mut super::world::Instance, Response> {
    let Some(id) = str_param(params, "InstanceId") else {
        return Err(error(
            "MissingParameter",
            "The request is missing a required parameter `InstanceId`.",
        ));
    };
    match world.instances.get_mut(id) {
        Some(i) if i.region == region => {
            if i.instance_type != MASTER {
                return Err(error(
                    "InvalidParameter",
                    &format!("{id} is not a master instance; pass the master instance id."),
                ));
            }
            Ok(i)
        }
        _ => Err(error(
            "InvalidParameter.InstanceNotFound",
            &format!("The instance {id} does not exist in region {region:?}."),
        )),
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
    let faults = &shared.config.faults;
    match action {
        DESCRIBE_DB_INSTANCE_INFO => {
            if faults.describe_internal > 0.0 && inner.rng.random_bool(faults.describe_internal) {
                return Decided::Now(error(
                    "InternalError.DBOperationError",
                    "Internal error (injected).",
                ));
            }
            let inst = match lookup(&mut inner.world, params, region) {
                Ok(i) => i,
                Err(r) => return Decided::Now(r),
            };
            let reading = inst.encryption_reading(now);
            let visible = reading == "YES";
            if reading == "NO" && inst.pending_apply == 0 && inst.opens_in_progress == 0 {
                // A NO read taken after the last Open fully settled (nothing still
                // working on it, nothing left to apply): re-sending is safe now.
                inst.no_read_since_last_open = true;
            }
            let resp = DescribeDBInstanceInfoResponse {
                instance_id: inst.id.clone(),
                instance_name: Some(inst.name.clone()),
                encryption: reading.into(),
                key_id: if visible { inst.key_id.clone() } else { None },
                key_region: if visible {
                    inst.key_region.clone()
                } else {
                    None
                },
                default_kms_region: Some(inst.region.clone()),
                request_id: None,
            };
            Decided::Now(success(serde_json::to_value(resp).unwrap()))
        }
        DESCRIBE_DB_FEATURES => {
            Decided::Now(answer(features_answer(&mut inner.world, params, region)))
        }
        DESCRIBE_DB_INSTANCES => Decided::Now(describe_instances(&inner.world, params, region)),
        DESCRIBE_KEY => Decided::Now(answer(key_answer(&inner.world, params, region))),
        OPEN_DB_INSTANCE_ENCRYPTION => decide_open(shared, inner, params, region),
        _ => Decided::Now(error("InvalidAction", "unsupported action")),
    }
}

fn answer(r: Result<Value, Response>) -> Response {
    match r {
        Ok(v) => success(v),
        Err(e) => e,
    }
}

/// The `Response` of a `DescribeDBFeatures` (no side effects).
fn features_answer(world: &mut World, params: &Value, region: &str) -> Result<Value, Response> {
    let inst = lookup(world, params, region)?;
    let resp = DescribeDBFeaturesResponse {
        is_support_audit: true,
        audit_need_upgrade: false,
        is_support_encryption: inst.supports_encryption,
        encryption_need_upgrade: inst.needs_upgrade,
        is_remote_ro: false,
        master_region: inst.region.clone(),
        is_support_update_sub_version: inst.needs_upgrade,
        current_sub_version: "20211030".into(),
        target_sub_version: if inst.needs_upgrade {
            "20230630"
        } else {
            "20211030"
        }
        .into(),
        request_id: None,
    };
    Ok(serde_json::to_value(resp).unwrap())
}

/// The `Response` of a kms `DescribeKey` (no side effects).
fn key_answer(world: &World, params: &Value, region: &str) -> Result<Value, Response> {
    let Some(key_id) = str_param(params, "KeyId") else {
        return Err(error(
            "MissingParameter",
            "The request is missing a required parameter `KeyId`.",
        ));
    };
    match world.keys.get(&(region.to_string(), key_id.to_string())) {
        None => Err(error(
            "ResourceUnavailable.CmkNotFound",
            &format!("The key {key_id} does not exist in region {region:?}."),
        )),
        Some(k) => {
            let resp = DescribeKeyResponse {
                key_metadata: KeyMetadata {
                    key_id: k.id.clone(),
                    alias: format!("alias-{}", &k.id[..8.min(k.id.len())]),
                    create_time: 1_700_000_000,
                    description: "emulated key".into(),
                    key_state: k.state.clone(),
                    key_usage: "ENCRYPT_DECRYPT".into(),
                    origin: "TENCENT_KMS".into(),
                },
                request_id: None,
            };
            Ok(serde_json::to_value(resp).unwrap())
        }
    }
}

/// Draws at most one configured bad answer for `action` (the first that fires).
fn draw_bad(inner: &mut Inner, action: &str) -> Option<BadAnswerKind> {
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
fn bad_read(kind: BadAnswerKind, inner: &mut Inner, region: &str, params: &Value) -> Response {
    let mut data = match kind {
        BadAnswerKind::EncryptionNumber
        | BadAnswerKind::EncryptionNull
        | BadAnswerKind::EncryptionBool
        | BadAnswerKind::EncryptionObject => {
            let inst = match lookup(&mut inner.world, params, region) {
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
            match features_answer(&mut inner.world, params, region) {
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
fn bad_body(kind: BadAnswerKind, mut data: Value) -> Response {
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
async fn request_id_as_number(resp: Response) -> Response {
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

fn decide_open(shared: &Shared, inner: &mut Inner, params: &Value, region: &str) -> Decided {
    let key_id = str_param(params, "KeyId").map(str::to_string);
    let key_region = str_param(params, "KeyRegion").map(str::to_string);
    let key_state = match (&key_id, &key_region) {
        (Some(_), None) => {
            return Decided::Now(error(
                "InvalidParameter",
                "KeyRegion is required when KeyId is given.",
            ))
        }
        (Some(k), Some(r)) => match inner.world.keys.get(&(r.clone(), k.clone())) {
            None => {
                return Decided::Now(error(
                    "InvalidParameter",
                    &format!("The key {k} does not exist in KeyRegion {r}."),
                ))
            }
            Some(key) => Some(key.state.clone()),
        },
        _ => None,
    };
    let faults = shared.config.faults.clone();
    let roll: f64 = inner.rng.random();
    let bad = draw_bad(inner, OPEN_DB_INSTANCE_ENCRYPTION);
    let inst = match lookup(&mut inner.world, params, region) {
        Ok(i) => i,
        Err(r) => return Decided::Now(r),
    };
    // Ground truth of the call itself.
    if inst.open_calls > 0 && !inst.no_read_since_last_open {
        inst.blind_open_calls += 1;
    }
    if inst.opens_in_progress > 0 {
        inst.overlapping_open_calls += 1;
    }
    inst.open_calls += 1;
    inst.no_read_since_last_open = false;
    if inst.encrypted {
        inst.open_calls_when_encrypted += 1;
        return Decided::Now(error(
            "OperationDenied",
            "Encryption is already enabled for this instance and cannot be changed.",
        ));
    }
    if inst.init_flag != 1 || inst.status != 1 {
        return Decided::Now(error(
            "UnsupportedOperation",
            "The instance is not initialised or not running.",
        ));
    }
    if !inst.supports_encryption || inst.needs_upgrade {
        return Decided::Now(error(
            "UnsupportedOperation",
            "The instance does not support encryption; check DescribeDBFeatures.",
        ));
    }
    if key_state.as_deref().is_some_and(|s| s != "Enabled") {
        return Decided::Now(error(
            "InternalError.KmsError",
            "Failed to enable encryption: the KMS key is not usable.",
        ));
    }
    inst.key_id = Some(key_id.unwrap_or_else(|| "KMS-CDB".into()));
    inst.key_region = Some(key_region.unwrap_or_else(|| inst.region.clone()));
    let id = inst.id.clone();
    // Pick at most one fault by walking the cumulative probabilities.
    let mut acc = 0.0;
    let mut pick = |p: f64| {
        acc += p;
        roll < acc
    };
    let plan = if let Some(kind) = bad {
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
    };
    let applies = matches!(
        plan,
        OpenPlan::Apply
            | OpenPlan::InternalApplied
            | OpenPlan::Reset { apply: true }
            | OpenPlan::Hang { apply: true }
            | OpenPlan::HangLate
            | OpenPlan::Malformed
            | OpenPlan::Bad(_)
    );
    if applies {
        inst.pending_apply += 1;
    }
    // Accepted: being worked on until `act_open` is done (see `InProgress`).
    inst.opens_in_progress += 1;
    Decided::Open { id, plan }
}

fn apply(shared: &Shared, id: &str) {
    let mut inner = shared.inner.lock().unwrap();
    if let Some(inst) = inner.world.instances.get_mut(id) {
        inst.pending_apply = inst.pending_apply.saturating_sub(1);
        inst.apply_encryption(
            Instant::now(),
            shared.config.propagation,
            shared.config.blank_after_apply,
        );
    }
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
        OpenPlan::InternalApplied => {
            let within = shared.config.apply_within;
            let delay = {
                let mut inner = shared.inner.lock().unwrap();
                if within.is_zero() {
                    Duration::ZERO
                } else {
                    inner.rng.random_range(Duration::ZERO..=within)
                }
            };
            let bg = shared.clone();
            // Still being worked on until the background apply is done.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                apply(&bg, &id);
                drop(in_progress);
            });
            error(
                "InternalError.HttpRequestError",
                "Internal error (injected; the change goes through in the background).",
            )
        }
        OpenPlan::BadGateway => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        OpenPlan::Reset { apply: applies } => {
            if applies {
                apply(&shared, &id);
            }
            // A body that fails mid-way makes the server drop the connection.
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
            json_response(
                StatusCode::OK,
                format!("{{\"Response\": {{\"RequestId\": \"{}\", ", request_id()).into_bytes(),
            )
        }
        OpenPlan::Bad(kind) => {
            // Applied, like the real InternalError after success: ground truth is
            // "encrypted" whatever the client makes of the answer.
            apply(&shared, &id);
            bad_body(kind, json!({ "RequestId": request_id() }))
        }
    }
}

fn describe_instances(world: &World, params: &Value, region: &str) -> Response {
    let req: DescribeDBInstancesRequest = match serde_json::from_value(params.clone()) {
        Ok(r) => r,
        Err(e) => return error("InvalidParameter", &format!("Invalid parameters: {e}")),
    };
    if region.is_empty() {
        return error(
            "InvalidParameter",
            "X-TC-Region is required for DescribeDBInstances.",
        );
    }
    let offset = req.offset.unwrap_or(0);
    let limit = req.limit.unwrap_or(20);
    if offset < 0 || !(1..=2000).contains(&limit) {
        return error(
            "InvalidParameterValue",
            "Offset must be >= 0 and Limit within 1..2000.",
        );
    }
    let matching: Vec<&super::world::Instance> = world
        .instances
        .values()
        .filter(|i| i.region == region)
        .filter(|i| {
            req.instance_types
                .as_ref()
                .is_none_or(|t| t.contains(&i.instance_type))
        })
        .filter(|i| req.status.as_ref().is_none_or(|s| s.contains(&i.status)))
        .filter(|i| req.init_flag.is_none_or(|f| f == i.init_flag))
        .filter(|i| {
            req.instance_ids
                .as_ref()
                .is_none_or(|ids| ids.contains(&i.id))
        })
        .filter(|i| {
            req.tags.as_ref().is_none_or(|tags| {
                tags.iter()
                    .all(|t| i.tags.iter().any(|(k, v)| *k == t.key && *v == t.value))
            })
        })
        .collect();
    let items: Vec<InstanceInfo> = matching
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|i| InstanceInfo {
            instance_id: i.id.clone(),
            instance_name: i.name.clone(),
            region: i.region.clone(),
            zone: i.zone.clone(),
            status: i.status,
            init_flag: i.init_flag,
            task_status: 0,
            instance_type: i.instance_type,
            engine_version: "8.0".into(),
            device_type: "UNIVERSAL".into(),
            tag_list: i
                .tags
                .iter()
                .map(|(k, v)| Tag {
                    tag_key: k.clone(),
                    tag_value: v.clone(),
                })
                .collect(),
        })
        .collect();
    let resp = DescribeDBInstancesResponse {
        total_count: matching.len() as i64,
        items,
        request_id: None,
    };
    success(serde_json::to_value(resp).unwrap())
}
