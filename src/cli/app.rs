//! `fleetcrypt`'s one entry point: logging, the runtime, one command, and the
//! one place where a command's ending is printed and becomes an exit code.

use super::args::{Cli, Command, JournalCommand};
use super::error::{CliError, CliResult};
use super::{commands, demo, discover, doctor, emulator_cmd, job, output, status};

pub fn main(cli: Cli) -> u8 {
    let global = cli.global();
    let verbosity = if global.quiet {
        -1
    } else {
        global.verbose as i8
    };
    output::init_logging(global.log_format, verbosity);
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dispatch(cli)),
        Err(e) => Err(CliError::failed(format!(
            "cannot start the async runtime: {e}"
        ))),
    };
    match result {
        Ok(done) => done.exit_code(),
        Err(e) => {
            eprintln!("fleetcrypt: {}", e.to_string().trim_end());
            e.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> CliResult {
    let global = cli.global();
    match cli.command {
        Command::Demo { args, .. } => demo::demo(&global, args).await,
        Command::Plan(a) => job::plan(&global, a.input, a.job).await,
        Command::Run(a) if a.dry_run => job::plan(&global, a.input, a.job).await,
        Command::Run(a) => job::run(&global, Some(a.input), a.job).await,
        Command::Resume(j) => job::run(&global, None, j).await,
        Command::Doctor(a) => doctor::doctor(&global, a).await,
        Command::Status { json, .. } => status::status(&global, json),
        Command::Report { format, output, .. } => commands::report(&global, format, output),
        // It waits on the journal writer with blocking calls: not on a runtime thread.
        Command::RetryFailed { code, .. } => {
            tokio::task::block_in_place(|| commands::retry_failed(&global, code))
        }
        Command::Discover(a) => discover::discover(&global, a).await,
        Command::Emulator { args, .. } => emulator_cmd::run(args).await,
        Command::Call {
            service,
            action,
            json,
            region,
            api_version,
            timeout,
            ..
        } => {
            commands::call(
                &global,
                &service,
                &action,
                &json,
                region,
                api_version,
                timeout,
            )
            .await
        }
        Command::Journal {
            command: JournalCommand::Verify { .. },
            ..
        } => commands::journal_verify(&global),
        Command::Completions { shell, .. } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut super::args::Cli::command(),
                "fleetcrypt",
                &mut std::io::stdout(),
            );
            Ok(super::error::Done::Ok)
        }
        Command::Man { .. } => {
            use clap::CommandFactory;
            clap_mangen::Man::new(super::args::Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| CliError::failed(format!("cannot write the manual page: {e}")))?;
            Ok(super::error::Done::Ok)
        }
    }
}
