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
use crate::journal::InstanceRow;
use crate::journal::{load_active, Change, Fact};
use crate::model::RolloutEvent;
use crate::model::{now_ms, Action, Disposition, InstanceId, State};

/// One rate-limit unit: (credential, endpoint host, action).
type Bucket = (String, String, Action);
/// A bucket's due steps: (priority, arrival order, instance, step), lowest first.
type ReadyQueue = BinaryHeap<Reverse<(u8, u64, InstanceId, Step)>>;
/// Which instances a phase of the run touches (selection, wave, canary).
pub type Filter = Arc<dyn Fn(&InstanceRow) -> bool + Send + Sync>;

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
    /// Which instances this phase touches.
    filter: Filter,
    /// No new Open: why the run stops once what is in flight is verified (the
    /// error budget is spent, or outside the window with `--exit-outside-window`).
    halt: Option<StopReason>,
    /// Outside the maintenance window: no new Open until then (wall clock).
    paused_until: Option<chrono::DateTime<chrono::Utc>>,
    /// When to look at the window again.
    window_check_at: Option<Instant>,
    /// Per Open bucket: Opens written ahead or sent, not yet answered.
    unanswered: HashMap<Bucket, usize>,
    /// Per Open bucket: how many may be unanswered (the ramp; `None`: no ramp).
    ramp_cap: HashMap<Bucket, usize>,
    /// Instances whose last Open got an error answer (ambiguous) not yet
    /// resolved: confirmed by a settled read (a write-path error), verified
    /// `YES`, or out of progress. While these and the confirmed errors together
    /// exceed the budget, no new Open starts: a systematic failure is held at
    /// the budget even while its confirmations wait out the settle window.
    suspects: std::collections::HashSet<InstanceId>,
    /// Rollout milestones to journal (from the synchronous `handle`).
    notes: Vec<RolloutEvent>,
    /// The first phase waits out one window before its first request.
    started: bool,
    /// The last batch `refill` read was all outside the phase's filter.
    last_batch_filtered: bool,
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
            filter: Arc::new(|_| true),
            halt: None,
            paused_until: None,
            window_check_at: None,
            unanswered: HashMap::new(),
            ramp_cap: HashMap::new(),
            suspects: std::collections::HashSet::new(),
            notes: Vec::new(),
            started: false,
            last_batch_filtered: false,
        }
    }

    /// Whether a step may still run once Opens are halted: only what finishes
    /// an attempt already started (its send, its verification).
    fn finishes_an_attempt(step: Step) -> bool {
        matches!(step, Step::Send | Step::VerifyRead)
    }

    /// Stops starting Opens for good: every instance waiting for anything but
    /// the send or verification of an attempt already written leaves progress
    /// (the journal keeps it as it is; `resume` continues it).
    fn halt(&mut self, reason: StopReason) {
        if self.halt.is_some() {
            return;
        }
        self.halt = Some(reason);
        for (_, q) in self.open_wait.drain() {
            for id in q {
                self.idle.remove(&id);
            }
        }
        for q in self.ready.values_mut() {
            let kept: Vec<_> = q
                .drain()
                .filter(|Reverse((_, _, id, step))| {
                    let keep = Self::finishes_an_attempt(*step);
                    if !keep {
                        self.idle.remove(id);
                    }
                    keep
                })
                .collect();
            q.extend(kept);
        }
        // Instances waiting on a timer for a step that no longer runs (a retry's
        // write-ahead after its backoff) leave now, not when the timer fires.
        let waiting: Vec<InstanceId> = self
            .timers
            .iter()
            .filter(|Reverse((_, _, _, step))| !Self::finishes_an_attempt(*step))
            .map(|Reverse((_, _, id, _))| id.clone())
            .collect();
        for id in waiting {
            self.idle.remove(&id);
            self.suspects.remove(&id);
        }
        self.suspects.retain(|id| self.idle.contains_key(id));
    }

    /// Whether the confirmed write-path errors and the error answers still
    /// being confirmed together exceed the budget: then no new Open starts
    /// until enough of them resolve (or the budget is spent for good).
    fn errors_may_exceed_the_budget(&self) -> bool {
        let budget = self.ctx.budget.lock().unwrap_or_else(|e| e.into_inner());
        budget.errors.saturating_add(self.suspects.len() as u64) > budget.limit
    }

    /// A write-path error for the budget (issue 11).
    fn count_write_error(&mut self, code: String) {
        let mut budget = self.ctx.budget.lock().unwrap_or_else(|e| e.into_inner());
        let spent = budget.count(&code);
        let (errors, limit) = (budget.errors, budget.limit);
        let top = budget.top_code().unwrap_or(&code).to_string();
        drop(budget);
        tracing::warn!(code = %code, errors, budget = limit, "write-path error");
        self.notes.push(RolloutEvent::ErrorCounted {
            code,
            errors,
            budget: limit,
        });
        if spent && self.halt.is_none() {
            self.notes.push(RolloutEvent::BudgetSpent {
                errors,
                budget: limit,
                top_code: top.clone(),
            });
            self.halt(StopReason::ErrorBudget {
                errors,
                budget: limit,
                top_code: top,
            });
        }
    }

    /// Checks the maintenance window: outside it, Opens wait (or the run halts
    /// with `--exit-outside-window`). Answers when to look again: at the next
    /// opening or closing, at least once a minute (in case the clock moved).
    fn check_window(&mut self, now: Instant) -> Option<Instant> {
        let window = self.ctx.config.rollout.window.clone()?;
        if let Some(at) = self.window_check_at.filter(|at| now < *at) {
            return Some(at);
        }
        let wall = chrono::Utc::now();
        let next_change = if window.contains(wall) {
            if self.paused_until.take().is_some() {
                self.notes.push(RolloutEvent::WindowOpened {
                    window: window.to_string(),
                });
                self.counters.paused_until_ms.store(0, Ordering::Relaxed);
            }
            window.closes(wall)
        } else {
            let next = window.next_open(wall);
            if self.ctx.config.rollout.exit_outside_window {
                if self.halt.is_none() {
                    self.notes.push(RolloutEvent::OutsideWindow {
                        window: window.to_string(),
                        next_open: rfc3339(next),
                    });
                }
                self.halt(StopReason::OutsideWindow {
                    window: window.to_string(),
                    next_open: rfc3339(next),
                });
                return None;
            }
            if self.paused_until.is_none() {
                self.notes.push(RolloutEvent::WindowPaused {
                    window: window.to_string(),
                    until: rfc3339(next),
                });
                tracing::info!(window = %window, until = %rfc3339(next), "outside the maintenance window: no new Open until it opens");
            }
            self.paused_until = Some(next);
            self.counters
                .paused_until_ms
                .store(next.timestamp_millis().max(0) as u64, Ordering::Relaxed);
            Some(next)
        };
        let wait = next_change
            .and_then(|t| (t - wall).to_std().ok())
            .unwrap_or(Duration::from_secs(60));
        let at = now + wait.clamp(Duration::from_millis(20), Duration::from_secs(60));
        self.window_check_at = Some(at);
        Some(at)
    }

    fn bucket(&self, a: &Active, step: Step) -> Bucket {
        let host = match step {
            Step::KmsKey => a.kms.as_ref().map(|e| e.host.clone()).unwrap_or_default(),
            _ => a.cdb.host.clone(),
        };
        // The quota is per credential: each account's SecretId has its own buckets.
        let credential = match self.ctx.client_for(a) {
            Some(client) => client.secret_id().to_string(),
            None => format!("(no credentials: {:?})", a.row.account),
        };
        (credential, host, step.action())
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
        if self.halt.is_some() && !Self::finishes_an_attempt(step) {
            self.idle.remove(&id);
            return;
        }
        let Some(a) = self.idle.get(&id) else { return };
        if step == Step::KmsKey && self.ctx.key_known(a) {
            // Its key was read already: the step sends nothing, so it takes
            // no limiter slot (a fleet on one key is not paced at one
            // DescribeKey quota).
            self.spawn(id, step);
            return;
        }
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

    /// Brings instances from the journal into progress, up to `max_active`,
    /// reading on past batches the phase's filter leaves empty.
    async fn refill(&mut self) -> Result<(), RunError> {
        loop {
            let before = self.idle.len();
            self.refill_once().await?;
            if self.exhausted || self.idle.len() > before || !self.last_batch_filtered {
                return Ok(());
            }
        }
    }

    async fn refill_once(&mut self) -> Result<(), RunError> {
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
        self.last_batch_filtered = !rows.is_empty() && rows.iter().all(|r| !(self.filter)(r));
        let now = Instant::now();
        let now_wall = now_ms();
        for row in rows {
            self.cursor = row.seq;
            if !(self.filter)(&row) {
                continue;
            }
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
        // Counted once answered, and only when a request went out (a key
        // already read, a write-ahead and a request that could not be sent
        // do not count).
        if res.heard.sent_request() && !matches!(res.heard, Heard::NotSent(_)) {
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
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
        let wrote_nothing =
            res.step == Step::WriteAhead && !matches!(res.next, Next::After(Step::Send, _));
        if wrote_nothing {
            // The write-ahead did not lead to a send (refused, or the journal failed):
            // give its staging slot back, or the Open bucket would slowly seize up.
            let b = self.bucket(&res.active, Step::WriteAhead);
            if let Some(n) = self.staged.get_mut(&b) {
                *n = n.saturating_sub(1);
            }
        }
        if wrote_nothing || res.step == Step::Send {
            let b = self.bucket(&res.active, Step::Send);
            if let Some(n) = self.unanswered.get_mut(&b) {
                *n = n.saturating_sub(1);
            }
            // The ramp: each accepted answer lets one more Open be unanswered, so
            // the cap doubles per round of answers while they succeed, and stops
            // growing at the first systematic failure.
            if res.step == Step::Send && res.active.accepted() {
                if let Some(cap) = self.ramp_cap.get_mut(&b) {
                    *cap += 1;
                }
            }
        }
        let mut res = res;
        if res.step == Step::Send
            && res.active.row.last_outcome == Some(crate::model::Disposition::Ambiguous)
        {
            self.suspects.insert(res.active.id().clone());
        }
        if let Some(code) = res.active.write_error.take() {
            self.suspects.remove(res.active.id());
            self.count_write_error(code);
        }
        if res.active.state().is_terminal() || matches!(res.next, Next::Stop(_)) {
            self.suspects.remove(res.active.id());
        }
        let a = res.active;
        match res.next {
            Next::Done => self.counters.finished(a.state()),
            Next::After(step, _) if self.halt.is_some() && !Self::finishes_an_attempt(step) => {
                // Halted: the instance stays as the journal has it.
                self.suspects.remove(a.id());
            }
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
        // Outside the window or halted: no new Open starts (they wait, or left).
        let opens_allowed = self.halt.is_none()
            && self.paused_until.is_none()
            && !self.errors_may_exceed_the_budget();
        let ramp_start = cfg.rollout.ramp_start;
        let buckets: Vec<Bucket> = if opens_allowed {
            self.open_wait.keys().cloned().collect()
        } else {
            Vec::new()
        };
        for b in buckets {
            loop {
                let staged = *self.staged.get(&b).unwrap_or(&0);
                if staged >= rate as usize {
                    break;
                }
                let unanswered = *self.unanswered.get(&b).unwrap_or(&0);
                if let Some(start) = ramp_start {
                    let cap = *self.ramp_cap.entry(b.clone()).or_insert(start);
                    if unanswered >= cap {
                        break;
                    }
                }
                let Some(id) = self.open_wait.get_mut(&b).and_then(|q| q.pop_front()) else {
                    break;
                };
                *self.staged.entry(b.clone()).or_default() += 1;
                *self.unanswered.entry(b.clone()).or_default() += 1;
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

    /// Drives every instance `filter` selects to a terminal state, or until
    /// stopped or halted. Called once per phase of the rollout (canary, each
    /// wave); the limiters, gates and ramp carry over from phase to phase, so
    /// only the first waits out a window before its first request.
    pub async fn run_phase(
        &mut self,
        filter: Filter,
        shutdown: CancellationToken,
    ) -> Result<Option<StopReason>, RunError> {
        self.filter = filter;
        self.cursor = 0;
        self.exhausted = false;
        let gate = if self.started {
            Instant::now()
        } else {
            // Requests of a previous process may still count in the server's window,
            // including reads it never journaled: wait out one window first.
            Instant::now() + self.ctx.config.startup_wait
        };
        if !self.started {
            self.started = true;
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
        }
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if self.stop.is_none() && self.halt.is_none() {
                self.refill().await?;
            }
            let now = Instant::now();
            let window_wake = if self.stop.is_none() {
                self.check_window(now)
            } else {
                None
            };
            self.flush_notes().await?;
            while let Some(Reverse((t, _, _, _))) = self.timers.peek() {
                if *t > now {
                    break;
                }
                let Reverse((_, _, id, step)) = self.timers.pop().unwrap();
                self.make_ready(id, step);
            }
            let mut wake = self.timers.peek().map(|Reverse((t, ..))| *t);
            if let Some(w) = window_wake {
                wake = Some(wake.map_or(w, |x| x.min(w)));
            }
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
            let nothing_left = self.idle.is_empty() && (self.exhausted || self.halt.is_some());
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
        self.flush_notes().await?;
        Ok(self.stop.clone().or_else(|| self.halt.clone()))
    }

    /// Journals the rollout milestones `handle` and the window check noted.
    async fn flush_notes(&mut self) -> Result<(), RunError> {
        for note in std::mem::take(&mut self.notes) {
            self.ctx
                .journal
                .note_rollout(self.ctx.run_id, &note)
                .await?;
        }
        Ok(())
    }
}

/// A wall-clock time as operators read it: `2026-11-30T22:00:00Z`.
fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
