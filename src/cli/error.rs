//! How a command ends, as SPEC §3 counts it. Every command returns
//! `Result<Done, CliError>`; `app::main` prints the error (once, in one place)
//! and maps both to the exit code.

use super::exit;
use crate::journal::JournalError;

/// A command that ran to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Every instance `encrypted` or `already_encrypted` (or nothing to judge).
    Ok,
    /// Some instance `failed` or left non-terminal; what and why was printed.
    SomeFailed,
}

impl Done {
    pub fn exit_code(self) -> u8 {
        match self {
            Done::Ok => exit::OK,
            Done::SomeFailed => exit::SOME_FAILED,
        }
    }

    pub fn from_success(all_good: bool) -> Done {
        if all_good {
            Done::Ok
        } else {
            Done::SomeFailed
        }
    }
}

/// A command that stopped, with the message the operator needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// Bad usage or bad input (an unusable journal included); nothing was sent.
    #[error("{0}")]
    Usage(String),
    /// Account-wide: AuthFailure, missing credentials.
    #[error("{0}")]
    Account(String),
    /// The command failed (a run stopped, a call failed, a file could not be written).
    #[error("{0}")]
    Failed(String),
    /// Ctrl-C or SIGTERM; the journal is consistent.
    #[error("{0}")]
    Interrupted(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Account(_) => exit::ACCOUNT,
            CliError::Failed(_) => exit::SOME_FAILED,
            CliError::Interrupted(_) => exit::INTERRUPTED,
        }
    }

    pub fn usage(message: impl std::fmt::Display) -> CliError {
        CliError::Usage(message.to_string())
    }

    pub fn failed(message: impl std::fmt::Display) -> CliError {
        CliError::Failed(message.to_string())
    }

    /// SPEC §3: an unusable journal is bad input (exit 2); any other journal
    /// failure fails the command (exit 1).
    pub fn journal(e: &JournalError, suffix: &str) -> CliError {
        let message = format!("{e}{suffix}");
        if e.is_unusable() {
            CliError::Usage(message)
        } else {
            CliError::Failed(message)
        }
    }
}

pub type CliResult = Result<Done, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_its_spec_exit_code() {
        assert_eq!(Done::Ok.exit_code(), 0);
        assert_eq!(Done::SomeFailed.exit_code(), 1);
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::Account("x".into()).exit_code(), 3);
        assert_eq!(CliError::failed("x").exit_code(), 1);
        assert_eq!(CliError::Interrupted("x".into()).exit_code(), 130);
        let unusable = JournalError::Open {
            path: "j".into(),
            reason: "r".into(),
        };
        assert_eq!(CliError::journal(&unusable, "").exit_code(), 2);
        assert_eq!(CliError::journal(&JournalError::Closed, "").exit_code(), 1);
    }
}
