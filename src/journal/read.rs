//! Read-only queries. They take any connection, so `status` and `report` use a
//! read-only one beside a live run, and the runner uses the writer's.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use super::rows::{instance_from_row, InstanceRow, INSTANCE_COLUMNS};
use crate::model::{Disposition, EventKind, SlidingWindow, State};

/// Instances per state (every state present, zero or not).
pub fn counts(conn: &Connection) -> rusqlite::Result<BTreeMap<State, u64>> {
    let mut out: BTreeMap<State, u64> = State::ALL.iter().map(|s| (*s, 0)).collect();
    let mut stmt = conn.prepare("SELECT state, count(*) FROM instances GROUP BY state")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
    for row in rows {
        let (s, n) = row?;
        if let Ok(s) = s.parse() {
            out.insert(s, n);
        }
    }
    Ok(out)
}

/// Calls `f` for every instance in import order, one row in memory at a time.
pub fn for_each_instance(
    conn: &Connection,
    mut f: impl FnMut(InstanceRow) -> std::io::Result<()>,
) -> rusqlite::Result<Result<(), std::io::Error>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if let Err(e) = f(instance_from_row(r)?) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

/// Send times at or after `since_ms`: (endpoint, action, sent_at_ms), oldest first.
pub fn sends_since(
    conn: &Connection,
    since_ms: i64,
) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT endpoint, action, sent_at_ms FROM events WHERE sent_at_ms >= ?1 AND action IS NOT NULL AND endpoint IS NOT NULL ORDER BY sent_at_ms",
    )?;
    let rows = stmt
        .query_map(params![since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect();
    rows
}

/// Per action, the largest number of requests the journal shows in any sliding
/// 1-second window for one endpoint (the unit a limit applies to).
pub fn max_requests_in_1s_window(conn: &Connection) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare(
        "SELECT action, endpoint, sent_at_ms FROM events WHERE sent_at_ms IS NOT NULL AND action IS NOT NULL ORDER BY action, endpoint, sent_at_ms",
    )?;
    let mut rows = stmt.query([])?;
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut window = SlidingWindow::new(1000);
    while let Some(r) = rows.next()? {
        let action: String = r.get(0)?;
        let endpoint: Option<String> = r.get(1)?;
        let endpoint = endpoint.unwrap_or_default();
        let t: i64 = r.get(2)?;
        let key = (action.clone(), endpoint);
        if current.as_ref() != Some(&key) {
            current = Some(key);
            window = SlidingWindow::new(1000);
        }
        let n = window.push(t.max(0) as u64) as u64;
        let e = out.entry(action).or_insert(0);
        *e = (*e).max(n);
    }
    Ok(out)
}

/// A run row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub pid: i64,
    pub command: String,
    pub rate_limit: Option<i64>,
    pub exit_code: Option<i64>,
}

pub fn runs(conn: &Connection) -> rusqlite::Result<Vec<RunRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, started_at_ms, ended_at_ms, pid, command, rate_limit, exit_code FROM runs ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                started_at_ms: r.get(1)?,
                ended_at_ms: r.get(2)?,
                pid: r.get(3)?,
                command: r.get(4)?,
                rate_limit: r.get(5)?,
                exit_code: r.get(6)?,
            })
        })?
        .collect();
    rows
}

/// Failed instances that share a last error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    pub code: String,
    pub count: u64,
    pub instances: Vec<String>,
    /// The message of the first instance in the group.
    pub message: String,
}

/// Failed instances grouped by their last error code, in code order.
pub fn failures_by_code(conn: &Connection) -> rusqlite::Result<Vec<FailureGroup>> {
    let mut stmt = conn.prepare(
        "SELECT COALESCE(last_error_code, 'Unknown'), instance_id, COALESCE(last_error_message, '') FROM instances WHERE state = ?1 ORDER BY 1, seq",
    )?;
    let mut rows = stmt.query(params![State::Failed.as_str()])?;
    let mut out: Vec<FailureGroup> = Vec::new();
    while let Some(r) = rows.next()? {
        let code: String = r.get(0)?;
        let id: String = r.get(1)?;
        let message: String = r.get(2)?;
        match out.last_mut() {
            Some(last) if last.code == code => {
                last.count += 1;
                last.instances.push(id);
            }
            _ => out.push(FailureGroup {
                code,
                count: 1,
                instances: vec![id],
                message,
            }),
        }
    }
    Ok(out)
}

/// Ambiguous answers to `OpenDBInstanceEncryption` (each verified before anything
/// was re-sent), counted per error code, most frequent first.
pub fn ambiguous_answers(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT COALESCE(error_code, '?'), count(*) FROM events WHERE kind = ?1 AND detail = ?2 GROUP BY 1 ORDER BY 2 DESC, 1",
    )?;
    let rows = stmt
        .query_map(
            params![
                EventKind::AttemptAnswered.as_str(),
                Disposition::Ambiguous.as_str()
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect();
    rows
}

/// Instances that reached a terminal state at or after `since_ms` (for the rate in `status`).
pub fn finished_since(conn: &Connection, since_ms: i64) -> rusqlite::Result<u64> {
    conn.query_row(
        &format!(
            "SELECT count(*) FROM instances WHERE state IN ({}) AND updated_at_ms >= ?1",
            super::sql_list(State::TERMINAL.map(State::as_str))
        ),
        params![since_ms],
        |r| r.get(0),
    )
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
