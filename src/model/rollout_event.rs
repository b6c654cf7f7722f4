//! The rollout milestones a run records (issue 11), stored as JSON in the
//! detail of an event of kind `Rollout`, and read back by `status` and the
//! reports.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RolloutEvent {
    /// The rollout this run follows: its selection, waves, canary, budget, window.
    Plan {
        selection: String,
        waves: Vec<String>,
        canary: Option<u64>,
        budget: u64,
        window: Option<String>,
    },
    CanaryStarted {
        instances: Vec<String>,
    },
    CanaryPassed {
        instances: u64,
    },
    CanaryFailed {
        failed: Vec<String>,
    },
    WaveStarted {
        index: usize,
        of: usize,
        wave: String,
        instances: u64,
    },
    WaveFinished {
        index: usize,
        of: usize,
        wave: String,
    },
    /// Outside the maintenance window: no new Open until `until` (RFC 3339).
    WindowPaused {
        window: String,
        until: String,
    },
    WindowOpened {
        window: String,
    },
    /// Outside the window with `--exit-outside-window`: no new Open; the run
    /// verifies what is in flight and exits.
    OutsideWindow {
        window: String,
        next_open: String,
    },
    /// A write-path error counted against the budget.
    ErrorCounted {
        code: String,
        errors: u64,
        budget: u64,
    },
    /// More write-path errors than the budget: no new Open was started after this.
    BudgetSpent {
        errors: u64,
        budget: u64,
        top_code: String,
    },
}

impl RolloutEvent {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a rollout event serializes")
    }

    pub fn from_json(s: &str) -> Option<RolloutEvent> {
        serde_json::from_str(s).ok()
    }

    /// One line for a timeline.
    pub fn describe(&self) -> String {
        match self {
            RolloutEvent::Plan {
                selection,
                waves,
                canary,
                budget,
                window,
            } => {
                let mut parts = vec![format!("selection {selection}")];
                if !waves.is_empty() {
                    parts.push(format!("waves {}", waves.join(" → ")));
                }
                if let Some(n) = canary {
                    parts.push(format!("canary of {n}"));
                }
                parts.push(format!("error budget {budget}"));
                if let Some(w) = window {
                    parts.push(format!("window {w}"));
                }
                format!("rollout: {}", parts.join(", "))
            }
            RolloutEvent::CanaryStarted { instances } => format!(
                "canary started: {} instance(s) ({})",
                instances.len(),
                instances.join(", ")
            ),
            RolloutEvent::CanaryPassed { instances } => {
                format!("canary passed: {instances} instance(s) verified")
            }
            RolloutEvent::CanaryFailed { failed } => format!(
                "canary FAILED: {} ({}); no other Open was sent",
                failed.len(),
                failed.join(", ")
            ),
            RolloutEvent::WaveStarted {
                index,
                of,
                wave,
                instances,
            } => format!("wave {index}/{of} ({wave}) started: {instances} instance(s)"),
            RolloutEvent::WaveFinished { index, of, wave } => {
                format!("wave {index}/{of} ({wave}) finished and verified")
            }
            RolloutEvent::WindowPaused { window, until } => {
                format!("outside the window {window}: paused until {until}")
            }
            RolloutEvent::WindowOpened { window } => format!("window {window} open: Opens resume"),
            RolloutEvent::OutsideWindow { window, next_open } => format!(
                "outside the window {window}: stopped starting Opens (--exit-outside-window; next opens {next_open})"
            ),
            RolloutEvent::ErrorCounted {
                code,
                errors,
                budget,
            } => format!("write-path error {code}: {errors} of a budget of {budget}"),
            RolloutEvent::BudgetSpent {
                errors,
                budget,
                top_code,
            } => format!(
                "error budget spent: {errors} write-path errors > {budget} (most: {top_code}); no new Open started"
            ),
        }
    }
}
