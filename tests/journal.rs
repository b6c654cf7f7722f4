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
        account: None,
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

/// Wall-clock milliseconds, independent of the crate's own clock helper.
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every event of the journal at `path`, in order.
fn all_events(path: &std::path::Path) -> Vec<chain::EventRow> {
    let c = schema::open_reader(path).unwrap();
    let mut stmt = c
        .prepare(&format!(
            "SELECT {} FROM events ORDER BY id",
            chain::EVENT_COLUMNS
        ))
        .unwrap();
    let rows = stmt
        .query_map([], chain::event_from_row)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

fn keyed(id: &str, key_id: Option<&str>, key_region: Option<&str>) -> InstanceSpec {
    InstanceSpec {
        key_id: key_id.map(str::to_string),
        key_region: key_region.map(str::to_string),
        account: None,
        ..spec(id)
    }
}

/// Both import paths (the async one and the blocking one the CLI uses) store each
/// new instance as pending, in import order, with its labels as a JSON object,
/// and append one `Imported` event per new instance saying where it came from.
#[test]
fn import_stores_instances_in_order_with_labels_and_an_imported_event_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    let before = wall_ms();
    let mut second = spec("cdb-imp00002");
    second.line = 3;
    let s = j
        .import_blocking(vec![spec("cdb-imp00001"), second])
        .unwrap();
    assert_eq!((s.added, s.already_known), (2, 0));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut third = spec("cdb-imp00003");
    third.line = 4;
    let s = rt.block_on(j.import(vec![third])).unwrap();
    assert_eq!((s.added, s.already_known), (1, 0));
    let after = wall_ms();
    drop(j);

    let c = schema::open_reader(&path).unwrap();
    let rows: Vec<(String, i64, String, String)> = c
        .prepare("SELECT instance_id, seq, state, labels FROM instances ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let labels = r#"{"team":"=cmd()"}"#.to_string();
    assert_eq!(
        rows,
        vec![
            ("cdb-imp00001".into(), 1, "pending".into(), labels.clone()),
            ("cdb-imp00002".into(), 2, "pending".into(), labels.clone()),
            ("cdb-imp00003".into(), 3, "pending".into(), labels),
        ]
    );
    let events = all_events(&path);
    assert_eq!(events.len(), 3);
    for (n, ev) in events.iter().enumerate() {
        assert_eq!(ev.id, n as i64 + 1);
        assert_eq!(ev.kind, "Imported");
        assert_eq!(
            ev.instance_id.as_deref(),
            Some(format!("cdb-imp0000{}", n + 1).as_str())
        );
        assert_eq!(ev.from_state, None);
        assert_eq!(ev.to_state.as_deref(), Some("pending"));
        assert_eq!(
            ev.detail.as_deref(),
            Some(format!("input line {}", n + 2).as_str())
        );
        assert!(
            (before..=after).contains(&ev.at_ms),
            "{} not within {before}..={after}",
            ev.at_ms
        );
    }
}

/// A re-import keeps the journal's rows and names exactly the known instances
/// whose input differs: region, key id or key region, each on its own.
#[tokio::test]
async fn a_reimport_names_exactly_the_instances_whose_region_or_key_differs() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.db")).unwrap();
    j.import(vec![
        keyed("cdb-same0001", Some("k1"), Some("ap-guangzhou")),
        keyed("cdb-keyid001", Some("k1"), Some("ap-guangzhou")),
        keyed("cdb-keyrg001", Some("k1"), Some("ap-guangzhou")),
        spec("cdb-region01"),
    ])
    .await
    .unwrap();
    let mut region = spec("cdb-region01");
    region.region = "ap-shanghai".into();
    let s = j
        .import(vec![
            keyed("cdb-same0001", Some("k1"), Some("ap-guangzhou")),
            keyed("cdb-keyid001", Some("k2"), Some("ap-guangzhou")),
            keyed("cdb-keyrg001", Some("k1"), Some("ap-shanghai")),
            region,
        ])
        .await
        .unwrap();
    assert_eq!((s.added, s.already_known), (0, 4));
    assert_eq!(
        s.differing,
        vec![
            "cdb-keyid001".to_string(),
            "cdb-keyrg001".to_string(),
            "cdb-region01".to_string()
        ]
    );
}

/// A run is a row in `runs` with a `RunStarted` event (its command as detail)
/// and, at the end, its exit code with a `RunEnded` event; both the async calls
/// of `run` and the blocking ones of `retry-failed` do this and return the row's id.
#[test]
fn runs_are_recorded_with_their_start_and_end_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = wall_ms();
    let first = rt
        .block_on(j.start_run(
            "run",
            Some(20),
            Some(std::time::Duration::from_secs(15)),
            Some(std::time::Duration::from_secs(60)),
        ))
        .unwrap();
    rt.block_on(j.end_run(first, 3)).unwrap();
    let second = j.start_run_blocking("retry-failed").unwrap();
    j.end_run_blocking(second, 0).unwrap();
    let after = wall_ms();
    drop(j);

    let c = schema::open_reader(&path).unwrap();
    let runs = read::runs(&c).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0].id, runs[1].id),
        (first, second),
        "start_run returns the id of the row it wrote"
    );
    assert_ne!(first, second);
    assert_eq!(
        (
            runs[0].command.as_str(),
            runs[0].rate_limit,
            runs[0].exit_code
        ),
        ("run", Some(20), Some(3))
    );
    assert_eq!(
        (runs[1].command.as_str(), runs[1].exit_code),
        ("retry-failed", Some(0))
    );
    let (timeout, settle): (Option<i64>, Option<i64>) = c
        .query_row(
            "SELECT timeout_ms, settle_ms FROM runs WHERE id = ?1",
            [first],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((timeout, settle), (Some(15_000), Some(60_000)));
    let events = all_events(&path);
    let summary: Vec<(String, Option<i64>, Option<String>)> = events
        .iter()
        .map(|e| (e.kind.clone(), e.run_id, e.detail.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("RunStarted".into(), Some(first), Some("run".into())),
            ("RunEnded".into(), Some(first), Some("exit code 3".into())),
            (
                "RunStarted".into(),
                Some(second),
                Some("retry-failed".into())
            ),
            ("RunEnded".into(), Some(second), Some("exit code 0".into())),
        ]
    );
    for (ev, run) in events.iter().zip([&runs[0], &runs[0], &runs[1], &runs[1]]) {
        let expected = if ev.kind == "RunStarted" {
            run.started_at_ms
        } else {
            run.ended_at_ms.unwrap()
        };
        assert_eq!(ev.at_ms, expected, "{ev:?}");
        assert!((before..=after).contains(&ev.at_ms), "{ev:?}");
    }
}

/// `retry-failed [--code C]` puts back to pending exactly the failed instances
/// whose last error is C or C.*, with a fresh attempt budget and no clearance,
/// and journals one `ResetForRetry` event for each, naming the old code.
#[test]
fn retry_failed_resets_matching_failed_instances_with_an_event_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        j.import(vec![
            spec("cdb-kms00001"),
            spec("cdb-unsup001"),
            spec("cdb-pend0001"),
            spec("cdb-kmsx0001"),
        ])
        .await
        .unwrap();
        // cdb-kms00001: one attempt, then failed with InternalError.KmsError.
        for (fact, t) in [
            (
                Fact::EncryptionRead {
                    encrypted: false,
                    settled: true,
                },
                1,
            ),
            (written(), 2),
            (
                Fact::AttemptAnswered {
                    disposition: Disposition::Ambiguous,
                    settles_at_ms: 100,
                    next_attempt_at_ms: None,
                    kms_error: true,
                },
                3,
            ),
            (
                Fact::GaveUp {
                    code: "InternalError.KmsError".into(),
                    message: "m".into(),
                },
                4,
            ),
        ] {
            j.apply(change("cdb-kms00001", fact, t)).await.unwrap();
        }
        j.apply(change(
            "cdb-unsup001",
            Fact::PreflightFailed {
                code: "UnsupportedEncryption".into(),
                message: "m".into(),
            },
            5,
        ))
        .await
        .unwrap();
        // Shares the prefix but not the dotted code: not matched by InternalError.KmsError.
        j.apply(change(
            "cdb-kmsx0001",
            Fact::PreflightFailed {
                code: "InternalError.KmsErrorX".into(),
                message: "m".into(),
            },
            6,
        ))
        .await
        .unwrap();
    });
    let run = j.start_run_blocking("retry-failed").unwrap();
    let before = wall_ms();
    assert_eq!(
        j.reset_failed_blocking(Some("InternalError.KmsError".into()), Some(run))
            .unwrap(),
        1
    );
    let after = wall_ms();
    drop(j);

    let c = schema::open_reader(&path).unwrap();
    let row = |id: &str| -> (String, i64, i64, i64, i64, Option<String>) {
        c.query_row(
            "SELECT state, attempts, budget_base, kms_errors, cleared_to_send, last_error_code FROM instances WHERE instance_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap()
    };
    assert_eq!(row("cdb-kms00001"), ("pending".into(), 1, 1, 0, 0, None));
    assert_eq!(row("cdb-unsup001").0, "failed");
    assert_eq!(row("cdb-kmsx0001").0, "failed");
    assert_eq!(row("cdb-pend0001").0, "pending");
    let resets: Vec<chain::EventRow> = all_events(&path)
        .into_iter()
        .filter(|e| e.kind == "ResetForRetry")
        .collect();
    assert_eq!(resets.len(), 1, "{resets:?}");
    let ev = &resets[0];
    assert_eq!(
        (
            ev.run_id,
            ev.instance_id.as_deref(),
            ev.from_state.as_deref(),
            ev.to_state.as_deref(),
            ev.attempt,
            ev.error_code.as_deref()
        ),
        (
            Some(run),
            Some("cdb-kms00001"),
            Some("failed"),
            Some("pending"),
            Some(1),
            Some("InternalError.KmsError")
        )
    );
    assert!((before..=after).contains(&ev.at_ms), "{ev:?}");
    drop(c);

    // Without a code: every failed instance.
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.reset_failed_blocking(None, None).unwrap(), 2);
    drop(j);
    let c = schema::open_reader(&path).unwrap();
    assert_eq!(read::counts(&c).unwrap()[&State::Pending], 4);
}

/// A journal opened again continues its hash chain where it left off: ids stay
/// contiguous and the chain verifies across the reopen.
#[tokio::test]
async fn reopening_a_journal_continues_its_hash_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    j.import(vec![spec("cdb-reop0001"), spec("cdb-reop0002")])
        .await
        .unwrap();
    drop(j);
    let j = Journal::open(&path).unwrap();
    j.import(vec![spec("cdb-reop0003")]).await.unwrap();
    j.apply(change(
        "cdb-reop0001",
        Fact::EncryptionRead {
            encrypted: true,
            settled: true,
        },
        7,
    ))
    .await
    .unwrap();
    drop(j);
    let ids: Vec<i64> = all_events(&path).iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
    let c = schema::open_reader(&path).unwrap();
    assert!(matches!(
        chain::verify(&c).unwrap(),
        ChainReport::Intact { events: 4, .. }
    ));
}

/// Dropping the last handle waits for the writer thread to finish and close its
/// connection: SQLite then checkpoints the WAL into the database and removes it,
/// so the file is complete on its own the moment `drop` returns.
#[tokio::test]
async fn dropping_the_last_handle_closes_the_journal_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    // Enough to make the closing checkpoint take a while.
    let ids: Vec<String> = (0..3000).map(|i| format!("cdb-drop{i:04}")).collect();
    j.import(ids.iter().map(|i| spec(i)).collect())
        .await
        .unwrap();
    let wal = dir.path().join("j.db-wal");
    assert!(wal.exists(), "WAL mode: writes go to the -wal file first");
    let other = j.clone();
    drop(j);
    assert!(wal.exists(), "a clone still holds the journal open");
    drop(other);
    assert!(
        !wal.exists(),
        "the journal was still open after its last handle was dropped"
    );
}

/// A fact is all or nothing: when its event cannot be appended, the instance
/// row keeps its state, and the chain goes on from the last event written.
#[tokio::test]
async fn a_fact_whose_event_cannot_be_written_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    j.import(vec![spec("cdb-atom0001")]).await.unwrap();
    let side = rusqlite::Connection::open(&path).unwrap();
    side.execute_batch(
        "CREATE TRIGGER refuse_found BEFORE INSERT ON events WHEN NEW.kind = 'FoundAlreadyEncrypted' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let yes = || {
        change(
            "cdb-atom0001",
            Fact::EncryptionRead {
                encrypted: true,
                settled: true,
            },
            9,
        )
    };
    let e = j.apply(yes()).await.unwrap_err();
    assert!(e.to_string().contains("refused by the test"), "{e}");
    let (state, verified): (String, Option<i64>) = side
        .query_row("SELECT state, verified_at_ms FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (state.as_str(), verified),
        ("pending", None),
        "the instance moved although its event was not written"
    );
    side.execute_batch("DROP TRIGGER refuse_found").unwrap();
    drop(side);
    let a = j.apply(yes()).await.unwrap();
    assert_eq!(a.state, State::AlreadyEncrypted);
    drop(j);
    let c = schema::open_reader(&path).unwrap();
    assert!(matches!(
        chain::verify(&c).unwrap(),
        ChainReport::Intact { events: 2, .. }
    ));
}

/// Each applied fact appends one event that names the run, the instance, the
/// move (from, to), the attempt, and the call it came from; a YES before any
/// attempt is `FoundAlreadyEncrypted`, after one `VerifiedEncrypted`. The
/// instance row a runner loads back says whether it is cleared to send.
#[tokio::test]
async fn each_fact_is_an_event_naming_its_run_move_attempt_and_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = Journal::open(&path).unwrap();
    let run = j.start_run("run", None, None, None).await.unwrap();
    j.import(vec![spec("cdb-fact0001"), spec("cdb-fact0002")])
        .await
        .unwrap();
    let with_run = |id: &str, fact: Fact, t: i64| Change {
        run_id: Some(run),
        ..change(id, fact, t)
    };
    j.apply(with_run(
        "cdb-fact0001",
        Fact::EncryptionRead {
            encrypted: true,
            settled: true,
        },
        100,
    ))
    .await
    .unwrap();
    j.apply(with_run(
        "cdb-fact0002",
        Fact::EncryptionRead {
            encrypted: false,
            settled: false,
        },
        200,
    ))
    .await
    .unwrap();
    {
        let c = schema::open_reader(&path).unwrap();
        let rows = fleetcrypt::journal::load_active(&c, 0, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].instance_id, "cdb-fact0002");
        assert!(rows[0].cleared_to_send, "a NO before any attempt clears");
    }
    j.apply(with_run("cdb-fact0002", written(), 300))
        .await
        .unwrap();
    {
        let c = schema::open_reader(&path).unwrap();
        let rows = fleetcrypt::journal::load_active(&c, 0, 10).unwrap();
        assert!(!rows[0].cleared_to_send, "an attempt uses the clearance up");
        assert_eq!(rows[0].state, State::Requesting);
    }
    j.apply(with_run(
        "cdb-fact0002",
        Fact::AttemptAnswered {
            disposition: Disposition::Accepted,
            settles_at_ms: 1300,
            next_attempt_at_ms: None,
            kms_error: false,
        },
        400,
    ))
    .await
    .unwrap();
    j.apply(with_run(
        "cdb-fact0002",
        Fact::EncryptionRead {
            encrypted: true,
            settled: false,
        },
        500,
    ))
    .await
    .unwrap();
    drop(j);

    type Line<'a> = (
        i64,
        Option<i64>,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<i64>,
    );
    let events: Vec<chain::EventRow> = all_events(&path)
        .into_iter()
        .filter(|e| e.kind != "Imported" && e.kind != "RunStarted")
        .collect();
    let lines: Vec<Line> = events
        .iter()
        .map(|e| {
            (
                e.at_ms,
                e.run_id,
                e.instance_id.as_deref(),
                e.kind.as_str(),
                e.from_state.as_deref(),
                e.to_state.as_deref(),
                e.attempt,
            )
        })
        .collect();
    let (r, a, b) = (Some(run), Some("cdb-fact0001"), Some("cdb-fact0002"));
    assert_eq!(
        lines,
        vec![
            (
                100,
                r,
                a,
                "FoundAlreadyEncrypted",
                Some("pending"),
                Some("already_encrypted"),
                Some(0)
            ),
            (
                200,
                r,
                b,
                "ReadNotEncrypted",
                Some("pending"),
                Some("pending"),
                Some(0)
            ),
            (
                300,
                r,
                b,
                "AttemptWritten",
                Some("pending"),
                Some("requesting"),
                Some(1)
            ),
            (
                400,
                r,
                b,
                "AttemptAnswered",
                Some("requesting"),
                Some("verifying"),
                Some(1)
            ),
            (
                500,
                r,
                b,
                "VerifiedEncrypted",
                Some("verifying"),
                Some("encrypted"),
                Some(1)
            ),
        ]
    );
    // The call record of a read.
    let read = &events[1];
    assert_eq!(
        (
            read.action.as_deref(),
            read.endpoint.as_deref(),
            read.sent_at_ms,
            read.latency_ms,
            read.request_id.as_deref()
        ),
        (
            Some("DescribeDBInstanceInfo"),
            Some("e"),
            Some(200),
            Some(3),
            Some("rid")
        )
    );
    assert_eq!(events[1].detail.as_deref(), Some("settled"));
    assert_eq!(
        events[2].action.as_deref(),
        Some("OpenDBInstanceEncryption")
    );
    assert_eq!(events[2].detail.as_deref(), Some("{}"));
    assert_eq!(events[3].detail.as_deref(), Some("accepted"));
}

/// After a crash, an attempt that may have left (`requesting`) is recovered
/// into `verifying` with a fresh settle time and an ambiguous outcome; nothing
/// else may be recovered, and a recovered attempt is not cleared to re-send.
#[tokio::test]
async fn a_recovered_attempt_is_verified_as_ambiguous_and_never_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&dir.path().join("j.db")).unwrap();
    j.import(vec![spec("cdb-recv0001"), spec("cdb-recv0002")])
        .await
        .unwrap();
    // Not in flight: nothing to recover.
    let e = j
        .apply(change(
            "cdb-recv0002",
            Fact::AttemptRecovered { settles_at_ms: 99 },
            5,
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, JournalError::Illegal { .. }), "{e}");
    let no = Fact::EncryptionRead {
        encrypted: false,
        settled: true,
    };
    j.apply(change("cdb-recv0001", no, 10)).await.unwrap();
    j.apply(change("cdb-recv0001", written(), 11))
        .await
        .unwrap();
    // The crash: no answer was journaled. The restart recovers it.
    let row = j
        .apply(change(
            "cdb-recv0001",
            Fact::AttemptRecovered {
                settles_at_ms: 70_000,
            },
            20,
        ))
        .await
        .unwrap();
    assert_eq!(row.state, State::Verifying);
    assert_eq!(row.settles_at_ms, Some(70_000));
    assert_eq!(row.last_outcome, Some(Disposition::Ambiguous));
    assert_eq!(row.attempts, 1);
    assert!(!row.cleared_to_send);
    let e = j
        .apply(change("cdb-recv0001", written(), 21))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            JournalError::Illegal { .. } | JournalError::NotCleared { .. }
        ),
        "{e}"
    );
    drop(j);
    let events = all_events(&dir.path().join("j.db"));
    let last = events.last().unwrap();
    assert_eq!(last.kind, "AttemptRecovered");
    assert_eq!(
        (last.from_state.as_deref(), last.to_state.as_deref()),
        (Some("requesting"), Some("verifying"))
    );
    assert_eq!(last.detail.as_deref(), Some("verify after 70000"));
}
