//! Importing the input: new instances become `pending`; instances already in
//! the journal keep their state (the journal's values win over a changed row).

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::events::{append_event, ChainState};
use crate::journal::chain::EventRow;
use crate::journal::rows::ImportSummary;
use crate::journal::JournalError;
use crate::model::{EventKind, InstanceSpec, State};

fn labels_json(labels: &[(String, String)]) -> String {
    let map: Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    Value::Object(map).to_string()
}

pub(super) fn import(
    conn: &Connection,
    chain: &mut ChainState,
    specs: Vec<InstanceSpec>,
    at_ms: i64,
) -> Result<ImportSummary, JournalError> {
    let mut summary = ImportSummary::default();
    let mut seq: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM instances", [], |r| {
        r.get(0)
    })?;
    for spec in specs {
        type Attrs = (String, Option<String>, Option<String>, Option<String>);
        let existing: Option<Attrs> = conn
            .prepare_cached(
                "SELECT region, key_id, key_region, account FROM instances WHERE instance_id = ?1",
            )?
            .query_row(params![spec.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        if let Some(known) = existing {
            summary.already_known += 1;
            let given = (
                spec.region.clone(),
                spec.key_id.clone(),
                spec.key_region.clone(),
                spec.account.clone(),
            );
            if known != given {
                summary.differing.push(spec.id.to_string());
            }
            continue;
        }
        seq += 1;
        conn.prepare_cached(
            "INSERT INTO instances (instance_id, seq, region, key_id, key_region, labels, state, imported_at_ms, updated_at_ms, account) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7, ?7, ?9)",
        )?
        .execute(params![
            spec.id,
            seq,
            spec.region,
            spec.key_id,
            spec.key_region,
            labels_json(&spec.labels),
            at_ms,
            State::Pending.as_str(),
            spec.account
        ])?;
        append_event(
            conn,
            chain,
            EventRow {
                at_ms,
                instance_id: Some(spec.id.to_string()),
                kind: EventKind::Imported.as_str().into(),
                to_state: Some(State::Pending.as_str().into()),
                detail: Some(match &spec.account {
                    Some(account) => format!("input line {}, account {account}", spec.line),
                    None => format!("input line {}", spec.line),
                }),
                ..EventRow::default()
            },
        )?;
        summary.added += 1;
    }
    Ok(summary)
}
