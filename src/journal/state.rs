//! Instance states (SPEC §2) and the pure transition function every journal
//! write goes through. The writer applies the result as a guarded update
//! (`… WHERE state = <from>`), so a stale decision can never overwrite a newer one.

use crate::model::{Disposition, State};

/// The kinds of facts that move an instance (their data lives in `journal::Fact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// A `DescribeDBInstanceInfo` answer.
    Read {
        encrypted: bool,
    },
    PreflightFailed,
    /// Write-ahead: an attempt is committed before it is sent.
    AttemptWritten,
    AttemptAnswered(Disposition),
    /// A NO after the attempt settled: send again after a backoff.
    RetryScheduled,
    GaveUp,
    /// After a crash: the attempt may have been sent; verify once it settles.
    AttemptRecovered,
    /// `retry-failed`.
    ResetForRetry,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition from {from} on {fact:?}")]
pub struct IllegalTransition {
    pub from: State,
    pub fact: Move,
}

/// The state after `fact`, or why it cannot happen. `attempts` is how many
/// Open attempts this tool ever journaled for the instance: an instance found
/// encrypted before any of them is `already_encrypted`, after one `encrypted`.
pub fn transition(from: State, fact: Move, attempts: u32) -> Result<State, IllegalTransition> {
    use Disposition::*;
    use State::*;
    let found_encrypted = if attempts == 0 {
        AlreadyEncrypted
    } else {
        Encrypted
    };
    let to = match (from, fact) {
        (Pending | Verifying | RetryWait, Move::Read { encrypted: true }) => Some(found_encrypted),
        (Pending | Verifying | RetryWait, Move::Read { encrypted: false }) => Some(from),
        (Pending, Move::PreflightFailed) => Some(Failed),
        (Pending | RetryWait, Move::AttemptWritten) => Some(Requesting),
        (Requesting, Move::AttemptAnswered(Accepted | Ambiguous)) => Some(Verifying),
        (Requesting, Move::AttemptAnswered(Rejected)) => Some(RetryWait),
        (Requesting, Move::AttemptAnswered(Refused)) => Some(Failed),
        (Verifying, Move::RetryScheduled) => Some(RetryWait),
        (Pending | Verifying | RetryWait, Move::GaveUp) => Some(Failed),
        (Requesting, Move::AttemptRecovered) => Some(Verifying),
        (Failed, Move::ResetForRetry) => Some(Pending),
        _ => None,
    };
    to.ok_or(IllegalTransition { from, fact })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_round_trip() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        }
        assert!("done".parse::<State>().is_err());
    }

    #[test]
    fn the_happy_path() {
        let mut s = State::Pending;
        s = transition(s, Move::Read { encrypted: false }, 0).unwrap();
        s = transition(s, Move::AttemptWritten, 0).unwrap();
        assert_eq!(s, State::Requesting);
        s = transition(s, Move::AttemptAnswered(Disposition::Accepted), 1).unwrap();
        assert_eq!(s, State::Verifying);
        s = transition(s, Move::Read { encrypted: true }, 1).unwrap();
        assert_eq!(s, State::Encrypted);
        assert_eq!(
            transition(State::Pending, Move::Read { encrypted: true }, 0).unwrap(),
            State::AlreadyEncrypted
        );
    }

    #[test]
    fn no_second_request_while_one_may_be_in_flight() {
        for s in [State::Requesting, State::Verifying] {
            assert!(transition(s, Move::AttemptWritten, 1).is_err(), "{s}");
        }
        for s in [State::Encrypted, State::AlreadyEncrypted, State::Failed] {
            assert!(transition(s, Move::AttemptWritten, 1).is_err(), "{s}");
        }
    }

    fn any_move() -> impl Strategy<Value = Move> {
        prop_oneof![
            any::<bool>().prop_map(|e| Move::Read { encrypted: e }),
            Just(Move::PreflightFailed),
            Just(Move::AttemptWritten),
            prop_oneof![
                Just(Disposition::Accepted),
                Just(Disposition::Ambiguous),
                Just(Disposition::Rejected),
                Just(Disposition::Refused)
            ]
            .prop_map(Move::AttemptAnswered),
            Just(Move::RetryScheduled),
            Just(Move::GaveUp),
            Just(Move::AttemptRecovered),
            Just(Move::ResetForRetry),
        ]
    }

    proptest! {
        /// Against a tiny model of the rules: whatever sequence of facts arrives,
        /// accepted transitions keep the invariants that make the tool safe.
        #[test]
        fn invariants_hold_for_any_fact_sequence(moves in proptest::collection::vec(any_move(), 0..60)) {
            let mut state = State::Pending;
            let mut attempts = 0u32;
            let mut in_flight = false;
            for m in moves {
                let Ok(next) = transition(state, m, attempts) else {
                    continue;
                };
                // Only retry-failed leaves a terminal state, and only from failed.
                if state.is_terminal() {
                    prop_assert_eq!(state, State::Failed);
                    prop_assert_eq!(m, Move::ResetForRetry);
                }
                if m == Move::AttemptWritten {
                    // Never a second attempt while the previous one may be in flight.
                    prop_assert!(!in_flight);
                    attempts += 1;
                    in_flight = true;
                }
                if next == State::Requesting {
                    prop_assert_eq!(m, Move::AttemptWritten);
                }
                // An attempt leaves flight only by being answered or recovered into verification.
                if matches!(m, Move::AttemptAnswered(_) | Move::AttemptRecovered) {
                    prop_assert!(in_flight);
                    in_flight = matches!(m, Move::AttemptAnswered(Disposition::Accepted | Disposition::Ambiguous) | Move::AttemptRecovered);
                }
                if in_flight && matches!(next, State::RetryWait | State::Pending) {
                    // Leaving verification for a retry needs a verified NO: RetryScheduled.
                    prop_assert_eq!(m, Move::RetryScheduled);
                    in_flight = false;
                }
                if next == State::AlreadyEncrypted {
                    prop_assert_eq!(attempts, 0);
                }
                if next.is_terminal() {
                    in_flight = false;
                }
                state = next;
            }
        }
    }
}
