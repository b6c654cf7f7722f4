//! `fleetcrypt doctor` and the honest `plan` (issue 12), the real binary
//! against the emulator: every check green with the right set-up, and each
//! broken precondition (a wrong key, a skewed clock, KMS off, the role without
//! its policy, CAM refusing the caller, a locked journal, an unreachable
//! endpoint) named with its fix and the exit code SPEC §3 gives it.

mod common;

use std::process::Output;

use common::*;
use fleetcrypt::api::cam::LIST_ATTACHED_ROLE_POLICIES;
use fleetcrypt::api::cdb::OPEN_DB_INSTANCE_ENCRYPTION;
use fleetcrypt::api::kms::GET_SERVICE_STATUS;
use fleetcrypt::emulator::{EmulatorConfig, Generate, RoleState, World};

fn world() -> World {
    World::generate(&Generate {
        count: 30,
        seed: 12,
        share_encrypted: 0.2,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        ..Generate::default()
    })
}

/// The emulator with `tweak` applied, the fleet file and the environment.
fn setup(tweak: impl FnOnce(&mut EmulatorConfig)) -> (EmulatorThread, Env, std::path::PathBuf) {
    let mut config = fast_config(20);
    tweak(&mut config);
    let w = world();
    let emu = EmulatorThread::start(config, w.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&w);
    (emu, env, fleet)
}

fn doctor(env: &Env, key: &str, fleet: &std::path::Path, extra: &[&str]) -> (Output, String) {
    let mut c = env.cmd(key);
    c.arg("doctor").arg("--instances").arg(fleet).args(extra);
    let o = output(c);
    let t = text(&o);
    (o, t)
}

/// The checklist line of `what` marked `tag` (`[ok]`, `[warn]`, `[FAIL]`, `[--]`, `[info]`).
fn line<'a>(t: &'a str, tag: &str, what: &str) -> &'a str {
    t.lines()
        .map(str::trim_start)
        .find(|l| {
            l.strip_prefix(tag)
                .is_some_and(|rest| rest.trim_start().starts_with(what))
        })
        .unwrap_or_else(|| panic!("no line {tag} {what:?} in:\n{t}"))
}

#[test]
fn all_green_with_the_right_key() {
    let (emu, env, fleet) = setup(|_| {});
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(!t.contains("[FAIL]") && !t.contains("[warn]"), "{t}");
    let creds = line(&t, "[ok]", "credentials");
    assert!(creds.contains("TENCENTCLOUD_SECRET_ID"), "{creds}");
    assert!(
        creds.contains("AKID…6789") && !creds.contains(SECRET_ID),
        "masked: {creds}"
    );
    assert!(line(&t, "[ok]", "endpoint").contains(" ms"), "{t}");
    assert!(line(&t, "[ok]", "clock").contains("in step with"), "{t}");
    for region in ["ap-guangzhou", "ap-shanghai", "ap-singapore"] {
        line(&t, "[ok]", &format!("KMS in {region}"));
    }
    line(&t, "[ok]", "role MySQL_QCSRole");
    line(&t, "[ok]", "journal");
    assert!(
        line(&t, "[info]", "quota").contains("1 endpoint(s) x 20 requests/s"),
        "{t}"
    );
    assert!(t.contains("30 instance(s) need an Open"), "{t}");
    assert!(t.contains("all checks passed"), "{t}");
    assert!(!t.contains(SECRET_KEY), "the key leaked");
    // A few reads, no write, nothing a run uses.
    let truth = emu.truth();
    assert_eq!(truth.total_open_calls(), 0);
    assert!(
        truth.requests_total <= 6,
        "{} requests",
        truth.requests_total
    );
}

#[test]
fn a_wrong_key_is_exit_3_naming_the_cause() {
    let (emu, env, fleet) = setup(|_| {});
    let wrong = "not-the-key-at-all-42";
    let (o, t) = doctor(&env, wrong, &fleet, &[]);
    assert_eq!(o.status.code(), Some(3), "{t}");
    let creds = line(&t, "[FAIL]", "credentials");
    assert!(creds.contains("AuthFailure.SignatureFailure"), "{creds}");
    assert!(
        t.contains("fix: the SecretKey does not match the SecretId"),
        "{t}"
    );
    assert!(!t.contains(wrong), "the key leaked: {t}");
    // The rest is not claimed either way.
    line(&t, "[--]", "KMS");
    line(&t, "[--]", "role");
    assert!(emu.truth().requests_total <= 2);

    // An unknown SecretId, and no credentials at all.
    let mut c = env.cmd(SECRET_KEY);
    c.env("TENCENTCLOUD_SECRET_ID", "AKIDnobody000000000")
        .args(["doctor", "--instances"])
        .arg(&fleet);
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        line(&t, "[FAIL]", "credentials").contains("AuthFailure.SecretIdNotFound"),
        "{t}"
    );
    let mut c = env.cmd(SECRET_KEY);
    c.env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .args(["doctor", "--instances"])
        .arg(&fleet);
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        line(&t, "[FAIL]", "credentials").contains("~/.tccli/NAME.credential"),
        "{t}"
    );
}

#[test]
fn a_skewed_server_clock_warns_at_90_s_and_fails_at_250_s() {
    let (_emu, env, fleet) = setup(|c| c.clock_offset_secs = 90);
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(0), "a warning is not a failure: {t}");
    let clock = line(&t, "[warn]", "clock");
    // The Date header has whole seconds: 89..91 s.
    assert!(
        ["89 s behind", "90 s behind", "91 s behind"]
            .iter()
            .any(|s| clock.contains(s)),
        "{clock}"
    );
    assert!(t.contains("fix: synchronise the local clock"), "{t}");

    let (_emu, env, fleet) = setup(|c| c.clock_offset_secs = -250);
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "[FAIL]", "clock").contains("ahead of the server's"),
        "{t}"
    );
    line(&t, "[ok]", "credentials");

    // Past the API's 5 minutes the signature itself is refused: exit 3, the
    // clock named as the cause.
    let (_emu, env, fleet) = setup(|c| c.clock_offset_secs = 400);
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(
        line(&t, "[FAIL]", "credentials").contains("AuthFailure.SignatureExpire"),
        "{t}"
    );
    assert!(
        t.contains("fix: the local clock is more than 5 minutes off"),
        "{t}"
    );
    assert!(
        line(&t, "[FAIL]", "clock").contains("400 s behind")
            || t.contains("399 s behind")
            || t.contains("401 s behind"),
        "{t}"
    );
}

#[test]
fn the_role_without_its_policy_fails_with_the_fix() {
    let (_emu, env, fleet) = setup(|c| c.mysql_role = RoleState::NoPolicy);
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let role = line(&t, "[FAIL]", "role MySQL_QCSRole");
    assert!(role.contains("without QcloudAccessForMySQLRole"), "{role}");
    assert!(
        t.contains(
            "fix: attach the preset policy QcloudAccessForMySQLRole to the role MySQL_QCSRole"
        ),
        "{t}"
    );

    let (_emu, env, fleet) = setup(|c| c.mysql_role = RoleState::Missing);
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "[FAIL]", "role MySQL_QCSRole").contains("InvalidParameter.RoleNotExist"),
        "{t}"
    );
}

#[test]
fn cam_refusing_the_caller_is_cannot_check_never_missing() {
    // The role really is missing, but the caller may not read CAM: doctor must not say so.
    let (_emu, env, fleet) = setup(|c| {
        c.cam_denied = true;
        c.mysql_role = RoleState::Missing;
    });
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(0), "cannot check is a warning: {t}");
    let role = line(&t, "[warn]", "role MySQL_QCSRole");
    assert!(
        role.contains("cannot check") && role.contains("AuthFailure.UnauthorizedOperation"),
        "{role}"
    );
    assert!(
        !role.contains("no such role") && !role.contains("role exists without"),
        "{role}"
    );
    // A CAM refusal is not a credential failure.
    line(&t, "[ok]", "credentials");
}

#[test]
fn kms_off_in_one_region_fails_that_region() {
    let (_emu, env, fleet) = setup(|c| c.kms_off = vec!["ap-shanghai".into()]);
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        line(&t, "[FAIL]", "KMS in ap-shanghai").contains("not enabled"),
        "{t}"
    );
    line(&t, "[ok]", "KMS in ap-guangzhou");
    assert!(t.contains("fix: activate Key Management Service"), "{t}");
}

#[test]
fn a_journal_locked_by_a_run_fails() {
    let (_emu, env, fleet) = setup(|_| {});
    let _held = fleetcrypt::journal::JournalLock::acquire(&env.journal()).unwrap();
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &[]);
    assert_eq!(o.status.code(), Some(1), "{t}");
    let j = line(&t, "[FAIL]", "journal");
    assert!(
        j.contains("in use by another run") && j.contains(&std::process::id().to_string()),
        "{j}"
    );
}

#[test]
fn the_probe_keeps_to_a_low_rate_at_the_server() {
    // Every action limited to 2/s at the emulator, six regions on one host:
    // doctor --rate 2 paces its six GetServiceStatus and is never throttled.
    let mut config = fast_config(2);
    config.latency.clear();
    let regions = [
        "ap-guangzhou",
        "ap-shanghai",
        "ap-singapore",
        "ap-tokyo",
        "ap-seoul",
        "eu-frankfurt",
    ];
    let w = World::generate(&Generate {
        count: 12,
        regions: regions.iter().map(|r| r.to_string()).collect(),
        seed: 5,
        ..Generate::default()
    });
    let emu = EmulatorThread::start(config, w.clone());
    let env = Env::new(&emu.url);
    let fleet = env.write_fleet(&w);
    let (o, t) = doctor(&env, SECRET_KEY, &fleet, &["--rate", "2"]);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let truth = emu.truth();
    let kms = truth.action(GET_SERVICE_STATUS);
    assert_eq!(kms.seen, 6, "{kms:?}");
    assert_eq!(kms.throttled, 0, "{kms:?}");
    assert!(kms.max_in_1s_window <= 2, "{kms:?}");
    assert_eq!(truth.action(LIST_ATTACHED_ROLE_POLICIES).seen, 1);
}

#[test]
fn run_checks_first_and_sends_nothing_when_kms_is_off() {
    let (emu, env, fleet) = setup(|c| c.kms_off = vec!["*".into()]);
    let mut c = env.cmd(SECRET_KEY);
    c.args(["run", "--instances"]).arg(&fleet).args(FAST);
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("[FAIL] KMS in ap-guangzhou"), "{t}");
    assert!(t.contains("nothing was sent"), "{t}");
    assert!(t.contains("--no-doctor"), "{t}");
    assert_eq!(emu.truth().total_open_calls(), 0);
    assert_eq!(
        emu.truth()
            .action(fleetcrypt::api::cdb::DESCRIBE_DB_INSTANCE_INFO)
            .seen,
        0
    );

    // --no-doctor skips it (the emulator does not tie Opens to KMS): the run goes on.
    let mut c = env.cmd(SECRET_KEY);
    c.args(["resume", "--no-doctor"]).args(FAST);
    let o = output(c);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(emu.truth().action(OPEN_DB_INSTANCE_ENCRYPTION).seen > 0);
}

#[test]
fn run_goes_on_with_a_warning_under_a_90_s_skew() {
    let (emu, env, fleet) = setup(|c| c.clock_offset_secs = 90);
    let mut c = env.cmd(SECRET_KEY);
    c.args(["run", "--instances"]).arg(&fleet).args(FAST);
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("WARN") && t.contains("doctor: clock"), "{t}");
    assert!(emu.truth().action(OPEN_DB_INSTANCE_ENCRYPTION).seen > 0);
}

#[test]
fn plan_against_an_unreachable_endpoint_fails_and_counts_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let env = Env::new(&dead);
    let fleet = env.dir.path().join("f.txt");
    std::fs::write(&fleet, "cdb-abcd1234 ap-guangzhou\n").unwrap();
    for extra in [&[][..], &["--no-doctor"][..]] {
        let mut c = env.cmd(SECRET_KEY);
        c.args(["plan", "--instances"]).arg(&fleet).args(extra);
        let o = output(c);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {t}");
        assert!(!t.contains("would be encrypted"), "{extra:?}: {t}");
        assert!(t.contains("cannot reach the API"), "{extra:?}: {t}");
        assert!(!t.contains("resume"), "plan has nothing to resume: {t}");
    }
}

#[test]
fn plan_ends_with_the_eta_per_endpoint() {
    let (emu, env, fleet) = setup(|_| {});
    let mut c = env.cmd(SECRET_KEY);
    c.args(["plan", "--instances"]).arg(&fleet);
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let encrypted = world().instances.values().filter(|i| i.encrypted).count();
    let opens = 30 - encrypted;
    assert!(stdout.contains(&format!("plan: {opens} instance(s) would be encrypted, {encrypted} already encrypted, 0 cannot be encrypted")), "{stdout}");
    let last = stdout.lines().last().unwrap();
    let host = emu.url.trim_start_matches("http://");
    assert!(
        last.contains(host) && last.contains(&format!("{opens} instance(s) need an Open")),
        "{last}"
    );
    assert!(
        last.contains("read latency") && last.contains(" ms;") && last.contains("ETA "),
        "{last}"
    );
    assert_eq!(emu.truth().total_open_calls(), 0);
}

#[test]
fn plan_whose_reads_keep_failing_says_nothing_about_those_instances() {
    // Every DescribeDBInstanceInfo answers InternalError: the preflight cannot
    // complete, which is neither "would be encrypted" nor "cannot be".
    let (emu, env, fleet) = setup(|c| c.faults.describe_internal = 1.0);
    let mut c = env.cmd(SECRET_KEY);
    c.args(["plan", "--instances"])
        .arg(&fleet)
        .args(["--max-attempts", "1"]);
    let o = output(c);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(!t.contains("would be encrypted"), "{t}");
    assert!(!t.contains("cannot be encrypted:"), "{t}");
    assert!(
        t.contains("preflight incomplete: 30 of 30 instance(s) could not be checked"),
        "{t}"
    );
    assert!(t.contains("InternalError.DBOperationError"), "{t}");
    assert!(
        !t.contains("ETA"),
        "no ETA from a plan that did not complete: {t}"
    );
    assert_eq!(emu.truth().total_open_calls(), 0);
}
