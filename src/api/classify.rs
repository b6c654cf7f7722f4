//! One pure function from the result of a call to what the runner must do
//! about it. Keeping the whole policy in one table makes it reviewable and
//! testable as a table.
//!
//! The rule that shapes it: `OpenDBInstanceEncryption` cannot be undone and may
//! have been applied even when the answer looks like an error, so anything that
//! does not *prove* the server did nothing is `Ambiguous` for a write: verify
//! with a read before anything else. Unknown codes fall in that class too
//! (never guess); for reads, which are safe to repeat, they are transient.

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
            Failure::NotSent(_) => "ClientNetworkError.NotSent".into(),
            Failure::NoAnswer(_) => "ClientNetworkError.NoAnswer".into(),
            Failure::BadStatus { status, .. } => format!("ServerNetworkError.Http{status}"),
            Failure::Unreadable(_) => "ServerNetworkError.UnreadableBody".into(),
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
pub fn classify(kind: CallKind, failure: &Failure) -> Outcome {
    let outcome = match failure {
        Failure::Api { code, .. } => classify_code(code),
        Failure::NotSent(_) => Outcome::Transient,
        Failure::NoAnswer(_) | Failure::BadStatus { .. } | Failure::Unreadable(_) => {
            Outcome::Ambiguous
        }
    };
    match (kind, outcome) {
        // A read changes nothing: "maybe applied" just means "ask again".
        (CallKind::Read, Outcome::Ambiguous) => Outcome::Transient,
        _ => outcome,
    }
}

/// A short operator hint for an error code, used in reports and failure messages.
pub fn hint(code: &str) -> Option<&'static str> {
    let c = code;
    if starts(c, "InternalError.KmsError") {
        Some("check that the KMS key is Enabled in KeyRegion and that the role MySQL_QCSRole has the policy QcloudAccessForMySQLRole")
    } else if starts(c, "AuthFailure.SignatureExpire") {
        Some("the local clock differs from Tencent Cloud's by more than 5 minutes: fix NTP")
    } else if starts(c, "AuthFailure") {
        Some("check the SecretId/SecretKey (and token) and the account's API key status")
    } else if starts(c, "UnauthorizedOperation") || starts(c, "AuthFailure.UnauthorizedOperation") {
        Some("the sub-account lacks a CAM permission for this action")
    } else if starts(c, "UnsupportedEncryption") {
        Some("the instance does not support TDE (DescribeDBFeatures.IsSupportEncryption is false)")
    } else if starts(c, "EncryptionNeedUpgrade") {
        Some("upgrade the instance's kernel minor version, then run retry-failed")
    } else if starts(c, "KmsKeyNotEnabled") {
        Some("the custom KMS key is not Enabled: enable it or choose another key")
    } else if starts(c, "ResourceNotFound") || starts(c, "InvalidParameter.InstanceNotFound") {
        Some("the instance id does not exist in that region (or is not a master instance)")
    } else if starts(c, "VerifyDeadlineExceeded") {
        Some("the request was accepted but Encryption never read YES in time: check the console, then retry-failed")
    } else if starts(c, "AttemptsExhausted") {
        Some("every attempt ended without encryption: look at the last error, then retry-failed")
    } else if starts(c, "RequestLimitExceeded") {
        Some("another client shares the API quota: lower --rate")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallKind::*;
    use Outcome::*;

    fn api(code: &str) -> Failure {
        Failure::Api {
            code: code.into(),
            message: "m".into(),
            request_id: Some("r".into()),
            http_status: 200,
        }
    }

    /// Every code in the reference §3.4 and §5, with the outcome for a write and for a read.
    #[test]
    fn table() {
        let table: &[(&str, Outcome, Outcome)] = &[
            ("AuthFailure.SignatureExpire", RunStop, RunStop),
            ("AuthFailure.SignatureFailure", RunStop, RunStop),
            ("AuthFailure.SecretIdNotFound", RunStop, RunStop),
            ("AuthFailure.InvalidSecretId", RunStop, RunStop),
            ("AuthFailure.TokenFailure", RunStop, RunStop),
            ("AuthFailure.InvalidAuthorization", RunStop, RunStop),
            ("AuthFailure.MFAFailure", RunStop, RunStop),
            ("AuthFailure.UnauthorizedOperation", RunStop, RunStop),
            ("AuthFailure", RunStop, RunStop),
            ("UnauthorizedOperation", InstanceFailed, InstanceFailed),
            ("RequestLimitExceeded", Throttled, Throttled),
            (
                "RequestLimitExceeded.UinLimitExceeded",
                Throttled,
                Throttled,
            ),
            (
                "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
                Throttled,
                Throttled,
            ),
            ("RequestLimitExceeded.IPLimitExceeded", Throttled, Throttled),
            ("InternalError", Ambiguous, Transient),
            ("InternalError.HttpRequestError", Ambiguous, Transient),
            ("InternalError.KmsError", Ambiguous, Transient),
            ("InternalError.UnknownError", Ambiguous, Transient),
            ("InternalError.DBOperationError", Ambiguous, Transient),
            ("InternalError.JSONError", Ambiguous, Transient),
            ("InternalError.NetworkError", Ambiguous, Transient),
            ("InvalidParameter", InstanceFailed, InstanceFailed),
            (
                "InvalidParameter.InstanceNotFound",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "InvalidParameter.ExceptionParam",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "InvalidParameter.ControllerNotFoundError",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "InvalidParameter.ResourceNotExists",
                InstanceFailed,
                InstanceFailed,
            ),
            ("InvalidParameterValue", InstanceFailed, InstanceFailed),
            (
                "InvalidParameterValue.DataConvertError",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "InvalidParameterValue.InvalidParameterValueError",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "InvalidParameterValue.InvalidKeyId",
                InstanceFailed,
                InstanceFailed,
            ),
            ("MissingParameter", InstanceFailed, InstanceFailed),
            ("UnknownParameter", InstanceFailed, InstanceFailed),
            ("InvalidAction", RunStop, RunStop),
            ("NoSuchVersion", RunStop, RunStop),
            ("NoSuchProduct", RunStop, RunStop),
            ("ActionOffline", RunStop, RunStop),
            ("UnsupportedRegion", InstanceFailed, InstanceFailed),
            ("UnsupportedProtocol", RunStop, RunStop),
            ("RequestSizeLimitExceeded", InstanceFailed, InstanceFailed),
            ("ResponseSizeLimitExceeded", InstanceFailed, InstanceFailed),
            ("ResourceNotFound", InstanceFailed, InstanceFailed),
            ("ResourceUnavailable", InstanceFailed, InstanceFailed),
            (
                "ResourceUnavailable.CmkNotFound",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "ResourceUnavailable.CmkDisabled",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "ResourceUnavailable.CmkArchived",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "ResourceUnavailable.KeyPendingDelete",
                InstanceFailed,
                InstanceFailed,
            ),
            (
                "ResourceUnavailable.CmkStateNotSupport",
                InstanceFailed,
                InstanceFailed,
            ),
            ("ResourceInUse", Transient, Transient),
            ("ResourceInsufficient", InstanceFailed, InstanceFailed),
            ("LimitExceeded", InstanceFailed, InstanceFailed),
            ("FailedOperation", InstanceFailed, InstanceFailed),
            ("UnsupportedOperation", InstanceFailed, InstanceFailed),
            (
                "UnsupportedOperation.NotRoleOperation",
                InstanceFailed,
                InstanceFailed,
            ),
            ("DryRunOperation", InstanceFailed, InstanceFailed),
            ("ServiceUnavailable", Ambiguous, Transient),
            ("IpInBlacklist", RunStop, RunStop),
            ("IpNotInWhitelist", RunStop, RunStop),
            ("CdbError", Ambiguous, Transient),
            ("OperationDenied", Ambiguous, Transient),
            ("OperationDenied.UserHasNoStrategy", Ambiguous, Transient),
            ("OperationDenied.WrongStatus", Ambiguous, Transient),
            // Unknown codes: a write is verified, a read is retried.
            ("SomethingNew.NeverSeen", Ambiguous, Transient),
            // Prefix matching is on whole segments only.
            ("AuthFailureish", Ambiguous, Transient),
            ("InternalErrorX", Ambiguous, Transient),
        ];
        for (code, write, read) in table {
            assert_eq!(classify(Write, &api(code)), *write, "write {code}");
            assert_eq!(classify(Read, &api(code)), *read, "read {code}");
        }
    }

    #[test]
    fn transport_failures() {
        assert_eq!(
            classify(Write, &Failure::NotSent("refused".into())),
            Transient
        );
        assert_eq!(
            classify(Write, &Failure::NoAnswer("timeout".into())),
            Ambiguous
        );
        assert_eq!(
            classify(
                Write,
                &Failure::BadStatus {
                    status: 502,
                    body: "<html>".into()
                }
            ),
            Ambiguous
        );
        assert_eq!(classify(Write, &Failure::Unreadable("{".into())), Ambiguous);
        assert_eq!(
            classify(Read, &Failure::NoAnswer("timeout".into())),
            Transient
        );
    }

    #[test]
    fn pseudo_codes_are_named_like_the_sdk() {
        assert_eq!(
            Failure::NotSent("x".into()).code(),
            "ClientNetworkError.NotSent"
        );
        assert_eq!(
            Failure::BadStatus {
                status: 502,
                body: String::new()
            }
            .code(),
            "ServerNetworkError.Http502"
        );
    }

    #[test]
    fn hints() {
        assert!(hint("InternalError.KmsError")
            .unwrap()
            .contains("MySQL_QCSRole"));
        assert!(hint("AuthFailure.SignatureExpire")
            .unwrap()
            .contains("clock"));
        assert!(hint("Nope").is_none());
    }
}
