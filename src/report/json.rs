//! `report --format json`: the machine-readable contract (SPEC §6), streamed.

use std::io::Write;

use rusqlite::Connection;
use serde_json::{json, Map, Value};

use super::data::{iso, Overview};
use super::ReportError;
use crate::journal::{read, InstanceRow};
use crate::model::State;

pub fn instance_json(row: &InstanceRow) -> Value {
    let labels: Value =
        serde_json::from_str(&row.labels).unwrap_or_else(|_| Value::Object(Map::new()));
    json!({
        "instance_id": row.instance_id,
        "region": row.region,
        "key_id": row.key_id,
        "key_region": row.key_region,
        "account": row.account,
        "state": row.state.as_str(),
        "attempts": row.attempts,
        "last_request_id": row.last_request_id,
        "last_error_code": row.last_error_code,
        "last_error_message": row.last_error_message,
        "verified_at": row.verified_at_ms.map(iso),
        "labels": labels,
    })
}

pub fn write(conn: &Connection, o: &Overview, out: &mut dyn Write) -> Result<(), ReportError> {
    let head = json!({
        "generated_at": o.generated_at,
        "journal": o.journal,
        "tool_version": o.tool_version,
        "summary": {
            "total": o.total,
            "encrypted": o.counts[&State::Encrypted],
            "already_encrypted": o.counts[&State::AlreadyEncrypted],
            "failed": o.counts[&State::Failed],
            "pending": o.pending,
        },
        // Per account (issue 12): empty when no instance names one; `null`
        // is the run's own credentials.
        "accounts": o.accounts.iter().map(|(account, t)| json!({
            "account": account,
            "total": t.total(),
            "encrypted": t.encrypted,
            "already_encrypted": t.already_encrypted,
            "failed": t.failed,
            "pending": t.pending,
        })).collect::<Vec<_>>(),
        "rate": {
            "limit_per_s": o.limit_per_s,
            "max_requests_in_1s_window": o.max_window,
        },
        "verification": {
            "describe_reads": o.verification.reads,
            "reads_per_instance": o.verification.reads_per_instance(o.total),
            "polls": o.verification.polls,
            "poll_share_of_describe_quota": o.verification.poll_share(),
            "delay_to_yes_ms": o.verification.delay_to_yes.iter().map(|(e, d)| {
                (e.clone(), json!({"n": d.n, "p50": d.p50_ms, "p90": d.p90_ms}))
            }).collect::<serde_json::Map<String, Value>>(),
        },
        "journal_chain_head": o.chain_head,
        // Every run's rollout milestones (issue 11), oldest first.
        "rollout": read::rollout_events(conn, None)?
            .into_iter()
            .map(|(at, e)| {
                let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
                if let Some(m) = v.as_object_mut() {
                    m.insert("at".into(), json!(super::data::iso(at)));
                }
                v
            })
            .collect::<Vec<_>>(),
    });
    // The header object without its closing brace, then the instances array streamed.
    let mut text = serde_json::to_string(&head).map_err(std::io::Error::other)?;
    text.pop();
    out.write_all(text.as_bytes())?;
    out.write_all(b",\"instances\":[")?;
    let mut first = true;
    read::for_each_instance(conn, |row| {
        if !first {
            out.write_all(b",")?;
        }
        first = false;
        serde_json::to_writer(&mut *out, &instance_json(&row)).map_err(std::io::Error::other)
    })??;
    out.write_all(b"]}\n")?;
    Ok(())
}
