//! `fleetcrypt doctor` (SPEC §3, issue 12): a checklist of everything a run
//! needs before it sends anything, each failure with its fix; and its short
//! form, run at the start of `run`, `resume` and `plan` unless `--no-doctor`.
//!
//! - `checklist`: the items, how they print and what exit code they make;
//!   the clock-skew thresholds.
//! - `probe`: the few signed reads (one per endpoint, KMS per region, the
//!   CDB service role), paced by a sliding log per (endpoint, action).
//! - `eta`: the quota a run gets and the time it needs, for doctor and plan.
//! - `command`: the command itself, the journal check, and the short form.

mod checklist;
mod command;
mod eta;
mod probe;

pub use command::DoctorArgs;
pub(super) use command::{before_run, doctor};
pub(super) use eta::{render as eta_lines, unit as eta_unit, Endpoints};
