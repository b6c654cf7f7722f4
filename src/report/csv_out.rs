//! `report --format csv`: one row per instance with the JSON report's fields;
//! labels are flattened into `label.<name>` columns so a spreadsheet can sort
//! and filter them. Cells a spreadsheet would run as a formula are escaped
//! (labels come from user files, messages from the server).

use std::io::Write;

use rusqlite::Connection;

use super::data::iso;
use super::{csv_safe, ReportError};
use crate::journal::read;

pub const FIELDS: [&str; 11] = [
    "instance_id",
    "region",
    "key_id",
    "key_region",
    "state",
    "attempts",
    "last_request_id",
    "last_error_code",
    "last_error_message",
    "verified_at",
    "account",
];

/// Every label name used by any instance, sorted.
fn label_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT j.key FROM instances, json_each(instances.labels) AS j ORDER BY j.key",
    )?;
    let names = stmt.query_map([], |r| r.get(0))?.collect();
    names
}

pub fn write(conn: &Connection, out: &mut dyn Write) -> Result<(), ReportError> {
    let labels = label_names(conn)?;
    let mut w = csv::Writer::from_writer(out);
    let header: Vec<String> = FIELDS
        .iter()
        .map(|f| f.to_string())
        .chain(labels.iter().map(|l| format!("label.{l}")))
        .collect();
    w.write_record(header.iter().map(|h| csv_safe(h)))?;
    let mut err = None;
    read::for_each_instance(conn, |row| {
        let values: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.labels).unwrap_or_default();
        let mut cells = vec![
            row.instance_id.to_string(),
            row.region,
            row.key_id.unwrap_or_default(),
            row.key_region.unwrap_or_default(),
            row.state.as_str().to_string(),
            row.attempts.to_string(),
            row.last_request_id.unwrap_or_default(),
            row.last_error_code.unwrap_or_default(),
            row.last_error_message.unwrap_or_default(),
            row.verified_at_ms.map(iso).unwrap_or_default(),
            row.account.unwrap_or_default(),
        ];
        cells.extend(labels.iter().map(|l| {
            values
                .get(l)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        }));
        if let Err(e) = w.write_record(cells.iter().map(|c| csv_safe(c))) {
            err = Some(e);
            return Err(std::io::Error::other("csv"));
        }
        Ok(())
    })?
    .map_err(|e| match err.take() {
        Some(c) => ReportError::from(c),
        None => ReportError::Io(e),
    })?;
    w.flush()?;
    Ok(())
}
