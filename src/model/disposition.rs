//! How an `OpenDBInstanceEncryption` call ended, as far as the instance's state
//! goes. Stored as `instances.last_outcome` and in the `AttemptAnswered` event.

use super::text_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// Definite success: verify.
    Accepted,
    /// May or may not have been applied: verify once it can no longer be in flight.
    Ambiguous,
    /// Definitely not applied, retryable (throttled, never sent, run stopped).
    Rejected,
    /// Definitely not applied and not retryable.
    Refused,
}

impl Disposition {
    pub const ALL: [Disposition; 4] = [
        Disposition::Accepted,
        Disposition::Ambiguous,
        Disposition::Rejected,
        Disposition::Refused,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Disposition::Accepted => "accepted",
            Disposition::Ambiguous => "ambiguous",
            Disposition::Rejected => "rejected",
            Disposition::Refused => "refused",
        }
    }
}

text_enum!(Disposition, UnknownDisposition, "disposition");
