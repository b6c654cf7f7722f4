//! The bad-answer corpus (issue: "(3) A bad-answer corpus in the emulator"):
//! truncated JSON, a missing `Response`, an `Error` without `Code`, a body over
//! the 16 MiB cap, a non-JSON 200, a body that never completes, and a wrong
//! type for every field the runner reads. One test per (kind, action), each
//! running the runner in-process against the emulator:
//!
//! - on an Open (always a bad answer; the emulator applies the encryption
//!   first): the answer is ambiguous and verified, never a refusal, and
//!   nothing is sent twice;
//! - on a read (every answer bad for 1.5 s, then 30%): a failed read, retried,
//!   never a `NO` (the bad answers say `Encryption: "NO"`, `IsSupportEncryption:
//!   true`, `KeyState: "Enabled"` where they can), so no Open goes to an
//!   encrypted, unsupported or disabled-key instance and none is re-sent blind.
//!
//! Every instance ends as the emulator's ground truth says.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fleetcrypt::api::cdb::*;
use fleetcrypt::api::kms::DESCRIBE_KEY;
use fleetcrypt::api::{Client, ClientOptions, Credentials, EndpointPolicy};
use fleetcrypt::emulator::{BadAnswer, BadAnswerKind, Instance, World};
use fleetcrypt::input::InstanceSpec;
use fleetcrypt::journal::{read, schema, Journal};
use fleetcrypt::model::State;
use fleetcrypt::runner::{self, Counters, RunConfig};
use tokio_util::sync::CancellationToken;

const REGION: &str = "ap-guangzhou";

fn run_config(url: &str) -> RunConfig {
    RunConfig {
        rate: 20,
        timeout: Duration::from_millis(1000),
        settle: Duration::from_millis(2500),
        ambiguous_first_read: Duration::from_millis(200),
        verify_deadline: Duration::from_secs(5),
        endpoints: EndpointPolicy::Custom(url.to_string()),
        retry_backoff: runner::Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
        poll_backoff: runner::Backoff::new(Duration::from_millis(100), Duration::from_millis(500)),
        drain_limit: Duration::from_secs(5),
        check_kms: true,
        // The emulator here shows YES at once.
        verify_first_read: Duration::from_millis(100),
        // Faults here are heavy on purpose; the error budget has its own tests.
        rollout: no_error_budget(),
        ..RunConfig::default()
    }
}

/// What each instance of the test fleet must end as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Unencrypted, supported: ends encrypted.
    Encrypt,
    /// Already encrypted: `already_encrypted`, no Open.
    Already,
    /// Does not support encryption: failed, no Open.
    Unsupported,
    /// Its custom key is Disabled: failed, no Open.
    DisabledKey,
}

/// Three to encrypt (one with an enabled custom key), two already encrypted,
/// one unsupported, one with a disabled key.
fn fleet() -> (World, Vec<InstanceSpec>, Vec<(String, Expect)>) {
    let mut world = World::default();
    world.add_key("key-enabled-0001", REGION, "Enabled");
    world.add_key("key-disabled-0001", REGION, "Disabled");
    let rows: [(&str, Expect, Option<&str>); 7] = [
        ("cdb-enc00001", Expect::Encrypt, None),
        ("cdb-enc00002", Expect::Encrypt, None),
        ("cdb-enc00003", Expect::Encrypt, Some("key-enabled-0001")),
        ("cdb-alrdy001", Expect::Already, None),
        ("cdb-alrdy002", Expect::Already, None),
        ("cdb-unsup001", Expect::Unsupported, None),
        (
            "cdb-disky001",
            Expect::DisabledKey,
            Some("key-disabled-0001"),
        ),
    ];
    let mut specs = Vec::new();
    let mut expect = Vec::new();
    for (n, (id, e, key)) in rows.into_iter().enumerate() {
        let mut inst = Instance::new(id, REGION);
        match e {
            Expect::Already => inst = inst.pre_encrypted(),
            Expect::Unsupported => inst.supports_encryption = false,
            _ => {}
        }
        world.add_instance(inst);
        specs.push(InstanceSpec {
            id: id.parse().unwrap(),
            region: REGION.to_string(),
            key_id: key.map(str::to_string),
            key_region: key.map(|_| REGION.to_string()),
            account: None,
            labels: vec![("name".into(), id.to_string())],
            line: n as u64 + 2,
        });
        expect.push((id.to_string(), e));
    }
    (world, specs, expect)
}

/// Runs the fleet with `kind` answered on `action`; panics (naming the case) on
/// any wrong outcome.
async fn case(kind: BadAnswerKind, action: &'static str) {
    let name = format!("{}@{action}", kind.name());
    let (world, specs, expect) = fleet();
    let write = action == OPEN_DB_INSTANCE_ENCRYPTION;
    let mut cfg = fast_config(20);
    cfg.bad_answers = vec![BadAnswer::new(kind, Some(action), 1.0)];
    if !write {
        // Opens that fail without applying, so verification after an ambiguous
        // answer meets the bad reads too.
        cfg.faults.internal = 0.5;
    }
    let emu = EmulatorThread::start(cfg, world);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path).unwrap();
    journal.import(specs).await.unwrap();
    let config = run_config(&emu.url);
    let client = Client::new(
        Credentials::new(SECRET_ID, SECRET_KEY),
        &ClientOptions {
            timeout: config.timeout,
            ..ClientOptions::default()
        },
    )
    .unwrap();

    let run = runner::run(
        &journal,
        &client,
        &config,
        None,
        CancellationToken::new(),
        Arc::new(Counters::default()),
    );
    let stop = if write {
        tokio::time::timeout(Duration::from_secs(120), run).await
    } else {
        // Every read of `action` bad for 1.5 s, then 30% of them until the end.
        let thin = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            emu.emulator()
                .set_bad_answers(vec![BadAnswer::new(kind, Some(action), 0.3)]);
            std::future::pending::<()>().await
        };
        tokio::time::timeout(Duration::from_secs(120), async {
            tokio::select! {
                r = run => r,
                _ = thin => unreachable!(),
            }
        })
        .await
    };
    let stop = stop
        .unwrap_or_else(|_| panic!("{name}: the run did not finish in 120 s"))
        .unwrap_or_else(|e| panic!("{name}: the run failed: {e}"));
    assert_eq!(stop, None, "{name}: the run stopped");
    drop(journal);

    let truth = emu.truth();
    assert!(
        truth.action(action).bad_answers > 0,
        "{name}: no bad answer was given ({:?})",
        truth.action(action)
    );
    let conn = schema::open_reader(&path).unwrap();
    let mut rows = std::collections::BTreeMap::new();
    read::for_each_instance(&conn, |row| {
        rows.insert(row.instance_id.to_string(), row);
        Ok(())
    })
    .unwrap()
    .unwrap();
    for (id, e) in &expect {
        let row = &rows[id];
        let t = &truth.instances[id.as_str()];
        let what = format!(
            "{name}: {id} ({e:?}) ended {} ({:?}: {:?}); truth encrypted={} opens={}",
            row.state, row.last_error_code, row.last_error_message, t.encrypted, t.open_calls
        );
        match e {
            Expect::Encrypt => {
                assert_eq!(row.state, State::Encrypted, "{what}");
                assert!(t.encrypted, "{what}");
                assert!(t.open_calls >= 1, "{what}");
                if write {
                    // Applied on the first Open; its bad answer was verified, not re-sent.
                    assert_eq!(t.open_calls, 1, "{what}");
                }
            }
            Expect::Already => {
                assert_eq!(row.state, State::AlreadyEncrypted, "{what}");
                assert_eq!(t.open_calls, 0, "{what}");
            }
            Expect::Unsupported | Expect::DisabledKey => {
                assert_eq!(row.state, State::Failed, "{what}");
                assert!(!t.encrypted, "{what}");
                assert_eq!(t.open_calls, 0, "{what}");
            }
        }
    }
    assert_eq!(
        (
            truth.total_blind_open_calls(),
            truth.total_overlapping_open_calls(),
            truth.total_open_calls_when_encrypted()
        ),
        (0, 0, 0),
        "{name}: blind Opens, overlapping Opens, Opens on encrypted instances"
    );

    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let sent = count(
        "SELECT count(*) FROM events WHERE kind = 'AttemptAnswered' AND action = 'OpenDBInstanceEncryption'",
    );
    let opens: u32 = truth.instances.values().map(|t| t.open_calls).sum();
    assert_eq!(sent, opens as i64, "{name}: Opens journaled vs received");
    if write {
        // Every Open answer was bad: each one ambiguous, then verified YES.
        let ambiguous = count(
            "SELECT count(*) FROM events WHERE kind = 'AttemptAnswered' AND detail = 'ambiguous'",
        );
        assert_eq!(
            ambiguous, opens as i64,
            "{name}: a bad Open answer was not treated as ambiguous"
        );
        assert_eq!(opens, 3, "{name}");
    } else {
        // The bad reads were journaled as failed reads, never as a NO.
        let failed_reads = count(&format!(
            "SELECT count(*) FROM events WHERE action = '{action}' AND error_code IS NOT NULL"
        ));
        if kind != BadAnswerKind::RequestIdNumber || action != DESCRIBE_DB_INSTANCE_INFO {
            assert!(
                failed_reads > 0,
                "{name}: no failed {action} read in the journal"
            );
        }
    }
}

macro_rules! cases {
    ($($test:ident: $kind:ident @ $action:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            case(BadAnswerKind::$kind, $action).await;
        }
    )*};
}

const OPEN: &str = OPEN_DB_INSTANCE_ENCRYPTION;
const INFO: &str = DESCRIBE_DB_INSTANCE_INFO;
const FEATURES: &str = DESCRIBE_DB_FEATURES;

cases! {
    open_truncated_json: TruncatedJson @ OPEN;
    open_missing_response: MissingResponse @ OPEN;
    open_error_without_code: ErrorWithoutCode @ OPEN;
    open_oversize: Oversize @ OPEN;
    open_non_json_200: NonJson200 @ OPEN;
    open_slow_drip: SlowDrip @ OPEN;
    open_request_id_number: RequestIdNumber @ OPEN;

    info_truncated_json: TruncatedJson @ INFO;
    info_missing_response: MissingResponse @ INFO;
    info_error_without_code: ErrorWithoutCode @ INFO;
    info_oversize: Oversize @ INFO;
    info_non_json_200: NonJson200 @ INFO;
    info_slow_drip: SlowDrip @ INFO;
    info_encryption_number: EncryptionNumber @ INFO;
    info_encryption_null: EncryptionNull @ INFO;
    info_encryption_bool: EncryptionBool @ INFO;
    info_encryption_object: EncryptionObject @ INFO;
    info_request_id_number: RequestIdNumber @ INFO;

    features_truncated_json: TruncatedJson @ FEATURES;
    features_missing_response: MissingResponse @ FEATURES;
    features_error_without_code: ErrorWithoutCode @ FEATURES;
    features_oversize: Oversize @ FEATURES;
    features_non_json_200: NonJson200 @ FEATURES;
    features_slow_drip: SlowDrip @ FEATURES;
    features_support_encryption_string: SupportEncryptionString @ FEATURES;
    features_need_upgrade_string: NeedUpgradeString @ FEATURES;
    features_request_id_number: RequestIdNumber @ FEATURES;

    key_truncated_json: TruncatedJson @ DESCRIBE_KEY;
    key_missing_response: MissingResponse @ DESCRIBE_KEY;
    key_state_number: KeyStateNumber @ DESCRIBE_KEY;
    key_request_id_number: RequestIdNumber @ DESCRIBE_KEY;
}
