//! What `plan` says at its end (issue 12, an honest plan): only what its
//! preflight established. An instance whose reads kept failing was not
//! checked, so it is neither "would be encrypted" nor "cannot be"; then the
//! plan fails (exit 1) and gives no count of what would be encrypted. A
//! complete plan ends with the ETA per endpoint, from the quota, the measured
//! read latency and the instances that need an Open.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::doctor::{eta_lines, eta_unit, Endpoints};
use super::error::{CliError, CliResult, Done};
use crate::api::{classify, CallKind, Failure, Outcome, Service};
use crate::journal::{read, schema, InstanceRow};
use crate::model::{Action, Code, State};
use crate::runner::RunConfig;

/// Whether a preflight failure says the instance cannot be encrypted (a
/// definite answer about it), rather than that it could not be checked.
fn definite(code: &str) -> bool {
    if let Ok(own) = code.parse::<Code>() {
        return matches!(
            own,
            Code::UnsupportedEncryption | Code::EncryptionNeedUpgrade | Code::KmsKeyNotEnabled
        );
    }
    let answered = Failure::Api {
        code: code.to_string(),
        message: String::new(),
        request_id: None,
        http_status: 200,
    };
    classify(CallKind::Read, &answered) == Outcome::InstanceFailed
}

/// Median latency of the successful preflight reads per endpoint host.
fn read_latency(conn: &rusqlite::Connection) -> rusqlite::Result<BTreeMap<String, Duration>> {
    let mut stmt = conn.prepare(
        "SELECT endpoint, latency_ms FROM events WHERE action = ?1 AND latency_ms IS NOT NULL AND error_code IS NULL AND endpoint IS NOT NULL ORDER BY endpoint, latency_ms",
    )?;
    let rows = stmt.query_map([Action::DescribeDBInstanceInfo.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut all: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in rows {
        let (host, ms) = row?;
        all.entry(host).or_default().push(ms);
    }
    Ok(all
        .into_iter()
        .map(|(h, v)| (h, Duration::from_millis(v[v.len() / 2].max(0) as u64)))
        .collect())
}

fn row_line(row: &InstanceRow) -> String {
    format!(
        "  {}  {}  {}: {}",
        row.instance_id,
        row.region,
        row.last_error_code.as_deref().unwrap_or("?"),
        row.last_error_message.as_deref().unwrap_or("")
    )
}

/// Prints the plan from its scratch journal at `path`; the ending it makes.
pub(super) fn finish(path: &Path, config: &RunConfig) -> CliResult {
    let conn = schema::open_reader(path).map_err(CliError::failed)?;
    let mut loads = Endpoints::new();
    let (mut would, mut already) = (0u64, 0u64);
    let (mut cannot, mut unchecked) = (Vec::new(), Vec::new());
    read::for_each_instance(&conn, |row| {
        let host = config
            .endpoints
            .resolve(Service::Cdb, &row.region)
            .map(|e| e.host)
            .unwrap_or_default();
        // Each account has its own quota on each endpoint (issue 12).
        let load = loads
            .entry(eta_unit(&host, row.account.as_deref()))
            .or_default();
        match row.state {
            State::AlreadyEncrypted | State::Encrypted => {
                already += 1;
                load.others += 1;
            }
            State::Failed if definite(row.last_error_code.as_deref().unwrap_or("")) => {
                load.others += 1;
                cannot.push(row);
            }
            State::Failed => unchecked.push(row),
            // In a plan, an instance that passed its preflight stays pending.
            _ => {
                would += 1;
                load.opens += 1;
            }
        }
        Ok(())
    })
    .map_err(CliError::failed)?
    .map_err(CliError::failed)?;
    let total = would + already + (cannot.len() + unchecked.len()) as u64;
    if !unchecked.is_empty() {
        say!(
            "plan: preflight incomplete: {} of {total} instance(s) could not be checked (their reads kept failing), so this plan says nothing about them:",
            unchecked.len()
        );
        for row in &unchecked {
            say!("{}", row_line(row));
        }
        say!(
            "Of the {} checked: {would} need an Open, {already} already encrypted, {} cannot be encrypted.",
            total - unchecked.len() as u64,
            cannot.len()
        );
        for row in &cannot {
            say!("{}", row_line(row));
        }
        say!("Nothing was written to the cloud.");
        return Err(CliError::failed(format!(
            "plan: the preflight of {} instance(s) could not complete; fix the cause above and plan again",
            unchecked.len()
        )));
    }
    say!(
        "plan: {would} instance(s) would be encrypted, {already} already encrypted, {} cannot be encrypted",
        cannot.len()
    );
    for row in &cannot {
        say!("{}", row_line(row));
    }
    say!("Nothing was written to the cloud.");
    let latency = read_latency(&conn).unwrap_or_default();
    loads.retain(|_, l| l.opens + l.others > 0);
    for (key, load) in loads.iter_mut() {
        let host = key.split(' ').next().unwrap_or(key);
        load.latency = latency.get(host).copied();
    }
    say!(
        "ETA of `run --rate {}`: 2 DescribeDBInstanceInfo reads per Open (1 per other instance) at {}/s, at most {} instances/s per endpoint and account:",
        config.rate,
        config.rate,
        config.rate as f64 / 2.0
    );
    for line in eta_lines(&loads, config.rate) {
        say!("  {line}");
    }
    Ok(Done::from_success(cannot.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_definite_answer_means_cannot_be_encrypted() {
        for code in [
            "UnsupportedEncryption",
            "EncryptionNeedUpgrade",
            "KmsKeyNotEnabled",
            "InvalidParameter.InstanceNotFound",
        ] {
            assert!(definite(code), "{code}");
        }
        for code in [
            "ClientNetworkError.NotSent",
            "ClientNetworkError.NoAnswer",
            "ServerNetworkError.Http502",
            "ServerNetworkError.UnreadableBody",
            "InternalError",
            "RequestLimitExceeded",
        ] {
            assert!(!definite(code), "{code}");
        }
    }
}
