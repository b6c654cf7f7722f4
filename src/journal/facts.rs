//! What the runner tells the journal: one [`Change`] is one [`Fact`] about one
//! instance, with the API call it comes from.

use super::state::Move;
use crate::model::{Action, Disposition, EventKind, InstanceId};

/// The API call a fact comes from, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub action: Action,
    pub endpoint: String,
    pub sent_at_ms: i64,
    pub latency_ms: i64,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl CallRecord {
    /// A call that got an answer without an error or RequestId (fill those in as needed).
    pub fn new(action: Action, endpoint: impl Into<String>, sent_at_ms: i64) -> CallRecord {
        CallRecord {
            action,
            endpoint: endpoint.into(),
            sent_at_ms,
            latency_ms: 0,
            request_id: None,
            error_code: None,
            error_message: None,
        }
    }
}

/// What happened to an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A `DescribeDBInstanceInfo` answer of exactly `YES` or `NO`.
    EncryptionRead {
        encrypted: bool,
        /// The runner's word, on its monotonic clock, that the read left after the
        /// last attempt settled (SPEC §1; trivially true when there was none). Only
        /// a settled `NO` clears the way for a new attempt.
        settled: bool,
    },
    /// Preflight showed the instance cannot be encrypted.
    PreflightFailed {
        code: String,
        message: String,
    },
    /// Write-ahead: the attempt (with its request) is committed before it is sent.
    AttemptWritten {
        request: String,
    },
    /// The Open call came back (or failed to).
    AttemptAnswered {
        disposition: Disposition,
        /// When the attempt can no longer be in flight on the server.
        settles_at_ms: i64,
        next_attempt_at_ms: Option<i64>,
        kms_error: bool,
    },
    /// A verified NO after the attempt settled: send again at `next_attempt_at_ms`.
    RetryScheduled {
        next_attempt_at_ms: i64,
        reason: String,
    },
    GaveUp {
        code: String,
        message: String,
    },
    /// After a crash: the attempt may have left; verify once it settles.
    AttemptRecovered {
        settles_at_ms: i64,
    },
    /// An API call that moves nothing (features, key, failed reads).
    Called,
}

impl Fact {
    /// What the fact records, for logs (the event kind it becomes, before the
    /// transition picks between `VerifiedEncrypted` and `FoundAlreadyEncrypted`).
    pub fn name(&self) -> &'static str {
        match self {
            Fact::EncryptionRead {
                encrypted: true, ..
            } => "EncryptionReadYes",
            Fact::EncryptionRead {
                encrypted: false,
                settled: true,
            } => "EncryptionReadSettledNo",
            Fact::EncryptionRead {
                encrypted: false,
                settled: false,
            } => "EncryptionReadNo",
            Fact::PreflightFailed { .. } => EventKind::PreflightFailed.as_str(),
            Fact::AttemptWritten { .. } => EventKind::AttemptWritten.as_str(),
            Fact::AttemptAnswered { .. } => EventKind::AttemptAnswered.as_str(),
            Fact::RetryScheduled { .. } => EventKind::RetryScheduled.as_str(),
            Fact::GaveUp { .. } => EventKind::GaveUp.as_str(),
            Fact::AttemptRecovered { .. } => EventKind::AttemptRecovered.as_str(),
            Fact::Called => EventKind::ApiCalled.as_str(),
        }
    }

    pub(super) fn movement(&self) -> Option<Move> {
        Some(match self {
            Fact::EncryptionRead { encrypted, .. } => Move::Read {
                encrypted: *encrypted,
            },
            Fact::PreflightFailed { .. } => Move::PreflightFailed,
            Fact::AttemptWritten { .. } => Move::AttemptWritten,
            Fact::AttemptAnswered { disposition, .. } => Move::AttemptAnswered(*disposition),
            Fact::RetryScheduled { .. } => Move::RetryScheduled,
            Fact::GaveUp { .. } => Move::GaveUp,
            Fact::AttemptRecovered { .. } => Move::AttemptRecovered,
            Fact::Called => return None,
        })
    }
}

/// One fact about one instance, as the runner reports it.
#[derive(Debug, Clone)]
pub struct Change {
    pub instance_id: InstanceId,
    pub fact: Fact,
    pub run_id: Option<i64>,
    pub call: Option<CallRecord>,
    pub at_ms: i64,
}
