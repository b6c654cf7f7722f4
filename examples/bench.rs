//! Benchmarks behind BENCHMARKS.md. Build first: `cargo build --release --examples`.
//!
//!   cargo run --release --example bench -- throughput [N]   # N instances (2000), Open 1–10 s, --rate 20
//!   cargo run --release --example bench -- ceiling [N]      # limits off, zero latency: runner + journal ceiling
//!   cargo run --release --example bench -- emulator [SECS]  # emulator requests/s, zero latency, loopback
//!   cargo run --release --example bench -- report [N]       # report json/csv on an N-instance journal (100000)
//!   cargo run --release --example bench -- input [N]        # parse an N-row CSV (1000000): time and peak RSS
//!
//! The runner and the emulator run as separate processes (the real binary), so
//! the runner's peak RSS and CPU time are its own (from wait4's rusage).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetcrypt::api::{Client, ClientOptions, Credentials, Endpoint, Service};
use fleetcrypt::input::InstanceSpec;
use fleetcrypt::journal::{schema, CallRecord, Change, Disposition, Fact, Journal};

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
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
fn run_measured(args: &[String]) -> Usage {
    let started = Instant::now();
    let child = Command::new(bin())
        .args(args)
        .env("TENCENTCLOUD_SECRET_ID", ID)
        .env("TENCENTCLOUD_SECRET_KEY", KEY)
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

/// (first request sent, 10 % and 90 % of terminal arrivals, last terminal) in ms.
fn journal_timing(path: &Path) -> (i64, i64, i64, i64, usize) {
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
    (first, t[n / 10], t[n * 9 / 10], t[n - 1], n)
}

fn throughput(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut emu, url) = start_emulator(&[
        "--generate",
        &n.to_string(),
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
        "20".into(),
        "--yes".into(),
    ]);
    let _ = emu.kill();
    let (first, p10, p90, last, done) = journal_timing(&journal);
    let sustained = (done as f64 * 0.8) / ((p90 - p10) as f64 / 1000.0);
    let end_to_end = done as f64 / ((last - first) as f64 / 1000.0);
    println!("throughput: {done} instances, Open latency uniform 1-10 s, --rate 20, one endpoint");
    println!("  exit code               {}", u.code);
    println!("  sustained (10%..90%)    {sustained:.2} instances/s   (physical bound 10.00)");
    println!("  end to end              {end_to_end:.2} instances/s   (first request to last verification)");
    println!("  wall                    {:.1} s", u.wall.as_secs_f64());
    println!(
        "  peak RSS of `run`       {:.1} MB",
        u.max_rss_kb as f64 / 1024.0
    );
    println!(
        "  CPU time of `run`       {:.2} s ({:.2} ms/instance)",
        u.cpu.as_secs_f64(),
        u.cpu.as_secs_f64() * 1000.0 / done as f64
    );
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
        "--yes".into(),
    ]);
    let _ = emu.kill();
    let (first, _, _, last, done) = journal_timing(&journal);
    println!("ceiling: {done} instances, emulator without limits or latency, --rate 10000 (2 cores shared with the emulator)");
    println!("  exit code               {}", u.code);
    println!(
        "  end to end              {:.0} instances/s",
        done as f64 / ((last - first) as f64 / 1000.0)
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
                id: format!("cdb-{i:08}"),
                region: "ap-guangzhou".into(),
                key_id: None,
                key_region: None,
                labels: vec![("team".into(), format!("team-{}", i % 7))],
                line: i as u64 + 2,
            })
            .collect();
        j.import(specs).await.unwrap();
        let call = |action: &str, t: i64| CallRecord {
            action: action.into(),
            endpoint: "cdb.ap-guangzhou.tencentcloudapi.com".into(),
            sent_at_ms: t,
            latency_ms: 40,
            request_id: Some(uuid::Uuid::new_v4().to_string()),
            ..CallRecord::default()
        };
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let j = j.clone();
            let t0 = 1_700_000_000_000 + (i as i64) * 100;
            let id = format!("cdb-{i:08}");
            let c = call;
            tasks.spawn(async move {
                let ch = |fact, call: Option<CallRecord>, at| Change {
                    instance_id: id.clone(),
                    fact,
                    run_id: None,
                    call,
                    at_ms: at,
                };
                j.apply(ch(
                    Fact::EncryptionRead {
                        encrypted: false,
                        settled: true,
                    },
                    Some(c("DescribeDBInstanceInfo", t0)),
                    t0,
                ))
                .await
                .unwrap();
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
                    Some(c("OpenDBInstanceEncryption", t0 + 60)),
                    t0 + 5000,
                ))
                .await
                .unwrap();
                j.apply(ch(
                    Fact::EncryptionRead {
                        encrypted: true,
                        settled: true,
                    },
                    Some(c("DescribeDBInstanceInfo", t0 + 5100)),
                    t0 + 5100,
                ))
                .await
                .unwrap();
            });
            while tasks.len() > 512 {
                tasks.join_next().await;
            }
        }
        while tasks.join_next().await.is_some() {}
    });
    println!(
        "report: journal of {n} instances, {} events built in {:.1} s",
        n * 5,
        built.elapsed().as_secs_f64()
    );
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = |d: usize| args.get(2).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.get(1).map(String::as_str) {
        Some("throughput") => throughput(n(2000)),
        Some("ceiling") => ceiling(n(20000)),
        Some("emulator") => emulator(n(10) as u64),
        Some("report") => report(n(100_000)),
        Some("input") => input(n(1_000_000)),
        _ => eprintln!("usage: bench throughput|ceiling|emulator|report|input [N]"),
    }
}
