//! `discover`: list the master instances of some regions (optionally by tag) as
//! an input CSV, paging `DescribeDBInstances` under the rate limit.

use std::io::Write;
use std::time::Duration;

use super::args::{DiscoverArgs, Global};
use super::commands::{call_failed, make_client};
use super::error::{CliError, CliResult, Done};
use crate::api::cdb::*;
use crate::api::{classify, CallKind, Client, Endpoint, Outcome, Service};
use crate::runner::limiter::Limiter;

/// Page size of `DescribeDBInstances` (its maximum).
const PAGE: i64 = 2000;
/// Consecutive failed pages before giving up on a region.
const MAX_FAILURES: u64 = 5;

pub(super) async fn discover(global: &Global, args: DiscoverArgs) -> CliResult {
    let tags = args
        .tag
        .iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) => Ok(TagFilter {
                key: k.to_string(),
                value: v.to_string(),
            }),
            None => Err(CliError::usage(format!("--tag {t:?}: expected KEY=VALUE"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    for r in &args.region {
        if !crate::input::is_known_region(r) {
            return Err(CliError::usage(format!("unknown region {r:?}")));
        }
    }
    let client = make_client(global, Duration::from_secs(15))?;
    let policy = global.endpoint_policy(false);
    let mut rows: Vec<InstanceInfo> = Vec::new();
    let mut limiter = Limiter::new(100, Duration::from_millis(15));
    for region in &args.region {
        let endpoint = policy
            .resolve(Service::Cdb, region)
            .map_err(CliError::usage)?;
        let lister = Lister {
            client: &client,
            endpoint: &endpoint,
            region,
            tags: &tags,
        };
        rows.extend(lister.masters(&mut limiter).await?);
    }
    let result = match &args.output {
        Some(path) => {
            crate::report::create_private(path).and_then(|mut f| write_csv(&rows, &mut f))
        }
        None => write_csv(&rows, &mut std::io::stdout().lock()),
    };
    result.map_err(|e| CliError::failed(format!("cannot write: {e}")))?;
    eprintln!(
        "fleetcrypt: {} master instance(s) found in {} region(s)",
        rows.len(),
        args.region.len()
    );
    Ok(Done::Ok)
}

/// Pages through one region's master instances.
struct Lister<'a> {
    client: &'a Client,
    endpoint: &'a Endpoint,
    region: &'a str,
    tags: &'a [TagFilter],
}

impl Lister<'_> {
    async fn masters(&self, limiter: &mut Limiter) -> Result<Vec<InstanceInfo>, CliError> {
        let mut rows = Vec::new();
        let mut offset = 0i64;
        let mut failures = 0;
        loop {
            while let Err(t) = limiter.try_acquire() {
                tokio::time::sleep_until(t.into()).await;
            }
            match self.page(offset).await {
                Ok(page) => {
                    failures = 0;
                    let n = page.items.len() as i64;
                    tracing::info!(region = %self.region, offset, got = n, total = page.total_count, "listed");
                    rows.extend(page.items.into_iter().map(|mut i| {
                        if i.region.is_empty() {
                            i.region = self.region.to_string();
                        }
                        i
                    }));
                    offset += n;
                    if n == 0 || offset >= page.total_count {
                        return Ok(rows);
                    }
                }
                Err(f) => {
                    let outcome = classify(CallKind::Read, &f);
                    failures += 1;
                    if !matches!(outcome, Outcome::Throttled | Outcome::Transient)
                        || failures > MAX_FAILURES
                    {
                        return Err(call_failed(&f));
                    }
                    if outcome == Outcome::Throttled {
                        limiter.throttled();
                    }
                    tokio::time::sleep(Duration::from_millis(200 * failures)).await;
                }
            }
        }
    }

    async fn page(&self, offset: i64) -> Result<DescribeDBInstancesResponse, crate::api::Failure> {
        let req = DescribeDBInstancesRequest {
            instance_types: Some(vec![1]),
            offset: Some(offset),
            limit: Some(PAGE),
            tags: (!self.tags.is_empty()).then(|| self.tags.to_vec()),
            ..DescribeDBInstancesRequest::default()
        };
        self.client
            .call::<_, DescribeDBInstancesResponse>(
                self.endpoint,
                Service::Cdb,
                DESCRIBE_DB_INSTANCES,
                Some(self.region),
                &req,
            )
            .await
            .result
            .map(|answer| answer.data)
    }
}

/// The columns `discover` writes before the tags.
const BASE_COLUMNS: [&str; 8] = [
    "InstanceId",
    "Region",
    "InstanceName",
    "Zone",
    "EngineVersion",
    "Status",
    "InitFlag",
    // Not written, but an input column: a tag of that name must not shadow it.
    "KeyId",
];

/// The column name of each tag key: the key itself, so `run --only env=staging`
/// and `--waves env=staging,env=prod` select by tag; `Tag.<key>` when the key
/// would collide with another column (case-insensitively, as input columns are
/// matched), so no tag is lost or mistaken for an input column.
fn tag_columns(rows: &[InstanceInfo]) -> Vec<(String, String)> {
    let keys: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|i| i.tag_list.iter().map(|t| t.tag_key.as_str()))
        .collect();
    let mut taken: Vec<String> = BASE_COLUMNS
        .iter()
        .chain(["KeyRegion"].iter())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    keys.into_iter()
        .map(|k| {
            let mut name = k.to_string();
            if taken.contains(&name.to_ascii_lowercase()) {
                name = format!("Tag.{k}");
            }
            taken.push(name.to_ascii_lowercase());
            (k.to_string(), name)
        })
        .collect()
}

/// The input CSV (SPEC §4) with what an operator needs to choose from, and
/// one label column per tag key.
fn write_csv(rows: &[InstanceInfo], w: &mut dyn Write) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_writer(w);
    let tags = tag_columns(rows);
    let mut header: Vec<String> = BASE_COLUMNS[..7].iter().map(|c| c.to_string()).collect();
    header.extend(tags.iter().map(|(_, name)| crate::report::csv_safe(name)));
    csv.write_record(&header)?;
    for i in rows {
        let mut record = vec![
            i.instance_id.clone(),
            i.region.clone(),
            crate::report::csv_safe(&i.instance_name),
            i.zone.clone(),
            i.engine_version.clone(),
            i.status.to_string(),
            i.init_flag.to_string(),
        ];
        for (key, _) in &tags {
            let value = i
                .tag_list
                .iter()
                .find(|t| &t.tag_key == key)
                .map(|t| crate::report::csv_safe(&t.tag_value))
                .unwrap_or_default();
            record.push(value);
        }
        csv.write_record(&record)?;
    }
    csv.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, tags: &[(&str, &str)]) -> InstanceInfo {
        let mut i: InstanceInfo = serde_json::from_value(serde_json::json!({
            "InstanceId": id, "Region": "ap-guangzhou", "InstanceName": "n", "Zone": "z",
            "EngineVersion": "8.0", "Status": 1, "InitFlag": 1, "InstanceType": 1,
        }))
        .unwrap();
        i.tag_list = tags
            .iter()
            .map(|(k, v)| {
                serde_json::from_value(serde_json::json!({"TagKey": k, "TagValue": v})).unwrap()
            })
            .collect();
        i
    }

    /// Each tag is its own column (so a discovered fleet can be selected and
    /// waved by tag); a tag named like an input column gets a `Tag.` prefix;
    /// an instance without a tag leaves its cell empty.
    #[test]
    fn each_tag_is_a_label_column() {
        let rows = [
            info("cdb-00000001", &[("env", "staging"), ("team", "a")]),
            info("cdb-00000002", &[("env", "prod"), ("region", "x")]),
            info("cdb-00000003", &[]),
        ];
        let mut out = Vec::new();
        write_csv(&rows, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "InstanceId,Region,InstanceName,Zone,EngineVersion,Status,InitFlag,env,Tag.region,team"
        );
        assert_eq!(lines[1], "cdb-00000001,ap-guangzhou,n,z,8.0,1,1,staging,,a");
        assert_eq!(lines[2], "cdb-00000002,ap-guangzhou,n,z,8.0,1,1,prod,x,");
        assert_eq!(lines[3], "cdb-00000003,ap-guangzhou,n,z,8.0,1,1,,,");
        // The file is valid input, and `env` is a label a selection can use.
        let specs = crate::input::parse("d.csv", text.as_bytes(), &Default::default()).unwrap();
        assert_eq!(specs[0].label("env"), Some("staging"));
    }
}
