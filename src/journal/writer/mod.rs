//! The single writer: a dedicated thread owning the write connection. Each
//! operation is a [`Command`] with a reply channel of its own type; the thread
//! drains everything queued, applies it in one transaction (one fsync for the
//! batch, a savepoint per operation so one failure rolls back alone), commits,
//! then answers. A reply therefore means "committed", which is what
//! write-ahead needs.
//!
//! One file per operation (`import`, `apply`, `runs`, `reset`), in the style
//! of effectum's `db_writer/`; `events` appends to the hash chain.

mod apply;
mod batch;
mod events;
mod import;
mod reset;
mod runs;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::facts::Change;
use super::rows::{ImportSummary, InstanceRow};
use super::{schema, JournalError};
use crate::model::{now_ms, InstanceSpec};

type Reply<T> = oneshot::Sender<Result<T, JournalError>>;
type Query = Box<dyn FnOnce(&Connection) + Send>;

/// One operation for the writer thread, with its typed reply.
enum Command {
    Import(Vec<InstanceSpec>, i64, Reply<ImportSummary>),
    Apply(Change, Reply<InstanceRow>),
    StartRun(runs::NewRun, Reply<i64>),
    EndRun(runs::RunEnd, Reply<()>),
    Rollout(runs::Note, Reply<()>),
    ResetFailed(reset::Reset, Reply<u64>),
    /// A read on the writer's connection (sees every committed write).
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

impl Journal {
    /// Opens (or creates) the journal at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let conn = schema::open_writer(path)?;
        let (tx, rx) = mpsc::channel::<Command>();
        let chain = events::ChainState::load(&conn)?;
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || batch::writer_loop(conn, rx, chain))
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

    fn submit<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<oneshot::Receiver<Result<T, JournalError>>, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(command(reply))
            .map_err(|_| JournalError::Closed)?;
        Ok(rx)
    }

    async fn write<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, JournalError> {
        self.submit(command)?
            .await
            .map_err(|_| JournalError::Closed)?
    }

    fn write_blocking<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, JournalError> {
        self.submit(command)?
            .blocking_recv()
            .map_err(|_| JournalError::Closed)?
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
        self.write(|r| Command::Import(specs, now_ms(), r)).await
    }

    pub fn import_blocking(&self, specs: Vec<InstanceSpec>) -> Result<ImportSummary, JournalError> {
        self.write_blocking(|r| Command::Import(specs, now_ms(), r))
    }

    /// Applies one fact as a guarded update plus its event, committed when this
    /// returns; answers the instance's row as it now stands.
    pub async fn apply(&self, change: Change) -> Result<InstanceRow, JournalError> {
        self.write(|r| Command::Apply(change, r)).await
    }

    /// Records a run; `timeout` is its per-request timeout and `settle` its settle
    /// window (migrations 0002 and 0003).
    pub async fn start_run(
        &self,
        command: &str,
        rate: Option<u32>,
        timeout: Option<Duration>,
        settle: Option<Duration>,
    ) -> Result<i64, JournalError> {
        let run = runs::NewRun::new(command, rate, timeout, settle);
        self.write(|r| Command::StartRun(run, r)).await
    }

    /// Records a rollout milestone of run `run_id` (an event of kind `Rollout`).
    pub async fn note_rollout(
        &self,
        run_id: Option<i64>,
        event: &crate::model::RolloutEvent,
    ) -> Result<(), JournalError> {
        let note = runs::Note::new(run_id, event);
        self.write(|r| Command::Rollout(note, r)).await
    }

    pub async fn end_run(&self, run_id: i64, exit_code: i32) -> Result<(), JournalError> {
        let end = runs::RunEnd::new(run_id, exit_code);
        self.write(|r| Command::EndRun(end, r)).await
    }

    /// `retry-failed`: failed instances (optionally with one error code) back to `pending`.
    pub fn reset_failed_blocking(
        &self,
        code: Option<String>,
        run_id: Option<i64>,
    ) -> Result<u64, JournalError> {
        let reset = reset::Reset {
            code,
            run_id,
            at_ms: now_ms(),
        };
        self.write_blocking(|r| Command::ResetFailed(reset, r))
    }

    pub fn start_run_blocking(&self, command: &str) -> Result<i64, JournalError> {
        let run = runs::NewRun::new(command, None, None, None);
        self.write_blocking(|r| Command::StartRun(run, r))
    }

    pub fn end_run_blocking(&self, run_id: i64, exit_code: i32) -> Result<(), JournalError> {
        let end = runs::RunEnd::new(run_id, exit_code);
        self.write_blocking(|r| Command::EndRun(end, r))
    }
}
