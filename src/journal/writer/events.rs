//! Appending to the hash chain: each event's hash covers its content and the
//! previous event's hash (see `journal::chain`).

use rusqlite::{params, Connection, OptionalExtension};

use crate::journal::chain::{self, EventRow};
use crate::journal::JournalError;

/// The chain's head as the writer knows it.
#[derive(Debug, Clone)]
pub(super) struct ChainState {
    pub last_hash: String,
    pub next_id: i64,
}

impl ChainState {
    pub(super) fn load(conn: &Connection) -> Result<ChainState, JournalError> {
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
}

pub(super) fn append_event(
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
