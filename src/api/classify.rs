//! One pure function from the result of a call to what the runner must do
//! about it. Keeping the whole policy in one table makes it reviewable and
//! testable as a table.
//!
//! The rule that shapes it: `OpenDBInstanceEncryption` cannot be undone and may
//! have been applied even when the answer looks like an error, so anything that
//! does not *prove* the server did nothing is `Ambiguous` for a write: verify
//! with a read before anything else. Unknown codes fall in that class too
//! (never guess); for reads, which are safe to repeat, they are transient.

use crate::model::Code;

/// Whether the call changes anything on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Read,
    Write,
}

/// How a call went wrong, before any policy is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with a `Response.Error` envelope.
    Api {
        code: String,
        message: String,
        request_id: Option<String>,
        http_status: u16,
    },
    /// The request never reached the server (connect refused, DNS): nothing was applied.
    NotSent(String),
    /// Sent, but no complete answer came back (timeout, reset, truncated body).
    NoAnswer(String),
    /// An HTTP status other than 200 without a readable error envelope (e.g. a 502 page).
    BadStatus { status: u16, body: String },
    /// HTTP 200 but the body is not a `{"Response": …}` envelope.
    Unreadable(String),
}

impl Failure {
    /// The code recorded in the journal: the API code, or a client-side pseudo-code
    /// named like the official SDKs' (`ClientNetworkError`, `ServerNetworkError`).
    pub fn code(&self) -> String {
        match self {
            Failure::Api { code, .. } => code.clone(),
            Failure::NotSent(_) => Code::NotSent.as_str().into(),
            Failure::NoAnswer(_) => Code::NoAnswer.as_str().into(),
            Failure::BadStatus { status, .. } => Code::http_status(*status),
            Failure::Unreadable(_) => Code::UnreadableBody.as_str().into(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Failure::Api { message, .. } => message.clone(),
            Failure::NotSent(m) | Failure::NoAnswer(m) | Failure::Unreadable(m) => m.clone(),
            Failure::BadStatus { status, body } => format!("HTTP {status}: {body}"),
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match self {
            Failure::Api { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }
}

/// What to do about a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The server refused for rate: nothing applied; back off, slow the limiter, retry.
    Throttled,
    /// Nothing applied (or a read): retry with backoff.
    Transient,
    /// May have been applied: verify with a read before anything is re-sent.
    Ambiguous,
    /// Definite and not retryable for this instance.
    InstanceFailed,
    /// Account-wide (credentials, signature, IP policy, wrong product/action): stop dispatching.
    RunStop,
}

fn starts(code: &str, prefix: &str) -> bool {
    code == prefix
        || (code.len() > prefix.len()
            && code.starts_with(prefix)
            && code.as_bytes()[prefix.len()] == b'.')
}

/// Classifies an API error code by itself (the write/read distinction is applied by [`classify`]).
fn classify_code(code: &str) -> Outcome {
    const RUN_STOP: &[&str] = &[
        "AuthFailure",
        "InvalidAction",
        "NoSuchVersion",
        "NoSuchProduct",
        "ActionOffline",
        "UnsupportedProtocol",
        "IpInBlacklist",
        "IpNotInWhitelist",
    ];
    const INSTANCE_FAILED: &[&str] = &[
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "UnknownParameter",
        "UnauthorizedOperation",
        "ResourceNotFound",
        "ResourceUnavailable",
        "ResourceInsufficient",
        "UnsupportedOperation",
        "UnsupportedRegion",
        "LimitExceeded",
        "FailedOperation",
        "DryRunOperation",
        "RequestSizeLimitExceeded",
        "ResponseSizeLimitExceeded",
    ];
    const AMBIGUOUS: &[&str] = &[
        "InternalError",
        "OperationDenied",
        "CdbError",
        "ServiceUnavailable",
    ];
    if starts(code, "RequestLimitExceeded") {
        return Outcome::Throttled;
    }
    if starts(code, "ResourceInUse") {
        return Outcome::Transient;
    }
    if RUN_STOP.iter().any(|p| starts(code, p)) {
        return Outcome::RunStop;
    }
    if INSTANCE_FAILED.iter().any(|p| starts(code, p)) {
        return Outcome::InstanceFailed;
    }
    if AMBIGUOUS.iter().any(|p| starts(code, p)) {
        return Outcome::Ambiguous;
    }
    // Unknown code: never guess that nothing happened.
    Outcome::Ambiguous
}

/// The policy: what a failed call of `kind` means for the runner.
///
/// For a write, only answers documented as "not applied" are anything but
/// `Ambiguous` (SPEC §1): never sent, `RequestLimitExceeded*` (throttled),
/// `AuthFailure*` (run stop) and the parameter errors `InvalidParameter*`,
/// `InvalidParameterValue*`, `MissingParameter*`, `UnknownParameter*` (instance
/// failed). Every other answer to an Open, documented for the action or not, may
/// have been applied or may still be applied by the backend: verify it once the
/// attempt has settled, then let [`after_settled_no`] say what the code means.
pub fn classify(kind: CallKind, failure: &Failure) -> Outcome {
    match kind {
        CallKind::Read => match failure {
            Failure::Api { code, .. } => match classify_code(code) {
                // A read changes nothing: "maybe applied" just means "ask again".
                Outcome::Ambiguous => Outcome::Transient,
                other => other,
            },
            Failure::NotSent(_)
            | Failure::NoAnswer(_)
            | Failure::BadStatus { .. }
            | Failure::Unreadable(_) => Outcome::Transient,
        },
        CallKind::Write => match failure {
            Failure::NotSent(_) => Outcome::Transient,
            Failure::Api { code, .. } if not_applied(code) => classify_code(code),
            _ => Outcome::Ambiguous,
        },
    }
}

/// Error codes the API documents as "the request was not carried out".
fn not_applied(code: &str) -> bool {
    const NOT_APPLIED: &[&str] = &[
        "RequestLimitExceeded",
        "AuthFailure",
        "InvalidParameter",
        "InvalidParameterValue",
        "MissingParameter",
        "UnknownParameter",
    ];
    NOT_APPLIED.iter().any(|p| starts(code, p))
}

/// What an ambiguous Open answer means once a settled read said `NO` (the
/// attempt did not take effect): `InstanceFailed` for codes that would fail
/// again (`UnauthorizedOperation`, `ResourceNotFound`, …), `RunStop` for codes
/// that would fail every instance (`InvalidAction`, IP policy, …), `Transient`
/// (retry) for the rest.
pub fn after_settled_no(code: &str) -> Outcome {
    match classify_code(code) {
        o @ (Outcome::InstanceFailed | Outcome::RunStop) => o,
        _ => Outcome::Transient,
    }
}

/// Whether an answer with `code` means every other call would fail too, so the
/// run must stop dispatching at once (whatever it means for this instance).
pub fn stops_run(code: &str) -> bool {
    classify_code(code) == Outcome::RunStop
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
