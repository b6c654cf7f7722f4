//! The binary: parse flags, run one command, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Every file fleetcrypt creates is private to its owner (journals, reports, CSVs).
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = fleetcrypt::cli::Cli::parse();
    ExitCode::from(fleetcrypt::cli::main(cli))
}
