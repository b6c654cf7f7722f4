//! Reports from a journal of a real run against the emulator: JSON against the
//! ground truth, formula cells escaped in CSV, HTML self-contained and escaped
//! (and rendered in headless Chromium when one is installed).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use fleetcrypt::api::{Client, ClientOptions, Credentials, EndpointPolicy};
use fleetcrypt::emulator::{Faults, Generate, World};
use fleetcrypt::journal::{chain, schema, Journal};
use fleetcrypt::report::{self, Format};
use fleetcrypt::runner::{self, Counters, RunConfig};
use tokio_util::sync::CancellationToken;

const EVIL: &str = "=HYPERLINK(\"http://x\",\"<script>alert(1)</script>\")";

/// Runs a 120-instance job with faults, custom keys (one disabled) and hostile labels.
async fn journal_of_a_run(dir: &std::path::Path) -> (std::path::PathBuf, EmulatorThread, u32) {
    let world = World::generate(&Generate {
        count: 120,
        seed: 21,
        share_encrypted: 0.15,
        ..Generate::default()
    });
    let keys = world.keys_by_region();
    let mut specs = specs_of(&world);
    for (n, s) in specs.iter_mut().enumerate() {
        s.labels.push((
            "owner".into(),
            if n % 2 == 0 {
                EVIL.into()
            } else {
                "-1+2".into()
            },
        ));
        if n % 10 == 0 {
            // Every tenth uses its region's custom key; every thirtieth the disabled one.
            let (r, enabled, disabled) = keys
                .iter()
                .find(|(r, _, _)| *r == s.region)
                .unwrap()
                .clone();
            s.key_id = Some(if n % 30 == 0 { disabled } else { enabled });
            s.key_region = Some(r);
        }
    }
    let rate = 40;
    let mut cfg = fast_config(rate);
    cfg.faults = Faults::mixed(0.1);
    let emu = EmulatorThread::start(cfg, world);
    let path = dir.join("j.db");
    let journal = Journal::open(&path).unwrap();
    journal.import(specs).await.unwrap();
    let run_id = journal
        .start_run(
            "run",
            Some(rate),
            Some(Duration::from_millis(1000)),
            Some(Duration::from_millis(1300)),
        )
        .await
        .unwrap();
    let config = RunConfig {
        rate,
        timeout: Duration::from_millis(1000),
        settle: Duration::from_millis(2500),
        ambiguous_first_read: Duration::from_millis(200),
        verify_deadline: Duration::from_secs(5),
        endpoints: EndpointPolicy::Custom(emu.url.clone()),
        retry_backoff: runner::Backoff::new(Duration::from_millis(50), Duration::from_millis(300)),
        poll_backoff: runner::Backoff::new(Duration::from_millis(100), Duration::from_millis(300)),
        verify_first_read: Duration::from_millis(100),
        rollout: no_error_budget(),
        ..RunConfig::default()
    };
    let client = Client::new(
        Credentials::new(SECRET_ID, SECRET_KEY),
        &ClientOptions {
            timeout: config.timeout,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    runner::run(
        &journal,
        &client,
        &config,
        Some(run_id),
        CancellationToken::new(),
        Arc::new(Counters::default()),
    )
    .await
    .unwrap();
    journal.end_run(run_id, 1).await.unwrap();
    (path, emu, rate)
}

/// Strings that would make the HTML report load something from elsewhere.
const EXTERNAL: [&str; 6] = [
    "src=\"http",
    "href=\"http",
    "@import",
    "url(",
    "<link",
    "<script src",
];

fn render(path: &std::path::Path, format: Format) -> String {
    let mut out = Vec::new();
    report::write(path, format, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_agree_with_ground_truth_and_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let (path, emu, rate) = journal_of_a_run(dir.path()).await;
    let truth = emu.truth();

    // JSON: the contract.
    let j: serde_json::Value = serde_json::from_str(&render(&path, Format::Json)).unwrap();
    for k in [
        "generated_at",
        "journal",
        "tool_version",
        "summary",
        "rate",
        "journal_chain_head",
        "instances",
    ] {
        assert!(j.get(k).is_some(), "missing {k}");
    }
    let s = &j["summary"];
    let sum: u64 = ["encrypted", "already_encrypted", "failed", "pending"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
    assert_eq!(sum, s["total"].as_u64().unwrap());
    assert_eq!(s["total"], 120);
    assert_eq!(s["pending"], 0);
    assert_eq!(j["rate"]["limit_per_s"], rate);
    for (action, n) in j["rate"]["max_requests_in_1s_window"].as_object().unwrap() {
        assert!(n.as_u64().unwrap() <= rate as u64, "{action}: {n}");
    }
    // Verification reads: the journal's count is the server's, and the delay to
    // YES is there for the one endpoint.
    let v = &j["verification"];
    let reads = v["describe_reads"].as_u64().unwrap();
    assert_eq!(
        reads,
        truth
            .action(fleetcrypt::api::cdb::DESCRIBE_DB_INSTANCE_INFO)
            .seen
    );
    assert!((v["reads_per_instance"].as_f64().unwrap() - reads as f64 / 120.0).abs() < 1e-9);
    let polls = v["polls"].as_u64().unwrap();
    assert!(polls < reads);
    assert!(
        (v["poll_share_of_describe_quota"].as_f64().unwrap() - polls as f64 / reads as f64).abs()
            < 1e-9
    );
    let delays = v["delay_to_yes_ms"].as_object().unwrap();
    assert_eq!(delays.len(), 1, "{delays:?}");
    let d = delays.values().next().unwrap();
    let verified_after_accepted = d["n"].as_u64().unwrap();
    assert!(
        verified_after_accepted > 0 && verified_after_accepted <= s["encrypted"].as_u64().unwrap()
    );
    assert!(d["p50"].as_i64().unwrap() <= d["p90"].as_i64().unwrap());
    let conn = schema::open_reader(&path).unwrap();
    assert_eq!(
        fleetcrypt::journal::read::verification(&conn).unwrap(),
        fleetcrypt::journal::read::verification_from_events(&conn).unwrap()
    );
    assert_eq!(j["journal_chain_head"], chain::head(&conn).unwrap());
    let mut kms_failed = 0;
    for i in j["instances"].as_array().unwrap() {
        let id = i["instance_id"].as_str().unwrap();
        let t = &truth.instances[id];
        match i["state"].as_str().unwrap() {
            "encrypted" => {
                assert!(t.encrypted, "{id}");
                assert!(i["attempts"].as_u64().unwrap() >= 1);
                assert!(i["verified_at"].is_string());
                assert_eq!(
                    i["key_id"].as_str(),
                    t.key_id.as_deref().filter(|k| *k != "KMS-CDB"),
                    "{id}: key"
                );
            }
            "already_encrypted" => assert!(t.encrypted && t.open_calls == 0, "{id}"),
            "failed" => {
                assert!(!t.encrypted, "{id}");
                assert!(i["last_error_code"].is_string());
                if i["last_error_code"] == "InternalError.KmsError" {
                    kms_failed += 1;
                }
            }
            other => panic!("{id}: {other}"),
        }
        assert!(i["labels"]["owner"].is_string());
    }
    assert!(
        kms_failed >= 1,
        "the disabled key should fail with KmsError after verified retries"
    );

    // CSV: one row per instance, formula cells escaped.
    let csv_text = render(&path, Format::Csv);
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(&headers[0], "instance_id");
    let owner = headers
        .iter()
        .position(|h| h == "label.owner")
        .expect("label column");
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 120);
    for r in &rows {
        let cell = &r[owner];
        assert!(cell.starts_with('\''), "formula cell not escaped: {cell}");
    }

    // Markdown: summary, failures grouped with a hint, timeline.
    let md = render(&path, Format::Md);
    assert!(
        md.contains("## Summary")
            && md.contains("## Failures by error code")
            && md.contains("## Timeline")
    );
    assert!(
        md.contains("### `InternalError.KmsError`") && md.contains("MySQL_QCSRole"),
        "{md}"
    );
    let per_instance = format!("{reads} DescribeDBInstanceInfo reads for 120 instances");
    assert!(
        md.contains("## Verification reads") && md.contains(&per_instance),
        "{md}"
    );

    // HTML: self-contained, escaped.
    let html = render(&path, Format::Html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    for external in EXTERNAL {
        assert!(!html.contains(external), "external reference {external}");
    }
    assert!(!html.contains("<script>alert(1)"), "user text not escaped");
    assert!(html.contains("&lt;script&gt;alert(1)"));
    assert!(html.contains("<svg") && html.contains("limit 40/s"));
    assert!(html.contains(&per_instance) && html.contains("showed YES"));
    assert!(html.contains(&*chain::head(&conn).unwrap()));

    // Rendered in a real browser when one is installed: a screenshot, and the
    // instance table inside the page with its last column (labels) in view.
    std::fs::write(dir.path().join("r.html"), &html).unwrap();
    browser_checks(
        dir.path(),
        &dir.path().join("r.html"),
        Duration::from_secs(60),
    );
}

#[test]
fn report_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    drop(Journal::open(&path).unwrap());
    let out = dir.path().join("r.json");
    report::write_file(&path, Format::Json, &out).unwrap();
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(j["summary"]["total"], 0);
    assert_eq!(j["instances"], serde_json::json!([]));

    // An empty journal still makes a whole page, its charts with an axis.
    let html = render(&path, Format::Html);
    assert!(html.contains("<h2>Instances (0)</h2>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("no requests in the journal yet").count(), 2);
    assert_eq!(tick_labels(&html, "y-tick"), ["0", "1", "0", "1"]);
}

/// The first Chromium on PATH, if any.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium on `page` with `args`, killed after `limit`: its
/// standard output, or `None` when it ran out of time.
fn run_chromium(
    browser: &str,
    work: &Path,
    args: &[String],
    page: &Path,
    limit: Duration,
) -> Option<String> {
    let profile = tempfile::tempdir_in(work).unwrap();
    let stdout = work.join(format!("chromium-{}.out", std::process::id()));
    let mut child = std::process::Command::new(browser)
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
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(std::fs::read_to_string(&stdout).unwrap_or_default())
}

/// In headless Chromium, when one is installed (skipped with a message
/// otherwise): a 1280x2000 screenshot of the report at `page` is taken within
/// `limit`, and, measured in the browser's own layout, the page does not
/// overflow sideways and the instance table's last column (labels) ends
/// inside its box.
fn browser_checks(work: &Path, page: &Path, limit: Duration) {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: headless Chromium screenshot of the HTML report (no chromium on PATH; apt-get install chromium)"
        );
        return;
    };
    let png = work.join("r.png");
    let started = Instant::now();
    let done = run_chromium(
        browser,
        work,
        &[format!("--screenshot={}", png.display())],
        page,
        limit,
    );
    let took = started.elapsed();
    assert!(done.is_some(), "no screenshot within {limit:?}");
    let bytes = std::fs::read(&png).unwrap_or_default();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
        "chromium rendered nothing ({} bytes)",
        bytes.len()
    );
    eprintln!(
        "chromium: {} byte screenshot of {} in {took:.1?}",
        bytes.len(),
        page.display()
    );

    // The same page with a probe that writes the layout's verdict into the title.
    let html = std::fs::read_to_string(page).unwrap();
    let probe = r#"<script>(function(){var t=document.getElementById('instances'),box=t.closest('.table-box'),last=t.tHead.rows[0].cells[t.tHead.rows[0].cells.length-1];
var r=last.getBoundingClientRect().right,b=box.getBoundingClientRect().right,page=document.documentElement.scrollWidth,w=window.innerWidth;
document.title='layout '+(r<=b+0.5&&t.scrollWidth<=box.clientWidth&&page<=w?'fits':'overflows')+' labels-right='+r+' box-right='+b+' page='+page+' window='+w;})();</script></body>"#;
    assert!(html.contains("</body>"));
    let probed = work.join("probed.html");
    std::fs::write(&probed, html.replacen("</body>", probe, 1)).unwrap();
    let dom = run_chromium(browser, work, &["--dump-dom".to_string()], &probed, limit)
        .expect("chromium --dump-dom in time");
    let title = dom
        .split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("");
    assert!(title.starts_with("layout fits"), "{title}");
}

/// What happens to instance `i` of a synthetic journal (as in `bench -- report`,
/// with more failures, so that more than 1,000 are not encrypted): most
/// encrypted, every tenth already was, some fail with one of two codes, some are
/// left unfinished.
fn synthetic_state(i: usize) -> &'static str {
    match i {
        _ if i.is_multiple_of(13) => "UnsupportedOperation",
        _ if i % 29 == 1 => "InternalError.KmsError",
        _ if i % 53 == 5 => "verifying",
        _ if i % 10 == 9 => "already_encrypted",
        _ => "encrypted",
    }
}

const SYNTHETIC_REGIONS: [&str; 3] = ["ap-guangzhou", "ap-shanghai", "ap-singapore"];

/// A journal of `n` instances over three regions, one request every 100 ms,
/// built through the journal's own writer without a run (a few seconds for 20,000).
async fn synthetic_journal(path: &Path, n: usize) {
    use fleetcrypt::input::InstanceSpec;
    use fleetcrypt::journal::{CallRecord, Change, Fact};
    use fleetcrypt::model::{Action, Disposition, InstanceId};

    let j = Journal::open(path).unwrap();
    let specs = (0..n)
        .map(|i| InstanceSpec {
            id: format!("cdb-{i:08}").parse().unwrap(),
            region: SYNTHETIC_REGIONS[i % 3].into(),
            key_id: None,
            key_region: None,
            account: None,
            labels: vec![
                ("team".into(), format!("team-{}", i % 7)),
                ("name".into(), format!("db-{i}")),
            ],
            line: i as u64 + 2,
        })
        .collect();
    j.import(specs).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let j = j.clone();
        tasks.spawn(async move {
            let id: InstanceId = format!("cdb-{i:08}").parse().unwrap();
            let t0 = 1_764_470_400_000 + i as i64 * 100;
            let call = |action, t| {
                Some(CallRecord {
                    latency_ms: 40,
                    request_id: Some(format!("req-{i}-{t}")),
                    ..CallRecord::new(action, "cdb.tencentcloudapi.com", t)
                })
            };
            let apply = |fact, call, at_ms| {
                j.apply(Change {
                    instance_id: id.clone(),
                    fact,
                    run_id: None,
                    call,
                    at_ms,
                })
            };
            let state = synthetic_state(i);
            let first = Fact::EncryptionRead {
                encrypted: state == "already_encrypted",
                settled: true,
            };
            apply(first, call(Action::DescribeDBInstanceInfo, t0), t0)
                .await
                .unwrap();
            match state {
                "already_encrypted" => return,
                "UnsupportedOperation" => {
                    let fact = Fact::PreflightFailed {
                        code: state.into(),
                        message: "the instance does not support storage encryption".into(),
                    };
                    apply(fact, None, t0 + 10).await.unwrap();
                    return;
                }
                _ => {}
            }
            let written = Fact::AttemptWritten {
                request: "{}".into(),
            };
            apply(written, None, t0 + 50).await.unwrap();
            let answered = Fact::AttemptAnswered {
                disposition: Disposition::Accepted,
                settles_at_ms: t0 + 17_000,
                next_attempt_at_ms: None,
                kms_error: false,
            };
            let open = call(Action::OpenDBInstanceEncryption, t0 + 60);
            apply(answered, open, t0 + 5000).await.unwrap();
            match state {
                "verifying" => {}
                "InternalError.KmsError" => {
                    let fact = Fact::GaveUp {
                        code: state.into(),
                        message: "the KMS key is disabled".into(),
                    };
                    apply(fact, None, t0 + 5100).await.unwrap();
                }
                _ => {
                    let yes = Fact::EncryptionRead {
                        encrypted: true,
                        settled: true,
                    };
                    let read = call(Action::DescribeDBInstanceInfo, t0 + 5100);
                    apply(yes, read, t0 + 5100).await.unwrap();
                }
            }
        });
        while tasks.len() > 512 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// The numbers in the `class="{class}"` SVG labels, in page order.
fn tick_labels<'a>(html: &'a str, class: &str) -> Vec<&'a str> {
    let marker = format!("class=\"{class}\"");
    html.split(&marker)
        .skip(1)
        .filter_map(|rest| rest.split('>').nth(1)?.split('<').next())
        .collect()
}

/// Issue 12: above 2,000 instances the HTML keeps the summary, charts and
/// failures, counts the instances per region and label, lists only those not
/// confirmed encrypted (at most 1,000), and stays small: 20,000 instances make
/// under 1 MB, so 100,000 would be under 5 MB even if the page grew with the
/// fleet (it does not). The CSV keeps every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_journal_makes_a_small_html_report() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.db");
    let built = Instant::now();
    synthetic_journal(&path, N).await;
    eprintln!("{N}-instance journal built in {:.1?}", built.elapsed());

    let started = Instant::now();
    let html = render(&path, Format::Html);
    let took = started.elapsed();
    eprintln!(
        "html report of {N} instances: {} bytes in {took:.1?}",
        html.len()
    );
    assert!(
        html.len() < 1_000_000,
        "{} bytes for {N} instances: 100,000 could pass 5 MB",
        html.len()
    );
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    for external in EXTERNAL {
        assert!(!html.contains(external), "external reference {external}");
    }

    let states: Vec<&str> = (0..N).map(synthetic_state).collect();
    let count = |s: &str| states.iter().filter(|x| **x == s).count();
    let failed = count("UnsupportedOperation") + count("InternalError.KmsError");
    let unfinished = count("verifying");

    // The summary, both charts and the failures stay.
    assert!(html.contains(&format!(
        "<div class=\"n\">{}</div><div class=\"l\">failed</div>",
        thousands(failed)
    )));
    assert_eq!(html.matches("<svg").count(), 2);
    // Failure groups: a count and ten example ids, "and N more".
    let kms = count("InternalError.KmsError");
    assert!(
        html.contains(&format!("<td class=\"num\">{}</td>", thousands(kms)))
            && html.contains(&format!(" and {} more", thousands(kms - 10))),
        "KmsError group"
    );
    // The last failed instance is neither in its group's examples nor in the
    // first 1,000 listed: no cell holds every id.
    let last_failed = (0..N)
        .rev()
        .find(|i| states[*i] == "UnsupportedOperation")
        .unwrap();
    assert!(!html.contains(&format!("cdb-{last_failed:08}")));

    // Only instances not confirmed encrypted are listed, the first 1,000 of them.
    let listed = html
        .split("<table id=\"instances\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap()
        .matches("<tr><td>")
        .count();
    assert!(failed + unfinished > 1_000);
    assert_eq!(listed, 1_000);
    let first_encrypted = states.iter().position(|s| *s == "encrypted").unwrap();
    assert!(!html.contains(&format!("cdb-{first_encrypted:08}")));
    assert!(
        html.contains("cdb-00000000"),
        "the first failed instance is listed"
    );
    assert!(html.contains(&format!(
        "{} more are not",
        thousands(failed + unfinished - listed)
    )));
    // Where the full list is, as a command to copy.
    let command = format!(
        "fleetcrypt --journal {} report --format csv -o instances.csv",
        path.display()
    );
    assert!(html.contains(&command), "{command}");

    // Counted per region and per label value; a label with a value per
    // instance is named, not counted.
    let per_region = |r: usize, s: &str| (r..N).step_by(3).filter(|i| states[*i] == s).count();
    let guangzhou_encrypted = per_region(0, "encrypted");
    assert!(html.contains(&format!(
        "<tr><td>ap-guangzhou</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
        thousands(guangzhou_encrypted),
        thousands(per_region(0, "already_encrypted"))
    )));
    assert!(html.contains("<tr><td>team=team-3</td>"));
    assert!(html.contains("<code>name</code> (20,000 values)"));

    // The table fits: fixed columns inside a box that scrolls sideways when narrow.
    assert!(html.contains("table.instances{table-layout:fixed;min-width:900px}"));
    assert!(html.contains(".table-box{overflow-x:auto"));
    assert!(html.contains("<div class=\"panel table-box\"><input type=\"search\""));

    // Each chart: value ticks 0, s, 2s, … with s 1, 2 or 5 × 10^k, and several
    // clock times on the time axis.
    for svg in html.split("<svg").skip(1) {
        let svg = svg.split("</svg>").next().unwrap();
        let y: Vec<u64> = tick_labels(svg, "y-tick")
            .iter()
            .map(|t| t.replace(',', "").parse().unwrap())
            .collect();
        assert!(y.len() >= 3, "{y:?}");
        let step = y[1];
        assert!(
            [1, 2, 5].contains(&(step / 10u64.pow(step.ilog10()))),
            "{y:?}"
        );
        assert!(
            y.iter().enumerate().all(|(i, v)| *v == i as u64 * step),
            "{y:?}"
        );
        // 20,000 instances 100 ms apart: 33 minutes, a tick every 5 minutes.
        let x = tick_labels(svg, "x-tick");
        assert!(x.len() >= 4, "{x:?}");
        assert!(
            x.iter().all(|t| t.len() == 5 && t.as_bytes()[2] == b':'),
            "{x:?}"
        );
    }

    // The CSV still has every instance.
    let csv = render(&path, Format::Csv);
    assert_eq!(csv.lines().count(), N + 1);

    browser_checks(
        dir.path(),
        &{
            let file = dir.path().join("big.html");
            std::fs::write(&file, &html).unwrap();
            file
        },
        Duration::from_secs(30),
    );
}

fn thousands(n: usize) -> String {
    fleetcrypt::report::thousands(n as u64)
}
