//! `report --format csv`: one row per instance, the JSON fields; cells a
//! spreadsheet would run as a formula are escaped (labels come from user files).

use std::io::Write;

use rusqlite::Connection;

use super::data::iso;
use super::{csv_safe, ReportError};
use crate::journal::read;

pub const HEADER: [&str; 11] = [
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
    "labels",
];

pub fn write(conn: &Connection, out: &mut dyn Write) -> Result<(), ReportError> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let mut err = None;
    read::for_each_instance(conn, |row| {
        let cells = [
            row.instance_id,
            row.region,
            row.key_id.unwrap_or_default(),
            row.key_region.unwrap_or_default(),
            row.state.as_str().to_string(),
            row.attempts.to_string(),
            row.last_request_id.unwrap_or_default(),
            row.last_error_code.unwrap_or_default(),
            row.last_error_message.unwrap_or_default(),
            row.verified_at_ms.map(iso).unwrap_or_default(),
            row.labels,
        ];
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
