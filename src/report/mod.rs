//! Audit reports from the journal (SPEC §6). Reports read the journal only,
//! through a read-only connection, and stream instances one row at a time.

mod axis;
mod csv_out;
mod data;
mod html;
mod json;
mod markdown;

use std::io::Write;
use std::path::Path;

pub use data::{account_name, by_account, iso, Overview, Series, Tally};
pub use html::{thousands, FULL_TABLE_MAX};

use crate::journal::{schema, JournalError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
    Md,
    Html,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot read the journal: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
}

impl From<csv::Error> for ReportError {
    fn from(e: csv::Error) -> Self {
        ReportError::Io(std::io::Error::other(e.to_string()))
    }
}

/// Writes the report of the journal at `journal` in `format` to `out`.
pub fn write(journal: &Path, format: Format, out: &mut dyn Write) -> Result<(), ReportError> {
    let conn = schema::open_reader(journal)?;
    let overview = data::overview(&conn, journal)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    match format {
        Format::Json => json::write(&conn, &overview, &mut out)?,
        Format::Csv => csv_out::write(&conn, &mut out)?,
        Format::Md => markdown::write(&conn, &overview, &mut out)?,
        Format::Html => html::write(&conn, &overview, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// Writes the report to a new file created with mode 0600.
pub fn write_file(journal: &Path, format: Format, path: &Path) -> Result<(), ReportError> {
    let mut f = create_private(path)?;
    write(journal, format, &mut f)?;
    f.sync_all()?;
    Ok(())
}

/// Creates (or truncates) a file readable by its owner only.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// A cell a spreadsheet would run as a formula gets a leading `'`.
pub fn csv_safe(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_escaped() {
        for bad in ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_safe(bad).starts_with('\''), "{bad:?}");
        }
        assert_eq!(csv_safe("cdb-abcd1234"), "cdb-abcd1234");
        assert_eq!(csv_safe(""), "");
    }
}
