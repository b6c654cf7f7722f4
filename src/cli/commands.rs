//! The smaller commands: report, retry-failed, call, journal verify.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::args::Global;
use super::error::{CliError, CliResult, Done};
use super::setup::{client, load_credentials, open_for_write};
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

pub(super) fn make_client(global: &Global, timeout: Duration) -> Result<Client, CliError> {
    let creds = load_credentials(global)?;
    client(global, creds, timeout, 16)
}

/// An API call that failed: the code, message and RequestId, with a hint; an
/// AuthFailure is account-wide (exit 3).
pub(super) fn call_failed(f: &Failure) -> CliError {
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
