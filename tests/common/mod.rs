//! Test helpers: an emulator on its own runtime thread (so the client under
//! test cannot distort the server's arrival times), and fleet builders.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fleetcrypt::emulator::{Emulator, EmulatorConfig, GroundTruth, World};
use fleetcrypt::input::InstanceSpec;

pub const SECRET_ID: &str = "AKIDtest0123456789";
pub const SECRET_KEY: &str = "test-secret-key-do-not-print";

/// An emulator served by a dedicated runtime on its own thread.
pub struct EmulatorThread {
    pub url: String,
    pub addr: std::net::SocketAddr,
    emulator: std::sync::Arc<Emulator>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmulatorThread {
    pub fn start(config: EmulatorConfig, world: World) -> EmulatorThread {
        // The test pair unless the config names its own.
        let config = if config.credentials.is_empty() {
            EmulatorConfig {
                credentials: vec![(SECRET_ID.into(), fleetcrypt::api::Secret::new(SECRET_KEY))],
                ..config
            }
        } else {
            config
        };
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let emu = Emulator::start(config, world, "127.0.0.1:0".parse().unwrap())
                    .await
                    .unwrap();
                let emu = std::sync::Arc::new(emu);
                tx.send(emu.clone()).unwrap();
                let _ = stop_rx.await;
            });
        });
        let emulator = rx.recv().unwrap();
        EmulatorThread {
            url: emulator.url(),
            addr: emulator.addr(),
            emulator,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn truth(&self) -> GroundTruth {
        self.emulator.ground_truth()
    }

    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }
}

impl Drop for EmulatorThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The masters of `world` as input rows.
pub fn specs_of(world: &World) -> Vec<InstanceSpec> {
    world
        .instances
        .values()
        .filter(|i| i.instance_type == 1)
        .enumerate()
        .map(|(n, i)| InstanceSpec {
            id: i.id.parse().expect("the emulator's masters have valid ids"),
            region: i.region.clone(),
            key_id: None,
            key_region: None,
            account: None,
            labels: vec![("name".into(), i.name.clone())],
            line: n as u64 + 2,
        })
        .collect()
}

/// `count` unencrypted masters that support encryption, with the default key.
pub fn plain_world(count: usize, seed: u64) -> World {
    World::generate(&fleetcrypt::emulator::Generate {
        count,
        share_encrypted: 0.0,
        share_unsupported: 0.0,
        share_needs_upgrade: 0.0,
        share_custom_key: 0.0,
        share_replicas: 0.0,
        seed,
        ..Default::default()
    })
}

/// Run flags that match [`fast_config`]: its emulator works on an Open for at
/// most 400 ms + a 1.5 s hang, which a 2.5 s settle window covers.
pub const FAST: &[&str] = &[
    "--timeout",
    "1s",
    "--settle",
    "2500ms",
    "--allow-short-settle",
    "--verify-deadline",
    "5s",
    // The test emulators show YES at once (or after a set propagation).
    "--verify-first-read",
    "200ms",
    "--yes",
];

/// Fast timings for tests: Open up to 400 ms, reads up to 20 ms, hangs 1.5 s.
pub fn fast_config(rate: u32) -> EmulatorConfig {
    use fleetcrypt::api::cdb::*;
    use fleetcrypt::emulator::Latency;
    let mut c = EmulatorConfig::default();
    for v in c.rate_limits.values_mut() {
        *v = rate;
    }
    c.latency.insert(
        OPEN_DB_INSTANCE_ENCRYPTION.into(),
        Latency::between(Duration::from_millis(20), Duration::from_millis(400)),
    );
    for a in [DESCRIBE_DB_INSTANCE_INFO, DESCRIBE_DB_FEATURES] {
        c.latency.insert(
            a.into(),
            Latency::between(Duration::from_millis(1), Duration::from_millis(20)),
        );
    }
    c.apply_within = Duration::from_millis(300);
    // Past a 1 s client timeout; the server's worst case after a send is then
    // 400 ms + 1.5 s (hang-late), which the tests' 2.5 s settle window covers.
    c.hang_for = Duration::from_millis(1500);
    c
}

pub const BIN: &str = env!("CARGO_BIN_EXE_fleetcrypt");

/// For tests of safety under heavy faults (20–30 % of Opens failing): no error
/// budget, which would rightly stop such a run early (`tests/rollout.rs`
/// tests the budget).
pub const NO_BUDGET: &[&str] = &["--max-errors", "1000000"];

/// The same for the runner in-process.
#[allow(dead_code)]
pub fn no_error_budget() -> fleetcrypt::runner::rollout::Rollout {
    fleetcrypt::runner::rollout::Rollout {
        max_errors: Some(fleetcrypt::runner::rollout::Amount::Count(u64::MAX)),
        ..Default::default()
    }
}

/// A scratch directory (HOME, journal) and an endpoint for the real binary.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Env {
    pub fn new(url: &str) -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            url: url.to_string(),
        }
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("fleet.db")
    }
    pub fn cmd(&self, key: &str) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("HOME", self.dir.path())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", key)
            .arg("--journal")
            .arg(self.journal())
            .arg("--endpoint")
            .arg(&self.url)
            .stdin(Stdio::null());
        c
    }
    pub fn write_fleet(&self, world: &World) -> PathBuf {
        let path = self.dir.path().join("fleet.csv");
        let mut s = String::from("InstanceId,Region,Name\n");
        for spec in specs_of(world) {
            s.push_str(&format!(
                "{},{},{}\n",
                spec.id,
                spec.region,
                spec.label("name").unwrap()
            ));
        }
        std::fs::write(&path, s).unwrap();
        path
    }
}

pub fn output(mut c: Command) -> Output {
    c.output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            return s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0));
        }
        assert!(start.elapsed() < limit, "process did not exit in {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn report_json(env: &Env) -> serde_json::Value {
    let mut c = env.cmd(SECRET_KEY);
    c.args(["report", "--format", "json"]);
    let o = output(c);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}
