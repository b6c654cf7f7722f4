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

/// The input CSV (SPEC §4) with what an operator needs to choose from.
fn write_csv(rows: &[InstanceInfo], w: &mut dyn Write) -> std::io::Result<()> {
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
    for i in rows {
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
}
