//! `demo`: the whole job against the embedded emulator, with a few faults on,
//! then the emulator's ground truth beside the journal's summary.

use std::time::{Duration, Instant};

use super::args::{DemoArgs, Global, JobArgs};
use super::error::{CliError, CliResult};
use super::job::Job;
use super::rollout_args::RolloutArgs;
use super::setup::{client, run_config};
use super::summary;
use crate::api::Clients;
use crate::api::{Credentials, Secret};
use crate::emulator::{Emulator, EmulatorConfig, Faults, Latency, World};
use crate::input::{self, Defaults};
use crate::journal::Journal;
use crate::model::{Action, InstanceSpec};
use crate::runner;
use crate::runner::rollout::{Amount, CanaryThen, RAMP_START};

/// The fleet `demo` emulates when no --fleet is given.
pub(super) const SAMPLE_FLEET: &str = include_str!("../../samples/fleet.csv");

/// A world of the given fleet: label `Encryption=YES` marks an instance already
/// encrypted; custom keys exist in their KeyRegion (`KeyState` label, default Enabled).
pub(super) fn world_from_fleet(specs: &[InstanceSpec]) -> World {
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

/// The demo's emulated API: the given fleet, a few faults of every kind, the
/// rate limit, and the settle window that covers this server's worst case.
struct DemoServer {
    emulator: Emulator,
    secret_id: String,
    secret_key: String,
    settle: Duration,
}

impl DemoServer {
    async fn start(world: World, rate: u32) -> Result<DemoServer, CliError> {
        let secret_id = format!(
            "AKIDdemo{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let secret_key = uuid::Uuid::new_v4().simple().to_string();
        // About one Open in seven meets a fault: enough to show each kind
        // verified and absorbed, few enough that three phases (canary, two
        // waves, each waiting for its slowest instance) stay near 15 s.
        let faults = Faults {
            internal_applied: 0.05,
            internal: 0.03,
            kms_error: 0.02,
            reset_applied: 0.02,
            bad_gateway: 0.01,
            hang_applied: 0.01,
            hang_late: 0.01,
            describe_internal: 0.02,
            ..Faults::default()
        };
        let mut config = EmulatorConfig {
            credentials: vec![(secret_id.clone(), Secret::new(secret_key.clone()))],
            faults,
            propagation: Latency::fixed(Duration::from_millis(200)),
            blank_after_apply: Duration::from_millis(300),
            apply_within: Duration::from_millis(300),
            // Just past the demo's 1 s client timeout.
            hang_for: Duration::from_millis(1200),
            seed: rand::random(),
            ..EmulatorConfig::default()
        };
        for v in config.rate_limits.values_mut() {
            *v = rate;
        }
        let open_latency = Latency::between(Duration::from_millis(200), Duration::from_millis(800));
        config.latency.insert(
            Action::OpenDBInstanceEncryption.as_str().into(),
            open_latency,
        );
        // The demo knows its own server's worst case: the longest an Open can be worked
        // on after it was sent (latency, then a hang, then a background apply). That is
        // its settle window; against the real API the default is 60 s (SPEC §1).
        let settle = open_latency.max
            + config.hang_for
            + config.apply_within
            + config.propagation.max.max(config.blank_after_apply)
            + SETTLE_CUSHION;
        let emulator = Emulator::start(config, world, "127.0.0.1:0".parse().unwrap())
            .await
            .map_err(|e| CliError::failed(format!("cannot start the emulator: {e}")))?;
        Ok(DemoServer {
            emulator,
            secret_id,
            secret_key,
            settle,
        })
    }

    /// What the server saw, beside the journal's summary.
    fn print_ground_truth(&self, rate: u32) {
        let truth = self.emulator.ground_truth();
        let busiest = truth
            .actions
            .values()
            .map(|a| a.max_in_1s_window)
            .max()
            .unwrap_or(0);
        let opens: u64 = truth.instances.values().map(|i| i.open_calls as u64).sum();
        let opened = truth
            .instances
            .values()
            .filter(|i| i.open_calls > 0)
            .count() as u64;
        say!(
            "Emulator ground truth: {} of {} instances encrypted, {} overlapping Opens, {} Opens on encrypted instances, {} blind re-sends, busiest second {} requests (limit {rate}), {} Open calls re-sent after a settled NO",
            truth.instances.values().filter(|i| i.encrypted).count(),
            truth.instances.len(),
            truth.total_overlapping_open_calls(),
            truth.total_open_calls_when_encrypted(),
            truth.total_blind_open_calls(),
            busiest,
            opens - opened,
        );
    }
}

/// Added to the demo server's worst case in its settle window.
const SETTLE_CUSHION: Duration = Duration::from_millis(300);

/// The demo's job flags: as an operator would pass them, with the settle
/// window of the emulated server.
fn demo_job(rate: u32, settle: Duration) -> JobArgs {
    JobArgs {
        rate,
        max_in_flight: 256,
        timeout: Duration::from_secs(1),
        max_attempts: 8,
        verify_deadline: Duration::from_secs(20),
        // The demo server shows YES 200 ms after an apply; no need to start at 10 s.
        verify_first_read: Duration::from_millis(500),
        regional_endpoints: false,
        check_kms: true,
        no_check_kms: false,
        yes: true,
        settle,
        allow_short_settle: true,
        rate_margin: Duration::from_millis(15),
        // The demo drives `Job` itself; its own emulator needs no checking.
        no_doctor: true,
        // What an operator would do with an irreversible change: three canary
        // instances first, then staging, then production (the sample fleet's
        // `Env` label), each wave verified before the next.
        rollout: RolloutArgs {
            canary: Some(Amount::Count(3)),
            canary_then: CanaryThen::Continue,
            waves: Some("Env=staging,Env=prod".parse().expect("valid waves")),
            ramp_start: RAMP_START,
            ..RolloutArgs::default()
        },
        // The demo's journal and emulator are its own.
        journal: Default::default(),
        cloud: Default::default(),
    }
}

/// `demo`: the whole job against the embedded emulator, with a few faults on.
pub(super) async fn demo(global: &Global, args: DemoArgs) -> CliResult {
    let specs = match &args.fleet {
        Some(path) => input::load(&path.display().to_string(), &Defaults::default()),
        None => input::parse(
            "samples/fleet.csv",
            SAMPLE_FLEET.as_bytes(),
            &Defaults::default(),
        ),
    };
    let specs = specs.map_err(CliError::usage)?;
    let server = DemoServer::start(world_from_fleet(&specs), args.rate).await?;
    eprintln!(
        "fleetcrypt demo: emulated Tencent Cloud API at {} with {} instances, rate limit {}/s per action, faults on",
        server.emulator.url(),
        specs.len(),
        args.rate
    );
    eprintln!(
        "fleetcrypt demo: --settle {} (this emulator works on an Open for at most {} after it is sent; against the real API the default is 60s)",
        humantime::format_duration(server.settle),
        humantime::format_duration(server.settle - SETTLE_CUSHION),
    );
    // Its own emulator, reached directly: --endpoint/--resolve are ignored.
    let demo_global = Global {
        endpoint: Some(server.emulator.url()),
        resolve: Vec::new(),
        ..global.clone()
    };
    let mut config = run_config(&demo_global, &demo_job(args.rate, server.settle))
        .expect("demo flags are valid");
    config.retry_backoff = runner::Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    config.poll_backoff = runner::Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    let tmp = tempfile::Builder::new().prefix("fleetcrypt-demo").tempdir();
    let path = match (&args.keep_journal, &tmp) {
        (Some(p), _) => p.clone(),
        (None, Ok(d)) => d.path().join("demo.db"),
        (None, Err(e)) => {
            return Err(CliError::failed(format!(
                "cannot create a scratch directory: {e}"
            )))
        }
    };
    let journal = Journal::open(&path).map_err(CliError::failed)?;
    journal.import(specs).await.map_err(CliError::failed)?;
    let client = client(
        &demo_global,
        Credentials::new(server.secret_id.clone(), server.secret_key.clone()),
        config.timeout,
        config.max_in_flight,
    )?;
    let started = Instant::now();
    let result = Job {
        journal: &journal,
        clients: &Clients::from(&client),
        config: &config,
        command: Some("demo"),
        quiet: global.quiet,
    }
    .execute()
    .await;
    drop(journal);
    summary::print(
        &path,
        started.elapsed(),
        config.rate,
        args.keep_journal.is_some(),
    );
    server.print_ground_truth(args.rate);
    let report = crate::report::write_file(&path, crate::report::Format::Html, &args.report);
    server.emulator.stop();
    match report {
        Ok(()) => say!("HTML report: {}", args.report.display()),
        Err(e) => return Err(CliError::failed(format!("cannot write the report: {e}"))),
    }
    result
}
