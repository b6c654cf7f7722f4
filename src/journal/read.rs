//! Read-only queries. They take any connection, so `status` and `report` use a
//! read-only one beside a live run, and the runner uses the writer's.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, params_from_iter, Connection};

use super::rows::{instance_columns, instance_from_row, InstanceRow, INSTANCE_COLUMNS};
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
        "SELECT {} FROM instances ORDER BY seq",
        instance_columns(conn)?
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if let Err(e) = f(instance_from_row(r)?) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

/// The final states, as `?1, ?2, ?3` of a `state NOT IN (…)`.
fn terminal() -> [&'static str; 3] {
    [
        State::Encrypted.as_str(),
        State::AlreadyEncrypted.as_str(),
        State::Failed.as_str(),
    ]
}

/// The accounts (`None`: the run's own credentials) of the unfinished
/// instances `touches` selects (a run's `--only`/`--exclude`/`--waves`),
/// each once: an account the run leaves alone needs no credentials. A
/// journal that names no account needs the run's own credentials whenever
/// anything is unfinished, whatever the selection.
pub fn open_accounts_where(
    conn: &Connection,
    touches: impl Fn(&InstanceRow) -> bool,
) -> rusqlite::Result<Vec<Option<String>>> {
    if !has_accounts(conn)? {
        let open: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM instances WHERE state NOT IN (?1, ?2, ?3))",
            params_from_iter(terminal()),
            |r| r.get(0),
        )?;
        return Ok(if open { vec![None] } else { Vec::new() });
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {INSTANCE_COLUMNS} FROM instances WHERE state NOT IN (?1, ?2, ?3)"
    ))?;
    let mut rows = stmt.query(params_from_iter(terminal()))?;
    let mut out = std::collections::BTreeSet::new();
    while let Some(r) = rows.next()? {
        let row = instance_from_row(r)?;
        if touches(&row) {
            out.insert(row.account);
        }
    }
    Ok(out.into_iter().collect())
}

/// Whether any instance names an account (a journal older than version 8 names none).
pub fn has_accounts(conn: &Connection) -> rusqlite::Result<bool> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < super::rows::ACCOUNT_VERSION {
        return Ok(false);
    }
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM instances WHERE account IS NOT NULL)",
        [],
        |r| r.get(0),
    )
}

/// Instances per account and state (`None`: the run's own credentials),
/// every state present; empty when no instance names an account.
pub fn counts_by_account(
    conn: &Connection,
) -> rusqlite::Result<BTreeMap<Option<String>, BTreeMap<State, u64>>> {
    let mut out: BTreeMap<Option<String>, BTreeMap<State, u64>> = BTreeMap::new();
    if !has_accounts(conn)? {
        return Ok(out);
    }
    let mut stmt =
        conn.prepare("SELECT account, state, count(*) FROM instances GROUP BY account, state")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let state: State = r.get(1)?;
        *out.entry(r.get(0)?)
            .or_insert_with(|| State::ALL.iter().map(|s| (*s, 0)).collect())
            .entry(state)
            .or_default() += r.get::<_, u64>(2)?;
    }
    Ok(out)
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
/// 1-second window for one endpoint and account (the unit a limit applies
/// to: the quota is per credential). Accounts are told apart by profile name:
/// the journal keeps no SecretId, so two profiles with one key (or a profile
/// with the run's own key) are measured apart; the limiters key by SecretId.
pub fn max_requests_in_1s_window(conn: &Connection) -> rusqlite::Result<BTreeMap<String, u64>> {
    // In send order, which the covering index `events_sends` (migration 0005)
    // gives without a sort or a table lookup (ordering by action and endpoint
    // first sorted 300,000 rows at 100k instances); one window per (action,
    // endpoint, account). A journal that names accounts looks each send's
    // instance up; one that names none skips the lookup.
    // Instance id -> index of its account's name (one String per account,
    // not per event).
    let mut accounts: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    if has_accounts(conn)? {
        let mut stmt =
            conn.prepare("SELECT instance_id, account FROM instances WHERE account IS NOT NULL")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let name = r.get_ref(1)?.as_str()?;
            let index = match names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    names.push(name.to_string());
                    names.len() - 1
                }
            };
            accounts.insert(r.get(0)?, index);
        }
    }
    let sql = if accounts.is_empty() {
        "SELECT action, endpoint, sent_at_ms, NULL FROM events WHERE sent_at_ms IS NOT NULL AND action IS NOT NULL ORDER BY sent_at_ms"
    } else {
        "SELECT action, endpoint, sent_at_ms, instance_id FROM events WHERE sent_at_ms IS NOT NULL AND action IS NOT NULL ORDER BY sent_at_ms"
    };
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    type Unit = (String, String, Option<usize>);
    let mut windows: HashMap<Unit, SlidingWindow> = HashMap::new();
    while let Some(r) = rows.next()? {
        let action: String = r.get(0)?;
        let endpoint: Option<String> = r.get(1)?;
        let t: i64 = r.get(2)?;
        let account = match r.get_ref(3)?.as_str_or_null()? {
            Some(id) => accounts.get(id).copied(),
            None => None,
        };
        windows
            .entry((action, endpoint.unwrap_or_default(), account))
            .or_insert_with(|| SlidingWindow::new(1000))
            .push(t.max(0) as u64);
    }
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for ((action, _, _), w) in windows {
        let e = out.entry(action).or_insert(0);
        *e = (*e).max(w.max() as u64);
    }
    Ok(out)
}

/// The rollout milestones of run `run_id` (issue 11), oldest first, with
/// their times; details that do not parse are skipped.
pub fn rollout_events(
    conn: &Connection,
    run_id: Option<i64>,
) -> rusqlite::Result<Vec<(i64, crate::model::RolloutEvent)>> {
    let mut stmt = conn.prepare(
        "SELECT at_ms, detail FROM events WHERE kind = 'Rollout' AND (?1 IS NULL OR run_id = ?1) ORDER BY id",
    )?;
    let rows = stmt.query_map(params![run_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (at, detail) = row?;
        if let Some(e) = detail
            .as_deref()
            .and_then(crate::model::RolloutEvent::from_json)
        {
            out.push((at, e));
        }
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
            // `+state`: not by state (every instance of a finished fleet) but by
            // the time of the change (index `instances_by_update`, migration 0006).
            "SELECT count(*) FROM instances WHERE +state IN ({}) AND updated_at_ms >= ?1",
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

/// How the `DescribeDBInstanceInfo` quota went on verification (issue 10).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verification {
    /// `DescribeDBInstanceInfo` requests sent.
    pub reads: u64,
    /// Of those, reads of an attempt being verified that did not find `YES`.
    pub polls: u64,
    /// Per endpoint: from an accepted Open's send to the read that saw `YES`.
    pub delay_to_yes: BTreeMap<String, DelayStats>,
}

/// A delay's distribution, nearest rank.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DelayStats {
    pub n: u64,
    pub p50_ms: i64,
    pub p90_ms: i64,
}

impl DelayStats {
    fn of(mut ms: Vec<i64>) -> DelayStats {
        ms.sort_unstable();
        let rank = |p: usize| ms[(ms.len() * p).div_ceil(100).max(1) - 1];
        DelayStats {
            n: ms.len() as u64,
            p50_ms: rank(50),
            p90_ms: rank(90),
        }
    }
}

impl Verification {
    fn new(reads: u64, polls: u64, per_endpoint: BTreeMap<String, Vec<i64>>) -> Verification {
        Verification {
            reads,
            polls,
            delay_to_yes: per_endpoint
                .into_iter()
                .map(|(e, ms)| (e, DelayStats::of(ms)))
                .collect(),
        }
    }

    /// Reads per instance, given how many instances there are.
    pub fn reads_per_instance(&self, instances: u64) -> f64 {
        self.reads as f64 / instances.max(1) as f64
    }

    /// The share of the reads spent on polls that did not find `YES`.
    pub fn poll_share(&self) -> f64 {
        self.polls as f64 / self.reads.max(1) as f64
    }
}

/// The verification figures: from each instance's counters (schema version 6,
/// one pass over `instances`), or from the events of an older journal that a
/// read-only connection cannot migrate.
pub fn verification(conn: &Connection) -> rusqlite::Result<Verification> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 6 {
        return verification_from_events(conn);
    }
    let (reads, polls): (Option<u64>, Option<u64>) = conn.query_row(
        "SELECT sum(describe_reads), sum(polls) FROM instances",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut per_endpoint: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT yes_endpoint, delay_to_yes_ms FROM instances WHERE delay_to_yes_ms IS NOT NULL AND yes_endpoint IS NOT NULL",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        per_endpoint.entry(r.get(0)?).or_default().push(r.get(1)?);
    }
    Ok(Verification::new(
        reads.unwrap_or(0),
        polls.unwrap_or(0),
        per_endpoint,
    ))
}

/// The same figures computed from the events alone (what schema version 6's
/// counters are defined by, and what an older journal is read with).
pub fn verification_from_events(conn: &Connection) -> rusqlite::Result<Verification> {
    let (reads, polls): (u64, Option<u64>) = conn.query_row(
        "SELECT count(*), sum(from_state = ?2 AND kind <> ?3) FROM events WHERE action = ?1 AND sent_at_ms IS NOT NULL",
        params![
            crate::model::Action::DescribeDBInstanceInfo.as_str(),
            State::Verifying,
            EventKind::VerifiedEncrypted.as_str()
        ],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut per_endpoint: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT e.endpoint, e.sent_at_ms - i.last_sent_at_ms FROM events e JOIN instances i ON i.instance_id = e.instance_id \
         WHERE e.kind = ?1 AND i.last_outcome = ?2 AND i.last_sent_at_ms IS NOT NULL AND e.sent_at_ms IS NOT NULL AND e.endpoint IS NOT NULL",
    )?;
    let mut rows = stmt.query(params![
        EventKind::VerifiedEncrypted.as_str(),
        Disposition::Accepted
    ])?;
    while let Some(r) = rows.next()? {
        per_endpoint
            .entry(r.get(0)?)
            .or_default()
            .push(r.get::<_, i64>(1)?.max(0));
    }
    Ok(Verification::new(reads, polls.unwrap_or(0), per_endpoint))
}
