//! One step = one API call for one instance, its journal record, and the
//! decision about what comes next. Workers run steps; the dispatcher decides
//! when. Every rule of SPEC §1 that concerns a single instance lives here:
//! `read` (the three Describe reads and their failures), `verify` (what a
//! verification `NO` means), `preflight` (features and KMS key), `send` (the
//! write-ahead and the Open, split by what it answered).
//!
//! A step returns one [`Stepped`]: what its request heard, and what comes next.
//! The journal returns the instance's row after every fact, and [`Active`]
//! holds that row, so the state in memory is the journal's and nothing else.

mod preflight;
mod read;
mod send;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tracing::Instrument;

use super::verify_schedule::VerifySchedule;
use super::RunConfig;
use crate::api::{
    classify, CallKind, Called, Client, Clients, Endpoint, Failure, Gate, Outcome, Service,
};
use crate::journal::{CallRecord, Change, Fact, InstanceRow, Journal, JournalError};
use crate::model::{now_ms, Action, Disposition, InstanceId, State};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Preflight `DescribeDBInstanceInfo`: already encrypted? Also clears the first attempt.
    PreflightRead,
    Features,
    KmsKey,
    /// Journal-only: commit the attempt before it may be sent.
    WriteAhead,
    Send,
    /// After an attempt: has it taken effect?
    VerifyRead,
    /// Before re-sending after a definite rejection: a fresh NO is required.
    PreSendRead,
}

impl Step {
    pub fn action(self) -> Action {
        match self {
            Step::PreflightRead | Step::VerifyRead | Step::PreSendRead => {
                Action::DescribeDBInstanceInfo
            }
            Step::Features => Action::DescribeDBFeatures,
            Step::KmsKey => Action::DescribeKey,
            Step::WriteAhead | Step::Send => Action::OpenDBInstanceEncryption,
        }
    }

    /// Lower runs first within a bucket: finish instances before starting new ones.
    pub fn priority(self) -> u8 {
        match self {
            Step::Send | Step::WriteAhead => 0,
            Step::VerifyRead | Step::PreSendRead => 1,
            Step::Features | Step::KmsKey => 2,
            Step::PreflightRead => 3,
        }
    }
}

/// An instance being worked on: the journal's row for it, and what only this
/// process knows (monotonic deadlines, poll and read-failure counts, endpoints).
#[derive(Debug, Clone)]
pub struct Active {
    /// The journal's row as the last fact left it: the one source of truth for
    /// state, attempts, clearance, the last outcome and error.
    pub row: InstanceRow,
    /// Monotonic: from when a `NO` read counts for the last attempt (SPEC §1).
    /// `None` when there is nothing to wait for (no attempt, or already cleared).
    pub settles_at: Option<Instant>,
    /// Monotonic: until when to keep polling for `YES` after an accepted attempt.
    pub verify_until: Option<Instant>,
    /// Monotonic: when the last attempt was answered "accepted" (this process).
    pub accepted_at: Option<Instant>,
    /// The first verification read of an accepted attempt is due this long after
    /// its answer, and has not been taken yet.
    pub first_read: Option<Duration>,
    /// That first read said `NO`.
    pub missed_first: bool,
    pub read_failures: u32,
    pub polls: u32,
    /// Since when reads have answered neither `YES` nor `NO`.
    pub unreadable_since: Option<Instant>,
    /// Set by a step that learned an Open did not take effect, or that the
    /// instance failed on the write path (issue 11's error budget): the code.
    /// The dispatcher takes it.
    pub write_error: Option<String>,
    pub cdb: Endpoint,
    pub kms: Option<Endpoint>,
}

impl Active {
    pub fn from_row(row: &InstanceRow, cdb: Endpoint, kms: Option<Endpoint>) -> Active {
        Active {
            row: row.clone(),
            settles_at: None,
            verify_until: None,
            accepted_at: None,
            first_read: None,
            missed_first: false,
            read_failures: 0,
            polls: 0,
            unreadable_since: None,
            write_error: None,
            cdb,
            kms,
        }
    }

    pub fn id(&self) -> &InstanceId {
        &self.row.instance_id
    }

    pub fn state(&self) -> State {
        self.row.state
    }

    /// Whether a new attempt may be written (a settled `NO` since the last one).
    pub fn cleared(&self) -> bool {
        self.row.cleared_to_send
    }

    /// Whether the last attempt was answered "accepted".
    pub fn accepted(&self) -> bool {
        self.row.last_outcome == Some(Disposition::Accepted)
    }

    fn attempts_used(&self) -> u32 {
        self.row.attempts.saturating_sub(self.row.budget_base)
    }

    /// Takes the journal's word for what it now holds.
    fn absorb(&mut self, row: InstanceRow) {
        self.row = row;
        if self.row.cleared_to_send {
            self.settles_at = None;
        }
    }

    /// Whether a read sent at `sent_at` comes after the last attempt settled.
    fn settled_at(&self, sent_at: Instant) -> bool {
        self.settles_at.is_none_or(|s| sent_at >= s)
    }
}

/// What a step's request heard, as far as the dispatcher cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The step sent nothing (the write-ahead).
    Nothing,
    /// A definite answer: data, or an API error other than `AuthFailure*`.
    Answer,
    /// `RequestLimitExceeded`: a definite answer that also says "slow down".
    Throttled,
    /// The request could not be sent at all (connect refused, DNS): why.
    NotSent(String),
    /// Sent, but no definite answer (no answer, unreadable, authentication refused).
    Unclear,
}

impl Heard {
    fn of<T>(kind: CallKind, result: &Result<T, Failure>) -> Heard {
        match result {
            Ok(_) => Heard::Answer,
            Err(Failure::NotSent(m)) => Heard::NotSent(m.clone()),
            Err(f) if classify(kind, f) == Outcome::Throttled => Heard::Throttled,
            Err(Failure::Api { code, .. }) if !code.starts_with("AuthFailure") => Heard::Answer,
            Err(_) => Heard::Unclear,
        }
    }

    /// Whether the step made an HTTP request.
    pub fn sent_request(&self) -> bool {
        *self != Heard::Nothing
    }

    /// Whether the server answered something definite (so the set-up works).
    pub fn definite(&self) -> bool {
        matches!(self, Heard::Answer | Heard::Throttled)
    }
}

/// What the dispatcher should do with the instance next.
#[derive(Debug)]
pub enum Next {
    /// Terminal (or, when planning, preflight passed).
    Done,
    After(Step, Duration),
    /// The run must stop; the journal holds where this instance is.
    Stop(StopReason),
}

/// Why the run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    /// The API refused the credentials of `account` (`None`: the run's own).
    AccountWide {
        account: Option<String>,
        code: String,
        message: String,
    },
    /// Nothing could be sent before any answer came back: wrong endpoint, DNS, network.
    Unreachable {
        endpoint: String,
        message: String,
    },
    JournalFailed(String),
    /// `--canary` passed and `--canary-then stop`: exit 0, `resume` continues.
    CanaryPassed {
        instances: u64,
    },
    /// A canary instance failed: no other Open was sent.
    CanaryFailed {
        failed: Vec<String>,
    },
    /// More write-path errors than `--max-errors`: no new Open was started after
    /// that; the Opens in flight were finished and verified.
    ErrorBudget {
        errors: u64,
        budget: u64,
        top_code: String,
    },
    /// Outside the maintenance window with `--exit-outside-window`.
    OutsideWindow {
        window: String,
        next_open: String,
    },
}

/// One step's whole result: what its request heard and what comes next.
#[derive(Debug)]
pub struct Stepped {
    pub heard: Heard,
    pub next: Next,
}

impl Stepped {
    fn new(heard: Heard, next: Next) -> Stepped {
        Stepped { heard, next }
    }
}

/// A finished step, back at the dispatcher with its instance.
#[derive(Debug)]
pub struct StepResult {
    pub active: Active,
    pub step: Step,
    pub heard: Heard,
    pub next: Next,
}

/// Shared by all workers.
pub struct Ctx {
    pub journal: Journal,
    /// The signed client of each account (issue 12).
    pub clients: Clients,
    pub config: RunConfig,
    pub run_id: Option<i64>,
    /// When to read accepted Opens back, learned per CDB endpoint host.
    schedules: Mutex<HashMap<String, VerifySchedule>>,
    /// Write-path errors against `--max-errors` (issue 11), across phases.
    pub budget: Mutex<super::rollout::ErrorBudget>,
    /// Custom KMS keys: (account, region, key id) → its state once read, behind a lock
    /// that one instance at a time holds while asking, so each distinct key
    /// costs one `DescribeKey`.
    key_states: Mutex<HashMap<KeyName, KeySlot>>,
}

/// A custom key: (account, region, key id).
type KeyName = (Option<String>, String, String);

/// A custom key's state once read; the lock is held while it is being read.
type KeySlot = Arc<tokio::sync::Mutex<Option<String>>>;

/// One request's reply, with what the journal and the dispatcher need of it.
struct Reply<R> {
    result: Result<R, Failure>,
    rec: CallRecord,
    /// Monotonic send time (after the gate, right before the write).
    sent_at: Instant,
    /// When the write went through (see [`Called::written_at`]): an Open's
    /// settle clock starts here.
    written_at: Instant,
    heard: Heard,
}

fn record<T>(
    action: Action,
    endpoint: &Endpoint,
    called: &Called<T>,
    request_id: Option<String>,
) -> CallRecord {
    let (code, message) = match &called.result {
        Err(f) => (Some(f.code()), Some(truncate(&f.message()))),
        Ok(_) => (None, None),
    };
    CallRecord {
        action,
        endpoint: endpoint.host.clone(),
        sent_at_ms: called.sent_at_ms,
        latency_ms: called.latency.as_millis() as i64,
        request_id: request_id.or_else(|| {
            called
                .result
                .as_ref()
                .err()
                .and_then(|f| f.request_id().map(str::to_string))
        }),
        error_code: code,
        error_message: message,
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() <= 500 {
        s.to_string()
    } else {
        s.chars().take(500).collect::<String>() + "…"
    }
}

fn jitter<R: Rng>(rng: &mut R, b: &super::backoff::Backoff, n: u32) -> Duration {
    b.delay(n, rng)
}

/// Time from now until `at` (zero if it has passed), plus a few milliseconds so a
/// read scheduled "at" a settle time is sent after it.
fn until(at: Instant) -> Duration {
    at.saturating_duration_since(Instant::now()) + Duration::from_millis(5)
}

impl Ctx {
    pub fn new(
        journal: Journal,
        clients: impl Into<Clients>,
        config: RunConfig,
        run_id: Option<i64>,
    ) -> Ctx {
        Ctx {
            journal,
            clients: clients.into(),
            config,
            run_id,
            schedules: Mutex::new(HashMap::new()),
            budget: Mutex::new(super::rollout::ErrorBudget::new(u64::MAX)),
            key_states: Mutex::new(HashMap::new()),
        }
    }

    /// Starts each endpoint's verification schedule from what the journal
    /// already shows of it (an earlier run's delays to `YES`), where it shows
    /// anything.
    pub fn seed_schedules(&self, learned: &BTreeMap<String, crate::journal::read::DelayStats>) {
        let mut all = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
        for (host, d) in learned.iter().filter(|(_, d)| d.n > 0) {
            all.insert(
                host.clone(),
                VerifySchedule::learned_from(d.n, Duration::from_millis(d.p90_ms.max(0) as u64)),
            );
        }
    }

    /// The slot of one custom key (see `key_states`). A key id is the
    /// account's own: the same id in two accounts is two keys.
    fn key_slot(&self, account: Option<&str>, region: &str, key_id: &str) -> KeySlot {
        self.key_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((
                account.map(str::to_string),
                region.to_string(),
                key_id.to_string(),
            ))
            .or_default()
            .clone()
    }

    /// Whether `a`'s custom key was read already: its `KmsKey` step then
    /// decides from that and sends nothing. `false` while another instance
    /// is still asking, or after its read failed.
    pub fn key_known(&self, a: &Active) -> bool {
        let (Some(key_id), Some(region)) = (&a.row.key_id, &a.row.key_region) else {
            return false;
        };
        let name = (a.row.account.clone(), region.clone(), key_id.clone());
        self.key_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .is_some_and(|slot| slot.try_lock().is_ok_and(|state| state.is_some()))
    }

    /// `f` on the verification schedule of `a`'s endpoint.
    fn schedule<T>(&self, a: &Active, f: impl FnOnce(&mut VerifySchedule) -> T) -> T {
        let mut all = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
        let start = self.config.verify_first_read;
        f(all
            .entry(a.cdb.host.clone())
            .or_insert_with(|| VerifySchedule::starting_at(start)))
    }

    /// Journals `fact` for `a` and takes the row the journal now holds.
    async fn apply(
        &self,
        a: &mut Active,
        fact: Fact,
        call: Option<CallRecord>,
    ) -> Result<(), JournalError> {
        let fact_name = fact.name();
        let applied = self
            .journal
            .apply(Change {
                instance_id: a.id().clone(),
                fact,
                run_id: self.run_id,
                call,
                at_ms: now_ms(),
            })
            .await?;
        tracing::debug!(
            state = %applied.state,
            attempts = applied.attempts,
            cleared_to_send = applied.cleared_to_send,
            "journaled {}",
            fact_name
        );
        a.absorb(applied);
        Ok(())
    }

    /// The client that works on `a`: its account's (issue 12), or the run's own.
    pub fn client_for(&self, a: &Active) -> Option<&Client> {
        self.clients.get(a.row.account.as_deref())
    }

    /// One API call for `a`, signed with its account's credentials, through
    /// its bucket's wire gate, and its journal record (send time, latency,
    /// RequestId, error). An account without credentials sends nothing
    /// (`runner::run` refuses to start on one, so this is a guard).
    #[allow(clippy::too_many_arguments)]
    async fn call<Q: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        a: &Active,
        endpoint: &Endpoint,
        service: Service,
        action: Action,
        region: &str,
        req: &Q,
        gate: &dyn Gate,
    ) -> Reply<R> {
        tracing::debug!("sending {action}");
        let called = match self.client_for(a) {
            Some(client) => {
                client
                    .call_gated::<Q, R>(endpoint, service, action.as_str(), Some(region), req, gate)
                    .await
            }
            None => Called::not_sent(format!(
                "no credentials for account {}",
                a.row.account.as_deref().unwrap_or("(the run's own)")
            )),
        };
        let request_id = called
            .result
            .as_ref()
            .ok()
            .and_then(|x| x.request_id.clone());
        let rec = record(action, endpoint, &called, request_id);
        if let Some(id) = &rec.request_id {
            tracing::Span::current().record("request_id", id.as_str());
        }
        tracing::debug!(
            latency_ms = rec.latency_ms,
            error_code = rec.error_code.as_deref(),
            "answered {action}"
        );
        let kind = if action == Action::OpenDBInstanceEncryption {
            CallKind::Write
        } else {
            CallKind::Read
        };
        Reply {
            heard: Heard::of(kind, &called.result),
            result: called.result.map(|a| a.data),
            rec,
            sent_at: called.sent_at,
            written_at: called.written_at,
        }
    }

    fn settle_ms(&self) -> i64 {
        self.config.settle.as_millis() as i64
    }

    fn retry_delay(&self, n: u32) -> Duration {
        jitter(&mut rand::rng(), &self.config.retry_backoff, n)
    }

    /// A fact that ends the instance, then `Done`.
    async fn finish(
        &self,
        a: &mut Active,
        fact: Fact,
        call: Option<CallRecord>,
    ) -> Result<Next, JournalError> {
        self.apply(a, fact, call).await?;
        Ok(Next::Done)
    }
}

/// The fact that fails an instance: a preflight failure while it is still
/// pending, otherwise giving up on it.
fn failure_fact(a: &Active, code: String, message: String) -> Fact {
    if a.state() == State::Pending {
        Fact::PreflightFailed { code, message }
    } else {
        Fact::GaveUp { code, message }
    }
}

type StepOutcome = Result<Stepped, JournalError>;

/// Runs one step for `a` and decides what comes next. `gate` admits the
/// step's request onto the wire (every step but the write-ahead sends one).
pub async fn execute(ctx: Arc<Ctx>, mut a: Active, step: Step, gate: Arc<dyn Gate>) -> StepResult {
    // One span per step: every line it logs carries the instance, its attempt,
    // the action and endpoint, and (once answered) the RequestId, so
    // `--log-format json -v | jq 'select(.span.instance_id == "cdb-…")'` tells
    // one instance's whole story in order.
    let span = tracing::info_span!(
        "step",
        instance_id = %a.id(),
        attempt = a.row.attempts,
        step = ?step,
        action = step.action().as_str(),
        endpoint = match step {
            Step::KmsKey => a.kms.as_ref().map_or("", |e| e.host.as_str()),
            _ => a.cdb.host.as_str(),
        },
        request_id = tracing::field::Empty,
    );
    let gate = gate.as_ref();
    let outcome = async {
        match step {
            Step::PreflightRead | Step::VerifyRead | Step::PreSendRead => {
                read::read(&ctx, &mut a, step, gate).await
            }
            Step::Features => preflight::features(&ctx, &mut a, gate).await,
            Step::KmsKey => preflight::kms_key(&ctx, &mut a, gate).await,
            Step::WriteAhead => send::write_ahead(&ctx, &mut a).await,
            Step::Send => send::send(&ctx, &mut a, gate).await,
        }
    }
    .instrument(span)
    .await;
    let Stepped { heard, next } = outcome.unwrap_or_else(|e| {
        tracing::error!(instance_id = %a.id(), error = %e, "the journal could not record a fact; stopping");
        // What the request heard no longer matters: the run stops.
        Stepped::new(
            if step == Step::WriteAhead {
                Heard::Nothing
            } else {
                Heard::Unclear
            },
            Next::Stop(StopReason::JournalFailed(e.to_string())),
        )
    });
    StepResult {
        active: a,
        step,
        heard,
        next,
    }
}
