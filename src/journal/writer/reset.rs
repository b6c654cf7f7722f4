//! `retry-failed`: failed instances (all, or those with one error code or its
//! sub-codes) back to `pending`, with a fresh attempt budget.

use rusqlite::{params, Connection};

use super::events::{append_event, ChainState};
use crate::journal::chain::EventRow;
use crate::journal::state::{transition, Move};
use crate::journal::JournalError;
use crate::model::{EventKind, State};

pub(in crate::journal) struct Reset {
    pub code: Option<String>,
    pub run_id: Option<i64>,
    pub at_ms: i64,
}

pub(super) fn reset_failed(
    conn: &Connection,
    chain: &mut ChainState,
    r: Reset,
) -> Result<u64, JournalError> {
    let ids: Vec<(String, u32, Option<String>)> = {
        let mut stmt = conn.prepare(
            "SELECT instance_id, attempts, last_error_code FROM instances WHERE state = ?2 AND (?1 IS NULL OR last_error_code = ?1 OR last_error_code LIKE ?1 || '.%') ORDER BY seq",
        )?;
        let rows = stmt
            .query_map(params![r.code, State::Failed], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        rows
    };
    for (id, attempts, last_code) in &ids {
        // The one way out of `failed` (SPEC §2), as the state machine has it.
        let to = transition(State::Failed, Move::ResetForRetry, *attempts)
            .expect("failed -> pending is a transition");
        let n = conn.execute(
            "UPDATE instances SET state = ?3, budget_base = attempts, kms_errors = 0, cleared_to_send = 0, next_attempt_at_ms = NULL, last_error_code = NULL, last_error_message = NULL, updated_at_ms = ?2 WHERE instance_id = ?1 AND state = ?4",
            params![id, r.at_ms, to, State::Failed],
        )?;
        if n == 1 {
            append_event(
                conn,
                chain,
                EventRow {
                    at_ms: r.at_ms,
                    run_id: r.run_id,
                    instance_id: Some(id.clone()),
                    kind: EventKind::ResetForRetry.as_str().into(),
                    from_state: Some(State::Failed.as_str().into()),
                    to_state: Some(to.as_str().into()),
                    attempt: Some(*attempts as i64),
                    error_code: last_code.clone(),
                    ..EventRow::default()
                },
            )?;
        }
    }
    Ok(ids.len() as u64)
}
