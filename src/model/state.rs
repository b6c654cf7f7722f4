//! Instance states (SPEC §2). The transitions between them live in
//! `journal::state`, which owns the rules; this is only the vocabulary.

use super::text_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Pending,
    Requesting,
    Verifying,
    RetryWait,
    Encrypted,
    AlreadyEncrypted,
    Failed,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Requesting,
        State::Verifying,
        State::RetryWait,
        State::Encrypted,
        State::AlreadyEncrypted,
        State::Failed,
    ];

    /// The states a run leaves an instance in.
    pub const TERMINAL: [State; 3] = [State::Encrypted, State::AlreadyEncrypted, State::Failed];

    pub const fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Requesting => "requesting",
            State::Verifying => "verifying",
            State::RetryWait => "retry_wait",
            State::Encrypted => "encrypted",
            State::AlreadyEncrypted => "already_encrypted",
            State::Failed => "failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Encrypted | State::AlreadyEncrypted | State::Failed
        )
    }

    pub fn is_success(self) -> bool {
        matches!(self, State::Encrypted | State::AlreadyEncrypted)
    }
}

text_enum!(State, UnknownState, "state");
