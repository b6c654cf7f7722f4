//! `run`, `resume`, `plan` and `demo`: input → journal → runner → summary.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::output::Progress;
use super::{exit, Global, InputArgs, JobArgs};
use crate::api::credentials::{self, Credentials, ProcessEnv};
use crate::api::{Client, ClientOptions, Secret};
use crate::emulator::{Emulator, EmulatorConfig, Faults, Latency, World};
use crate::input::{self, Defaults, InstanceSpec};
use crate::journal::{read, schema, ImportSummary, Journal, JournalLock};
use crate::model::{hint, State};
use crate::runner::{self, Counters, RunConfig, StopReason};

/// The fleet `demo` emulates when no --fleet is given.
pub const SAMPLE_FLEET: &str = include_str!("../../samples/fleet.csv");

fn run_config(global: &Global, job: &JobArgs) -> Result<RunConfig, String> {
    let endpoints = global.endpoint_policy(job.regional_endpoints);
    endpoints.validate().map_err(|e| e.to_string())?;
    if job.verify_deadline < job.timeout {
        return Err("--verify-deadline must be at least --timeout".into());
    }
    let floor = RunConfig::settle_floor(job.timeout);
    if job.settle < floor && !job.allow_short_settle {
        return Err(format!(
            "--settle {} is shorter than the API's documented 10s plus --timeout {} ({}): the server could still apply an Open after fleetcrypt re-sent it",
            humantime::format_duration(job.settle),
            humantime::format_duration(job.timeout),
            humantime::format_duration(floor)
        ));
    }
    if job.settle < job.timeout {
        return Err("--settle must be at least --timeout".into());
    }
    Ok(RunConfig {
        rate: job.rate,
        max_in_flight: job.max_in_flight as usize,
        timeout: job.timeout,
        settle: job.settle,
        max_attempts: job.max_attempts,
        verify_deadline: job.verify_deadline,
        check_kms: job.check_kms,
        endpoints,
        rate_margin: job.rate_margin,
        max_active: (job.max_in_flight as usize * 4).max(64),
        drain_limit: job.timeout + Duration::from_secs(5),
        ..RunConfig::default()
    })
}

fn load_input(input: &InputArgs) -> Result<input::Validated, u8> {
    if input.key_id.is_some() != input.key_region.is_some() {
        eprintln!("fleetcrypt: --key-id and --key-region go together");
        return Err(exit::USAGE);
    }
    let defaults = Defaults {
        region: input.region.clone().or_else(|| {
            std::env::var("TENCENTCLOUD_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        }),
        key_id: input.key_id.clone(),
        key_region: input.key_region.clone(),
    };
    input::validate(&input.instances, &defaults).map_err(|e| {
        eprint!("fleetcrypt: {e}");
        exit::USAGE
    })
}

/// Credentials in SPEC order; missing ones are an account-wide stop (exit 3).
/// At -v, logs which credentials were found: the SecretId and source as is, the
/// key and token through `Secret`'s redacting `Debug` (tests/secrets.rs scans
/// this log, so it fails if that redaction is ever removed).
pub(super) fn load_credentials(global: &Global) -> Result<Credentials, u8> {
    let creds = credentials::load(global.profile.as_deref(), &ProcessEnv).map_err(|e| {
        eprintln!("fleetcrypt: {e}");
        match e {
            credentials::CredentialsError::Missing => exit::ACCOUNT,
            _ => exit::USAGE,
        }
    })?;
    tracing::debug!(credentials = ?creds, "credentials loaded");
    Ok(creds)
}

/// The signed client for the global flags (`--resolve` pins) and a timeout.
pub(super) fn client(
    global: &Global,
    creds: Credentials,
    timeout: Duration,
    pool: usize,
) -> Result<Client, u8> {
    let resolve = global.resolves().map_err(|e| {
        eprintln!("fleetcrypt: {e}");
        exit::USAGE
    })?;
    Client::new(
        creds,
        &ClientOptions {
            timeout,
            resolve,
            pool_max_idle_per_host: pool.max(16),
            connect_delay_max: None,
        },
    )
    .map_err(|e| {
        eprintln!("fleetcrypt: {e}");
        exit::SOME_FAILED
    })
}

/// First Ctrl-C (or SIGTERM): stop dispatching and drain. Second: exit at once;
/// the write-ahead journal makes that safe too.
fn install_interrupt(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let first = async {
            match term.as_mut() {
                Some(t) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = t.recv() => {} },
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        first.await;
        eprintln!("\nfleetcrypt: stopping: no new requests; waiting for those in flight (Ctrl-C again to exit now; the journal stays consistent)");
        token.cancel();
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("fleetcrypt: exiting now");
        std::process::exit(exit::INTERRUPTED as i32);
    });
}

fn confirm(pending: u64, journal: &Path) -> bool {
    eprint!(
        "About to enable storage encryption on up to {pending} instance(s) recorded in {}.\nEncryption cannot be turned off once enabled. Type 'yes' to continue: ",
        journal.display()
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    line.trim().eq_ignore_ascii_case("yes")
}

/// What `run`, `resume` and `plan` need before they touch a journal. Every
/// check that can fail without sending anything happens here.
struct Prepared {
    config: RunConfig,
    specs: Option<input::Validated>,
    client: Client,
}

/// Streams a validated input into the journal in chunks (one transaction each),
/// so a million-row file is never held in memory.
async fn import(journal: &Journal, specs: input::Validated) -> Result<ImportSummary, u8> {
    let j = journal.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let mut total = ImportSummary::default();
        let mut failure = None;
        let read = specs.read_chunks(10_000, |chunk| match j.import_blocking(chunk) {
            Ok(s) => {
                total.added += s.added;
                total.already_known += s.already_known;
                total.differing.extend(s.differing);
                Ok(())
            }
            Err(e) => {
                let text = e.to_string();
                failure = Some(e);
                Err(std::io::Error::other(text))
            }
        });
        match (failure, read) {
            (Some(e), _) => Err(e.to_string()),
            (None, Err(e)) => Err(format!("cannot read the input again: {e}")),
            (None, Ok(())) => Ok(total),
        }
    })
    .await;
    match joined {
        Ok(Ok(total)) => Ok(total),
        Ok(Err(e)) => Err(journal_error_before_send(journal.path(), e)),
        Err(e) => Err(journal_error(e)),
    }
}

fn prepare(global: &Global, job: &JobArgs, input: Option<&InputArgs>) -> Result<Prepared, u8> {
    let config = run_config(global, job).map_err(|e| {
        eprintln!("fleetcrypt: {e}");
        exit::USAGE
    })?;
    let specs = input.map(load_input).transpose()?;
    let creds = load_credentials(global)?;
    let client = client(global, creds, config.timeout, config.max_in_flight)?;
    Ok(Prepared {
        config,
        specs,
        client,
    })
}

/// The journal for writing, with the lock that makes this process its only writer.
pub(super) fn open_for_write(path: &Path) -> Result<(JournalLock, Journal), u8> {
    // Before the lock file is made beside it: a directory, a device or a damaged file
    // is rejected without leaving anything behind.
    schema::check_file(path).map_err(|e| {
        eprintln!("fleetcrypt: {e}; nothing was sent");
        exit::USAGE
    })?;
    let lock = JournalLock::acquire(path).map_err(|e| {
        eprintln!("fleetcrypt: {e}");
        exit::USAGE
    })?;
    let journal = Journal::open(path).map_err(|e| {
        eprintln!("fleetcrypt: {e}; nothing was sent");
        unusable_journal_exit(&e)
    })?;
    Ok((lock, journal))
}

/// SPEC §3: an unusable journal is bad input (exit 2, nothing sent); any other
/// journal failure is a failed run (exit 1).
pub(super) fn unusable_journal_exit(e: &crate::journal::JournalError) -> u8 {
    if e.is_unusable() {
        exit::USAGE
    } else {
        exit::SOME_FAILED
    }
}

fn journal_error(e: impl std::fmt::Display) -> u8 {
    eprintln!("fleetcrypt: {e}");
    exit::SOME_FAILED
}

/// A journal failure before anything was sent (import, the run record): the journal
/// could not take the job, so nothing is sent and the exit is 2 (SPEC §3).
fn journal_error_before_send(path: &Path, e: impl std::fmt::Display) -> u8 {
    eprintln!(
        "fleetcrypt: cannot write the journal {}: {e}; nothing was sent",
        path.display()
    );
    exit::USAGE
}

/// `run` (with input) and `resume` (without).
pub async fn run(global: &Global, input: Option<InputArgs>, job: JobArgs) -> u8 {
    match run_inner(global, input, job).await {
        Ok(code) | Err(code) => code,
    }
}

async fn run_inner(global: &Global, input: Option<InputArgs>, job: JobArgs) -> Result<u8, u8> {
    let Prepared {
        config,
        specs,
        client,
    } = prepare(global, &job, input.as_ref())?;
    if input.is_none() && !global.journal.exists() {
        eprintln!(
            "fleetcrypt: no journal at {} to resume (start with `fleetcrypt run --instances FILE`)",
            global.journal.display()
        );
        return Err(exit::USAGE);
    }
    let (_lock, journal) = open_for_write(&global.journal)?;
    if let Some(specs) = specs {
        let s = import(&journal, specs).await?;
        tracing::info!(
            added = s.added,
            already_in_journal = s.already_known,
            "imported"
        );
        if !s.differing.is_empty() {
            tracing::warn!(count = s.differing.len(), first = %s.differing[0], "instances already in the journal differ from the input (Region/KeyId/KeyRegion); the journal's values are kept");
        }
    }
    let counts = journal.query(read::counts).await.unwrap_or_default();
    let open: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    if open > 0 && !job.yes && std::io::stdin().is_terminal() && !confirm(open, &global.journal) {
        eprintln!("fleetcrypt: not confirmed; nothing was sent");
        return Err(exit::USAGE);
    }
    let command = if input.is_some() { "run" } else { "resume" };
    let run_id = journal
        .start_run(
            command,
            Some(config.rate),
            Some(config.timeout),
            Some(config.settle),
        )
        .await
        .map_err(|e| journal_error_before_send(&global.journal, e))?;
    let token = CancellationToken::new();
    install_interrupt(token.clone());
    let started = Instant::now();
    let code = drive(
        &journal,
        &client,
        &config,
        Some(run_id),
        token,
        global.quiet,
    )
    .await;
    let _ = journal.end_run(run_id, code as i32).await;
    let path = journal.path().to_path_buf();
    drop(journal);
    print_summary(&path, started.elapsed(), config.rate, true);
    Ok(code)
}

/// Runs the job and maps how it ended to an exit code.
async fn drive(
    journal: &Journal,
    client: &Client,
    config: &RunConfig,
    run_id: Option<i64>,
    token: CancellationToken,
    quiet: bool,
) -> u8 {
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(counters.clone(), quiet);
    let result = runner::run(journal, client, config, run_id, token, counters).await;
    progress.finish().await;
    match result {
        Err(e) => {
            eprintln!("fleetcrypt: {e}");
            exit::SOME_FAILED
        }
        Ok(Some(StopReason::Interrupted)) => {
            eprintln!("fleetcrypt: interrupted; `fleetcrypt resume` continues where this stopped");
            exit::INTERRUPTED
        }
        Ok(Some(StopReason::AccountWide { code, message })) => {
            eprintln!(
                "fleetcrypt: stopped: the API refused the account: {code}: {message}{}",
                hint(&code)
                    .map(|h| format!("\n  hint: {h}"))
                    .unwrap_or_default()
            );
            exit::ACCOUNT
        }
        Ok(Some(StopReason::Unreachable { endpoint, message })) => {
            eprintln!("fleetcrypt: stopped: cannot reach the API at {endpoint}: {message}\n  check --endpoint, DNS and the network; nothing was changed, `fleetcrypt resume` continues");
            exit::SOME_FAILED
        }
        Ok(Some(StopReason::JournalFailed(e))) => {
            eprintln!("fleetcrypt: stopped: the journal could not record a fact ({e}); nothing more was sent");
            exit::SOME_FAILED
        }
        Ok(None) => {
            let counts = journal.query(read::counts).await.unwrap_or_default();
            let bad: u64 = counts
                .iter()
                .filter(|(s, _)| !s.is_success())
                .map(|(_, n)| n)
                .sum();
            if bad == 0 {
                exit::OK
            } else {
                exit::SOME_FAILED
            }
        }
    }
}

/// The table printed at the end of a run; `report_hint` names the report command
/// (not for the demo, whose journal is temporary).
pub fn print_summary(path: &Path, elapsed: Duration, rate: u32, report_hint: bool) {
    let Ok(conn) = schema::open_reader(path) else {
        return;
    };
    let Ok(counts) = read::counts(&conn) else {
        return;
    };
    let total: u64 = counts.values().sum();
    let pending: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let mut out = String::new();
    out.push_str(&format!(
        "\nfleetcrypt: {} instance(s) in {}, this run took {:.1}s\n",
        total,
        path.display(),
        elapsed.as_secs_f64()
    ));
    out.push_str("  state               count\n");
    for (label, n) in [
        ("encrypted", counts[&State::Encrypted]),
        ("already_encrypted", counts[&State::AlreadyEncrypted]),
        ("failed", counts[&State::Failed]),
        ("pending", pending),
    ] {
        out.push_str(&format!("  {label:<18} {n:>6}\n"));
    }
    out.push_str(&format!("  {:<18} {:>6}\n", "total", total));
    if let Ok(windows) = read::max_requests_in_1s_window(&conn) {
        let parts: Vec<String> = windows.iter().map(|(a, n)| format!("{a} {n}")).collect();
        if !parts.is_empty() {
            out.push_str(&format!(
                "  busiest second per action (limit {rate}): {}\n",
                parts.join(", ")
            ));
        }
    }
    if let Ok(ambiguous) = read::ambiguous_answers(&conn) {
        let n: u64 = ambiguous.iter().map(|(_, n)| n).sum();
        if n > 0 {
            let parts: Vec<String> = ambiguous.iter().map(|(c, n)| format!("{c} x{n}")).collect();
            out.push_str(&format!(
                "  {n} ambiguous answer(s) verified with a read before anything was re-sent: {}\n",
                parts.join(", ")
            ));
        }
    }
    if let Ok(failures) = read::failures_by_code(&conn) {
        if !failures.is_empty() {
            out.push_str("Failures by error code:\n");
            for read::FailureGroup {
                code,
                count: n,
                instances: ids,
                message: msg,
            } in failures
            {
                let shown: Vec<&str> = ids.iter().take(3).map(String::as_str).collect();
                out.push_str(&format!(
                    "  {code:<32} {n:>5}  e.g. {}{}\n    {msg}\n",
                    shown.join(", "),
                    if ids.len() > 3 { ", …" } else { "" }
                ));
                if let Some(h) = hint(&code) {
                    out.push_str(&format!("    hint: {h}\n"));
                }
            }
        }
    }
    if report_hint {
        out.push_str(&format!(
            "Audit report: fleetcrypt --journal {} report --format html -o report.html\n",
            path.display()
        ));
    }
    {
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), "{out}");
    }
}

/// `plan` and `run --dry-run`: preflight reads into a scratch journal; no write is sent.
pub async fn plan(global: &Global, input: InputArgs, job: JobArgs) -> u8 {
    match plan_inner(global, input, job).await {
        Ok(code) | Err(code) => code,
    }
}

async fn plan_inner(global: &Global, input: InputArgs, job: JobArgs) -> Result<u8, u8> {
    let Prepared {
        mut config,
        specs,
        client,
    } = prepare(global, &job, Some(&input))?;
    // Plan says what `run` would do; `run` would stop at an unusable journal, so plan
    // does too (read-only: an existing journal is checked, never created or migrated).
    if global.journal.exists() || global.journal.is_symlink() {
        if let Err(e) = schema::open_reader(&global.journal) {
            eprintln!("fleetcrypt: {e}; `run` would stop here, nothing was sent");
            return Err(exit::USAGE);
        }
    }
    config.plan_only = true;
    let dir = tempfile::Builder::new()
        .prefix("fleetcrypt-plan")
        .tempdir()
        .map_err(journal_error)?;
    let path = dir.path().join("plan.db");
    let journal = Journal::open(&path).map_err(journal_error)?;
    if let Some(specs) = specs {
        import(&journal, specs).await?;
    }
    let token = CancellationToken::new();
    install_interrupt(token.clone());
    let code = drive(&journal, &client, &config, None, token, global.quiet).await;
    drop(journal);
    if code == exit::ACCOUNT || code == exit::INTERRUPTED {
        return Ok(code);
    }
    let conn = schema::open_reader(&path).map_err(journal_error)?;
    let mut would = 0u64;
    let mut already = 0u64;
    let mut cannot = Vec::new();
    let _ = read::for_each_instance(&conn, |row| {
        match row.state {
            State::AlreadyEncrypted | State::Encrypted => already += 1,
            State::Failed => cannot.push(row),
            _ => would += 1,
        }
        Ok(())
    });
    say!(
        "plan: {would} instance(s) would be encrypted, {already} already encrypted, {} cannot be encrypted",
        cannot.len()
    );
    for row in &cannot {
        say!(
            "  {}  {}  {}: {}",
            row.instance_id,
            row.region,
            row.last_error_code.as_deref().unwrap_or("?"),
            row.last_error_message.as_deref().unwrap_or("")
        );
    }
    say!("Nothing was written to the cloud.");
    Ok(if cannot.is_empty() {
        exit::OK
    } else {
        exit::SOME_FAILED
    })
}

/// A world of the given fleet: label `Encryption=YES` marks an instance already
/// encrypted; custom keys exist in their KeyRegion (`KeyState` label, default Enabled).
pub fn world_from_fleet(specs: &[InstanceSpec]) -> World {
    let mut world = World::default();
    for s in specs {
        let mut inst = crate::emulator::Instance::new(s.id.as_str(), &s.region);
        if let Some(name) = s.label("Name") {
            inst.name = name.to_string();
        }
        if s.label("Encryption")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes"))
        {
            inst = inst.pre_encrypted();
        }
        if s.label("SupportsEncryption")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            inst.supports_encryption = false;
        }
        for (k, v) in &s.labels {
            if k.eq_ignore_ascii_case("env") || k.eq_ignore_ascii_case("team") {
                inst.tags.push((k.to_lowercase(), v.clone()));
            }
        }
        if let (Some(k), Some(r)) = (&s.key_id, &s.key_region) {
            world.add_key(k, r, s.label("KeyState").unwrap_or("Enabled"));
        }
        world.add_instance(inst);
    }
    world
}

/// `demo`: the whole job against the embedded emulator, with a few faults on.
pub async fn demo(global: &Global, args: super::DemoArgs) -> u8 {
    let specs = match &args.fleet {
        Some(path) => input::load(&path.display().to_string(), &Defaults::default()),
        None => input::parse(
            "samples/fleet.csv",
            SAMPLE_FLEET.as_bytes(),
            &Defaults::default(),
        ),
    };
    let specs = match specs {
        Ok(s) => s,
        Err(e) => {
            eprint!("fleetcrypt: {e}");
            return exit::USAGE;
        }
    };
    let world = world_from_fleet(&specs);
    let secret_id = format!(
        "AKIDdemo{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let secret_key = uuid::Uuid::new_v4().simple().to_string();
    let faults = Faults {
        internal_applied: 0.08,
        internal: 0.05,
        kms_error: 0.03,
        reset_applied: 0.03,
        bad_gateway: 0.02,
        hang_applied: 0.02,
        hang_late: 0.02,
        describe_internal: 0.02,
        ..Faults::default()
    };
    let mut emu_config = EmulatorConfig {
        credentials: vec![(secret_id.clone(), Secret::new(secret_key.clone()))],
        faults,
        propagation: Duration::from_millis(200),
        blank_after_apply: Duration::from_millis(300),
        apply_within: Duration::from_millis(500),
        hang_for: Duration::from_millis(2500),
        seed: rand::random(),
        ..EmulatorConfig::default()
    };
    for v in emu_config.rate_limits.values_mut() {
        *v = args.rate;
    }
    let open_latency = Latency::between(Duration::from_millis(300), Duration::from_millis(1500));
    emu_config.latency.insert(
        crate::api::cdb::OPEN_DB_INSTANCE_ENCRYPTION.into(),
        open_latency,
    );
    // The demo knows its own server's worst case: the longest an Open can be worked
    // on after it was sent (latency, then a hang, then a background apply). That is
    // its settle window; against the real API the default is 60 s (SPEC §1).
    let settle = open_latency.max
        + emu_config.hang_for
        + emu_config.apply_within
        + emu_config.propagation.max(emu_config.blank_after_apply)
        + Duration::from_millis(500);
    let emu = match Emulator::start(emu_config, world, "127.0.0.1:0".parse().unwrap()).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("fleetcrypt: cannot start the emulator: {e}");
            return exit::SOME_FAILED;
        }
    };
    eprintln!(
        "fleetcrypt demo: emulated Tencent Cloud API at {} with {} instances, rate limit {}/s per action, faults on",
        emu.url(),
        specs.len(),
        args.rate
    );
    eprintln!(
        "fleetcrypt demo: --settle {} (this emulator works on an Open for at most {} after it is sent; against the real API the default is 60s)",
        humantime::format_duration(settle),
        humantime::format_duration(settle - Duration::from_millis(500)),
    );
    let demo_global = Global {
        endpoint: Some(emu.url()),
        ..global.clone()
    };
    let job = JobArgs {
        rate: args.rate,
        max_in_flight: 256,
        timeout: Duration::from_secs(2),
        max_attempts: 8,
        verify_deadline: Duration::from_secs(20),
        regional_endpoints: false,
        check_kms: true,
        yes: true,
        settle,
        allow_short_settle: true,
        rate_margin: Duration::from_millis(15),
    };
    let mut config = run_config(&demo_global, &job).expect("demo flags are valid");
    config.retry_backoff = runner::Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    config.poll_backoff = runner::Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    let tmp = tempfile::Builder::new().prefix("fleetcrypt-demo").tempdir();
    let path = match (&args.keep_journal, &tmp) {
        (Some(p), _) => p.clone(),
        (None, Ok(d)) => d.path().join("demo.db"),
        (None, Err(e)) => {
            eprintln!("fleetcrypt: cannot create a scratch directory: {e}");
            return exit::SOME_FAILED;
        }
    };
    let journal = match Journal::open(&path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("fleetcrypt: {e}");
            return exit::SOME_FAILED;
        }
    };
    if let Err(e) = journal.import(specs).await {
        eprintln!("fleetcrypt: {e}");
        return exit::SOME_FAILED;
    }
    let client = match client(
        &demo_global,
        Credentials::new(secret_id, secret_key),
        config.timeout,
        config.max_in_flight,
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let run_id = journal
        .start_run(
            "demo",
            Some(config.rate),
            Some(config.timeout),
            Some(config.settle),
        )
        .await
        .ok();
    let token = CancellationToken::new();
    install_interrupt(token.clone());
    let started = Instant::now();
    let code = drive(&journal, &client, &config, run_id, token, global.quiet).await;
    if let Some(id) = run_id {
        let _ = journal.end_run(id, code as i32).await;
    }
    drop(journal);
    print_summary(
        &path,
        started.elapsed(),
        config.rate,
        args.keep_journal.is_some(),
    );
    let truth = emu.ground_truth();
    let busiest = truth
        .actions
        .values()
        .map(|a| a.max_in_1s_window)
        .max()
        .unwrap_or(0);
    say!(
        "Emulator ground truth: {} of {} instances encrypted, {} overlapping Opens, {} Opens on encrypted instances, {} blind re-sends, busiest second {} requests (limit {}), {} Open calls re-sent after a settled NO",
        truth.instances.values().filter(|i| i.encrypted).count(),
        truth.instances.len(),
        truth.total_overlapping_open_calls(),
        truth.total_open_calls_when_encrypted(),
        truth.total_blind_open_calls(),
        busiest,
        args.rate,
        truth.instances.values().map(|i| i.open_calls).sum::<u32>() as u64
            - truth.instances.values().filter(|i| i.open_calls > 0).count() as u64,
    );
    match crate::report::write_file(&path, crate::report::Format::Html, &args.report) {
        Ok(()) => say!("HTML report: {}", args.report.display()),
        Err(e) => eprintln!("fleetcrypt: cannot write the report: {e}"),
    }
    emu.stop();
    code
}
