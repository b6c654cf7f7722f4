//! Reports from a journal of a real run against the emulator: JSON against the
//! ground truth, formula cells escaped in CSV, HTML self-contained and escaped
//! (and rendered in headless Chromium when one is installed).

mod common;

use std::sync::Arc;
use std::time::Duration;

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
    for external in [
        "src=\"http",
        "href=\"http",
        "@import",
        "url(",
        "<link",
        "<script src",
    ] {
        assert!(!html.contains(external), "external reference {external}");
    }
    assert!(!html.contains("<script>alert(1)"), "user text not escaped");
    assert!(html.contains("&lt;script&gt;alert(1)"));
    assert!(html.contains("<svg") && html.contains("limit 40/s"));
    assert!(html.contains(&per_instance) && html.contains("showed YES"));
    assert!(html.contains(&*chain::head(&conn).unwrap()));

    // Rendered in a real browser when one is installed.
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    match chromium {
        None => eprintln!(
            "SKIPPED: headless Chromium render (no chromium on PATH; apt-get install chromium)"
        ),
        Some(b) => {
            let file = dir.path().join("r.html");
            std::fs::write(&file, &html).unwrap();
            let png = dir.path().join("r.png");
            let out = std::process::Command::new(b)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1200,1600",
                ])
                .arg(format!(
                    "--user-data-dir={}",
                    dir.path().join("chrome").display()
                ))
                .arg(format!("--screenshot={}", png.display()))
                .arg(format!("file://{}", file.display()))
                .output()
                .unwrap();
            let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
            assert!(
                size > 20_000,
                "chromium rendered nothing ({size} bytes): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
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
}
