//! The emulator's "Safety v2" backend behaviours, seen through the real client:
//! an Open that hangs and applies at the end of the hang (`hang-late`),
//! `Encryption` reading `""` for a while after an apply (`blank_after_apply`),
//! and the ground truth of overlapping Opens.

use std::time::{Duration, Instant};

use fleetcrypt::api::cdb::*;
use fleetcrypt::api::{Client, ClientOptions, Credentials, Endpoint, Failure, Service};
use fleetcrypt::emulator::{Emulator, EmulatorConfig, Faults, Instance, World};
use serde_json::{json, Value};

const ID: &str = "AKIDtest0123456789";
const KEY: &str = "emulator-secret-key";
const INST: &str = "cdb-abcd1234";
const OTHER: &str = "cdb-other001";

async fn start(config: EmulatorConfig) -> Emulator {
    let mut world = World::default();
    world.add_instance(Instance::new(INST, "ap-guangzhou"));
    world.add_instance(Instance::new(OTHER, "ap-guangzhou"));
    let config = EmulatorConfig {
        credentials: vec![(ID.into(), fleetcrypt::api::Secret::new(KEY))],
        ..config
    };
    Emulator::start(config, world, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(timeout: Duration) -> Client {
    Client::new(
        Credentials::new(ID, KEY),
        &ClientOptions {
            timeout,
            ..ClientOptions::default()
        },
    )
    .unwrap()
}

fn with_fault(name: &str, hang_for: Duration) -> EmulatorConfig {
    let mut faults = Faults::default();
    faults.set(name, 1.0).unwrap();
    EmulatorConfig {
        faults,
        hang_for,
        ..EmulatorConfig::default().instant()
    }
}

async fn open(c: &Client, ep: &Endpoint, id: &str) -> Result<Value, Failure> {
    c.call_raw(
        ep,
        Service::Cdb,
        OPEN_DB_INSTANCE_ENCRYPTION,
        Some("ap-guangzhou"),
        &json!({ "InstanceId": id }),
    )
    .await
    .result
    .map(|a| a.data)
}

/// The raw `Encryption` value, exactly as sent (not through the typed response).
async fn encryption(c: &Client, ep: &Endpoint, id: &str) -> String {
    let r = c
        .call_raw(
            ep,
            Service::Cdb,
            DESCRIBE_DB_INSTANCE_INFO,
            Some("ap-guangzhou"),
            &json!({ "InstanceId": id }),
        )
        .await;
    match r.result {
        Ok(a) => a.data["Encryption"]
            .as_str()
            .unwrap_or_else(|| panic!("Encryption is not a string: {}", a.data))
            .to_string(),
        Err(e) => panic!("{e:?}"),
    }
}

async fn state_json(emu: &Emulator) -> Value {
    let body = reqwest::get(format!("{}/__emulator/state", emu.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn sleep_until(t: Instant) {
    tokio::time::sleep_until(t.into()).await;
}

/// hang-late: the client times out, a read during the hang says NO, the backend
/// applies at the end of the hang anyway, and a second Open sent meanwhile is
/// an overlapping (and blind) Open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_late_applies_after_the_client_gave_up() {
    let hang = Duration::from_millis(800);
    let emu = start(with_fault("hang-late", hang)).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let impatient = client(Duration::from_millis(200));
    let reader = client(Duration::from_secs(5));

    let t0 = Instant::now();
    match open(&impatient, &ep, INST).await {
        Err(Failure::NoAnswer(_)) => {}
        other => panic!("the client must time out during the hang: {other:?}"),
    }
    assert!(t0.elapsed() < hang, "timed out before the hang ended");
    assert_eq!(
        encryption(&reader, &ep, INST).await,
        "NO",
        "nothing applied during the hang"
    );
    assert!(
        !emu.ground_truth().instances[INST].encrypted,
        "not applied at the start of the hang"
    );

    // A second Open while the first is still hanging (it hangs too).
    match open(&impatient, &ep, INST).await {
        Err(Failure::NoAnswer(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        t0.elapsed() < hang,
        "the second Open arrived during the hang"
    );
    let truth = emu.ground_truth();
    let i = &truth.instances[INST];
    assert_eq!(i.open_calls, 2);
    assert_eq!(i.overlapping_open_calls, 1);
    assert_eq!(
        i.blind_open_calls, 1,
        "a NO read while an Open is in progress is not a settled NO"
    );
    assert_eq!(truth.total_overlapping_open_calls(), 1);
    assert_eq!(truth.total_open_calls_when_encrypted(), 0);
    assert_eq!(truth.total_blind_open_calls(), 1);

    // After the first hang: applied, although nobody was listening any more.
    sleep_until(t0 + hang + Duration::from_millis(150)).await;
    assert_eq!(encryption(&reader, &ep, INST).await, "YES");
    assert!(emu.ground_truth().instances[INST].encrypted);

    // Once the second hang is over too, a third Open overlaps nothing.
    sleep_until(t0 + 2 * hang + Duration::from_millis(100)).await;
    match open(&reader, &ep, INST).await {
        Err(Failure::Api { code, .. }) => assert_eq!(code, "OperationDenied"),
        other => panic!("{other:?}"),
    }
    let truth = emu.ground_truth();
    let i = &truth.instances[INST];
    assert_eq!(i.open_calls, 3);
    assert_eq!(
        i.overlapping_open_calls, 1,
        "the third Open overlaps nothing"
    );
    assert_eq!(i.open_calls_when_encrypted, 1);
    assert_eq!(truth.total_overlapping_open_calls(), 1);
    assert_eq!(truth.total_open_calls_when_encrypted(), 1);
    assert_eq!(truth.instances[OTHER].overlapping_open_calls, 0);

    let state = state_json(&emu).await;
    assert_eq!(
        state["instances"][INST]["overlapping_open_calls"], 1,
        "{state}"
    );
    assert_eq!(state["instances"][OTHER]["overlapping_open_calls"], 0);
    assert_eq!(state["instances"][INST]["open_calls_when_encrypted"], 1);
    assert_eq!(state["instances"][INST]["blind_open_calls"], 2);
}

/// A client that waits the hang out gets InternalError, with the change applied.
#[tokio::test]
async fn hang_late_answers_internal_error_to_a_patient_client() {
    let hang = Duration::from_millis(300);
    let emu = start(with_fault("hang-late", hang)).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let patient = client(Duration::from_secs(5));
    let t0 = Instant::now();
    match open(&patient, &ep, INST).await {
        Err(Failure::Api { code, .. }) => assert_eq!(code, "InternalError"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() >= hang, "answered only after the hang");
    assert!(emu.ground_truth().instances[INST].encrypted);
    assert_eq!(encryption(&patient, &ep, INST).await, "YES");
}

/// A NO read counts as settled only once no Open is in progress: during a hang
/// (nothing applied) it does not, after it it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_read_during_a_hang_is_not_a_settled_no() {
    let hang = Duration::from_millis(500);
    let emu = start(with_fault("hang", hang)).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let impatient = client(Duration::from_millis(150));
    let reader = client(Duration::from_secs(5));
    let t0 = Instant::now();
    assert!(matches!(
        open(&impatient, &ep, INST).await,
        Err(Failure::NoAnswer(_))
    ));
    assert_eq!(encryption(&reader, &ep, INST).await, "NO");
    // After the hang, a NO read is settled: the next Open is not blind.
    sleep_until(t0 + hang + Duration::from_millis(100)).await;
    assert_eq!(encryption(&reader, &ep, INST).await, "NO");
    let t1 = Instant::now();
    assert!(matches!(
        open(&impatient, &ep, INST).await,
        Err(Failure::NoAnswer(_))
    ));
    let i = emu.ground_truth().instances[INST].clone();
    assert_eq!((i.open_calls, i.blind_open_calls), (2, 0));
    assert_eq!(i.overlapping_open_calls, 0);
    // During the second hang: a NO read does not clear the way for a third Open.
    assert_eq!(encryption(&reader, &ep, INST).await, "NO");
    assert!(t1.elapsed() < hang, "still within the second hang");
    assert!(matches!(
        open(&impatient, &ep, INST).await,
        Err(Failure::NoAnswer(_))
    ));
    let i = emu.ground_truth().instances[INST].clone();
    assert_eq!(i.open_calls, 3);
    assert_eq!(i.blind_open_calls, 1);
    assert_eq!(i.overlapping_open_calls, 1);
    assert!(!i.encrypted);
}

/// An Open whose InternalError answer came back is still being worked on while
/// its background apply is pending: an Open arriving then overlaps it.
#[tokio::test]
async fn an_open_during_a_pending_background_apply_overlaps() {
    let mut config = with_fault("internal-applied", Duration::from_secs(1));
    config.apply_within = Duration::from_secs(60);
    let emu = start(config).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let c = client(Duration::from_secs(5));
    match open(&c, &ep, INST).await {
        Err(Failure::Api { code, .. }) => assert!(code.starts_with("InternalError"), "{code}"),
        other => panic!("{other:?}"),
    }
    // Applied within a random 0..60 s: with the fixed seed, not within milliseconds.
    assert!(!emu.ground_truth().instances[INST].encrypted);
    assert!(open(&c, &ep, INST).await.is_err());
    let truth = emu.ground_truth();
    assert_eq!(truth.instances[INST].open_calls, 2);
    assert_eq!(truth.instances[INST].overlapping_open_calls, 1);
    assert_eq!(truth.total_overlapping_open_calls(), 1);
}

/// blank-after-apply: `Encryption` reads `""` right after the apply, YES after.
#[tokio::test]
async fn encryption_reads_blank_after_the_apply_then_yes() {
    let blank = Duration::from_millis(400);
    let emu = start(EmulatorConfig {
        blank_after_apply: blank,
        ..EmulatorConfig::default().instant()
    })
    .await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let c = client(Duration::from_secs(5));
    assert_eq!(encryption(&c, &ep, INST).await, "NO");
    let t0 = Instant::now();
    open(&c, &ep, INST).await.unwrap();
    assert_eq!(encryption(&c, &ep, INST).await, "");
    assert!(t0.elapsed() < blank, "read within the blank period");
    assert_eq!(
        encryption(&c, &ep, OTHER).await,
        "NO",
        "an instance not encrypted reads NO"
    );
    // The typed response carries the empty string through, never a NO.
    let typed = c
        .call::<_, DescribeDBInstanceInfoResponse>(
            &ep,
            Service::Cdb,
            DESCRIBE_DB_INSTANCE_INFO,
            Some("ap-guangzhou"),
            &InstanceIdRequest {
                instance_id: INST.into(),
            },
        )
        .await
        .result
        .unwrap();
    assert_eq!(typed.data.encryption, "");
    sleep_until(t0 + blank + Duration::from_millis(100)).await;
    assert_eq!(encryption(&c, &ep, INST).await, "YES");
}

/// With a propagation delay longer than the blank: "", then NO, then YES.
#[tokio::test]
async fn blank_then_the_normal_propagation_rule() {
    let ms = Duration::from_millis;
    let emu = start(EmulatorConfig {
        blank_after_apply: ms(200),
        propagation: fleetcrypt::emulator::Latency::fixed(ms(600)),
        ..EmulatorConfig::default().instant()
    })
    .await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    let c = client(Duration::from_secs(5));
    let t0 = Instant::now();
    open(&c, &ep, INST).await.unwrap();
    assert_eq!(encryption(&c, &ep, INST).await, "");
    assert!(t0.elapsed() < ms(200));
    sleep_until(t0 + ms(350)).await;
    assert_eq!(encryption(&c, &ep, INST).await, "NO");
    sleep_until(t0 + ms(700)).await;
    assert_eq!(encryption(&c, &ep, INST).await, "YES");
}

#[tokio::test]
async fn state_serves_overlapping_open_calls() {
    let emu = start(EmulatorConfig::default().instant()).await;
    let ep = Endpoint::parse(&emu.url()).unwrap();
    open(&client(Duration::from_secs(5)), &ep, INST)
        .await
        .unwrap();
    let state = state_json(&emu).await;
    let i = &state["instances"][INST];
    for field in [
        "overlapping_open_calls",
        "open_calls_when_encrypted",
        "blind_open_calls",
        "open_calls",
    ] {
        assert!(i[field].is_u64(), "{field} missing: {state}");
    }
    assert_eq!(i["overlapping_open_calls"], 0);
    assert_eq!(i["encrypted"], true);
}
