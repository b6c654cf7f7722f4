//! The classification table, code by code, for both kinds of call.

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
    let table: &[(&str, Outcome, Outcome, Outcome)] = &[
        // code, write, read, a write's ambiguous answer after a settled NO
        ("AuthFailure.SignatureExpire", RunStop, RunStop, RunStop),
        ("AuthFailure.SignatureFailure", RunStop, RunStop, RunStop),
        ("AuthFailure.SecretIdNotFound", RunStop, RunStop, RunStop),
        ("AuthFailure.InvalidSecretId", RunStop, RunStop, RunStop),
        ("AuthFailure.TokenFailure", RunStop, RunStop, RunStop),
        (
            "AuthFailure.InvalidAuthorization",
            RunStop,
            RunStop,
            RunStop,
        ),
        ("AuthFailure.MFAFailure", RunStop, RunStop, RunStop),
        (
            "AuthFailure.UnauthorizedOperation",
            RunStop,
            RunStop,
            RunStop,
        ),
        ("AuthFailure", RunStop, RunStop, RunStop),
        (
            "UnauthorizedOperation",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        ("RequestLimitExceeded", Throttled, Throttled, Transient),
        (
            "RequestLimitExceeded.UinLimitExceeded",
            Throttled,
            Throttled,
            Transient,
        ),
        (
            "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
            Throttled,
            Throttled,
            Transient,
        ),
        (
            "RequestLimitExceeded.IPLimitExceeded",
            Throttled,
            Throttled,
            Transient,
        ),
        ("InternalError", Ambiguous, Transient, Transient),
        (
            "InternalError.HttpRequestError",
            Ambiguous,
            Transient,
            Transient,
        ),
        ("InternalError.KmsError", Ambiguous, Transient, Transient),
        (
            "InternalError.UnknownError",
            Ambiguous,
            Transient,
            Transient,
        ),
        (
            "InternalError.DBOperationError",
            Ambiguous,
            Transient,
            Transient,
        ),
        ("InternalError.JSONError", Ambiguous, Transient, Transient),
        (
            "InternalError.NetworkError",
            Ambiguous,
            Transient,
            Transient,
        ),
        (
            "InvalidParameter",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameter.InstanceNotFound",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameter.ExceptionParam",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameter.ControllerNotFoundError",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameter.ResourceNotExists",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameterValue",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameterValue.DataConvertError",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameterValue.InvalidParameterValueError",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "InvalidParameterValue.InvalidKeyId",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "MissingParameter",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "UnknownParameter",
            InstanceFailed,
            InstanceFailed,
            InstanceFailed,
        ),
        ("InvalidAction", Ambiguous, RunStop, RunStop),
        ("NoSuchVersion", Ambiguous, RunStop, RunStop),
        ("NoSuchProduct", Ambiguous, RunStop, RunStop),
        ("ActionOffline", Ambiguous, RunStop, RunStop),
        (
            "UnsupportedRegion",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        ("UnsupportedProtocol", Ambiguous, RunStop, RunStop),
        (
            "RequestSizeLimitExceeded",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResponseSizeLimitExceeded",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResourceNotFound",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResourceUnavailable",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResourceUnavailable.CmkNotFound",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResourceUnavailable.CmkDisabled",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResourceUnavailable.CmkArchived",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResourceUnavailable.KeyPendingDelete",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "ResourceUnavailable.CmkStateNotSupport",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        ("ResourceInUse", Ambiguous, Transient, Transient),
        (
            "ResourceInsufficient",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        ("LimitExceeded", Ambiguous, InstanceFailed, InstanceFailed),
        ("FailedOperation", Ambiguous, InstanceFailed, InstanceFailed),
        (
            "UnsupportedOperation",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        (
            "UnsupportedOperation.NotRoleOperation",
            Ambiguous,
            InstanceFailed,
            InstanceFailed,
        ),
        ("DryRunOperation", Ambiguous, InstanceFailed, InstanceFailed),
        ("ServiceUnavailable", Ambiguous, Transient, Transient),
        ("IpInBlacklist", Ambiguous, RunStop, RunStop),
        ("IpNotInWhitelist", Ambiguous, RunStop, RunStop),
        ("CdbError", Ambiguous, Transient, Transient),
        ("OperationDenied", Ambiguous, Transient, Transient),
        (
            "OperationDenied.UserHasNoStrategy",
            Ambiguous,
            Transient,
            Transient,
        ),
        (
            "OperationDenied.WrongStatus",
            Ambiguous,
            Transient,
            Transient,
        ),
        // Unknown codes: a write is verified, a read is retried.
        ("SomethingNew.NeverSeen", Ambiguous, Transient, Transient),
        // Prefix matching is on whole segments only.
        ("AuthFailureish", Ambiguous, Transient, Transient),
        ("InternalErrorX", Ambiguous, Transient, Transient),
    ];
    for (code, write, read, settled) in table {
        assert_eq!(classify(Write, &api(code)), *write, "write {code}");
        assert_eq!(classify(Read, &api(code)), *read, "read {code}");
        assert_eq!(after_settled_no(code), *settled, "settled NO {code}");
        assert_eq!(stops_run(code), *settled == RunStop, "stops run {code}");
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
fn the_journaled_message_is_the_api_text_or_the_transport_detail() {
    assert_eq!(api("InternalError").message(), "m");
    assert_eq!(Failure::NotSent("refused".into()).message(), "refused");
    assert_eq!(Failure::NoAnswer("timed out".into()).message(), "timed out");
    assert_eq!(Failure::Unreadable("{\"x\"".into()).message(), "{\"x\"");
    assert_eq!(
        Failure::BadStatus {
            status: 502,
            body: "<html>".into()
        }
        .message(),
        "HTTP 502: <html>"
    );
}

#[test]
fn only_an_api_answer_carries_a_request_id() {
    assert_eq!(api("InternalError").request_id(), Some("r"));
    let without = Failure::Api {
        code: "InternalError".into(),
        message: "m".into(),
        request_id: None,
        http_status: 200,
    };
    assert_eq!(without.request_id(), None);
    for f in [
        Failure::NotSent("r".into()),
        Failure::NoAnswer("r".into()),
        Failure::Unreadable("r".into()),
        Failure::BadStatus {
            status: 502,
            body: "r".into(),
        },
    ] {
        assert_eq!(f.request_id(), None, "{f:?}");
    }
}
