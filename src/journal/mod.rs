//! The SQLite journal: instances with their state, append-only hash-chained
//! events, and runs. One writer thread owns the write connection and batches
//! whatever is queued into one transaction (group commit); readers (`status`,
//! `report`) open their own read-only connections beside a live run (WAL).
//!
//! The journal records facts and calls nothing.

pub mod chain;
mod facts;
pub mod read;
mod rows;
pub mod schema;
mod sql;
mod state;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::model::{InstanceId, State};

pub use chain::{ChainReport, EventRow};
pub(crate) use sql::sql_list;

pub use facts::{CallRecord, Change, Fact};
pub use read::load_active;
pub use rows::{ImportSummary, InstanceRow};
pub use writer::Journal;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file cannot be used at all (exit 2, SPEC §3): missing, a directory,
    /// not a database, truncated, newer schema, unwritable, disk full.
    #[error("cannot open the journal {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("journal database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("{instance_id}: {source}")]
    Illegal {
        instance_id: InstanceId,
        source: state::IllegalTransition,
    },
    #[error("{instance_id}: refusing to journal a new attempt: no verification read said NO after the previous attempt settled")]
    NotCleared { instance_id: InstanceId },
    #[error("{instance_id}: the journal changed under this update (expected state {expected})")]
    Conflict {
        instance_id: InstanceId,
        expected: State,
    },
    #[error("{0}: not in the journal")]
    UnknownInstance(InstanceId),
    #[error("the journal writer has stopped")]
    Closed,
    #[error("another fleetcrypt process is running on the journal {path} ({holder}); wait for it, or stop it first")]
    Locked { path: String, holder: String },
}

impl JournalError {
    /// Whether this is an unusable journal (bad input, exit 2) rather than a failure
    /// while working on a good one.
    pub fn is_unusable(&self) -> bool {
        match self {
            JournalError::Open { .. } | JournalError::Locked { .. } => true,
            JournalError::Sql(e) => schema::is_unusable(e),
            _ => false,
        }
    }
}

/// Held for the whole of a `run`, `resume` or `retry-failed`: one writer per journal.
/// The OS drops the lock when the process dies, so a `kill -9` never leaves it stale.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
    path: PathBuf,
}

impl JournalLock {
    pub fn acquire(journal: &Path) -> Result<JournalLock, JournalError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let path = PathBuf::from(format!("{}.lock", journal.display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| JournalError::Open {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(JournalError::Locked {
                    path: journal.display().to_string(),
                    holder: if holder.trim().is_empty() {
                        "unknown pid".into()
                    } else {
                        format!("pid {}", holder.trim())
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(JournalError::Open {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(JournalLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a live process holds the writer lock, found without writing anything
    /// (a shared lock on a read-only handle conflicts with the writer's exclusive one),
    /// so `status` stays read-only, also on a read-only copy of a journal.
    pub fn is_held(journal: &Path) -> bool {
        let path = PathBuf::from(format!("{}.lock", journal.display()));
        match File::open(&path) {
            Err(_) => false,
            Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        }
    }
}
