//! The single writer: a dedicated thread owning the write connection. Callers
//! send a command with a reply channel; the thread drains everything queued,
//! applies it in one transaction (one fsync for the batch), then answers.
//! A reply therefore means "committed", which is what write-ahead needs.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::chain::{self, EventRow};
use super::schema;
use super::state::{transition, Move};
use super::JournalError;
use crate::model::{now_ms, Action, Disposition, EventKind, InstanceId, InstanceSpec, State};

/// The API call a fact comes from, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub action: Action,
    pub endpoint: String,
    pub sent_at_ms: i64,
    pub latency_ms: i64,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl CallRecord {
    /// A call that got an answer without an error or RequestId (fill those in as needed).
    pub fn new(action: Action, endpoint: impl Into<String>, sent_at_ms: i64) -> CallRecord {
        CallRecord {
            action,
            endpoint: endpoint.into(),
            sent_at_ms,
            latency_ms: 0,
            request_id: None,
            error_code: None,
            error_message: None,
        }
    }
}

/// What happened to an instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A `DescribeDBInstanceInfo` answer of exactly `YES` or `NO`.
    EncryptionRead {
        encrypted: bool,
        /// The runner's word, on its monotonic clock, that the read left after the
        /// last attempt settled (SPEC §1; trivially true when there was none). Only
        /// a settled `NO` clears the way for a new attempt.
        settled: bool,
    },
    /// Preflight showed the instance cannot be encrypted.
    PreflightFailed {
        code: String,
        message: String,
    },
    /// Write-ahead: the attempt (with its request) is committed before it is sent.
    AttemptWritten {
        request: String,
    },
    /// The Open call came back (or failed to).
    AttemptAnswered {
        disposition: Disposition,
        /// When the attempt can no longer be in flight on the server.
        settles_at_ms: i64,
        next_attempt_at_ms: Option<i64>,
        kms_error: bool,
    },
    /// A verified NO after the attempt settled: send again at `next_attempt_at_ms`.
    RetryScheduled {
        next_attempt_at_ms: i64,
        reason: String,
    },
    GaveUp {
        code: String,
        message: String,
    },
    /// After a crash: the attempt may have left; verify once it settles.
    AttemptRecovered {
        settles_at_ms: i64,
    },
    ResetForRetry,
    /// An API call that moves nothing (features, key, failed reads).
    Called,
}

impl Fact {
    fn movement(&self) -> Option<Move> {
        Some(match self {
            Fact::EncryptionRead { encrypted, .. } => Move::Read {
                encrypted: *encrypted,
            },
            Fact::PreflightFailed { .. } => Move::PreflightFailed,
            Fact::AttemptWritten { .. } => Move::AttemptWritten,
            Fact::AttemptAnswered { disposition, .. } => Move::AttemptAnswered(*disposition),
            Fact::RetryScheduled { .. } => Move::RetryScheduled,
            Fact::GaveUp { .. } => Move::GaveUp,
            Fact::AttemptRecovered { .. } => Move::AttemptRecovered,
            Fact::ResetForRetry => Move::ResetForRetry,
            Fact::Called => return None,
        })
    }
}

/// One fact about one instance, as the runner reports it.
#[derive(Debug, Clone)]
pub struct Change {
    pub instance_id: InstanceId,
    pub fact: Fact,
    pub run_id: Option<i64>,
    pub call: Option<CallRecord>,
    pub at_ms: i64,
}

/// The instance after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub state: State,
    pub attempts: u32,
    pub cleared_to_send: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: u64,
    pub already_known: u64,
    /// Known instances whose input row differs from the journal (the journal is kept).
    pub differing: Vec<String>,
}

/// The detail of a `ReadNotEncrypted` event whose NO cleared a new attempt.
pub const SETTLED: &str = "settled";

/// An instance row.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub instance_id: InstanceId,
    pub seq: i64,
    pub region: String,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    pub labels: String,
    pub state: State,
    pub attempts: u32,
    pub budget_base: u32,
    pub kms_errors: u32,
    pub cleared_to_send: bool,
    pub last_sent_at_ms: Option<i64>,
    pub settles_at_ms: Option<i64>,
    pub last_outcome: Option<Disposition>,
    pub next_attempt_at_ms: Option<i64>,
    pub last_request_id: Option<String>,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub verified_at_ms: Option<i64>,
}

pub const INSTANCE_COLUMNS: &str = "instance_id, seq, region, key_id, key_region, labels, state, attempts, budget_base, kms_errors, cleared_to_send, last_sent_at_ms, settles_at_ms, last_outcome, next_attempt_at_ms, last_request_id, last_error_code, last_error_message, verified_at_ms";

/// Parses a TEXT column into one of the model's stored enums.
fn parsed<T>(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = r.get(i)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub fn instance_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRow> {
    Ok(InstanceRow {
        instance_id: r.get(0)?,
        seq: r.get(1)?,
        region: r.get(2)?,
        key_id: r.get(3)?,
        key_region: r.get(4)?,
        labels: r.get(5)?,
        state: parsed(r, 6)?,
        attempts: r.get(7)?,
        budget_base: r.get(8)?,
        kms_errors: r.get(9)?,
        cleared_to_send: r.get::<_, i64>(10)? == 1,
        last_sent_at_ms: r.get(11)?,
        settles_at_ms: r.get(12)?,
        last_outcome: match r.get_ref(13)? {
            rusqlite::types::ValueRef::Null => None,
            _ => Some(parsed(r, 13)?),
        },
        next_attempt_at_ms: r.get(14)?,
        last_request_id: r.get(15)?,
        last_error_code: r.get(16)?,
        last_error_message: r.get(17)?,
        verified_at_ms: r.get(18)?,
    })
}

enum Op {
    Import(Vec<InstanceSpec>, i64),
    Apply(Change),
    StartRun {
        command: String,
        rate: Option<u32>,
        timeout_ms: Option<i64>,
        settle_ms: Option<i64>,
        at_ms: i64,
    },
    EndRun {
        run_id: i64,
        exit_code: i32,
        at_ms: i64,
    },
    ResetFailed {
        code: Option<String>,
        run_id: Option<i64>,
        at_ms: i64,
    },
}

enum Done {
    Imported(ImportSummary),
    Applied(Applied),
    RunEnded,
    Run(i64),
    Reset(u64),
}

type Query = Box<dyn FnOnce(&Connection) + Send>;

enum Command {
    Write(Box<Op>, oneshot::Sender<Result<Done, JournalError>>),
    Query(Query),
}

/// A handle to the journal; clones share the one writer thread.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Command>,
    path: PathBuf,
    _thread: std::sync::Arc<ThreadGuard>,
}

struct ThreadGuard(Option<JoinHandle<()>>, mpsc::Sender<Command>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        // The last handle is gone: wake the writer so it sees the closed channel, and wait
        // for it so that everything queued is committed before the process moves on.
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.1, tx));
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

struct ChainState {
    last_hash: String,
    next_id: i64,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let conn = schema::open_writer(path)?;
        let (tx, rx) = mpsc::channel::<Command>();
        let chain = load_chain(&conn)?;
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer_loop(conn, rx, chain))
            .map_err(|e| JournalError::Open {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Journal {
            tx: tx.clone(),
            path: path.to_path_buf(),
            _thread: std::sync::Arc::new(ThreadGuard(Some(handle), tx)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: Op) -> Result<Done, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Write(Box::new(op), reply))
            .map_err(|_| JournalError::Closed)?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    fn write_blocking(&self, op: Op) -> Result<Done, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Write(Box::new(op), reply))
            .map_err(|_| JournalError::Closed)?;
        rx.blocking_recv().map_err(|_| JournalError::Closed)?
    }

    /// Runs `f` on the writer's connection (sees every committed write) and returns its result.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Query(Box::new(move |c| {
                let _ = reply.send(f(c));
            })))
            .map_err(|_| JournalError::Closed)?;
        Ok(rx.await.map_err(|_| JournalError::Closed)??)
    }

    /// Adds new instances as `pending`; instances already in the journal keep their state.
    pub async fn import(&self, specs: Vec<InstanceSpec>) -> Result<ImportSummary, JournalError> {
        match self.write(Op::Import(specs, now_ms())).await? {
            Done::Imported(s) => Ok(s),
            _ => unreachable!(),
        }
    }

    pub fn import_blocking(&self, specs: Vec<InstanceSpec>) -> Result<ImportSummary, JournalError> {
        match self.write_blocking(Op::Import(specs, now_ms()))? {
            Done::Imported(s) => Ok(s),
            _ => unreachable!(),
        }
    }

    /// Applies one fact as a guarded update plus its event, committed when this returns.
    pub async fn apply(&self, change: Change) -> Result<Applied, JournalError> {
        match self.write(Op::Apply(change)).await? {
            Done::Applied(a) => Ok(a),
            _ => unreachable!(),
        }
    }

    /// Records a run; `timeout` is its per-request timeout and `settle` its settle
    /// window (migrations 0002 and 0003).
    pub async fn start_run(
        &self,
        command: &str,
        rate: Option<u32>,
        timeout: Option<std::time::Duration>,
        settle: Option<std::time::Duration>,
    ) -> Result<i64, JournalError> {
        match self
            .write(Op::StartRun {
                command: command.to_string(),
                rate,
                timeout_ms: timeout.map(|t| t.as_millis() as i64),
                settle_ms: settle.map(|t| t.as_millis() as i64),
                at_ms: now_ms(),
            })
            .await?
        {
            Done::Run(id) => Ok(id),
            _ => unreachable!(),
        }
    }

    pub async fn end_run(&self, run_id: i64, exit_code: i32) -> Result<(), JournalError> {
        self.write(Op::EndRun {
            run_id,
            exit_code,
            at_ms: now_ms(),
        })
        .await
        .map(|_| ())
    }

    /// `retry-failed`: failed instances (optionally with one error code) back to `pending`.
    pub fn reset_failed_blocking(
        &self,
        code: Option<String>,
        run_id: Option<i64>,
    ) -> Result<u64, JournalError> {
        match self.write_blocking(Op::ResetFailed {
            code,
            run_id,
            at_ms: now_ms(),
        })? {
            Done::Reset(n) => Ok(n),
            _ => unreachable!(),
        }
    }

    pub fn start_run_blocking(&self, command: &str) -> Result<i64, JournalError> {
        match self.write_blocking(Op::StartRun {
            command: command.to_string(),
            rate: None,
            timeout_ms: None,
            settle_ms: None,
            at_ms: now_ms(),
        })? {
            Done::Run(id) => Ok(id),
            _ => unreachable!(),
        }
    }

    pub fn end_run_blocking(&self, run_id: i64, exit_code: i32) -> Result<(), JournalError> {
        self.write_blocking(Op::EndRun {
            run_id,
            exit_code,
            at_ms: now_ms(),
        })
        .map(|_| ())
    }
}

fn load_chain(conn: &Connection) -> Result<ChainState, JournalError> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match last {
        Some((id, hash)) => ChainState {
            last_hash: hash,
            next_id: id + 1,
        },
        None => ChainState {
            last_hash: chain::GENESIS.to_string(),
            next_id: 1,
        },
    })
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Command>, mut chain: ChainState) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let saved = (chain.last_hash.clone(), chain.next_id);
        let tx = match conn.transaction() {
            Ok(tx) => tx,
            Err(e) => {
                let msg = e.to_string();
                for c in batch {
                    if let Command::Write(_, reply) = c {
                        let _ = reply.send(Err(JournalError::Open {
                            path: String::new(),
                            reason: msg.clone(),
                        }));
                    }
                }
                continue;
            }
        };
        for c in batch {
            match c {
                Command::Query(f) => f(&tx),
                Command::Write(op, reply) => {
                    let before = (chain.last_hash.clone(), chain.next_id);
                    let result = match tx.unchecked_transaction_savepoint() {
                        Ok(sp) => {
                            let r = execute(&sp, *op, &mut chain);
                            if r.is_ok() {
                                sp.commit().map_err(JournalError::from).and(r)
                            } else {
                                drop(sp);
                                r
                            }
                        }
                        Err(e) => Err(e.into()),
                    };
                    if result.is_err() {
                        (chain.last_hash, chain.next_id) = before;
                    }
                    replies.push((reply, result));
                }
            }
        }
        if let Err(e) = tx.commit() {
            (chain.last_hash, chain.next_id) = saved;
            let msg = e.to_string();
            for (reply, _) in replies {
                let _ = reply.send(Err(JournalError::Open {
                    path: String::new(),
                    reason: format!("commit failed: {msg}"),
                }));
            }
            continue;
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
    }
}

/// A savepoint inside the batch transaction, so one failed command rolls back alone.
trait SavepointExt {
    fn unchecked_transaction_savepoint(&self) -> rusqlite::Result<Savepoint<'_>>;
}

struct Savepoint<'a> {
    conn: &'a Connection,
    done: bool,
}

impl SavepointExt for Transaction<'_> {
    fn unchecked_transaction_savepoint(&self) -> rusqlite::Result<Savepoint<'_>> {
        self.execute_batch("SAVEPOINT op")?;
        Ok(Savepoint {
            conn: self,
            done: false,
        })
    }
}

impl Savepoint<'_> {
    fn commit(mut self) -> rusqlite::Result<()> {
        self.done = true;
        self.conn.execute_batch("RELEASE op")
    }
}

impl Drop for Savepoint<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.execute_batch("ROLLBACK TO op; RELEASE op");
        }
    }
}

impl std::ops::Deref for Savepoint<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

fn append_event(
    conn: &Connection,
    chain: &mut ChainState,
    mut ev: EventRow,
) -> Result<(), JournalError> {
    ev.id = chain.next_id;
    let hash = ev.hash(&chain.last_hash);
    conn.prepare_cached(
        "INSERT INTO events (id, at_ms, run_id, instance_id, kind, from_state, to_state, action, endpoint, sent_at_ms, latency_ms, attempt, request_id, error_code, error_message, detail, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?
    .execute(params![
        ev.id,
        ev.at_ms,
        ev.run_id,
        ev.instance_id,
        ev.kind,
        ev.from_state,
        ev.to_state,
        ev.action,
        ev.endpoint,
        ev.sent_at_ms,
        ev.latency_ms,
        ev.attempt,
        ev.request_id,
        ev.error_code,
        ev.error_message,
        ev.detail,
        chain.last_hash,
        hash
    ])?;
    chain.last_hash = hash;
    chain.next_id += 1;
    Ok(())
}

fn execute(conn: &Connection, op: Op, chain: &mut ChainState) -> Result<Done, JournalError> {
    match op {
        Op::Import(specs, at_ms) => import(conn, chain, specs, at_ms).map(Done::Imported),
        Op::Apply(change) => apply(conn, chain, change).map(Done::Applied),
        Op::StartRun {
            command,
            rate,
            timeout_ms,
            settle_ms,
            at_ms,
        } => {
            conn.execute(
                "INSERT INTO runs (started_at_ms, pid, command, tool_version, rate_limit, timeout_ms, settle_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![at_ms, std::process::id(), command, env!("CARGO_PKG_VERSION"), rate, timeout_ms, settle_ms],
            )?;
            let id = conn.last_insert_rowid();
            append_event(
                conn,
                chain,
                EventRow {
                    at_ms,
                    run_id: Some(id),
                    kind: EventKind::RunStarted.as_str().into(),
                    detail: Some(command),
                    ..EventRow::default()
                },
            )?;
            Ok(Done::Run(id))
        }
        Op::EndRun {
            run_id,
            exit_code,
            at_ms,
        } => {
            conn.execute(
                "UPDATE runs SET ended_at_ms = ?1, exit_code = ?2 WHERE id = ?3",
                params![at_ms, exit_code, run_id],
            )?;
            append_event(
                conn,
                chain,
                EventRow {
                    at_ms,
                    run_id: Some(run_id),
                    kind: EventKind::RunEnded.as_str().into(),
                    detail: Some(format!("exit code {exit_code}")),
                    ..EventRow::default()
                },
            )?;
            Ok(Done::RunEnded)
        }
        Op::ResetFailed {
            code,
            run_id,
            at_ms,
        } => {
            let ids: Vec<(String, u32, Option<String>)> = {
                let mut stmt = conn.prepare(
                    "SELECT instance_id, attempts, last_error_code FROM instances WHERE state = ?2 AND (?1 IS NULL OR last_error_code = ?1 OR last_error_code LIKE ?1 || '.%') ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map(params![code, State::Failed.as_str()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<Result<_, _>>()?;
                rows
            };
            for (id, attempts, last_code) in &ids {
                let n = conn.execute(
                    "UPDATE instances SET state = ?3, budget_base = attempts, kms_errors = 0, cleared_to_send = 0, next_attempt_at_ms = NULL, last_error_code = NULL, last_error_message = NULL, updated_at_ms = ?2 WHERE instance_id = ?1 AND state = ?4",
                    params![id, at_ms, State::Pending.as_str(), State::Failed.as_str()],
                )?;
                if n == 1 {
                    append_event(
                        conn,
                        chain,
                        EventRow {
                            at_ms,
                            run_id,
                            instance_id: Some(id.clone()),
                            kind: EventKind::ResetForRetry.as_str().into(),
                            from_state: Some(State::Failed.as_str().into()),
                            to_state: Some(State::Pending.as_str().into()),
                            attempt: Some(*attempts as i64),
                            error_code: last_code.clone(),
                            ..EventRow::default()
                        },
                    )?;
                }
            }
            Ok(Done::Reset(ids.len() as u64))
        }
    }
}

fn labels_json(labels: &[(String, String)]) -> String {
    let map: Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Value::Object(map).to_string()
}

fn import(
    conn: &Connection,
    chain: &mut ChainState,
    specs: Vec<InstanceSpec>,
    at_ms: i64,
) -> Result<ImportSummary, JournalError> {
    let mut summary = ImportSummary::default();
    let mut seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM instances", [], |r| {
        r.get(0)
    })?;
    for spec in specs {
        let existing: Option<(String, Option<String>, Option<String>)> = conn
            .prepare_cached(
                "SELECT region, key_id, key_region FROM instances WHERE instance_id = ?1",
            )?
            .query_row(params![spec.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        if let Some((region, key_id, key_region)) = existing {
            summary.already_known += 1;
            if region != spec.region || key_id != spec.key_id || key_region != spec.key_region {
                summary.differing.push(spec.id.to_string());
            }
            continue;
        }
        seq += 1;
        conn.prepare_cached(
            "INSERT INTO instances (instance_id, seq, region, key_id, key_region, labels, state, imported_at_ms, updated_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7, ?7)",
        )?
        .execute(params![
            spec.id,
            seq,
            spec.region,
            spec.key_id,
            spec.key_region,
            labels_json(&spec.labels),
            at_ms,
            State::Pending.as_str()
        ])?;
        append_event(
            conn,
            chain,
            EventRow {
                at_ms,
                instance_id: Some(spec.id.to_string()),
                kind: EventKind::Imported.as_str().into(),
                to_state: Some(State::Pending.as_str().into()),
                detail: Some(format!("input line {}", spec.line)),
                ..EventRow::default()
            },
        )?;
        summary.added += 1;
    }
    Ok(summary)
}

fn event_kind(fact: &Fact, to: State) -> EventKind {
    match fact {
        Fact::EncryptionRead {
            encrypted: true, ..
        } if to == State::AlreadyEncrypted => EventKind::FoundAlreadyEncrypted,
        Fact::EncryptionRead {
            encrypted: true, ..
        } => EventKind::VerifiedEncrypted,
        Fact::EncryptionRead {
            encrypted: false, ..
        } => EventKind::ReadNotEncrypted,
        Fact::PreflightFailed { .. } => EventKind::PreflightFailed,
        Fact::AttemptWritten { .. } => EventKind::AttemptWritten,
        Fact::AttemptAnswered { .. } => EventKind::AttemptAnswered,
        Fact::RetryScheduled { .. } => EventKind::RetryScheduled,
        Fact::GaveUp { .. } => EventKind::GaveUp,
        Fact::AttemptRecovered { .. } => EventKind::AttemptRecovered,
        Fact::ResetForRetry => EventKind::ResetForRetry,
        Fact::Called => EventKind::ApiCalled,
    }
}

fn apply(conn: &Connection, chain: &mut ChainState, c: Change) -> Result<Applied, JournalError> {
    let row: Option<(String, u32, i64)> = conn
        .prepare_cached(
            "SELECT state, attempts, cleared_to_send FROM instances WHERE instance_id = ?1",
        )?
        .query_row(params![c.instance_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((from, attempts, cleared)) = row else {
        return Err(JournalError::UnknownInstance(c.instance_id));
    };
    let from: State = from
        .parse()
        .map_err(|_| JournalError::UnknownInstance(c.instance_id.clone()))?;
    let to = match c.fact.movement() {
        None => from,
        Some(m) => transition(from, m, attempts).map_err(|source| JournalError::Illegal {
            instance_id: c.instance_id.clone(),
            source,
        })?,
    };
    let (request_id, sent_at_ms, error_code, error_message) = match &c.call {
        Some(k) => (
            k.request_id.clone(),
            k.sent_at_ms,
            k.error_code.clone(),
            k.error_message.clone(),
        ),
        None => (None, 0, None, None),
    };
    let id = &c.instance_id;
    let at = c.at_ms;
    let mut new_attempts = attempts;
    let mut new_cleared = cleared == 1;
    let mut ev = EventRow {
        at_ms: at,
        run_id: c.run_id,
        instance_id: Some(id.to_string()),
        kind: event_kind(&c.fact, to).as_str().into(),
        from_state: Some(from.as_str().into()),
        to_state: Some(to.as_str().into()),
        attempt: Some(attempts as i64),
        ..EventRow::default()
    };
    if let Some(call) = &c.call {
        ev.action = Some(call.action.as_str().into());
        ev.endpoint = Some(call.endpoint.clone());
        ev.sent_at_ms = Some(call.sent_at_ms);
        ev.latency_ms = Some(call.latency_ms);
        ev.request_id = call.request_id.clone();
        ev.error_code = call.error_code.clone();
        ev.error_message = call.error_message.clone();
    }
    let changed = match &c.fact {
        Fact::Called => 1,
        Fact::EncryptionRead {
            encrypted: true, ..
        } => conn
            .prepare_cached(
                "UPDATE instances SET state = ?2, verified_at_ms = ?3, last_request_id = COALESCE(?4, last_request_id), next_attempt_at_ms = NULL, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?5",
            )?
            .execute(params![id, to.as_str(), at, request_id, from.as_str()])?,
        Fact::EncryptionRead {
            encrypted: false,
            settled,
        } => {
            // A NO clears the way for a (new) attempt only if no attempt was ever made,
            // or it was read after the last attempt settled (the runner decides that on
            // its monotonic clock; stored wall-clock times are for the audit only).
            let clears = attempts == 0 || *settled;
            new_cleared = new_cleared || clears;
            if clears {
                ev.detail = Some(SETTLED.into());
            }
            conn.prepare_cached(
                "UPDATE instances SET cleared_to_send = ?2, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?4",
            )?
            .execute(params![id, new_cleared as i64, at, from.as_str()])?
        }
        Fact::PreflightFailed { code, message } | Fact::GaveUp { code, message } => {
            ev.error_code = Some(code.clone());
            ev.error_message = Some(message.clone());
            conn.prepare_cached(
                "UPDATE instances SET state = ?7, last_error_code = ?2, last_error_message = ?3, next_attempt_at_ms = NULL, updated_at_ms = ?4, last_request_id = COALESCE(?6, last_request_id) WHERE instance_id = ?1 AND state = ?5",
            )?
            .execute(params![id, code, message, at, from.as_str(), request_id, to.as_str()])?
        }
        Fact::AttemptWritten { request } => {
            if cleared != 1 {
                return Err(JournalError::NotCleared {
                    instance_id: id.clone(),
                });
            }
            new_attempts += 1;
            new_cleared = false;
            ev.attempt = Some(new_attempts as i64);
            ev.detail = Some(request.clone());
            ev.action = Some(Action::OpenDBInstanceEncryption.as_str().into());
            conn.prepare_cached(
                "UPDATE instances SET state = ?4, attempts = attempts + 1, cleared_to_send = 0, settles_at_ms = NULL, last_sent_at_ms = NULL, last_outcome = NULL, next_attempt_at_ms = NULL, updated_at_ms = ?2 WHERE instance_id = ?1 AND state = ?3 AND cleared_to_send = 1",
            )?
            .execute(params![id, at, from.as_str(), to.as_str()])?
        }
        Fact::AttemptAnswered {
            disposition,
            settles_at_ms,
            next_attempt_at_ms,
            kms_error,
        } => {
            let outcome = disposition.as_str();
            ev.detail = Some(outcome.into());
            conn.prepare_cached(
                "UPDATE instances SET state = ?2, last_sent_at_ms = ?3, settles_at_ms = ?4, last_outcome = ?5, next_attempt_at_ms = ?6, last_request_id = COALESCE(?7, last_request_id), last_error_code = ?8, last_error_message = ?9, kms_errors = kms_errors + ?10, updated_at_ms = ?11 WHERE instance_id = ?1 AND state = ?12",
            )?
            .execute(params![
                id,
                to.as_str(),
                sent_at_ms,
                settles_at_ms,
                outcome,
                next_attempt_at_ms,
                request_id,
                error_code,
                error_message,
                *kms_error as i64,
                at,
                from.as_str()
            ])?
        }
        Fact::RetryScheduled {
            next_attempt_at_ms,
            reason,
        } => {
            ev.detail = Some(reason.clone());
            conn.prepare_cached(
                "UPDATE instances SET state = ?5, next_attempt_at_ms = ?2, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?4",
            )?
            .execute(params![id, next_attempt_at_ms, at, from.as_str(), to.as_str()])?
        }
        Fact::AttemptRecovered { settles_at_ms } => {
            ev.detail = Some(format!("verify after {settles_at_ms}"));
            conn.prepare_cached(
                "UPDATE instances SET state = ?5, settles_at_ms = ?2, last_outcome = ?6, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?4",
            )?
            .execute(params![id, settles_at_ms, at, from.as_str(), to.as_str(), Disposition::Ambiguous.as_str()])?
        }
        Fact::ResetForRetry => conn
            .prepare_cached(
                "UPDATE instances SET state = ?4, budget_base = attempts, kms_errors = 0, cleared_to_send = 0, next_attempt_at_ms = NULL, updated_at_ms = ?2 WHERE instance_id = ?1 AND state = ?3",
            )?
            .execute(params![id, at, from.as_str(), to.as_str()])?,
    };
    if changed != 1 {
        return Err(JournalError::Conflict {
            instance_id: id.clone(),
            expected: from,
        });
    }
    append_event(conn, chain, ev)?;
    Ok(Applied {
        state: to,
        attempts: new_attempts,
        cleared_to_send: new_cleared,
    })
}

/// Non-terminal instances after `after_seq`, in import order.
pub fn load_active(
    conn: &Connection,
    after_seq: i64,
    limit: usize,
) -> rusqlite::Result<Vec<InstanceRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE seq > ?1 AND state NOT IN (?3, ?4, ?5) ORDER BY seq LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(
            params![
                after_seq,
                limit as i64,
                State::Encrypted.as_str(),
                State::AlreadyEncrypted.as_str(),
                State::Failed.as_str()
            ],
            instance_from_row,
        )?
        .collect();
    rows
}
