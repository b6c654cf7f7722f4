//! The rows the journal hands back: an instance as stored, and what an import did.

use crate::model::{Disposition, InstanceId, State};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: u64,
    pub already_known: u64,
    /// Known instances whose input row differs from the journal (the journal is kept).
    pub differing: Vec<String>,
}

/// The detail of a `ReadNotEncrypted` event whose NO cleared a new attempt.
pub(crate) const SETTLED: &str = "settled";

/// An instance row.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub instance_id: InstanceId,
    pub seq: i64,
    pub region: String,
    pub key_id: Option<String>,
    pub key_region: Option<String>,
    /// The tccli profile whose credentials work on it (`None`: the run's own).
    pub account: Option<String>,
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

pub(crate) const INSTANCE_COLUMNS: &str = "instance_id, seq, region, key_id, key_region, labels, state, attempts, budget_base, kms_errors, cleared_to_send, last_sent_at_ms, settles_at_ms, last_outcome, next_attempt_at_ms, last_request_id, last_error_code, last_error_message, verified_at_ms, account";

/// The schema version that added `instances.account` (migration 0008).
pub(crate) const ACCOUNT_VERSION: i64 = 8;

/// [`INSTANCE_COLUMNS`] as `conn`'s journal has them: a read-only reader of a
/// journal older than version 8 (not migrated) reads no account.
pub(crate) fn instance_columns(conn: &rusqlite::Connection) -> rusqlite::Result<String> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(if version >= ACCOUNT_VERSION {
        INSTANCE_COLUMNS.to_string()
    } else {
        INSTANCE_COLUMNS.replace(", account", ", NULL AS account")
    })
}

/// An instance row; the model's types read themselves (`journal::sql`), so a
/// value outside the model is an error, never a guess.
pub(crate) fn instance_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InstanceRow> {
    Ok(InstanceRow {
        instance_id: r.get(0)?,
        seq: r.get(1)?,
        region: r.get(2)?,
        key_id: r.get(3)?,
        key_region: r.get(4)?,
        labels: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        budget_base: r.get(8)?,
        kms_errors: r.get(9)?,
        cleared_to_send: r.get::<_, i64>(10)? == 1,
        last_sent_at_ms: r.get(11)?,
        settles_at_ms: r.get(12)?,
        last_outcome: r.get(13)?,
        next_attempt_at_ms: r.get(14)?,
        last_request_id: r.get(15)?,
        last_error_code: r.get(16)?,
        last_error_message: r.get(17)?,
        verified_at_ms: r.get(18)?,
        account: r.get(19)?,
    })
}
