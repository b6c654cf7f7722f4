//! The tamper-evident event chain: each event stores the SHA-256 of the
//! previous event's hash and its own canonical content. Editing, deleting or
//! reordering a row breaks the chain at that row; a copy of the report pins the
//! head, which also catches a truncated tail.

use rusqlite::Connection;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event row as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRow {
    pub id: i64,
    pub at_ms: i64,
    pub run_id: Option<i64>,
    pub instance_id: Option<String>,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub action: Option<String>,
    pub endpoint: Option<String>,
    pub sent_at_ms: Option<i64>,
    pub latency_ms: Option<i64>,
    pub attempt: Option<i64>,
    pub request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub detail: Option<String>,
}

impl EventRow {
    /// A JSON array of every field in a fixed order: unambiguous and stable.
    pub fn canonical(&self) -> String {
        json!([
            self.id,
            self.at_ms,
            self.run_id,
            self.instance_id,
            self.kind,
            self.from_state,
            self.to_state,
            self.action,
            self.endpoint,
            self.sent_at_ms,
            self.latency_ms,
            self.attempt,
            self.request_id,
            self.error_code,
            self.error_message,
            self.detail
        ])
        .to_string()
    }

    pub fn hash(&self, prev_hash: &str) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(self.canonical().as_bytes());
        hex::encode(h.finalize())
    }
}

pub const EVENT_COLUMNS: &str = "id, at_ms, run_id, instance_id, kind, from_state, to_state, action, endpoint, sent_at_ms, latency_ms, attempt, request_id, error_code, error_message, detail";

pub fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        run_id: r.get(2)?,
        instance_id: r.get(3)?,
        kind: r.get(4)?,
        from_state: r.get(5)?,
        to_state: r.get(6)?,
        action: r.get(7)?,
        endpoint: r.get(8)?,
        sent_at_ms: r.get(9)?,
        latency_ms: r.get(10)?,
        attempt: r.get(11)?,
        request_id: r.get(12)?,
        error_code: r.get(13)?,
        error_message: r.get(14)?,
        detail: r.get(15)?,
    })
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainReport {
    Intact {
        events: u64,
        head: String,
    },
    Broken {
        /// The first event whose stored hashes do not hold.
        event_id: i64,
        reason: String,
        events_checked: u64,
    },
}

/// Walks every event in id order and checks both hashes of each.
pub fn verify(conn: &Connection) -> rusqlite::Result<ChainReport> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {EVENT_COLUMNS}, prev_hash, hash FROM events ORDER BY id"
    ))?;
    let mut rows = stmt.query([])?;
    let mut prev = GENESIS.to_string();
    let mut checked = 0u64;
    let mut expected_id: Option<i64> = None;
    while let Some(row) = rows.next()? {
        let ev = event_from_row(row)?;
        let stored_prev: String = row.get(16)?;
        let stored_hash: String = row.get(17)?;
        let broken = |reason: String| ChainReport::Broken {
            event_id: ev.id,
            reason,
            events_checked: checked,
        };
        if let Some(e) = expected_id {
            if ev.id != e {
                return Ok(broken(format!(
                    "event ids jump from {} to {}: rows were deleted",
                    e - 1,
                    ev.id
                )));
            }
        }
        if stored_prev != prev {
            return Ok(broken(
                "its prev_hash does not match the previous event's hash: an event before it was deleted, edited or moved".into(),
            ));
        }
        if ev.hash(&prev) != stored_hash {
            return Ok(broken(
                "its content does not match its hash: the row was edited".into(),
            ));
        }
        prev = stored_hash;
        checked += 1;
        expected_id = Some(ev.id + 1);
    }
    Ok(ChainReport::Intact {
        events: checked,
        head: prev,
    })
}

/// The hash of the last event (the chain head), or GENESIS for an empty journal.
pub fn head(conn: &Connection) -> rusqlite::Result<String> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT hash FROM events ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS.to_string()))
}
