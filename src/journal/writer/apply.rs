//! Applying one fact to one instance: the pure transition decides the new
//! state, a guarded update (`… WHERE state = <from>`) writes it, and its event
//! joins the chain, all in the operation's savepoint. The write-ahead guard
//! lives here: an attempt is journaled only when the instance is cleared to send.

use rusqlite::{params, Connection, OptionalExtension};

use super::events::{append_event, ChainState};
use crate::journal::chain::EventRow;
use crate::journal::facts::{CallRecord, Change, Fact};
use crate::journal::rows::{instance_from_row, InstanceRow, INSTANCE_COLUMNS, SETTLED};
use crate::journal::state::transition;
use crate::journal::JournalError;
use crate::model::{Action, Disposition, EventKind, InstanceId, State};

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
        Fact::Called => EventKind::ApiCalled,
    }
}

pub(super) fn apply(
    conn: &Connection,
    chain: &mut ChainState,
    c: Change,
) -> Result<InstanceRow, JournalError> {
    let now = Current::load(conn, &c.instance_id)?;
    let to = match c.fact.movement() {
        None => now.state,
        Some(m) => {
            transition(now.state, m, now.attempts).map_err(|source| JournalError::Illegal {
                instance_id: c.instance_id.clone(),
                source,
            })?
        }
    };
    let mut ev = event_for(&c, now.state, to, now.attempts);
    let update = Update {
        conn,
        id: &c.instance_id,
        from: now.state,
        to,
        at: c.at_ms,
    };
    let changed = write(&update, &now, &c, &mut ev)?;
    if changed != 1 {
        return Err(JournalError::Conflict {
            instance_id: c.instance_id.clone(),
            expected: now.state,
        });
    }
    if let Some(call) = c
        .call
        .as_ref()
        .filter(|k| k.action == Action::DescribeDBInstanceInfo)
    {
        update.count_read(call, ev.kind == EventKind::VerifiedEncrypted.as_str())?;
    }
    append_event(conn, chain, ev)?;
    // The row as it now stands is the one truth about the instance.
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?1"
        ))?
        .query_row(params![c.instance_id], instance_from_row)?)
}

/// Writes `c`'s fact to its instance row with the guarded update that fact
/// needs, adding what the event should say; answers how many rows changed.
fn write(
    update: &Update<'_>,
    now: &Current,
    c: &Change,
    ev: &mut EventRow,
) -> Result<usize, JournalError> {
    let request_id = c.call.as_ref().and_then(|k| k.request_id.clone());
    Ok(match &c.fact {
        Fact::Called => 1,
        Fact::EncryptionRead {
            encrypted: true, ..
        } => update.verified(request_id)?,
        Fact::EncryptionRead {
            encrypted: false,
            settled,
        } => {
            // A NO clears the way for a (new) attempt only if no attempt was ever made,
            // or it was read after the last attempt settled (the runner decides that on
            // its monotonic clock; stored wall-clock times are for the audit only).
            let clears = now.attempts == 0 || *settled;
            if clears {
                ev.detail = Some(SETTLED.into());
            }
            update.read_no(now.cleared || clears)?
        }
        Fact::PreflightFailed { code, message } | Fact::GaveUp { code, message } => {
            ev.error_code = Some(code.clone());
            ev.error_message = Some(message.clone());
            update.failed(code, message, request_id)?
        }
        Fact::AttemptWritten { request } => {
            // The write-ahead guard: no new attempt unless a NO cleared it.
            if !now.cleared {
                return Err(JournalError::NotCleared {
                    instance_id: c.instance_id.clone(),
                });
            }
            ev.attempt = Some(now.attempts as i64 + 1);
            ev.detail = Some(request.clone());
            ev.action = Some(Action::OpenDBInstanceEncryption.as_str().into());
            update.attempt_written()?
        }
        Fact::AttemptAnswered {
            disposition,
            settles_at_ms,
            next_attempt_at_ms,
            kms_error,
        } => {
            ev.detail = Some(disposition.as_str().into());
            update.attempt_answered(
                c.call.as_ref(),
                *disposition,
                *settles_at_ms,
                *next_attempt_at_ms,
                *kms_error,
            )?
        }
        Fact::RetryScheduled {
            next_attempt_at_ms,
            reason,
        } => {
            ev.detail = Some(reason.clone());
            update.retry_scheduled(*next_attempt_at_ms)?
        }
        Fact::AttemptRecovered { settles_at_ms } => {
            ev.detail = Some(format!("verify after {settles_at_ms}"));
            update.recovered(*settles_at_ms)?
        }
    })
}

/// What the guarded update starts from.
struct Current {
    state: State,
    attempts: u32,
    cleared: bool,
}

impl Current {
    fn load(conn: &Connection, id: &InstanceId) -> Result<Current, JournalError> {
        conn.prepare_cached(
            "SELECT state, attempts, cleared_to_send FROM instances WHERE instance_id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok(Current {
                state: r.get(0)?,
                attempts: r.get(1)?,
                cleared: r.get::<_, i64>(2)? == 1,
            })
        })
        .optional()?
        .ok_or_else(|| JournalError::UnknownInstance(id.clone()))
    }
}

/// The event for a change, with the call it comes from.
fn event_for(c: &Change, from: State, to: State, attempts: u32) -> EventRow {
    let mut ev = EventRow {
        at_ms: c.at_ms,
        run_id: c.run_id,
        instance_id: Some(c.instance_id.to_string()),
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
    ev
}

/// One guarded update of one instance row: each writes only `WHERE state =
/// <from>` and answers how many rows changed (anything but 1 is a conflict).
struct Update<'a> {
    conn: &'a Connection,
    id: &'a InstanceId,
    from: State,
    to: State,
    at: i64,
}

impl Update<'_> {
    fn verified(&self, request_id: Option<String>) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE instances SET state = ?2, verified_at_ms = ?3, last_request_id = COALESCE(?4, last_request_id), next_attempt_at_ms = NULL, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?5",
            )?
            .execute(params![self.id, self.to, self.at, request_id, self.from])
    }

    fn read_no(&self, cleared: bool) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE instances SET cleared_to_send = ?2, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?4",
            )?
            .execute(params![self.id, cleared as i64, self.at, self.from])
    }

    fn failed(
        &self,
        code: &str,
        message: &str,
        request_id: Option<String>,
    ) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE instances SET state = ?7, last_error_code = ?2, last_error_message = ?3, next_attempt_at_ms = NULL, updated_at_ms = ?4, last_request_id = COALESCE(?6, last_request_id) WHERE instance_id = ?1 AND state = ?5",
            )?
            .execute(params![self.id, code, message, self.at, self.from, request_id, self.to])
    }

    /// Also guarded on `cleared_to_send = 1`, beside the check in `apply`.
    fn attempt_written(&self) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE instances SET state = ?4, attempts = attempts + 1, cleared_to_send = 0, settles_at_ms = NULL, last_sent_at_ms = NULL, last_outcome = NULL, next_attempt_at_ms = NULL, updated_at_ms = ?2 WHERE instance_id = ?1 AND state = ?3 AND cleared_to_send = 1",
            )?
            .execute(params![self.id, self.at, self.from, self.to])
    }

    fn attempt_answered(
        &self,
        call: Option<&CallRecord>,
        disposition: Disposition,
        settles_at_ms: i64,
        next_attempt_at_ms: Option<i64>,
        kms_error: bool,
    ) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE instances SET state = ?2, last_sent_at_ms = ?3, settles_at_ms = ?4, last_outcome = ?5, next_attempt_at_ms = ?6, last_request_id = COALESCE(?7, last_request_id), last_error_code = ?8, last_error_message = ?9, kms_errors = kms_errors + ?10, updated_at_ms = ?11 WHERE instance_id = ?1 AND state = ?12",
            )?
            .execute(params![
                self.id,
                self.to,
                call.map_or(0, |k| k.sent_at_ms),
                settles_at_ms,
                disposition,
                next_attempt_at_ms,
                call.and_then(|k| k.request_id.as_deref()),
                call.and_then(|k| k.error_code.as_deref()),
                call.and_then(|k| k.error_message.as_deref()),
                kms_error as i64,
                self.at,
                self.from
            ])
    }

    /// Counts a `DescribeDBInstanceInfo` read (schema version 6): a poll when it
    /// was read while verifying and did not find `YES`; a read that found `YES`
    /// after an accepted Open keeps the delay from that Open's send.
    fn count_read(&self, call: &CallRecord, found_yes: bool) -> rusqlite::Result<usize> {
        let poll = self.from == State::Verifying && !found_yes;
        self.conn
            .prepare_cached(
                "UPDATE instances SET describe_reads = describe_reads + 1, polls = polls + ?2, \
                 yes_endpoint = CASE WHEN ?3 AND last_outcome = ?6 AND last_sent_at_ms IS NOT NULL THEN ?4 ELSE yes_endpoint END, \
                 delay_to_yes_ms = CASE WHEN ?3 AND last_outcome = ?6 AND last_sent_at_ms IS NOT NULL THEN max(?5 - last_sent_at_ms, 0) ELSE delay_to_yes_ms END \
                 WHERE instance_id = ?1",
            )?
            .execute(params![
                self.id,
                poll as i64,
                found_yes,
                call.endpoint,
                call.sent_at_ms,
                Disposition::Accepted
            ])
    }

    fn retry_scheduled(&self, next_attempt_at_ms: i64) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE instances SET state = ?5, next_attempt_at_ms = ?2, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?4",
            )?
            .execute(params![self.id, next_attempt_at_ms, self.at, self.from, self.to])
    }

    fn recovered(&self, settles_at_ms: i64) -> rusqlite::Result<usize> {
        self.conn
            .prepare_cached(
                "UPDATE instances SET state = ?5, settles_at_ms = ?2, last_outcome = ?6, updated_at_ms = ?3 WHERE instance_id = ?1 AND state = ?4",
            )?
            .execute(params![
                self.id,
                settles_at_ms,
                self.at,
                self.from,
                self.to,
                Disposition::Ambiguous
            ])
    }
}
