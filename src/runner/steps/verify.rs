//! What a verification `NO` means: keep polling an accepted attempt, wait for an
//! unsettled one, give up on one that cannot succeed, or schedule a retry.

use std::time::{Duration, Instant};

use super::{jitter, until, Active, Ctx, Next, Step};
use crate::api::{after_settled_no, Outcome};
use crate::journal::{Fact, JournalError};
use crate::model::{hint, now_ms, Code};

/// A verification read said NO. Poll again, retry, or give up.
pub(super) async fn verified_no(ctx: &Ctx, a: &mut Active) -> Result<Next, JournalError> {
    let now = Instant::now();
    if a.accepted() && a.verify_until.is_some_and(|d| now < d) {
        // Accepted, not visible yet (propagation): keep polling until the deadline,
        // where the endpoint's schedule expects YES (or, after a restart, with backoff).
        a.polls += 1;
        let wait = match a.accepted_at {
            Some(answered) => ctx.schedule(a, |s| s.follow_up(answered.elapsed())),
            None => jitter(&mut rand::rng(), &ctx.config.poll_backoff, a.polls)
                .max(Duration::from_millis(200)),
        };
        let wait = wait.min(a.verify_until.map(until).unwrap_or(Duration::MAX));
        return Ok(Next::After(Step::VerifyRead, wait));
    }
    if !a.cleared() {
        // The server may still be working on the attempt: this NO does not count.
        // Ask again once the attempt has settled.
        let wait = a.settles_at.map(until).unwrap_or(Duration::from_secs(1));
        return Ok(Next::After(Step::VerifyRead, wait));
    }
    // A settled NO: the last attempt did not take effect. A write-path error
    // for the error budget, with the code that attempt was answered.
    a.write_error = Some(if a.accepted() {
        Code::VerifyDeadlineExceeded.as_str().to_string()
    } else {
        a.row
            .last_error_code
            .clone()
            .unwrap_or_else(|| "NoAnswer".to_string())
    });
    if let Some((code, message)) = give_up(ctx, a) {
        return ctx.finish(a, Fact::GaveUp { code, message }, None).await;
    }
    retry(ctx, a).await
}

/// Whether a settled `NO` ends the instance: KMS errors past their budget, an
/// error that would fail again, or attempts exhausted. The code and message.
fn give_up(ctx: &Ctx, a: &Active) -> Option<(String, String)> {
    let cfg = &ctx.config;
    let code = a.row.last_error_code.as_deref();
    let last_message = || a.row.last_error_message.clone().unwrap_or_default();
    let kms = code.is_some_and(|c| c.starts_with("InternalError.KmsError"));
    if kms && a.row.kms_errors > cfg.kms_error_retries {
        return Some((
            "InternalError.KmsError".into(),
            format!(
                "OpenDBInstanceEncryption answered InternalError.KmsError {} times and a settled read confirmed Encryption=NO each time: {}",
                a.row.kms_errors,
                hint("InternalError.KmsError").unwrap_or("")
            ),
        ));
    }
    if let Some(code) = code.filter(|_| !a.accepted()) {
        if after_settled_no(code) == Outcome::InstanceFailed {
            // Not retryable (UnauthorizedOperation, ResourceNotFound, …), and now
            // known not to have taken effect.
            return Some((
                code.to_string(),
                format!(
                    "{}; a read after the attempt settled confirmed Encryption=NO",
                    last_message()
                ),
            ));
        }
    }
    if a.attempts_used() < cfg.max_attempts {
        return None;
    }
    Some(if a.accepted() {
        (
            Code::VerifyDeadlineExceeded.as_str().to_string(),
            format!(
                "the last attempt was accepted but Encryption still read NO after {:?}; gave up after {} attempts",
                cfg.verify_deadline,
                a.attempts_used()
            ),
        )
    } else {
        (
            code.map_or_else(|| Code::AttemptsExhausted.as_str().into(), str::to_string),
            format!(
                "{}; verified NO, gave up after {} attempts",
                last_message(),
                a.attempts_used()
            ),
        )
    })
}

/// A settled `NO` with attempts left: journal the retry and write the next attempt after a backoff.
async fn retry(ctx: &Ctx, a: &mut Active) -> Result<Next, JournalError> {
    let delay = ctx.retry_delay(a.attempts_used().saturating_sub(1));
    let reason = if a.accepted() {
        "accepted, but Encryption read NO past the verify deadline".to_string()
    } else {
        format!(
            "{} then a settled read said NO",
            a.row
                .last_error_code
                .as_deref()
                .unwrap_or("ambiguous outcome")
        )
    };
    let fact = Fact::RetryScheduled {
        next_attempt_at_ms: now_ms() + delay.as_millis() as i64,
        reason,
    };
    ctx.apply(a, fact, None).await?;
    Ok(Next::After(Step::WriteAhead, delay))
}
