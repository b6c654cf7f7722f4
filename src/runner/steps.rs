//! One step = one API call for one instance, its journal record, and the
//! decision about what comes next. Workers run steps; the dispatcher decides
//! when. Every rule of SPEC §1 that concerns a single instance lives here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::Instrument;

use super::RunConfig;
use crate::api::cdb::*;
use crate::api::kms::{DescribeKeyRequest, DescribeKeyResponse};
use crate::api::{after_settled_no, stops_run};
use crate::api::{classify, CallKind, Called, Client, Endpoint, Failure, Gate, Outcome, Service};
use crate::journal::{CallRecord, Change, Fact, InstanceRow, Journal, JournalError};
use crate::model::{hint, now_ms, Action, Code, Disposition, InstanceId, State};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Preflight `DescribeDBInstanceInfo`: already encrypted? Also clears the first attempt.
    PreflightRead,
    Features,
    KmsKey,
    /// Journal-only: commit the attempt before it may be sent.
    WriteAhead,
    Send,
    /// After an attempt: has it taken effect?
    VerifyRead,
    /// Before re-sending after a definite rejection: a fresh NO is required.
    PreSendRead,
}

impl Step {
    pub fn action(self) -> Action {
        match self {
            Step::PreflightRead | Step::VerifyRead | Step::PreSendRead => {
                Action::DescribeDBInstanceInfo
            }
            Step::Features => Action::DescribeDBFeatures,
            Step::KmsKey => Action::DescribeKey,
            Step::WriteAhead | Step::Send => Action::OpenDBInstanceEncryption,
        }
    }

    /// Lower runs first within a bucket: finish instances before starting new ones.
    pub fn priority(self) -> u8 {
        match self {
            Step::Send | Step::WriteAhead => 0,
            Step::VerifyRead | Step::PreSendRead => 1,
            Step::Features | Step::KmsKey => 2,
            Step::PreflightRead => 3,
        }
    }
}

/// An instance being worked on, as the runner knows it.
#[derive(Debug, Clone)]
pub struct Active {
    pub id: InstanceId,
    pub region: String,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    pub state: State,
    pub attempts: u32,
    pub budget_base: u32,
    pub kms_errors: u32,
    pub cleared: bool,
    /// Monotonic: from when a `NO` read counts for the last attempt (SPEC §1).
    /// `None` when there is nothing to wait for (no attempt, or already cleared).
    pub settles_at: Option<Instant>,
    /// Monotonic: until when to keep polling for `YES` after an accepted attempt.
    pub verify_until: Option<Instant>,
    pub accepted: bool,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub read_failures: u32,
    pub polls: u32,
    /// Since when reads have answered neither `YES` nor `NO`.
    pub unreadable_since: Option<Instant>,
    pub cdb: Endpoint,
    pub kms: Option<Endpoint>,
}

impl Active {
    pub fn from_row(row: &InstanceRow, cdb: Endpoint, kms: Option<Endpoint>) -> Active {
        Active {
            id: row.instance_id.clone(),
            region: row.region.clone(),
            key_id: row.key_id.clone(),
            key_region: row.key_region.clone(),
            state: row.state,
            attempts: row.attempts,
            budget_base: row.budget_base,
            kms_errors: row.kms_errors,
            cleared: row.cleared_to_send,
            settles_at: None,
            verify_until: None,
            accepted: row.last_outcome == Some(Disposition::Accepted),
            last_error_code: row.last_error_code.clone(),
            last_error_message: row.last_error_message.clone(),
            read_failures: 0,
            polls: 0,
            unreadable_since: None,
            cdb,
            kms,
        }
    }

    fn attempts_used(&self) -> u32 {
        self.attempts.saturating_sub(self.budget_base)
    }

    /// Takes the journal's word for what it now holds.
    fn absorb(&mut self, row: &InstanceRow) {
        self.state = row.state;
        self.attempts = row.attempts;
        self.cleared = row.cleared_to_send;
        if self.cleared {
            self.settles_at = None;
        }
    }

    /// Whether a read sent at `sent_at` comes after the last attempt settled.
    fn settled_at(&self, sent_at: Instant) -> bool {
        self.settles_at.is_none_or(|s| sent_at >= s)
    }
}

/// What the dispatcher should do with the instance next.
#[derive(Debug)]
pub enum Next {
    /// Terminal (or, when planning, preflight passed).
    Done,
    After(Step, Duration),
    /// The run is stopping; the journal holds where this instance is.
    Parked,
    /// The journal could not record a fact: the run cannot go on safely (the
    /// reason travels in `StopReason::JournalFailed`).
    JournalFailed,
}

/// Why the run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    AccountWide {
        code: String,
        message: String,
    },
    /// Nothing could be sent before any answer came back: wrong endpoint, DNS, network.
    Unreachable {
        endpoint: String,
        message: String,
    },
    JournalFailed(String),
}

#[derive(Debug)]
pub struct StepResult {
    pub active: Active,
    pub step: Step,
    pub next: Next,
    pub stop: Option<StopReason>,
    pub throttled: bool,
    /// The server answered with something other than an account-wide refusal.
    pub definite_answer: bool,
    /// Whether this step made an HTTP request.
    pub http: bool,
    /// The request could not be sent at all (connect refused, DNS): the reason.
    pub not_sent: Option<String>,
}

/// Shared by all workers.
pub struct Ctx {
    pub journal: Journal,
    pub client: Client,
    pub config: RunConfig,
    pub run_id: Option<i64>,
}

fn record<T>(
    action: Action,
    endpoint: &Endpoint,
    called: &Called<T>,
    request_id: Option<String>,
) -> CallRecord {
    let (code, message) = match &called.result {
        Err(f) => (Some(f.code()), Some(truncate(&f.message()))),
        Ok(_) => (None, None),
    };
    CallRecord {
        action,
        endpoint: endpoint.host.clone(),
        sent_at_ms: called.sent_at_ms,
        latency_ms: called.latency.as_millis() as i64,
        request_id: request_id.or_else(|| {
            called
                .result
                .as_ref()
                .err()
                .and_then(|f| f.request_id().map(str::to_string))
        }),
        error_code: code,
        error_message: message,
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 500 {
        s.to_string()
    } else {
        s.chars().take(500).collect::<String>() + "…"
    }
}

fn is_definite(f: &Failure) -> bool {
    matches!(f, Failure::Api { code, .. } if !code.starts_with("AuthFailure"))
}

fn jitter<R: Rng>(rng: &mut R, b: &super::backoff::Backoff, n: u32) -> Duration {
    b.delay(n, rng)
}

impl Ctx {
    async fn apply(
        &self,
        a: &mut Active,
        fact: Fact,
        call: Option<CallRecord>,
    ) -> Result<InstanceRow, JournalError> {
        let fact_name = fact.name();
        let applied = self
            .journal
            .apply(Change {
                instance_id: a.id.clone(),
                fact,
                run_id: self.run_id,
                call,
                at_ms: now_ms(),
            })
            .await?;
        tracing::debug!(
            state = %applied.state,
            attempts = applied.attempts,
            cleared_to_send = applied.cleared_to_send,
            "journaled {}",
            fact_name
        );
        a.absorb(&applied);
        Ok(applied)
    }

    /// One API call through its bucket's wire gate, and its journal record (send
    /// time, latency, RequestId, error). Also returns the monotonic send time.
    async fn call<Q: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        service: Service,
        action: Action,
        region: &str,
        req: &Q,
        gate: &dyn Gate,
    ) -> (Result<R, Failure>, CallRecord, Instant) {
        tracing::debug!("sending {action}");
        let called = self
            .client
            .call_gated::<Q, R>(endpoint, service, action.as_str(), Some(region), req, gate)
            .await;
        let request_id = called
            .result
            .as_ref()
            .ok()
            .and_then(|x| x.request_id.clone());
        let rec = record(action, endpoint, &called, request_id);
        if let Some(id) = &rec.request_id {
            tracing::Span::current().record("request_id", id.as_str());
        }
        tracing::debug!(
            latency_ms = rec.latency_ms,
            error_code = rec.error_code.as_deref(),
            "answered {action}"
        );
        (called.result.map(|a| a.data), rec, called.sent_at)
    }

    fn settle_ms(&self) -> i64 {
        self.config.settle.as_millis() as i64
    }

    fn retry_delay(&self, n: u32) -> Duration {
        jitter(&mut rand::rng(), &self.config.retry_backoff, n)
    }
}

/// Runs one step for `a` and decides what comes next. `gate` admits the
/// step's request onto the wire (every step but the write-ahead sends one).
pub async fn execute(ctx: Arc<Ctx>, mut a: Active, step: Step, gate: Arc<dyn Gate>) -> StepResult {
    let mut r = StepResult {
        active: a.clone(),
        step,
        next: Next::Done,
        stop: None,
        throttled: false,
        definite_answer: false,
        http: step != Step::WriteAhead,
        not_sent: None,
    };
    // One span per step: every line it logs carries the instance, its attempt,
    // the action and endpoint, and (once answered) the RequestId, so
    // `--log-format json -v | jq 'select(.span.instance_id == "cdb-…")'` tells
    // one instance's whole story in order.
    let span = tracing::info_span!(
        "step",
        instance_id = %a.id,
        attempt = a.attempts,
        step = ?step,
        action = step.action().as_str(),
        endpoint = match step {
            Step::KmsKey => a.kms.as_ref().map_or("", |e| e.host.as_str()),
            _ => a.cdb.host.as_str(),
        },
        request_id = tracing::field::Empty,
    );
    let next = run_step(&ctx, &mut a, step, gate.as_ref(), &mut r)
        .instrument(span)
        .await;
    r.next = match next {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(instance_id = %a.id, error = %e, "the journal could not record a fact; stopping");
            r.stop = Some(StopReason::JournalFailed(e.to_string()));
            Next::JournalFailed
        }
    };
    r.active = a;
    r
}

async fn run_step(
    ctx: &Ctx,
    a: &mut Active,
    step: Step,
    gate: &dyn Gate,
    r: &mut StepResult,
) -> StepOutcome {
    match step {
        Step::PreflightRead | Step::VerifyRead | Step::PreSendRead => {
            read(ctx, a, step, gate, r).await
        }
        Step::Features => features(ctx, a, gate, r).await,
        Step::KmsKey => kms_key(ctx, a, gate, r).await,
        Step::WriteAhead => write_ahead(ctx, a).await,
        Step::Send => send(ctx, a, gate, r).await,
    }
}

type StepOutcome = Result<Next, JournalError>;

/// Time from now until `at` (zero if it has passed), plus a few milliseconds so a
/// read scheduled "at" a settle time is sent after it.
fn until(at: Instant) -> Duration {
    at.saturating_duration_since(Instant::now()) + Duration::from_millis(5)
}

async fn read(
    ctx: &Ctx,
    a: &mut Active,
    step: Step,
    gate: &dyn Gate,
    r: &mut StepResult,
) -> StepOutcome {
    let req = InstanceIdRequest {
        instance_id: a.id.to_string(),
    };
    let (result, mut rec, sent_at) = ctx
        .call::<_, serde_json::Value>(
            &a.cdb,
            Service::Cdb,
            Action::DescribeDBInstanceInfo,
            &a.region,
            &req,
            gate,
        )
        .await;
    let answer = match result {
        Ok(ans) => ans,
        Err(f) => return read_failed(ctx, a, step, f, rec, r).await,
    };
    r.definite_answer = true;
    a.read_failures = 0;
    let encrypted = match EncryptionReading::of(&answer) {
        EncryptionReading::Yes => true,
        EncryptionReading::No => false,
        EncryptionReading::Unreadable(raw) => {
            rec.error_code = Some(Code::EncryptionUnreadable.as_str().into());
            rec.error_message = Some(format!("Encryption was {raw}: neither YES nor NO"));
            return unreadable(ctx, a, step, raw, rec).await;
        }
    };
    a.unreadable_since = None;
    let settled = a.settled_at(sent_at);
    ctx.apply(a, Fact::EncryptionRead { encrypted, settled }, Some(rec))
        .await?;
    if a.state.is_terminal() {
        return Ok(Next::Done);
    }
    match step {
        Step::PreflightRead => Ok(Next::After(Step::Features, Duration::ZERO)),
        Step::PreSendRead if a.cleared => Ok(Next::After(Step::WriteAhead, Duration::ZERO)),
        Step::PreSendRead => {
            // Read too early for the last attempt to count as settled: wait for it.
            let wait = a.settles_at.map(until).unwrap_or(Duration::from_secs(1));
            Ok(Next::After(Step::PreSendRead, wait))
        }
        _ => verified_no(ctx, a).await,
    }
}

/// `Encryption` was neither `YES` nor `NO`: never a `NO`. Ask again with
/// backoff; past the verify deadline, fail with the raw value (no re-send).
async fn unreadable(
    ctx: &Ctx,
    a: &mut Active,
    step: Step,
    raw: String,
    rec: CallRecord,
) -> StepOutcome {
    let now = Instant::now();
    let since = *a.unreadable_since.get_or_insert(now);
    if now.duration_since(since) >= ctx.config.verify_deadline {
        let message = format!(
            "DescribeDBInstanceInfo kept answering Encryption={raw} (neither YES nor NO) for {:?}; whether encryption is on is unknown, so nothing was re-sent: check the console",
            now.duration_since(since)
        );
        let code = Code::VerificationUnreadable.as_str().to_string();
        let fact = if a.state == State::Pending {
            Fact::PreflightFailed { code, message }
        } else {
            Fact::GaveUp { code, message }
        };
        ctx.apply(a, fact, Some(rec)).await?;
        return Ok(Next::Done);
    }
    ctx.apply(a, Fact::Called, Some(rec)).await?;
    a.polls += 1;
    let wait =
        jitter(&mut rand::rng(), &ctx.config.poll_backoff, a.polls).max(Duration::from_millis(200));
    Ok(Next::After(step, wait))
}

/// A verification read said NO. Poll again, retry, or give up.
async fn verified_no(ctx: &Ctx, a: &mut Active) -> StepOutcome {
    let cfg = &ctx.config;
    let now = Instant::now();
    if a.accepted && a.verify_until.is_some_and(|d| now < d) {
        // Accepted, not visible yet (propagation): keep polling until the deadline.
        a.polls += 1;
        let wait = jitter(&mut rand::rng(), &cfg.poll_backoff, a.polls)
            .max(Duration::from_millis(200))
            .min(a.verify_until.map(until).unwrap_or(Duration::MAX));
        return Ok(Next::After(Step::VerifyRead, wait));
    }
    if !a.cleared {
        // The server may still be working on the attempt: this NO does not count.
        // Ask again once the attempt has settled.
        let wait = a.settles_at.map(until).unwrap_or(Duration::from_secs(1));
        return Ok(Next::After(Step::VerifyRead, wait));
    }
    // A settled NO: the last attempt did not take effect.
    let code = a.last_error_code.clone();
    let kms = code
        .as_deref()
        .is_some_and(|c| c.starts_with("InternalError.KmsError"));
    if kms && a.kms_errors > cfg.kms_error_retries {
        let message = format!(
            "OpenDBInstanceEncryption answered InternalError.KmsError {} times and a settled read confirmed Encryption=NO each time: {}",
            a.kms_errors,
            hint("InternalError.KmsError").unwrap_or("")
        );
        ctx.apply(
            a,
            Fact::GaveUp {
                code: "InternalError.KmsError".into(),
                message,
            },
            None,
        )
        .await?;
        return Ok(Next::Done);
    }
    if let Some(code) = code.as_deref().filter(|_| !a.accepted) {
        if after_settled_no(code) == Outcome::InstanceFailed {
            // Not retryable (UnauthorizedOperation, ResourceNotFound, …), and now
            // known not to have taken effect.
            let message = format!(
                "{}; a read after the attempt settled confirmed Encryption=NO",
                a.last_error_message.clone().unwrap_or_default()
            );
            ctx.apply(
                a,
                Fact::GaveUp {
                    code: code.to_string(),
                    message,
                },
                None,
            )
            .await?;
            return Ok(Next::Done);
        }
    }
    if a.attempts_used() >= cfg.max_attempts {
        let (code, message) = if a.accepted {
            (
                Code::VerifyDeadlineExceeded.as_str().to_string(),
                format!("the last attempt was accepted but Encryption still read NO after {:?}; gave up after {} attempts", cfg.verify_deadline, a.attempts_used()),
            )
        } else {
            (
                a.last_error_code
                    .clone()
                    .unwrap_or_else(|| Code::AttemptsExhausted.as_str().into()),
                format!(
                    "{}; verified NO, gave up after {} attempts",
                    a.last_error_message.clone().unwrap_or_default(),
                    a.attempts_used()
                ),
            )
        };
        ctx.apply(a, Fact::GaveUp { code, message }, None).await?;
        return Ok(Next::Done);
    }
    let delay = ctx.retry_delay(a.attempts_used().saturating_sub(1));
    let reason = if a.accepted {
        "accepted, but Encryption read NO past the verify deadline".to_string()
    } else {
        format!(
            "{} then a settled read said NO",
            a.last_error_code.as_deref().unwrap_or("ambiguous outcome")
        )
    };
    ctx.apply(
        a,
        Fact::RetryScheduled {
            next_attempt_at_ms: now_ms() + delay.as_millis() as i64,
            reason,
        },
        None,
    )
    .await?;
    Ok(Next::After(Step::WriteAhead, delay))
}

/// A read (Describe*) failed: retry it, fail the instance, or stop the run.
async fn read_failed(
    ctx: &Ctx,
    a: &mut Active,
    step: Step,
    f: Failure,
    rec: CallRecord,
    r: &mut StepResult,
) -> StepOutcome {
    r.definite_answer = is_definite(&f);
    if let Failure::NotSent(m) = &f {
        r.not_sent = Some(m.clone());
    }
    let (code, message) = (f.code(), f.message());
    match classify(CallKind::Read, &f) {
        Outcome::RunStop => {
            ctx.apply(a, Fact::Called, Some(rec)).await?;
            r.stop = Some(StopReason::AccountWide { code, message });
            Ok(Next::Parked)
        }
        Outcome::InstanceFailed => {
            let message = format!("{} answered {code}: {message}", rec.action);
            let fact = if a.state == State::Pending {
                Fact::PreflightFailed { code, message }
            } else {
                Fact::GaveUp { code, message }
            };
            ctx.apply(a, fact, Some(rec)).await?;
            Ok(Next::Done)
        }
        outcome => {
            r.throttled = outcome == Outcome::Throttled;
            ctx.apply(a, Fact::Called, Some(rec)).await?;
            a.read_failures += 1;
            if a.read_failures > 2 * ctx.config.max_attempts {
                let message = format!(
                    "{} kept failing ({} times), last {code}: {message}",
                    step.action(),
                    a.read_failures
                );
                let fact = if a.state == State::Pending {
                    Fact::PreflightFailed { code, message }
                } else {
                    Fact::GaveUp {
                        code: Code::VerificationUnavailable.as_str().into(),
                        message: format!(
                            "the outcome of the last attempt could not be verified: {message}"
                        ),
                    }
                };
                ctx.apply(a, fact, None).await?;
                return Ok(Next::Done);
            }
            Ok(Next::After(step, ctx.retry_delay(a.read_failures - 1)))
        }
    }
}

async fn features(ctx: &Ctx, a: &mut Active, gate: &dyn Gate, r: &mut StepResult) -> StepOutcome {
    let req = InstanceIdRequest {
        instance_id: a.id.to_string(),
    };
    let (result, rec, _) = ctx
        .call::<_, DescribeDBFeaturesResponse>(
            &a.cdb,
            Service::Cdb,
            Action::DescribeDBFeatures,
            &a.region,
            &req,
            gate,
        )
        .await;
    let f = match result {
        Ok(f) => f,
        Err(f) => return read_failed(ctx, a, Step::Features, f, rec, r).await,
    };
    r.definite_answer = true;
    a.read_failures = 0;
    if !f.is_support_encryption {
        ctx.apply(
            a,
            Fact::PreflightFailed {
                code: Code::UnsupportedEncryption.as_str().into(),
                message:
                    "DescribeDBFeatures: IsSupportEncryption is false; this instance cannot use TDE"
                        .into(),
            },
            Some(rec),
        )
        .await?;
        return Ok(Next::Done);
    }
    if f.encryption_need_upgrade {
        ctx.apply(
            a,
            Fact::PreflightFailed {
                code: Code::EncryptionNeedUpgrade.as_str().into(),
                message: format!(
                    "DescribeDBFeatures: EncryptionNeedUpgrade is true; upgrade the kernel minor version ({} -> {}) first",
                    f.current_sub_version, f.target_sub_version
                ),
            },
            Some(rec),
        )
        .await?;
        return Ok(Next::Done);
    }
    ctx.apply(a, Fact::Called, Some(rec)).await?;
    Ok(after_preflight(ctx, a, Step::Features))
}

fn after_preflight(ctx: &Ctx, a: &Active, done: Step) -> Next {
    if done == Step::Features && ctx.config.check_kms && a.key_id.is_some() {
        return Next::After(Step::KmsKey, Duration::ZERO);
    }
    if ctx.config.plan_only {
        return Next::Done;
    }
    Next::After(Step::WriteAhead, Duration::ZERO)
}

async fn kms_key(ctx: &Ctx, a: &mut Active, gate: &dyn Gate, r: &mut StepResult) -> StepOutcome {
    let (Some(key_id), Some(key_region), Some(ep)) =
        (a.key_id.clone(), a.key_region.clone(), a.kms.clone())
    else {
        return Ok(after_preflight(ctx, a, Step::KmsKey));
    };
    let (result, rec, _) = ctx
        .call::<_, DescribeKeyResponse>(
            &ep,
            Service::Kms,
            Action::DescribeKey,
            &key_region,
            &DescribeKeyRequest {
                key_id: key_id.clone(),
            },
            gate,
        )
        .await;
    let meta = match result {
        Ok(ans) => ans.key_metadata,
        Err(f) => return read_failed(ctx, a, Step::KmsKey, f, rec, r).await,
    };
    r.definite_answer = true;
    a.read_failures = 0;
    if meta.key_state != "Enabled" {
        ctx.apply(
            a,
            Fact::PreflightFailed {
                code: Code::KmsKeyNotEnabled.as_str().into(),
                message: format!(
                    "KMS key {key_id} in {key_region} is {}, not Enabled",
                    meta.key_state
                ),
            },
            Some(rec),
        )
        .await?;
        return Ok(Next::Done);
    }
    ctx.apply(a, Fact::Called, Some(rec)).await?;
    Ok(after_preflight(ctx, a, Step::KmsKey))
}

fn open_request(a: &Active) -> OpenDBInstanceEncryptionRequest {
    OpenDBInstanceEncryptionRequest {
        instance_id: a.id.to_string(),
        key_id: a.key_id.clone(),
        key_region: a.key_id.as_ref().and(a.key_region.clone()),
    }
}

async fn write_ahead(ctx: &Ctx, a: &mut Active) -> StepOutcome {
    let request = serde_json::json!({
        "endpoint": a.cdb.host,
        "region": a.region,
        "params": open_request(a),
    })
    .to_string();
    match ctx.apply(a, Fact::AttemptWritten { request }, None).await {
        Ok(_) => Ok(Next::After(Step::Send, Duration::ZERO)),
        // The journal refuses: no settled NO since the last attempt. Get one first.
        Err(JournalError::NotCleared { .. }) => Ok(Next::After(Step::PreSendRead, Duration::ZERO)),
        Err(e) => Err(e),
    }
}

async fn send(ctx: &Ctx, a: &mut Active, gate: &dyn Gate, r: &mut StepResult) -> StepOutcome {
    let (result, rec, sent_at) = ctx
        .call::<_, OpenDBInstanceEncryptionResponse>(
            &a.cdb,
            Service::Cdb,
            Action::OpenDBInstanceEncryption,
            &a.region,
            &open_request(a),
            gate,
        )
        .await;
    // Wall clock, for the audit only: every decision uses `sent_at`.
    let settles_at_ms = rec.sent_at_ms + ctx.settle_ms();
    a.polls = 0;
    a.last_error_code = rec.error_code.clone();
    a.last_error_message = rec.error_message.clone();
    let failure = match result {
        Ok(_) => {
            r.definite_answer = true;
            return accepted(ctx, a, sent_at, settles_at_ms, rec).await;
        }
        Err(f) => f,
    };
    r.definite_answer = is_definite(&failure);
    if let Failure::NotSent(m) = &failure {
        r.not_sent = Some(m.clone());
    }
    a.accepted = false;
    match classify(CallKind::Write, &failure) {
        Outcome::Success | Outcome::Ambiguous => {
            let code = failure.code();
            if stops_run(&code) {
                r.stop = Some(StopReason::AccountWide {
                    code: code.clone(),
                    message: failure.message(),
                });
            }
            ambiguous(ctx, a, sent_at, settles_at_ms, rec, r.stop.is_some()).await
        }
        Outcome::InstanceFailed => {
            // A parameter error: documented as not carried out.
            ctx.apply(
                a,
                Fact::AttemptAnswered {
                    disposition: Disposition::Refused,
                    settles_at_ms: now_ms(),
                    next_attempt_at_ms: None,
                    kms_error: false,
                },
                Some(rec),
            )
            .await?;
            Ok(Next::Done)
        }
        outcome @ (Outcome::Throttled | Outcome::Transient | Outcome::RunStop) => {
            r.throttled = outcome == Outcome::Throttled;
            if outcome == Outcome::RunStop {
                r.stop = Some(StopReason::AccountWide {
                    code: failure.code(),
                    message: failure.message(),
                });
            }
            not_applied(ctx, a, outcome, rec).await
        }
    }
}

/// The Open was accepted: poll for `YES` until the verify deadline; a `NO` counts
/// only once the attempt has settled.
async fn accepted(
    ctx: &Ctx,
    a: &mut Active,
    sent_at: Instant,
    settles_at_ms: i64,
    rec: CallRecord,
) -> StepOutcome {
    let cfg = &ctx.config;
    a.accepted = true;
    a.settles_at = Some(sent_at + cfg.settle);
    a.verify_until = Some(sent_at + cfg.verify_deadline.max(cfg.settle));
    ctx.apply(
        a,
        Fact::AttemptAnswered {
            disposition: Disposition::Accepted,
            settles_at_ms,
            next_attempt_at_ms: None,
            kms_error: false,
        },
        Some(rec),
    )
    .await?;
    Ok(Next::After(Step::VerifyRead, Duration::ZERO))
}

/// Anything that does not prove the Open was not carried out: the server may
/// still apply it until the attempt settles. One early read (a `YES` ends it),
/// then one once it has settled; nothing is re-sent before a settled `NO`.
async fn ambiguous(
    ctx: &Ctx,
    a: &mut Active,
    sent_at: Instant,
    settles_at_ms: i64,
    rec: CallRecord,
    stopping: bool,
) -> StepOutcome {
    let kms_error = rec
        .error_code
        .as_deref()
        .is_some_and(|c| c.starts_with("InternalError.KmsError"));
    if kms_error {
        a.kms_errors += 1;
    }
    let settles_at = sent_at + ctx.config.settle;
    a.settles_at = Some(settles_at);
    a.verify_until = None;
    ctx.apply(
        a,
        Fact::AttemptAnswered {
            disposition: Disposition::Ambiguous,
            settles_at_ms,
            next_attempt_at_ms: None,
            kms_error,
        },
        Some(rec),
    )
    .await?;
    if stopping {
        // The journal holds the attempt as `verifying`; the next run verifies it
        // after a fresh settle window.
        return Ok(Next::Parked);
    }
    let first = ctx.config.ambiguous_first_read.min(until(settles_at));
    Ok(Next::After(Step::VerifyRead, first))
}

/// Never sent, throttled, or refused for the account: documented as not carried
/// out, so the attempt settles at once. A fresh `NO` still comes before a re-send.
async fn not_applied(ctx: &Ctx, a: &mut Active, outcome: Outcome, rec: CallRecord) -> StepOutcome {
    let stop = outcome == Outcome::RunStop;
    let exhausted = a.attempts_used() >= ctx.config.max_attempts && !stop;
    let delay = if stop {
        Duration::ZERO
    } else {
        ctx.retry_delay(a.attempts_used().saturating_sub(1))
    };
    let answered = now_ms();
    a.settles_at = Some(Instant::now());
    a.verify_until = None;
    if exhausted {
        a.last_error_message = Some(format!(
            "{}; gave up after {} attempts",
            a.last_error_message.clone().unwrap_or_default(),
            a.attempts_used()
        ));
    }
    let mut rec = rec;
    rec.error_message = a.last_error_message.clone();
    ctx.apply(
        a,
        Fact::AttemptAnswered {
            disposition: if exhausted {
                Disposition::Refused
            } else {
                Disposition::Rejected
            },
            settles_at_ms: answered,
            next_attempt_at_ms: Some(answered + delay.as_millis() as i64),
            kms_error: false,
        },
        Some(rec),
    )
    .await?;
    if stop {
        return Ok(Next::Parked);
    }
    if exhausted {
        return Ok(Next::Done);
    }
    Ok(Next::After(Step::PreSendRead, delay))
}
