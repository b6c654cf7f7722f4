//! The runner: drives every non-terminal instance in the journal to a terminal
//! state, pipelining preflight, requests and verification across per-(endpoint,
//! action) limiters (SPEC §1).

mod backoff;
mod dispatcher;
pub(crate) mod limiter;
mod phases;
pub mod rollout;
/// Public only for `tests/runner.rs`'s step-by-step tests (written for the
/// mutation runs of issue 13): not part of the library's API.
#[doc(hidden)]
pub mod steps;
mod verify_schedule;
mod wire_gate;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use steps::StopReason;

use crate::api::{Clients, EndpointPolicy};
use crate::journal::{read, Journal, JournalError};
use crate::model::State;

/// Everything that shapes a run, validated once from the flags.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Requests per sliding second per (credential, endpoint, action).
    pub rate: u32,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Per-request timeout (the client's).
    pub timeout: Duration,
    /// How long after an Open was sent the server may still be working on it
    /// (`--settle`, SPEC §1): a `NO` read before then does not count. Measured
    /// on the monotonic clock from the attempt's send time; after a restart,
    /// from the restart.
    pub settle: Duration,
    /// After an ambiguous answer, the first verification read comes this soon
    /// (a `YES` ends the attempt early); the next one when the attempt settles.
    pub ambiguous_first_read: Duration,
    pub max_attempts: u32,
    /// How long after an accepted attempt to keep polling for `YES`.
    pub verify_deadline: Duration,
    pub check_kms: bool,
    pub endpoints: EndpointPolicy,
    /// Added to the 1-second window of the limiter, for network jitter.
    pub rate_margin: Duration,
    pub retry_backoff: Backoff,
    pub poll_backoff: Backoff,
    /// KmsError confirmed by a NO is retried this many times, then failed.
    pub kms_error_retries: u32,
    /// Instances in progress at once (bounds memory on huge fleets).
    pub max_active: usize,
    /// Preflight only (`plan`): never journal an attempt, never send a write.
    pub plan_only: bool,
    /// Wait before the first request (a previous process's window).
    pub startup_wait: Duration,
    /// After a stop, how long in-flight requests may take to finish.
    pub drain_limit: Duration,
    /// Where each endpoint's verification schedule starts: how long after an
    /// accepted Open the first read goes, until the run has learned better
    /// (`verify_schedule`). The documented 10 s.
    pub verify_first_read: Duration,
    /// Canary, waves, selection, error budget, window (issue 11).
    pub rollout: rollout::Rollout,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            rate: 20,
            max_in_flight: 256,
            timeout: Duration::from_secs(15),
            settle: DEFAULT_SETTLE,
            ambiguous_first_read: Duration::from_secs(2),
            max_attempts: 8,
            verify_deadline: Duration::from_secs(300),
            check_kms: false,
            endpoints: EndpointPolicy::Default,
            rate_margin: Duration::from_millis(15),
            retry_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            poll_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(15)),
            kms_error_retries: 2,
            max_active: 1024,
            plan_only: false,
            startup_wait: Duration::from_millis(1050),
            drain_limit: Duration::from_secs(20),
            verify_first_read: verify_schedule::START,
            rollout: rollout::Rollout::default(),
        }
    }
}

/// The default settle window: the official SDK's default request timeout.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(60);

/// The documented worst-case latency of the API ("may take up to 10 s").
pub const API_LATENCY_BOUND: Duration = Duration::from_secs(10);

impl RunConfig {
    /// The shortest settle window SPEC §1 allows for `timeout`: the API's
    /// documented 10 s plus the request timeout.
    pub fn settle_floor(timeout: Duration) -> Duration {
        API_LATENCY_BOUND + timeout
    }
}

/// Live counters for progress display.
#[derive(Debug, Default)]
pub struct Counters {
    pub total: AtomicU64,
    pub encrypted: AtomicU64,
    pub already_encrypted: AtomicU64,
    pub failed: AtomicU64,
    /// Preflight passed (plan mode).
    pub ready: AtomicU64,
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub in_flight: AtomicU64,
    /// Outside the maintenance window: Opens wait until then (Unix ms; 0: not paused).
    pub paused_until_ms: AtomicU64,
}

impl Counters {
    pub fn finished(&self, state: State) {
        let c = match state {
            State::Encrypted => &self.encrypted,
            State::AlreadyEncrypted => &self.already_encrypted,
            State::Failed => &self.failed,
            _ => &self.ready,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn done(&self) -> u64 {
        self.encrypted.load(Ordering::Relaxed)
            + self.already_encrypted.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.ready.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Endpoint(#[from] crate::api::EndpointError),
    /// Unfinished instances name an account (`None`: the run's own
    /// credentials) that has no client: nothing was sent.
    #[error("no credentials for {}; nothing was sent", match .0 { Some(a) => format!("account {a}"), None => "the instances that name no account".to_string() })]
    NoCredentials(Option<String>),
}

impl From<rusqlite::Error> for RunError {
    fn from(e: rusqlite::Error) -> Self {
        RunError::Journal(e.into())
    }
}

/// Runs the job on every non-terminal instance of `journal`. Returns why it
/// stopped early, if it did; the journal holds every outcome.
pub async fn run(
    journal: &Journal,
    clients: impl Into<Clients>,
    config: &RunConfig,
    run_id: Option<i64>,
    shutdown: CancellationToken,
    counters: Arc<Counters>,
) -> Result<Option<StopReason>, RunError> {
    config.endpoints.validate()?;
    let clients: Clients = clients.into();
    // `plan` says what a run would do to the selection; canary, waves and the
    // window shape only when Opens go, and plan sends none.
    let rollout = config.rollout.for_run(config.plan_only);
    // Every account with unfinished work in the run needs its credentials
    // before anything is sent: a run never works on one account with
    // another's key.
    let touched = rollout.clone();
    let accounts = journal
        .query(move |c| read::open_accounts_where(c, |row| touched.touches(row)))
        .await?;
    for account in accounts {
        if clients.get(account.as_deref()).is_none() {
            return Err(RunError::NoCredentials(account));
        }
    }
    let counts = journal.query(read::counts).await?;
    let total: u64 = counts.values().sum();
    counters.total.store(total, Ordering::Relaxed);
    counters
        .encrypted
        .store(counts[&State::Encrypted], Ordering::Relaxed);
    counters
        .already_encrypted
        .store(counts[&State::AlreadyEncrypted], Ordering::Relaxed);
    counters
        .failed
        .store(counts[&State::Failed], Ordering::Relaxed);
    let ctx = Arc::new(steps::Ctx::new(
        journal.clone(),
        clients,
        config.clone(),
        run_id,
    ));
    // On resume, verification starts from the delays the journal has seen.
    ctx.seed_schedules(&journal.query(read::verification).await?.delay_to_yes);
    let plan = phases::plan(journal, &rollout).await?;
    if plan.touched == 0 && !rollout.touches_everything() {
        tracing::warn!("the selection (--only/--exclude/--waves) matches no unfinished instance: nothing to do (values are case-sensitive)");
    }
    *ctx.budget.lock().unwrap_or_else(|e| e.into_inner()) = rollout::ErrorBudget::new(plan.budget);
    if !config.plan_only {
        journal.note_rollout(run_id, &plan.event(&rollout)).await?;
    }
    let mut dispatcher = dispatcher::Dispatcher::new(ctx.clone(), counters);
    for phase in &plan.phases {
        if let Some(event) = phase.started() {
            journal.note_rollout(run_id, &event).await?;
        }
        let stop = dispatcher
            .run_phase(phase.filter.clone(), shutdown.clone())
            .await?;
        if let Some(stop) = stop {
            return Ok(Some(stop));
        }
        if let Some(stop) = phase.finished(journal, run_id).await? {
            return Ok(Some(stop));
        }
        if phase.is_canary() && rollout.canary_then == rollout::CanaryThen::Stop {
            return Ok(Some(StopReason::CanaryPassed {
                instances: phase.size,
            }));
        }
    }
    Ok(None)
}
