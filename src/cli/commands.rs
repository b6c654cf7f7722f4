//! The smaller commands: status, report, retry-failed, discover, call, journal verify.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::{exit, DiscoverArgs, Global};
use crate::api::cdb::*;
use crate::api::{Client, Endpoint, Failure, Service};
use crate::journal::{chain, read, schema, ChainReport, JournalLock};
use crate::model::{hint, State};

pub fn status(global: &Global, as_json: bool) -> u8 {
    let conn = match schema::open_reader(&global.journal) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fleetcrypt: {e}");
            return exit::USAGE;
        }
    };
    let gather = || -> rusqlite::Result<Value> {
        let counts = read::counts(&conn)?;
        let total: u64 = counts.values().sum();
        let open: u64 = counts
            .iter()
            .filter(|(s, _)| !s.is_terminal())
            .map(|(_, n)| n)
            .sum();
        let now = crate::model::now_ms();
        let runs = read::runs(&conn)?;
        let last = runs.last();
        // Over the last minute, or since the current run started if that is more recent.
        let since = last
            .filter(|r| r.ended_at_ms.is_none())
            .map_or(now - 60_000, |r| r.started_at_ms.max(now - 60_000));
        let recent = read::finished_since(&conn, since)?;
        let rate = recent as f64 / ((now - since).max(1000) as f64 / 1000.0);
        let eta = (rate > 0.0).then(|| (open as f64 / rate).round() as u64);
        let lock_held = JournalLock::is_held(&global.journal);
        let failures: Vec<Value> = read::failures_by_code(&conn)?
            .into_iter()
            .map(|read::FailureGroup { code, count: n, instances: ids, message: msg }| {
                json!({"code": code, "count": n, "examples": ids.into_iter().take(5).collect::<Vec<_>>(),
                       "message": msg, "hint": hint(&code)})
            })
            .collect();
        Ok(json!({
            "journal": global.journal.display().to_string(),
            "total": total,
            "counts": counts.iter().map(|(s, n)| (s.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "pending": open,
            "running": lock_held,
            "last_run": last.map(|r| json!({"id": r.id, "command": r.command, "started_at": crate::report::iso(r.started_at_ms),
                "ended_at": r.ended_at_ms.map(crate::report::iso), "exit_code": r.exit_code})),
            "instances_per_s_last_minute": (rate * 100.0).round() / 100.0,
            "eta_s": eta,
            "max_requests_in_1s_window": read::max_requests_in_1s_window(&conn)?,
            "failures": failures,
        }))
    };
    let v = match gather() {
        Ok(v) => v,
        Err(e) => return read_error(global, &e),
    };
    if as_json {
        say!("{}", serde_json::to_string_pretty(&v).unwrap());
        return exit::OK;
    }
    let mut out = String::new();
    out.push_str(&format!(
        "journal {} — {} instance(s){}\n",
        v["journal"].as_str().unwrap_or(""),
        v["total"],
        if v["running"] == json!(true) {
            ", a run is in progress"
        } else {
            ""
        }
    ));
    for s in State::ALL {
        out.push_str(&format!(
            "  {:<18} {:>7}\n",
            s.as_str(),
            v["counts"][s.as_str()]
        ));
    }
    out.push_str(&format!(
        "rate (last minute): {} instances/s   ETA: {}\n",
        v["instances_per_s_last_minute"],
        v["eta_s"]
            .as_u64()
            .map(|s| format!("{s}s"))
            .unwrap_or_else(|| "-".into())
    ));
    if let Some(f) = v["failures"].as_array().filter(|f| !f.is_empty()) {
        out.push_str("failures:\n");
        for x in f {
            out.push_str(&format!(
                "  {:<32} {:>5}  {}\n",
                x["code"].as_str().unwrap_or(""),
                x["count"],
                x["message"].as_str().unwrap_or("")
            ));
        }
    }
    {
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{out}");
    }
    exit::OK
}

pub fn report(global: &Global, format: crate::report::Format, output: Option<PathBuf>) -> u8 {
    let result = match &output {
        Some(path) => crate::report::write_file(&global.journal, format, path),
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            crate::report::write(&global.journal, format, &mut lock)
        }
    };
    match result {
        Ok(()) => exit::OK,
        Err(crate::report::ReportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            exit::OK
        }
        Err(crate::report::ReportError::Journal(e)) => {
            eprintln!("fleetcrypt: {e}");
            super::job::unusable_journal_exit(&e)
        }
        Err(crate::report::ReportError::Sql(e)) => read_error(global, &e),
        Err(e) => {
            eprintln!("fleetcrypt: {e}");
            exit::SOME_FAILED
        }
    }
}

/// A read of an opened journal failed: a damaged file (corrupt, truncated) is an
/// unusable journal (exit 2, SPEC §3); anything else is exit 1.
fn read_error(global: &Global, e: &rusqlite::Error) -> u8 {
    if schema::is_unusable(e) {
        eprintln!(
            "fleetcrypt: cannot open the journal {}: it is damaged: {e}",
            global.journal.display()
        );
        exit::USAGE
    } else {
        eprintln!(
            "fleetcrypt: cannot read the journal {}: {e}",
            global.journal.display()
        );
        exit::SOME_FAILED
    }
}

pub fn retry_failed(global: &Global, code: Option<String>) -> u8 {
    if !global.journal.exists() {
        eprintln!("fleetcrypt: no journal at {}", global.journal.display());
        return exit::USAGE;
    }
    let (_lock, journal) = match super::job::open_for_write(&global.journal) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let result = (|| {
        let run = journal.start_run_blocking("retry-failed")?;
        let n = journal.reset_failed_blocking(code.clone(), Some(run))?;
        journal.end_run_blocking(run, 0)?;
        Ok::<_, crate::journal::JournalError>(n)
    })();
    match result {
        Ok(n) => {
            say!(
                "{n} failed instance(s){} put back to pending; `fleetcrypt resume` runs them again",
                code.map(|c| format!(" with code {c}")).unwrap_or_default()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("fleetcrypt: {e}");
            super::job::unusable_journal_exit(&e)
        }
    }
}

pub fn journal_verify(global: &Global) -> u8 {
    let conn = match schema::open_reader(&global.journal) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fleetcrypt: {e}");
            return exit::USAGE;
        }
    };
    match chain::verify(&conn) {
        Ok(ChainReport::Intact { events, head }) => {
            // The instance table must agree with the last state its events record.
            let mut stmt = match conn.prepare(
                "SELECT i.instance_id, i.state, (SELECT e.to_state FROM events e WHERE e.instance_id = i.instance_id AND e.to_state IS NOT NULL ORDER BY e.id DESC LIMIT 1) FROM instances i",
            ) {
                Ok(s) => s,
                Err(e) => return read_error(global, &e),
            };
            let mismatch = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
            match mismatch {
                Ok(rows) => {
                    if let Some((id, state, last)) = rows
                        .into_iter()
                        .find(|(_, s, l)| l.as_deref() != Some(s.as_str()))
                    {
                        say!("journal BROKEN: instance {id} is '{state}' but its events end in '{}': the instances table was edited", last.unwrap_or_default());
                        return exit::SOME_FAILED;
                    }
                }
                Err(e) => return read_error(global, &e),
            }
            say!("journal intact: {events} events, chain head {head}");
            exit::OK
        }
        Ok(ChainReport::Broken {
            event_id,
            reason,
            events_checked,
        }) => {
            say!("journal BROKEN at event {event_id} ({events_checked} events before it are intact): {reason}");
            exit::SOME_FAILED
        }
        Err(e) => read_error(global, &e),
    }
}

fn make_client(global: &Global, timeout: Duration) -> Result<Client, u8> {
    let creds = super::job::load_credentials(global)?;
    super::job::client(global, creds, timeout, 16)
}

fn failure_exit(f: &Failure) -> u8 {
    eprintln!(
        "{}: {}{}",
        f.code(),
        f.message(),
        f.request_id()
            .map(|r| format!(" (RequestId {r})"))
            .unwrap_or_default()
    );
    if let Some(h) = hint(&f.code()) {
        eprintln!("hint: {h}");
    }
    if f.code().starts_with("AuthFailure") {
        exit::ACCOUNT
    } else {
        exit::SOME_FAILED
    }
}

pub async fn call(
    global: &Global,
    service: &str,
    action: &str,
    params: &str,
    region: Option<String>,
    api_version: Option<String>,
    timeout: Duration,
) -> u8 {
    let params: Value = match serde_json::from_str(params) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            eprintln!("fleetcrypt: the parameters must be a JSON object, e.g. '{{\"InstanceId\": \"cdb-abcd1234\"}}'");
            return exit::USAGE;
        }
    };
    let version = match (api_version, Service::parse(service)) {
        (Some(v), _) => v,
        (None, Some(s)) => s.version().to_string(),
        (None, None) => {
            eprintln!("fleetcrypt: unknown service {service:?}; pass --api-version");
            return exit::USAGE;
        }
    };
    let region = region.or_else(|| {
        std::env::var("TENCENTCLOUD_REGION")
            .ok()
            .filter(|r| !r.is_empty())
    });
    let url = match &global.endpoint {
        Some(u) => u.replace("{region}", region.as_deref().unwrap_or("")),
        None => format!("https://{service}.intl.tencentcloudapi.com/"),
    };
    let endpoint = match Endpoint::parse(&url) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("fleetcrypt: {e}");
            return exit::USAGE;
        }
    };
    let client = match make_client(global, timeout) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let body = serde_json::to_vec(&params).unwrap();
    let called = client
        .send(
            &endpoint,
            service,
            &version,
            action,
            region.as_deref(),
            body,
        )
        .await;
    match called.result {
        Ok(answer) => {
            say!("{}", serde_json::to_string_pretty(&answer.data).unwrap());
            exit::OK
        }
        Err(f) => failure_exit(&f),
    }
}

pub async fn discover(global: &Global, args: DiscoverArgs) -> u8 {
    let mut tags = Vec::new();
    for t in &args.tag {
        match t.split_once('=') {
            Some((k, v)) => tags.push(TagFilter {
                key: k.to_string(),
                value: v.to_string(),
            }),
            None => {
                eprintln!("fleetcrypt: --tag {t:?}: expected KEY=VALUE");
                return exit::USAGE;
            }
        }
    }
    for r in &args.region {
        if !crate::input::is_known_region(r) {
            eprintln!("fleetcrypt: unknown region {r:?}");
            return exit::USAGE;
        }
    }
    let client = match make_client(global, Duration::from_secs(15)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let policy = global.endpoint_policy(false);
    let mut rows: Vec<InstanceInfo> = Vec::new();
    let mut limiter = crate::runner::limiter::Limiter::new(100, Duration::from_millis(15));
    for region in &args.region {
        let endpoint = match policy.resolve(Service::Cdb, region) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("fleetcrypt: {e}");
                return exit::USAGE;
            }
        };
        let mut offset = 0i64;
        let mut failures = 0;
        loop {
            while let Err(t) = limiter.try_acquire() {
                tokio::time::sleep_until(t.into()).await;
            }
            let req = DescribeDBInstancesRequest {
                instance_types: Some(vec![1]),
                offset: Some(offset),
                limit: Some(2000),
                tags: (!tags.is_empty()).then(|| tags.clone()),
                ..DescribeDBInstancesRequest::default()
            };
            let called = client
                .call::<_, DescribeDBInstancesResponse>(
                    &endpoint,
                    Service::Cdb,
                    DESCRIBE_DB_INSTANCES,
                    Some(region),
                    &req,
                )
                .await;
            match called.result {
                Ok(page) => {
                    failures = 0;
                    let n = page.data.items.len() as i64;
                    tracing::info!(region = %region, offset, got = n, total = page.data.total_count, "listed");
                    rows.extend(page.data.items.into_iter().map(|mut i| {
                        if i.region.is_empty() {
                            i.region = region.clone();
                        }
                        i
                    }));
                    offset += n;
                    if n == 0 || offset >= page.data.total_count {
                        break;
                    }
                }
                Err(f) => {
                    let outcome = crate::api::classify(crate::api::CallKind::Read, &f);
                    failures += 1;
                    if !matches!(
                        outcome,
                        crate::api::Outcome::Throttled | crate::api::Outcome::Transient
                    ) || failures > 5
                    {
                        return failure_exit(&f);
                    }
                    if outcome == crate::api::Outcome::Throttled {
                        limiter.throttled();
                    }
                    tokio::time::sleep(Duration::from_millis(200 * failures)).await;
                }
            }
        }
    }
    let write = |w: &mut dyn Write| -> std::io::Result<()> {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record([
            "InstanceId",
            "Region",
            "InstanceName",
            "Zone",
            "EngineVersion",
            "Status",
            "InitFlag",
            "Tags",
        ])?;
        for i in &rows {
            let tags: Vec<String> = i
                .tag_list
                .iter()
                .map(|t| format!("{}={}", t.tag_key, t.tag_value))
                .collect();
            csv.write_record([
                i.instance_id.as_str(),
                &i.region,
                &crate::report::csv_safe(&i.instance_name),
                &i.zone,
                &i.engine_version,
                &i.status.to_string(),
                &i.init_flag.to_string(),
                &crate::report::csv_safe(&tags.join(";")),
            ])?;
        }
        csv.flush()
    };
    let result = match &args.output {
        Some(path) => crate::report::create_private(path).and_then(|mut f| write(&mut f)),
        None => write(&mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => {
            eprintln!(
                "fleetcrypt: {} master instance(s) found in {} region(s)",
                rows.len(),
                args.region.len()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("fleetcrypt: cannot write: {e}");
            exit::SOME_FAILED
        }
    }
}
