//! The three `DescribeDBInstanceInfo` reads (preflight, verification, pre-send)
//! and what a failed or unreadable read means.

use std::time::{Duration, Instant};

use super::{
    failure_fact, jitter, until, verify, Active, Ctx, Heard, Next, Step, StepOutcome, Stepped,
};
use crate::api::cdb::{EncryptionReading, InstanceIdRequest};
use crate::api::{classify, CallKind, Failure, Outcome, Service};
use crate::journal::{CallRecord, Fact, JournalError};
use crate::model::{Action, Code, State};

pub(super) async fn read(
    ctx: &Ctx,
    a: &mut Active,
    step: Step,
    gate: &dyn crate::api::Gate,
) -> StepOutcome {
    let req = InstanceIdRequest {
        instance_id: a.id().to_string(),
    };
    let reply = ctx
        .call::<_, serde_json::Value>(
            a,
            &a.cdb,
            Service::Cdb,
            Action::DescribeDBInstanceInfo,
            &a.row.region,
            &req,
            gate,
        )
        .await;
    let heard = reply.heard;
    let mut rec = reply.rec;
    let answer = match reply.result {
        Ok(ans) => ans,
        Err(f) => return read_failed(ctx, a, step, f, rec, heard).await,
    };
    a.read_failures = 0;
    let encrypted = match EncryptionReading::of(&answer) {
        EncryptionReading::Yes => true,
        EncryptionReading::No => false,
        EncryptionReading::Unreadable(raw) => {
            rec.error_code = Some(Code::EncryptionUnreadable.as_str().into());
            rec.error_message = Some(format!("Encryption was {raw}: neither YES nor NO"));
            let next = unreadable(ctx, a, step, raw, rec).await?;
            return Ok(Stepped::new(heard, next));
        }
    };
    a.unreadable_since = None;
    learn(ctx, a, step, encrypted);
    let settled = a.settled_at(reply.sent_at);
    ctx.apply(a, Fact::EncryptionRead { encrypted, settled }, Some(rec))
        .await?;
    let next = if a.state().is_terminal() {
        Next::Done
    } else {
        match step {
            Step::PreflightRead => Next::After(Step::Features, Duration::ZERO),
            Step::PreSendRead if a.cleared() => Next::After(Step::WriteAhead, Duration::ZERO),
            Step::PreSendRead => {
                // Read too early for the last attempt to count as settled: wait for it.
                let wait = a.settles_at.map(until).unwrap_or(Duration::from_secs(1));
                Next::After(Step::PreSendRead, wait)
            }
            _ => verify::verified_no(ctx, a).await?,
        }
    };
    Ok(Stepped::new(heard, next))
}

/// What a verification read of an accepted attempt teaches the endpoint's schedule.
fn learn(ctx: &Ctx, a: &mut Active, step: Step, encrypted: bool) {
    let (Step::VerifyRead, Some(answered)) = (step, a.accepted_at) else {
        return;
    };
    if let Some(used) = a.first_read.take() {
        let estimate = ctx.schedule(a, |s| {
            s.observe_first(used, encrypted);
            s.estimate()
        });
        tracing::debug!(
            first_read_ms = used.as_millis() as u64,
            encrypted,
            estimate_ms = estimate.as_millis() as u64,
            "first verification read"
        );
        a.missed_first = !encrypted;
    } else if encrypted && a.missed_first {
        ctx.schedule(a, |s| s.observe_late_yes(answered.elapsed()));
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
) -> Result<Next, JournalError> {
    let now = Instant::now();
    let since = *a.unreadable_since.get_or_insert(now);
    if now.duration_since(since) >= ctx.config.verify_deadline {
        let message = format!(
            "DescribeDBInstanceInfo kept answering Encryption={raw} (neither YES nor NO) for {:?}; whether encryption is on is unknown, so nothing was re-sent: check the console",
            now.duration_since(since)
        );
        let code = Code::VerificationUnreadable.as_str().to_string();
        let fact = failure_fact(a, code, message);
        return ctx.finish(a, fact, Some(rec)).await;
    }
    ctx.apply(a, Fact::Called, Some(rec)).await?;
    a.polls += 1;
    let wait =
        jitter(&mut rand::rng(), &ctx.config.poll_backoff, a.polls).max(Duration::from_millis(200));
    Ok(Next::After(step, wait))
}

/// A read (Describe*) failed: retry it, fail the instance, or stop the run.
pub(super) async fn read_failed(
    ctx: &Ctx,
    a: &mut Active,
    step: Step,
    f: Failure,
    rec: CallRecord,
    heard: Heard,
) -> StepOutcome {
    let (code, message) = (f.code(), f.message());
    let next = match classify(CallKind::Read, &f) {
        Outcome::RunStop => {
            ctx.apply(a, Fact::Called, Some(rec)).await?;
            Next::Stop(super::StopReason::AccountWide {
                account: a.row.account.clone(),
                code,
                message,
            })
        }
        Outcome::InstanceFailed => {
            let message = format!("{} answered {code}: {message}", rec.action);
            let fact = failure_fact(a, code, message);
            ctx.finish(a, fact, Some(rec)).await?
        }
        _ => {
            ctx.apply(a, Fact::Called, Some(rec)).await?;
            a.read_failures += 1;
            // A first verification read that failed says nothing of where YES
            // shows; the read after it, later than planned, is not a first read.
            a.first_read = None;
            if a.read_failures > 2 * ctx.config.max_attempts {
                let message = format!(
                    "{} kept failing ({} times), last {code}: {message}",
                    step.action(),
                    a.read_failures
                );
                let fact = if a.state() == State::Pending {
                    Fact::PreflightFailed { code, message }
                } else {
                    Fact::GaveUp {
                        code: Code::VerificationUnavailable.as_str().into(),
                        message: format!(
                            "the outcome of the last attempt could not be verified: {message}"
                        ),
                    }
                };
                ctx.finish(a, fact, None).await?
            } else {
                Next::After(step, ctx.retry_delay(a.read_failures - 1))
            }
        }
    };
    Ok(Stepped::new(heard, next))
}
