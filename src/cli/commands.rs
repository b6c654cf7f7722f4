//! The smaller commands: report, retry-failed, discover, call, journal verify.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::args::{DiscoverArgs, Global};
use super::error::{CliError, CliResult, Done};
use super::setup::{client, load_credentials, open_for_write};
use crate::api::cdb::*;
use crate::api::{Client, Endpoint, Failure, Service};
use crate::journal::{chain, schema, ChainReport};
use crate::model::hint;

pub(super) fn report(
    global: &Global,
    format: crate::report::Format,
    output: Option<PathBuf>,
) -> CliResult {
    let result = match &output {
        Some(path) => crate::report::write_file(&global.journal, format, path),
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            crate::report::write(&global.journal, format, &mut lock)
        }
    };
    match result {
        Ok(()) => Ok(Done::Ok),
        Err(crate::report::ReportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Done::Ok)
        }
        Err(crate::report::ReportError::Journal(e)) => Err(CliError::journal(&e, "")),
        Err(crate::report::ReportError::Sql(e)) => Err(read_error(global, &e)),
        Err(e) => Err(CliError::failed(e)),
    }
}

/// A read of an opened journal failed: a damaged file (corrupt, truncated) is an
/// unusable journal (exit 2, SPEC §3); anything else is exit 1.
pub(super) fn read_error(global: &Global, e: &rusqlite::Error) -> CliError {
    if schema::is_unusable(e) {
        CliError::usage(format!(
            "cannot open the journal {}: it is damaged: {e}",
            global.journal.display()
        ))
    } else {
        CliError::failed(format!(
            "cannot read the journal {}: {e}",
            global.journal.display()
        ))
    }
}

pub(super) fn retry_failed(global: &Global, code: Option<String>) -> CliResult {
    if !global.journal.exists() {
        return Err(CliError::usage(format!(
            "no journal at {}",
            global.journal.display()
        )));
    }
    let (_lock, journal) = open_for_write(&global.journal)?;
    let result = (|| {
        let run = journal.start_run_blocking("retry-failed")?;
        let n = journal.reset_failed_blocking(code.clone(), Some(run))?;
        journal.end_run_blocking(run, 0)?;
        Ok::<_, crate::journal::JournalError>(n)
    })();
    let n = result.map_err(|e| CliError::journal(&e, ""))?;
    say!(
        "{n} failed instance(s){} put back to pending; `fleetcrypt resume` runs them again",
        code.map(|c| format!(" with code {c}")).unwrap_or_default()
    );
    Ok(Done::Ok)
}

pub(super) fn journal_verify(global: &Global) -> CliResult {
    let conn = schema::open_reader(&global.journal).map_err(CliError::usage)?;
    match chain::verify(&conn) {
        Ok(ChainReport::Intact { events, head }) => {
            // The instance table must agree with the last state its events record.
            let mut stmt = match conn.prepare(
                "SELECT i.instance_id, i.state, (SELECT e.to_state FROM events e WHERE e.instance_id = i.instance_id AND e.to_state IS NOT NULL ORDER BY e.id DESC LIMIT 1) FROM instances i",
            ) {
                Ok(s) => s,
                Err(e) => return Err(read_error(global, &e)),
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
                        return Ok(Done::SomeFailed);
                    }
                }
                Err(e) => return Err(read_error(global, &e)),
            }
            say!("journal intact: {events} events, chain head {head}");
            Ok(Done::Ok)
        }
        Ok(ChainReport::Broken {
            event_id,
            reason,
            events_checked,
        }) => {
            say!("journal BROKEN at event {event_id} ({events_checked} events before it are intact): {reason}");
            Ok(Done::SomeFailed)
        }
        Err(e) => Err(read_error(global, &e)),
    }
}

fn make_client(global: &Global, timeout: Duration) -> Result<Client, CliError> {
    let creds = load_credentials(global)?;
    client(global, creds, timeout, 16)
}

/// An API call that failed: the code, message and RequestId, with a hint; an
/// AuthFailure is account-wide (exit 3).
fn call_failed(f: &Failure) -> CliError {
    let message = format!(
        "{}: {}{}{}",
        f.code(),
        f.message(),
        f.request_id()
            .map(|r| format!(" (RequestId {r})"))
            .unwrap_or_default(),
        hint(&f.code())
            .map(|h| format!("\nhint: {h}"))
            .unwrap_or_default()
    );
    if f.code().starts_with("AuthFailure") {
        CliError::Account(message)
    } else {
        CliError::Failed(message)
    }
}

pub(super) async fn call(
    global: &Global,
    service: &str,
    action: &str,
    params: &str,
    region: Option<String>,
    api_version: Option<String>,
    timeout: Duration,
) -> CliResult {
    let params: Value =
        match serde_json::from_str(params) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(CliError::usage(
                "the parameters must be a JSON object, e.g. '{\"InstanceId\": \"cdb-abcd1234\"}'",
            )),
        };
    let version = match (api_version, Service::parse(service)) {
        (Some(v), _) => v,
        (None, Some(s)) => s.version().to_string(),
        (None, None) => {
            return Err(CliError::usage(format!(
                "unknown service {service:?}; pass --api-version"
            )))
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
    let endpoint = Endpoint::parse(&url).map_err(CliError::usage)?;
    let client = make_client(global, timeout)?;
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
            Ok(Done::Ok)
        }
        Err(f) => Err(call_failed(&f)),
    }
}

pub(super) async fn discover(global: &Global, args: DiscoverArgs) -> CliResult {
    let mut tags = Vec::new();
    for t in &args.tag {
        match t.split_once('=') {
            Some((k, v)) => tags.push(TagFilter {
                key: k.to_string(),
                value: v.to_string(),
            }),
            None => return Err(CliError::usage(format!("--tag {t:?}: expected KEY=VALUE"))),
        }
    }
    for r in &args.region {
        if !crate::input::is_known_region(r) {
            return Err(CliError::usage(format!("unknown region {r:?}")));
        }
    }
    let client = make_client(global, Duration::from_secs(15))?;
    let policy = global.endpoint_policy(false);
    let mut rows: Vec<InstanceInfo> = Vec::new();
    let mut limiter = crate::runner::limiter::Limiter::new(100, Duration::from_millis(15));
    for region in &args.region {
        let endpoint = policy
            .resolve(Service::Cdb, region)
            .map_err(CliError::usage)?;
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
                        return Err(call_failed(&f));
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
    result.map_err(|e| CliError::failed(format!("cannot write: {e}")))?;
    eprintln!(
        "fleetcrypt: {} master instance(s) found in {} region(s)",
        rows.len(),
        args.region.len()
    );
    Ok(Done::Ok)
}
