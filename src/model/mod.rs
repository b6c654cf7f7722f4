//! The shared vocabulary at the bottom of the house: what an instance is called
//! and what the input asks for it,
//! which states it moves through, which events the journal records, how an Open
//! ended, the error codes fleetcrypt itself produces (with the hint an operator
//! needs for every code it reports), the API actions it calls, and the
//! sliding-window statistic both sides of the rate contract measure.
//!
//! Every part may use `model`; `model` uses no other part. Each type that is
//! stored as TEXT has `as_str` and `FromStr`, and the journal's CHECK
//! constraints (migration 0004) list exactly the values of [`State::ALL`],
//! [`EventKind::ALL`] and [`Disposition::ALL`] (a test compares them).

mod action;
mod code;
mod disposition;
mod event;
mod id;
mod rollout_event;
mod spec;
mod state;
mod time;
mod window;

pub use action::{Action, UnknownAction};
pub use code::{hint, Code};
pub use disposition::{Disposition, UnknownDisposition};
pub use event::{EventKind, UnknownEventKind};
pub use id::{InstanceId, InvalidInstanceId};
pub use rollout_event::RolloutEvent;
pub use spec::{check_account_name, InstanceSpec};
pub use state::{State, UnknownState};
pub use time::{now_ms, unix_ms};
pub use window::{max_in_window, SlidingWindow};

/// Implements `as_str`-based `Display`, an `ALL` lookup `FromStr` and an error
/// type for a fieldless enum stored as TEXT.
macro_rules! text_enum {
    ($ty:ident, $err:ident, $what:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        #[error("unknown {kind} {0:?}", kind = $what)]
        pub struct $err(pub String);

        impl std::str::FromStr for $ty {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $err(s.to_string()))
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + std::str::FromStr,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        let mut seen = std::collections::HashSet::new();
        for v in all {
            let s = v.to_string();
            assert!(seen.insert(s.clone()), "{s} is used twice");
            assert_eq!(s.parse::<T>().unwrap(), *v);
        }
        assert!("no such thing".parse::<T>().is_err());
    }

    #[test]
    fn every_stored_enum_round_trips_through_its_text() {
        round_trips(&State::ALL);
        round_trips(&EventKind::ALL);
        round_trips(&Disposition::ALL);
        round_trips(&Action::ALL);
        round_trips(&Code::ALL);
    }
}
