//! The journal through its public handle: write-ahead guard, transitions,
//! the hash chain against edits, deletions and reordering, and the lock.

use fleetcrypt::input::InstanceSpec;
use fleetcrypt::journal::{
    chain, read, schema, CallRecord, ChainReport, Change, Fact, Journal, JournalError, JournalLock,
};
use fleetcrypt::model::{Disposition, State};

fn spec(id: &str) -> InstanceSpec {
    InstanceSpec {
        id: id.parse().unwrap(),
        region: "ap-guangzhou".into(),
        key_id: None,
        key_region: None,
        labels: vec![("team".into(), "=cmd()".into())],
        line: 2,
    }
}

fn change(id: &str, fact: Fact, sent_at_ms: i64) -> Change {
    Change {
        instance_id: id.parse().unwrap(),
        fact,
        run_id: None,
        call: Some(CallRecord {
            action: fleetcrypt::model::Action::DescribeDBInstanceInfo,
            endpoint: "e".into(),
            sent_at_ms,
            latency_ms: 3,
            request_id: Some("rid".into()),
            error_code: None,
            error_message: None,
        }),
        at_ms: sent_at_ms,
    }
}

fn written() -> Fact {
    Fact::AttemptWritten {
        request: "{}".into(),
    }
}

#[tokio::test]
async fn write_ahead_needs_a_settled_no() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.db")).unwrap();
    let s = j.import(vec![spec("cdb-aaaa0001")]).await.unwrap();
    assert_eq!(s.added, 1);
    // No read yet: no attempt may be journaled.
    let e = j
        .apply(change("cdb-aaaa0001", written(), 1))
        .await
        .unwrap_err();
    assert!(matches!(e, JournalError::NotCleared { .. }), "{e}");
    // Before any attempt, any NO clears the way.
    j.apply(change(
        "cdb-aaaa0001",
        Fact::EncryptionRead {
            encrypted: false,
            settled: false,
        },
        10,
    ))
    .await
    .unwrap();
    let a = j
        .apply(change("cdb-aaaa0001", written(), 11))
        .await
        .unwrap();
    assert_eq!(
        (a.state, a.attempts, a.cleared_to_send),
        (State::Requesting, 1, false)
    );
    // Ambiguous answer; the attempt settles at 1000.
    j.apply(change(
        "cdb-aaaa0001",
        Fact::AttemptAnswered {
            disposition: Disposition::Ambiguous,
            settles_at_ms: 1000,
            next_attempt_at_ms: None,
            kms_error: false,
        },
        12,
    ))
    .await
    .unwrap();
    // A NO read before it settled does not clear, whatever the wall clock says.
    let a = j
        .apply(change(
            "cdb-aaaa0001",
            Fact::EncryptionRead {
                encrypted: false,
                settled: false,
            },
            5000,
        ))
        .await
        .unwrap();
    assert!(!a.cleared_to_send);
    j.apply(change(
        "cdb-aaaa0001",
        Fact::RetryScheduled {
            next_attempt_at_ms: 2000,
            reason: "r".into(),
        },
        999,
    ))
    .await
    .unwrap();
    assert!(matches!(
        j.apply(change("cdb-aaaa0001", written(), 2000)).await,
        Err(JournalError::NotCleared { .. })
    ));
    // After it settled (the runner's monotonic word): cleared, and the second
    // attempt goes through, whatever the wall clock says.
    let a = j
        .apply(change(
            "cdb-aaaa0001",
            Fact::EncryptionRead {
                encrypted: false,
                settled: true,
            },
            500,
        ))
        .await
        .unwrap();
    assert!(a.cleared_to_send);
    let a = j
        .apply(change("cdb-aaaa0001", written(), 2001))
        .await
        .unwrap();
    assert_eq!(a.attempts, 2);
    // A stale decision is refused by the guarded update.
    let e = j
        .apply(change(
            "cdb-aaaa0001",
            Fact::RetryScheduled {
                next_attempt_at_ms: 1,
                reason: "x".into(),
            },
            2002,
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, JournalError::Illegal { .. }), "{e}");
}

#[tokio::test]
async fn import_keeps_existing_state_and_chain_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    j.import(vec![spec("cdb-aaaa0001"), spec("cdb-aaaa0002")])
        .await
        .unwrap();
    j.apply(change(
        "cdb-aaaa0001",
        Fact::EncryptionRead {
            encrypted: true,
            settled: true,
        },
        5,
    ))
    .await
    .unwrap();
    let mut other = spec("cdb-aaaa0001");
    other.region = "ap-shanghai".into();
    let s = j.import(vec![other, spec("cdb-aaaa0003")]).await.unwrap();
    assert_eq!((s.added, s.already_known), (1, 1));
    assert_eq!(s.differing, vec!["cdb-aaaa0001".to_string()]);
    drop(j);

    let conn = schema::open_reader(&path).unwrap();
    let counts = read::counts(&conn).unwrap();
    assert_eq!(counts[&State::AlreadyEncrypted], 1);
    assert_eq!(counts[&State::Pending], 2);
    let head = match chain::verify(&conn).unwrap() {
        ChainReport::Intact { events, head } => {
            assert_eq!(events, 4);
            head
        }
        b => panic!("{b:?}"),
    };
    assert_eq!(chain::head(&conn).unwrap(), head);
    drop(conn);

    // Each kind of tampering, on a fresh copy.
    let tamper = |sql: &str| {
        let copy = dir.path().join(format!("t{}.db", sql.len()));
        std::fs::copy(&path, &copy).unwrap();
        let c = rusqlite::Connection::open(&copy).unwrap();
        c.execute_batch("DROP TRIGGER events_are_append_only_update; DROP TRIGGER events_are_append_only_delete;").unwrap();
        c.execute_batch(sql).unwrap();
        chain::verify(&c).unwrap()
    };
    match tamper("UPDATE events SET kind = 'VerifiedEncrypted' WHERE id = 3") {
        ChainReport::Broken {
            event_id, reason, ..
        } => {
            assert_eq!(event_id, 3);
            assert!(reason.contains("edited"), "{reason}");
        }
        r => panic!("edit not detected: {r:?}"),
    }
    match tamper("DELETE FROM events WHERE id = 2") {
        ChainReport::Broken { event_id, .. } => assert_eq!(event_id, 3),
        r => panic!("delete not detected: {r:?}"),
    }
    match tamper("UPDATE events SET id = 100 WHERE id = 2; UPDATE events SET id = 2 WHERE id = 3; UPDATE events SET id = 3 WHERE id = 100;") {
        ChainReport::Broken { event_id, .. } => assert_eq!(event_id, 2),
        r => panic!("reorder not detected: {r:?}"),
    }
}

#[tokio::test]
async fn one_writer_per_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    assert!(!JournalLock::is_held(&path), "no lock file yet");
    let lock = JournalLock::acquire(&path).unwrap();
    assert!(JournalLock::is_held(&path));
    let e = JournalLock::acquire(&path).unwrap_err();
    assert!(e.to_string().contains("another fleetcrypt process"), "{e}");
    assert!(
        e.to_string().contains(&std::process::id().to_string()),
        "{e}"
    );
    drop(lock);
    assert!(!JournalLock::is_held(&path), "released with its holder");
    let before = std::fs::read(format!("{}.lock", path.display())).unwrap();
    assert!(!JournalLock::is_held(&path));
    assert_eq!(
        std::fs::read(format!("{}.lock", path.display())).unwrap(),
        before,
        "probing writes nothing"
    );
    assert!(JournalLock::acquire(&path).is_ok());
}

#[tokio::test]
async fn rate_window_from_send_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    let ids: Vec<String> = (0..30).map(|i| format!("cdb-bbbb{i:04}")).collect();
    j.import(ids.iter().map(|i| spec(i)).collect())
        .await
        .unwrap();
    // 21 reads 50 ms apart: 20 fit in one window, 21 do not (0..1000 excludes 1000).
    for (n, id) in ids.iter().take(21).enumerate() {
        j.apply(change(id, Fact::Called, n as i64 * 50))
            .await
            .unwrap();
    }
    drop(j);
    let conn = schema::open_reader(&path).unwrap();
    let m = read::max_requests_in_1s_window(&conn).unwrap();
    assert_eq!(m["DescribeDBInstanceInfo"], 20);
}

/// A journal of four events; event 3 carries a call record with every optional field set.
async fn four_event_journal(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("j.db");
    let j = Journal::open(&path).unwrap();
    j.import(vec![spec("cdb-aaaa0001"), spec("cdb-aaaa0002")])
        .await
        .unwrap();
    let mut c = change(
        "cdb-aaaa0001",
        Fact::EncryptionRead {
            encrypted: true,
            settled: true,
        },
        5,
    );
    if let Some(call) = c.call.as_mut() {
        call.error_code = Some("E".into());
        call.error_message = Some("m".into());
    }
    j.apply(c).await.unwrap();
    j.import(vec![spec("cdb-aaaa0003")]).await.unwrap();
    drop(j);
    let conn = schema::open_reader(&path).unwrap();
    assert!(matches!(
        chain::verify(&conn).unwrap(),
        ChainReport::Intact { events: 4, .. }
    ));
    path
}

/// A writable copy with the append-only triggers dropped.
fn tamperable_copy(path: &std::path::Path, name: &str) -> rusqlite::Connection {
    let copy = path.with_file_name(format!("{name}.db"));
    std::fs::copy(path, &copy).unwrap();
    let c = rusqlite::Connection::open(&copy).unwrap();
    c.execute_batch(
        "DROP TRIGGER events_are_append_only_update; DROP TRIGGER events_are_append_only_delete;",
    )
    .unwrap();
    c
}

fn read_event(c: &rusqlite::Connection, id: i64) -> (chain::EventRow, String) {
    c.query_row(
        &format!(
            "SELECT {}, prev_hash FROM events WHERE id = ?1",
            chain::EVENT_COLUMNS
        ),
        [id],
        |r| Ok((chain::event_from_row(r)?, r.get::<_, String>(16)?)),
    )
    .unwrap()
}

/// Re-hashes event `id` with the chain's own function (so its per-row check holds)
/// and, if `relink`, stores that hash as the next event's prev_hash too.
fn rehash(c: &rusqlite::Connection, id: i64, relink: bool) {
    let (ev, prev) = read_event(c, id);
    let h = ev.hash(&prev);
    c.execute(
        "UPDATE events SET hash = ?1 WHERE id = ?2",
        rusqlite::params![h, id],
    )
    .unwrap();
    if relink {
        c.execute(
            "UPDATE events SET prev_hash = ?1 WHERE id = ?2",
            rusqlite::params![h, id + 1],
        )
        .unwrap();
    }
}

#[tokio::test]
async fn an_edit_of_any_hashed_field_is_named_at_its_event() {
    // Every field must be in the hashed content: leaving one out lets that edit pass.
    let dir = tempfile::tempdir().unwrap();
    let path = four_event_journal(dir.path()).await;
    // Checked columns (migration 0004) are edited to another allowed value.
    let checked = [
        ("kind", "GaveUp", "VerifiedEncrypted"),
        ("from_state", "failed", "encrypted"),
        ("to_state", "failed", "encrypted"),
    ];
    let text = [
        "instance_id",
        "action",
        "endpoint",
        "request_id",
        "error_code",
        "error_message",
        "detail",
    ];
    let ints = ["at_ms", "run_id", "sent_at_ms", "latency_ms", "attempt"];
    let edits = text
        .iter()
        .map(|f| format!("UPDATE events SET {f} = COALESCE({f}, '') || 'x' WHERE id = 3"))
        .chain(
            ints.iter()
                .map(|f| format!("UPDATE events SET {f} = COALESCE({f}, 0) + 1 WHERE id = 3")),
        )
        .chain(checked.iter().map(|(f, a, b)| {
            format!("UPDATE events SET {f} = CASE WHEN {f} IS '{a}' THEN '{b}' ELSE '{a}' END WHERE id = 3")
        }));
    for sql in edits {
        let c = tamperable_copy(&path, &format!("f{}", sql.len()));
        c.execute_batch(&sql).unwrap();
        match chain::verify(&c).unwrap() {
            ChainReport::Broken {
                event_id,
                reason,
                events_checked,
            } => {
                assert_eq!(event_id, 3, "{sql}");
                assert_eq!(events_checked, 2, "{sql}");
                assert!(reason.contains("edited"), "{sql}: {reason}");
            }
            r => panic!("{sql}: not detected: {r:?}"),
        }
    }
    // The id itself: a moved last row is named by its new id.
    let c = tamperable_copy(&path, "id");
    c.execute_batch("UPDATE events SET id = 7 WHERE id = 4")
        .unwrap();
    match chain::verify(&c).unwrap() {
        ChainReport::Broken { event_id, .. } => assert_eq!(event_id, 7),
        r => panic!("id edit not detected: {r:?}"),
    }
}

#[tokio::test]
async fn a_rehashed_edit_still_breaks_the_chain_at_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = four_event_journal(dir.path()).await;

    // Edit event 2, re-hash it: its own check holds, the next event's link does not.
    let c = tamperable_copy(&path, "r1");
    c.execute_batch("UPDATE events SET kind = 'VerifiedEncrypted' WHERE id = 2")
        .unwrap();
    rehash(&c, 2, false);
    match chain::verify(&c).unwrap() {
        ChainReport::Broken {
            event_id, reason, ..
        } => {
            assert_eq!(event_id, 3);
            assert!(reason.contains("prev_hash"), "{reason}");
        }
        r => panic!("re-hashed edit not detected: {r:?}"),
    }

    // Also rewrite the next event's stored prev_hash: only prev_hash being part of
    // event 3's hashed content can catch this (kills "prev_hash left out").
    let c = tamperable_copy(&path, "r2");
    c.execute_batch("UPDATE events SET kind = 'VerifiedEncrypted' WHERE id = 2")
        .unwrap();
    rehash(&c, 2, true);
    match chain::verify(&c).unwrap() {
        ChainReport::Broken {
            event_id, reason, ..
        } => {
            assert_eq!(event_id, 3);
            assert!(reason.contains("edited"), "{reason}");
        }
        r => panic!("re-hashed and re-linked edit not detected: {r:?}"),
    }

    // The same with `detail` alone (kills "detail left out of the hashed content").
    let c = tamperable_copy(&path, "r3");
    c.execute_batch("UPDATE events SET detail = COALESCE(detail, '') || 'forged' WHERE id = 3")
        .unwrap();
    rehash(&c, 3, true);
    match chain::verify(&c).unwrap() {
        ChainReport::Broken { event_id, .. } => assert_eq!(event_id, 4),
        r => panic!("re-hashed detail edit not detected: {r:?}"),
    }
}

/// An operator's journal written by an earlier fleetcrypt (schema 3, before the
/// CHECK constraints): readers read it as it is, the writer migrates it, and
/// every row, the chain and every state survive.
#[tokio::test]
async fn a_journal_written_by_schema_3_is_read_migrated_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite");
    std::fs::copy("tests/data/journals/v3-kill-resume-retry.sqlite", &path).unwrap();
    let version = |c: &rusqlite::Connection| -> i64 {
        c.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    };

    // Before any writer opens it: status, reports and verify read schema 3.
    let before = {
        let c = schema::open_reader(&path).unwrap();
        assert_eq!(version(&c), 3);
        let counts = read::counts(&c).unwrap();
        let report = chain::verify(&c).unwrap();
        (counts, report)
    };
    let head = "2b1eace2fd4a90b8acda75b3f759c1bd9be83e39cda2f0f70accecb62a37fdf0";
    assert_eq!(
        before.1,
        ChainReport::Intact {
            events: 651,
            head: head.into()
        }
    );
    assert_eq!(before.0.values().sum::<u64>(), 60);
    let mut json = Vec::new();
    fleetcrypt::report::write(&path, fleetcrypt::report::Format::Json, &mut json).unwrap();

    // The writer migrates it to the current schema.
    let journal = Journal::open(&path).unwrap();
    drop(journal);
    let c = schema::open_reader(&path).unwrap();
    assert_eq!(version(&c) as usize, schema::MIGRATIONS.len());
    assert_eq!(read::counts(&c).unwrap(), before.0);
    assert_eq!(chain::verify(&c).unwrap(), before.1);
    assert_eq!(chain::head(&c).unwrap(), head);
    let mut rows = 0;
    read::for_each_instance(&c, |row| {
        rows += 1;
        assert!(row.state.is_terminal(), "{row:?}");
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(rows, 60);
    let mut again = Vec::new();
    fleetcrypt::report::write(&path, fleetcrypt::report::Format::Json, &mut again).unwrap();
    let strip = |v: &[u8]| {
        let mut v: serde_json::Value = serde_json::from_slice(v).unwrap();
        v.as_object_mut().unwrap().remove("generated_at");
        v
    };
    assert_eq!(strip(&json), strip(&again), "the report reads the same");
}
