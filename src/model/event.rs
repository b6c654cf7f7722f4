//! The kinds of rows in the journal's append-only `events` table, named in the
//! past tense for what happened.

use super::text_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    RunStarted,
    RunEnded,
    Imported,
    /// Encryption read `YES` before this tool ever sent an Open.
    FoundAlreadyEncrypted,
    /// Encryption read `YES` after an Open.
    VerifiedEncrypted,
    /// Encryption read exactly `NO` (the detail says whether the read was settled).
    ReadNotEncrypted,
    PreflightFailed,
    /// Write-ahead: an Open attempt, committed before it is sent.
    AttemptWritten,
    AttemptAnswered,
    RetryScheduled,
    GaveUp,
    /// After a crash: an attempt that may have left, to verify once it settles.
    AttemptRecovered,
    ResetForRetry,
    /// A call that moves nothing (features, key, a failed or unreadable read).
    ApiCalled,
    /// A rollout milestone of a run (canary, wave, window pause, error budget):
    /// the detail is a [`crate::model::RolloutEvent`] as JSON.
    Rollout,
}

impl EventKind {
    pub const ALL: [EventKind; 15] = [
        EventKind::RunStarted,
        EventKind::RunEnded,
        EventKind::Imported,
        EventKind::FoundAlreadyEncrypted,
        EventKind::VerifiedEncrypted,
        EventKind::ReadNotEncrypted,
        EventKind::PreflightFailed,
        EventKind::AttemptWritten,
        EventKind::AttemptAnswered,
        EventKind::RetryScheduled,
        EventKind::GaveUp,
        EventKind::AttemptRecovered,
        EventKind::ResetForRetry,
        EventKind::ApiCalled,
        EventKind::Rollout,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::RunStarted => "RunStarted",
            EventKind::RunEnded => "RunEnded",
            EventKind::Imported => "Imported",
            EventKind::FoundAlreadyEncrypted => "FoundAlreadyEncrypted",
            EventKind::VerifiedEncrypted => "VerifiedEncrypted",
            EventKind::ReadNotEncrypted => "ReadNotEncrypted",
            EventKind::PreflightFailed => "PreflightFailed",
            EventKind::AttemptWritten => "AttemptWritten",
            EventKind::AttemptAnswered => "AttemptAnswered",
            EventKind::RetryScheduled => "RetryScheduled",
            EventKind::GaveUp => "GaveUp",
            EventKind::AttemptRecovered => "AttemptRecovered",
            EventKind::ResetForRetry => "ResetForRetry",
            EventKind::ApiCalled => "ApiCalled",
            EventKind::Rollout => "Rollout",
        }
    }

    /// Events that end an instance or move it in a way an auditor looks for
    /// (the timeline of the report).
    pub fn is_milestone(self) -> bool {
        matches!(
            self,
            EventKind::VerifiedEncrypted
                | EventKind::FoundAlreadyEncrypted
                | EventKind::PreflightFailed
                | EventKind::GaveUp
                | EventKind::RetryScheduled
                | EventKind::AttemptRecovered
                | EventKind::ResetForRetry
        )
    }
}

text_enum!(EventKind, UnknownEventKind, "event kind");
