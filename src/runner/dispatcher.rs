//! The dispatcher owns every scheduling decision: which instances are in
//! progress, which step is due, which bucket (endpoint × action) may send now,
//! and when to stop. Workers run one step each and report back. Rate and
//! concurrency are separate: a request needs a limiter slot *and* an in-flight
//! slot, and the limiter slot is taken right before the request leaves, so no
//! in-flight slot is ever spent waiting on a limiter.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::limiter::Limiter;
use super::steps::{execute, Active, Ctx, Heard, Next, Step, StepResult, StopReason};
use super::wire_gate::WireGate;
use super::{Counters, RunError};
use crate::api::Service;
use crate::journal::{load_active, Change, Fact};
use crate::model::{now_ms, Action, Disposition, InstanceId, State};

/// One rate-limit unit: (credential, endpoint host, action).
type Bucket = (String, String, Action);
/// A bucket's due steps: (priority, arrival order, instance, step), lowest first.
type ReadyQueue = BinaryHeap<Reverse<(u8, u64, InstanceId, Step)>>;

pub struct Dispatcher {
    ctx: Arc<Ctx>,
    counters: Arc<Counters>,
    /// Instances in progress and not executing a step right now.
    idle: HashMap<InstanceId, Active>,
    executing: usize,
    timers: BinaryHeap<Reverse<(Instant, u64, InstanceId, Step)>>,
    ready: HashMap<Bucket, ReadyQueue>,
    /// Per Open bucket: instances waiting for a write-ahead slot.
    open_wait: HashMap<Bucket, VecDeque<InstanceId>>,
    /// Per Open bucket: written ahead (or being written) and not yet sent.
    staged: HashMap<Bucket, usize>,
    limiters: HashMap<Bucket, Limiter>,
    /// Per bucket, the strict sliding log taken at the wire (see [`WireGate`]).
    gates: HashMap<Bucket, Arc<WireGate>>,
    in_flight: usize,
    tasks: JoinSet<StepResult>,
    cursor: i64,
    exhausted: bool,
    stop: Option<StopReason>,
    /// Until the first definite answer, one request at a time: a wrong key costs one request.
    canary_passed: bool,
    /// How long after start-up an attempt left by an earlier process may still be
    /// worked on by the server: the longest settle window any run used (or this run's).
    recovery_settle: Duration,
    /// Requests that could not even be sent, in a row, before the canary passed.
    unsendable: u32,
    seq: u64,
}

impl Dispatcher {
    pub fn new(ctx: Arc<Ctx>, counters: Arc<Counters>) -> Self {
        Dispatcher {
            ctx,
            counters,
            idle: HashMap::new(),
            executing: 0,
            timers: BinaryHeap::new(),
            ready: HashMap::new(),
            open_wait: HashMap::new(),
            staged: HashMap::new(),
            limiters: HashMap::new(),
            gates: HashMap::new(),
            in_flight: 0,
            tasks: JoinSet::new(),
            cursor: 0,
            exhausted: false,
            stop: None,
            canary_passed: false,
            recovery_settle: Duration::ZERO,
            unsendable: 0,
            seq: 0,
        }
    }

    fn bucket(&self, a: &Active, step: Step) -> Bucket {
        let host = match step {
            Step::KmsKey => a.kms.as_ref().map(|e| e.host.clone()).unwrap_or_default(),
            _ => a.cdb.host.clone(),
        };
        (self.ctx.client.secret_id().to_string(), host, step.action())
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn schedule(&mut self, a: Active, step: Step, at: Instant) {
        let id = a.id().clone();
        self.idle.insert(id.clone(), a);
        let seq = self.next_seq();
        self.timers.push(Reverse((at, seq, id, step)));
    }

    /// A due step joins its bucket's queue (write-aheads join the Open bucket's wait list).
    fn make_ready(&mut self, id: InstanceId, step: Step) {
        let Some(a) = self.idle.get(&id) else { return };
        let bucket = self.bucket(a, step);
        if step == Step::WriteAhead {
            self.open_wait.entry(bucket).or_default().push_back(id);
            return;
        }
        let seq = self.next_seq();
        self.ready
            .entry(bucket)
            .or_default()
            .push(Reverse((step.priority(), seq, id, step)));
    }

    /// Brings instances from the journal into progress, up to `max_active`.
    async fn refill(&mut self) -> Result<(), RunError> {
        let ctx = self.ctx.clone();
        let cfg = &ctx.config;
        let in_progress = self.idle.len() + self.executing;
        if self.exhausted || in_progress >= cfg.max_active / 2 {
            return Ok(());
        }
        let want = cfg.max_active - in_progress;
        let cursor = self.cursor;
        let rows = self
            .ctx
            .journal
            .query(move |c| load_active(c, cursor, want))
            .await?;
        if rows.len() < want {
            self.exhausted = true;
        }
        let now = Instant::now();
        let now_wall = now_ms();
        for row in rows {
            self.cursor = row.seq;
            let cdb = cfg.endpoints.resolve(Service::Cdb, &row.region)?;
            let kms = match &row.key_region {
                Some(kr) if cfg.check_kms => Some(cfg.endpoints.resolve(Service::Kms, kr)?),
                _ => None,
            };
            let mut a = Active::from_row(&row, cdb, kms);
            // Wall-clock times only pace retries (bounded, in case the clock stepped);
            // every safety decision below is on the monotonic clock from now.
            let at = |ms: Option<i64>| {
                let wait = (ms.unwrap_or(now_wall) - now_wall).max(0) as u64;
                now + Duration::from_millis(wait).min(cfg.retry_backoff.cap)
            };
            // SPEC §1: after a restart, every attempt not yet cleared gets a fresh
            // full settle window counted from now, whatever the stored times say.
            // Only an attempt answered "not applied" (rejected) needs none.
            if !row.cleared_to_send && row.attempts > 0 {
                let rejected = row.state == State::RetryWait
                    && row.last_outcome == Some(Disposition::Rejected);
                a.settles_at = Some(if rejected {
                    now
                } else {
                    now + self.recovery_settle
                });
            }
            if a.accepted() && row.state == State::Verifying {
                a.verify_until = Some(now + cfg.verify_deadline.max(self.recovery_settle));
            }
            let step = match row.state {
                State::Pending => (Step::PreflightRead, now),
                State::Requesting => {
                    // A previous process wrote this attempt and died: it may have left at
                    // any moment up to that death. Read now (a YES ends it early), and
                    // count a NO only after the fresh window.
                    let settles_at_ms = now_wall + self.recovery_settle.as_millis() as i64;
                    let applied = self
                        .ctx
                        .journal
                        .apply(Change {
                            instance_id: a.id().clone(),
                            fact: Fact::AttemptRecovered { settles_at_ms },
                            run_id: self.ctx.run_id,
                            call: None,
                            at_ms: now_wall,
                        })
                        .await?;
                    // The recovered attempt counts as unclear (`last_outcome` ambiguous).
                    a.row = applied;
                    (Step::VerifyRead, now)
                }
                State::Verifying => (Step::VerifyRead, now),
                State::RetryWait if a.cleared() => (Step::WriteAhead, at(row.next_attempt_at_ms)),
                State::RetryWait => (Step::PreSendRead, at(row.next_attempt_at_ms)),
                _ => continue,
            };
            self.schedule(a, step.0, step.1);
        }
        Ok(())
    }

    fn spawn(&mut self, id: InstanceId, step: Step) {
        let Some(a) = self.idle.remove(&id) else {
            return;
        };
        self.executing += 1;
        if step != Step::WriteAhead {
            self.in_flight += 1;
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = self.bucket(&a, step);
        let cfg = &self.ctx.config;
        let gate: Arc<dyn crate::api::Gate> = self
            .gates
            .entry(bucket)
            .or_insert_with(|| Arc::new(WireGate::new(cfg.rate, cfg.rate_margin)))
            .clone();
        let ctx = self.ctx.clone();
        self.tasks.spawn(execute(ctx, a, step, gate));
    }

    fn handle(&mut self, res: StepResult) {
        self.executing -= 1;
        // As in `spawn`: every step but the write-ahead holds an in-flight slot.
        if res.step != Step::WriteAhead {
            self.in_flight -= 1;
        }
        if res.heard.definite() {
            self.canary_passed = true;
        }
        match &res.heard {
            Heard::NotSent(message) if !self.canary_passed => {
                // A wrong endpoint or a dead network would otherwise fail every instance
                // slowly, one backoff at a time: stop after a few tries, nothing changed.
                self.unsendable += 1;
                if self.unsendable >= 3 && self.stop.is_none() {
                    self.stop = Some(StopReason::Unreachable {
                        endpoint: self.bucket(&res.active, res.step).1,
                        message: message.clone(),
                    });
                }
            }
            _ => self.unsendable = 0,
        }
        if res.heard == Heard::Throttled {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
            let b = self.bucket(&res.active, res.step);
            if let Some(l) = self.limiters.get_mut(&b) {
                l.throttled();
            }
        }
        if res.step == Step::WriteAhead && !matches!(res.next, Next::After(Step::Send, _)) {
            // The write-ahead did not lead to a send (refused, or the journal failed):
            // give its staging slot back, or the Open bucket would slowly seize up.
            let b = self.bucket(&res.active, Step::WriteAhead);
            if let Some(n) = self.staged.get_mut(&b) {
                *n = n.saturating_sub(1);
            }
        }
        let a = res.active;
        match res.next {
            Next::Done => self.counters.finished(a.state()),
            Next::After(step, delay) => {
                let at = Instant::now() + delay;
                self.schedule(a, step, at);
            }
            Next::Stop(stop) => {
                // The first reason stands, unless the journal failed: that one always wins.
                if self.stop.is_none() || matches!(stop, StopReason::JournalFailed(_)) {
                    self.stop = Some(stop);
                }
            }
        }
    }

    fn send_ready(&mut self, now: Instant, wake: &mut Option<Instant>) {
        let cfg = &self.ctx.config;
        let limit = if self.canary_passed {
            cfg.max_in_flight
        } else {
            1
        };
        let rate = cfg.rate;
        let margin = cfg.rate_margin;
        // Write-aheads: keep at most `rate` staged per Open bucket, so the journal never
        // holds more attempts than are about to leave.
        let buckets: Vec<Bucket> = self.open_wait.keys().cloned().collect();
        for b in buckets {
            loop {
                let staged = *self.staged.get(&b).unwrap_or(&0);
                if staged >= rate as usize {
                    break;
                }
                let Some(id) = self.open_wait.get_mut(&b).and_then(|q| q.pop_front()) else {
                    break;
                };
                *self.staged.entry(b.clone()).or_default() += 1;
                self.spawn(id, Step::WriteAhead);
            }
        }
        let buckets: Vec<Bucket> = self
            .ready
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(b, _)| b.clone())
            .collect();
        for b in buckets {
            while self.in_flight < limit {
                if self.ready.get(&b).is_none_or(|q| q.is_empty()) {
                    break;
                }
                let limiter = self
                    .limiters
                    .entry(b.clone())
                    .or_insert_with(|| Limiter::new(rate, margin));
                match limiter.try_acquire() {
                    Ok(()) => {
                        let Reverse((_, _, id, step)) =
                            self.ready.get_mut(&b).unwrap().pop().unwrap();
                        if step == Step::Send {
                            if let Some(n) = self.staged.get_mut(&b) {
                                *n = n.saturating_sub(1);
                            }
                        }
                        self.spawn(id, step);
                    }
                    Err(t) => {
                        *wake = Some(wake.map_or(t, |w| w.min(t)));
                        break;
                    }
                }
            }
        }
        let _ = now;
    }

    /// Drives every instance to a terminal state, or until stopped.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<Option<StopReason>, RunError> {
        // Requests of a previous process may still count in the server's window,
        // including reads it never journaled: wait out one window first.
        let gate = Instant::now() + self.ctx.config.startup_wait;
        let longest: Option<i64> = self
            .ctx
            .journal
            .query(|c| {
                c.query_row(
                    "SELECT MAX(COALESCE(settle_ms, timeout_ms + 10000)) FROM runs",
                    [],
                    |r| r.get(0),
                )
            })
            .await?;
        let cfg = &self.ctx.config;
        self.recovery_settle = cfg
            .settle
            .max(Duration::from_millis(longest.unwrap_or(0).max(0) as u64));
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if self.stop.is_none() {
                self.refill().await?;
            }
            let now = Instant::now();
            while let Some(Reverse((t, _, _, _))) = self.timers.peek() {
                if *t > now {
                    break;
                }
                let Reverse((_, _, id, step)) = self.timers.pop().unwrap();
                self.make_ready(id, step);
            }
            let mut wake = self.timers.peek().map(|Reverse((t, ..))| *t);
            if self.stop.is_none() {
                if now >= gate {
                    self.send_ready(now, &mut wake);
                } else {
                    wake = Some(wake.map_or(gate, |w| w.min(gate)));
                }
                self.counters
                    .in_flight
                    .store(self.in_flight as u64, Ordering::Relaxed);
            } else if drain_deadline.is_none() {
                drain_deadline = Some(now + self.ctx.config.drain_limit);
            }
            let nothing_left = self.idle.is_empty() && self.exhausted;
            if self.tasks.is_empty() && (self.stop.is_some() || nothing_left) {
                break;
            }
            if let Some(d) = drain_deadline {
                if now >= d {
                    tracing::warn!(left = self.tasks.len(), "in-flight requests did not finish in time; abandoning them (the journal is consistent)");
                    self.tasks.abort_all();
                    break;
                }
                wake = Some(wake.map_or(d, |w| w.min(d)));
            }
            let sleep_until = wake.unwrap_or(now + Duration::from_millis(250)).max(now);
            tokio::select! {
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok(res) => self.handle(res),
                        Err(e) if e.is_cancelled() => {}
                        Err(e) => std::panic::resume_unwind(e.into_panic()),
                    }
                }
                _ = tokio::time::sleep_until(sleep_until.into()) => {}
                _ = shutdown.cancelled(), if self.stop.is_none() => {
                    self.stop = Some(StopReason::Interrupted);
                }
            }
        }
        Ok(self.stop)
    }
}
