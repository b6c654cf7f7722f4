//! The real binary against the emulator (in this test process, on its own
//! runtime): exit codes, crash safety and what reaches the terminal.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use fleetcrypt::api::cdb::*;
use fleetcrypt::emulator::{Faults, Generate, World};

fn run_args(fleet: &Path, rate: u32) -> Vec<String> {
    let mut v = vec![
        "run".to_string(),
        "--instances".into(),
        fleet.display().to_string(),
        "--rate".into(),
        rate.to_string(),
    ];
    v.extend(FAST.iter().map(|s| s.to_string()));
    v
}

#[test]
fn bad_input_sends_nothing_and_exits_2() {
    let emu = EmulatorThread::start(fast_config(20), World::default());
    let env = Env::new(&emu.url);
    let fleet = env.dir.path().join("bad.csv");
    std::fs::write(
        &fleet,
        "InstanceId,Region,KeyId\ncdb-abcd1234,ap-guangzhou,\ncdb-BAD,ap-guangzhou,\ncdb-efgh5678,ap-mars,\ncdb-ijkl9012,ap-guangzhou,key-without-region\n",
    )
    .unwrap();
    let mut c = env.cmd(SECRET_KEY);
    c.args(run_args(&fleet, 20));
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("bad.csv:3:"), "{t}");
    assert!(t.contains("bad.csv:4:"), "{t}");
    assert!(t.contains("bad.csv:5:"), "{t}");
    assert!(t.contains("nothing was sent"), "{t}");
    assert_eq!(emu.truth().requests_total, 0);
    assert!(
        !env.journal().exists(),
        "bad input must not even create the journal"
    );
}

#[test]
fn missing_credentials_exit_3_and_name_the_places() {
    let emu = EmulatorThread::start(fast_config(20), World::default());
    let env = Env::new(&emu.url);
    let fleet = env.dir.path().join("f.txt");
    std::fs::write(&fleet, "cdb-abcd1234 ap-guangzhou\n").unwrap();
    let mut c = env.cmd(SECRET_KEY);
    c.env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY");
    c.args(run_args(&fleet, 20));
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    for place in [
        "~/.tccli/NAME.credential",
        "TENCENTCLOUD_SECRET_ID",
        "~/.tencentcloud/credentials",
    ] {
        assert!(t.contains(place), "{t}");
    }
    assert_eq!(emu.truth().requests_total, 0);
}

#[test]
fn wrong_secret_stops_the_run_at_once_with_exit_3() {
    let world = World::generate(&Generate {
        count: 200,
        seed: 3,
        ..Generate::default()
    });
    let emu = EmulatorThread::start(fast_config(20), world.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&world);
    let wrong = "wrong-secret-value-123";
    let mut c = env.cmd(wrong);
    c.args(run_args(&fleet, 20));
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("AuthFailure.SignatureFailure"), "{t}");
    assert!(!t.contains(wrong), "the secret leaked: {t}");
    let truth = emu.truth();
    assert!(
        truth.requests_total <= 3,
        "sent {} requests",
        truth.requests_total
    );
    // Nothing failed because of it: every instance is still open for a corrected run.
    let j = report_json(&env);
    assert_eq!(j["summary"]["failed"], 0);
    assert!(!std::fs::read(env.journal())
        .unwrap()
        .windows(wrong.len())
        .any(|w| w == wrong.as_bytes()));
}

#[test]
fn call_prints_the_response_and_rejects_a_wrong_key() {
    let mut world = World::default();
    world.add_instance(fleetcrypt::emulator::Instance::new(
        "cdb-abcd1234",
        "ap-guangzhou",
    ));
    let emu = EmulatorThread::start(fast_config(20), world);
    let env = Env::new(&emu.url);
    let mut c = env.cmd(SECRET_KEY);
    c.args([
        "call",
        "cdb",
        "DescribeDBInstanceInfo",
        r#"{"InstanceId":"cdb-abcd1234"}"#,
        "--region",
        "ap-guangzhou",
    ]);
    let o = output(c);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Encryption"], "NO");
    let mut c = env.cmd("not-the-key");
    c.args([
        "call",
        "cdb",
        "DescribeDBInstanceInfo",
        r#"{"InstanceId":"cdb-abcd1234"}"#,
        "--region",
        "ap-guangzhou",
    ]);
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("AuthFailure.SignatureFailure"), "{t}");
    assert!(!t.contains("not-the-key"), "{t}");
}

#[test]
fn sigint_drains_exits_130_and_resume_completes() {
    let world = World::generate(&Generate {
        count: 300,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 11,
        ..Generate::default()
    });
    let emu = EmulatorThread::start(fast_config(20), world.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&world);
    let mut c = env.cmd(SECRET_KEY);
    c.args(run_args(&fleet, 20))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    // Beside a live run: status reads, a second run is refused.
    let mut s = env.cmd(SECRET_KEY);
    s.args(["status", "--json"]);
    let o = output(s);
    assert!(o.status.success(), "{}", text(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["total"], 300);
    assert_eq!(status["running"], true);
    let mut second = env.cmd(SECRET_KEY);
    second.args(run_args(&fleet, 20));
    let o = output(second);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("another fleetcrypt process"),
        "{}",
        text(&o)
    );

    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(wait_exit(&mut child, Duration::from_secs(20)), 130);
    let j = report_json(&env);
    assert!(
        j["summary"]["pending"].as_u64().unwrap() > 0,
        "interrupted too late to test anything"
    );

    let mut r = env.cmd(SECRET_KEY);
    r.arg("resume").args(FAST).args(["--rate", "20"]);
    let o = output(r);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = report_json(&env);
    assert_eq!(j["summary"]["pending"], 0);
    assert_eq!(j["summary"]["failed"], 0);
    let truth = emu.truth();
    assert_eq!(truth.total_blind_open_calls(), 0);
    assert!(truth.action(OPEN_DB_INSTANCE_ENCRYPTION).max_in_1s_window <= 20);
    assert!(truth.action(DESCRIBE_DB_INSTANCE_INFO).max_in_1s_window <= 20);
    // status shows how the read quota went, across both processes (issue 10).
    let mut s = env.cmd(SECRET_KEY);
    s.args(["status", "--json"]);
    let o = output(s);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let v = &status["verification"];
    let reads = truth.action(DESCRIBE_DB_INSTANCE_INFO).seen;
    assert_eq!(v["describe_reads"], reads, "{v}");
    assert!((v["reads_per_instance"].as_f64().unwrap() - reads as f64 / 300.0).abs() < 0.001);
    let delays = v["delay_to_yes_ms"].as_object().unwrap();
    assert_eq!(delays.len(), 1, "{v}");
    let mut s = env.cmd(SECRET_KEY);
    s.arg("status");
    let t = text(&output(s));
    assert!(
        t.contains(&format!(
            "verification: {reads} DescribeDBInstanceInfo read(s)"
        )),
        "{t}"
    );
    assert!(t.contains("delay to YES at "), "{t}");
}

/// The chaos test: a 30 % mix of every Open fault (late applies included), failed
/// reads, `Encryption: ""` after each apply and slow connection set-up, and
/// SIGKILL at random moments (5 here; `FLEETCRYPT_CHAOS_KILLS=20` for the long
/// run, see README), rerun on the same journal each time: same final result as
/// the ground truth, nothing lost, no Open re-sent blind or overlapping another,
/// the rate held across restarts, and the event chain intact.
#[test]
fn kill_9_at_random_moments_loses_nothing_and_resends_nothing_blind() {
    let kills: usize = std::env::var("FLEETCRYPT_CHAOS_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let world = World::generate(&Generate {
        count: 400.max(kills * 40),
        seed: 5,
        ..Generate::default()
    });
    let rate = 40;
    let mut cfg = fast_config(rate);
    cfg.faults = Faults::mixed(0.3);
    cfg.blank_after_apply = Duration::from_millis(200);
    let emu = EmulatorThread::start(cfg, world.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&world);
    let seed: u64 = std::env::var("FLEETCRYPT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill moments seed {seed} (FLEETCRYPT_TEST_SEED to repeat)");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let mut killed = 0;
    for round in 0..kills {
        let mut c = env.cmd(SECRET_KEY);
        c.env("FLEETCRYPT_FAULT_CONNECT_DELAY_MS", "100")
            .args(run_args(&fleet, rate))
            .args(NO_BUDGET)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        let ms = rand::Rng::random_range(&mut rng, 300..3500);
        std::thread::sleep(Duration::from_millis(ms));
        if child.try_wait().unwrap().is_some() {
            eprintln!("round {round}: finished before the kill");
            break;
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        killed += 1;
        eprintln!("round {round}: killed after {ms} ms");
    }
    let mut c = env.cmd(SECRET_KEY);
    c.args(run_args(&fleet, rate)).args(NO_BUDGET);
    let o = output(c);
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", text(&o));

    let j = report_json(&env);
    let truth = emu.truth();
    assert_eq!(j["summary"]["pending"], 0, "instances left unfinished");
    let instances = j["instances"].as_array().unwrap();
    assert_eq!(instances.len(), specs_of(&world).len(), "instances lost");
    for i in instances {
        let id = i["instance_id"].as_str().unwrap();
        let t = &truth.instances[id];
        match i["state"].as_str().unwrap() {
            "encrypted" => assert!(t.encrypted, "{id}"),
            "already_encrypted" => assert!(t.encrypted && t.open_calls == 0, "{id}"),
            "failed" => assert!(
                !t.encrypted,
                "{id}: failed but encrypted ({})",
                i["last_error_code"]
            ),
            s => panic!("{id} ended {s}"),
        }
    }
    assert_eq!(
        truth.total_blind_open_calls(),
        0,
        "an Open was re-sent without a settled NO read"
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
        let seen = truth.action(a).max_in_1s_window;
        assert!(
            seen <= rate as usize,
            "{a}: {seen} in one second across restarts"
        );
    }
    let mut v = env.cmd(SECRET_KEY);
    v.args(["journal", "verify"]);
    let o = output(v);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    eprintln!(
        "chaos: {killed}/{kills} kills, {} instances, 0 lost, 0 pending, {} blind / {} overlapping Opens, {} Opens on encrypted, busiest second {:?} (rate {rate}), chain: {}",
        instances.len(),
        truth.total_blind_open_calls(),
        truth.total_overlapping_open_calls(),
        truth.total_open_calls_when_encrypted(),
        truth
            .actions
            .iter()
            .map(|(a, t)| (a.as_str(), t.max_in_1s_window))
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&o.stdout).trim()
    );
}

#[test]
fn journal_verify_names_the_first_tampered_event() {
    let world = World::generate(&Generate {
        count: 20,
        seed: 8,
        ..Generate::default()
    });
    let emu = EmulatorThread::start(fast_config(40), world.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&world);
    let mut c = env.cmd(SECRET_KEY);
    c.args(run_args(&fleet, 40));
    let o = output(c);
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", text(&o));
    let mut v = env.cmd(SECRET_KEY);
    v.args(["journal", "verify"]);
    let o = output(v);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // Someone marks an instance failed by hand, without an event: caught too.
    let backup = env.dir.path().join("backup.db");
    std::fs::copy(env.journal(), &backup).unwrap();
    let conn = rusqlite::Connection::open(env.journal()).unwrap();
    conn.execute_batch("UPDATE instances SET state = 'failed' WHERE seq = 1;")
        .unwrap();
    drop(conn);
    let mut v = env.cmd(SECRET_KEY);
    v.args(["journal", "verify"]);
    let o = output(v);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("the instances table was edited"),
        "{}",
        text(&o)
    );
    std::fs::copy(&backup, env.journal()).unwrap();
    // Someone moves an event in time by a millisecond.
    let conn = rusqlite::Connection::open(env.journal()).unwrap();
    conn.execute_batch("DROP TRIGGER events_are_append_only_update; UPDATE events SET at_ms = at_ms + 1 WHERE id = 7;")
        .unwrap();
    drop(conn);
    let mut v = env.cmd(SECRET_KEY);
    v.args(["journal", "verify"]);
    let o = output(v);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("BROKEN at event 7"), "{}", text(&o));
}

#[test]
fn an_unreachable_endpoint_stops_the_run_quickly_and_fails_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let env = Env::new(&dead);
    let world = World::generate(&Generate {
        count: 500,
        seed: 2,
        ..Generate::default()
    });
    let fleet = env.write_fleet(&world);
    let mut c = env.cmd(SECRET_KEY);
    c.args(run_args(&fleet, 20))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // Without the stop, 500 instances x 16 retries at 20/s would take minutes.
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert_eq!(code, 1, "{t}");
    assert!(t.contains("cannot reach the API"), "{t}");
    let j = report_json(&env);
    assert_eq!(
        j["summary"]["failed"], 0,
        "nothing may be failed for a network problem"
    );
    assert_eq!(j["summary"]["pending"], 500);
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_resume_is_still_safe() {
    let world = World::generate(&Generate {
        count: 120,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        seed: 12,
        ..Generate::default()
    });
    let mut cfg = fast_config(40);
    // Half the Opens hang (half of those applied): the first Ctrl-C's drain would wait them out.
    cfg.faults.hang = 0.25;
    cfg.faults.hang_applied = 0.25;
    cfg.hang_for = Duration::from_secs(6);
    let emu = EmulatorThread::start(cfg, world.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&world);
    let mut c = env.cmd(SECRET_KEY);
    c.args([
        "run",
        "--instances",
        fleet.to_str().unwrap(),
        "--rate",
        "40",
        "--yes",
    ])
    .args([
        "--timeout",
        "4s",
        "--settle",
        "7s",
        "--allow-short-settle",
        "--verify-deadline",
        "25s",
    ])
    .args(NO_BUDGET)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first Ctrl-C drains, it does not exit"
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 130);

    // The resume's own Opens hang too: its window must cover the 6.4 s worst case.
    let mut r = env.cmd(SECRET_KEY);
    r.arg("resume").args(NO_BUDGET).args([
        "--rate",
        "40",
        "--timeout",
        "1s",
        "--settle",
        "7s",
        "--allow-short-settle",
        "--verify-deadline",
        "5s",
        "--yes",
    ]);
    let o = output(r);
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", text(&o));
    let j = report_json(&env);
    assert_eq!(j["summary"]["pending"], 0);
    let truth = emu.truth();
    assert_eq!(truth.total_blind_open_calls(), 0);
    assert_eq!(truth.total_overlapping_open_calls(), 0);
    assert_eq!(truth.total_open_calls_when_encrypted(), 0);
    for i in j["instances"].as_array().unwrap() {
        let id = i["instance_id"].as_str().unwrap();
        if i["state"] == "failed" {
            assert!(!truth.instances[id].encrypted, "{id}");
        } else {
            assert!(truth.instances[id].encrypted, "{id}");
        }
    }
}

#[test]
fn standard_input_is_read_twice_through_a_spool() {
    use std::io::Write;
    let world = World::generate(&Generate {
        count: 30,
        seed: 31,
        ..Generate::default()
    });
    let emu = EmulatorThread::start(fast_config(40), world.clone());
    let env = Env::new(&emu.url);
    let mut csv = String::from("InstanceId,Region,Owner\r\n");
    for s in specs_of(&world) {
        csv.push_str(&format!("{},{},ops\r\n", s.id, s.region));
    }
    let first = specs_of(&world)[0].clone();
    csv.push_str(&format!("{},{},ops\r\n", first.id, first.region)); // exact duplicate: merged
    let mut c = env.cmd(SECRET_KEY);
    c.args(["run", "--instances", "-", "--rate", "40"])
        .args(FAST)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csv.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(matches!(o.status.code(), Some(0) | Some(1)), "{}", text(&o));
    let j = report_json(&env);
    assert_eq!(j["summary"]["total"], 30);
    assert_eq!(j["summary"]["pending"], 0);
    assert_eq!(j["instances"][0]["labels"]["Owner"], "ops");
}
