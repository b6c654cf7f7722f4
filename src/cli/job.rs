//! `run`, `resume` and `plan`, and [`Job`]: the one driver every job (the demo
//! too) goes through: record the run, drive the runner, record how it ended.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::args::{Global, InputArgs, JobArgs};
use super::error::{CliError, CliResult, Done};
use super::output::Progress;
use super::setup::{confirm, import, install_interrupt, journal_refused, open_for_write, prepare};
use super::{doctor, plan_summary, summary};
use crate::api::Clients;
use crate::journal::{read, schema, Journal};
use crate::model::hint;
use crate::runner::{self, Counters, RunConfig, StopReason};

/// A journal with instances imported, the signed client of each account and a
/// validated config.
pub(super) struct Job<'a> {
    pub journal: &'a Journal,
    pub clients: &'a Clients,
    pub config: &'a RunConfig,
    /// The command recorded as a run in the journal; `plan` records none.
    pub command: Option<&'static str>,
    pub quiet: bool,
}

impl Job<'_> {
    /// Records the run, drives every instance to a terminal state (or until a
    /// stop), and records how it ended.
    pub(super) async fn execute(&self) -> CliResult {
        let c = self.config;
        let run_id = match self.command {
            Some(command) => Some(
                self.journal
                    .start_run(command, Some(c.rate), Some(c.timeout), Some(c.settle))
                    .await
                    .map_err(|e| journal_refused(self.journal.path(), e))?,
            ),
            None => None,
        };
        let token = CancellationToken::new();
        install_interrupt(token.clone());
        let result = self.drive(run_id, token).await;
        if let Some(id) = run_id {
            let code = match &result {
                Ok(done) => done.exit_code(),
                Err(e) => e.exit_code(),
            };
            let _ = self.journal.end_run(id, code as i32).await;
        }
        result
    }

    /// What the operator does after a stop: a run resumes; a plan (which
    /// records no run and has a scratch journal) is simply run again.
    fn next_step(&self) -> &'static str {
        match self.command {
            Some(_) => "`fleetcrypt resume` continues where this stopped",
            None => "the plan is incomplete: plan again once fixed",
        }
    }

    async fn drive(&self, run_id: Option<i64>, token: CancellationToken) -> CliResult {
        let counters = Arc::new(Counters::default());
        let progress = Progress::start(counters.clone(), self.quiet);
        let result = runner::run(
            self.journal,
            self.clients,
            self.config,
            run_id,
            token,
            counters,
        )
        .await;
        progress.finish().await;
        match result.map_err(CliError::failed)? {
            Some(StopReason::Interrupted) => Err(CliError::Interrupted(format!(
                "interrupted; {}",
                self.next_step()
            ))),
            Some(StopReason::AccountWide {
                account,
                code,
                message,
            }) => Err(CliError::Account(format!(
                "stopped: the API refused the {}: {code}: {message}{}",
                match account {
                    Some(a) => format!("credentials of account {a} (tccli profile)"),
                    None => "account".to_string(),
                },
                hint(&code)
                    .map(|h| format!("\n  hint: {h}"))
                    .unwrap_or_default()
            ))),
            Some(StopReason::Unreachable { endpoint, message }) => Err(CliError::failed(format!(
                "stopped: cannot reach the API at {endpoint}: {message}\n  check --endpoint, DNS and the network; nothing was changed, {}",
                self.next_step()
            ))),
            Some(StopReason::JournalFailed(e)) => Err(CliError::failed(format!(
                "stopped: the journal could not record a fact ({e}); nothing more was sent"
            ))),
            Some(StopReason::CanaryPassed { instances }) => {
                say!("canary passed: {instances} instance(s) encrypted and verified; `fleetcrypt resume` continues (add --canary-then continue to go on at once)");
                Ok(Done::Ok)
            }
            Some(StopReason::CanaryFailed { failed }) => Err(CliError::failed(format!(
                "stopped: the canary failed: {} instance(s) did not end encrypted ({}); no other Open was sent. See `fleetcrypt status` for the cause; `fleetcrypt retry-failed` then `resume` once it is fixed",
                failed.len(),
                failed.join(", ")
            ))),
            Some(StopReason::ErrorBudget {
                errors,
                budget,
                top_code,
                ..
            }) => Err(CliError::failed(format!(
                "stopped: the error budget is spent: {errors} write-path errors (budget {budget}); most were {top_code}{}\n  no new Open was started after that; those in flight were verified. Fix the cause, then `fleetcrypt resume` continues",
                hint(&top_code)
                    .map(|h| format!("\n  hint: {h}"))
                    .unwrap_or_default()
            ))),
            Some(StopReason::OutsideWindow { window, next_open }) => Err(CliError::failed(format!(
                "stopped: outside the maintenance window {window} (next opens {next_open}); what was in flight is verified. `fleetcrypt resume` continues"
            ))),
            None => {
                let rollout = self.config.rollout.clone();
                let all_good = if rollout.touches_everything() {
                    let counts = self.journal.query(read::counts).await.unwrap_or_default();
                    counts.iter().all(|(s, n)| s.is_success() || *n == 0)
                } else {
                    // Only what this run was asked to touch: the rest stays pending.
                    self.journal
                        .query(move |c| {
                            let mut good = true;
                            read::for_each_instance(c, |row| {
                                good &= !rollout.touches(&row) || row.state.is_success();
                                Ok(())
                            })
                            .map(|_| good)
                        })
                        .await
                        .unwrap_or(false)
                };
                Ok(Done::from_success(all_good))
            }
        }
    }
}

/// `run` (with input) and `resume` (without).
pub(super) async fn run(global: &Global, input: Option<InputArgs>, job: JobArgs) -> CliResult {
    let mut prepared = prepare(global, &job, input.as_ref())?;
    if input.is_none() && !global.journal.exists() {
        return Err(CliError::usage(format!(
            "no journal at {} to resume (start with `fleetcrypt run --instances FILE`)",
            global.journal.display()
        )));
    }
    let (_lock, journal) = open_for_write(&global.journal)?;
    if let Some(specs) = prepared.specs.take() {
        import(&journal, specs).await?;
    }
    let (clients, accounts) = prepared.clients_for(global, &journal).await?;
    if !job.no_doctor {
        doctor::before_run(&clients, &accounts, &prepared.config, &journal).await?;
    }
    let counts = journal.query(read::counts).await.unwrap_or_default();
    let open: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    if open > 0 && !job.yes && std::io::stdin().is_terminal() && !confirm(open, &global.journal) {
        return Err(CliError::usage("not confirmed; nothing was sent"));
    }
    let started = Instant::now();
    let result = Job {
        journal: &journal,
        clients: &clients,
        config: &prepared.config,
        command: Some(if input.is_some() { "run" } else { "resume" }),
        quiet: global.quiet,
    }
    .execute()
    .await;
    let path = journal.path().to_path_buf();
    drop(journal);
    summary::print(&path, started.elapsed(), prepared.config.rate, true);
    result
}

/// `plan` and `run --dry-run`: preflight reads into a scratch journal; no write is sent.
pub(super) async fn plan(global: &Global, input: InputArgs, job: JobArgs) -> CliResult {
    let mut prepared = prepare(global, &job, Some(&input))?;
    // Plan says what `run` would do; `run` would stop at an unusable journal, so plan
    // does too (read-only: an existing journal is checked, never created or migrated).
    if global.journal.exists() || global.journal.is_symlink() {
        schema::open_reader(&global.journal).map_err(|e| {
            CliError::usage(format!("{e}; `run` would stop here, nothing was sent"))
        })?;
    }
    prepared.config.plan_only = true;
    let dir = tempfile::Builder::new()
        .prefix("fleetcrypt-plan")
        .tempdir()
        .map_err(CliError::failed)?;
    let path = dir.path().join("plan.db");
    let journal = Journal::open(&path).map_err(CliError::failed)?;
    if let Some(specs) = prepared.specs.take() {
        import(&journal, specs).await?;
    }
    let (clients, accounts) = prepared.clients_for(global, &journal).await?;
    if !job.no_doctor {
        doctor::before_run(&clients, &accounts, &prepared.config, &journal).await?;
    }
    Job {
        journal: &journal,
        clients: &clients,
        config: &prepared.config,
        command: None,
        quiet: global.quiet,
    }
    .execute()
    .await?;
    drop(journal);
    plan_summary::finish(&path, &prepared.config)
}
