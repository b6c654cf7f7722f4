//! The emulator as a running thing: binding, the router, stopping, and the
//! state every request shares (the world, the seeded RNG, the rate windows and
//! the counters behind the ground truth), all under one lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::task::JoinHandle;

use super::config::{BadAnswer, EmulatorConfig};
use super::request::{dated, handle, stamp_arrival};
use super::wire::json_response;
use super::world::{ActionTruth, GroundTruth, InstanceTruth, World};
use crate::api::Secret;
use crate::model::SlidingWindow;

/// A running emulator.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What every request handler reaches: the fixed configuration, and the
/// changing state behind one lock.
pub(super) struct Shared {
    pub(super) config: EmulatorConfig,
    pub(super) keys: HashMap<String, Secret>,
    started: Instant,
    pub(super) inner: Mutex<Inner>,
}

/// Everything a request may change, taken under one lock so that the seeded
/// RNG is drawn in the same order as the decisions it feeds.
pub(super) struct Inner {
    pub(super) world: World,
    pub(super) rng: StdRng,
    /// Accepted arrivals per (action, host, secret id): the rate limit.
    pub(super) quota: HashMap<(String, String, String), SlidingWindow>,
    /// All arrivals per (action, host, secret id): the measurement.
    pub(super) seen: HashMap<(String, String, String), SlidingWindow>,
    /// All arrivals per (action, host), whatever the credential.
    pub(super) seen_all_credentials: HashMap<(String, String), SlidingWindow>,
    pub(super) actions: HashMap<String, ActionTruth>,
    pub(super) requests_total: u64,
    pub(super) signature_failures: u64,
    pub(super) auth_failures: u64,
    /// The bad answers in force (from the config; tests change them mid-run).
    pub(super) bad_answers: Vec<BadAnswer>,
    /// The SecretId of the request being answered (an instance with an
    /// `owner` is visible to that credential only).
    pub(super) caller: String,
}

impl Emulator {
    /// Binds `addr` (port 0 for any) and serves until stopped or dropped.
    pub async fn start(
        config: EmulatorConfig,
        world: World,
        addr: SocketAddr,
    ) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            keys: config.credentials.iter().cloned().collect(),
            inner: Mutex::new(Inner {
                world,
                rng: StdRng::seed_from_u64(config.seed),
                quota: HashMap::new(),
                seen: HashMap::new(),
                seen_all_credentials: HashMap::new(),
                caller: String::new(),
                actions: HashMap::new(),
                requests_total: 0,
                signature_failures: 0,
                auth_failures: 0,
                bad_answers: config.bad_answers.clone(),
            }),
            started: Instant::now(),
            config,
        });
        let app = Router::new()
            .route("/", post(handle))
            .route("/__emulator/state", get(state))
            .layer(axum::middleware::from_fn(stamp_arrival))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), dated))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Emulator { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the value for `--endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ground_truth(&self) -> GroundTruth {
        self.shared.ground_truth()
    }

    /// Replaces the bad answers in force (tests turn them up or down mid-run).
    pub fn set_bad_answers(&self, bad: Vec<BadAnswer>) {
        self.shared.inner.lock().unwrap().bad_answers = bad;
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    /// Microseconds since start: the clock of the rate windows.
    pub(super) fn micros(&self, t: Instant) -> u64 {
        t.duration_since(self.started).as_micros() as u64
    }

    fn ground_truth(&self) -> GroundTruth {
        let inner = self.inner.lock().unwrap();
        GroundTruth {
            instances: inner
                .world
                .instances
                .values()
                .map(|i| {
                    (
                        i.id.clone(),
                        InstanceTruth {
                            region: i.region.clone(),
                            instance_type: i.instance_type,
                            encrypted: i.encrypted,
                            key_id: i.key_id.clone(),
                            key_region: i.key_region.clone(),
                            open_calls: i.open_calls,
                            open_calls_when_encrypted: i.open_calls_when_encrypted,
                            blind_open_calls: i.blind_open_calls,
                            overlapping_open_calls: i.overlapping_open_calls,
                        },
                    )
                })
                .collect(),
            actions: inner
                .actions
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            requests_total: inner.requests_total,
            signature_failures: inner.signature_failures,
            auth_failures: inner.auth_failures,
        }
    }
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&shared.ground_truth()).unwrap(),
    )
}
