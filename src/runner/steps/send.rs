//! The write-ahead and the Open, split by what the Open answered: accepted,
//! unclear (the server may still apply it), refused for good, or documented as
//! not carried out.

use std::time::{Duration, Instant};

use super::{until, Active, Ctx, Heard, Next, Step, StepOutcome, Stepped, StopReason};
use crate::api::cdb::{OpenDBInstanceEncryptionRequest, OpenDBInstanceEncryptionResponse};
use crate::api::{classify, stops_run, CallKind, Failure, Gate, Outcome, Service};
use crate::journal::{CallRecord, Fact, JournalError};
use crate::model::{now_ms, Action, Disposition};

type NextOrFailed = Result<Next, JournalError>;

fn open_request(a: &Active) -> OpenDBInstanceEncryptionRequest {
    OpenDBInstanceEncryptionRequest {
        instance_id: a.id().to_string(),
        key_id: a.row.key_id.clone(),
        key_region: a.row.key_id.as_ref().and(a.row.key_region.clone()),
    }
}

/// Commits the attempt to the journal before it may be sent.
pub(super) async fn write_ahead(ctx: &Ctx, a: &mut Active) -> StepOutcome {
    // A new attempt: what the schedule learns about the last one ends here.
    a.accepted_at = None;
    a.first_read = None;
    a.missed_first = false;
    let request = serde_json::json!({
        "endpoint": a.cdb.host,
        "region": a.row.region,
        "params": open_request(a),
    })
    .to_string();
    let next = match ctx.apply(a, Fact::AttemptWritten { request }, None).await {
        Ok(()) => Next::After(Step::Send, Duration::ZERO),
        // The journal refuses: no settled NO since the last attempt. Get one first.
        Err(JournalError::NotCleared { .. }) => Next::After(Step::PreSendRead, Duration::ZERO),
        Err(e) => return Err(e),
    };
    Ok(Stepped::new(Heard::Nothing, next))
}

/// Sends the attempt the write-ahead committed, and journals its answer.
pub(super) async fn send(ctx: &Ctx, a: &mut Active, gate: &dyn Gate) -> StepOutcome {
    let reply = ctx
        .call::<_, OpenDBInstanceEncryptionResponse>(
            a,
            &a.cdb,
            Service::Cdb,
            Action::OpenDBInstanceEncryption,
            &a.row.region,
            &open_request(a),
            gate,
        )
        .await;
    a.polls = 0;
    // The server cannot have started on the Open before its bytes left: the
    // settle clock and the verify deadline run from the write (the later time).
    let sent_at = reply.written_at;
    let next = match reply.result {
        Ok(_) => accepted(ctx, a, sent_at, reply.rec).await?,
        Err(failure) => answered_error(ctx, a, failure, sent_at, reply.rec).await?,
    };
    Ok(Stepped::new(reply.heard, next))
}

/// The Open failed: what its failure says about whether it was carried out.
async fn answered_error(
    ctx: &Ctx,
    a: &mut Active,
    failure: Failure,
    sent_at: Instant,
    rec: CallRecord,
) -> NextOrFailed {
    let account_wide = || StopReason::AccountWide {
        account: a.row.account.clone(),
        code: failure.code(),
        message: failure.message(),
    };
    match classify(CallKind::Write, &failure) {
        Outcome::Success | Outcome::Ambiguous => {
            let stop = stops_run(&failure.code()).then(account_wide);
            ambiguous(ctx, a, sent_at, rec, stop).await
        }
        Outcome::InstanceFailed => refused(ctx, a, rec).await,
        outcome @ (Outcome::Throttled | Outcome::Transient | Outcome::RunStop) => {
            let stop = (outcome == Outcome::RunStop).then(account_wide);
            not_applied(ctx, a, rec, stop).await
        }
    }
}

/// Wall clock, for the audit only: every decision uses the monotonic `sent_at`.
fn settles_at_ms(ctx: &Ctx, rec: &CallRecord) -> i64 {
    rec.sent_at_ms + ctx.settle_ms()
}

/// The Open was accepted: poll for `YES` until the verify deadline; a `NO` counts
/// only once the attempt has settled.
async fn accepted(ctx: &Ctx, a: &mut Active, sent_at: Instant, rec: CallRecord) -> NextOrFailed {
    let cfg = &ctx.config;
    let verify_until = sent_at + cfg.verify_deadline.max(cfg.settle);
    a.settles_at = Some(sent_at + cfg.settle);
    a.verify_until = Some(verify_until);
    let fact = Fact::AttemptAnswered {
        disposition: Disposition::Accepted,
        settles_at_ms: settles_at_ms(ctx, &rec),
        next_attempt_at_ms: None,
        kms_error: false,
    };
    ctx.apply(a, fact, Some(rec)).await?;
    // The first read goes where it is likely to say YES (see `verify_schedule`),
    // never past the verify deadline.
    let first = ctx.schedule(a, |s| s.first_read()).min(until(verify_until));
    a.accepted_at = Some(Instant::now());
    a.first_read = Some(first);
    a.missed_first = false;
    Ok(Next::After(Step::VerifyRead, first))
}

/// Anything that does not prove the Open was not carried out: the server may
/// still apply it until the attempt settles. One early read (a `YES` ends it),
/// then one once it has settled; nothing is re-sent before a settled `NO`.
async fn ambiguous(
    ctx: &Ctx,
    a: &mut Active,
    sent_at: Instant,
    rec: CallRecord,
    stop: Option<StopReason>,
) -> NextOrFailed {
    let kms_error = rec
        .error_code
        .as_deref()
        .is_some_and(|c| c.starts_with("InternalError.KmsError"));
    let settles_at = sent_at + ctx.config.settle;
    a.settles_at = Some(settles_at);
    a.verify_until = None;
    let fact = Fact::AttemptAnswered {
        disposition: Disposition::Ambiguous,
        settles_at_ms: settles_at_ms(ctx, &rec),
        next_attempt_at_ms: None,
        kms_error,
    };
    ctx.apply(a, fact, Some(rec)).await?;
    if let Some(stop) = stop {
        // The journal holds the attempt as `verifying`; the next run verifies it
        // after a fresh settle window.
        return Ok(Next::Stop(stop));
    }
    let first = ctx.config.ambiguous_first_read.min(until(settles_at));
    Ok(Next::After(Step::VerifyRead, first))
}

/// A parameter error: documented as not carried out, and it would fail again.
async fn refused(ctx: &Ctx, a: &mut Active, rec: CallRecord) -> NextOrFailed {
    a.write_error = rec.error_code.clone();
    let fact = Fact::AttemptAnswered {
        disposition: Disposition::Refused,
        settles_at_ms: now_ms(),
        next_attempt_at_ms: None,
        kms_error: false,
    };
    ctx.finish(a, fact, Some(rec)).await
}

/// Never sent, throttled, or refused for the account: documented as not carried
/// out, so the attempt settles at once. A fresh `NO` still comes before a re-send.
async fn not_applied(
    ctx: &Ctx,
    a: &mut Active,
    mut rec: CallRecord,
    stop: Option<StopReason>,
) -> NextOrFailed {
    let exhausted = a.attempts_used() >= ctx.config.max_attempts && stop.is_none();
    let delay = if stop.is_some() {
        Duration::ZERO
    } else {
        ctx.retry_delay(a.attempts_used().saturating_sub(1))
    };
    let answered = now_ms();
    a.settles_at = Some(Instant::now());
    a.verify_until = None;
    if exhausted {
        rec.error_message = Some(format!(
            "{}; gave up after {} attempts",
            rec.error_message.clone().unwrap_or_default(),
            a.attempts_used()
        ));
    }
    if exhausted {
        a.write_error = rec.error_code.clone();
    }
    let fact = Fact::AttemptAnswered {
        disposition: if exhausted {
            Disposition::Refused
        } else {
            Disposition::Rejected
        },
        settles_at_ms: answered,
        next_attempt_at_ms: Some(answered + delay.as_millis() as i64),
        kms_error: false,
    };
    ctx.apply(a, fact, Some(rec)).await?;
    Ok(match stop {
        Some(stop) => Next::Stop(stop),
        None if exhausted => Next::Done,
        None => Next::After(Step::PreSendRead, delay),
    })
}
