//! Opening the journal: file mode, pragmas, and migrations from `migrations/`
//! applied in order and tracked in `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::JournalError;

/// `migrations/NNNN_*.sql`, in order; index + 1 is the schema version it leads to.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_run_timeout.sql"),
    include_str!("../../migrations/0003_run_settle.sql"),
    include_str!("../../migrations/0004_checked_vocabulary.sql"),
    include_str!("../../migrations/0005_covering_send_index.sql"),
    include_str!("../../migrations/0006_verification_counters.sql"),
    include_str!("../../migrations/0007_rollout_events.sql"),
    include_str!("../../migrations/0008_accounts.sql"),
];

fn unusable(path: &Path, reason: impl std::fmt::Display) -> JournalError {
    JournalError::Open {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Whether a database error means the journal file itself is unusable (damaged,
/// truncated, not a database, unwritable, disk full) rather than a passing failure.
pub fn is_unusable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            DatabaseCorrupt
                | NotADatabase
                | CannotOpen
                | DiskFull
                | ReadOnly
                | PermissionDenied
                | SystemIoFailure
        )
    )
}

/// Checks what can be checked of an existing journal file before SQLite opens it,
/// so each problem gets a message that says what it is: a directory, a file that
/// is not an SQLite database, or one shorter than its header says (truncated).
pub fn check_file(path: &Path) -> Result<(), JournalError> {
    use std::io::Read;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unusable(path, e)),
    };
    if meta.is_dir() {
        return Err(unusable(path, "it is a directory, not a journal file"));
    }
    if !meta.is_file() {
        return Err(unusable(path, "it is not a regular file"));
    }
    if meta.len() == 0 {
        // A new, empty file (created by a previous open that stopped early).
        return Ok(());
    }
    let mut header = [0u8; 100];
    let mut f = std::fs::File::open(path).map_err(|e| unusable(path, e))?;
    let mut n = 0;
    while n < header.len() {
        match f.read(&mut header[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(unusable(path, e)),
        }
    }
    if n < 16 || &header[..16] != b"SQLite format 3\0" {
        return Err(unusable(
            path,
            "it is not a fleetcrypt journal (not an SQLite database)",
        ));
    }
    if n < 100 {
        return Err(unusable(
            path,
            format!(
                "the file is truncated ({} bytes, shorter than its header)",
                meta.len()
            ),
        ));
    }
    let be32 =
        |o: usize| u32::from_be_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536u64,
        p => p as u64,
    };
    let pages = be32(28) as u64;
    // The in-header size counts only when it was written with the current change counter.
    if pages > 0 && be32(24) == be32(92) && meta.len() < pages * page_size {
        return Err(unusable(
            path,
            format!(
                "the file is truncated ({} bytes; its header says {} pages of {} bytes)",
                meta.len(),
                pages,
                page_size
            ),
        ));
    }
    Ok(())
}

/// Creates the file with mode 0600 before SQLite sees it; SQLite gives its
/// `-wal` and `-shm` files the database file's mode.
fn create_private(path: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(JournalError::Open {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
        })
}

/// Opens (creating if needed) the journal for writing and brings its schema up to date.
/// Every failure here names the journal and says what is wrong (`JournalError::Open`).
pub fn open_writer(path: &Path) -> Result<Connection, JournalError> {
    check_file(path)?;
    create_private(path)?;
    let conn = Connection::open(path).map_err(|e| unusable(path, e))?;
    let setup = || -> Result<(), JournalError> {
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed write-ahead record survives a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&conn)
    };
    setup().map_err(|e| match e {
        JournalError::Open { .. } => e,
        other => unusable(path, other),
    })?;
    Ok(conn)
}

/// Opens an existing journal read-only (status and reports beside a live run).
pub fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    if !path.exists() {
        return Err(JournalError::Open {
            path: path.display().to_string(),
            reason: "no such journal (run `fleetcrypt run` first, or pass --journal)".into(),
        });
    }
    check_file(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| unusable(path, e))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| unusable(path, e))?;
    // Readers (status, report, verify) use only columns that exist since version 1, so an
    // older journal is read as it is; a read-only connection cannot migrate it anyway.
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| unusable(path, e))?;
    if version < 1 || version as usize > MIGRATIONS.len() {
        return Err(JournalError::Open {
            path: path.display().to_string(),
            reason: format!(
                "schema version {version}; this fleetcrypt reads versions 1 to {}",
                MIGRATIONS.len()
            ),
        });
    }
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), JournalError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        return Err(JournalError::Open {
            path: conn.path().unwrap_or("").to_string(),
            reason: format!(
                "the journal's schema version {version} is newer than this fleetcrypt ({})",
                MIGRATIONS.len()
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pragmas_read_back_and_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let conn = open_writer(&path).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        for f in ["j.db", "j.db-wal", "j.db-shm"] {
            let m = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o600, "{f}");
        }
        drop(conn);
        // Re-opening applies nothing twice.
        let conn = open_writer(&path).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
        assert!(open_reader(&path).is_ok());
    }

    #[test]
    fn an_older_journal_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO runs (started_at_ms, pid, command, tool_version) VALUES (1, 1, 'run', '0.0.1')",
                [],
            )
            .unwrap();
        }
        // status and report read it before any writer has migrated it.
        let r = open_reader(&path).unwrap();
        assert_eq!(crate::journal::read::runs(&r).unwrap().len(), 1);
        drop(r);
        let c = open_writer(&path).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let t: (Option<i64>, Option<i64>) = c
            .query_row("SELECT timeout_ms, settle_ms FROM runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            t,
            (None, None),
            "old rows keep their data and gain the columns"
        );
    }

    #[test]
    fn events_are_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("j.db")).unwrap();
        conn.execute(
            "INSERT INTO events (at_ms, kind, prev_hash, hash) VALUES (1, 'RunStarted', '', '')",
            [],
        )
        .unwrap();
        assert!(conn
            .execute("UPDATE events SET kind = 'RunEnded'", [])
            .is_err());
        assert!(conn.execute("DELETE FROM events", []).is_err());
    }

    /// The CHECK lists of migration 0004 are exactly the model's values: every
    /// value the code can write is accepted, and anything else is refused.
    #[test]
    fn the_stored_vocabulary_is_checked_against_the_model() {
        use crate::model::{Disposition, EventKind, State};
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("j.db")).unwrap();
        let event = |kind: &str, from: Option<&str>, to: Option<&str>| {
            conn.execute(
                "INSERT INTO events (at_ms, kind, from_state, to_state, prev_hash, hash) VALUES (1, ?1, ?2, ?3, '', '')",
                rusqlite::params![kind, from, to],
            )
        };
        for k in EventKind::ALL {
            event(k.as_str(), None, None).unwrap();
        }
        for s in State::ALL {
            event("Imported", Some(s.as_str()), Some(s.as_str())).unwrap();
        }
        for bad in ["", "Noted", "runstarted", "RunStarted "] {
            assert!(event(bad, None, None).is_err(), "kind {bad:?}");
        }
        for bad in ["", "done", "Pending", "retry-wait"] {
            assert!(event("Imported", Some(bad), None).is_err(), "from {bad:?}");
            assert!(event("Imported", None, Some(bad)).is_err(), "to {bad:?}");
        }
        let instance = |n: i64, state: &str, outcome: Option<&str>| {
            conn.execute(
                "INSERT INTO instances (instance_id, seq, region, state, last_outcome, imported_at_ms, updated_at_ms) VALUES (?1, ?2, 'ap-guangzhou', ?3, ?4, 1, 1)",
                rusqlite::params![format!("cdb-{n:08}"), n, state, outcome],
            )
        };
        let mut n = 0;
        for s in State::ALL {
            for o in Disposition::ALL
                .map(|d| Some(d.as_str()))
                .into_iter()
                .chain([None])
            {
                n += 1;
                instance(n, s.as_str(), o).unwrap();
            }
        }
        assert!(instance(n + 1, "pending", Some("accept")).is_err());
        assert!(instance(n + 2, "finished", None).is_err());
    }
    /// Migration 0006 fills each instance's verification counters from the
    /// events already written, with the same definitions as the event scan
    /// that an older journal is still read with.
    #[test]
    fn the_verification_counters_are_filled_in_from_the_events() {
        use crate::journal::read;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        {
            let c = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..5] {
                c.execute_batch(m).unwrap();
            }
            c.pragma_update(None, "user_version", 5).unwrap();
            let instance = |id: &str, seq: i64, outcome: Option<&str>, sent: Option<i64>| {
                c.execute(
                    "INSERT INTO instances (instance_id, seq, region, state, last_outcome, last_sent_at_ms, imported_at_ms, updated_at_ms) VALUES (?1, ?2, 'ap-guangzhou', 'encrypted', ?3, ?4, 1, 1)",
                    rusqlite::params![id, seq, outcome, sent],
                )
                .unwrap();
            };
            instance("cdb-00000001", 1, Some("accepted"), Some(1_000));
            instance("cdb-00000002", 2, Some("ambiguous"), Some(2_000));
            instance("cdb-00000003", 3, None, None);
            let event = |id: &str,
                         kind: &str,
                         from: &str,
                         action: Option<&str>,
                         sent: Option<i64>| {
                c.execute(
                    "INSERT INTO events (at_ms, instance_id, kind, from_state, action, endpoint, sent_at_ms, prev_hash, hash) VALUES (1, ?1, ?2, ?3, ?4, 'cdb.ap-guangzhou.tencentcloudapi.com', ?5, '', '')",
                    rusqlite::params![id, kind, from, action, sent],
                )
                .unwrap();
            };
            let d = Some("DescribeDBInstanceInfo");
            // 1: preflight, Open accepted, two polls, YES 7.5 s after the Open.
            event("cdb-00000001", "ReadNotEncrypted", "pending", d, Some(500));
            event(
                "cdb-00000001",
                "AttemptAnswered",
                "requesting",
                Some("OpenDBInstanceEncryption"),
                Some(1_000),
            );
            event("cdb-00000001", "ApiCalled", "verifying", d, Some(3_000));
            event(
                "cdb-00000001",
                "ReadNotEncrypted",
                "verifying",
                d,
                Some(5_000),
            );
            event(
                "cdb-00000001",
                "VerifiedEncrypted",
                "verifying",
                d,
                Some(8_500),
            );
            // 2: an ambiguous Open verified YES: a read, not a delay to YES.
            event(
                "cdb-00000002",
                "ReadNotEncrypted",
                "pending",
                d,
                Some(1_500),
            );
            event(
                "cdb-00000002",
                "VerifiedEncrypted",
                "verifying",
                d,
                Some(4_000),
            );
            // 3: found encrypted at preflight; one read not sent is not counted.
            event(
                "cdb-00000003",
                "FoundAlreadyEncrypted",
                "pending",
                d,
                Some(100),
            );
            event("cdb-00000003", "PreflightFailed", "pending", d, None);
        }
        let before = read::verification(&open_reader(&path).unwrap()).unwrap();
        drop(open_writer(&path).unwrap());
        let conn = open_reader(&path).unwrap();
        let after = read::verification(&conn).unwrap();
        assert_eq!(after, before);
        assert_eq!(after, read::verification_from_events(&conn).unwrap());
        assert_eq!((after.reads, after.polls), (7, 2));
        let d = &after.delay_to_yes["cdb.ap-guangzhou.tencentcloudapi.com"];
        assert_eq!((d.n, d.p50_ms, d.p90_ms), (1, 7_500, 7_500));
    }
}
