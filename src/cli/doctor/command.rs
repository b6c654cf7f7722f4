//! `fleetcrypt doctor`, and its short form at the start of `run`, `resume`
//! and `plan`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use clap::Args;

use super::super::args::{parse_duration, CloudFlags, Global, InputArgs, JournalFlag, RowArgs};
use super::super::error::{CliError, CliResult};
use super::super::setup::{client, load_input};
use super::checklist::{Checklist, Level};
use super::eta::{self, Endpoints};
use super::probe::{probe, Scope};
use crate::api::credentials::{self, ProcessEnv};
use crate::api::{Clients, EndpointPolicy, Service};
use crate::journal::{read, schema, Journal, JournalLock};
use crate::model::State;
use crate::runner::RunConfig;

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// The input `run` will get (CSV or list; - for stdin): KMS is checked in
    /// its regions and its size gives the ETA. Without it, the journal's
    /// unfinished instances, else --region.
    #[arg(long, value_name = "FILE")]
    pub instances: Option<String>,
    /// As `run`'s; --region is also the region checked when there is no input.
    #[command(flatten)]
    pub rows: RowArgs,
    /// The --rate the run will use: requests/s per action per endpoint.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub rate: u32,
    /// Per-request timeout.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// As `run --regional-endpoints`: one endpoint (and quota) per region.
    #[arg(long)]
    pub regional_endpoints: bool,
    #[command(flatten)]
    pub journal: JournalFlag,
    #[command(flatten)]
    pub cloud: CloudFlags,
}

/// Work per account (`None`: the run's own credentials): (region, key
/// region, how many instances).
type Work = BTreeMap<Option<String>, Vec<(String, Option<String>, u64)>>;

/// The unfinished instances of a journal, per account.
fn open_work(path: &Path) -> rusqlite::Result<Work> {
    let conn = schema::open_reader(path).map_err(|e| {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(e.to_string()),
        )
    })?;
    let terminal: Vec<String> = State::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    // A journal older than version 8 names no account.
    let account = if read::has_accounts(&conn)? {
        "account"
    } else {
        "NULL"
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {account}, region, key_region, COUNT(*) FROM instances WHERE state NOT IN ({}) GROUP BY 1, 2, 3",
        terminal.join(", ")
    ))?;
    let mut rows = stmt.query([])?;
    let mut work = Work::new();
    while let Some(r) = rows.next()? {
        work.entry(r.get(0)?)
            .or_default()
            .push((r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64));
    }
    Ok(work)
}

/// Instance regions and key regions of the work, and the load per cdb endpoint
/// (every instance counted as needing an Open: an upper bound before preflight).
fn scope_of(
    work: &[(String, Option<String>, u64)],
    policy: &EndpointPolicy,
) -> (BTreeSet<String>, Endpoints) {
    let mut regions = BTreeSet::new();
    let mut loads = Endpoints::new();
    for (region, key_region, n) in work {
        regions.insert(region.clone());
        if let Some(k) = key_region.as_ref().filter(|k| !k.is_empty()) {
            regions.insert(k.clone());
        }
        if let Ok(ep) = policy.resolve(Service::Cdb, region) {
            loads.entry(ep.host).or_default().opens += n;
        }
    }
    (regions, loads)
}

/// The short form, before a job sends anything: for each of `accounts` (those
/// with unfinished instances the run touches), its credentials, the endpoints of those instances,
/// the clock, KMS in their regions and the CDB service role. A few requests,
/// on actions the run does not use. Fails (nothing sent) on refused
/// credentials (exit 3) or a failed check (exit 1); warnings are logged and
/// the job goes on.
pub(in super::super) async fn before_run(
    clients: &Clients,
    accounts: &[Option<String>],
    config: &RunConfig,
    journal: &Journal,
) -> Result<(), CliError> {
    let path = journal.path().to_path_buf();
    let mut work = tokio::task::spawn_blocking(move || open_work(&path))
        .await
        .map_err(CliError::failed)?
        .map_err(|e| CliError::failed(format!("doctor: cannot read the journal: {e}")))?;
    // Only the accounts the run works on (`--only Account=…` leaves the rest).
    work.retain(|account, _| accounts.contains(account));
    if work.is_empty() {
        return Ok(());
    }
    let mut list = Checklist::default();
    let (mut requests, mut all_regions) = (0, BTreeSet::new());
    for (account, work) in &work {
        list.account = account.clone();
        let Some(client) = clients.get(account.as_deref()) else {
            list.credentials_failed = true;
            list.push(Level::Fail, "credentials", "none loaded");
            continue;
        };
        let (regions, _) = scope_of(work, &config.endpoints);
        let measured = probe(
            &Scope {
                client,
                policy: &config.endpoints,
                regions: &regions,
                source: client.credentials_source(),
                rate: config.rate,
                margin: config.rate_margin,
            },
            &mut list,
        )
        .await;
        requests += measured.requests;
        all_regions.extend(regions);
    }
    list.account = None;
    if list.failed() {
        let message = format!(
            "doctor: {} before anything was sent:\n{}  nothing was sent; fix the above (or skip this check with --no-doctor)",
            list.verdict(),
            list.render(Level::Warn)
        );
        return Err(if list.credentials_failed {
            CliError::Account(message)
        } else {
            CliError::Failed(message)
        });
    }
    for i in list.items.iter().filter(|i| i.level == Level::Warn) {
        tracing::warn!(
            fix = i.fix.as_deref().unwrap_or(""),
            "doctor: {}: {}",
            i.what,
            i.found
        );
    }
    tracing::info!(
        requests,
        regions = all_regions.len(),
        accounts = work.len(),
        "doctor: {}",
        list.verdict()
    );
    Ok(())
}

/// `fleetcrypt doctor`: the whole checklist; exit 0 all pass (warnings
/// allowed), 3 the credentials failed, 1 anything else failed.
pub(in super::super) async fn doctor(global: &Global, args: DoctorArgs) -> CliResult {
    let policy = global.endpoint_policy(args.regional_endpoints);
    policy.validate().map_err(CliError::usage)?;
    global.resolves().map_err(CliError::usage)?;
    let default_region = args.rows.region.clone().or_else(|| {
        std::env::var("TENCENTCLOUD_REGION")
            .ok()
            .filter(|r| !r.is_empty())
    });
    // What the run will work on: the input, else the journal's unfinished
    // instances, else the default region. Bad input is exit 2, nothing sent.
    let (mut work, from) = match &args.instances {
        Some(file) => {
            let input = InputArgs {
                instances: file.clone(),
                rows: args.rows.clone(),
            };
            let specs = load_input(&input)?;
            type Key = (Option<String>, String, Option<String>);
            let mut counted = BTreeMap::<Key, u64>::new();
            specs
                .read_chunks(10_000, |chunk| {
                    for s in chunk {
                        *counted
                            .entry((s.account, s.region, s.key_region))
                            .or_default() += 1;
                    }
                    Ok(())
                })
                .map_err(|e| CliError::usage(format!("cannot read the input again: {e}")))?;
            let mut work = Work::new();
            for ((account, region, key_region), n) in counted {
                work.entry(account)
                    .or_default()
                    .push((region, key_region, n));
            }
            (work, format!("{} instance(s) in {file}", specs.len()))
        }
        None if global.journal.exists() && schema::check_file(&global.journal).is_ok() => {
            let work = open_work(&global.journal).unwrap_or_default();
            let n: u64 = work.values().flatten().map(|(_, _, n)| n).sum();
            (
                work,
                format!("{n} unfinished instance(s) in {}", global.journal.display()),
            )
        }
        None => (
            Work::from([(
                None,
                default_region
                    .iter()
                    .map(|r| (r.clone(), None, 0))
                    .collect(),
            )]),
            "no input (pass --instances FILE for the ETA)".to_string(),
        ),
    };
    // The run's own credentials are always checked.
    work.entry(None).or_default();
    if work.len() > 1 && work[&None].is_empty() {
        // Every instance names an account: the run's own credentials are not used.
        work.remove(&None);
    }

    let mut list = Checklist::default();
    say!("fleetcrypt doctor: {from}");
    // Each account has its own quota: its loads are its own endpoints.
    let (mut loads, mut endpoints) = (Endpoints::new(), 0);
    for (account, work) in &work {
        list.account = account.clone();
        let (regions, mut account_loads) = scope_of(work, &policy);
        endpoints += account_loads.len().max(1);
        let profile = account.as_deref().or(global.profile.as_deref());
        let creds = match credentials::load(profile, &ProcessEnv) {
            Ok(c) => Some(c),
            Err(e) => {
                list.credentials_failed = true;
                list.push_fix(
                    Level::Fail,
                    "credentials",
                    e.to_string(),
                    match account {
                        Some(a) => format!("create the tccli profile {a} (`tccli configure --profile {a}`), or correct the input's account column"),
                        None => "give credentials in one of those places (for the emulator, the export lines it prints)".to_string(),
                    },
                );
                None
            }
        };
        let mut latency = Default::default();
        if let Some(creds) = creds {
            let client = client(global, creds, args.timeout, 16)?;
            let measured = probe(
                &Scope {
                    client: &client,
                    policy: &policy,
                    regions: &regions,
                    source: client.credentials_source(),
                    rate: args.rate,
                    margin: RunConfig::default().rate_margin,
                },
                &mut list,
            )
            .await;
            latency = measured.latency;
        } else {
            list.push(
                Level::Skipped,
                "endpoints, clock, KMS, role",
                "not checked: no credentials",
            );
        }
        account_loads.retain(|_, l| l.opens > 0);
        for (host, mut load) in account_loads {
            load.latency = latency.get(&host).copied();
            loads.insert(eta::unit(&host, account.as_deref()), load);
        }
    }
    list.account = None;
    journal_check(&global.journal, &mut list);

    // The quota, and what it means for this input.
    list.push(
        Level::Info,
        "quota",
        format!(
            "{endpoints} endpoint(s){} x {} requests/s per action = at most {} instances/s (2 DescribeDBInstanceInfo reads per Open)",
            if work.len() > 1 {
                format!(" over {} accounts", work.len())
            } else {
                String::new()
            },
            args.rate,
            eta::per_second(args.rate) * endpoints as f64
        ),
    );
    for line in eta::render(&loads, args.rate) {
        list.push(Level::Info, "ETA (upper bound before preflight)", line);
    }
    let shown = list.render(Level::Info);
    say!("{}{}", shown, list.verdict());
    list.outcome("doctor")
}

/// The journal: usable, writable, not locked by another run.
fn journal_check(path: &Path, list: &mut Checklist) {
    let what = format!("journal {}", path.display());
    let another = "wait for the other run to end, or give another --journal";
    if JournalLock::is_held(path) {
        let pid = std::fs::read_to_string(format!("{}.lock", path.display())).unwrap_or_default();
        let pid = pid.trim();
        list.push_fix(
            Level::Fail,
            what,
            format!(
                "in use by another run ({})",
                if pid.is_empty() {
                    "unknown pid".to_string()
                } else {
                    format!("pid {pid}")
                }
            ),
            another,
        );
        return;
    }
    if let Err(e) = schema::check_file(path) {
        list.push_fix(
            Level::Fail,
            what,
            e.to_string(),
            "move it away, or give another --journal",
        );
        return;
    }
    let exists = path.exists();
    if exists {
        if let Err(e) = schema::open_reader(path) {
            list.push_fix(
                Level::Fail,
                what,
                e.to_string(),
                "move it away, or give another --journal",
            );
            return;
        }
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(path) {
            list.push_fix(
                Level::Fail,
                what,
                format!("not writable: {e}"),
                "make it writable for this user, or give another --journal",
            );
            return;
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // The WAL, the lock and new journals are made beside it.
    if let Err(e) = tempfile::Builder::new()
        .prefix(".fleetcrypt-doctor")
        .tempfile_in(&dir)
    {
        list.push_fix(
            Level::Fail,
            what,
            format!("cannot create files in {}: {e}", dir.display()),
            "use a writable directory for --journal",
        );
        return;
    }
    list.push(
        Level::Pass,
        what,
        if exists {
            "usable, writable, not locked"
        } else {
            "not there yet; its directory is writable"
        },
    );
}
