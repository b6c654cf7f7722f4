//! Recording runs: when each started and ended, with the timing it used (a
//! later run recovering its attempts waits the longest settle any run used).

use std::time::Duration;

use rusqlite::{params, Connection};

use super::events::{append_event, ChainState};
use crate::journal::chain::EventRow;
use crate::journal::JournalError;
use crate::model::{now_ms, EventKind};

pub(in crate::journal) struct NewRun {
    command: String,
    rate: Option<u32>,
    timeout_ms: Option<i64>,
    settle_ms: Option<i64>,
    at_ms: i64,
}

impl NewRun {
    pub(super) fn new(
        command: &str,
        rate: Option<u32>,
        timeout: Option<Duration>,
        settle: Option<Duration>,
    ) -> NewRun {
        NewRun {
            command: command.to_string(),
            rate,
            timeout_ms: timeout.map(|t| t.as_millis() as i64),
            settle_ms: settle.map(|t| t.as_millis() as i64),
            at_ms: now_ms(),
        }
    }
}

pub(in crate::journal) struct RunEnd {
    run_id: i64,
    exit_code: i32,
    at_ms: i64,
}

impl RunEnd {
    pub(super) fn new(run_id: i64, exit_code: i32) -> RunEnd {
        RunEnd {
            run_id,
            exit_code,
            at_ms: now_ms(),
        }
    }
}

/// A rollout milestone to record.
pub(in crate::journal) struct Note {
    run_id: Option<i64>,
    detail: String,
    at_ms: i64,
}

impl Note {
    pub(super) fn new(run_id: Option<i64>, event: &crate::model::RolloutEvent) -> Note {
        Note {
            run_id,
            detail: event.to_json(),
            at_ms: now_ms(),
        }
    }
}

pub(super) fn note(
    conn: &Connection,
    chain: &mut ChainState,
    note: Note,
) -> Result<(), JournalError> {
    append_event(
        conn,
        chain,
        EventRow {
            at_ms: note.at_ms,
            run_id: note.run_id,
            kind: EventKind::Rollout.as_str().into(),
            detail: Some(note.detail),
            ..EventRow::default()
        },
    )
}

pub(super) fn start(
    conn: &Connection,
    chain: &mut ChainState,
    run: NewRun,
) -> Result<i64, JournalError> {
    conn.execute(
        "INSERT INTO runs (started_at_ms, pid, command, tool_version, rate_limit, timeout_ms, settle_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![run.at_ms, std::process::id(), run.command, env!("CARGO_PKG_VERSION"), run.rate, run.timeout_ms, run.settle_ms],
    )?;
    let id = conn.last_insert_rowid();
    append_event(
        conn,
        chain,
        EventRow {
            at_ms: run.at_ms,
            run_id: Some(id),
            kind: EventKind::RunStarted.as_str().into(),
            detail: Some(run.command),
            ..EventRow::default()
        },
    )?;
    Ok(id)
}

pub(super) fn end(
    conn: &Connection,
    chain: &mut ChainState,
    end: RunEnd,
) -> Result<(), JournalError> {
    conn.execute(
        "UPDATE runs SET ended_at_ms = ?1, exit_code = ?2 WHERE id = ?3",
        params![end.at_ms, end.exit_code, end.run_id],
    )?;
    append_event(
        conn,
        chain,
        EventRow {
            at_ms: end.at_ms,
            run_id: Some(end.run_id),
            kind: EventKind::RunEnded.as_str().into(),
            detail: Some(format!("exit code {}", end.exit_code)),
            ..EventRow::default()
        },
    )
}
