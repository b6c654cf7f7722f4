//! The rollout flags of `run` and `resume` (issue 11), parsed into the
//! runner's [`Rollout`] once.

use clap::Args;

use super::error::CliError;
use crate::runner::rollout::{
    Amount, CanaryThen, Match, Rollout, Selection, Waves, Window, WindowTz, RAMP_START,
};

#[derive(Debug, Clone, Default, Args)]
pub struct RolloutArgs {
    /// Canary: the first N (or N%) unfinished instances go alone, to a verified
    /// end, before any other Open; a failed one stops the run (exit 1).
    #[arg(long, value_name = "N|N%", help_heading = "Rollout")]
    pub canary: Option<Amount>,
    /// After a passed canary: stop (exit 0; `fleetcrypt resume` continues) or go on.
    #[arg(long, value_enum, default_value_t = CanaryThen::Stop, value_name = "WHAT", help_heading = "Rollout")]
    pub canary_then: CanaryThen,
    /// Error budget: once more write-path errors than this were seen, no new
    /// Open starts; those in flight are verified; exit 1. Default: the larger
    /// of 10 and 5% of the instances the run touches.
    #[arg(long, value_name = "N|N%", help_heading = "Rollout")]
    pub max_errors: Option<Amount>,
    /// Maintenance window HH:MM-HH:MM (local time, or --window-tz / TZ):
    /// Opens start only inside it; outside, in-flight ones are verified and the
    /// run waits for the next window. Crossing midnight is allowed.
    #[arg(long, value_name = "HH:MM-HH:MM", help_heading = "Rollout")]
    pub window: Option<String>,
    /// Time zone of --window (IANA name, e.g. Asia/Shanghai).
    #[arg(long, value_name = "TZ", help_heading = "Rollout")]
    pub window_tz: Option<String>,
    /// Outside the window, exit 1 (after verifying what is in flight) instead of waiting.
    #[arg(long, help_heading = "Rollout")]
    pub exit_outside_window: bool,
    /// Only instances with KEY=VALUE (KEY is Region or a label column;
    /// repeatable: values of one KEY are alternatives, different KEYs all apply).
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Rollout")]
    pub only: Vec<Match>,
    /// Not instances with KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Rollout")]
    pub exclude: Vec<Match>,
    /// Groups run one after another, each fully verified before the next:
    /// KEY=V1,KEY=V2 (instances in no group are not touched).
    #[arg(long, value_name = "KEY=V1,KEY=V2", help_heading = "Rollout")]
    pub waves: Option<Waves>,
    /// Opens unanswered per endpoint at the start (each accepted answer allows
    /// one more); 0 turns the ramp off.
    #[arg(long, default_value_t = RAMP_START, hide = true)]
    pub ramp_start: usize,
}

impl RolloutArgs {
    pub fn rollout(&self) -> Result<Rollout, CliError> {
        let window = match &self.window {
            Some(w) => {
                let tz = WindowTz::from_flag_or_env(self.window_tz.as_deref())
                    .map_err(CliError::usage)?;
                Some(Window::parse(w, tz).map_err(CliError::usage)?)
            }
            None if self.window_tz.is_some() || self.exit_outside_window => {
                return Err(CliError::usage(
                    "--window-tz and --exit-outside-window need --window",
                ))
            }
            None => None,
        };
        if matches!(self.canary, Some(Amount::Count(0))) {
            return Err(CliError::usage(
                "--canary 0: leave the flag out for no canary",
            ));
        }
        Ok(Rollout {
            selection: Selection {
                only: self.only.clone(),
                exclude: self.exclude.clone(),
            },
            waves: self.waves.clone(),
            canary: self.canary,
            canary_then: self.canary_then,
            max_errors: self.max_errors,
            window,
            exit_outside_window: self.exit_outside_window,
            ramp_start: (self.ramp_start > 0).then_some(self.ramp_start),
        })
    }
}
