//! Several accounts in one run (issue 12), with the real binary against one
//! emulator that accepts two credentials and shows each instance to its own
//! account only (any other credential is told it does not exist), as the
//! real service does. Each input row names a tccli profile in `Account`.

mod common;

use std::path::PathBuf;

use common::*;
use fleetcrypt::emulator::World;

const SECOND_ID: &str = "AKIDsecond0123456789";
const SECOND_KEY: &str = "second-secret-key-do-not-print";

/// `count` plain masters, the first half owned by the test credential
/// (profile `alpha`), the rest by the second one (profile `beta`).
fn two_account_world(count: usize) -> World {
    let mut world = plain_world(count, 12);
    for (n, i) in world.instances.values_mut().enumerate() {
        i.owner = Some(if n < count / 2 { SECRET_ID } else { SECOND_ID }.to_string());
    }
    world
}

fn emulator(world: World) -> EmulatorThread {
    EmulatorThread::start(
        fleetcrypt::emulator::EmulatorConfig {
            credentials: vec![
                (SECRET_ID.into(), fleetcrypt::api::Secret::new(SECRET_KEY)),
                (SECOND_ID.into(), fleetcrypt::api::Secret::new(SECOND_KEY)),
            ],
            ..fast_config(20)
        },
        world,
    )
}

/// The tccli profiles `alpha` (the test pair) and `beta` (the second pair,
/// or `beta_key` in its place) in the scratch HOME.
fn write_profiles(env: &Env, beta_key: &str) {
    let dir = env.dir.path().join(".tccli");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, id, key) in [
        ("alpha", SECRET_ID, SECRET_KEY),
        ("beta", SECOND_ID, beta_key),
    ] {
        std::fs::write(
            dir.join(format!("{name}.credential")),
            format!(r#"{{"secretId": "{id}", "secretKey": "{key}"}}"#),
        )
        .unwrap();
    }
}

/// The fleet with an `Account` column naming each instance's owner's profile.
fn write_fleet(env: &Env, world: &World) -> PathBuf {
    let path = env.dir.path().join("fleet.csv");
    let mut s = String::from("InstanceId,Region,Account,Name\n");
    for i in world.instances.values() {
        let account = if i.owner.as_deref() == Some(SECRET_ID) {
            "alpha"
        } else {
            "beta"
        };
        s.push_str(&format!("{},{},{account},{}\n", i.id, i.region, i.name));
    }
    std::fs::write(&path, s).unwrap();
    path
}

fn run(env: &Env, fleet: &std::path::Path) -> std::process::Command {
    let mut c = env.cmd(SECRET_KEY);
    c.args(["run", "--instances"])
        .arg(fleet)
        .args(["--rate", "20"])
        .args(FAST);
    c
}

/// Acceptance: two accounts, 200 instances, one emulator with the documented
/// limit of 20 per second per (action, Host, SecretId). Every instance ends
/// encrypted (so each was worked on with its own account's credentials: the
/// other account's would have been told it does not exist); no credential's
/// window ever exceeded 20, while the two together went well past 20 on the
/// one endpoint, so they ran at once, each on its own quota. The report and
/// `status` count both accounts. (The wall-time ratio against one account is
/// measured by `bench -- accounts`, not timed here.)
#[test]
fn two_accounts_run_at_once_each_within_its_own_quota() {
    let world = two_account_world(200);
    let emu = emulator(world.clone());
    let env = Env::new(&emu.url);
    write_profiles(&env, SECOND_KEY);
    let fleet = write_fleet(&env, &world);
    let mut c = run(&env, &fleet);
    c.arg("-v");
    let o = output(c);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    // Each profile's key signs, and is never written: not in the -v log
    // (which names where each account's credentials came from), not in the
    // journal.
    assert!(log.contains("beta.credential"), "{log}");
    assert!(!log.contains(SECOND_KEY) && !log.contains(SECRET_KEY));
    let journal = std::fs::read(env.journal()).unwrap();
    let journal = String::from_utf8_lossy(&journal);
    assert!(!journal.contains(SECOND_KEY) && journal.contains("account beta"));

    let truth = emu.truth();
    for (action, t) in &truth.actions {
        assert_eq!(t.throttled, 0, "{action}: {t:?}");
        assert!(t.max_in_1s_window <= 20, "{action}: {t:?}");
    }
    let describe = truth.action("DescribeDBInstanceInfo");
    assert!(
        describe.max_in_1s_window_all_credentials >= 30,
        "the two accounts did not use their quotas at once: {describe:?}"
    );
    assert_eq!(truth.total_blind_open_calls(), 0);
    for (id, i) in &truth.instances {
        assert_eq!(i.open_calls, 1, "{id}: {i:?}");
    }

    let report = report_json(&env);
    assert_eq!(report["summary"]["encrypted"], 200, "{report}");
    let accounts: Vec<(String, u64, u64)> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap().to_string(),
                a["total"].as_u64().unwrap(),
                a["encrypted"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        accounts,
        vec![("alpha".into(), 100, 100), ("beta".into(), 100, 100)]
    );
    // Each instance says which account it belongs to; the window the report
    // shows is per account, within the limit.
    let first = &report["instances"][0];
    assert!(
        first["account"] == "alpha" || first["account"] == "beta",
        "{first}"
    );
    let windows = report["rate"]["max_requests_in_1s_window"]
        .as_object()
        .unwrap();
    assert!(
        windows.values().all(|n| n.as_u64().unwrap() <= 20),
        "{windows:?}"
    );

    let mut c = env.cmd(SECRET_KEY);
    c.args(["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&output(c).stdout).unwrap();
    assert_eq!(status["accounts"][1]["account"], "beta", "{status}");
    assert_eq!(status["accounts"][1]["encrypted"], 100, "{status}");
    let mut c = env.cmd(SECRET_KEY);
    c.arg("status");
    let shown = text(&output(c));
    assert!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("alpha") && l.contains("100")),
        "{shown}"
    );
    let mut c = env.cmd(SECRET_KEY);
    c.args(["report", "--format", "md"]);
    let md = text(&output(c));
    assert!(
        md.contains("## Accounts") && md.contains("| beta | 100 |"),
        "{md}"
    );
}

/// An account whose profile does not exist stops the run before anything is
/// sent (exit 3), naming the account and where its credentials were looked
/// for; a run that leaves that account alone (`--only`) goes ahead.
#[test]
fn a_missing_profile_stops_before_anything_is_sent() {
    let world = two_account_world(10);
    let emu = emulator(world.clone());
    let env = Env::new(&emu.url);
    write_profiles(&env, SECOND_KEY);
    std::fs::remove_file(env.dir.path().join(".tccli/beta.credential")).unwrap();
    let fleet = write_fleet(&env, &world);
    let o = output(run(&env, &fleet));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.contains("account beta") && said.contains("beta.credential"),
        "{said}"
    );
    assert_eq!(emu.truth().requests_total, 0, "{said}");
    // Rows that name no account need the run's own credentials; the message
    // says so when there are none.
    let mixed = env.dir.path().join("mixed.csv");
    std::fs::write(
        &mixed,
        std::fs::read_to_string(&fleet)
            .unwrap()
            .replacen(",beta,", ",,", 1),
    )
    .unwrap();
    let mut all = run(&env, &mixed);
    all.env_remove("TENCENTCLOUD_SECRET_ID");
    std::fs::write(
        env.dir.path().join(".tccli/beta.credential"),
        format!(r#"{{"secretId": "{SECOND_ID}", "secretKey": "{SECOND_KEY}"}}"#),
    )
    .unwrap();
    let o = output(all);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(3), "{said}");
    assert!(
        said.contains("the instances that name no Account use the run's own credentials"),
        "{said}"
    );
    std::fs::remove_file(env.dir.path().join(".tccli/beta.credential")).unwrap();
    assert_eq!(emu.truth().requests_total, 0, "{said}");
    // A run that leaves beta alone needs no beta profile.
    let mut c = run(&env, &fleet);
    c.args(["--only", "Account=alpha"]);
    let o = output(c);
    assert!(o.status.success(), "{}", text(&o));
    let report = report_json(&env);
    assert_eq!(report["accounts"][0]["encrypted"], 5, "{report}");
    assert_eq!(report["accounts"][1]["pending"], 5, "{report}");
}

/// A profile with the wrong key: `doctor` fails the credentials of that
/// account (exit 3) and passes the other's; the short doctor before `run`
/// stops it with no Open sent, naming the account.
#[test]
fn doctor_checks_each_accounts_credentials() {
    let world = two_account_world(10);
    let emu = emulator(world.clone());
    let env = Env::new(&emu.url);
    write_profiles(&env, "a-wrong-key");
    let fleet = write_fleet(&env, &world);

    let mut c = env.cmd(SECRET_KEY);
    c.args(["doctor", "--instances"]).arg(&fleet);
    let o = output(c);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(3), "{said}");
    let line = |prefix: &str| {
        said.lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{said}"))
            .to_string()
    };
    assert!(
        line("account alpha: credentials").contains("[ok]"),
        "{said}"
    );
    assert!(
        line("account beta: credentials").contains("[FAIL]"),
        "{said}"
    );
    assert!(said.contains("over 2 accounts"), "{said}");

    let o = output(run(&env, &fleet));
    let said = text(&o);
    assert_eq!(o.status.code(), Some(3), "{said}");
    assert!(said.contains("account beta"), "{said}");
    assert_eq!(emu.truth().total_open_calls(), 0, "{said}");
}

/// `--account-column` names the column; rows that leave it empty use the
/// run's own credentials (here the same key as `alpha`'s); `--only
/// Account=…` selects one account's instances and leaves the others as they
/// are; the report counts the named account and the run's own.
#[test]
fn account_column_and_selection_by_account() {
    let world = two_account_world(20);
    let emu = emulator(world.clone());
    let env = Env::new(&emu.url);
    write_profiles(&env, SECOND_KEY);
    let fleet = write_fleet(&env, &world);
    let renamed = env.dir.path().join("owners.csv");
    std::fs::write(
        &renamed,
        std::fs::read_to_string(&fleet)
            .unwrap()
            .replacen("Account", "Owner", 1)
            .replace(",alpha,", ",,"),
    )
    .unwrap();
    let mut c = run(&env, &renamed);
    c.args(["--account-column", "owner", "--only", "Account=beta"]);
    let o = output(c);
    assert!(o.status.success(), "{}", text(&o));
    let truth = emu.truth();
    for (id, i) in &truth.instances {
        let beta = world.instances[id].owner.as_deref() == Some(SECOND_ID);
        assert_eq!(i.open_calls, u32::from(beta), "{id}");
    }
    let report = report_json(&env);
    let accounts = report["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2, "{report}");
    assert_eq!(accounts[0]["account"], "beta");
    assert_eq!(accounts[0]["encrypted"], 10, "{report}");
    assert_eq!(accounts[1]["account"], serde_json::Value::Null);
    assert_eq!(accounts[1]["pending"], 10, "{report}");
    // Then the rest, with the run's own credentials.
    let mut c = env.cmd(SECRET_KEY);
    c.args(["resume", "--rate", "20"]).args(FAST);
    let o = output(c);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(report_json(&env)["summary"]["encrypted"], 20);
}

/// A rehearsal from the command line: `fleetcrypt emulator --fleet FILE
/// --accept-profile alpha --accept-profile beta` accepts both profiles' keys
/// and gives each row to the account its `Account` cell names (another key
/// is told the instance does not exist); `run` with the same file finishes.
/// Without the flags, a fleet that names accounts is refused.
#[test]
fn the_emulator_command_rehearses_several_accounts() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let world = two_account_world(10);
    let scratch = Env::new("http://127.0.0.1:1");
    write_profiles(&scratch, SECOND_KEY);
    let fleet = write_fleet(&scratch, &world);
    let emulator = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("HOME", scratch.dir.path())
            .args(["emulator", "--listen", "127.0.0.1:0", "--fleet"])
            .arg(&fleet)
            .args(extra)
            .stdin(Stdio::null());
        c
    };
    let o = output(emulator(&[]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pass --accept-profile"), "{}", text(&o));

    let mut child = emulator(&[
        "--accept-profile",
        "alpha",
        "--accept-profile",
        "beta",
        "--latency",
        "OpenDBInstanceEncryption=20ms..200ms",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let env = Env {
        dir: scratch.dir,
        url,
    };
    // beta's key cannot see alpha's instance.
    let alpha_instance = world
        .instances
        .values()
        .find(|i| i.owner.as_deref() == Some(SECRET_ID))
        .unwrap();
    let mut c = env.cmd(SECRET_KEY);
    c.args([
        "call",
        "cdb",
        "DescribeDBInstanceInfo",
        "--profile",
        "beta",
        "--region",
    ])
    .arg(&alpha_instance.region)
    .arg(format!(r#"{{"InstanceId":"{}"}}"#, alpha_instance.id));
    let said = text(&output(c));
    assert!(said.contains("InstanceNotFound"), "{said}");

    let o = output(run(&env, &fleet));
    let _ = child.kill();
    let _ = child.wait();
    assert!(o.status.success(), "{}", text(&o));
    let report = report_json(&env);
    let accounts: Vec<(String, u64)> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap().to_string(),
                a["encrypted"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(accounts, vec![("alpha".into(), 5), ("beta".into(), 5)]);
}
