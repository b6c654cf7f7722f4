//! Error codes fleetcrypt produces itself (for calls that never got an API
//! answer, and for instance failures it decides), and the one table of operator
//! hints for every code it reports, its own and the cloud's. Reports, the CLI
//! and failure messages all read hints from here; which code means what for
//! the run (retry, verify, fail, stop) is decided in `api::classify`.

use super::text_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The request never left (connect refused, handed back unsent): nothing applied.
    NotSent,
    /// Sent, but no complete answer came back (timeout, reset, truncated body).
    NoAnswer,
    /// HTTP 200 whose body is not a `{"Response": …}` envelope.
    UnreadableBody,
    /// One read whose `Encryption` was neither `YES` nor `NO`.
    EncryptionUnreadable,
    /// `Encryption` stayed unreadable until the verify deadline.
    VerificationUnreadable,
    /// The verification read kept failing.
    VerificationUnavailable,
    /// The Open was accepted but `Encryption` never read `YES` in time.
    VerifyDeadlineExceeded,
    /// Every attempt ended with a verified `NO`.
    AttemptsExhausted,
    /// Preflight: the instance does not support TDE.
    UnsupportedEncryption,
    /// Preflight: the kernel minor version is too old.
    EncryptionNeedUpgrade,
    /// Preflight: the custom KMS key is not `Enabled`.
    KmsKeyNotEnabled,
}

impl Code {
    pub const ALL: [Code; 11] = [
        Code::NotSent,
        Code::NoAnswer,
        Code::UnreadableBody,
        Code::EncryptionUnreadable,
        Code::VerificationUnreadable,
        Code::VerificationUnavailable,
        Code::VerifyDeadlineExceeded,
        Code::AttemptsExhausted,
        Code::UnsupportedEncryption,
        Code::EncryptionNeedUpgrade,
        Code::KmsKeyNotEnabled,
    ];

    /// Client-side codes are named like the official SDKs' (`ClientNetworkError`,
    /// `ServerNetworkError`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::NotSent => "ClientNetworkError.NotSent",
            Code::NoAnswer => "ClientNetworkError.NoAnswer",
            Code::UnreadableBody => "ServerNetworkError.UnreadableBody",
            Code::EncryptionUnreadable => "EncryptionUnreadable",
            Code::VerificationUnreadable => "VerificationUnreadable",
            Code::VerificationUnavailable => "VerificationUnavailable",
            Code::VerifyDeadlineExceeded => "VerifyDeadlineExceeded",
            Code::AttemptsExhausted => "AttemptsExhausted",
            Code::UnsupportedEncryption => "UnsupportedEncryption",
            Code::EncryptionNeedUpgrade => "EncryptionNeedUpgrade",
            Code::KmsKeyNotEnabled => "KmsKeyNotEnabled",
        }
    }

    /// The code for an HTTP status other than 200 without an error envelope.
    pub fn http_status(status: u16) -> String {
        format!("ServerNetworkError.Http{status}")
    }

    pub fn hint(self) -> Option<&'static str> {
        hint(self.as_str())
    }
}

text_enum!(Code, UnknownCode, "error code");

/// Whether `code` is `prefix` or one of its sub-codes (`prefix.…`).
fn within(code: &str, prefix: &str) -> bool {
    code == prefix
        || (code.len() > prefix.len()
            && code.starts_with(prefix)
            && code.as_bytes()[prefix.len()] == b'.')
}

/// A short operator hint for an error code (the cloud's or fleetcrypt's own),
/// for reports and failure messages.
pub fn hint(code: &str) -> Option<&'static str> {
    const HINTS: &[(&str, &str)] = &[
        ("InternalError.KmsError", "check that the KMS key is Enabled in KeyRegion and that the role MySQL_QCSRole has the policy QcloudAccessForMySQLRole"),
        ("AuthFailure.SignatureExpire", "the local clock differs from Tencent Cloud's by more than 5 minutes: fix NTP"),
        ("AuthFailure.UnauthorizedOperation", "the sub-account lacks a CAM permission for this action"),
        ("AuthFailure", "check the SecretId/SecretKey (and token) and the account's API key status"),
        ("UnauthorizedOperation", "the sub-account lacks a CAM permission for this action"),
        ("UnsupportedEncryption", "the instance does not support TDE (DescribeDBFeatures.IsSupportEncryption is false)"),
        ("EncryptionNeedUpgrade", "upgrade the instance's kernel minor version, then run retry-failed"),
        ("KmsKeyNotEnabled", "the custom KMS key is not Enabled: enable it or choose another key"),
        ("ResourceNotFound", "the instance id does not exist in that region (or is not a master instance)"),
        ("InvalidParameter.InstanceNotFound", "the instance id does not exist in that region (or is not a master instance)"),
        ("VerifyDeadlineExceeded", "the request was accepted but Encryption never read YES in time: check the console, then retry-failed"),
        ("AttemptsExhausted", "every attempt ended without encryption: look at the last error, then retry-failed"),
        ("RequestLimitExceeded", "another client shares the API quota: lower --rate"),
    ];
    HINTS
        .iter()
        .find(|(prefix, _)| within(code, prefix))
        .map(|(_, h)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_status_code_is_named_like_the_sdks() {
        assert_eq!(Code::http_status(502), "ServerNetworkError.Http502");
        assert_eq!(Code::http_status(429), "ServerNetworkError.Http429");
    }

    #[test]
    fn hints_match_a_code_and_its_sub_codes_only() {
        assert!(hint("InternalError.KmsError")
            .unwrap()
            .contains("MySQL_QCSRole"));
        assert!(hint("AuthFailure.SignatureExpire").unwrap().contains("NTP"));
        assert!(hint("AuthFailure.SecretIdNotFound")
            .unwrap()
            .contains("SecretKey"));
        assert!(hint("AuthFailure.UnauthorizedOperation")
            .unwrap()
            .contains("CAM"));
        assert!(hint("RequestLimitExceeded.UinLimitExceeded")
            .unwrap()
            .contains("--rate"));
        assert_eq!(Code::KmsKeyNotEnabled.hint(), hint("KmsKeyNotEnabled"));
        assert!(hint("InternalError").is_none());
        assert!(hint("AuthFailureX").is_none());
        assert!(hint("Nope").is_none());
    }

    #[test]
    fn each_code_of_a_shared_hint_gets_that_hint() {
        let cam = "lacks a CAM permission";
        assert!(hint("UnauthorizedOperation").unwrap().contains(cam));
        assert!(hint("UnauthorizedOperation.X").unwrap().contains(cam));
        // Before the generic AuthFailure hint, which would otherwise shadow it.
        assert!(hint("AuthFailure.UnauthorizedOperation")
            .unwrap()
            .contains(cam));
        let missing = "does not exist";
        assert!(hint("ResourceNotFound").unwrap().contains(missing));
        assert!(hint("InvalidParameter.InstanceNotFound")
            .unwrap()
            .contains(missing));
        // Other AuthFailure codes point at the key itself.
        assert!(hint("AuthFailure.SecretIdNotFound")
            .unwrap()
            .contains("SecretId/SecretKey"));
    }
}
