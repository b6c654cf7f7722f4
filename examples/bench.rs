//! Benchmarks behind BENCHMARKS.md. Build first: `cargo build --release --examples`.
//!
//!   cargo run --release --example bench -- throughput [N]   # N instances (2000), Open 1–10 s, --rate 20
//!   cargo run --release --example bench -- ambiguous [N]    # the same (1000), 5 % of Open answers ambiguous
//!   cargo run --release --example bench -- propagation [N]  # the same (400), Open 1–4 s, YES 5–20 s after the apply
//!   cargo run --release --example bench -- ceiling [N]      # limits off, zero latency: runner + journal ceiling
//!   cargo run --release --example bench -- emulator [SECS]  # emulator requests/s, zero latency, loopback
//!   cargo run --release --example bench -- report [N]       # every report format (and a chromium render of the html) on an N-instance journal (100000)
//!   cargo run --release --example bench -- input [N]        # parse an N-row CSV (1000000): time and peak RSS
//!   cargo run --release --example bench -- accounts [N] [fast] # N instances (200) in one account, then split over two: wall-time ratio
//!
//! The runner and the emulator run as separate processes (the real binary), so
//! the runner's peak RSS and CPU time are its own (from wait4's rusage).
//! `FLEETCRYPT_RUNNER_BIN` runs another build as the runner (an older commit,
//! for a before/after) against this build's emulator; `BENCH_EXTRA_ARGS`
//! (space-separated) adds flags to its command line (e.g. `--ramp-start 0`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetcrypt::api::{Client, ClientOptions, Credentials, Endpoint, Service};
use fleetcrypt::input::InstanceSpec;
use fleetcrypt::journal::{schema, CallRecord, Change, Fact, Journal};
use fleetcrypt::model::{Action, Disposition};

const ID: &str = "AKIDbench0123456789";
const KEY: &str = "bench-secret-key";

fn bin() -> PathBuf {
    std::env::var("FLEETCRYPT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("target/release/fleetcrypt"))
}

fn start_emulator(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(bin())
        .args([
            "emulator",
            "--listen",
            "127.0.0.1:0",
            "--secret-id",
            ID,
            "--secret-key",
            KEY,
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("build first: cargo build --release");
    let mut line = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    reader.read_line(&mut line).unwrap();
    // Keep draining: the emulator keeps its stdout.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("emulator address")
        .to_string();
    (child, url)
}

struct Usage {
    wall: Duration,
    max_rss_kb: i64,
    cpu: Duration,
    code: i32,
}

/// Runs the binary to completion and returns its rusage.
fn run_measured(args: &[String]) -> Usage {
    run_measured_with(args, &[])
}

/// The same with extra environment variables (`HOME` for tccli profiles).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
fn run_measured_with(args: &[String], envs: &[(&str, &Path)]) -> Usage {
    let started = Instant::now();
    let runner = std::env::var("FLEETCRYPT_RUNNER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| bin());
    let extra: Vec<String> = std::env::var("BENCH_EXTRA_ARGS")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let is_job = args.iter().any(|a| a == "run" || a == "resume");
    let child = Command::new(runner)
        .args(args)
        .args(if is_job { extra } else { Vec::new() })
        .env("TENCENTCLOUD_SECRET_ID", ID)
        .env("TENCENTCLOUD_SECRET_KEY", KEY)
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::wait4(child.id() as i32, &mut status, 0, &mut ru);
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Usage {
        wall: started.elapsed(),
        max_rss_kb: ru.ru_maxrss,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        code: libc::WEXITSTATUS(status),
    }
}

fn discover(url: &str, dir: &Path) -> PathBuf {
    let fleet = dir.join("fleet.csv");
    let out = Command::new(bin())
        .args([
            "--endpoint",
            url,
            "discover",
            "--region",
            "ap-guangzhou",
            "-o",
        ])
        .arg(&fleet)
        .env("TENCENTCLOUD_SECRET_ID", ID)
        .env("TENCENTCLOUD_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fleet
}

/// When instances reached a terminal state, from the journal (ms).
struct Finish {
    /// First request sent.
    first: i64,
    /// 10 % and 90 % of the terminal arrivals.
    p10: i64,
    p90: i64,
    /// Last terminal arrival.
    last: i64,
    /// Instances that reached a terminal state.
    done: usize,
}

impl Finish {
    /// Instances/s between 10 % and 90 % finished: the steady state.
    fn sustained(&self) -> f64 {
        (self.done as f64 * 0.8) / ((self.p90 - self.p10) as f64 / 1000.0)
    }
    /// Instances/s from the first request to the last terminal state.
    fn end_to_end(&self) -> f64 {
        self.done as f64 / ((self.last - self.first) as f64 / 1000.0)
    }
}

fn journal_timing(path: &Path) -> Finish {
    let conn = schema::open_reader(path).unwrap();
    let first: i64 = conn
        .query_row("SELECT MIN(sent_at_ms) FROM events", [], |r| r.get(0))
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT at_ms FROM events WHERE to_state IN ('encrypted','already_encrypted','failed') AND from_state IS NOT to_state ORDER BY at_ms")
        .unwrap();
    let t: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let n = t.len();
    Finish {
        first,
        p10: t[n / 10],
        p90: t[n * 9 / 10],
        last: t[n - 1],
        done: n,
    }
}

/// The physical bound at `--rate 20`: two `DescribeDBInstanceInfo` reads per instance.
const BOUND: f64 = 10.0;

/// One run at the rate bound, on one endpoint.
struct AtBound {
    _dir: tempfile::TempDir,
    journal: PathBuf,
    usage: Usage,
    finish: Finish,
    /// `GET /__emulator/state` after the run.
    truth: serde_json::Value,
}

/// `fleetcrypt run --rate 20` against the emulator as a separate process: `n`
/// unencrypted instances on one endpoint, Open latency uniform 1–10 s, reads
/// 20–150 ms and the documented limits of 20/s per action (the emulator's
/// defaults), plus `extra` emulator flags (faults).
fn run_at_bound(n: usize, extra: &[&str]) -> AtBound {
    let dir = tempfile::tempdir().unwrap();
    let n = n.to_string();
    let mut args = vec![
        "--generate",
        &n,
        "--regions",
        "ap-guangzhou",
        "--share-encrypted",
        "0",
        "--share-unsupported",
        "0",
        "--share-needs-upgrade",
        "0",
        "--latency",
        "OpenDBInstanceEncryption=1s..10s",
    ];
    args.extend_from_slice(extra);
    let (mut emu, url) = start_emulator(&args);
    let fleet = discover(&url, dir.path());
    let journal = dir.path().join("j.db");
    let usage = run_measured(&[
        "--journal".into(),
        journal.display().to_string(),
        "--endpoint".into(),
        url.clone(),
        "-q".into(),
        "run".into(),
        "--instances".into(),
        fleet.display().to_string(),
        "--rate".into(),
        "20".into(),
        "--yes".into(),
    ]);
    let truth = ground_truth(&url);
    let _ = emu.kill();
    let finish = journal_timing(&journal);
    AtBound {
        _dir: dir,
        journal,
        usage,
        finish,
        truth,
    }
}

fn ground_truth(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = rt
        .block_on(async {
            reqwest::get(format!("{url}/__emulator/state"))
                .await?
                .error_for_status()?
                .bytes()
                .await
        })
        .expect("GET /__emulator/state");
    serde_json::from_slice(&body).unwrap()
}

/// The lines `throughput` and `ambiguous` share.
fn print_at_bound(r: &AtBound) {
    let (u, f) = (&r.usage, &r.finish);
    println!("  exit code               {}", u.code);
    println!(
        "  sustained (10%..90%)    {:.2} instances/s   (physical bound {BOUND:.2})",
        f.sustained()
    );
    println!(
        "  end to end              {:.2} instances/s   (first request to last verification)",
        f.end_to_end()
    );
    println!("  wall                    {:.1} s", u.wall.as_secs_f64());
    println!(
        "  peak RSS of `run`       {:.1} MB",
        u.max_rss_kb as f64 / 1024.0
    );
    println!(
        "  CPU time of `run`       {:.2} s ({:.2} ms/instance)",
        u.cpu.as_secs_f64(),
        u.cpu.as_secs_f64() * 1000.0 / f.done as f64
    );
}

fn throughput(n: usize) {
    let r = run_at_bound(n, &[]);
    println!(
        "throughput: {} instances, Open latency uniform 1-10 s, --rate 20, one endpoint",
        r.finish.done
    );
    print_at_bound(&r);
}

/// A per-instance ground-truth counter, summed over the fleet.
fn truth_total(truth: &serde_json::Value, field: &str) -> u64 {
    truth["instances"]
        .as_object()
        .unwrap()
        .values()
        .map(|i| i[field].as_u64().unwrap())
        .sum()
}

/// Issue 10: `Encryption` turns `YES` 5–20 s (uniform, per instance) after an
/// apply, Open latency 1–4 s. The bound: two `DescribeDBInstanceInfo` reads
/// per instance at 20/s, plus the longest latency and propagation.
fn propagation(n: usize) {
    let r = run_at_bound(
        n,
        &[
            "--latency",
            "OpenDBInstanceEncryption=1s..4s",
            "--propagation",
            "5s..20s",
        ],
    );
    let f = &r.finish;
    let t = &r.truth;
    let encrypted = t["instances"]
        .as_object()
        .unwrap()
        .values()
        .filter(|i| i["encrypted"].as_bool() == Some(true))
        .count();
    let total = |field: &str| truth_total(t, field);
    let reads = t["actions"]["DescribeDBInstanceInfo"]["seen"]
        .as_u64()
        .unwrap() as f64;
    let bound = n as f64 * 2.0 / 20.0 + 4.0 + 20.0;
    let took = (f.last - f.first) as f64 / 1000.0;
    println!(
        "propagation: {n} instances, Open latency uniform 1-4 s, propagation uniform 5-20 s, --rate 20, one endpoint"
    );
    println!("  exit code               {}", r.usage.code);
    println!(
        "  first request -> last verification  {took:.1} s   (bound {bound:.1} s: ratio {:.2})",
        bound / took
    );
    println!(
        "  DescribeDBInstanceInfo  {:.2} reads per instance ({} reads)",
        reads / n as f64,
        reads
    );
    println!(
        "  ground truth            {encrypted}/{n} encrypted (journal: {} terminal), blind {}, overlapping {}",
        f.done,
        total("blind_open_calls"),
        total("overlapping_open_calls")
    );
}

/// The error codes of the emulator's two ambiguous Open faults.
const APPLIED: &str = "InternalError.HttpRequestError"; // internal-applied: applied in the background
const NOT_APPLIED: &str = "InternalError.UnknownError"; // internal: not applied

/// One instance's Open answers and latency, from the journal's events.
struct PerInstance {
    /// First AttemptWritten to VerifiedEncrypted (None: not verified).
    latency_ms: Option<i64>,
    /// AttemptAnswered events: all, and those with each ambiguous error code.
    answers: i64,
    applied: i64,
    not_applied: i64,
}

fn per_instance(journal: &Path) -> Vec<PerInstance> {
    let conn = schema::open_reader(journal).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT MIN(CASE WHEN kind = 'VerifiedEncrypted' THEN at_ms END)
                      - MIN(CASE WHEN kind = 'AttemptWritten' THEN at_ms END),
                    SUM(kind = 'AttemptAnswered'),
                    SUM(kind = 'AttemptAnswered' AND error_code = ?1),
                    SUM(kind = 'AttemptAnswered' AND error_code = ?2)
             FROM events WHERE instance_id IS NOT NULL GROUP BY instance_id",
        )
        .unwrap();
    stmt.query_map([APPLIED, NOT_APPLIED], |r| {
        Ok(PerInstance {
            latency_ms: r.get(0)?,
            answers: r.get(1)?,
            applied: r.get(2)?,
            not_applied: r.get(3)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn ambiguous(n: usize) {
    let r = run_at_bound(
        n,
        &[
            "--fault",
            "internal-applied=0.025",
            "--fault",
            "internal=0.025",
        ],
    );
    let f = &r.finish;
    println!(
        "ambiguous: {} instances, Open latency uniform 1-10 s, --rate 20, one endpoint, \
         2.5 % of Open answers {APPLIED} (applied in the background) + 2.5 % {NOT_APPLIED} (not applied)",
        f.done
    );
    print_at_bound(&r);
    println!(
        "  ratio to the bound      sustained {:.1} %, end to end {:.1} %",
        f.sustained() / BOUND * 100.0,
        f.end_to_end() / BOUND * 100.0
    );

    let rows = per_instance(&r.journal);
    let (answers, applied, not_applied) = rows.iter().fold((0, 0, 0), |(n, a, na), i| {
        (n + i.answers, a + i.applied, na + i.not_applied)
    });
    println!(
        "  Open answers (journal)  {answers}: {applied} {APPLIED} + {not_applied} {NOT_APPLIED} = {:.1} % ambiguous",
        (applied + not_applied) as f64 * 100.0 / answers as f64
    );
    let verified = rows.iter().filter(|i| i.latency_ms.is_some()).count();
    println!("  first Open written to VerifiedEncrypted, {verified} verified instances:");
    let line = |label: &str, keep: fn(&PerInstance) -> bool| {
        let mut ms: Vec<i64> = rows
            .iter()
            .filter(|i| keep(i))
            .filter_map(|i| i.latency_ms)
            .collect();
        ms.sort_unstable();
        if ms.is_empty() {
            println!("    {label:<38} n=0");
            return;
        }
        // Nearest rank.
        let pct = |p: usize| ms[(ms.len() * p).div_ceil(100) - 1] as f64 / 1000.0;
        println!(
            "    {label:<38} n={:<5} p50 {:>5.1} s   p99 {:>5.1} s",
            ms.len(),
            pct(50),
            pct(99)
        );
    };
    line("no ambiguous answer", |i| i.applied + i.not_applied == 0);
    line("an ambiguous answer", |i| i.applied + i.not_applied > 0);
    line("  of which all applied in background", |i| {
        i.applied > 0 && i.not_applied == 0
    });
    line("  of which at least one not applied", |i| i.not_applied > 0);

    let t = &r.truth;
    let total = |field: &str| truth_total(t, field);
    println!("  emulator ground truth:");
    println!(
        "    blind_open_calls          {}   (an Open re-sent with no read since the last one)",
        total("blind_open_calls")
    );
    println!(
        "    open_calls_when_encrypted {}",
        total("open_calls_when_encrypted")
    );
    println!(
        "    overlapping_open_calls    {}   (an Open while an earlier one for the instance was still worked on)",
        total("overlapping_open_calls")
    );
    println!("    open_calls                {}", total("open_calls"));
    for (action, a) in t["actions"].as_object().unwrap() {
        println!(
            "    {action:<26} max_in_1s_window {:>2} (limit 20), seen {}, throttled {}",
            a["max_in_1s_window"], a["seen"], a["throttled"]
        );
    }
}

fn ceiling(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut emu, url) = start_emulator(&[
        "--generate",
        &n.to_string(),
        "--regions",
        "ap-guangzhou",
        "--instant",
        "--rate-limit-all",
        "0",
        "--share-encrypted",
        "0",
        "--share-unsupported",
        "0",
        "--share-needs-upgrade",
        "0",
    ]);
    let fleet = discover(&url, dir.path());
    let journal = dir.path().join("j.db");
    let u = run_measured(&[
        "--journal".into(),
        journal.display().to_string(),
        "--endpoint".into(),
        url.clone(),
        "-q".into(),
        "run".into(),
        "--instances".into(),
        fleet.display().to_string(),
        "--rate".into(),
        "10000".into(),
        // The runner's and journal's ceiling, not the verification schedule's
        // warm-up: this emulator shows YES at once, so start the schedule there
        // (from the documented 10 s, the first rounds of 1,024 instances in
        // progress would each wait 10 s, 5 s, … while it learns).
        "--verify-first-read".into(),
        "50ms".into(),
        "--yes".into(),
    ]);
    let _ = emu.kill();
    let f = journal_timing(&journal);
    let done = f.done;
    println!("ceiling: {done} instances, emulator without limits or latency, --rate 10000 (2 cores shared with the emulator)");
    println!("  exit code               {}", u.code);
    println!(
        "  end to end              {:.0} instances/s",
        f.end_to_end()
    );
    println!("  wall (incl. import)     {:.1} s", u.wall.as_secs_f64());
    println!(
        "  CPU time of `run`       {:.1} ms/instance (4 API calls + 7 journal events each)",
        u.cpu.as_secs_f64() * 1000.0 / done as f64
    );
    println!(
        "  peak RSS of `run`       {:.1} MB",
        u.max_rss_kb as f64 / 1024.0
    );
}

fn emulator(secs: u64) {
    let (mut emu, url) = start_emulator(&[
        "--generate",
        "100",
        "--regions",
        "ap-guangzhou",
        "--instant",
        "--rate-limit-all",
        "0",
    ]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let count = rt.block_on(async move {
        let client = Client::new(Credentials::new(ID, KEY), &ClientOptions::default()).unwrap();
        let ep = Endpoint::parse(&url).unwrap();
        let body = serde_json::json!({"InstanceId": "cdb-00000000"});
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (c, ep, body) = (client.clone(), ep.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let r = c
                        .call_raw(
                            &ep,
                            Service::Cdb,
                            "DescribeDBInstanceInfo",
                            Some("ap-guangzhou"),
                            &body,
                        )
                        .await;
                    // An InstanceNotFound answer is a full signed round trip too.
                    if matches!(r.result, Ok(_) | Err(fleetcrypt::api::Failure::Api { .. })) {
                        n += 1;
                    }
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    let _ = emu.kill();
    println!("emulator: signed DescribeDBInstanceInfo round trips, 64 concurrent clients, zero latency, loopback");
    println!(
        "  {count} answered in {secs} s = {:.0} requests/s (client and emulator share the 2 cores)",
        count as f64 / secs as f64
    );
}

/// What happens to instance `i` of the report bench's journal: most are
/// encrypted, some already were, a few fail (two codes) or are left unfinished,
/// as after a real overnight run.
#[derive(Clone, Copy, PartialEq)]
enum BenchOutcome {
    AlreadyEncrypted,
    PreflightFailed,
    GaveUp,
    Unfinished,
    Encrypted,
}

fn bench_outcome(i: usize) -> BenchOutcome {
    match i {
        _ if i.is_multiple_of(57) => BenchOutcome::PreflightFailed,
        _ if i % 97 == 1 => BenchOutcome::GaveUp,
        _ if i % 211 == 5 => BenchOutcome::Unfinished,
        _ if i % 10 == 9 => BenchOutcome::AlreadyEncrypted,
        _ => BenchOutcome::Encrypted,
    }
}

const BENCH_REGIONS: [&str; 3] = ["ap-guangzhou", "ap-shanghai", "ap-singapore"];

fn report(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let built = Instant::now();
    rt.block_on(async {
        let j = Journal::open(&path).unwrap();
        let specs: Vec<InstanceSpec> = (0..n)
            .map(|i| InstanceSpec {
                id: format!("cdb-{i:08}").parse().unwrap(),
                region: BENCH_REGIONS[i % BENCH_REGIONS.len()].into(),
                key_id: None,
                key_region: None,
                account: None,
                labels: vec![
                    ("team".into(), format!("team-{}", i % 7)),
                    (
                        "env".into(),
                        if i % 4 == 0 { "staging" } else { "prod" }.into(),
                    ),
                    ("name".into(), format!("db-{i}")),
                ],
                line: i as u64 + 2,
            })
            .collect();
        j.import(specs).await.unwrap();
        let call = |action: Action, t: i64| CallRecord {
            latency_ms: 40,
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            ..CallRecord::new(action, "cdb.ap-guangzhou.tencentcloudapi.com", t)
        };
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let j = j.clone();
            let t0 = 1_700_000_000_000 + (i as i64) * 100;
            let id: fleetcrypt::model::InstanceId = format!("cdb-{i:08}").parse().unwrap();
            let c = call;
            let outcome = bench_outcome(i);
            tasks.spawn(async move {
                let ch = |fact, call: Option<CallRecord>, at| Change {
                    instance_id: id.clone(),
                    fact,
                    run_id: None,
                    call,
                    at_ms: at,
                };
                let encrypted = outcome == BenchOutcome::AlreadyEncrypted;
                j.apply(ch(
                    Fact::EncryptionRead {
                        encrypted,
                        settled: true,
                    },
                    Some(c(Action::DescribeDBInstanceInfo, t0)),
                    t0,
                ))
                .await
                .unwrap();
                match outcome {
                    BenchOutcome::AlreadyEncrypted => return,
                    BenchOutcome::PreflightFailed => {
                        j.apply(ch(
                            Fact::PreflightFailed {
                                code: "UnsupportedOperation".into(),
                                message: "the instance does not support storage encryption".into(),
                            },
                            None,
                            t0 + 10,
                        ))
                        .await
                        .unwrap();
                        return;
                    }
                    _ => {}
                }
                j.apply(ch(
                    Fact::AttemptWritten {
                        request: "{}".into(),
                    },
                    None,
                    t0 + 50,
                ))
                .await
                .unwrap();
                j.apply(ch(
                    Fact::AttemptAnswered {
                        disposition: Disposition::Accepted,
                        settles_at_ms: t0 + 17_000,
                        next_attempt_at_ms: None,
                        kms_error: false,
                    },
                    Some(c(Action::OpenDBInstanceEncryption, t0 + 60)),
                    t0 + 5000,
                ))
                .await
                .unwrap();
                let last = match outcome {
                    BenchOutcome::Unfinished => return,
                    BenchOutcome::GaveUp => Fact::GaveUp {
                        code: "InternalError.KmsError".into(),
                        message: "the KMS key is disabled or not authorised".into(),
                    },
                    _ => Fact::EncryptionRead {
                        encrypted: true,
                        settled: true,
                    },
                };
                let call = matches!(last, Fact::EncryptionRead { .. })
                    .then(|| c(Action::DescribeDBInstanceInfo, t0 + 5100));
                j.apply(ch(last, call, t0 + 5100)).await.unwrap();
            });
            while tasks.len() > 512 {
                tasks.join_next().await;
            }
        }
        while tasks.join_next().await.is_some() {}
    });
    let conn = schema::open_reader(&path).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    println!(
        "report: journal of {n} instances ({} failed, {} unfinished), {} events, built in {:.1} s",
        count("SELECT count(*) FROM instances WHERE state = 'failed'"),
        count("SELECT count(*) FROM instances WHERE state NOT IN ('encrypted', 'already_encrypted', 'failed')"),
        count("SELECT count(*) FROM events"),
        built.elapsed().as_secs_f64()
    );
    drop(conn);
    for format in ["json", "csv", "md", "html"] {
        let out = dir.path().join(format!("r.{format}"));
        let u = run_measured(&[
            "--journal".into(),
            path.display().to_string(),
            "report".into(),
            "--format".into(),
            format.into(),
            "-o".into(),
            out.display().to_string(),
        ]);
        println!(
            "  report --format {format:<5} {:.2} s, peak RSS {:.1} MB, {:.1} MB written (exit {})",
            u.wall.as_secs_f64(),
            u.max_rss_kb as f64 / 1024.0,
            std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
            u.code
        );
    }
    render_in_chromium(&dir.path().join("r.html"));
    if let Some(keep) = std::env::var_os("BENCH_KEEP_JOURNAL") {
        std::fs::copy(&path, &keep).expect("copy the journal to BENCH_KEEP_JOURNAL");
    }
    // What an operator checking on an overnight run waits for (issue 10).
    let journal = path.display().to_string();
    for (label, args) in [
        ("status", vec!["status"]),
        ("status --json", vec!["status", "--json"]),
        ("journal verify", vec!["journal", "verify"]),
    ] {
        let mut walls: Vec<f64> = (0..5)
            .map(|_| {
                let mut a = vec!["--journal".to_string(), journal.clone()];
                a.extend(args.iter().map(|s| s.to_string()));
                run_measured(&a).wall.as_secs_f64()
            })
            .collect();
        walls.sort_by(f64::total_cmp);
        println!(
            "  {label:<20} median of 5: {:.3} s (min {:.3}, max {:.3})",
            walls[2], walls[0], walls[4]
        );
    }
}

/// How long headless Chromium takes to load the HTML report and screenshot
/// it at 1280x2000, when a chromium is installed (at most 5 minutes).
fn render_in_chromium(html: &Path) {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("  chromium screenshot: skipped (no chromium on PATH; apt-get install chromium)");
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let png = profile.path().join("r.png");
    let started = Instant::now();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    match status {
        Some(s) => println!(
            "  chromium screenshot 1280x2000 of the html report: {:.1} s, {size} byte PNG ({s})",
            started.elapsed().as_secs_f64()
        ),
        None => println!(
            "  chromium screenshot 1280x2000 of the html report: gave up after {} s",
            limit.as_secs()
        ),
    }
}

fn input(n: usize) {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "InstanceId,Region,KeyId,KeyRegion,Name,Team").unwrap();
        for i in 0..n {
            writeln!(f, "cdb-{i:08},ap-guangzhou,,,db-{i},team-{}", i % 13).unwrap();
        }
    }
    let size = std::fs::metadata(&path).unwrap().len();
    // Peak RSS of the parsing alone: reset the kernel's high-water mark first.
    let hwm = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let rss_now = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM (Linux)");
    let before = rss_now();
    let started = Instant::now();
    // What `run` does: validate in one pass, then stream unique rows in chunks to the journal.
    let v = fleetcrypt::input::validate(path.to_str().unwrap(), &Default::default()).unwrap();
    let mut streamed = 0;
    v.read_chunks(10_000, |chunk| {
        streamed += chunk.len();
        Ok(())
    })
    .unwrap();
    let took = started.elapsed();
    println!(
        "input: {} rows ({streamed} streamed), {:.1} MB CSV",
        v.len(),
        size as f64 / 1e6
    );
    println!(
        "  validated and streamed (two passes) in {:.2} s ({:.0} rows/s)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    let peak = hwm();
    println!(
        "  peak RSS {peak:.1} MB, {:.1} MB above the {before:.1} MB before parsing: {:.2}x the file size",
        peak - before,
        (peak - before) * 1e6 / size as f64 * (1024.0 * 1024.0 / 1e6)
    );
}

/// Several accounts in one run (issue 12): the same `n`-instance fleet, one
/// endpoint, the documented limits (20/s per action, Host and SecretId) and
/// the emulator's default latencies, run once with every row in one account
/// and once split over two (each instance visible to its own account only).
/// The emulator runs in this process with both credentials; the runner is
/// the real binary with two tccli profiles in a scratch HOME.
///
/// `fast`: Opens answer in 20–400 ms and the first verification read goes
/// 300 ms after the answer, so the run is bound by the quota, not by the
/// latency (which two accounts do not shorten).
fn accounts(n: usize, fast: bool) {
    use fleetcrypt::emulator::{Emulator, EmulatorConfig, Generate, Latency, World};
    const SECOND_ID: &str = "AKIDbenchsecond0123456";
    const SECOND_KEY: &str = "bench-second-key";
    let one_run = |split: bool| {
        let mut world = World::generate(&Generate {
            count: n,
            share_encrypted: 0.0,
            share_unsupported: 0.0,
            share_needs_upgrade: 0.0,
            share_custom_key: 0.0,
            share_replicas: 0.0,
            seed: 7,
            ..Generate::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = String::from("InstanceId,Region,Account\n");
        for (i, inst) in world.instances.values_mut().enumerate() {
            let beta = split && i % 2 == 1;
            inst.owner = Some(if beta { SECOND_ID } else { ID }.to_string());
            let account = if beta { "beta" } else { "alpha" };
            fleet.push_str(&format!("{},{},{account}\n", inst.id, inst.region));
        }
        let fleet_path = dir.path().join("fleet.csv");
        std::fs::write(&fleet_path, fleet).unwrap();
        let tccli = dir.path().join(".tccli");
        std::fs::create_dir_all(&tccli).unwrap();
        for (name, id, key) in [("alpha", ID, KEY), ("beta", SECOND_ID, SECOND_KEY)] {
            std::fs::write(
                tccli.join(format!("{name}.credential")),
                format!(r#"{{"secretId": "{id}", "secretKey": "{key}"}}"#),
            )
            .unwrap();
        }
        let mut config = EmulatorConfig {
            credentials: vec![
                (ID.into(), fleetcrypt::api::Secret::new(KEY)),
                (SECOND_ID.into(), fleetcrypt::api::Secret::new(SECOND_KEY)),
            ],
            ..EmulatorConfig::default()
        };
        let mut extra: Vec<String> = Vec::new();
        if fast {
            config.latency.insert(
                "OpenDBInstanceEncryption".into(),
                Latency::between(Duration::from_millis(20), Duration::from_millis(400)),
            );
            config.apply_within = Duration::from_millis(300);
            extra.extend(["--verify-first-read", "300ms"].map(String::from));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let emu = rt
            .block_on(Emulator::start(
                config,
                world,
                "127.0.0.1:0".parse().unwrap(),
            ))
            .unwrap();
        let journal = dir.path().join("j.db");
        let mut args: Vec<String> = vec![
            "--journal".into(),
            journal.display().to_string(),
            "--endpoint".into(),
            emu.url(),
            "-q".into(),
            "run".into(),
            "--instances".into(),
            fleet_path.display().to_string(),
            "--rate".into(),
            "20".into(),
            "--yes".into(),
        ];
        args.extend(extra);
        let usage = run_measured_with(&args, &[("HOME", dir.path())]);
        let truth = emu.ground_truth();
        let encrypted = truth.instances.values().filter(|i| i.encrypted).count();
        let describe = truth.action("DescribeDBInstanceInfo");
        let per_credential = truth
            .actions
            .values()
            .map(|a| a.max_in_1s_window)
            .max()
            .unwrap_or(0);
        let throttled: u64 = truth.actions.values().map(|a| a.throttled).sum();
        println!(
            "  {:<13} exit {}, {encrypted}/{n} encrypted, wall {:.1} s ({:.2} instances/s); busiest second per (SecretId, action) {per_credential}, DescribeDBInstanceInfo over both credentials {}; throttled {throttled}",
            if split { "two accounts" } else { "one account" },
            usage.code,
            usage.wall.as_secs_f64(),
            n as f64 / usage.wall.as_secs_f64(),
            describe.max_in_1s_window_all_credentials,
        );
        drop(emu);
        if std::env::var_os("BENCH_KEEP_JOURNAL").is_some() {
            let kept = std::env::temp_dir().join(format!("accounts-{split}.db"));
            std::fs::copy(&journal, &kept).unwrap();
            println!("  journal kept at {}", kept.display());
        }
        usage.wall
    };
    println!(
        "accounts: {n} instances, one endpoint, documented limits (20/s per action and SecretId), {}",
        if fast {
            "Open 20-400 ms, first verification read 300 ms after the answer"
        } else {
            "default emulator latencies (Open 0.5-10 s)"
        }
    );
    let one = one_run(false);
    let two = one_run(true);
    println!(
        "  ratio two/one           {:.2} (wall time of two accounts over one)",
        two.as_secs_f64() / one.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = |d: usize| args.get(2).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("throughput") => throughput(n(2000)),
        Some("ambiguous") => ambiguous(n(1000)),
        Some("propagation") => propagation(n(400)),
        Some("ceiling") => ceiling(n(20000)),
        Some("emulator") => emulator(n(10) as u64),
        Some("report") => report(n(100_000)),
        Some("input") => input(n(1_000_000)),
        Some("accounts") => accounts(n(200), args.get(3).is_some_and(|m| m == "fast")),
        _ => eprintln!(
            "usage: bench throughput|ambiguous|propagation|ceiling|emulator|report|input [N] | accounts [N] [fast]"
        ),
    }
}
