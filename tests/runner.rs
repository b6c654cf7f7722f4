//! The runner, in-process, against the emulator with faults: every instance
//! ends terminal and agrees with the emulator's ground truth; no sliding second
//! holds more than the rate; nothing is re-sent blind.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use fleetcrypt::api::cdb::*;
use fleetcrypt::api::{Client, ClientOptions, Credentials, EndpointPolicy};
use fleetcrypt::emulator::{Faults, Generate, World};
use fleetcrypt::journal::{read, schema, Journal};
use fleetcrypt::model::{Action, State};
use fleetcrypt::runner::{self, Counters, RunConfig};
use tokio_util::sync::CancellationToken;

fn run_config(url: &str, rate: u32) -> RunConfig {
    RunConfig {
        rate,
        timeout: Duration::from_millis(1000),
        settle: Duration::from_millis(2500),
        ambiguous_first_read: Duration::from_millis(200),
        verify_deadline: Duration::from_secs(5),
        endpoints: EndpointPolicy::Custom(url.to_string()),
        retry_backoff: runner::Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
        poll_backoff: runner::Backoff::new(Duration::from_millis(100), Duration::from_millis(500)),
        drain_limit: Duration::from_secs(5),
        // The emulator here shows YES at once (or after a set propagation).
        verify_first_read: Duration::from_millis(100),
        // Faults here are heavy on purpose; the error budget has its own tests.
        rollout: no_error_budget(),
        ..RunConfig::default()
    }
}

/// An emulator with `cfg` serving `world`, and a fresh journal with `specs`
/// imported: (emulator, the journal's directory, its path, the journal).
async fn fleet_journal(
    cfg: fleetcrypt::emulator::EmulatorConfig,
    world: World,
    specs: Vec<fleetcrypt::model::InstanceSpec>,
) -> (
    EmulatorThread,
    tempfile::TempDir,
    std::path::PathBuf,
    Journal,
) {
    let emu = EmulatorThread::start(cfg, world);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path).unwrap();
    journal.import(specs).await.unwrap();
    (emu, dir, path, journal)
}

/// Runs every unfinished instance of `journal` with `config`; answers why the
/// run stopped early, if it did.
async fn run_to_end(journal: &Journal, config: &RunConfig) -> Option<runner::StopReason> {
    run_result(journal, config).await.unwrap()
}

/// `runner::run` with the test client, no run id, no stop and fresh counters.
async fn run_result(
    journal: &Journal,
    config: &RunConfig,
) -> Result<Option<runner::StopReason>, runner::RunError> {
    runner::run(
        journal,
        &client(config.timeout),
        config,
        None,
        CancellationToken::new(),
        Arc::new(Counters::default()),
    )
    .await
}

fn client(timeout: Duration) -> Client {
    Client::new(
        Credentials::new(SECRET_ID, SECRET_KEY),
        &ClientOptions {
            timeout,
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_end_in_ground_truth() {
    let world = World::generate(&Generate {
        count: 500,
        share_encrypted: 0.1,
        share_unsupported: 0.02,
        share_needs_upgrade: 0.02,
        seed: 7,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let rate = 40;
    let mut cfg = fast_config(rate);
    cfg.faults = Faults::mixed(0.20);
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let config = run_config(&emu.url, rate);
    let counters = Arc::new(Counters::default());
    let stop = runner::run(
        &journal,
        &client(config.timeout),
        &config,
        None,
        CancellationToken::new(),
        counters.clone(),
    )
    .await
    .unwrap();
    assert_eq!(stop, None);
    drop(journal);

    let truth = emu.truth();
    let conn = schema::open_reader(&path).unwrap();
    let mut states = std::collections::BTreeMap::new();
    read::for_each_instance(&conn, |row| {
        states.insert(row.instance_id.clone(), row);
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(states.len(), 500);
    let mut by_state = std::collections::BTreeMap::new();
    for (id, row) in &states {
        *by_state.entry(row.state).or_insert(0) += 1;
        assert!(row.state.is_terminal(), "{id} left {}", row.state);
        let t = &truth.instances[id.as_str()];
        match row.state {
            State::Encrypted => assert!(t.encrypted, "{id} journaled encrypted but is not"),
            State::AlreadyEncrypted => {
                assert!(t.encrypted);
                assert_eq!(
                    t.open_calls, 0,
                    "{id}: Open sent to an already encrypted instance"
                );
            }
            State::Failed => assert!(
                !t.encrypted,
                "{id} failed in the journal but is encrypted: {:?}",
                row.last_error_code
            ),
            _ => unreachable!(),
        }
    }
    eprintln!("{by_state:?}");
    assert_eq!(
        truth.total_blind_open_calls(),
        0,
        "an Open was re-sent without a settled NO"
    );
    assert_eq!(
        (
            truth.total_overlapping_open_calls(),
            truth.total_open_calls_when_encrypted()
        ),
        (0, 0),
        "overlapping Opens, Opens on encrypted instances"
    );
    for a in [
        OPEN_DB_INSTANCE_ENCRYPTION,
        DESCRIBE_DB_INSTANCE_INFO,
        DESCRIBE_DB_FEATURES,
    ] {
        let seen = truth.action(a);
        assert!(seen.max_in_1s_window <= rate as usize, "{a}: {seen:?}");
    }
    // The journal agrees about the rate it kept.
    let journal_max = read::max_requests_in_1s_window(&conn).unwrap();
    for (a, n) in &journal_max {
        assert!(*n <= rate as u64, "{a}: journal shows {n}");
    }
    assert!(by_state.get(&State::Encrypted).copied().unwrap_or(0) > 300);
    assert_eq!(truth.signature_failures, 0);
}

/// Three regional host names pinned to one emulator (as `--resolve` does): each
/// gets its own quota, so together they exceed one endpoint's limit while no
/// single (endpoint, action) ever does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regional_endpoints_each_get_their_own_quota() {
    let world = World::generate(&Generate {
        count: 150,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 9,
        ..Generate::default()
    });
    let regions: Vec<String> = {
        let mut r: Vec<String> = world.instances.values().map(|i| i.region.clone()).collect();
        r.sort();
        r.dedup();
        r
    };
    assert_eq!(regions.len(), 3);
    let rate = 10;
    let specs = specs_of(&world);
    let emu = EmulatorThread::start(fast_config(rate), world);
    let port = emu.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path).unwrap();
    journal.import(specs).await.unwrap();
    let mut config = run_config(&format!("http://cdb.{{region}}.emu.test:{port}"), rate);
    config.endpoints = EndpointPolicy::Custom(format!("http://cdb.{{region}}.emu.test:{port}"));
    let client = Client::new(
        Credentials::new(SECRET_ID, SECRET_KEY),
        &ClientOptions {
            timeout: config.timeout,
            resolve: regions
                .iter()
                .map(|r| (format!("cdb.{r}.emu.test"), emu.addr))
                .collect(),
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let stop = runner::run(
        &journal,
        &client,
        &config,
        None,
        CancellationToken::new(),
        Arc::new(Counters::default()),
    )
    .await
    .unwrap();
    assert_eq!(stop, None);
    drop(journal);
    let truth = emu.truth();
    assert!(truth.instances.values().all(|i| i.encrypted));
    for a in [OPEN_DB_INSTANCE_ENCRYPTION, DESCRIBE_DB_INSTANCE_INFO] {
        assert!(
            truth.action(a).max_in_1s_window <= rate as usize,
            "{a}: {:?}",
            truth.action(a)
        );
    }
    let conn = schema::open_reader(&path).unwrap();
    let per_endpoint = read::max_requests_in_1s_window(&conn).unwrap();
    assert!(per_endpoint[DESCRIBE_DB_INSTANCE_INFO] <= rate as u64);
    let sends: Vec<(String, String, i64)> = read::sends_since(&conn, 0).unwrap();
    let hosts: std::collections::BTreeSet<&str> =
        sends.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    let describe_times = sends
        .iter()
        .filter(|(_, a, _)| a == DESCRIBE_DB_INSTANCE_INFO)
        .map(|(_, _, t)| *t as u64);
    let combined = fleetcrypt::model::max_in_window(describe_times, 1000);
    assert!(
        combined > rate as usize,
        "three quotas together should exceed one: {combined}"
    );
}

/// The change propagates more slowly than the settle window: a settled read says
/// NO although the first attempt was applied. The re-send is answered
/// OperationDenied, which is verified, and the instance ends encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_denied_then_yes_is_success() {
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(
        "cdb-slow0001",
        "ap-guangzhou",
    ));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.faults.internal_applied = 1.0;
    cfg.apply_within = Duration::ZERO;
    cfg.propagation = fleetcrypt::emulator::Latency::fixed(Duration::from_millis(1500));
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.timeout = Duration::from_millis(500);
    // Shorter than the propagation: an operator's misjudged window.
    config.settle = Duration::from_millis(600);
    run_to_end(&journal, &config).await;
    drop(journal);
    let truth = emu.truth();
    let t = &truth.instances["cdb-slow0001"];
    assert!(t.encrypted);
    assert!(t.open_calls_when_encrypted >= 1, "{t:?}");
    let conn = schema::open_reader(&path).unwrap();
    let (state, code): (String, Option<String>) = conn
        .query_row("SELECT state, last_error_code FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(state, "encrypted");
    assert_eq!(code.as_deref(), Some("OperationDenied"));
}

/// With the key check (the default), a disabled custom key fails the instance
/// in preflight: no Open is sent, and each distinct key costs one DescribeKey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_kms_fails_disabled_keys_before_any_write() {
    let world = World::generate(&Generate {
        count: 30,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        share_custom_key: 1.0,
        share_disabled_key: 0.3,
        seed: 4,
        ..Generate::default()
    });
    let specs = fleetcrypt::input::parse(
        "fleet.csv",
        world.fleet_csv().as_bytes(),
        &Default::default(),
    )
    .unwrap();
    let disabled: Vec<String> = world
        .instances
        .values()
        .filter(|i| {
            let (k, r) = i.planned_key.clone().unwrap();
            world.keys[&(r, k)].state == "Disabled"
        })
        .map(|i| i.id.clone())
        .collect();
    assert!(!disabled.is_empty());
    let distinct_keys = world.keys.len();
    assert_eq!(distinct_keys, 6);
    let (emu, _dir, path, journal) = fleet_journal(fast_config(20), world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.check_kms = true;
    let counters = Arc::new(Counters::default());
    runner::run(
        &journal,
        &client(config.timeout),
        &config,
        None,
        CancellationToken::new(),
        counters.clone(),
    )
    .await
    .unwrap();
    drop(journal);
    let truth = emu.truth();
    // A key already read decides with no request, and takes no limiter slot:
    // the requests the run counted are exactly those the server saw.
    assert_eq!(
        counters.requests.load(std::sync::atomic::Ordering::Relaxed),
        truth.requests_total
    );
    let conn = schema::open_reader(&path).unwrap();
    for id in &disabled {
        let (state, code): (String, String) = conn
            .query_row(
                "SELECT state, last_error_code FROM instances WHERE instance_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (state.as_str(), code.as_str()),
            ("failed", "KmsKeyNotEnabled"),
            "{id}"
        );
        assert_eq!(
            truth.instances[id].open_calls, 0,
            "{id}: an Open was sent despite the disabled key"
        );
    }
    let encrypted = truth.instances.values().filter(|i| i.encrypted).count();
    assert_eq!(encrypted, 30 - disabled.len());
    // Each distinct key was asked about once (issue 12): six keys (an enabled and
    // a disabled one in each of three regions), 30 instances.
    assert_eq!(
        truth.action(fleetcrypt::api::kms::DESCRIBE_KEY).seen,
        distinct_keys as u64
    );
}

/// A run with --settle 3s died with an attempt in flight; resuming with
/// --settle 2.5s must still wait out a fresh 3-second window, counted from the
/// restart, before a NO counts and anything is re-sent. A read before then is
/// allowed (a YES would end it early) but its NO does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_waits_for_the_longest_settle_any_run_used() {
    use fleetcrypt::journal::{CallRecord, Change, Fact};
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(
        "cdb-crash001",
        "ap-guangzhou",
    ));
    let specs = specs_of(&world);
    let (emu, _dir, path, journal) = fleet_journal(fast_config(20), world, specs).await;
    // The crashed run: --settle 3s, attempt written ahead, never answered.
    journal
        .start_run(
            "run",
            Some(20),
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(3)),
        )
        .await
        .unwrap();
    let at = fleetcrypt::model::now_ms();
    let change = |fact| Change {
        instance_id: "cdb-crash001".parse().unwrap(),
        fact,
        run_id: None,
        call: Some(CallRecord::new(Action::DescribeDBInstanceInfo, "x", at)),
        at_ms: at,
    };
    journal
        .apply(change(Fact::EncryptionRead {
            encrypted: false,
            settled: true,
        }))
        .await
        .unwrap();
    journal
        .apply(Change {
            call: None,
            ..change(Fact::AttemptWritten {
                request: "{}".into(),
            })
        })
        .await
        .unwrap();
    // The resume, with a much shorter settle window.
    let config = run_config(&emu.url, 20);
    assert_eq!(config.settle, Duration::from_millis(2500));
    let started = fleetcrypt::model::now_ms();
    run_to_end(&journal, &config).await;
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let (settled_read, second_attempt): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT MIN(sent_at_ms) FROM events WHERE kind = 'ReadNotEncrypted' AND detail = 'settled' AND id > r.id), \
                    (SELECT MIN(at_ms) FROM events WHERE kind = 'AttemptWritten' AND id > r.id) \
             FROM events r WHERE r.kind = 'AttemptRecovered'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(
        settled_read >= started + 3_000,
        "a NO counted {} ms after the restart, before the crashed run's 3 s window closed",
        settled_read - started
    );
    assert!(second_attempt >= settled_read);
    let (state, attempts): (String, i64) = conn
        .query_row("SELECT state, attempts FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("encrypted", 2));
    assert_eq!(emu.truth().total_blind_open_calls(), 0);
}

/// The last allowed attempt hangs past the client's timeout and the backend
/// applies it at the end of the hang. The early read (before the attempt has
/// settled) says NO; that NO must not end the instance as failed ("attempts
/// exhausted") while the server is still working: only a settled read decides,
/// and it says YES.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_no_never_fails_the_last_attempt() {
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(
        "cdb-late0001",
        "ap-guangzhou",
    ));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.faults.hang_late = 1.0;
    // Applied 2.0–2.4 s after the send: well after the early read (client timeout
    // 1 s + 200 ms), well before the settled one (3.5 s).
    cfg.hang_for = Duration::from_secs(2);
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    // One attempt: a NO that counted would end the instance at once.
    config.max_attempts = 1;
    config.settle = Duration::from_millis(3500);
    run_to_end(&journal, &config).await;
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let (state, code): (String, Option<String>) = conn
        .query_row("SELECT state, last_error_code FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        state, "encrypted",
        "ended {state} ({code:?}) on a NO read while the attempt was still being worked on"
    );
    let truth = emu.truth();
    let t = &truth.instances["cdb-late0001"];
    assert!(t.encrypted, "the hung Open never applied: {t:?}");
    assert_eq!(t.open_calls, 1, "{t:?}");
    // The scenario did what it says: a NO was read before the attempt settled.
    let early_no: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'ReadNotEncrypted' AND detail IS NULL AND attempt = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(early_no >= 1, "no NO was read before the attempt settled");
}

/// The server's Open quota is lower than the client's `--rate` (another client
/// shares it): Opens are answered `RequestLimitExceeded`, documented as not
/// carried out. Each is journaled as a rejected attempt, a fresh settled `NO` is
/// read before the re-send, nothing is sent blind, and every instance still ends
/// encrypted. (Kills a runner that re-sends a rejected Open without the read, or
/// that treats the rejection as ambiguous or as a failure.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_opens_are_reread_and_resent_until_encrypted() {
    let world = World::generate(&Generate {
        count: 24,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 11,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let n = specs.len();
    let rate = 20;
    let mut cfg = fast_config(rate);
    cfg.rate_limits
        .insert(OPEN_DB_INSTANCE_ENCRYPTION.to_string(), 3);
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, rate);
    config.max_attempts = 50;
    config.retry_backoff =
        runner::Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
    let stop = run_to_end(&journal, &config).await;
    assert_eq!(stop, None);
    drop(journal);

    let truth = emu.truth();
    let open = truth.action(OPEN_DB_INSTANCE_ENCRYPTION);
    assert!(open.throttled > 0, "no Open was refused: {open:?}");
    assert_eq!(open.accepted, n as u64, "{open:?}");
    assert_eq!(truth.total_open_calls(), n as u64);
    assert_eq!(
        (
            truth.total_blind_open_calls(),
            truth.total_overlapping_open_calls(),
            truth.total_open_calls_when_encrypted()
        ),
        (0, 0, 0),
        "blind, overlapping Opens, Opens on encrypted instances"
    );
    for (id, t) in &truth.instances {
        assert!(t.encrypted, "{id} not encrypted: {t:?}");
    }

    let conn = schema::open_reader(&path).unwrap();
    let states: Vec<String> = conn
        .prepare("SELECT state FROM instances")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(states.len(), n);
    assert!(states.iter().all(|s| s == "encrypted"), "{states:?}");
    let rejected: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = 'AttemptAnswered' AND detail = 'rejected' AND error_code LIKE 'RequestLimitExceeded%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        rejected as u64, open.throttled,
        "every refused Open journaled as a rejected attempt"
    );
    // Per instance, in journal order: after a rejected attempt, a settled NO comes
    // before the next AttemptWritten.
    let mut stmt = conn
        .prepare("SELECT instance_id, kind, detail FROM events WHERE instance_id IS NOT NULL ORDER BY id")
        .unwrap();
    let rows: Vec<(String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut need_no: std::collections::HashMap<String, bool> = Default::default();
    let mut resends = 0;
    for (id, kind, detail) in rows {
        let need = need_no.entry(id.clone()).or_insert(false);
        match (kind.as_str(), detail.as_deref()) {
            ("AttemptAnswered", Some("rejected")) => *need = true,
            ("ReadNotEncrypted", Some("settled")) => *need = false,
            ("AttemptWritten", _) => {
                assert!(
                    !*need,
                    "{id}: Open re-sent after a rejection without a settled NO"
                );
                resends += 1;
            }
            _ => {}
        }
    }
    assert_eq!(resends as u64, n as u64 + open.throttled);
}

/// A TCP relay in front of the emulator. The moment it relays the first
/// `DescribeDBFeatures` request it stops listening for `gap`, so the next new
/// connection (the Open that follows the preflight, with pooling off) is
/// refused: the client hands it back unsent. Then it listens again on the same port.
struct RefusingRelay {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RefusingRelay {
    fn start(upstream: std::net::SocketAddr, gap: Duration) -> RefusingRelay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                addr_tx.send(addr).unwrap();
                let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel::<()>(1);
                let mut refused_once = false;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        _ = seen_rx.recv(), if !refused_once => {
                            refused_once = true;
                            drop(listener);
                            tokio::time::sleep(gap).await;
                            listener = TcpListener::bind(addr).await.unwrap();
                        }
                        acc = listener.accept() => {
                            let Ok((mut client, _)) = acc else { continue };
                            let seen = seen_tx.clone();
                            tokio::spawn(async move {
                                let mut first = vec![0u8; 64 * 1024];
                                let Ok(n) = client.read(&mut first).await else { return };
                                let head = &first[..n];
                                if head.windows(18).any(|w| w == b"DescribeDBFeatures") {
                                    let _ = seen.try_send(());
                                }
                                let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                                if server.write_all(head).await.is_err() {
                                    return;
                                }
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            });
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv().unwrap();
        RefusingRelay {
            url: format!("http://{addr}"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RefusingRelay {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `(kind, detail, error_code, at_ms, sent_at_ms)` of every event of one instance, in order.
type EventLine = (String, Option<String>, Option<String>, i64, Option<i64>);

fn events_of(conn: &rusqlite::Connection, id: &str) -> Vec<EventLine> {
    conn.prepare(
        "SELECT kind, detail, error_code, at_ms, sent_at_ms FROM events WHERE instance_id = ?1 ORDER BY id",
    )
    .unwrap()
    .query_map([id], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// In the middle of a run (the preflight got definite answers), the Open cannot
/// even connect: the request is handed back unsent. That is documented as not
/// carried out, so no settle window applies: the attempt is journaled as
/// rejected, a fresh settled NO is read, the Open is sent again well before a
/// settle window could have passed, and the instance ends encrypted with
/// nothing blind and exactly one Open ever reaching the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_that_was_never_sent_is_resent_after_a_fresh_no_without_a_settle_wait() {
    let id = "cdb-unsent01";
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let emu = EmulatorThread::start(fast_config(20), world);
    let relay = RefusingRelay::start(emu.addr, Duration::from_millis(1000));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path).unwrap();
    journal.import(specs).await.unwrap();
    let mut config = run_config(&relay.url, 20);
    // Long enough that waiting it out would show; the emulator never needs it here.
    config.settle = Duration::from_secs(10);
    config.retry_backoff =
        runner::Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
    // One new connection per request, so the Open has to connect on its own.
    let client = Client::new(
        Credentials::new(SECRET_ID, SECRET_KEY),
        &ClientOptions {
            timeout: config.timeout,
            pool_max_idle_per_host: 0,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let stop = tokio::time::timeout(
        Duration::from_secs(30),
        runner::run(
            &journal,
            &client,
            &config,
            None,
            CancellationToken::new(),
            Arc::new(Counters::default()),
        ),
    )
    .await
    .expect("the run did not finish")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(stop, None, "an unsent Open mid-run must not stop the run");
    drop(journal);
    drop(relay);

    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts): (String, i64) = conn
        .query_row("SELECT state, attempts FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("encrypted", 2));
    let events = events_of(&conn, id);
    let answers: Vec<(Option<String>, Option<String>)> = events
        .iter()
        .filter(|e| e.0 == "AttemptAnswered")
        .map(|e| (e.1.clone(), e.2.clone()))
        .collect();
    assert_eq!(
        answers,
        vec![
            (
                Some("rejected".to_string()),
                Some("ClientNetworkError.NotSent".to_string())
            ),
            (Some("accepted".to_string()), None)
        ],
        "the unsent Open is journaled as a rejected (not applied) attempt: {events:#?}"
    );
    // Between the rejected attempt and the re-send: a settled NO, and no settle wait.
    let rejected = events
        .iter()
        .position(|e| e.0 == "AttemptAnswered")
        .unwrap();
    let resent = rejected
        + events[rejected..]
            .iter()
            .position(|e| e.0 == "AttemptWritten")
            .unwrap();
    assert!(
        events[rejected..resent]
            .iter()
            .any(|e| e.0 == "ReadNotEncrypted" && e.1.as_deref() == Some("settled")),
        "re-sent without a settled NO: {events:#?}"
    );
    let gap_ms = events[resent].3 - events[rejected].4.unwrap();
    assert!(
        gap_ms < config.settle.as_millis() as i64 / 2,
        "waited {gap_ms} ms before the re-send: a never-sent Open needs no settle window"
    );
    assert!(took < config.settle, "the run took {took:?}");

    let truth = emu.truth();
    let t = &truth.instances[id];
    assert!(t.encrypted, "{t:?}");
    assert_eq!(
        (t.open_calls, t.blind_open_calls, t.overlapping_open_calls),
        (1, 0, 0),
        "only the re-sent Open reached the server, and it was not blind"
    );
}

/// A journal holding one imported instance, and an emulator that knows it.
async fn one_instance_journal(
    id: &str,
) -> (
    EmulatorThread,
    tempfile::TempDir,
    std::path::PathBuf,
    Journal,
) {
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let (emu, dir, path, journal) = fleet_journal(fast_config(20), world, specs).await;
    (emu, dir, path, journal)
}

/// A fact an earlier run journaled at `at` (its call never reached this emulator).
fn earlier_fact(id: &str, at: i64, fact: fleetcrypt::journal::Fact) -> fleetcrypt::journal::Change {
    fleetcrypt::journal::Change {
        instance_id: id.parse().unwrap(),
        fact,
        run_id: None,
        call: Some(fleetcrypt::journal::CallRecord::new(
            Action::DescribeDBInstanceInfo,
            "x",
            at,
        )),
        at_ms: at,
    }
}

/// `retry-failed` put an instance back to pending after an attempt whose outcome
/// was never settled (the process gave up on it). The next run must give that
/// attempt a fresh full settle window: the preflight NO and the pre-send NO read
/// before the window closes do not clear the instance, so nothing is sent and
/// the pre-send read waits (no busy loop of reads and refused write-aheads);
/// once the window has closed, a settled NO clears it and one Open is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_pre_send_no_waits_for_the_window_and_sends_nothing() {
    use fleetcrypt::journal::Fact;
    let id = "cdb-reset001";
    let (emu, _dir, path, journal) = one_instance_journal(id).await;
    // The earlier run: a settled NO, an attempt (it never reached this emulator),
    // an ambiguous answer, then it gave up; retry-failed puts it back to pending.
    let at = fleetcrypt::model::now_ms();
    let change = |fact| earlier_fact(id, at, fact);
    for fact in [
        Fact::EncryptionRead {
            encrypted: false,
            settled: true,
        },
        Fact::AttemptWritten {
            request: "{}".into(),
        },
        Fact::AttemptAnswered {
            disposition: fleetcrypt::model::Disposition::Ambiguous,
            settles_at_ms: at + 2500,
            next_attempt_at_ms: None,
            kms_error: false,
        },
        Fact::GaveUp {
            code: "VerificationUnavailable".into(),
            message: "gave up".into(),
        },
    ] {
        journal.apply(change(fact)).await.unwrap();
    }
    let j = journal.clone();
    let reset = tokio::task::spawn_blocking(move || j.reset_failed_blocking(None, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reset, 1);

    let config = run_config(&emu.url, 20);
    let started = fleetcrypt::model::now_ms();
    let stop = tokio::time::timeout(Duration::from_secs(30), run_result(&journal, &config))
        .await
        .expect("the run did not finish")
        .unwrap();
    assert_eq!(stop, None);
    drop(journal);

    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts): (String, i64) = conn
        .query_row("SELECT state, attempts FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("encrypted", 2));
    let events = events_of(&conn, id);
    let reset_at = events.iter().position(|e| e.0 == "ResetForRetry").unwrap();
    let resent = reset_at
        + events[reset_at..]
            .iter()
            .position(|e| e.0 == "AttemptWritten")
            .unwrap();
    let reads: Vec<&EventLine> = events[reset_at..resent]
        .iter()
        .filter(|e| e.0 == "ReadNotEncrypted")
        .collect();
    // Preflight and the first pre-send read (both unsettled), then the settled one.
    let unsettled = reads.iter().filter(|e| e.1.is_none()).count();
    assert!(
        (1..=3).contains(&unsettled),
        "{unsettled} unsettled NO reads before the window closed: the pre-send read must wait, not loop: {events:#?}"
    );
    let last = reads.last().unwrap();
    assert_eq!(
        last.1.as_deref(),
        Some("settled"),
        "the re-send came without a settled NO: {events:#?}"
    );
    assert!(
        last.4.unwrap() >= started + config.settle.as_millis() as i64,
        "a NO counted {} ms after the restart, before the fresh {:?} window closed",
        last.4.unwrap() - started,
        config.settle
    );

    let truth = emu.truth();
    let t = &truth.instances[id];
    assert!(t.encrypted, "{t:?}");
    assert_eq!(
        (t.open_calls, t.blind_open_calls, t.overlapping_open_calls),
        (1, 0, 0)
    );
}

/// Every Open fails with an error that may or may not have been applied, and
/// every settled read says NO: the instance is given up after exactly
/// `max_attempts` Opens, each re-sent only after a settled NO, failed with the
/// last error code and its message as the server gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_is_given_up_after_max_attempts_each_verified_no() {
    let id = "cdb-never001";
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.faults.internal = 1.0;
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.max_attempts = 3;
    // Covers the emulator's Open latency (at most 400 ms; `internal` applies nothing).
    config.settle = Duration::from_millis(600);
    let stop = tokio::time::timeout(Duration::from_secs(30), run_result(&journal, &config))
        .await
        .expect("the run did not finish: attempts were not bounded by max_attempts")
        .unwrap();
    assert_eq!(stop, None);
    drop(journal);

    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts, code, message): (String, i64, String, String) = conn
        .query_row(
            "SELECT state, attempts, last_error_code, last_error_message FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), attempts, code.as_str(), message.as_str()),
        (
            "failed",
            3,
            "InternalError.UnknownError",
            "Internal error (injected, not applied).; verified NO, gave up after 3 attempts"
        )
    );
    let answered: Vec<Option<String>> = events_of(&conn, id)
        .into_iter()
        .filter(|e| e.0 == "AttemptAnswered")
        .map(|e| e.2)
        .collect();
    assert_eq!(
        answered,
        vec![Some("InternalError.UnknownError".to_string()); 3]
    );
    // Per ambiguous attempt: one early read (a YES would end it), then one once it
    // has settled; no stream of reads while the server may still be working.
    let unsettled = events_of(&conn, id)
        .iter()
        .filter(|e| e.0 == "ReadNotEncrypted" && e.1.is_none())
        .count();
    assert!(
        unsettled <= 2 * 3,
        "{unsettled} NO reads before the attempts settled"
    );
    let message: String = conn
        .query_row(
            "SELECT error_message FROM events WHERE kind = 'AttemptAnswered' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        message, "Internal error (injected, not applied).",
        "the server's message, journaled as given"
    );
    let truth = emu.truth();
    let t = &truth.instances[id];
    assert!(!t.encrypted);
    assert_eq!((t.open_calls, t.blind_open_calls), (3, 0), "{t:?}");
}

/// Twelve instances on one endpoint at 4 requests/s per action. Each action has
/// its own quota (so together they send at least twice one action's rate in
/// some second, while no action ever exceeds it), and within the DescribeDBInstanceInfo quota the
/// verification of an instance already sent goes before the preflight of a new
/// one: the first instance is verified encrypted before the last preflight read.
/// (Three seconds of preflight reads: even if the first verifications miss the
/// second second's slots, they take the third's.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_has_its_own_quota_and_started_instances_are_verified_first() {
    let world = World::generate(&Generate {
        count: 12,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 21,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let n = specs.len();
    let rate = 4;
    let (emu, _dir, path, journal) = fleet_journal(fast_config(rate), world, specs).await;
    let config = run_config(&emu.url, rate);
    let stop = tokio::time::timeout(Duration::from_secs(60), run_result(&journal, &config))
        .await
        .expect("the run did not finish")
        .unwrap();
    assert_eq!(stop, None);
    drop(journal);

    let truth = emu.truth();
    assert!(truth.instances.values().all(|i| i.encrypted));
    // By the client's own send times (the server-side window is checked by the
    // other runner tests; under heavy CPU load it can show one request more).
    let conn = schema::open_reader(&path).unwrap();
    for (a, n) in read::max_requests_in_1s_window(&conn).unwrap() {
        assert!(n <= rate as u64, "{a}: {n} sent in one second");
    }
    let sends = read::sends_since(&conn, 0).unwrap();
    let all = fleetcrypt::model::max_in_window(sends.iter().map(|(_, _, t)| *t as u64), 1000);
    // Preflight reads, features and Opens of the first instances alone make 12
    // in the first second; one shared quota would allow 4.
    assert!(
        all >= 2 * rate as usize,
        "all actions together sent only {all} requests in any second: they share one quota"
    );
    let (last_preflight, first_verified, preflights): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT MAX(id) FROM events WHERE kind = 'ReadNotEncrypted' AND from_state = 'pending'), \
                    (SELECT MIN(id) FROM events WHERE kind = 'VerifiedEncrypted'), \
                    (SELECT COUNT(*) FROM events WHERE kind = 'ReadNotEncrypted' AND from_state = 'pending')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(preflights, n as i64);
    assert!(
        first_verified < last_preflight,
        "no instance was verified before every preflight read had gone out: verification reads waited behind new instances"
    );
}

/// Admits every request at once (the step tests drive one step at a time).
struct OpenGate;

impl fleetcrypt::api::Gate for OpenGate {
    fn admit(&self) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn sent(&self, _at: std::time::Instant) {}
}

/// Every imported instance driven through preflight and its write-ahead, ready to send.
async fn stage_for_send(
    ctx: &Arc<runner::steps::Ctx>,
    journal: &Journal,
    url: &str,
) -> Vec<runner::steps::Active> {
    use runner::steps::{Active, Step};
    let rows = journal
        .query(|c| fleetcrypt::journal::load_active(c, 0, 10))
        .await
        .unwrap();
    let ep = fleetcrypt::api::Endpoint::parse(url).unwrap();
    let mut staged = Vec::new();
    for row in &rows {
        let a = Active::from_row(row, ep.clone(), None);
        staged.push(
            drive(
                ctx,
                a,
                &[Step::PreflightRead, Step::Features, Step::WriteAhead],
            )
            .await,
        );
    }
    staged
}

/// Runs `steps` for `a` one after another, requiring each to lead to the next
/// and the last one to a `Send`.
async fn drive(
    ctx: &Arc<runner::steps::Ctx>,
    mut a: runner::steps::Active,
    steps: &[runner::steps::Step],
) -> runner::steps::Active {
    use runner::steps::{execute, Next, Step};
    let gate: Arc<dyn fleetcrypt::api::Gate> = Arc::new(OpenGate);
    for (k, step) in steps.iter().enumerate() {
        let r = execute(ctx.clone(), a, *step, gate.clone()).await;
        let next = steps.get(k + 1).copied().unwrap_or(Step::Send);
        assert!(
            matches!(r.next, Next::After(s, _) if s == next),
            "{step:?} led to {:?}, not {next:?}",
            r.next
        );
        a = r.active;
    }
    a
}

/// Step by step: an accepted Open journals when it settles (send time + the
/// settle window, for the audit); a second Open answered RequestLimitExceeded
/// (the server's quota of 1/s) is a definite, throttled answer, journaled as
/// rejected with its wait, and the pre-send read is scheduled after a jittered
/// backoff drawn from the retry envelope, not at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_open_is_rejected_and_reread_after_a_jittered_backoff() {
    use runner::steps::{execute, Ctx, Heard, Next, Step};
    let mut world = World::default();
    for id in ["cdb-step0001", "cdb-step0002"] {
        world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    }
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.rate_limits
        .insert(OPEN_DB_INSTANCE_ENCRYPTION.to_string(), 1);
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.retry_backoff = runner::Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
    let ctx = Arc::new(Ctx::new(
        journal.clone(),
        client(config.timeout),
        config.clone(),
        None,
    ));
    let mut staged = stage_for_send(&ctx, &journal, &emu.url).await;
    let ids: Vec<_> = staged.iter().map(|a| a.id().clone()).collect();
    let gate: Arc<dyn fleetcrypt::api::Gate> = Arc::new(OpenGate);
    let second = staged.pop().unwrap();
    let first = staged.pop().unwrap();
    let r1 = execute(ctx.clone(), first, Step::Send, gate.clone()).await;
    assert!(
        matches!(r1.next, Next::After(Step::VerifyRead, _)),
        "{:?}",
        r1.next
    );
    assert_eq!(r1.heard, Heard::Answer);
    let r2 = execute(ctx.clone(), second, Step::Send, gate.clone()).await;
    assert_eq!(
        r2.heard,
        Heard::Throttled,
        "RequestLimitExceeded must slow the limiter down"
    );
    assert!(
        r2.heard.definite(),
        "RequestLimitExceeded is an answer from the server"
    );
    let delay = match r2.next {
        Next::After(Step::PreSendRead, d) => d,
        other => panic!("a throttled Open led to {other:?}"),
    };
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(10),
        "the re-read after a throttled Open waits a full-jitter draw from [0, 10 s], got {delay:?}"
    );
    drop(ctx);
    drop(journal);

    let conn = schema::open_reader(&path).unwrap();
    let row = |id: &str| -> (String, Option<String>, i64, i64, Option<i64>) {
        conn.query_row(
            "SELECT state, last_outcome, last_sent_at_ms, settles_at_ms, next_attempt_at_ms FROM instances WHERE instance_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    };
    let (state, outcome, sent, settles, next) = row(ids[0].as_str());
    assert_eq!(
        (state.as_str(), outcome.as_deref(), next),
        ("verifying", Some("accepted"), None)
    );
    assert_eq!(
        settles - sent,
        config.settle.as_millis() as i64,
        "an accepted attempt settles one settle window after it was sent"
    );
    let (state, outcome, _, answered, next) = row(ids[1].as_str());
    assert_eq!(
        (state.as_str(), outcome.as_deref()),
        ("retry_wait", Some("rejected"))
    );
    assert_eq!(
        next.unwrap() - answered,
        delay.as_millis() as i64,
        "the journaled next attempt is the answer time plus the backoff"
    );
    assert_eq!(
        emu.truth().total_open_calls(),
        1,
        "the throttled Open applied nothing"
    );
}

/// A read that could not even be sent (nothing listens on the port) is not an
/// answer: it does not count as the server having answered, it says why it
/// was not sent, and the read is tried again after a backoff that grows with
/// each failure, up to twice `max_attempts` retries (16): the 17th failure
/// fails the instance in preflight with the read's own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_could_not_be_sent_is_not_an_answer() {
    use fleetcrypt::api::Endpoint;
    use runner::steps::{execute, Active, Ctx, Heard, Next, Step};
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db")).unwrap();
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(
        "cdb-nowhere1",
        "ap-guangzhou",
    ));
    journal.import(specs_of(&world)).await.unwrap();
    let url = format!("http://{closed}");
    let mut config = run_config(&url, 20);
    config.retry_backoff = runner::Backoff::new(Duration::from_millis(10), Duration::from_secs(10));
    let backoff = config.retry_backoff;
    let ctx = Arc::new(Ctx::new(
        journal.clone(),
        client(config.timeout),
        config,
        None,
    ));
    let rows = journal
        .query(|c| fleetcrypt::journal::load_active(c, 0, 10))
        .await
        .unwrap();
    let mut a = Active::from_row(&rows[0], Endpoint::parse(&url).unwrap(), None);
    // Each failed read is retried after a full-jitter draw from the envelope for
    // its failure number: the n-th failure (0-based) waits at most 10 ms * 2^n.
    assert_eq!(ctx.config.max_attempts, 8);
    for n in 0..16u32 {
        let r = execute(ctx.clone(), a, Step::PreflightRead, Arc::new(OpenGate)).await;
        assert!(matches!(r.heard, Heard::NotSent(_)), "{r:?}");
        assert!(
            !r.heard.definite(),
            "an unsent read is no answer from the server"
        );
        let wait = match r.next {
            Next::After(Step::PreflightRead, d) => d,
            other => panic!("unsent read {} led to {other:?}", n + 1),
        };
        assert!(
            wait <= backoff.envelope(n),
            "failure {n}: waited {wait:?}, over the envelope {:?}",
            backoff.envelope(n)
        );
        assert_eq!(r.active.state(), State::Pending);
        a = r.active;
    }
    let r = execute(ctx.clone(), a, Step::PreflightRead, Arc::new(OpenGate)).await;
    assert!(matches!(r.next, Next::Done), "{:?}", r.next);
    assert_eq!(r.active.state(), State::Failed);
    drop(ctx);
    drop(journal);
    let conn = schema::open_reader(&dir.path().join("j.db")).unwrap();
    let (code, message): (String, String) = conn
        .query_row(
            "SELECT last_error_code, last_error_message FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(code, "ClientNetworkError.NotSent");
    assert!(
        message.starts_with(
            "DescribeDBInstanceInfo kept failing (17 times), last ClientNetworkError.NotSent: "
        ),
        "{message}"
    );
    let kind: String = conn
        .query_row(
            "SELECT kind FROM events ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "PreflightFailed");
}

/// After the accepted Open, `Encryption` reads `""` (neither YES nor NO) for
/// longer than the verify deadline. It is polled with a growing backoff, never
/// taken for a NO and nothing is re-sent; past the deadline the instance fails
/// as VerificationUnreadable with the raw value, for an operator to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_unreadable_past_the_verify_deadline_fail_the_instance_without_a_resend() {
    let id = "cdb-blank001";
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.blank_after_apply = Duration::from_secs(30);
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.verify_deadline = Duration::from_secs(3);
    config.poll_backoff = runner::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let stop = tokio::time::timeout(Duration::from_secs(30), run_result(&journal, &config))
        .await
        .expect("the run did not finish")
        .unwrap();
    assert_eq!(stop, None);
    drop(journal);

    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts, code, message): (String, i64, String, String) = conn
        .query_row(
            "SELECT state, attempts, last_error_code, last_error_message FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), attempts, code.as_str()),
        ("failed", 1, "VerificationUnreadable")
    );
    assert!(
        message.starts_with(
            "DescribeDBInstanceInfo kept answering Encryption=\"\" (neither YES nor NO)"
        ),
        "{message}"
    );
    let events = events_of(&conn, id);
    assert_eq!(
        events.last().map(|e| e.0.as_str()),
        Some("GaveUp"),
        "{events:#?}"
    );
    let unreadable = events
        .iter()
        .filter(|e| e.2.as_deref() == Some("EncryptionUnreadable"))
        .count();
    // Polls back off from 200 ms towards 5 s: about five in 3 s, never one
    // every 200 ms (fifteen), and more than one before giving up.
    assert!(
        (2..=8).contains(&unreadable),
        "{unreadable} unreadable reads in the 3 s deadline: {events:#?}"
    );
    let truth = emu.truth();
    let t = &truth.instances[id];
    assert!(t.encrypted, "the Open was applied: {t:?}");
    assert_eq!(
        t.open_calls, 1,
        "nothing was re-sent on an unreadable value"
    );
}

/// Every Open answers InternalError.KmsError and every settled read says NO:
/// the instance is retried `kms_error_retries` (2) times, then failed with the
/// KMS error and a hint, after three Opens, each one after a settled NO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kms_error_is_retried_kms_error_retries_times_then_failed() {
    let id = "cdb-kms00001";
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.faults.kms_error = 1.0;
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    assert_eq!(config.kms_error_retries, 2);
    // Covers the emulator's Open latency (at most 400 ms; a KmsError applies nothing).
    config.settle = Duration::from_millis(600);
    let stop = tokio::time::timeout(Duration::from_secs(30), run_result(&journal, &config))
        .await
        .expect("the run did not finish")
        .unwrap();
    assert_eq!(stop, None);
    drop(journal);

    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts, kms_errors, code, message): (String, i64, i64, String, String) = conn
        .query_row(
            "SELECT state, attempts, kms_errors, last_error_code, last_error_message FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), attempts, kms_errors, code.as_str()),
        ("failed", 3, 3, "InternalError.KmsError")
    );
    assert!(
        message.starts_with("OpenDBInstanceEncryption answered InternalError.KmsError 3 times and a settled read confirmed Encryption=NO each time: check that the KMS key"),
        "{message}"
    );
    let truth = emu.truth();
    let t = &truth.instances[id];
    assert!(!t.encrypted);
    assert_eq!((t.open_calls, t.blind_open_calls), (3, 0), "{t:?}");
}

/// Step by step: an Open answered with an error that may have been applied is
/// verified first early (its NO does not count, the next read waits for the
/// settle window), then once settled; that settled NO schedules the retry after
/// a jittered backoff, and the journal's next attempt time is that far ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_no_after_an_ambiguous_open_schedules_the_retry_after_a_backoff() {
    use fleetcrypt::api::Endpoint;
    use runner::steps::{execute, Active, Ctx, Next, Step};
    let id = "cdb-step0003";
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.faults.internal = 1.0;
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.settle = Duration::from_millis(600);
    config.retry_backoff = runner::Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
    let ctx = Arc::new(Ctx::new(
        journal.clone(),
        client(config.timeout),
        config.clone(),
        None,
    ));
    let rows = journal
        .query(|c| fleetcrypt::journal::load_active(c, 0, 10))
        .await
        .unwrap();
    let a = Active::from_row(&rows[0], Endpoint::parse(&emu.url).unwrap(), None);
    let a = drive(
        &ctx,
        a,
        &[Step::PreflightRead, Step::Features, Step::WriteAhead],
    )
    .await;
    let gate: Arc<dyn fleetcrypt::api::Gate> = Arc::new(OpenGate);
    let sent = execute(ctx.clone(), a, Step::Send, gate.clone()).await;
    assert!(
        matches!(sent.next, Next::After(Step::VerifyRead, d) if d <= config.ambiguous_first_read),
        "{:?}",
        sent.next
    );
    let early = execute(ctx.clone(), sent.active, Step::VerifyRead, gate.clone()).await;
    let wait = match early.next {
        Next::After(Step::VerifyRead, d) => d,
        other => panic!("an unsettled NO led to {other:?}"),
    };
    assert!(
        wait > Duration::ZERO && wait <= config.settle + Duration::from_millis(5),
        "the next read waits for the settle window: {wait:?}"
    );
    tokio::time::sleep(wait).await;
    let settled = execute(ctx.clone(), early.active, Step::VerifyRead, gate.clone()).await;
    let delay = match settled.next {
        Next::After(Step::WriteAhead, d) => d,
        other => panic!("a settled NO led to {other:?}"),
    };
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(10),
        "the retry waits a full-jitter draw from [0, 10 s], got {delay:?}"
    );
    assert!(settled.active.cleared());
    drop(ctx);
    drop(journal);

    let conn = schema::open_reader(&path).unwrap();
    let (state, next): (String, i64) = conn
        .query_row("SELECT state, next_attempt_at_ms FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(state, "retry_wait");
    let scheduled_at: i64 = conn
        .query_row(
            "SELECT at_ms FROM events WHERE kind = 'RetryScheduled'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let ahead = next - scheduled_at;
    let delay_ms = delay.as_millis() as i64;
    assert!(
        (delay_ms - 100..=delay_ms).contains(&ahead),
        "the next attempt is journaled {ahead} ms after the retry was scheduled, the backoff is {delay_ms} ms"
    );
}

/// The Open is accepted but the change takes 2.5 s to show, longer than the
/// 600 ms settle window. A NO read before the attempt settled is not a settled
/// NO, and an accepted attempt is polled, with a growing backoff, until the
/// verify deadline rather than re-sent once it settles: one Open, and the
/// instance ends encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_open_slow_to_show_is_polled_until_the_deadline_and_not_resent() {
    let id = "cdb-slowacc1";
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.propagation = fleetcrypt::emulator::Latency::fixed(Duration::from_millis(2500));
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    // Covers the emulator's Open latency (at most 400 ms), not the propagation.
    config.settle = Duration::from_millis(600);
    config.poll_backoff = runner::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let stop = tokio::time::timeout(Duration::from_secs(30), run_result(&journal, &config))
        .await
        .expect("the run did not finish")
        .unwrap();
    assert_eq!(stop, None);
    drop(journal);

    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts, sent): (String, i64, i64) = conn
        .query_row(
            "SELECT state, attempts, last_sent_at_ms FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("encrypted", 1));
    let events = events_of(&conn, id);
    let accepted = events
        .iter()
        .position(|e| e.0 == "AttemptAnswered")
        .unwrap();
    let reads: Vec<&EventLine> = events[accepted..]
        .iter()
        .filter(|e| e.0 == "ReadNotEncrypted")
        .collect();
    assert!(
        reads.iter().any(|e| e.1.is_none()),
        "the scenario reads NO before the attempt settled: {events:#?}"
    );
    // Polls back off from 200 ms towards 5 s: about five in 2.5 s, not one
    // every 200 ms (twelve).
    assert!(
        reads.len() <= 8,
        "{} NO reads while the change propagated: {events:#?}",
        reads.len()
    );
    let settle_ms = config.settle.as_millis() as i64;
    for e in &reads {
        if e.1.as_deref() == Some("settled") {
            assert!(
                e.4.unwrap() >= sent + settle_ms,
                "a NO read {} ms after the Open was sent counted as settled: {events:#?}",
                e.4.unwrap() - sent
            );
        }
    }
    let truth = emu.truth();
    let t = &truth.instances[id];
    assert!(t.encrypted);
    assert_eq!(
        (t.open_calls, t.open_calls_when_encrypted),
        (1, 0),
        "an accepted Open was re-sent: {t:?}"
    );
}

/// Step by step, with `max_attempts` 1: the only attempt is answered
/// RequestLimitExceeded. It applied nothing, and there is no attempt left, so
/// the instance fails at once (refused), naming the code and the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_last_attempt_fails_the_instance_at_once() {
    use runner::steps::{execute, Ctx, Heard, Next, Step};
    let mut world = World::default();
    for id in ["cdb-last0001", "cdb-last0002"] {
        world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    }
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.rate_limits
        .insert(OPEN_DB_INSTANCE_ENCRYPTION.to_string(), 1);
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.max_attempts = 1;
    let ctx = Arc::new(Ctx::new(
        journal.clone(),
        client(config.timeout),
        config,
        None,
    ));
    let mut staged = stage_for_send(&ctx, &journal, &emu.url).await;
    let ids: Vec<_> = staged.iter().map(|a| a.id().clone()).collect();
    let gate: Arc<dyn fleetcrypt::api::Gate> = Arc::new(OpenGate);
    let second = staged.pop().unwrap();
    let first = staged.pop().unwrap();
    let r1 = execute(ctx.clone(), first, Step::Send, gate.clone()).await;
    assert!(
        matches!(r1.next, Next::After(Step::VerifyRead, _)),
        "{:?}",
        r1.next
    );
    let r2 = execute(ctx.clone(), second, Step::Send, gate.clone()).await;
    assert_eq!(r2.heard, Heard::Throttled);
    assert!(matches!(r2.next, Next::Done), "{:?}", r2.next);
    assert_eq!(r2.active.state(), State::Failed);
    drop(ctx);
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let (state, outcome, code, message): (String, String, String, String) = conn
        .query_row(
            "SELECT state, last_outcome, last_error_code, last_error_message FROM instances WHERE instance_id = ?1",
            [&ids[1]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), outcome.as_str(), code.as_str()),
        ("failed", "refused", "RequestLimitExceeded")
    );
    assert!(message.ends_with("; gave up after 1 attempts"), "{message}");
}

/// Runs the runner on `journal` against `url` with `config`, bounded in time.
async fn run_bounded(journal: &Journal, config: &RunConfig) -> Option<runner::StopReason> {
    tokio::time::timeout(
        Duration::from_secs(30),
        runner::run(
            journal,
            &client(config.timeout),
            config,
            None,
            CancellationToken::new(),
            Arc::new(Counters::default()),
        ),
    )
    .await
    .expect("the run did not finish")
    .unwrap()
}

/// An input row naming an instance the server does not know: the preflight read
/// is answered InvalidParameter.InstanceNotFound, so the instance fails in
/// preflight with that code (the others go on), and no Open is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_instance_fails_in_preflight_with_the_servers_code() {
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(
        "cdb-known001",
        "ap-guangzhou",
    ));
    let mut specs = specs_of(&world);
    let mut missing = specs[0].clone();
    missing.id = "cdb-ghost001".parse().unwrap();
    specs.push(missing);
    let (emu, _dir, path, journal) = fleet_journal(fast_config(20), world, specs).await;
    let config = run_config(&emu.url, 20);
    assert_eq!(run_bounded(&journal, &config).await, None);
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let (state, code): (String, String) = conn
        .query_row(
            "SELECT state, last_error_code FROM instances WHERE instance_id = 'cdb-ghost001'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), code.as_str()),
        ("failed", "InvalidParameter.InstanceNotFound")
    );
    let kinds: Vec<String> = events_of(&conn, "cdb-ghost001")
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(kinds, vec!["Imported", "PreflightFailed"]);
    let truth = emu.truth();
    assert!(truth.instances["cdb-known001"].encrypted);
    assert_eq!(truth.total_open_calls(), 1);
}

/// The Open is answered UnsupportedOperation (the instance is not running).
/// That may not be a refusal, so it is verified once settled; a settled NO then
/// shows it did not take effect, and the code is not one a re-send could fix:
/// the instance fails after that one Open, naming the code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_answered_unsupported_fails_after_one_settled_no_without_a_resend() {
    let id = "cdb-stopped1";
    let mut world = World::default();
    let mut inst = fleetcrypt::emulator::Instance::new(id, "ap-guangzhou");
    inst.status = 0;
    world.add_instance(inst);
    let specs = specs_of(&world);
    let (emu, _dir, path, journal) = fleet_journal(fast_config(20), world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.settle = Duration::from_millis(600);
    config.max_attempts = 3;
    assert_eq!(run_bounded(&journal, &config).await, None);
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts, code, message): (String, i64, String, String) = conn
        .query_row(
            "SELECT state, attempts, last_error_code, last_error_message FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), attempts, code.as_str()),
        ("failed", 1, "UnsupportedOperation")
    );
    assert!(
        message.ends_with("; a read after the attempt settled confirmed Encryption=NO"),
        "{message}"
    );
    assert_eq!(emu.truth().instances[id].open_calls, 1);
}

/// A run stopped with an attempt answered ambiguously (journaled as
/// `verifying`, outcome `ambiguous`). The next run treats it as not accepted:
/// once a fresh settle window has passed, a settled NO leads to a re-send at
/// once, not to polling for YES until a verify deadline as for an accepted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_ambiguous_attempt_is_retried_after_the_settle_window_not_the_verify_deadline() {
    use fleetcrypt::journal::Fact;
    use fleetcrypt::model::Disposition;
    let id = "cdb-resume01";
    let (emu, _dir, path, journal) = one_instance_journal(id).await;
    let at = fleetcrypt::model::now_ms();
    let change = |fact| earlier_fact(id, at, fact);
    for fact in [
        Fact::EncryptionRead {
            encrypted: false,
            settled: true,
        },
        Fact::AttemptWritten {
            request: "{}".into(),
        },
        Fact::AttemptAnswered {
            disposition: Disposition::Ambiguous,
            settles_at_ms: at + 600,
            next_attempt_at_ms: None,
            kms_error: false,
        },
    ] {
        journal.apply(change(fact)).await.unwrap();
    }
    let mut config = run_config(&emu.url, 20);
    config.settle = Duration::from_millis(600);
    config.verify_deadline = Duration::from_secs(8);
    let started = fleetcrypt::model::now_ms();
    assert_eq!(run_bounded(&journal, &config).await, None);
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let (state, attempts): (String, i64) = conn
        .query_row("SELECT state, attempts FROM instances", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), attempts), ("encrypted", 2));
    let resent_at = events_of(&conn, id)
        .iter()
        .filter(|e| e.0 == "AttemptWritten")
        .nth(1)
        .map(|e| e.3)
        .unwrap();
    assert!(
        resent_at - started < 4000,
        "re-sent {} ms after the restart: the ambiguous attempt was polled like an accepted one",
        resent_at - started
    );
    assert_eq!(emu.truth().total_blind_open_calls(), 0);
}

/// With one attempt allowed: the Open is accepted but the change takes longer
/// to show than the verify deadline. Polling stops at the deadline and the
/// instance is given up as VerifyDeadlineExceeded (the operator checks the
/// console), with no second Open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_open_still_no_at_the_verify_deadline_is_given_up_on_the_last_attempt() {
    let id = "cdb-late0002";
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(id, "ap-guangzhou"));
    let specs = specs_of(&world);
    let mut cfg = fast_config(20);
    cfg.propagation = fleetcrypt::emulator::Latency::fixed(Duration::from_secs(20));
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, 20);
    config.settle = Duration::from_millis(600);
    config.verify_deadline = Duration::from_secs(1);
    config.max_attempts = 1;
    assert_eq!(run_bounded(&journal, &config).await, None);
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let (state, code, message): (String, String, String) = conn
        .query_row(
            "SELECT state, last_error_code, last_error_message FROM instances",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (state.as_str(), code.as_str()),
        ("failed", "VerifyDeadlineExceeded")
    );
    assert!(
        message.starts_with("the last attempt was accepted but Encryption still read NO after 1s"),
        "{message}"
    );
    assert_eq!(emu.truth().instances[id].open_calls, 1);
}

/// Issue 10: with `Encryption` turning YES 1–4 s after an apply (drawn per
/// instance), the verification schedule learns where YES shows instead of
/// polling from the moment of the answer: about two `DescribeDBInstanceInfo`
/// reads per instance (the preflight and one verification), every instance
/// verified, nothing sent twice. Polling from the answer with backoff (the
/// old schedule) reads each instance about four times here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reads_go_where_yes_is_likely() {
    let n = 160;
    let world = World::generate(&Generate {
        count: n,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 10,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let rate = 20;
    let mut cfg = fast_config(rate);
    cfg.propagation = fleetcrypt::emulator::Latency::between(
        Duration::from_millis(1000),
        Duration::from_millis(4000),
    );
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, rate);
    config.verify_deadline = Duration::from_secs(30);
    // The documented 10 s, scaled as the propagation is (5–20 s → 1–4 s).
    config.verify_first_read = Duration::from_secs(2);
    let stop = run_to_end(&journal, &config).await;
    assert_eq!(stop, None);
    drop(journal);

    let truth = emu.truth();
    let conn = schema::open_reader(&path).unwrap();
    let mut encrypted = 0;
    read::for_each_instance(&conn, |row| {
        assert_eq!(row.state, State::Encrypted, "{}", row.instance_id);
        assert!(truth.instances[row.instance_id.as_str()].encrypted);
        assert_eq!(row.attempts, 1, "{} was sent twice", row.instance_id);
        encrypted += 1;
        Ok(())
    })
    .unwrap()
    .unwrap();
    assert_eq!(encrypted, n);
    assert_eq!(
        (
            truth.total_blind_open_calls(),
            truth.total_overlapping_open_calls()
        ),
        (0, 0)
    );
    let reads = truth.action(DESCRIBE_DB_INSTANCE_INFO).seen as f64 / n as f64;
    eprintln!("{reads:.3} DescribeDBInstanceInfo reads per instance");
    // The counters the writer keeps (what `status` reads) say what the events say.
    let counted = read::verification(&conn).unwrap();
    assert_eq!(counted, read::verification_from_events(&conn).unwrap());
    assert_eq!(counted.reads, truth.action(DESCRIBE_DB_INSTANCE_INFO).seen);
    assert!(
        counted.polls > 0,
        "no poll: the counters' polls are not tested"
    );
    assert_eq!(
        counted.delay_to_yes.values().map(|d| d.n).sum::<u64>(),
        n as u64
    );
    assert!(
        reads <= 2.3,
        "{reads:.2} DescribeDBInstanceInfo reads per instance"
    );
}

/// Issue 10: a resumed run starts verifying where the journal shows YES came,
/// not at the documented 10 s: a second run on the same journal, started with
/// the 10 s default, reads its instances back seconds after their Opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_verifies_where_the_journal_saw_yes() {
    let n = 60;
    let world = World::generate(&Generate {
        count: n,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 12,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let rate = 20;
    let mut cfg = fast_config(rate);
    cfg.propagation = fleetcrypt::emulator::Latency::fixed(Duration::from_millis(1500));
    let emu = EmulatorThread::start(cfg, world);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Journal::open(&path).unwrap();
    let mut config = run_config(&emu.url, rate);
    config.verify_deadline = Duration::from_secs(60);
    for (batch, first_read) in [(&specs[..n / 2], 1500), (&specs[n / 2..], 10_000)] {
        journal.import(batch.to_vec()).await.unwrap();
        config.verify_first_read = Duration::from_millis(first_read);
        let stop = run_result(&journal, &config).await.unwrap();
        assert_eq!(stop, None);
    }
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let second: Vec<i64> = conn
        .prepare(
            "SELECT i.delay_to_yes_ms FROM instances i WHERE i.seq > ?1 AND i.state = 'encrypted' ORDER BY i.delay_to_yes_ms",
        )
        .unwrap()
        .query_map([(n / 2) as i64], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(second.len(), n / 2);
    assert!(
        second[second.len() - 1] < 8_000,
        "the second run read its Opens back up to {} ms after they were sent: it started from 10 s, not from the journal",
        second[second.len() - 1]
    );
}

/// Issue 10: a backend that shows YES at once is soon read at once. The
/// schedule starts at 2 s here; if hits read at an older, larger estimate
/// were all ignored, it would come down one step per round of feedback and
/// the in-progress cap would hold the run to max_active / 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_shows_yes_at_once_is_soon_read_at_once() {
    let n = 400;
    let world = World::generate(&Generate {
        count: n,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 11,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let rate = 100;
    let (emu, _dir, path, journal) = fleet_journal(fast_config(rate), world, specs).await;
    let mut config = run_config(&emu.url, rate);
    config.verify_deadline = Duration::from_secs(30);
    config.verify_first_read = Duration::from_secs(2);
    config.max_active = 64;
    let stop = run_to_end(&journal, &config).await;
    assert_eq!(stop, None);
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let mut last: Vec<i64> = conn
        .prepare(
            "SELECT e.sent_at_ms - i.last_sent_at_ms FROM events e JOIN instances i ON i.instance_id = e.instance_id \
             WHERE e.kind = 'VerifiedEncrypted' ORDER BY e.id DESC LIMIT 100",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(last.len(), 100);
    last.sort_unstable();
    assert!(
        last[50] < 1000,
        "the last 100 instances were read back a median {} ms after their Open was sent",
        last[50]
    );
}

/// A new attempt's write-ahead forgets what the verification schedule knew of
/// the last attempt: otherwise a retried attempt's YES would be measured from
/// the old accept (minutes earlier) and inflate the endpoint's ceiling.
#[tokio::test]
async fn a_new_attempt_forgets_the_last_ones_schedule() {
    use runner::steps::{execute, Active, Ctx, Next, Step};
    let id = "cdb-forget01";
    let (emu, _dir, _path, journal) = one_instance_journal(id).await;
    let config = run_config(&emu.url, 20);
    let ctx = Arc::new(Ctx::new(
        journal.clone(),
        client(config.timeout),
        config,
        None,
    ));
    let rows = journal
        .query(|c| fleetcrypt::journal::load_active(c, 0, 10))
        .await
        .unwrap();
    let a = Active::from_row(
        &rows[0],
        fleetcrypt::api::Endpoint::parse(&emu.url).unwrap(),
        None,
    );
    let gate: Arc<dyn fleetcrypt::api::Gate> = Arc::new(OpenGate);
    // The preflight NO clears the way for an attempt.
    let r = execute(ctx.clone(), a, Step::PreflightRead, gate.clone()).await;
    assert!(
        matches!(r.next, Next::After(Step::Features, _)),
        "{:?}",
        r.next
    );
    let mut a = r.active;
    // As if an earlier attempt had been accepted long ago and its first read missed.
    a.accepted_at = Some(std::time::Instant::now() - Duration::from_secs(300));
    a.first_read = Some(Duration::from_secs(10));
    a.missed_first = true;
    let r = execute(ctx.clone(), a, Step::WriteAhead, gate).await;
    assert!(matches!(r.next, Next::After(Step::Send, _)), "{:?}", r.next);
    assert_eq!(
        (
            r.active.accepted_at,
            r.active.first_read,
            r.active.missed_first
        ),
        (None, None, false)
    );
}

/// A first verification read that fails (here: no connection) teaches the
/// schedule nothing: the read after it comes later than planned, so it is not
/// counted as the first read at the schedule's delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_read_teaches_the_schedule_nothing() {
    use runner::steps::{execute, Active, Ctx, Next, Step};
    let id = "cdb-fail0001";
    let (emu, _dir, _path, journal) = one_instance_journal(id).await;
    let config = run_config(&emu.url, 20);
    let ctx = Arc::new(Ctx::new(
        journal.clone(),
        client(config.timeout),
        config,
        None,
    ));
    let rows = journal
        .query(|c| fleetcrypt::journal::load_active(c, 0, 10))
        .await
        .unwrap();
    let cdb = fleetcrypt::api::Endpoint::parse(&emu.url).unwrap();
    let mut a = Active::from_row(&rows[0], cdb.clone(), None);
    let gate: Arc<dyn fleetcrypt::api::Gate> = Arc::new(OpenGate);
    for step in [Step::PreflightRead, Step::WriteAhead, Step::Send] {
        a = execute(ctx.clone(), a, step, gate.clone()).await.active;
    }
    assert!(a.first_read.is_some(), "the Open was not accepted");
    a.cdb = fleetcrypt::api::Endpoint::parse("http://127.0.0.1:1").unwrap();
    let r = execute(ctx.clone(), a, Step::VerifyRead, gate.clone()).await;
    assert!(
        matches!(r.next, Next::After(Step::VerifyRead, _)),
        "{:?}",
        r.next
    );
    assert_eq!(r.active.read_failures, 1);
    assert_eq!(r.active.first_read, None);
}

/// Issue 11's ramp: an endpoint starts with `ramp_start` Opens unanswered at a
/// time, and each accepted answer allows one more. With Opens taking 800 ms
/// to answer (inside the 1 s timeout), the first round sees exactly two Opens
/// (without the ramp, the preflight reads would have let about twenty go),
/// the second three or four; by the end every instance is encrypted, nothing
/// sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_ramp_up_as_answers_succeed() {
    let n = 40;
    let world = World::generate(&Generate {
        count: n,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 13,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let rate = 40;
    let mut cfg = fast_config(rate);
    cfg.latency.insert(
        OPEN_DB_INSTANCE_ENCRYPTION.into(),
        fleetcrypt::emulator::Latency::fixed(Duration::from_millis(800)),
    );
    let (emu, _dir, path, journal) = fleet_journal(cfg, world, specs).await;
    let mut config = run_config(&emu.url, rate);
    config.rollout.ramp_start = Some(2);
    let stop = run_to_end(&journal, &config).await;
    assert_eq!(stop, None);
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let sends: Vec<i64> = conn
        .prepare(
            "SELECT sent_at_ms FROM events WHERE action = 'OpenDBInstanceEncryption' AND sent_at_ms IS NOT NULL ORDER BY sent_at_ms",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(sends.len(), n, "one Open per instance");
    let first_second = sends.iter().filter(|t| **t < sends[0] + 700).count();
    assert_eq!(first_second, 2, "Opens in the first 700 ms: {sends:?}");
    // Each accepted answer allowed one more: the second second has up to four.
    let second = sends
        .iter()
        .filter(|t| **t >= sends[0] + 700 && **t < sends[0] + 1500)
        .count();
    assert!(
        (3..=4).contains(&second),
        "second second: {second}: {sends:?}"
    );
    let truth = emu.truth();
    assert!(truth.instances.values().all(|i| i.encrypted));
    assert_eq!(truth.total_blind_open_calls(), 0);
}

/// The maintenance window closes during the run (issue 11): from its end on
/// no new attempt is written, what was in flight is finished, and the run
/// waits, paused ("window paused" milestone), until it is stopped. The window
/// here is built with second precision in UTC so it closes 3 s after start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attempt_is_written_after_the_window_closes() {
    use fleetcrypt::runner::rollout::{Window, WindowTz};
    let world = World::generate(&Generate {
        count: 80,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        share_custom_key: 0.0,
        share_replicas: 0.0,
        seed: 31,
        ..Generate::default()
    });
    let specs = specs_of(&world);
    let (emu, _dir, path, journal) = fleet_journal(fast_config(20), world, specs).await;
    // Rate 5: 80 preflight reads take 16 s, so Opens would go on well past 3 s.
    let mut config = run_config(&emu.url, 5);
    let start = chrono::Utc::now();
    let closes = start + chrono::Duration::seconds(3);
    config.rollout.window = Some(Window {
        start: (start - chrono::Duration::hours(1)).time(),
        end: closes.time(),
        tz: WindowTz::Named(chrono_tz::UTC),
    });
    let token = CancellationToken::new();
    let stopper = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(7)).await;
        stopper.cancel();
    });
    let stop = runner::run(
        &journal,
        &client(config.timeout),
        &config,
        None,
        token,
        Arc::new(Counters::default()),
    )
    .await
    .unwrap();
    assert_eq!(stop, Some(runner::StopReason::Interrupted));
    drop(journal);
    let conn = schema::open_reader(&path).unwrap();
    let written: Vec<i64> = conn
        .prepare("SELECT at_ms FROM events WHERE kind = 'AttemptWritten'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!written.is_empty(), "the window was open at the start");
    let closes_ms = closes.timestamp_millis();
    // An attempt decided just before the close may commit a moment after it
    // (its fsync): 500 ms of slack, far below the seconds a missed close costs.
    let late: Vec<i64> = written
        .iter()
        .filter(|t| **t > closes_ms + 500)
        .map(|t| t - closes_ms)
        .collect();
    assert!(
        late.is_empty(),
        "attempts written after the close (ms): {late:?}"
    );
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM instances WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(pending > 0, "the run did stop starting Opens");
    let paused = fleetcrypt::journal::read::rollout_events(&conn, None)
        .unwrap()
        .into_iter()
        .any(|(_, e)| matches!(e, fleetcrypt::model::RolloutEvent::WindowPaused { .. }));
    assert!(paused, "no WindowPaused milestone");
    // Every Open the server saw was journaled before it left.
    assert_eq!(emu.truth().total_open_calls(), written.len() as u64);
}
