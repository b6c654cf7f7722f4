//! Everything a job needs before it touches the cloud, each check failing
//! before anything is sent: flags into a `RunConfig`, the input, credentials,
//! the client, the journal (locked), the import, and the Ctrl-C handler.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::args::{Global, InputArgs, JobArgs};
use super::error::CliError;
use super::exit;
use crate::api::credentials::{self, Credentials, ProcessEnv};
use crate::api::{Client, ClientOptions, Clients};
use crate::input::{self, Defaults};
use crate::journal::{read, schema, ImportSummary, Journal, JournalLock};
use crate::runner::RunConfig;

pub(super) fn run_config(global: &Global, job: &JobArgs) -> Result<RunConfig, CliError> {
    let endpoints = global.endpoint_policy(job.regional_endpoints);
    endpoints.validate().map_err(CliError::usage)?;
    if job.verify_deadline < job.timeout {
        return Err(CliError::usage(
            "--verify-deadline must be at least --timeout",
        ));
    }
    let floor = RunConfig::settle_floor(job.timeout);
    if job.settle < floor && !job.allow_short_settle {
        return Err(CliError::usage(format!(
            "--settle {} is shorter than the API's documented 10s plus --timeout {} ({}): the server could still apply an Open after fleetcrypt re-sent it",
            humantime::format_duration(job.settle),
            humantime::format_duration(job.timeout),
            humantime::format_duration(floor)
        )));
    }
    if job.settle < job.timeout {
        return Err(CliError::usage("--settle must be at least --timeout"));
    }
    Ok(RunConfig {
        rate: job.rate,
        max_in_flight: job.max_in_flight as usize,
        timeout: job.timeout,
        settle: job.settle,
        max_attempts: job.max_attempts,
        verify_deadline: job.verify_deadline,
        check_kms: !job.no_check_kms,
        endpoints,
        rate_margin: job.rate_margin,
        max_active: (job.max_in_flight as usize * 4).max(64),
        drain_limit: job.timeout + Duration::from_secs(5),
        verify_first_read: job.verify_first_read,
        rollout: job.rollout.rollout()?,
        ..RunConfig::default()
    })
}

pub(super) fn load_input(input: &InputArgs) -> Result<input::Validated, CliError> {
    let rows = &input.rows;
    if rows.key_id.is_some() != rows.key_region.is_some() {
        return Err(CliError::usage("--key-id and --key-region go together"));
    }
    let defaults = Defaults {
        region: rows.region.clone().or_else(|| {
            std::env::var("TENCENTCLOUD_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        }),
        key_id: rows.key_id.clone(),
        key_region: rows.key_region.clone(),
        account_column: rows.account_column.clone(),
    };
    input::validate(&input.instances, &defaults).map_err(CliError::usage)
}

/// Credentials in SPEC order; missing ones are an account-wide stop (exit 3).
/// At -v, logs which credentials were found: the SecretId and source as is, the
/// key and token through `Secret`'s redacting `Debug` (tests/secrets.rs scans
/// this log, so it fails if that redaction is ever removed).
pub(super) fn load_credentials(global: &Global) -> Result<Credentials, CliError> {
    let creds = credentials::load(global.profile.as_deref(), &ProcessEnv).map_err(|e| match e {
        credentials::CredentialsError::Missing => CliError::Account(e.to_string()),
        _ => CliError::usage(e),
    })?;
    tracing::debug!(credentials = ?creds, "credentials loaded");
    Ok(creds)
}

/// The signed client for the global flags (`--resolve` pins) and a timeout.
pub(super) fn client(
    global: &Global,
    creds: Credentials,
    timeout: Duration,
    pool: usize,
) -> Result<Client, CliError> {
    let resolve = global.resolves().map_err(CliError::usage)?;
    Client::new(
        creds,
        &ClientOptions {
            timeout,
            resolve,
            pool_max_idle_per_host: pool.max(16),
            connect_delay_max: None,
        },
    )
    .map_err(CliError::failed)
}

/// What `run`, `resume` and `plan` need before they touch a journal. Every
/// check that can fail without sending anything happens here.
pub(super) struct Prepared {
    pub config: RunConfig,
    pub specs: Option<input::Validated>,
    /// The signed client of each account found so far; [`Prepared::clients_for`]
    /// completes it for what the journal holds.
    clients: Clients,
    /// Why the run's own credentials are missing, when they are.
    own_missing: Option<CliError>,
    /// The first client made: the others share its connections.
    base: Option<Client>,
}

pub(super) fn prepare(
    global: &Global,
    job: &JobArgs,
    input: Option<&InputArgs>,
) -> Result<Prepared, CliError> {
    let config = run_config(global, job)?;
    let specs = input.map(load_input).transpose()?;
    let mut prepared = Prepared {
        config,
        specs: None,
        clients: Clients::default(),
        own_missing: None,
        base: None,
    };
    // The run's own credentials are needed only for rows that name no
    // account, so none at all is an error only then; a broken --profile
    // file is an error at once.
    match load_credentials(global) {
        Ok(creds) => {
            let own = prepared.signed(global, creds)?;
            prepared.clients = Clients::new(Some(own));
        }
        Err(e @ CliError::Account(_)) => prepared.own_missing = Some(e),
        Err(e) => return Err(e),
    }
    // Without a selection every account of the input is worked on: a missing
    // profile stops here, before the journal is touched. With one, only the
    // accounts the selection touches count (`clients_for`, after the import).
    if let Some(specs) = specs
        .as_ref()
        .filter(|_| prepared.config.rollout.touches_everything())
    {
        if specs.has_unnamed() {
            prepared.need_own_for_unnamed(specs.accounts().next().is_some())?;
        }
        for account in specs.accounts() {
            prepared.add_account(global, account)?;
        }
    }
    prepared.specs = specs;
    Ok(prepared)
}

impl Prepared {
    /// A client for `creds`, sharing the first client's connections.
    fn signed(&mut self, global: &Global, creds: Credentials) -> Result<Client, CliError> {
        Ok(match &self.base {
            Some(base) => base.with_credentials(creds),
            None => {
                let c = client(
                    global,
                    creds,
                    self.config.timeout,
                    self.config.max_in_flight,
                )?;
                self.base = Some(c.clone());
                c
            }
        })
    }

    /// [`Prepared::need_own`] for rows that name no account; when other rows
    /// do, the message says which rows need the run's own credentials.
    fn need_own_for_unnamed(&mut self, others_named: bool) -> Result<(), CliError> {
        match self.need_own() {
            Err(CliError::Account(e)) if others_named => Err(CliError::Account(format!(
                "the instances that name no Account use the run's own credentials: {e}"
            ))),
            other => other,
        }
    }

    /// Fails (exit 3) when the run's own credentials are missing (the
    /// error is taken: the caller stops on it).
    fn need_own(&mut self) -> Result<(), CliError> {
        match self.own_missing.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Loads `account`'s tccli profile, once. A profile that cannot be read is
    /// an account-wide stop (exit 3), named, before anything is sent.
    fn add_account(&mut self, global: &Global, account: &str) -> Result<(), CliError> {
        if self.clients.get(Some(account)).is_some() {
            return Ok(());
        }
        let creds = credentials::load(Some(account), &ProcessEnv).map_err(|e| {
            CliError::Account(format!(
                "account {account} (a tccli profile named by the input): {e}; nothing was sent"
            ))
        })?;
        tracing::debug!(account, credentials = ?creds, "credentials loaded");
        let client = self.signed(global, creds)?;
        self.clients.add(account, client);
        Ok(())
    }

    /// The clients for every unfinished instance of `journal` the run touches
    /// (the input's and any an earlier run left; `--only`/`--exclude`/`--waves`
    /// leave the rest alone): fails, before anything is sent, when one of
    /// their accounts has no credentials. Also returns those accounts.
    pub(super) async fn clients_for(
        &mut self,
        global: &Global,
        journal: &Journal,
    ) -> Result<(Clients, Vec<Option<String>>), CliError> {
        let touched = self.config.rollout.for_run(self.config.plan_only);
        let accounts = journal
            .query(move |c| read::open_accounts_where(c, |row| touched.touches(row)))
            .await
            .map_err(|e| CliError::journal(&e, "; nothing was sent"))?;
        if accounts.is_empty() && self.clients.all().next().is_none() {
            // Nothing left to do, and no credentials at all: as ever, missing
            // credentials are an account-wide stop (exit 3).
            self.need_own()?;
        }
        for account in &accounts {
            match account {
                Some(name) => self.add_account(global, name)?,
                None => self.need_own_for_unnamed(accounts.iter().any(Option::is_some))?,
            }
        }
        Ok((self.clients.clone(), accounts))
    }
}

/// The journal for writing, with the lock that makes this process its only writer.
pub(super) fn open_for_write(path: &Path) -> Result<(JournalLock, Journal), CliError> {
    // Before the lock file is made beside it: a directory, a device or a damaged file
    // is rejected without leaving anything behind.
    schema::check_file(path).map_err(|e| CliError::usage(format!("{e}; nothing was sent")))?;
    let lock = JournalLock::acquire(path).map_err(CliError::usage)?;
    let journal = Journal::open(path).map_err(|e| CliError::journal(&e, "; nothing was sent"))?;
    Ok((lock, journal))
}

/// A journal failure before anything was sent (import, the run record): the journal
/// could not take the job, so nothing is sent and the exit is 2 (SPEC §3).
pub(super) fn journal_refused(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::usage(format!(
        "cannot write the journal {}: {e}; nothing was sent",
        path.display()
    ))
}

/// Streams a validated input into the journal in chunks (one transaction each),
/// so a million-row file is never held in memory.
pub(super) async fn import(
    journal: &Journal,
    specs: input::Validated,
) -> Result<ImportSummary, CliError> {
    let j = journal.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut total = ImportSummary::default();
        let mut failure = None;
        let read = specs.read_chunks(10_000, |chunk| match j.import_blocking(chunk) {
            Ok(s) => {
                total.added += s.added;
                total.already_known += s.already_known;
                total.differing.extend(s.differing);
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                failure = Some(e);
                Err(std::io::Error::other(text))
            }
        });
        match (failure, read) {
            (Some(e), _) => Err(e.to_string()),
            (None, Err(e)) => Err(format!("cannot read the input again: {e}")),
            (None, Ok(())) => Ok(total),
        }
    })
    .await;
    match joined {
        Ok(Ok(total)) => {
            tracing::info!(
                added = total.added,
                already_in_journal = total.already_known,
                "imported"
            );
            if let Some(first) = total.differing.first() {
                tracing::warn!(count = total.differing.len(), first = %first, "instances already in the journal differ from the input (Region/KeyId/KeyRegion/Account); the journal's values are kept");
            }
            Ok(total)
        }
        Ok(Err(e)) => Err(journal_refused(journal.path(), e)),
        Err(e) => Err(CliError::failed(e)),
    }
}

/// First Ctrl-C (or SIGTERM): stop dispatching and drain. Second: exit at once;
/// the write-ahead journal makes that safe too.
pub(super) fn install_interrupt(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let first = async {
            match term.as_mut() {
                Some(t) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = t.recv() => {} },
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        first.await;
        eprintln!("\nfleetcrypt: stopping: no new requests; waiting for those in flight (Ctrl-C again to exit now; the journal stays consistent)");
        token.cancel();
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("fleetcrypt: exiting now");
        std::process::exit(exit::INTERRUPTED as i32);
    });
}

/// Asks on the terminal before an irreversible change; anything but `yes` is no.
pub(super) fn confirm(pending: u64, journal: &Path) -> bool {
    eprint!(
        "About to enable storage encryption on up to {pending} instance(s) recorded in {}.\nEncryption cannot be turned off once enabled. Type 'yes' to continue: ",
        journal.display()
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    line.trim().eq_ignore_ascii_case("yes")
}
