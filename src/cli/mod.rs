//! The command line (SPEC §3): flags are parsed and validated into configs
//! once here; everything below works on validated values.

/// `println!` that never panics: a closed stdout (`| head`, a dead pipe) is not an error
/// worth dying for, least of all in the emulator or mid-run.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod app;
mod args;
mod commands;
mod demo;
mod discover;
mod doctor;
mod emulator_cmd;
mod error;
mod exit;
mod job;
mod output;
mod plan_summary;
mod rollout_args;
mod setup;
mod status;
mod summary;

pub use app::main;
pub use args::Cli;
